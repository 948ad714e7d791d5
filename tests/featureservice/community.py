"""Users, groups, sharing and browsing in the reference portal: `/community/self`,
`/content/users/<user>`, `/content/groups/<id>`, `/search` and item thumbnails, shaped as the
ArcGIS sharing REST API documents them, plus who may read an item.

Every configured user belongs to one organisation and to the "Field crew" group. Items carry
ArcGIS's `access` (private, shared, org, public); the groups an item is shared with live in the
`item_groups` table. Without auth every item is readable.
"""

from __future__ import annotations

import json
import re
import struct
import zlib

from .errors import ApiError
from .portal import absolute_urls
from .store import Tx, now_ms

ORG_ID = "Rf0OrgIdReference"
FIELD_CREW_GROUP_ID = "6a0f0c5e1c7f4d2b9d3e8a1b2c3d4e5f"
ALICE_PRIVATE_MAP_ID = "a11ce0000000400080000000000000a1"
CREW_MAP_ID = "c4e40000000040008000000000000c4e"
DEMO_SERVICE_ITEM_ID = "5e41ce00000040008000000000005e41"
THUMBNAIL = "thumbnail/thumbnail.png"
MAX_NUM = 100

NO_ACCESS = ApiError(
    403, "You do not have permissions to access this resource or perform this operation."
)


def _ensure_tables(tx: Tx) -> None:
    tx.conn.execute(
        "CREATE TABLE IF NOT EXISTS item_groups ("
        " item_id TEXT NOT NULL, group_id TEXT NOT NULL, PRIMARY KEY (item_id, group_id))"
    )


def seed_browsing(tx: Tx, webmap_id: str, webmap_data: dict) -> None:
    """Items to browse besides the demo web map: a private web map of alice's, a web map of
    bob's shared with the Field crew group, and the Demo feature service's item."""
    _ensure_tables(tx)
    found = tx.item(webmap_id)
    if found is not None:
        tx.save_item(webmap_id, {**found[0], "thumbnail": THUMBNAIL}, found[1])
    base = found[0] if found else {}
    for item_id, owner, title, access in (
        (ALICE_PRIVATE_MAP_ID, "alice", "Alice's private survey", "private"),
        (CREW_MAP_ID, "bob", "Field crew map", "shared"),
    ):
        item = {
            **base,
            "id": item_id,
            "owner": owner,
            "title": title,
            "snippet": f"{title} of {owner}'s",
            "description": f"{title}: points, lines and areas to inspect.",
            "tags": [owner],
            "access": access,
            "thumbnail": THUMBNAIL,
            "created": now_ms(),
            "modified": now_ms(),
        }
        tx.save_item(item_id, item, webmap_data)
    tx.conn.execute(
        "INSERT OR REPLACE INTO item_groups (item_id, group_id) VALUES (?, ?)",
        (CREW_MAP_ID, FIELD_CREW_GROUP_ID),
    )
    tx.save_item(
        DEMO_SERVICE_ITEM_ID,
        {
            "id": DEMO_SERVICE_ITEM_ID,
            "owner": "seed",
            "title": "Demo feature service",
            "type": "Feature Service",
            "typeKeywords": ["ArcGIS Server", "Data", "Feature Access", "Service", "Sync"],
            "snippet": "The Demo feature service",
            "access": "public",
            "thumbnail": THUMBNAIL,
            "url": "{services}/Demo/FeatureServer",
            "created": now_ms(),
            "modified": now_ms(),
        },
        None,
    )


