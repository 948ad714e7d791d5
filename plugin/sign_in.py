"""Portal sign-ins kept in QGIS's authentication database (encrypted with the master password).

An OAuth sign-in or an API key is stored as an "ESRI token" configuration (the method QGIS
itself uses for ArcGIS tokens, present since before 3.22), bound to the portal address (its
URI), with the refresh token and the app's client ID in the same encrypted map; a built-in
account as a "Basic" configuration. The settings hold only the configuration's ID (no secret),
so the panel knows who is signed in. Everything here runs on the main thread: the auth manager
may ask for the master password. Only asking the portal to revoke a forgotten sign-in runs in a
background task, so that a slow portal cannot freeze QGIS while signing out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .core.errors import AuthenticationError
from .core.oauth import OAuthCredentials, SignIn, revoke
from .core.portal import check_portal
from .core.rest import (
    ArcGISClient,
    CredentialProvider,
    StaticTokenCredentials,
    TokenCredentials,
)
from .core.sites import CredentialScope
from .resources import tr
from .task import CallJob, JobTask, start_job_task

SETTINGS_SIGNED_IN = "offline_map_sync/sign_in/authcfg"
SETTINGS_CLIENT_ID = "offline_map_sync/sign_in/client_id"
SETTINGS_PORTAL = "offline_map_sync/sign_in/portal"
# "Alice Tester (alice) at host": shown by the panel without opening the auth database (which
# could ask for the master password as QGIS starts).
SETTINGS_SIGNED_IN_AS = "offline_map_sync/sign_in/signed_in_as"
# Marks the configurations this plugin made, and what they hold.
_KIND_KEY = "offline_map_sync"
KIND_OAUTH, KIND_API_KEY, KIND_ACCOUNT = "oauth", "apikey", "account"
_TOKEN_METHOD = "EsriToken"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Account:
    """Who is signed in where (no secret)."""

    authcfg: str
    portal_url: str
    username: str
    kind: str
    full_name: str = ""

    @property
    def host(self) -> str:
        return urlsplit(self.portal_url).netloc

    def describe(self) -> str:
        if self.kind == KIND_API_KEY:
            return tr("API key for {0}").format(self.host)
        who = f"{self.full_name} ({self.username})" if self.full_name else self.username
        return tr("{0} at {1}").format(who, self.host)


def _manager():
    manager = QgsApplication.authManager()
    if manager is None or manager.isDisabled():
        raise AuthenticationError(
            tr("QGIS's authentication database is not available, so nothing was stored.")
        )
    return manager


def _store(config: QgsAuthMethodConfig) -> str:
    manager = _manager()
    if config.method() not in manager.authMethodsKeys():
        raise AuthenticationError(
            tr("This QGIS has no '{0}' authentication method; nothing was stored.").format(
                config.method()
            )
        )
    ok = manager.storeAuthenticationConfig(config)
    if not (ok[0] if isinstance(ok, tuple) else ok) or not config.id():
        raise AuthenticationError(
            tr(
                "The sign-in could not be saved in QGIS's authentication database (is the "
                "master password set?). Nothing was stored."
            )
        )
    previous = QgsSettings().value(SETTINGS_SIGNED_IN, "") or ""
    QgsSettings().setValue(SETTINGS_SIGNED_IN, config.id())
    QgsSettings().setValue(SETTINGS_SIGNED_IN_AS, _account_of(config.id(), config).describe())
    if previous and previous != config.id():
        _forget(previous)
    return config.id()


def _new_config(method: str, kind: str, portal_url: str, name: str) -> QgsAuthMethodConfig:
    config = QgsAuthMethodConfig(method)
    config.setName(name)
    config.setUri(portal_url)
    config.setConfig(_KIND_KEY, kind)
    config.setConfig("portal_url", portal_url)
    return config


def store_sign_in(signed_in: SignIn) -> str:
    """Keep an OAuth sign-in (replacing the previous one); returns the configuration ID."""
    host = urlsplit(signed_in.portal_url).netloc
    config = _new_config(
        _TOKEN_METHOD, KIND_OAUTH, signed_in.portal_url, f"ArcGIS: {signed_in.username} @ {host}"
    )
    config.setConfig("client_id", signed_in.client_id)
    config.setConfig("username", signed_in.username)
    config.setConfig("full_name", signed_in.full_name)
    _set_tokens(config, signed_in)
    return _store(config)


def _set_tokens(config: QgsAuthMethodConfig, signed_in: SignIn) -> None:
    config.setConfig("token", signed_in.access_token)
    config.setConfig("expires_at", repr(signed_in.expires_at))
    config.setConfig("refresh_token", signed_in.refresh_token)
    config.setConfig("refresh_expires_at", repr(signed_in.refresh_expires_at or 0.0))


def store_api_key(portal_url: str, api_key: str, plain_http_hosts: Iterable[str] = ()) -> str:
    """Check the API key against the portal, then keep it; nothing is stored when refused.
    The key only goes to the portal's site, over plain http only to ``plain_http_hosts``."""
    api_key = api_key.strip()
    if not api_key:
        raise AuthenticationError(tr("Enter the API key."))
    scope = CredentialScope.of([portal_url], plain_http_hosts=plain_http_hosts)
    scope.check(portal_url, tr("API key"))
    client = ArcGISClient(StaticTokenCredentials(api_key, scope), retries=0)
    check_portal(client, portal_url, plain_http_hosts=plain_http_hosts)
    config = _new_config(
        _TOKEN_METHOD, KIND_API_KEY, portal_url, f"ArcGIS API key @ {urlsplit(portal_url).netloc}"
    )
    config.setConfig("token", api_key)
    return _store(config)


