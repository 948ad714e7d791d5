"""Browsing an ArcGIS portal as the signed-in user: who they are, their content, their
groups' content, their organisation's, and search by text — web maps and feature services,
with title, owner, modified date and thumbnail.

Every string here comes from the server: the GUI shows it as plain text. Listings are
bounded (:data:`MAX_ITEMS`), thumbnails too (:data:`MAX_THUMBNAIL_BYTES`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import NetworkError, OfflineMapSyncError, ServiceError
from .rest import ArcGISClient, BadAnswerError
from .sites import CredentialScope
from .transport import host_of

#: The item types a user can take offline.
BROWSABLE_TYPES = ("Web Map", "Feature Service")
#: At most this many items per listing (pages of 100).
MAX_ITEMS = 500
MAX_THUMBNAIL_BYTES = 256 * 1024
ARCGIS_ONLINE = "https://www.arcgis.com/sharing/rest"


class PortalAddressError(OfflineMapSyncError):
    """The address is not an ArcGIS portal one can sign in to."""


def portal_rest_url(text: str) -> str:
    """The portal's REST root (``…/sharing/rest``) for what a user typed: ``www.arcgis.com``,
    ``https://org.maps.arcgis.com``, ``https://gis.example.com/portal/home``…"""
    text = (text or "").strip()
    if not text:
        return ARCGIS_ONLINE
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PortalAddressError(
            f"'{text[:200]}' is not a portal address. Enter one like https://www.arcgis.com "
            "or https://gis.example.com/portal."
        )
    path = parts.path.rstrip("/")
    lower = path.lower()
    if "/sharing/rest" in lower:
        path = path[: lower.index("/sharing/rest")]
    elif lower.endswith("/home"):
        path = path[: -len("/home")]
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/sharing/rest", "", ""))


def check_portal(
    client: ArcGISClient, portal_url: str, *, plain_http_hosts: Iterable[str] = ()
) -> dict:
    """``portals/self`` of the portal, or PortalAddressError saying why it is not one.

    A sign-in will go to the portal: InsecureConnectionError, before anything is sent, when it
    is plain http to a host outside ``plain_http_hosts`` (the hosts the user allowed).
    """
    host = host_of(portal_url)
    CredentialScope.of([portal_url], plain_http_hosts=plain_http_hosts).check(
        portal_url, f"sign-in to {host}"
    )
    try:
        body = client.get_json(f"{portal_url}/portals/self")
    except (BadAnswerError, ServiceError) as error:
        if isinstance(error, ServiceError) and error.code in (401, 403, 498, 499):
            raise
        raise PortalAddressError(
            f"No ArcGIS portal answers at {portal_url} ({error}). Check the portal address, "
            "for example https://www.arcgis.com or https://gis.example.com/portal."
        ) from None
    except NetworkError as error:
        raise NetworkError(f"{error} Check the portal address.") from None
    if not isinstance(body, dict) or not any(
        key in body for key in ("portalName", "isPortal", "portalHostname", "supportsOAuth")
    ):
        raise PortalAddressError(
            f"{host} answered, but not as an ArcGIS portal. Check the portal address."
        )
    return body


@dataclass(frozen=True)
class PortalGroup:
    group_id: str
    title: str


@dataclass(frozen=True)
class PortalUser:
    username: str
    full_name: str
    org_id: str
    groups: tuple[PortalGroup, ...] = ()

    @classmethod
    def from_json(cls, body: dict) -> PortalUser:
        """The user ``community/self`` describes (a malformed group list counts as none)."""
        groups = body.get("groups")
        return cls(
            username=str(body.get("username") or ""),
            full_name=str(body.get("fullName") or ""),
            org_id=str(body.get("orgId") or ""),
            groups=tuple(
                PortalGroup(str(g.get("id") or ""), str(g.get("title") or ""))
                for g in (groups if isinstance(groups, list) else ())
                if isinstance(g, dict) and g.get("id")
            ),
        )


@dataclass(frozen=True)
class PortalItem:
    """An item as a listing shows it (times in epoch milliseconds, as ArcGIS sends them)."""

    item_id: str
    title: str
    owner: str
    item_type: str
    modified: int | None = None
    snippet: str = ""
    thumbnail: str = ""
    url: str = ""

    @classmethod
    def from_json(cls, item: dict) -> PortalItem:
        modified = item.get("modified")
        return cls(
            item_id=str(item.get("id") or ""),
            title=str(item.get("title") or item.get("name") or ""),
            owner=str(item.get("owner") or ""),
            item_type=str(item.get("type") or ""),
            modified=int(modified) if isinstance(modified, (int, float)) else None,
            snippet=str(item.get("snippet") or ""),
            thumbnail=str(item.get("thumbnail") or ""),
            url=str(item.get("url") or ""),
        )

    @property
    def is_web_map(self) -> bool:
        return self.item_type == "Web Map"


_SEARCH_NOISE = re.compile(r'["():\\]')


class PortalBrowser:
    """What the signed-in user (``client``'s credentials) can see on ``portal_url``."""

    def __init__(self, client: ArcGISClient, portal_url: str) -> None:
        self.client = client
        self.portal_url = portal_url.rstrip("/")

    def me(self) -> PortalUser:
        return PortalUser.from_json(self.client.get_json(f"{self.portal_url}/community/self"))

    def my_items(self, username: str) -> list[PortalItem]:
        return self._listing(f"content/users/{quote(username, safe='')}", {}, "items")

    def group_items(self, group_id: str) -> list[PortalItem]:
        return self._listing(f"content/groups/{quote(group_id, safe='')}", {}, "items")

    def organisation_items(self, org_id: str) -> list[PortalItem]:
        return self.search("", org_id=org_id)

    def search(self, text: str, org_id: str | None = None) -> list[PortalItem]:
        """Web maps and feature services whose title, tags or summary hold every word of
        ``text`` (within the organisation ``org_id`` when given)."""
        terms = [f'"{word}"' for word in _SEARCH_NOISE.sub(" ", text or "").split()][:10]
        if org_id:
            terms.append(f"orgid:{_SEARCH_NOISE.sub('', org_id)}")
        types = " OR ".join(f'type:"{t}"' for t in BROWSABLE_TYPES)
        terms.append(f"({types})")
        params = {"q": " AND ".join(terms), "sortField": "modified", "sortOrder": "desc"}
        return self._listing("search", params, "results")

    def _listing(self, path: str, params: dict, key: str) -> list[PortalItem]:
        items: list[PortalItem] = []
        start = 1
        while len(items) < MAX_ITEMS:
            body = self.client.get_json(
                f"{self.portal_url}/{path}", dict(params, start=start, num=100)
            )
            for entry in body.get(key) or []:
                if isinstance(entry, dict) and entry.get("type") in BROWSABLE_TYPES:
                    items.append(PortalItem.from_json(entry))
            following = body.get("nextStart")
            if not isinstance(following, int) or following <= start:
                break
            start = following
        return items[:MAX_ITEMS]

    def thumbnail(self, item: PortalItem) -> bytes | None:
        """The item's thumbnail image (PNG/JPEG bytes), or None when it has none or it is
        too large or unreadable."""
        if not item.thumbnail or ".." in item.thumbnail:
            return None
        url = (
            f"{self.portal_url}/content/items/{quote(item.item_id, safe='')}/info/"
            f"{quote(item.thumbnail, safe='/')}"
        )
        return self.client.get_bytes(url, MAX_THUMBNAIL_BYTES)