class Community:
    """The portal's users, groups and item visibility for the configured `users`."""

    def __init__(self, users: dict[str, str]):
        self.users = users

    @property
    def auth_on(self) -> bool:
        return bool(self.users)

    def groups_of(self, username: str | None) -> list[dict]:
        if username is None or username not in self.users:
            return []
        return [
            {
                "id": FIELD_CREW_GROUP_ID,
                "title": "Field crew",
                "owner": "alice",
                "snippet": "Everyone who collects data in the field",
                "access": "org",
                "isViewOnly": False,
                "thumbnail": None,
                "created": 1714521600000,
                "modified": 1714521600000,
            }
        ]

    def user(self, username: str) -> dict:
        first = username.capitalize()
        return {
            "username": username,
            "fullName": f"{first} Tester",
            "firstName": first,
            "lastName": "Tester",
            "email": f"{username}@example.invalid",
            "orgId": ORG_ID,
            "role": "org_user",
            "userLicenseTypeId": "creatorUT",
            "privileges": ["portal:user:createItem", "features:user:edit"],
            "access": "org",
            "provider": "arcgis",
            "units": "metric",
            "created": 1714521600000,
            "modified": 1714521600000,
            "groups": self.groups_of(username),
        }

    def can_read(self, tx: Tx, item: dict, username: str | None) -> bool:
        access = item.get("access") or "public"
        if not self.auth_on or access == "public":
            return True
        if username is None:
            return False
        if item.get("owner") == username or access == "org":
            return True
        if access != "shared":
            return False
        _ensure_tables(tx)
        mine = {g["id"] for g in self.groups_of(username)}
        shared = {
            row[0]
            for row in tx.conn.execute(
                "SELECT group_id FROM item_groups WHERE item_id = ?", (item.get("id"),)
            )
        }
        return bool(mine & shared)

    def check_item(self, tx: Tx, item: dict, username: str | None) -> None:
        """Raise the portal's 403 when `username` may not read `item`."""
        if not self.can_read(tx, item, username):
            raise NO_ACCESS

    def visible_items(self, tx: Tx, username: str | None, services_url: str) -> list[dict]:
        _ensure_tables(tx)
        shared: dict[str, set[str]] = {}
        for item_id, group_id in tx.conn.execute("SELECT item_id, group_id FROM item_groups"):
            shared.setdefault(item_id, set()).add(group_id)
        items = []
        for (text,) in tx.conn.execute("SELECT item FROM items ORDER BY id"):
            item = json.loads(text)
            if self.can_read(tx, item, username):
                item["_groups"] = sorted(shared.get(item.get("id"), ()))
                items.append(absolute_urls(item, services_url))
        return items

    # --- the resources ---------------------------------------------------------------------------

    def self_(self, username: str) -> dict:
        return self.user(username)

    def user_content(self, tx: Tx, owner: str, username: str | None, params, services) -> dict:
        if self.auth_on and owner != username:
            raise NO_ACCESS
        items = [i for i in self.visible_items(tx, username, services) if i.get("owner") == owner]
        return {
            "username": owner,
            "currentFolder": None,
            **_page(items, params),
            "folders": [],
        }

    def group_content(self, tx: Tx, group_id: str, username: str | None, params, services):
        if self.auth_on and group_id not in {g["id"] for g in self.groups_of(username)}:
            raise NO_ACCESS
        items = [i for i in self.visible_items(tx, username, services) if group_id in i["_groups"]]
        return _page(items, params)

    def search(self, tx: Tx, username: str | None, params, services: str) -> dict:
        query = str(params.get("q") or "").strip()
        if not query:
            raise ApiError(400, "'q' parameter is required.")
        items = [
            i for i in self.visible_items(tx, username, services) if _matches(query, i, ORG_ID)
        ]
        field = str(params.get("sortField") or "")
        if field in ("title", "modified", "created", "owner", "type"):
            items.sort(key=lambda i: (i.get(field) is None, i.get(field) or 0))
            if str(params.get("sortOrder") or "asc").lower() == "desc":
                items.reverse()
        return {"query": query, **_page(items, params, key="results")}


_TERM = re.compile(r'\(|\)|(\w+):"([^"]*)"|(\w+):([^\s()]+)|"([^"]*)"|([^\s()]+)')


def _matches(query: str, item: dict, org_id: str) -> bool:
    """ArcGIS search syntax, the parts the plugin uses: `field:value` terms (owner, type,
    group, orgid, id, title, typekeywords), quoted phrases and words, joined by AND (also
    implied); a parenthesised group of terms joined by OR matches when any of them does."""
    clauses: list[list[tuple[str, str]]] = []
    group: list[tuple[str, str]] | None = None
    for match in _TERM.finditer(query):
        if match.group(0) == "(":
            group = []
            continue
        if match.group(0) == ")":
            if group:
                clauses.append(group)
            group = None
            continue
        field = (match.group(1) or match.group(3) or "").lower()
        value = (match.group(2) or match.group(4) or match.group(5) or match.group(6) or "").lower()
        if not field and value in ("and", "or"):
            continue
        if group is not None:
            group.append((field, value))
        else:
            clauses.append([(field, value)])
    return all(any(_term(f, v, item, org_id) for f, v in clause) for clause in clauses)


def _term(field: str, value: str, item: dict, org_id: str) -> bool:
    if field == "owner":
        return str(item.get("owner") or "").lower() == value
    if field == "type":
        return str(item.get("type") or "").lower() == value
    if field == "group":
        return value in [g.lower() for g in item.get("_groups", [])]
    if field == "orgid":
        return value == org_id.lower()  # every item of this portal is the organisation's
    if field == "id":
        return str(item.get("id") or "").lower() == value
    if field == "typekeywords":
        return value in [k.lower() for k in item.get("typeKeywords") or []]
    if field == "title":
        return value in str(item.get("title") or "").lower()
    text = " ".join(str(item.get(k) or "") for k in ("title", "snippet", "description", "owner"))
    text += " " + " ".join(item.get("tags") or [])
    return value in text.lower()


def _page(items: list[dict], params, key: str = "items") -> dict:
    start = max(1, params.get_int("start", 1) or 1)
    num = max(0, min(MAX_NUM, params.get_int("num", 10) if params.has("num") else 10))
    chosen = items[start - 1 : start - 1 + num]
    following = start + len(chosen)
    for item in chosen:
        item.pop("_groups", None)
    return {
        "total": len(items),
        "start": start,
        "num": len(chosen),
        "nextStart": following if following <= len(items) else -1,
        key: chosen,
    }


def thumbnail_png(seed: str) -> bytes:
    """A small PNG (a flat colour from `seed`), made here so no binary lives in the repository."""
    width = height = 16
    r, g, b = (zlib.crc32(seed.encode()) >> shift & 0xFF for shift in (0, 8, 16))
    row = b"\x00" + bytes((r, g, b)) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
