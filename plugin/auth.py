"""QGIS authentication configurations turned into the core's credential providers.

Runs on the main thread, before a task starts: the auth manager may ask for the master
password or open an OAuth2 login window, which must never happen from a worker thread (a
known way to freeze or crash QGIS). The task then only holds a plain credential provider.
Secrets are never logged, shown or stored by this module.
"""

from __future__ import annotations

from typing import Iterable

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtNetwork import QNetworkRequest

from .core.errors import AuthenticationError, SiteNotApprovedError
from .core.rest import (
    CredentialProvider,
    HeaderCredentials,
    StaticTokenCredentials,
    TokenCredentials,
    guess_token_url,
)
from .core.sites import CredentialScope, Site
from .resources import tr
from .sign_in import credentials_of

#: Hosts the user allows credentials to travel to over plain http (a list of host names).
PLAIN_HTTP_HOSTS_KEY = "offline_map_sync/plain_http_hosts"
#: Per auth configuration: the sites (scheme://host:port) the user approved it for.
APPROVED_SITES_KEY = "offline_map_sync/credential_sites/{0}"


def token_url_for(url: str) -> str:
    """Where ArcGIS usually hands out tokens for ``url`` (a service, server or portal URL); the
    credentials ask the server itself first (see :func:`plugin.core.rest.discover_token_url`)."""
    return guess_token_url(url)


def offline_map_auth_url(offline_map) -> str:
    """The URL an offline map's credentials are for: its portal, or else its first feature
    service ("" when it has neither)."""
    return offline_map.source.portal_url or next(
        (entry.service_url for entry in offline_map.geodatabases), ""
    )


def offline_map_credential_urls(offline_map) -> list[str]:
    """Every URL an offline map's credentials would be used for: its portal and its services."""
    return [offline_map.source.portal_url] + [e.service_url for e in offline_map.geodatabases]


def plain_http_hosts() -> frozenset[str]:
    """The hosts the user allowed credentials to travel to over plain http (setting
    ``offline_map_sync/plain_http_hosts``); empty unless the user set it."""
    return frozenset(h.strip().lower() for h in _setting_list(PLAIN_HTTP_HOSTS_KEY) if h.strip())


def approved_sites(authcfg: str, config: QgsAuthMethodConfig) -> set[Site]:
    """The sites an auth configuration may be used for: the one its URI names (what it was
    made for) and those the user approved since."""
    sites = {Site.of(config.uri())} if config.uri() else set()
    return sites | {Site.of(url) for url in _setting_list(APPROVED_SITES_KEY.format(authcfg))}


def approve_sites(authcfg: str, sites: Iterable[Site]) -> None:
    """Remember that the user approved ``sites`` for the auth configuration ``authcfg``."""
    key = APPROVED_SITES_KEY.format(authcfg)
    QgsSettings().setValue(key, sorted(set(_setting_list(key)) | {str(s) for s in sites}))


def _setting_list(key: str) -> list[str]:
    # QSettings gives a lone string for a one-element list read back from an ini file.
    value = QgsSettings().value(key, [])
    if isinstance(value, str):
        return [value] if value else []
    return [str(item) for item in value or ()]


def credentials_from_auth_config(
    authcfg: str | None,
    url: str,
    *,
    token_url: str | None = None,
    also_for: Iterable[str] = (),
    approve_new_sites: bool = False,
) -> CredentialProvider | None:
    """A credential provider for requests to ``url`` (and ``also_for``) from the QGIS auth
    configuration ``authcfg``.

    - Basic (username/password): an ArcGIS token from ``token_url`` (default: the token service
      ``url``'s server or portal names in its ``info``, else the usual one), generated when
      first needed and renewed when it expires;
    - ESRI token: that token;
    - anything else QGIS can apply to a request (OAuth2, API header...): the HTTP headers QGIS
      adds, captured now.

    The secret only goes to the sites the configuration is bound to: the one its URI names
    and those the user approved (same scheme, host and port), and over plain http only to
    hosts in :func:`plain_http_hosts`. A site of ``url``/``also_for`` outside that set raises
    :class:`SiteNotApprovedError` (the caller asks the user, then calls again with
    ``approve_new_sites=True``, which records the approval); plain http to a host not allowed
    raises :class:`InsecureConnectionError`.

    Returns None for an empty ``authcfg``. Raises AuthenticationError when the configuration
    does not exist or cannot be used; the message never contains a secret.
    """
    if not authcfg:
        return None
    manager = QgsApplication.authManager()
    if manager is None or authcfg not in manager.configIds():
        raise AuthenticationError(
            tr("The authentication configuration '{0}' does not exist in QGIS.").format(authcfg)
        )
    config = QgsAuthMethodConfig()
    if not manager.loadAuthenticationConfig(authcfg, config, True) or not config.isValid():
        raise AuthenticationError(
            tr(
                "The authentication configuration '{0}' cannot be read (is the master password set?)."
            ).format(authcfg)
        )
    urls = [u for u in (url, *also_for) if u]
    scope = CredentialScope(frozenset(approved_sites(authcfg, config)), plain_http_hosts())
    try:
        scope.check_all(urls, config.name())
    except SiteNotApprovedError as error:
        if not approve_new_sites:
            raise
        approve_sites(authcfg, error.sites)
        scope = CredentialScope(scope.sites | frozenset(error.sites), scope.plain_http_hosts)
        scope.check_all(urls, config.name())
    # Sign-ins made with "Sign in…" carry their portal and renew themselves (sign_in.py).
    ours = credentials_of(config, scope)
    if ours is not None:
        return ours
    method = config.method()
    if method == "Basic":
        username = config.config("username")
        password = config.config("password")
        if not username:
            raise AuthenticationError(
                tr("The authentication configuration '{0}' has no username.").format(config.name())
            )
        return TokenCredentials(token_url, username, password, site_url=url, scope=scope)
    if method == "EsriToken":
        token = config.config("token")
        if not token:
            raise AuthenticationError(
                tr("The authentication configuration '{0}' has no token.").format(config.name())
            )
        return StaticTokenCredentials(token, scope)
    headers = _headers_qgis_adds(authcfg, url)
    if not headers:
        raise AuthenticationError(
            tr(
                "The authentication configuration '{0}' ({1}) cannot be used for ArcGIS services."
            ).format(config.name(), method)
        )
    return HeaderCredentials(headers, scope)


def _headers_qgis_adds(authcfg: str, url: str) -> dict[str, str]:
    # Let QGIS apply the configuration to a request (this is how OAuth2 gets its bearer
    # header, after a login if needed) and keep the headers it set.
    request = QNetworkRequest(QUrl(url))
    before = {bytes(name).decode("latin-1") for name in request.rawHeaderList()}
    result = QgsApplication.authManager().updateNetworkRequest(request, authcfg)
    ok, request = result if isinstance(result, tuple) else (result, request)
    if not ok:
        return {}
    headers = {}
    for name in request.rawHeaderList():
        key = bytes(name).decode("latin-1")
        if key not in before:
            headers[key] = bytes(request.rawHeader(name)).decode("latin-1")
    return headers
