"""Ahead-of-time offline maps: the reference portal's map areas and packages, taking an area
offline in each update mode, and keeping it current with scheduled update packages."""

from __future__ import annotations

import json

import pytest
import requests

from plugin.core.enums import (
    OfflineUpdateAvailability,
    PreplannedScheduledUpdatesOption,
    PreplannedUpdateMode,
    SyncDirection,
)
from plugin.core.errors import NetworkError
from plugin.core.geodatabase import Geodatabase
from plugin.core.offline_map import OfflineMap
from plugin.core.sync import OfflineMapSyncTask
from tests.featureservice import packages
from tests.featureservice.seed import DEMO_COUNTS, DEMO_WEBMAP_ID
from tests.preplanned_helpers import (
    DEMO_SERVICE,
    POINTS,
    assert_matches_service,
    fast_client,
    first_point,
    generation,
    local_rows,
    new_point,
    server_rows,
    take_area_offline,
    update_history,
    whole_area,
)


def _package_item(server) -> dict:
    client = fast_client()
    _, area = whole_area(server, client)
    return client.portal_item(server.portal_url, area.packages[0].item_id)


def _resources(server, item_id: str) -> list[dict]:
    url = f"{server.portal_url}/content/items/{item_id}/resources"
    return requests.get(url, params={"f": "json"}, timeout=10).json()["resources"]


# -- the reference portal ------------------------------------------------------------------------
def test_web_map_lists_its_map_areas_with_packages_and_sizes(reference_server):
    client = fast_client()
    task, _ = whole_area(reference_server, client)

    areas = task.preplanned_map_areas()

    assert [a.title for a in areas] == ["Whole demo area", "West half"]
    for area in areas:
        assert area.area_of_interest["spatialReference"]["wkid"] == 102100
        assert len(area.extent) == 2
        # One package per feature service; the basemap's tile and vector tile packages apart.
        (package,) = area.packages
        basemaps = area.basemap_packages
        assert [p.kind for p in basemaps] == ["raster", "vector"]
        assert all(p.size > 0 for p in basemaps)
        assert package.service_url == reference_server.service_url(DEMO_SERVICE)
        assert package.replica_id and package.generation is not None
        assert package.last_purged_gen is None
        data = requests.get(
            f"{reference_server.portal_url}/content/items/{package.item_id}/data", timeout=10
        )
        assert package.size == len(data.content) > 0
        assert area.size == package.size + sum(p.size for p in basemaps)
    whole, west = areas
    assert whole.area_of_interest["xmax"] > west.area_of_interest["xmax"]


def test_package_data_is_a_create_replica_result_of_the_area(reference_server):
    item = _package_item(reference_server)
    data = requests.get(
        f"{reference_server.portal_url}/content/items/{item['id']}/data", timeout=10
    ).json()

    assert data["responseType"] == "esriReplicaResponseTypeData"
    assert data["replicaID"] == item["properties"]["replicaID"]
    assert data["replicaServerGen"] == item["properties"]["replicaServerGen"]
    counts = {layer["id"]: len(layer["features"]) for layer in data["layers"]}
    assert counts == DEMO_COUNTS
    assert reference_server.replica(item["properties"]["replicaID"]) is not None


def test_refresh_stores_each_download_sync_as_a_delta_resource(reference_server):
    item = _package_item(reference_server)
    gid = first_point(reference_server)
    assert reference_server.refresh_packages()[0].stored is None  # nothing changed yet

    reference_server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "One"}])
    reports = reference_server.refresh_packages()

    (report,) = [r for r in reports if r.package_item_id == item["id"]]
    gen = reference_server.server_gen(DEMO_SERVICE)
    assert report.stored == f"d_{gen}.json"
    (resource,) = _resources(reference_server, item["id"])
    assert resource["resource"] == f"d_{gen}.json"
    body = requests.get(
        f"{reference_server.portal_url}/content/items/{item['id']}/resources/d_{gen}.json",
        timeout=10,
    ).content
    assert resource["size"] == len(body)
    delta = json.loads(body)
    # Exactly a synchronizeReplica download result.
    assert delta["replicaID"] == item["properties"]["replicaID"]
    assert delta["responseType"] == "esriReplicaResponseTypeEdits"
    assert delta["replicaServerGen"] == gen
    (points,) = [e for e in delta["edits"] if e["id"] == POINTS]
    assert [f["attributes"]["name"] for f in points["features"]["updates"]] == ["One"]


