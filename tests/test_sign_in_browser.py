"""Signing in with a real browser (headless chromium): the plugin hands the authorize URL to
the browser, the user signs in on the portal's page, the redirect reaches the plugin, the
tokens land in QGIS's authentication database, a web map is listed and taken offline while
its token expires, and signing out forgets it all."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsSettings

from plugin.auth import APPROVED_SITES_KEY, credentials_from_auth_config
from plugin.core.errors import (
    AuthenticationError,
    CancelledError,
    InsecureConnectionError,
    SiteNotApprovedError,
)
from plugin.core.oauth import OAuthCredentials, sign_in
from plugin.core.portal import PortalBrowser
from plugin.core.rest import ArcGISClient
from plugin.core.take_offline import OfflineMapTask
from plugin.sign_in import (
    SETTINGS_SIGNED_IN,
    current_account,
    sign_out,
    store_account,
    store_api_key,
    store_sign_in,
)
from tests.chromium import BrowserUser
from tests.featureservice.oauth import DEFAULT_CLIENT_ID
from tests.featureservice.seed import DEMO_WEBMAP_ID
from tests.test_gui_auth import MASTER_PASSWORD
from tests.test_gui_auth import plain_http_on_loopback as _plain_http_fixture

# The reference portal speaks plain http on 127.0.0.1: allowed for that host, as a user would.
plain_http_on_loopback = _plain_http_fixture


@pytest.fixture
def auth_db(qgis_app):
    manager = QgsApplication.authManager()
    assert manager.setMasterPassword(MASTER_PASSWORD, True)
    before = set(manager.configIds())
    yield manager
    sign_out()
    for config_id in set(manager.configIds()) - before:
        manager.removeAuthenticationConfig(config_id)


def test_sign_in_in_the_browser_then_browse_take_offline_and_sign_out(
    chromium, secured_reference_server, auth_db, plain_http_on_loopback, tmp_path
):
    server = secured_reference_server
    user = BrowserUser(chromium, "alice", "alice-secret")

    signed_in = sign_in(
        server.portal_url,
        DEFAULT_CLIENT_ID,
        user,
        wait_seconds=90,
        plain_http_hosts=server.plain_http_hosts,
    )

    assert "You can close this window" in user.wait()
    assert user.opened[0].startswith(f"{server.portal_url}/oauth2/authorize?")
    authcfg = store_sign_in(signed_in)
    assert authcfg in auth_db.configIds()
    account = current_account()
    assert (account.username, account.full_name) == ("alice", "Alice Tester")
    # The settings name the configuration, never hold a secret.
    settings = QgsSettings()
    stored = {key: str(settings.value(key)) for key in settings.allKeys()}
    assert stored[SETTINGS_SIGNED_IN] == authcfg
    assert not any(
        signed_in.refresh_token in v or signed_in.access_token in v for v in stored.values()
    )

    credentials = credentials_from_auth_config(authcfg, server.portal_url)
    assert isinstance(credentials, OAuthCredentials)
    client = ArcGISClient(credentials)
    found = PortalBrowser(client, server.portal_url).search("demo offline")
    maps = [i for i in found if i.item_id == DEMO_WEBMAP_ID]
    assert [(i.title, i.owner, i.is_web_map) for i in maps] == [("Demo offline map", "seed", True)]

    task = OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=maps[0].item_id, client=client
    )
    parameters = task.create_default_generate_offline_map_parameters(None)
    server.inject_fault("createReplica", "expire_tokens")  # the token dies mid-job
    result = task.generate_offline_map(parameters, tmp_path / "map").run()
    assert result.offline_map.geodatabases
    assert credentials.refreshes == 1 and server.oauth.grants["refresh_token"] == 1

    assert sign_out()
    assert authcfg not in auth_db.configIds()
    assert current_account() is None
    # The portal is asked to revoke it too, in the background.
    assert revoked_on_the_portal(server)
    with pytest.raises(AuthenticationError, match="does not exist"):
        credentials_from_auth_config(authcfg, server.portal_url)


def test_cancelling_in_the_browser_stores_nothing(chromium, secured_reference_server, auth_db):
    before = set(auth_db.configIds())
    user = BrowserUser(chromium, "", "", cancel=True)
    with pytest.raises(CancelledError, match="cancelled in the browser"):
        sign_in(
            secured_reference_server.portal_url,
            DEFAULT_CLIENT_ID,
            user,
            wait_seconds=90,
            plain_http_hosts=secured_reference_server.plain_http_hosts,
        )
    user.wait()
    assert set(auth_db.configIds()) == before and current_account() is None


def test_an_api_key_is_bound_to_its_portal_and_other_sites_need_approval(
    secured_reference_server, auth_db, plain_http_on_loopback
):
    server = secured_reference_server
    api_key = server.app.auth.issue("alice", 3600)  # what the portal would hand out
    before = set(auth_db.configIds())
    # Plain http to a host the user did not allow: refused before the key is sent or stored.
    with pytest.raises(InsecureConnectionError):
        store_api_key(server.portal_url, api_key)
    with pytest.raises(InsecureConnectionError):
        store_account(server.portal_url, "alice", "alice-secret")
    assert set(auth_db.configIds()) == before and current_account() is None

    authcfg = store_api_key(server.portal_url, api_key, server.plain_http_hosts)
    credentials = credentials_from_auth_config(authcfg, server.portal_url)
    assert credentials.token_for(server.service_url("Demo")) == api_key
    assert credentials.token_for("https://services.example.com/arcgis/rest/services") is None
    # A web map naming a service elsewhere: that site needs the user's approval first.
    elsewhere = "https://services.example.com/arcgis/rest/services/Demo/FeatureServer"
    with pytest.raises(SiteNotApprovedError):
        credentials_from_auth_config(authcfg, server.portal_url, also_for=[elsewhere])
    approved = credentials_from_auth_config(
        authcfg, server.portal_url, also_for=[elsewhere], approve_new_sites=True
    )
    assert approved.token_for(elsewhere) == api_key
    QgsSettings().remove(APPROVED_SITES_KEY.format(authcfg))

    with pytest.raises(AuthenticationError):
        store_account(server.portal_url, "alice", "wrong", server.plain_http_hosts)
    authcfg = store_account(server.portal_url, "alice", "alice-secret", server.plain_http_hosts)
    assert current_account().username == "alice"
    account = credentials_from_auth_config(authcfg, server.portal_url)
    assert ArcGISClient(account).service_info(server.service_url("Demo"))["layers"]


def revoked_on_the_portal(server, timeout: float = 30.0) -> bool:
    """Wait (processing Qt events, so the revoking task can finish) until the portal holds no
    valid refresh token."""
    import time

    from tests.gui_user import process_events

    deadline = time.monotonic() + timeout
    while server.oauth.refresh_token_count() and time.monotonic() < deadline:
        process_events(0.02)
    return server.oauth.refresh_token_count() == 0


def _signed_in_with_the_form(server):
    """Alice signed in through the portal's form (a plain HTTP client, no chromium needed)."""
    from tests.form_browser import form_browser

    return sign_in(
        server.portal_url,
        DEFAULT_CLIENT_ID,
        form_browser("alice", "alice-secret"),
        wait_seconds=30,
        plain_http_hosts=server.plain_http_hosts,
    )


