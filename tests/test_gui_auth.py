"""QGIS authentication configurations become the core's credential providers, secrets hidden,
bound to the sites they were made for or that the user approved."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings

from plugin.auth import (
    PLAIN_HTTP_HOSTS_KEY,
    credentials_from_auth_config,
    token_url_for,
)
from plugin.core.errors import AuthenticationError, InsecureConnectionError, SiteNotApprovedError
from plugin.core.rest import HeaderCredentials, StaticTokenCredentials, TokenCredentials
from plugin.core.sites import CredentialScope

MASTER_PASSWORD = "offline-map-sync-tests"


@pytest.fixture
def auth_manager(qgis_app):
    """``store(method, uri="", **values)`` makes a QGIS auth configuration (``uri``: the site
    it is made for) and returns its id; the configurations go afterwards (their approvals go
    with the settings before the next test)."""
    manager = QgsApplication.authManager()
    # The test profile's auth database gets this master password on first use.
    assert manager.setMasterPassword(MASTER_PASSWORD, True)
    made = []

    def store(method: str, *, uri: str = "", **values) -> str:
        config = QgsAuthMethodConfig(method)
        config.setName(f"test {method}")
        config.setUri(uri)
        for key, value in values.items():
            config.setConfig(key, value)
        ok = manager.storeAuthenticationConfig(config)
        assert ok[0] if isinstance(ok, tuple) else ok
        made.append(config.id())
        return config.id()

    yield store
    for config_id in made:
        manager.removeAuthenticationConfig(config_id)


@pytest.fixture
def plain_http_on_loopback(qgis_app):
    """The reference service speaks plain http on 127.0.0.1: allow credentials over plain http
    to that host, as a user would in the setting, for this test only."""
    QgsSettings().setValue(PLAIN_HTTP_HOSTS_KEY, ["127.0.0.1"])


def test_token_url_is_derived_from_a_service_or_portal_url():
    assert (
        token_url_for("https://h.example/arcgis/rest/services/Demo/FeatureServer")
        == "https://h.example/arcgis/tokens/generateToken"
    )
    assert (
        token_url_for("https://h.example/portal/sharing/rest")
        == "https://h.example/portal/sharing/rest/generateToken"
    )


SERVICE = "https://gis.example.com/arcgis/rest/services/Demo/FeatureServer"


def test_basic_config_becomes_token_credentials_without_showing_the_password(
    auth_manager, plain_http_on_loopback
):
    config_id = auth_manager(
        "Basic", uri="http://127.0.0.1:1", username="alice", password="alice-secret"
    )
    credentials = credentials_from_auth_config(
        config_id, "http://127.0.0.1:1/arcgis/rest/services/Demo/FeatureServer"
    )
    assert isinstance(credentials, TokenCredentials)
    assert credentials.username == "alice"
    # Nothing answers /rest/info on port 1: the usual token service is the fallback.
    assert credentials.resolve_token_url() == "http://127.0.0.1:1/arcgis/tokens/generateToken"
    assert "alice-secret" not in repr(credentials)


def test_esri_token_config_becomes_a_static_token(auth_manager):
    config_id = auth_manager("EsriToken", uri="https://h.example/arcgis", token="abc123")
    credentials = credentials_from_auth_config(config_id, "https://h.example/arcgis/rest/services")
    assert isinstance(credentials, StaticTokenCredentials)
    assert credentials.token_for("https://h.example/arcgis/rest/services/x") == "abc123"
    assert "abc123" not in repr(credentials)


def test_no_config_means_no_credentials(qgis_app):
    assert credentials_from_auth_config("", "http://h/") is None
    assert credentials_from_auth_config(None, "http://h/") is None


def test_an_unknown_config_is_a_clear_error(qgis_app):
    with pytest.raises(AuthenticationError, match="does not exist"):
        credentials_from_auth_config("nosuch1", "http://h/")


def test_an_esri_token_is_only_sent_to_the_site_it_was_configured_for(auth_manager):
    # A web map may list other organisations' services: they must not receive our token.
    config_id = auth_manager("EsriToken", uri="https://www.arcgis.com", token="abc123")
    credentials = credentials_from_auth_config(config_id, "https://www.arcgis.com/sharing/rest")
    assert credentials.token_for("https://www.arcgis.com/sharing/rest/content") == "abc123"
    assert credentials.token_for("https://gis.example.com/arcgis/rest/services/y") is None
    # Same host, another scheme or port: another site.
    assert credentials.token_for("http://www.arcgis.com/sharing/rest/content") is None
    assert credentials.token_for("https://www.arcgis.com:8443/sharing/rest") is None


def test_captured_headers_are_only_sent_to_their_site():
    credentials = HeaderCredentials(
        {"Authorization": "Bearer secret"},
        CredentialScope.of(["https://gis.example.com/portal/sharing/rest"]),
    )
    assert credentials.headers("https://gis.example.com/server/rest/services/a") == {
        "Authorization": "Bearer secret"
    }
    assert credentials.headers("https://other.org/arcgis/rest/services/a") == {}


def test_a_credential_for_another_host_needs_the_users_approval_which_is_remembered(
    auth_manager,
):
    config_id = auth_manager("Basic", uri="https://gis.example.com", username="a", password="b")
    elsewhere = "https://maps.other.org/arcgis/rest/services/Demo/FeatureServer"

    with pytest.raises(SiteNotApprovedError) as caught:
        credentials_from_auth_config(config_id, SERVICE, also_for=[elsewhere])
    assert [str(site) for site in caught.value.sites] == ["https://maps.other.org"]
    assert "maps.other.org" in str(caught.value)

    approved = credentials_from_auth_config(
        config_id, SERVICE, also_for=[elsewhere], approve_new_sites=True
    )
    assert approved.scope.allows(elsewhere)
    # Asked once: the approval is recorded for this configuration.
    again = credentials_from_auth_config(config_id, elsewhere)
    assert again.scope.allows(elsewhere) and again.scope.allows(SERVICE)


def test_a_credential_without_a_uri_is_bound_on_first_use_with_approval(auth_manager):
    config_id = auth_manager("EsriToken", token="abc123")
    with pytest.raises(SiteNotApprovedError):
        credentials_from_auth_config(config_id, SERVICE)
    credentials_from_auth_config(config_id, SERVICE, approve_new_sites=True)
    assert credentials_from_auth_config(config_id, SERVICE).token_for(SERVICE) == "abc123"


def test_no_credential_goes_over_plain_http_unless_that_host_is_allowed(auth_manager):
    config_id = auth_manager("Basic", uri="http://127.0.0.1:8000", username="a", password="b")
    url = "http://127.0.0.1:8000/arcgis/rest/services/Demo/FeatureServer"
    with pytest.raises(InsecureConnectionError, match="plain http"):
        credentials_from_auth_config(config_id, url)
    # Not even after approving the site: plain http is a setting of its own.
    with pytest.raises(InsecureConnectionError):
        credentials_from_auth_config(config_id, url, approve_new_sites=True)


def test_plain_http_to_an_allowed_host_works(auth_manager, plain_http_on_loopback):
    config_id = auth_manager("Basic", uri="http://127.0.0.1:8000", username="a", password="b")
    url = "http://127.0.0.1:8000/arcgis/rest/services/Demo/FeatureServer"
    credentials = credentials_from_auth_config(config_id, url)
    assert credentials.scope.allows(url)
    assert not credentials.scope.allows("http://127.0.0.1:8001/arcgis/rest/services")
