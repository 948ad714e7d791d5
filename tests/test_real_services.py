"""ArcGIS services as they really answer: token services named in ``/rest/info``, 403s without
an error code, enumerations spelled differently, and the resources other clients ask for."""

from __future__ import annotations

import pytest
import requests

from plugin.core.errors import AuthenticationError
from plugin.core.rest import (
    TokenCredentials,
    discover_token_url,
    guess_token_url,
    token_url_from_info,
)
from plugin.core.schema import layer_definition
from plugin.core.service import schema_changes
from tests.test_hostile_inputs import alter_points_on_server, with_pending_edits
from tests.test_sync import DEMO, POINTS, assert_no_errors, fast_client, server_rows, sync_map

# What /rest/info answers on an ArcGIS Online hosted server and on an Enterprise server
# federated with its portal (written from the REST reference, values made up).
ONLINE_SERVER_INFO = {
    "currentVersion": 11.3,
    "fullVersion": "11.3.0",
    "owningSystemUrl": "https://www.arcgis.com",
    "authInfo": {
        "isTokenBasedSecurity": True,
        "tokenServicesUrl": "https://www.arcgis.com/sharing/rest/generateToken",
    },
}
FEDERATED_SERVER_INFO = {
    "currentVersion": 11.1,
    "owningSystemUrl": "https://gis.example.org/portal",
    "authInfo": {"isTokenBasedSecurity": True},
}


def test_the_token_service_an_info_answer_names_is_read_there():
    assert token_url_from_info(ONLINE_SERVER_INFO) == (
        "https://www.arcgis.com/sharing/rest/generateToken"
    )
    assert token_url_from_info(FEDERATED_SERVER_INFO) == (
        "https://gis.example.org/portal/sharing/rest/generateToken"
    )
    assert token_url_from_info({"currentVersion": 10.91}) is None
    assert token_url_from_info(["not", "an", "object"]) is None


def alice_discovering_her_token_service(server, service_url: str) -> TokenCredentials:
    """Alice's credentials without a token URL (discovered from the service's server)."""
    return TokenCredentials(
        None,
        "alice",
        "alice-secret",
        site_url=service_url,
        plain_http_hosts=server.plain_http_hosts,
    )


def test_a_federated_server_signs_in_at_its_portal(secured_reference_server):
    server = secured_reference_server
    server.app.federated = True
    service_url = server.service_url(DEMO)

    credentials = alice_discovering_her_token_service(server, service_url)
    info = fast_client(credentials).service_info(service_url)

    assert info["layers"]
    assert credentials.token_url == f"{server.root_url}/sharing/rest/generateToken"
    # The guess that was used before fails on such a server: the test can tell them apart.
    guessed = TokenCredentials(
        guess_token_url(service_url),
        "alice",
        "alice-secret",
        plain_http_hosts=server.plain_http_hosts,
    )
    with pytest.raises(AuthenticationError):
        fast_client(guessed).service_info(service_url)


def test_without_an_info_answer_the_usual_token_service_is_used(secured_reference_server):
    server = secured_reference_server
    server.inject_fault("info", "http503")
    service_url = server.service_url(DEMO)
    credentials = alice_discovering_her_token_service(server, service_url)

    assert fast_client(credentials).service_info(service_url)["layers"]
    assert credentials.token_url == server.token_url == guess_token_url(service_url)


def test_a_token_service_on_another_site_never_gets_the_password(secured_reference_server):
    server = secured_reference_server
    server.app.federated = True
    server.app.owning_system_url = "https://portal.elsewhere.example/portal"
    with pytest.raises(AuthenticationError, match="password is not sent there") as refused:
        discover_token_url(server.service_url(DEMO))
    assert "alice-secret" not in str(refused.value)


def test_403_without_a_code_says_the_account_lacks_access(reference_server, tmp_path):
    offline_map, _local, _added = with_pending_edits(reference_server, tmp_path / "map")
    reference_server.inject_fault("synchronizeReplica", "http403")

    result = sync_map(offline_map)

    message = result.geodatabase_errors["Demo.gpkg"]
    assert "lacks access" in message and "Sign in with another account" in message
    reference_server.inject_fault("service", "http403")
    with pytest.raises(AuthenticationError, match="lacks access") as refused:
        fast_client().service_info(reference_server.service_url(DEMO))
    assert refused.value.code == 403


