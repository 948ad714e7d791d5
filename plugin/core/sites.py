"""Where a credential may go: sites (scheme, host and port) and the scope of a credential.

An offline-map folder and every server are untrusted input (maps are copied, mailed and shared;
a server may redirect anywhere). A credential is therefore bound to the sites it was made for
or that the user approved, and never travels over plain http unless the user allowed that host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

from .errors import InsecureConnectionError, SiteNotApprovedError

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Site:
    """The origin of a URL: scheme, host name (lower case) and port (the scheme's default
    when the URL names none)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Site:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = None
        return cls(scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0))

    @property
    def is_secure(self) -> bool:
        return self.scheme == "https"

    def __str__(self) -> str:
        if self.port == _DEFAULT_PORTS.get(self.scheme):
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


def same_site(site_url: str, url: str) -> bool:
    """True when both URLs have the same scheme, host and port: only then may a credential
    made for one be sent to the other (http after https, or another port, is another site)."""
    return Site.of(site_url) == Site.of(url)


@dataclass(frozen=True)
class CredentialScope:
    """The sites a credential may be sent to, and the hosts the user allowed plain http for.

    A request to any other site goes without the credential. Nothing is ever sent over plain
    http to a host outside ``plain_http_hosts``.
    """

    sites: frozenset[Site]
    plain_http_hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, urls: Iterable[str], *, plain_http_hosts: Iterable[str] = ()) -> CredentialScope:
        return cls(
            frozenset(Site.of(url) for url in urls if url),
            frozenset(host.lower() for host in plain_http_hosts),
        )

    def allows(self, url: str) -> bool:
        """Whether the credential may go with a request to ``url``."""
        site = Site.of(url)
        return site in self.sites and self._transport_allowed(site)

    def _transport_allowed(self, site: Site) -> bool:
        return site.is_secure or site.host in self.plain_http_hosts

    def check(self, url: str, credential: str) -> None:
        """Raise unless ``credential`` (its name, for the message) may be used for ``url``:
        :class:`InsecureConnectionError` for plain http to a host the user did not allow, and
        :class:`SiteNotApprovedError` for a site outside the scope."""
        self.check_all([url], credential)

    def check_all(self, urls: Iterable[str], credential: str) -> None:
        """:meth:`check` for every URL; one error names every site that is not approved."""
        wanted = list(dict.fromkeys(Site.of(url) for url in urls if url))
        for site in wanted:
            if not self._transport_allowed(site):
                raise InsecureConnectionError(
                    f"The credential '{credential}' would be sent to {site.host} over plain "
                    "http, where anyone on the network can read it. Use the https:// address "
                    f"of the service, or, only for a server you trust on your own network, add "
                    f"{site.host} to the hosts allowed over plain http (Offline Map Sync "
                    "setting 'plain_http_hosts')."
                )
        missing = [site for site in wanted if site not in self.sites]
        if missing:
            raise SiteNotApprovedError(credential, missing)