def test_purge_by_count_keeps_the_newest_and_records_last_purged_gen(reference_server):
    item_id = _package_item(reference_server)["id"]
    gid = first_point(reference_server)
    gens = []
    for name in ("One", "Two", "Three"):
        before = reference_server.server_gen(DEMO_SERVICE)
        reference_server.apply_edits(
            DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": name}]
        )
        gens.append((before, reference_server.server_gen(DEMO_SERVICE)))
        reference_server.refresh_packages(max_count=2)

    names = [r["resource"] for r in _resources(reference_server, item_id)]
    assert names == [f"d_{gens[1][1]}.json", f"d_{gens[2][1]}.json"]
    properties = fast_client().portal_item(reference_server.portal_url, item_id)["properties"]
    # A copy still at the generation the purged delta started from cannot catch up.
    assert properties["lastPurgedGen"] == gens[0][0]
    # The package data was rebuilt: a fresh download is current.
    assert properties["replicaServerGen"] == gens[2][1]


def test_purge_by_age_over_the_admin_endpoint_and_the_command_line(reference_server, capsys):
    item_id = _package_item(reference_server)["id"]
    gid = first_point(reference_server)
    reference_server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "Old"}])
    answer = requests.post(f"{reference_server.root_url}/admin/refreshPackages", timeout=30).json()
    assert any(p["stored"] for p in answer["packages"])
    assert len(_resources(reference_server, item_id)) == 1

    packages.main(["refresh", "--data", str(reference_server.data_dir), "--max-age", "3600"])
    assert len(_resources(reference_server, item_id)) == 1  # younger than an hour: kept
    answer = requests.post(
        f"{reference_server.root_url}/admin/refreshPackages", data={"maxAge": "0"}, timeout=30
    ).json()

    assert _resources(reference_server, item_id) == []
    assert all(p["lastPurgedGen"] is not None for p in answer["packages"])
    assert "packages" in json.loads(capsys.readouterr().out)


def test_unknown_resource_is_a_404(reference_server):
    item_id = _package_item(reference_server)["id"]
    answer = requests.get(
        f"{reference_server.portal_url}/content/items/{item_id}/resources/d_999.json", timeout=10
    )
    assert answer.status_code == 404


# -- taking an area offline --------------------------------------------------------------------------
def test_area_offline_records_area_mode_package_and_generation(reference_server, tmp_path):
    client = fast_client()
    task, area = whole_area(reference_server, client)
    params = task.create_default_download_preplanned_offline_map_parameters(area)
    assert params.update_mode == PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES
    params.update_mode = PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES

    result = task.download_preplanned_offline_map(params, tmp_path / "map").run()

    offline_map = OfflineMap.open(tmp_path / "map")
    # The area's basemap packages come with it, converted into files QGIS opens.
    assert result.skipped_layers == ()
    assert [(b.title, b.kind, b.format) for b in offline_map.basemaps] == [
        ("Demo topographic", "raster", "gpkg"),
        ("Demo streets", "vector", "mbtiles"),
    ]
    assert all(offline_map.basemap_path(b).is_file() for b in offline_map.basemaps)
    assert offline_map.title == "Whole demo area"
    assert offline_map.source.map_area_item_id == area.item_id
    assert offline_map.source.webmap_item_id == DEMO_WEBMAP_ID
    assert offline_map.update_mode == PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES
    (entry,) = offline_map.geodatabases
    package = area.packages[0]
    assert entry.package_item_id == package.item_id
    assert entry.generation == package.generation == generation(offline_map)
    with Geodatabase.open(entry.path) as gdb:
        assert gdb.replica.replica_id == package.replica_id
    assert_matches_service(reference_server, offline_map)
    caps = offline_map.update_capabilities
    assert caps.supports_scheduled_updates_for_features
    assert not caps.supports_sync_with_feature_services


