"""Scheduled update packages: purged packages, uploading only new features, interruptions."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plugin.core.enums import OfflineUpdateAvailability, PreplannedUpdateMode, SyncDirection
from plugin.core.geodatabase import Geodatabase
from plugin.core.offline_map import OfflineMap
from plugin.core.sync import OfflineMapSyncTask
from tests.preplanned_helpers import (
    DEMO_SERVICE,
    POINTS,
    add_local_point,
    assert_matches_service,
    edit_local,
    fast_client,
    first_point,
    generation,
    local_rows,
    server_rows,
    take_area_offline,
    update_history,
)

UPLOAD_NEW = PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES
SCHEDULED = PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES


def _sync(offline_map: OfflineMap, client=None, listener=None, **overrides):
    task = OfflineMapSyncTask(offline_map.folder, client=client or fast_client())
    params = task.create_default_offline_map_sync_parameters()
    for key, value in overrides.items():
        setattr(params, key, value)
    job = task.create_offline_map_sync_job(params)
    if listener is not None:
        job.add_progress_listener(listener)
    return job.run()


def _check(offline_map: OfflineMap):
    return OfflineMapSyncTask(offline_map.folder, client=fast_client()).check_for_updates()


def _three_refreshes(server) -> list[int]:
    """Three server edits, each followed by a refresh; the three delta generations."""
    gid = first_point(server)
    gens = []
    for name in ("One", "Two", "Three"):
        server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": name}])
        server.refresh_packages()
        gens.append(server.server_gen(DEMO_SERVICE))
    return gens


# -- the package's replica ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "rebuilt"),
    [
        (lambda rid: f"  {rid.lower()} ", False),  # stray whitespace and case: the same GUID
        (lambda rid: rid.strip("{}"), False),  # without braces: the same GUID
        (lambda rid: rid + "}", True),  # malformed: never the replica of the copy
        (lambda rid: "not a replica", True),
        (lambda rid: 12345, True),
    ],
    ids=["whitespace-and-case", "no-braces", "extra-brace", "not-a-guid", "a-number"],
)
def test_the_package_replica_is_recognised_however_the_portal_writes_its_id(
    reference_server, tmp_path, written, rebuilt
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", SCHEDULED)
    (package_id,) = {e.package_item_id for e in offline_map.geodatabases}
    with server.app.store.write() as tx:
        item, data = tx.item(package_id)
        item["properties"]["replicaID"] = written(item["properties"]["replicaID"])
        tx.save_item(package_id, item, data)

    info = _check(offline_map)

    # The same replica has nothing new; another one means downloading the package again.
    assert info.is_mobile_map_package_reopen_required is rebuilt
    expected = OfflineUpdateAvailability.AVAILABLE if rebuilt else OfflineUpdateAvailability.NONE
    assert info.download_availability == expected


# -- purged packages ---------------------------------------------------------------------------------
def test_purged_packages_replace_the_geodatabase_after_uploading_new_features(
    reference_server, tmp_path
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", UPLOAD_NEW)
    start = generation(offline_map)
    new_gid = add_local_point(offline_map, "Collected before the purge")
    gid = first_point(server)
    for name in ("Purged", "Kept"):
        server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": name}])
        server.refresh_packages(max_count=1)
    info = _check(offline_map)
    assert info.is_mobile_map_package_reopen_required
    assert info.download_availability == OfflineUpdateAvailability.AVAILABLE
    assert info.upload_availability == OfflineUpdateAvailability.AVAILABLE

    result = _sync(offline_map)

    assert not result.has_errors, result.geodatabase_errors
    assert result.is_mobile_map_package_reopen_required
    assert server_rows(server, POINTS)[new_gid]["name"] == "Collected before the purge"
    rows = local_rows(offline_map, POINTS)
    assert rows[gid]["name"] == "Kept"  # the fresh package is current
    assert generation(offline_map) > start
    assert OfflineMap.open(offline_map.folder).geodatabases[0].generation == generation(offline_map)
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        assert not gdb.has_pending_edits()
    # The replaced geodatabase still refuses edits of downloaded features.
    with pytest.raises(sqlite3.IntegrityError, match="only new features"):
        edit_local(offline_map, "UPDATE {points} SET name = 'x' WHERE GlobalID = ?", gid)
    # The uploaded feature comes back with the next scheduled update: nothing was lost.
    server.refresh_packages()
    assert not _sync(offline_map).has_errors
    assert local_rows(offline_map, POINTS)[new_gid]["name"] == "Collected before the purge"
    assert_matches_service(server, offline_map)
    assert _check(offline_map).download_availability == OfflineUpdateAvailability.NONE


def test_purged_packages_with_edits_that_cannot_be_uploaded_refuse_with_upload_required(
    reference_server, tmp_path
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", SCHEDULED)
    local_gid = add_local_point(offline_map, "Never uploaded in this mode")
    gid = first_point(server)
    for name in ("Purged", "Kept"):
        server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": name}])
        server.refresh_packages(max_count=1)
    before = generation(offline_map)

    result = _sync(offline_map)

    (message,) = result.geodatabase_errors.values()
    assert message.startswith("Upload required")
    assert not result.is_mobile_map_package_reopen_required
    assert local_rows(offline_map, POINTS)[local_gid]["name"] == "Never uploaded in this mode"
    assert generation(offline_map) == before


def test_rebuilt_package_replaces_the_geodatabase_with_the_new_replica(reference_server, tmp_path):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", SCHEDULED)
    gid = first_point(server)
    server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "Rebuilt"}])
    (package_id,) = {e.package_item_id for e in offline_map.geodatabases}
    server.recreate_packages()
    info = _check(offline_map)
    assert info.is_mobile_map_package_reopen_required
    assert info.scheduled_updates_download_size > 0

    result = _sync(offline_map)

    assert not result.has_errors, result.geodatabase_errors
    assert result.is_mobile_map_package_reopen_required
    new_replica = fast_client().portal_item(server.portal_url, package_id)["properties"][
        "replicaID"
    ]
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        assert gdb.replica.replica_id == new_replica
    assert_matches_service(server, offline_map)
    assert not _check(offline_map).is_mobile_map_package_reopen_required


# -- upload new features -------------------------------------------------------------------------
def test_upload_new_features_mode_uploads_adds_and_refuses_edits_of_downloaded_features(
    reference_server, tmp_path
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", UPLOAD_NEW)
    gid = first_point(server)
    assert _check(offline_map).upload_availability == OfflineUpdateAvailability.NONE

    with pytest.raises(sqlite3.IntegrityError, match="only new features"):
        edit_local(offline_map, "UPDATE {points} SET name = 'changed' WHERE GlobalID = ?", gid)
    with pytest.raises(sqlite3.IntegrityError, match="only new features"):
        edit_local(offline_map, "DELETE FROM {points} WHERE GlobalID = ?", gid)
    new_gid = add_local_point(offline_map, "Collected")
    # A new feature may be edited until it is uploaded.
    edit_local(
        offline_map, "UPDATE {points} SET name = 'Collected, fixed' WHERE GlobalID = ?", new_gid
    )
    server.apply_edits(DEMO_SERVICE, POINTS, updates=[{"GlobalID": gid, "name": "From a package"}])
    server.refresh_packages()
    info = _check(offline_map)
    assert info.upload_availability == OfflineUpdateAvailability.AVAILABLE
    assert info.download_availability == OfflineUpdateAvailability.AVAILABLE
    params = OfflineMapSyncTask(offline_map.folder).create_default_offline_map_sync_parameters()
    assert params.sync_direction == SyncDirection.BIDIRECTIONAL

    result = _sync(offline_map)

    assert not result.has_errors, result.geodatabase_errors
    points = next(r for r in result.layer_results if r.layer_id == POINTS)
    assert points.uploaded.adds == 1
    assert server_rows(server, POINTS)[new_gid]["name"] == "Collected, fixed"
    assert local_rows(offline_map, POINTS)[gid]["name"] == "From a package"
    assert local_rows(offline_map, POINTS)[gid]["name"] == server_rows(server, POINTS)[gid]["name"]
    info = _check(offline_map)
    assert info.upload_availability == OfflineUpdateAvailability.NONE
    assert info.download_availability == OfflineUpdateAvailability.NONE
    # The upload went through a replica of its own, not the shared package replica: the next
    # refresh carries the new feature to every copy of the area.
    (report,) = server.refresh_packages()[:1]
    assert report.stored is not None
    assert not _sync(offline_map).has_errors
    assert_matches_service(server, offline_map)


def test_upload_new_features_mode_reports_edits_that_bypassed_the_guards(
    reference_server, tmp_path
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", UPLOAD_NEW)
    gid = first_point(server)
    original = server_rows(server, POINTS)[gid]["name"]
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        # A writer that removed the guard (e.g. an older copy of the plugin).
        table = gdb.layer(POINTS).table_name
        gdb.conn.execute(f'DROP TRIGGER "oms_{table}_addsonly_update"')
        gdb.conn.execute(f'UPDATE "{table}" SET name = ? WHERE GlobalID = ?', ("Local", gid))

    result = _sync(offline_map)

    assert server_rows(server, POINTS)[gid]["name"] == original  # not uploaded...
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        assert gdb.has_pending_edits()  # ...and not dropped: still pending, still local
    assert local_rows(offline_map, POINTS)[gid]["name"] == "Local"
    points = next(r for r in result.layer_results if r.layer_id == POINTS)
    (error,) = points.edit_errors
    assert "uploads only new features" in error.message
    assert result.has_errors
    # The sync put the guard back.
    with pytest.raises(sqlite3.IntegrityError, match="only new features"):
        edit_local(offline_map, "UPDATE {points} SET name = 'again' WHERE GlobalID = ?", gid)


# -- interruptions -------------------------------------------------------------------------------
def test_connection_dropped_mid_series_completes_next_time_without_applying_twice(
    reference_server, tmp_path
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", SCHEDULED)
    gens = _three_refreshes(server)

    def drop_after_first(percent: int, message: str) -> None:
        if message == f"Applied scheduled update {gens[0]}":
            server.inject_fault("resource", "drop_before_commit", count=10)

    result = _sync(offline_map, client=fast_client(retries=1), listener=drop_after_first)

    (message,) = result.geodatabase_errors.values()
    assert "interrupted" in message or "connection" in message.lower()
    assert update_history(offline_map) == gens[:1]
    assert OfflineMap.open(offline_map.folder).geodatabases[0].generation == gens[0]
    assert _check(offline_map).download_availability == OfflineUpdateAvailability.AVAILABLE
    server.clear_faults()

    result = _sync(offline_map)

    assert not result.has_errors
    assert update_history(offline_map) == gens  # each exactly once, in order
    assert_matches_service(server, offline_map)


def test_error_mid_series_rolls_back_that_package_and_the_next_sync_continues(
    reference_server, tmp_path
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", SCHEDULED)
    gens = _three_refreshes(server)

    def fail_on_second(percent: int, message: str) -> None:
        if message == f"Applying scheduled update {gens[1]}":
            raise RuntimeError("power cut")

    result = _sync(offline_map, listener=fail_on_second)

    assert "power cut" in next(iter(result.geodatabase_errors.values()))
    assert update_history(offline_map) == gens[:1]
    assert not _sync(offline_map).has_errors
    assert update_history(offline_map) == gens
    assert_matches_service(server, offline_map)


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from plugin.core.rest import ArcGISClient
    from plugin.core.sync import OfflineMapSyncTask

    folder, doomed = sys.argv[1], sys.argv[2]
    task = OfflineMapSyncTask(folder, client=ArcGISClient(retries=0, timeout=30))
    job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())

    def cancel():
        # Called inside the commit's transaction: the process dies half-way through it.
        if job.message == f"Applying scheduled update {doomed}":
            os._exit(9)
        return False

    job._cancel_requested = cancel
    job.run()
    sys.exit(0)
    """
)


