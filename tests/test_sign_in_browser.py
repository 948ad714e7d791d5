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
    assert server.oauth.refresh_token_count() == 0  # revoked on the portal too
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