def test_area_in_no_updates_mode_neither_syncs_nor_takes_updates(reference_server, tmp_path):
    offline_map = take_area_offline(
        reference_server, tmp_path / "map", PreplannedUpdateMode.NO_UPDATES
    )
    task = OfflineMapSyncTask(offline_map, client=fast_client())

    caps = task.update_capabilities
    assert not caps.supports_scheduled_updates_for_features
    assert not caps.supports_sync_with_feature_services
    params = task.create_default_offline_map_sync_parameters()
    assert params.sync_direction == SyncDirection.NONE
    assert params.preplanned_scheduled_updates_option == PreplannedScheduledUpdatesOption.NO_UPDATES


def test_area_synced_with_feature_services_uses_a_replica_of_its_own(reference_server, tmp_path):
    offline_map = take_area_offline(
        reference_server, tmp_path / "map", PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES
    )
    package_item_id = offline_map.geodatabases[0].package_item_id
    gid = first_point(reference_server)
    reference_server.apply_edits(
        DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "Server side"}]
    )
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    assert task.check_for_updates().download_availability == (
        OfflineUpdateAvailability.INDETERMINATE
    )

    result = task.create_offline_map_sync_job(
        task.create_default_offline_map_sync_parameters()
    ).run()

    assert not result.has_errors
    assert local_rows(offline_map, POINTS)[gid]["name"] == "Server side"
    assert_matches_service(reference_server, offline_map)
    # The package's replica still belongs to the portal: its refresh sees the same edit.
    (report,) = [
        r for r in reference_server.refresh_packages() if r.package_item_id == package_item_id
    ]
    assert report.stored is not None


# -- scheduled updates ---------------------------------------------------------------------------------
def test_two_refreshes_are_found_sized_applied_in_order_and_then_none(reference_server, tmp_path):
    server = reference_server
    offline_map = take_area_offline(
        server, tmp_path / "map", PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES
    )
    item_id = offline_map.geodatabases[0].package_item_id
    gid = first_point(server)
    doomed = sorted(server_rows(server, POINTS))[1]
    server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "First refresh"}])
    server.apply_edits(DEMO_SERVICE, POINTS, adds=[new_point(name="Added on the server")])
    server.refresh_packages()
    server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "Second refresh"}])
    server.apply_edits(DEMO_SERVICE, POINTS, deletes=[doomed])
    server.refresh_packages()
    deltas = _resources(server, item_id)
    assert len(deltas) == 2

    task = OfflineMapSyncTask(offline_map.folder, client=fast_client())
    info = task.check_for_updates()

    assert info.download_availability == OfflineUpdateAvailability.AVAILABLE
    assert info.upload_availability == OfflineUpdateAvailability.NONE
    assert info.scheduled_updates_download_size == sum(d["size"] for d in deltas)
    assert not info.is_mobile_map_package_reopen_required
    params = task.create_default_offline_map_sync_parameters()
    assert params.sync_direction == SyncDirection.DOWNLOAD

    result = task.create_offline_map_sync_job(params).run()

    assert not result.has_errors
    assert not result.is_mobile_map_package_reopen_required
    gens = sorted(int(d["resource"][2:-5]) for d in deltas)
    assert update_history(offline_map) == gens  # both, oldest first
    assert OfflineMap.open(offline_map.folder).geodatabases[0].generation == gens[-1]
    points = next(r for r in result.layer_results if r.layer_id == POINTS)
    assert (points.downloaded.adds, points.downloaded.updates, points.downloaded.deletes) == (
        1,
        2,
        1,
    )
    assert local_rows(offline_map, POINTS)[gid]["name"] == "Second refresh"
    assert_matches_service(server, offline_map)
    again = OfflineMapSyncTask(offline_map.folder, client=fast_client()).check_for_updates()
    assert again.download_availability == OfflineUpdateAvailability.NONE
    assert again.scheduled_updates_download_size == 0


def test_keep_geodatabase_deltas_keeps_the_applied_packages_beside_the_map(
    reference_server, tmp_path
):
    offline_map = take_area_offline(
        reference_server, tmp_path / "map", PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES
    )
    gid = first_point(reference_server)
    reference_server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "Kept"}])
    (stored,) = {r.stored for r in reference_server.refresh_packages()}
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    params = task.create_default_offline_map_sync_parameters()
    params.keep_geodatabase_deltas = True

    task.create_offline_map_sync_job(params).run()

    kept = tmp_path / "map_deltas" / f"{offline_map.geodatabases[0].path.stem}_{stored}"
    assert json.loads(kept.read_text(encoding="utf-8"))["replicaServerGen"] == int(stored[2:-5])