def test_process_killed_while_applying_a_package_completes_on_the_next_sync(
    reference_server, tmp_path
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", SCHEDULED)
    gens = _three_refreshes(server)

    child = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, str(offline_map.folder), str(gens[1])],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert child.returncode == 9, child.stderr
    assert update_history(offline_map) == gens[:1]
    assert generation(offline_map) == gens[0]
    result = _sync(offline_map)
    assert not result.has_errors, result.geodatabase_errors
    assert update_history(offline_map) == gens
    assert_matches_service(server, offline_map)


def test_update_package_whose_generation_does_not_match_its_name_is_refused(
    reference_server, tmp_path
):
    server = reference_server
    offline_map = take_area_offline(server, tmp_path / "map", SCHEDULED)
    gens = _three_refreshes(server)
    package_id = offline_map.geodatabases[0].package_item_id
    second = server.data_dir / "items" / package_id / "resources" / f"d_{gens[1]}.json"
    text = second.read_text(encoding="utf-8")
    second.write_text(
        text.replace(f'"replicaServerGen":{gens[1]}', f'"replicaServerGen":{gens[2]}'),
        encoding="utf-8",
    )

    result = _sync(offline_map)

    assert "damaged" in next(iter(result.geodatabase_errors.values()))
    assert update_history(offline_map) == gens[:1]  # stopped before the damaged one