def store_account(
    portal_url: str, username: str, password: str, plain_http_hosts: Iterable[str] = ()
) -> str:
    """Check a built-in account (``generateToken``), then keep it as a Basic configuration.
    The password only goes to the portal's site, over plain http only to
    ``plain_http_hosts``."""
    from .auth import token_url_for

    if not username.strip():
        raise AuthenticationError(tr("Enter the username."))
    TokenCredentials(
        token_url_for(portal_url),
        username.strip(),
        password,
        site_url=portal_url,
        plain_http_hosts=plain_http_hosts,
    ).token_for(portal_url)
    config = _new_config(
        "Basic", KIND_ACCOUNT, portal_url, f"ArcGIS: {username} @ {urlsplit(portal_url).netloc}"
    )
    config.setConfig("username", username.strip())
    config.setConfig("password", password)
    return _store(config)


def sign_in_of(config: QgsAuthMethodConfig) -> SignIn | None:
    """The OAuth sign-in a configuration holds, or None when it holds none."""
    if config.config(_KIND_KEY) != KIND_OAUTH:
        return None
    return SignIn(
        portal_url=config.config("portal_url"),
        client_id=config.config("client_id"),
        username=config.config("username"),
        access_token=config.config("token"),
        expires_at=_float(config.config("expires_at")),
        refresh_token=config.config("refresh_token"),
        refresh_expires_at=_float(config.config("refresh_expires_at")) or None,
        full_name=config.config("full_name"),
    )


def credentials_of(
    config: QgsAuthMethodConfig, scope: CredentialScope
) -> CredentialProvider | None:
    """Credentials for a configuration this plugin stored, sent only to the sites of ``scope``
    (the portal the configuration is bound to and the sites the user approved, see
    :func:`plugin.auth.credentials_from_auth_config`), or None for any other configuration."""
    kind = config.config(_KIND_KEY)
    if kind == KIND_OAUTH:
        keeper, authcfg = _renewed_sign_ins(), config.id()
        return OAuthCredentials(
            sign_in_of(config),
            scope=scope,
            on_refresh=lambda renewed: keeper.renewed.emit(authcfg, renewed),
        )
    if kind == KIND_API_KEY:
        return StaticTokenCredentials(config.config("token"), scope)
    return None


class _RenewedSignIns(QObject):
    """Stores the access tokens a job renewed, so that the next session starts with them.

    The renewal happens on a task's worker thread, which must not touch the auth database
    (it may ask for the master password): the signal crosses to this object's thread, the
    main one, where the configuration is updated.
    """

    renewed = pyqtSignal(str, object)

    def __init__(self) -> None:
        super().__init__()
        self.renewed.connect(store_renewed_sign_in)