def test_scheduled_updates_work_with_token_authentication(secured_reference_server, tmp_path):
    from plugin.core.rest import ArcGISClient, TokenCredentials

    server = secured_reference_server
    client = ArcGISClient(
        TokenCredentials(
            server.token_url, "alice", "alice-secret", plain_http_hosts=server.plain_http_hosts
        ),
        backoff=0.01,
        retries=1,
    )
    offline_map = take_area_offline(
        server,
        tmp_path / "map",
        PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES,
        client,
    )
    gid = first_point(server)
    server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "Secured"}])
    server.refresh_packages()
    anonymous = requests.get(
        f"{server.portal_url}/content/items/{offline_map.geodatabases[0].package_item_id}/resources",
        params={"f": "json"},
        timeout=10,
    ).json()
    assert anonymous["error"]["code"] == 499

    task = OfflineMapSyncTask(offline_map, client=client)
    assert task.check_for_updates().download_availability == OfflineUpdateAvailability.AVAILABLE
    result = task.create_offline_map_sync_job(
        task.create_default_offline_map_sync_parameters()
    ).run()

    assert not result.has_errors, result.geodatabase_errors
    assert local_rows(offline_map, POINTS)[gid]["name"] == "Secured"


def test_failed_area_download_leaves_no_files_and_no_replica(reference_server, tmp_path):
    client = fast_client(retries=0)
    task, area = whole_area(reference_server, client)
    params = task.create_default_download_preplanned_offline_map_parameters(area)
    before = client.replicas(reference_server.service_url(DEMO_SERVICE))
    # The package downloads; registering the geodatabase's own replica then fails.
    reference_server.inject_fault("createReplica", "drop_after_commit", count=1)

    with pytest.raises(NetworkError):
        task.download_preplanned_offline_map(params, tmp_path / "map").run()

    assert not (tmp_path / "map").exists()
    assert client.replicas(reference_server.service_url(DEMO_SERVICE)) == before


def test_area_downloaded_after_server_edits_gets_them_at_its_first_sync(reference_server, tmp_path):
    server = reference_server
    server.prepare_map_areas()  # the package is built here
    client = fast_client()
    _, area = whole_area(server, client)
    package_gen = area.packages[0].generation
    gid = first_point(server)
    server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "After package"}])
    added = server.apply_edits(DEMO_SERVICE, POINTS, adds=[new_point(name="New after package")])
    new_gid = added["addResults"][0]["globalId"]
    offline_map = take_area_offline(
        server, tmp_path / "map", PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES
    )
    assert local_rows(offline_map, POINTS)[gid]["name"] != "After package"  # the package's data
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        registered = server.replica(gdb.replica.replica_id)
        assert gdb.replica.server_gen == package_gen
    # Registered for the package's data at the package's generation, not at the current one.
    assert registered["replicaServerGen"] == package_gen < server.server_gen(DEMO_SERVICE)

    task = OfflineMapSyncTask(offline_map, client=client)
    result = task.create_offline_map_sync_job(
        task.create_default_offline_map_sync_parameters()
    ).run()

    assert not result.has_errors
    points = next(r for r in result.layer_results if r.layer_id == POINTS)
    assert (points.downloaded.adds, points.downloaded.updates) == (1, 1)
    rows = local_rows(offline_map, POINTS)
    assert rows[gid]["name"] == "After package" and rows[new_gid]["name"] == "New after package"
    assert_matches_service(server, offline_map)
    # Nothing twice: the next sync brings nothing, and the new feature is there once.
    again = task.create_offline_map_sync_job(
        task.create_default_offline_map_sync_parameters()
    ).run()
    assert sum(r.downloaded.total for r in again.all_results()) == 0
    assert (
        sum(1 for r in local_rows(offline_map, POINTS).values() if r["name"] == "New after package")
        == 1
    )