def test_tokens_renewed_during_a_background_job_are_kept_for_the_next_session(
    secured_reference_server, auth_db, plain_http_on_loopback, tmp_path
):
    from qgis.core import QgsAuthMethodConfig

    from plugin.sign_in import sign_in_of
    from plugin.task import CallJob, start_job_task, wait_for_task
    from tests.gui_user import process_events

    server = secured_reference_server
    signed_in = _signed_in_with_the_form(server)
    authcfg = store_sign_in(signed_in)
    credentials = credentials_from_auth_config(authcfg, server.portal_url)
    task = OfflineMapTask(
        portal_url=server.portal_url,
        webmap_item_id=DEMO_WEBMAP_ID,
        client=ArcGISClient(credentials),
    )
    parameters = task.create_default_generate_offline_map_parameters(None)
    server.inject_fault("createReplica", "expire_tokens")  # the token dies mid-job

    # As the panel runs it: a QgsTask on a worker thread.
    job = CallJob(lambda: task.generate_offline_map(parameters, tmp_path / "map").run())
    running = start_job_task("Taking a map offline", job)
    assert wait_for_task(running, 120) and running.succeeded, running.error
    process_events(0.2)

    assert credentials.refreshes == 1
    renewed = credentials.sign_in
    assert renewed.access_token != signed_in.access_token
    config = QgsAuthMethodConfig()
    assert auth_db.loadAuthenticationConfig(authcfg, config, True)
    kept = sign_in_of(config)
    assert kept.access_token == renewed.access_token
    assert kept.expires_at == renewed.expires_at > signed_in.expires_at
    assert kept.refresh_token == signed_in.refresh_token
    # The next session uses the kept token without renewing it first.
    again = credentials_from_auth_config(authcfg, server.portal_url)
    assert ArcGISClient(again).service_info(server.service_url("Demo"))["layers"]
    assert again.refreshes == 0 and server.oauth.grants["refresh_token"] == 1


def test_a_renewed_token_is_not_stored_after_sign_out(
    secured_reference_server, auth_db, plain_http_on_loopback
):
    from plugin.core.oauth import refresh_access
    from plugin.sign_in import store_renewed_sign_in

    server = secured_reference_server
    signed_in = _signed_in_with_the_form(server)
    authcfg = store_sign_in(signed_in)
    renewed = refresh_access(ArcGISClient(retries=0), signed_in)
    before = set(auth_db.configIds())
    assert sign_out()

    assert not store_renewed_sign_in(authcfg, renewed)
    assert set(auth_db.configIds()) == before - {authcfg}
