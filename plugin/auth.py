"""QGIS authentication configurations turned into the core's credential providers.

Runs on the main thread, before a task starts: the auth manager may ask for the master
password or open an OAuth2 login window, which must never happen from a worker thread (a
known way to freeze or crash QGIS). The task then only holds a plain credential provider.
Secrets are never logged, shown or stored by this module.
"""

from __future__ import annotations

from qgis.core import QgsApplication, QgsAuthMethodConfig
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtNetwork import QNetworkRequest

from .core.errors import AuthenticationError
from .core.rest import (
    CredentialProvider,
    HeaderCredentials,
    StaticTokenCredentials,
    TokenCredentials,
    guess_token_url,
)
from .resources import tr


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


def credentials_from_auth_config(
    authcfg: str | None, url: str, *, token_url: str | None = None
) -> CredentialProvider | None:
    """A credential provider for requests to ``url`` from the QGIS auth configuration ``authcfg``.

    - Basic (username/password): an ArcGIS token from ``token_url`` (default: the token service
      ``url``'s server or portal names in its ``info``, else the usual one), generated when
      first needed and renewed when it expires;
    - ESRI token: that token;
    - anything else QGIS can apply to a request (OAuth2, API header...): the HTTP headers QGIS
      adds, captured now.

    Secrets only go to ``url``'s site (its host and sibling hosts of its domain): a web map may
    list other organisations' services.

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
    method = config.method()
    if method == "Basic":
        username = config.config("username")
        password = config.config("password")
        if not username:
            raise AuthenticationError(
                tr("The authentication configuration '{0}' has no username.").format(config.name())
            )
        return TokenCredentials(token_url, username, password, site_url=url)
    if method == "EsriToken":
        token = config.config("token")
        if not token:
            raise AuthenticationError(
                tr("The authentication configuration '{0}' has no token.").format(config.name())
            )
        return StaticTokenCredentials(token, url)
    headers = _headers_qgis_adds(authcfg, url)
    if not headers:
        raise AuthenticationError(
            tr(
                "The authentication configuration '{0}' ({1}) cannot be used for ArcGIS services."
            ).format(config.name(), method)
        )
    return HeaderCredentials(headers, url)


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
