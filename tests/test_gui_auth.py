"""QGIS authentication configurations become the core's credential providers, secrets hidden."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsAuthMethodConfig

from plugin.auth import credentials_from_auth_config, token_url_for
from plugin.core.errors import AuthenticationError
from plugin.core.rest import HeaderCredentials, StaticTokenCredentials, TokenCredentials

MASTER_PASSWORD = "offline-map-sync-tests"


@pytest.fixture
def auth_manager(qgis_app):
    manager = QgsApplication.authManager()
    # The test profile's auth database gets this master password on first use.
    assert manager.setMasterPassword(MASTER_PASSWORD, True)
    made = []

    def store(method: str, **values) -> str:
        config = QgsAuthMethodConfig(method)
        config.setName(f"test {method}")
        for key, value in values.items():
            config.setConfig(key, value)
        ok = manager.storeAuthenticationConfig(config)
        assert ok[0] if isinstance(ok, tuple) else ok
        made.append(config.id())
        return config.id()

    yield store
    for config_id in made:
        manager.removeAuthenticationConfig(config_id)


def test_token_url_is_derived_from_a_service_or_portal_url():
    assert (
        token_url_for("https://h.example/arcgis/rest/services/Demo/FeatureServer")
        == "https://h.example/arcgis/tokens/generateToken"
    )
    assert (
        token_url_for("https://h.example/portal/sharing/rest")
        == "https://h.example/portal/sharing/rest/generateToken"
    )


def test_basic_config_becomes_token_credentials_without_showing_the_password(auth_manager):
    config_id = auth_manager("Basic", username="alice", password="alice-secret")
    credentials = credentials_from_auth_config(
        config_id, "http://127.0.0.1:1/arcgis/rest/services/Demo/FeatureServer"
    )
    assert isinstance(credentials, TokenCredentials)
    assert credentials.username == "alice"
    # Nothing answers /rest/info on port 1: the usual token service is the fallback.
    assert credentials.resolve_token_url() == "http://127.0.0.1:1/arcgis/tokens/generateToken"
    assert "alice-secret" not in repr(credentials)


def test_esri_token_config_becomes_a_static_token(auth_manager):
    config_id = auth_manager("EsriToken", token="abc123")
    credentials = credentials_from_auth_config(config_id, "http://h/arcgis/rest/services")
    assert isinstance(credentials, StaticTokenCredentials)
    assert credentials.token_for("http://h/arcgis/rest/services/x") == "abc123"
    assert "abc123" not in repr(credentials)


def test_no_config_means_no_credentials(qgis_app):
    assert credentials_from_auth_config("", "http://h/") is None
    assert credentials_from_auth_config(None, "http://h/") is None


def test_an_unknown_config_is_a_clear_error(qgis_app):
    with pytest.raises(AuthenticationError, match="does not exist"):
        credentials_from_auth_config("nosuch1", "http://h/")


def test_an_esri_token_is_only_sent_to_the_site_it_was_configured_for(auth_manager):
    # A web map may list other organisations' services: they must not receive our token.
    config_id = auth_manager("EsriToken", token="abc123")
    credentials = credentials_from_auth_config(config_id, "https://www.arcgis.com/sharing/rest")
    assert credentials.token_for("https://services3.arcgis.com/x/arcgis/rest/services") == "abc123"
    assert credentials.token_for("https://gis.example.com/arcgis/rest/services/y") is None


def test_captured_headers_are_only_sent_to_their_site():
    credentials = HeaderCredentials(
        {"Authorization": "Bearer secret"}, "https://gis.example.com/portal/sharing/rest"
    )
    assert credentials.headers("https://gis.example.com/server/rest/services/a") == {
        "Authorization": "Bearer secret"
    }
    assert credentials.headers("https://other.org/arcgis/rest/services/a") == {}
