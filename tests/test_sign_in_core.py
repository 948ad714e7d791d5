"""OAuth 2.0 sign-in (authorization code + PKCE, loopback redirect), token renewal and portal
browsing in the core, against the reference portal. The "browser" here is a plain HTTP client
that reads the sign-in form and submits it; test_sign_in_browser.py does it with chromium."""

from __future__ import annotations

import time

import pytest

from plugin.core.errors import AuthenticationError, CancelledError, InsecureConnectionError
from plugin.core.oauth import AuthorizationCodeFlow, OAuthCredentials, sign_in
from plugin.core.portal import PortalAddressError, PortalBrowser, portal_rest_url
from plugin.core.rest import ArcGISClient, CredentialProvider
from plugin.core.sites import CredentialScope
from plugin.core.take_offline import OfflineMapTask
from tests.featureservice.community import (
    ALICE_PRIVATE_MAP_ID,
    CREW_MAP_ID,
    DEMO_SERVICE_ITEM_ID,
    FIELD_CREW_GROUP_ID,
)
from tests.featureservice.oauth import DEFAULT_CLIENT_ID
from tests.featureservice.seed import DEMO_WEBMAP_ID
from tests.form_browser import form_browser


def _sign_in(server, open_browser, wait_seconds=30):
    """A sign-in to the reference portal, the browser played by ``open_browser``."""
    return sign_in(
        server.portal_url,
        DEFAULT_CLIENT_ID,
        open_browser,
        wait_seconds=wait_seconds,
        plain_http_hosts=server.plain_http_hosts,
    )


def _signed_in(server, user="alice"):
    return _sign_in(server, form_browser(user, f"{user}-secret"))


def _oauth(server, signed_in):
    """The sign-in's credentials, bound to the reference portal's site; plain http allowed to
    its loopback host only, as a user would in the setting."""
    scope = CredentialScope.of([server.portal_url], plain_http_hosts=server.plain_http_hosts)
    return OAuthCredentials(signed_in, scope=scope)


def test_sign_in_gives_a_refreshable_access_the_services_accept(secured_reference_server):
    server = secured_reference_server
    signed_in = _signed_in(server)
    assert (signed_in.username, signed_in.full_name) == ("alice", "Alice Tester")
    assert signed_in.refresh_token and "alice-secret" not in repr(signed_in)
    assert signed_in.access_token not in repr(signed_in)
    client = ArcGISClient(_oauth(server, signed_in))
    assert client.service_info(server.service_url("Demo"))["layers"]


def test_a_token_expiring_during_a_take_offline_is_renewed_and_the_job_completes(
    secured_reference_server, tmp_path
):
    server = secured_reference_server
    credentials = _oauth(server, _signed_in(server))
    task = OfflineMapTask(
        portal_url=server.portal_url,
        webmap_item_id=DEMO_WEBMAP_ID,
        client=ArcGISClient(credentials),
    )
    parameters = task.create_default_generate_offline_map_parameters(None)
    # Every token dies just as the server is asked to prepare the data.
    server.inject_fault("createReplica", "expire_tokens")
    result = task.generate_offline_map(parameters, tmp_path / "map").run()

    assert credentials.refreshes == 1 and server.oauth.grants["refresh_token"] == 1
    assert result.offline_map.geodatabases


def test_a_short_lived_token_is_renewed_before_it_expires(secured_reference_server):
    server = secured_reference_server
    server.oauth.access_seconds = 1
    credentials = _oauth(server, _signed_in(server))
    first = credentials.sign_in.access_token
    refused = []

    class Watched(CredentialProvider):  # the client calls refresh() only after a 498
        def token_for(self, url):
            return credentials.token_for(url)

        def refresh(self, url):
            refused.append(url)
            credentials.refresh(url)

    client = ArcGISClient(Watched())
    # Expiry is a moment away: a request made close to it renews first, so no 498 is met.
    for _ in range(100):
        if credentials.sign_in.access_token != first:
            break
        time.sleep(0.05)
        client.service_info(server.service_url("Demo"))
    assert credentials.sign_in.access_token != first
    assert refused == []


def test_an_expired_refresh_token_says_sign_in_again(secured_reference_server):
    server = secured_reference_server
    credentials = _oauth(server, _signed_in(server))
    server.oauth.expire_refresh_tokens()
    server.expire_tokens()
    with pytest.raises(AuthenticationError, match="has expired. Sign in again"):
        ArcGISClient(credentials).service_info(server.service_url("Demo"))


def test_cancelling_in_the_browser_is_a_cancellation(secured_reference_server):
    server = secured_reference_server
    with pytest.raises(CancelledError, match="cancelled in the browser"):
        _sign_in(server, form_browser("", "", cancel=True))
    assert server.oauth.grants["authorization_code"] == 0