_keeper: _RenewedSignIns | None = None


def _renewed_sign_ins() -> _RenewedSignIns:
    # Made on the main thread (credentials are prepared there), so its slot runs there.
    global _keeper
    if _keeper is None:
        _keeper = _RenewedSignIns()
        application = QgsApplication.instance()
        if application is not None:
            _keeper.moveToThread(application.thread())
    return _keeper


def store_renewed_sign_in(authcfg: str, renewed: SignIn) -> bool:
    """Keep the renewed tokens of the sign-in ``authcfg`` holds (main thread only). False,
    storing nothing, when the configuration is gone (signed out meanwhile), holds another
    sign-in, or already holds a newer token."""
    try:
        config = _load(authcfg)
    except AuthenticationError:
        return False
    stored = sign_in_of(config) if config is not None else None
    if stored is None or (stored.portal_url, stored.username, stored.client_id) != (
        renewed.portal_url,
        renewed.username,
        renewed.client_id,
    ):
        return False
    if renewed.expires_at <= stored.expires_at:
        return False
    _set_tokens(config, renewed)
    return bool(_manager().updateAuthenticationConfig(config))


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def _load(authcfg: str) -> QgsAuthMethodConfig | None:
    manager = _manager()
    if not authcfg or authcfg not in manager.configIds():
        return None
    config = QgsAuthMethodConfig()
    if not manager.loadAuthenticationConfig(authcfg, config, True) or not config.isValid():
        return None
    return config


def current_account() -> Account | None:
    """Who is signed in (the configuration the settings name), or None."""
    authcfg = QgsSettings().value(SETTINGS_SIGNED_IN, "") or ""
    config = _load(authcfg)
    if config is None or not config.config(_KIND_KEY):
        return None
    return _account_of(authcfg, config)


def signed_in_as() -> str:
    """Who is signed in where, as the panel shows it ("" when nobody is)."""
    return QgsSettings().value(SETTINGS_SIGNED_IN_AS, "") or ""


def _account_of(authcfg: str, config: QgsAuthMethodConfig) -> Account:
    return Account(
        authcfg=authcfg,
        portal_url=config.config("portal_url"),
        username=config.config("username"),
        kind=config.config(_KIND_KEY),
        full_name=config.config("full_name"),
    )


def sign_out() -> bool:
    """Forget the current sign-in at once: the configuration leaves the auth database and the
    settings; the portal is asked to revoke the refresh token in the background (best effort,
    see :func:`_revoke_in_background`). False when nobody was signed in."""
    authcfg = QgsSettings().value(SETTINGS_SIGNED_IN, "") or ""
    QgsSettings().remove(SETTINGS_SIGNED_IN)
    QgsSettings().remove(SETTINGS_SIGNED_IN_AS)
    if not authcfg:
        return False
    return _forget(authcfg)


def _forget(authcfg: str) -> bool:
    config = _load(authcfg)
    if config is None:
        return False
    signed_in = sign_in_of(config)
    removed = bool(_manager().removeAuthenticationConfig(authcfg))
    if signed_in is not None:
        _revoke_in_background(signed_in)
    return removed


def _revoke_in_background(signed_in: SignIn) -> JobTask:
    """Ask the portal to revoke ``signed_in``'s refresh token in a task: the portal may take
    seconds to answer, and signing out must not wait for it. A refusal or no answer is only
    logged (without any token): the sign-in is forgotten in QGIS all the same."""
    host = urlsplit(signed_in.portal_url).netloc

    def logged(task: JobTask) -> None:
        if task.result is not True:
            _log.warning(
                "The portal %s did not confirm that it revoked the sign-in of %s; it is "
                "forgotten in QGIS all the same.",
                host,
                signed_in.username,
            )

    job = CallJob(lambda: revoke(ArcGISClient(timeout=10, retries=0), signed_in))
    return start_job_task(
        tr("Signing out of {0}").format(host), job, on_done=logged, can_cancel=False
    )
