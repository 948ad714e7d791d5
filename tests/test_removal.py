"""Removing offline maps and stand-alone geodatabases: replicas are unregistered on the
reference service, pending edits are never discarded without confirmation, and an unreachable
service leaves everything in place unless the caller chooses to remove the local copy anyway."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from plugin.core.errors import GeodatabaseError, SyncInProgressError
from plugin.core.geodatabase import Geodatabase
from plugin.core.geodatabase_sync import GeodatabaseSyncTask
from plugin.core.removal import (
    PendingEditsError,
    RemovalParameters,
    SharedReplicaError,
    UnregisterError,
    plan_geodatabase_removal,
    plan_offline_map_removal,
    remove_geodatabase,
    remove_offline_map,
)
from tests.test_sync import (
    DEMO,
    POINTS,
    Local,
    assert_no_errors,
    fast_client,
    point_gid,
    sync_map,
    take_offline,
    take_package_offline,
)

DISCARD = RemovalParameters(discard_pending_edits=True)


def registered_ids(server) -> set[str]:
    return {r["replicaID"] for r in fast_client().replicas(server.service_url(DEMO))}


def replica_id_of(path) -> str:
    with Geodatabase.open(path) as gdb:
        return gdb.replica.replica_id


def test_removing_a_map_with_pending_edits_is_refused_without_confirmation(
    reference_server, tmp_path
):
    offline_map = take_offline(reference_server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Not uploaded")
    local.update(POINTS, point_gid(1), name="Nor this")
    replica_id = replica_id_of(local.path)

    plan = plan_offline_map_removal(offline_map.folder)
    assert plan.pending_total == 2
    assert plan.needs_discard_confirmation
    assert "2 in Points" in plan.describe_pending()

    with pytest.raises(PendingEditsError, match="2 local edits") as refused:
        remove_offline_map(offline_map.folder, client=fast_client())
    assert refused.value.counts == {local.path.name: {"Points": 2}}
    assert "Points" in str(refused.value)
    assert local.path.is_file()
    assert local.pending()[POINTS]["updates"] == 2
    assert replica_id in registered_ids(reference_server)


def test_removing_a_map_unregisters_its_replica_and_deletes_its_folder(reference_server, tmp_path):
    offline_map = take_offline(reference_server, tmp_path / "map")
    path = offline_map.geodatabases[0].path
    replica_id = replica_id_of(path)
    deltas = tmp_path / "map_deltas"
    deltas.mkdir()
    (deltas / "Demo_x_download.json").write_text("{}")

    result = remove_offline_map(offline_map.folder, client=fast_client())

    assert [r.replica_id for r in result.unregistered] == [replica_id]
    assert replica_id not in registered_ids(reference_server)
    assert not (tmp_path / "map").exists()
    assert not deltas.exists()
    assert result.left_registered == [] and result.warnings == []
    assert result.discarded_edits == 0


def test_confirmed_discard_removes_a_map_with_pending_edits(reference_server, tmp_path):
    offline_map = take_offline(reference_server, tmp_path / "map")
    Local(offline_map).update(POINTS, point_gid(0), name="Thrown away")

    result = remove_offline_map(offline_map.folder, DISCARD, client=fast_client())

    assert result.discarded_edits == 1
    assert any("discarded" in w for w in result.warnings)
    assert not (tmp_path / "map").exists()
    on_server = {f["attributes"]["GlobalID"] for f in reference_server.query_all(DEMO, POINTS)}
    assert point_gid(0) in on_server  # nothing was uploaded on the way out


def test_unreachable_service_removes_nothing_unless_removing_locally_is_chosen(
    reference_server, tmp_path
):
    offline_map = take_offline(reference_server, tmp_path / "map")
    local = Local(offline_map)
    replica_id = replica_id_of(local.path)
    reference_server.stop()

    with pytest.raises(UnregisterError, match="cannot be reached") as refused:
        remove_offline_map(offline_map.folder, client=fast_client())
    assert "remove the local copy anyway" in str(refused.value)
    assert local.path.is_file() and (tmp_path / "map" / "offline_map.json").is_file()
    with Geodatabase.open(local.path) as gdb:
        assert gdb.replica.replica_id == replica_id

    result = remove_offline_map(
        offline_map.folder,
        RemovalParameters(remove_locally_if_unreachable=True),
        client=fast_client(),
    )
    assert [r.replica_id for r, _ in result.left_registered] == [replica_id]
    assert "still registered" in result.warnings[0]
    assert not (tmp_path / "map").exists()


def test_a_replica_already_gone_from_the_service_counts_as_unregistered(reference_server, tmp_path):
    offline_map = take_offline(reference_server, tmp_path / "map")
    replica_id = replica_id_of(offline_map.geodatabases[0].path)
    fast_client().unregister_replica(reference_server.service_url(DEMO), replica_id)

    result = remove_offline_map(offline_map.folder, client=fast_client())

    assert [r.replica_id for r in result.unregistered] == [replica_id]
    assert not (tmp_path / "map").exists()


def test_removal_waits_for_no_sync_and_changes_nothing_while_one_runs(reference_server, tmp_path):
    offline_map = take_offline(reference_server, tmp_path / "map")
    path = offline_map.geodatabases[0].path
    replica_id = replica_id_of(path)
    with (
        Geodatabase.open(path) as holder,
        holder.sync_lock(),
        pytest.raises(SyncInProgressError),
    ):
        remove_offline_map(offline_map.folder, client=fast_client())
    assert path.is_file()
    assert replica_id in registered_ids(reference_server)


def test_files_that_are_not_ours_keep_the_map_folder(reference_server, tmp_path):
    offline_map = take_offline(reference_server, tmp_path / "map")
    notes = tmp_path / "map" / "field notes.txt"
    notes.write_text("mine")

    result = remove_offline_map(offline_map.folder, client=fast_client())

    assert notes.read_text() == "mine"
    assert result.kept == [notes]
    assert not (tmp_path / "map" / "offline_map.json").exists()
    assert not list((tmp_path / "map").glob("*.gpkg*"))


def test_a_damaged_geodatabase_is_removed_only_with_confirmation(reference_server, tmp_path):
    offline_map = take_offline(reference_server, tmp_path / "map")
    path = offline_map.geodatabases[0].path
    path.write_bytes(b"not a geopackage any more" * 100)

    with pytest.raises(PendingEditsError, match="cannot be checked"):
        remove_offline_map(offline_map.folder, client=fast_client())
    assert path.is_file()

    result = remove_offline_map(offline_map.folder, DISCARD, client=fast_client())
    assert (
        "may still be registered" in result.warnings[0]
        or "still registered" in (result.warnings[0])
    )
    assert not (tmp_path / "map").exists()


def test_a_stand_alone_geodatabase_is_unregistered_and_deleted(reference_server, tmp_path):
    url = reference_server.service_url(DEMO)
    task = GeodatabaseSyncTask(url, client=fast_client())
    path = task.generate_geodatabase(
        task.create_default_generate_geodatabase_parameters(), tmp_path / "field.gpkg"
    ).run()
    replica_id = replica_id_of(path)
    (tmp_path / "field_deltas").mkdir()
    (tmp_path / "field.gpkg.synclock").write_bytes(b"")

    plan = plan_geodatabase_removal(path)
    assert [r.replica_id for r in plan.replicas] == [replica_id]

    result = remove_geodatabase(path, client=fast_client())

    assert [r.replica_id for r in result.unregistered] == [replica_id]
    assert replica_id not in registered_ids(reference_server)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["featureservice"]  # the server's data


def test_a_geodatabase_of_an_offline_map_is_not_removed_on_its_own(reference_server, tmp_path):
    offline_map = take_offline(reference_server, tmp_path / "map")
    path = offline_map.geodatabases[0].path
    with pytest.raises(GeodatabaseError, match="Remove the whole offline map"):
        remove_geodatabase(path, client=fast_client())
    assert path.is_file()


def test_the_shared_replica_of_a_scheduled_updates_package_is_left_alone(
    reference_server, tmp_path
):
    offline_map, _ = take_package_offline(reference_server, tmp_path / "area", fast_client())
    package_replica = replica_id_of(offline_map.geodatabases[0].path)
    assert package_replica in registered_ids(reference_server)

    result = remove_offline_map(offline_map.folder, client=fast_client())

    assert result.unregistered == []
    assert [r.replica_id for r in result.shared_replicas_kept] == [package_replica]
    assert package_replica in registered_ids(reference_server)  # other copies still use it
    assert not (tmp_path / "area").exists()


def test_removing_a_package_map_opens_each_geodatabase_once(
    reference_server, tmp_path, monkeypatch
):
    offline_map, _ = take_package_offline(reference_server, tmp_path / "area", fast_client())
    files = [entry.file for entry in offline_map.geodatabases]
    opened = []
    open_geodatabase = Geodatabase.open

    def counting_open(path, *args, **kwargs):
        opened.append(path.name)
        return open_geodatabase(path, *args, **kwargs)

    monkeypatch.setattr(Geodatabase, "open", counting_open)

    result = remove_offline_map(offline_map.folder, client=fast_client())

    assert sorted(opened) == sorted(files)
    assert len(result.shared_replicas_kept) == len(files)


# -- copies of a map share its replicas ----------------------------------------------------------


def test_removing_a_copied_map_says_so_and_removes_only_the_files_if_asked(
    reference_server, tmp_path
):

    original = take_offline(reference_server, tmp_path / "map")
    shutil.copytree(tmp_path / "map", tmp_path / "backup")
    replica_id = replica_id_of(original.geodatabases[0].path)

    plan = plan_offline_map_removal(tmp_path / "backup")
    (line,) = plan.copies
    assert "copy of" in line and str(tmp_path / "map") in line
    with pytest.raises(SharedReplicaError, match="may be a copy") as refused:
        remove_offline_map(tmp_path / "backup", client=fast_client())
    assert refused.value.copies == [line]
    assert (tmp_path / "backup").is_dir() and replica_id in registered_ids(reference_server)

    result = remove_offline_map(
        tmp_path / "backup", RemovalParameters(files_only=True), client=fast_client()
    )

    assert not (tmp_path / "backup").exists()
    assert result.unregistered == [] and [r.replica_id for r, _ in result.left_registered] == [
        replica_id
    ]
    assert replica_id in registered_ids(reference_server)
    # The original still syncs with its replica.
    Local(original).update(POINTS, point_gid(0), name="Still syncing")
    assert_no_errors(sync_map(original))
    on_server = {
        f["attributes"]["GlobalID"]: f["attributes"]["name"]
        for f in reference_server.query_all(DEMO, POINTS)
    }
    assert on_server[point_gid(0)] == "Still syncing"


def test_a_copy_among_the_known_maps_is_found_by_its_replica_id(reference_server, tmp_path):

    original = take_offline(reference_server, tmp_path / "map")
    shutil.copytree(tmp_path / "map", tmp_path / "backup")
    unrelated = take_offline(reference_server, tmp_path / "other")
    replica_id = replica_id_of(original.geodatabases[0].path)

    # The original was not moved: only the other map that holds its replica tells.
    assert plan_offline_map_removal(original.folder, [unrelated.folder]).copies == []
    plan = plan_offline_map_removal(original.folder, [unrelated.folder, tmp_path / "backup"])
    (line,) = plan.copies
    assert str(tmp_path / "backup") in line

    result = remove_offline_map(
        original.folder,
        RemovalParameters(unregister_shared_replicas=True),
        client=fast_client(),
        known_maps=[tmp_path / "backup"],
    )
    assert [r.replica_id for r in result.unregistered] == [replica_id]
    assert not (tmp_path / "map").exists()


@pytest.mark.parametrize(
    ("written", "is_copy"),
    [
        (lambda rid: f" {rid.lower()} ", True),  # stray whitespace and case: the same replica
        (lambda rid: rid.strip("{}"), True),
        (lambda rid: rid + "}", False),  # malformed: not the replica of any map
        (lambda rid: " ", False),
    ],
    ids=["whitespace-and-case", "no-braces", "extra-brace", "blank"],
)
def test_a_known_map_shares_the_replica_only_when_its_id_is_the_same_guid(
    reference_server, tmp_path, written, is_copy
):
    original = take_offline(reference_server, tmp_path / "map")
    shutil.copytree(tmp_path / "map", tmp_path / "backup")
    replica_id = replica_id_of(original.geodatabases[0].path)
    backup_gdb = tmp_path / "backup" / original.geodatabases[0].path.name
    con = sqlite3.connect(backup_gdb)
    try:
        with con:
            con.execute(
                "UPDATE oms_meta SET value = ? WHERE key = 'replica_id'", [written(replica_id)]
            )
    finally:
        con.close()

    copies = plan_offline_map_removal(original.folder, [tmp_path / "backup"]).copies

    assert [str(tmp_path / "backup") in line for line in copies] == ([True] if is_copy else [])


def test_a_moved_map_is_reported_as_possibly_copied(reference_server, tmp_path):
    take_offline(reference_server, tmp_path / "map")
    (tmp_path / "map").rename(tmp_path / "moved")

    (line,) = plan_offline_map_removal(tmp_path / "moved").copies
    assert "copied or moved" in line and str(tmp_path / "map") in line
    with pytest.raises(SharedReplicaError):
        remove_offline_map(tmp_path / "moved", client=fast_client())