def test_an_answer_with_a_foreign_state_is_refused(secured_reference_server):
    server = secured_reference_server
    with pytest.raises(AuthenticationError, match="state mismatch"):
        _sign_in(server, form_browser("alice", "alice-secret", state="forged"))
    assert server.oauth.grants["authorization_code"] == 0


def test_no_answer_from_the_browser_times_out(secured_reference_server):
    with pytest.raises(AuthenticationError, match="No answer from the browser"):
        _sign_in(secured_reference_server, lambda url: None, wait_seconds=0.3)


def test_a_portal_without_oauth_is_said_so_before_the_browser_opens(secured_reference_server):
    secured_reference_server.oauth.enabled = False
    opened = []
    with pytest.raises(AuthenticationError, match="does not offer OAuth"):
        _sign_in(secured_reference_server, opened.append, wait_seconds=1)
    assert opened == []


def test_wrong_portal_addresses_are_explained(secured_reference_server):
    server = secured_reference_server
    with pytest.raises(PortalAddressError, match="No ArcGIS portal answers"):
        AuthorizationCodeFlow(
            server.service_url("Demo"), DEFAULT_CLIENT_ID, plain_http_hosts=server.plain_http_hosts
        ).start()
    with pytest.raises(InsecureConnectionError, match="over plain http"):
        AuthorizationCodeFlow("http://gis.example.com/portal", DEFAULT_CLIENT_ID).start()
    with pytest.raises(PortalAddressError, match="not a portal address"):
        portal_rest_url("ftp://gis.example.com")


def test_no_sign_in_goes_over_plain_http_unless_the_user_allowed_that_host(
    secured_reference_server,
):
    server = secured_reference_server
    opened = []
    with pytest.raises(InsecureConnectionError, match="over plain http"):
        sign_in(server.portal_url, DEFAULT_CLIENT_ID, opened.append, wait_seconds=1)
    assert opened == [] and server.oauth.grants["authorization_code"] == 0
    signed_in = _signed_in(server)
    # Stored sign-ins are bound to their portal's site: not over plain http unless allowed,
    # and never to another site (another port is another site).
    with pytest.raises(InsecureConnectionError):
        OAuthCredentials(signed_in)
    credentials = _oauth(server, signed_in)
    assert credentials.token_for(server.service_url("Demo")) == signed_in.access_token
    other_port = server.service_url("Demo").replace(f":{server.port}/", ":1/")
    assert credentials.token_for(other_port) is None
    assert credentials.token_for("https://services.example.com/arcgis/rest") is None


def test_portal_addresses_as_users_type_them():
    assert portal_rest_url("") == "https://www.arcgis.com/sharing/rest"
    assert portal_rest_url("myorg.maps.arcgis.com") == "https://myorg.maps.arcgis.com/sharing/rest"
    assert (
        portal_rest_url("https://gis.example.com/portal/home/")
        == "https://gis.example.com/portal/sharing/rest"
    )
    assert (
        portal_rest_url("https://gis.example.com/portal/sharing/rest/content")
        == "https://gis.example.com/portal/sharing/rest"
    )


def test_browsing_lists_what_the_user_may_see(secured_reference_server):
    server = secured_reference_server
    browser = PortalBrowser(
        ArcGISClient(_oauth(server, _signed_in(server, "bob"))), server.portal_url
    )
    me = browser.me()
    assert me.username == "bob" and [g.group_id for g in me.groups] == [FIELD_CREW_GROUP_ID]
    assert [i.item_id for i in browser.my_items("bob")] == [CREW_MAP_ID]
    assert [i.item_id for i in browser.group_items(FIELD_CREW_GROUP_ID)] == [CREW_MAP_ID]
    organisation = {i.item_id for i in browser.organisation_items(me.org_id)}
    assert {DEMO_WEBMAP_ID, CREW_MAP_ID, DEMO_SERVICE_ITEM_ID} <= organisation
    assert ALICE_PRIVATE_MAP_ID not in organisation
    found = browser.search("crew")
    assert [(i.title, i.owner, i.is_web_map) for i in found] == [("Field crew map", "bob", True)]
    assert found[0].modified and browser.thumbnail(found[0])[:4] == b"\x89PNG"


def test_an_account_without_access_to_a_map_gets_a_clear_refusal(
    secured_reference_server, tmp_path
):
    server = secured_reference_server
    task = OfflineMapTask(
        portal_url=server.portal_url,
        webmap_item_id=ALICE_PRIVATE_MAP_ID,
        client=ArcGISClient(_oauth(server, _signed_in(server, "bob"))),
    )
    with pytest.raises(AuthenticationError, match="lacks access"):
        task.webmap()