def test_esri_enumerations_are_compared_case_insensitively():
    stored = layer_definition(
        0,
        {
            "name": "Survey points",
            "type": "Feature Layer",
            "geometryType": "esriGeometryMultipoint",
            "objectIdField": "OBJECTID",
            "globalIdField": "GlobalID",
            "fields": [
                {"name": "OBJECTID", "type": "esriFieldTypeOID"},
                {"name": "GlobalID", "type": "esriFieldTypeGlobalID"},
                {"name": "count", "type": "esriFieldTypeSmallInteger", "editable": True},
            ],
        },
        "Survey_points",
        3857,
        "geom",
    )
    now = {
        "geometryType": "esriGeometryMultiPoint",
        "fields": [{"name": "COUNT", "type": "esriFieldTypeSMALLINTEGER"}],
    }
    assert schema_changes(stored, now) == []
    now["geometryType"] = "esriGeometryPolygon"
    now["fields"][0]["type"] = "esriFieldTypeString"
    assert schema_changes(stored, now) == [
        "the field 'count' changed from esriFieldTypeSmallInteger to esriFieldTypeString",
        "the geometry type changed from esriGeometryMultipoint to esriGeometryPolygon",
    ]


def test_a_service_that_respells_its_types_still_syncs(reference_server, tmp_path):
    offline_map, local, added = with_pending_edits(reference_server, tmp_path / "map")

    def respell(definition: dict) -> None:  # as esriGeometryMultipoint/-MultiPoint differ
        definition["geometryType"] = "esriGeometrypoint"

    alter_points_on_server(reference_server, respell)

    assert_no_errors(sync_map(offline_map))
    assert added in server_rows(reference_server, POINTS)
    assert not local.has_pending()


def test_the_portal_answers_sharing_rest_info(reference_server):
    info = requests.get(
        f"{reference_server.portal_url}/info", params={"f": "json"}, timeout=10
    ).json()
    assert info["authInfo"]["tokenServicesUrl"] == (
        f"{reference_server.root_url}/sharing/rest/generateToken"
    )
    assert info["owningSystemUrl"] == reference_server.root_url


def test_layers_with_relationships_answer_query_related_records(reference_server):
    url = reference_server.service_url(DEMO)
    points = {
        f["attributes"]["GlobalID"]: f["attributes"]["OBJECTID"]
        for f in reference_server.query_all(DEMO, POINTS)
    }
    inspections = reference_server.query_all(DEMO, 3)
    parent = inspections[0]["attributes"]["PointGlobalID"]
    expected = sorted(
        i["attributes"]["GlobalID"]
        for i in inspections
        if i["attributes"]["PointGlobalID"] == parent
    )
    answer = requests.get(
        f"{url}/{POINTS}/queryRelatedRecords",
        params={"objectIds": points[parent], "relationshipId": 0, "outFields": "*", "f": "json"},
        timeout=10,
    ).json()
    (group,) = answer["relatedRecordGroups"]
    assert group["objectId"] == points[parent]
    assert sorted(r["attributes"]["GlobalID"] for r in group["relatedRecords"]) == expected
    assert {f["name"] for f in answer["fields"]} >= {"GlobalID", "PointGlobalID"}
    back = requests.get(
        f"{url}/3/queryRelatedRecords",
        params={
            "objectIds": inspections[0]["attributes"]["OBJECTID"],
            "relationshipId": 0,
            "outFields": "name",
            "f": "json",
        },
        timeout=10,
    ).json()
    assert back["geometryType"] == "esriGeometryPoint"
    (group,) = back["relatedRecordGroups"]
    (point,) = group["relatedRecords"]
    names = {
        f["attributes"]["GlobalID"]: f["attributes"]["name"]
        for f in reference_server.query_all(DEMO, POINTS)
    }
    assert point["attributes"]["name"] == names[parent]
    assert "geometry" in point