def test_package_properties_are_read_tolerantly():
    from plugin.core.scheduled_updates import PackageInfo

    info = PackageInfo.from_item(
        {
            "id": "abc",
            "size": "12",
            "url": "https://example.com/arcgis/rest/services/S/FeatureServer/",
            "properties": {
                "replicaId": "{A}",
                "syncModel": "perLayer",
                "layerServerGens": '[{"id": 0, "serverGen": "7"}, {"id": 1, "serverGen": 5}]',
                "lastPurgedGen": "3",
            },
        }
    )
    assert info.service_url == "https://example.com/arcgis/rest/services/S/FeatureServer"
    assert (info.replica_id, info.generation, info.last_purged_gen, info.size) == ("{A}", 5, 3, 12)


def test_per_layer_packages_are_applied_once_each(reference_server, tmp_path):
    from tests.featureservice.packages import prepare_map_areas

    server = reference_server
    prepare_map_areas(server.app.store, server.data_dir, sync_model="perLayer")
    offline_map = take_area_offline(server, tmp_path / "map", SCHEDULED)
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        assert gdb.replica.sync_model.value == "perLayer"
    gens = _three_refreshes(server)

    assert not _sync(offline_map).has_errors
    assert not _sync(offline_map).has_errors

    assert update_history(offline_map) == gens
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        assert set(gdb.replica.layer_gens.values()) == {gens[-1]}
    assert_matches_service(server, offline_map)
