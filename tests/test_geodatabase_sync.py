"""The local side of sync: commit_sync semantics with synthetic server replies shaped exactly as
spec §3, the journal, the conflict log, history, crash safety and the sync lock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from plugin.core.enums import SyncDirection
from plugin.core.errors import GeodatabaseError, SyncInProgressError
from plugin.core.geodatabase import ConflictReason, Geodatabase
from plugin.core.gpkg_connection import register_functions
from tests import layer_json as lj
from tests.layer_json import demo_events, make_gdb

BI = SyncDirection.BIDIRECTIONAL
DOWN = SyncDirection.DOWNLOAD


@pytest.fixture
def gdb(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    points, events = demo_events()
    gdb.load_replica(lj.replica_header(server_gen=100), iter(events))
    gdb.gids = [p["attributes"]["GlobalID"] for p in points]
    yield gdb
    gdb.close()


def writer(gdb) -> sqlite3.Connection:
    conn = sqlite3.connect(gdb.path, isolation_level=None)
    register_functions(conn)
    return conn


def point(gdb, gid, cols="name, visits, notes, height"):
    return gdb.conn.execute(f"SELECT {cols} FROM Points WHERE GlobalID = ?", (gid,)).fetchone()


def pending(gdb):
    rows = gdb.conn.execute(
        "SELECT c.table_name, c.op, c.global_id, group_concat(f.field) FROM oms_changes c"
        " LEFT JOIN oms_changed_fields f ON f.table_name = c.table_name AND f.fid = c.fid"
        " AND c.op <> 'delete' GROUP BY c.id ORDER BY c.id"
    ).fetchall()
    return [
        (t, op, gid, sorted(fields.split(",")) if fields else []) for t, op, gid, fields in rows
    ]


def commit(gdb, snapshot, edits, *, gen=101, direction=BI, **kwargs):
    return gdb.commit_sync(
        snapshot, lj.sync_header(gen), lj.edits_to_events(edits), direction=direction, **kwargs
    )


def server_feature(gid, **attrs):
    return {"attributes": {"GlobalID": gid, **attrs}, "geometry": {"x": 1.0, "y": 2.0}}


def test_acknowledged_edits_leave_the_pending_set_with_the_new_generation(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'local' WHERE OBJECTID = 1")
    conn.execute("INSERT INTO Points (name) VALUES ('added')")
    conn.execute("DELETE FROM Points WHERE OBJECTID = 2")
    conn.close()
    snapshot = gdb.snapshot_upload()
    entry = gdb.journal_begin(snapshot)
    added = snapshot.edits[0]["features"]["adds"][0]["attributes"]["GlobalID"]
    reply = [
        {
            "id": 0,
            "addResults": [{"globalId": added, "objectId": 77, "success": True}],
            "updateResults": [{"globalId": gdb.gids[0], "success": True}],
            "deleteResults": [{"globalId": gdb.gids[1], "success": True}],
        }
    ]
    report = commit(gdb, snapshot, reply, gen=150)
    assert not gdb.has_pending_edits()
    assert gdb.replica.server_gen == 150
    counts = report.layers[0]
    assert (counts.uploaded.adds, counts.uploaded.updates, counts.uploaded.deletes) == (1, 1, 1)
    assert report.edit_errors == [] and report.conflicts == 0
    assert gdb.journal_open_entry() is None, f"journal entry {entry} still open"
    (history,) = gdb.history()
    assert history["direction"] == "bidirectional" and history["server_gen"] == 150
    assert history["counts"][0]["uploaded_adds"] == 1


def test_edits_made_during_a_sync_stay_pending(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'in snapshot' WHERE OBJECTID = 1")
    conn.execute(
        "INSERT INTO Points (name, GlobalID) VALUES ('new', '{AAAAAAAA-0000-4000-8000-000000000001}')"
    )
    snapshot = gdb.snapshot_upload()
    # While the sync runs: edit another field of the uploaded row, edit the uploaded new row,
    # change the uploaded field again, and add one more row.
    conn.execute("UPDATE Points SET visits = 1000 WHERE OBJECTID = 1")
    conn.execute(
        "UPDATE Points SET notes = 'later' WHERE GlobalID = '{AAAAAAAA-0000-4000-8000-000000000001}'"
    )
    conn.execute("UPDATE Points SET height = 1, name = 'changed again' WHERE OBJECTID = 1")
    conn.execute(
        "INSERT INTO Points (name, GlobalID) VALUES ('during', '{AAAAAAAA-0000-4000-8000-000000000002}')"
    )
    conn.close()
    commit(gdb, snapshot, [])  # servers may report only failures: no results = all accepted
    assert sorted(pending(gdb)) == sorted(
        [
            ("Points", "update", "{AAAAAAAA-0000-4000-8000-000000000001}", ["notes"]),
            ("Points", "update", gdb.gids[0], ["height", "name", "visits"]),
            ("Points", "add", "{AAAAAAAA-0000-4000-8000-000000000002}", []),
        ]
    )
    nxt = gdb.snapshot_upload()
    updates = {
        u["attributes"]["GlobalID"]: u["attributes"] for u in nxt.edits[0]["features"]["updates"]
    }
    assert updates[gdb.gids[0]] == {
        "GlobalID": gdb.gids[0],
        "visits": 1000,
        "height": 1.0,
        "name": "changed again",
    }
    assert [a["attributes"]["name"] for a in nxt.edits[0]["features"]["adds"]] == ["during"]


def test_add_deleted_locally_while_its_upload_ran_is_deleted_at_the_next_upload(gdb):
    conn = writer(gdb)
    gid = "{BBBBBBBB-0000-4000-8000-000000000001}"
    conn.execute("INSERT INTO Points (name, GlobalID) VALUES ('short-lived', ?)", (gid,))
    snapshot = gdb.snapshot_upload()
    conn.execute("DELETE FROM Points WHERE GlobalID = ?", (gid,))
    conn.close()
    commit(gdb, snapshot, [{"id": 0, "addResults": [{"globalId": gid, "success": True}]}])
    assert gdb.snapshot_upload().edits == [{"id": 0, "features": {"deleteIds": [gid]}}]


def test_downloaded_changes_are_applied_by_globalid_without_being_tracked(gdb):
    new_gid = "{CCCCCCCC-0000-4000-8000-000000000001}"
    att_gid = "{CCCCCCCC-0000-4000-8000-0000000000A1}"
    existing_att = gdb.conn.execute("SELECT GLOBALID FROM Points__ATTACH").fetchone()[0]
    reply = [
        {
            "id": 0,
            "features": {
                "adds": [lj.point_feature(900, gid=new_gid, name="from server")],
                "updates": [
                    {
                        "attributes": {"GlobalID": gdb.gids[1], "name": "server name", "visits": 7},
                        "geometry": {"x": 5.0, "y": 6.0},
                    }
                ],
                "deleteIds": [gdb.gids[2]],
            },
            "attachments": {
                "adds": [lj.attachment(new_gid, gid=att_gid, data=b"new")],
                "updates": [lj.attachment(gdb.gids[0], gid=existing_att, data=b"updated")],
                "deleteIds": [],
            },
        },
        {
            "id": 3,
            "features": {"adds": [lj.inspection_row(50, new_gid)], "updates": [], "deleteIds": []},
        },
    ]
    report = commit(gdb, None, reply, gen=120)
    assert point(gdb, new_gid, "name, OBJECTID") == ("from server", 900)
    assert point(gdb, gdb.gids[1], "name, visits, notes") == ("server name", 7, lj.TRICKY_TEXT)
    assert point(gdb, gdb.gids[2]) is None
    geom = gdb.conn.execute(
        "SELECT geom FROM Points WHERE GlobalID = ?", (gdb.gids[1],)
    ).fetchone()[0]
    from plugin.core.geometry import gpkg_to_esri

    assert gpkg_to_esri(geom, "esriGeometryPoint") == {"x": 5.0, "y": 6.0}
    data = dict(gdb.conn.execute("SELECT GLOBALID, DATA FROM Points__ATTACH"))
    assert data == {existing_att: b"updated", att_gid: b"new"}
    assert not gdb.has_pending_edits()
    c = report.layers[0]
    assert (c.downloaded.adds, c.downloaded.updates, c.downloaded.deletes) == (1, 1, 1)
    assert c.downloaded.attachments == 2 and report.layers[3].downloaded.adds == 1
    assert gdb.replica.server_gen == 120
    # The spatial index follows the downloaded geometry.
    conn = writer(gdb)
    in_index = conn.execute("SELECT minx, miny FROM rtree_Points_geom WHERE id = 2").fetchone()
    conn.close()
    assert in_index == (5.0, 6.0)


def test_a_download_moving_most_rows_leaves_triggers_index_and_tracking_whole(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'local' WHERE GlobalID = ?", (gdb.gids[0],))
    conn.close()
    triggers = sorted(
        gdb.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
    )
    moves = {gid: (100.0 + i, 50.0 - i) for i, gid in enumerate(gdb.gids)}
    updates = [
        {"attributes": {"GlobalID": gid, "visits": 40}, "geometry": {"x": x, "y": y}}
        for gid, (x, y) in moves.items()
    ]
    commit(gdb, None, [{"id": 0, "features": {"updates": updates}}], direction=DOWN)
    assert (
        sorted(gdb.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        == triggers
    )
    conn = writer(gdb)
    index = {
        gid: box
        for gid, *box in conn.execute(
            "SELECT p.GlobalID, r.minx, r.miny FROM rtree_Points_geom r JOIN Points p"
            " ON p.OBJECTID = r.id"
        )
    }
    assert conn.execute("SELECT rtreecheck('rtree_Points_geom')").fetchone() == ("ok",)
    # Every row moved, the one with a pending local edit too (only its edited field stays).
    assert index == {gid: [*xy] for gid, xy in moves.items()}
    assert point(gdb, gdb.gids[0], "name, visits") == ("local", 40)
    assert pending(gdb) == [("Points", "update", gdb.gids[0], ["name"])]
    # Local edits made afterwards are tracked again.
    conn.execute("UPDATE Points SET visits = 1 WHERE GlobalID = ?", (gdb.gids[1],))
    conn.close()
    assert ("Points", "update", gdb.gids[1], ["visits"]) in pending(gdb)


def test_replayed_download_does_not_duplicate_rows(gdb):
    gid = "{DDDDDDDD-0000-4000-8000-000000000001}"
    reply = [{"id": 0, "features": {"adds": [lj.point_feature(901, gid=gid)], "deleteIds": []}}]
    commit(gdb, None, reply)
    commit(gdb, None, reply)
    assert gdb.conn.execute(
        "SELECT count(*) FROM Points WHERE GlobalID = ?", (gid,)
    ).fetchone() == (1,)


def test_downloaded_update_keeps_fields_with_pending_local_edits(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'mine' WHERE OBJECTID = 1")
    conn.close()
    reply = [
        {
            "id": 0,
            "features": {"updates": [server_feature(gdb.gids[0], name="theirs", visits=55)]},
        }
    ]
    report = commit(gdb, None, reply)
    assert point(gdb, gdb.gids[0], "name, visits") == ("mine", 55)
    assert pending(gdb) == [("Points", "update", gdb.gids[0], ["name"])]
    assert report.conflicts == 0


def test_download_only_sync_keeps_pending_fields_and_writes_the_others(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'mine' WHERE OBJECTID = 1")
    conn.execute("UPDATE Points SET name = 'untouched by server' WHERE OBJECTID = 2")
    conn.close()
    reply = [
        {
            "id": 0,
            "features": {"updates": [server_feature(gdb.gids[0], name="theirs", visits=77)]},
        }
    ]
    report = commit(gdb, None, reply, direction=DOWN)
    # The local value stays and stays pending; the server's other field lands; nothing lost.
    assert point(gdb, gdb.gids[0], "name, visits") == ("mine", 77)
    assert pending(gdb) == [
        ("Points", "update", gdb.gids[0], ["name"]),
        ("Points", "update", gdb.gids[1], ["name"]),
    ]
    assert gdb.conflicts() == []
    assert report.layers[0].conflicts == 0


def test_an_update_deleted_on_both_sides_is_no_conflict_and_restores_nothing_empty(gdb):
    """The user edits a feature, the upload is prepared (or interrupted and replayed later),
    then the user deletes the feature. Meanwhile another user deleted it on the server, which
    rejects the update as not found. Both sides deleted it: nothing is lost, no conflict is
    logged (restoring one would re-create an empty feature with no geometry), and the local
    delete goes up at the next sync."""
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'edited offline' WHERE OBJECTID = 1")
    snapshot = gdb.snapshot_upload()
    conn.execute("DELETE FROM Points WHERE OBJECTID = 1")
    conn.close()
    not_found = {"code": 1019, "description": "Feature not found."}
    reply = [
        {
            "id": 0,
            "updateResults": [{"globalId": gdb.gids[0], "success": False, "error": not_found}],
        }
    ]
    report = commit(gdb, snapshot, reply)
    assert gdb.conflicts() == [] and report.conflicts == 0
    assert point(gdb, gdb.gids[0]) is None
    assert pending(gdb) == [("Points", "delete", gdb.gids[0], [])]
    assert [e.code for e in report.edit_errors] == [1019]  # still reported


def test_download_only_sync_keeps_pending_deletes_adds_and_attachments(gdb):
    conn = writer(gdb)
    conn.execute("DELETE FROM Points WHERE OBJECTID = 1")
    conn.close()
    reply = [{"id": 0, "features": {"updates": [server_feature(gdb.gids[0], name="theirs")]}}]
    report = commit(gdb, None, reply, direction=DOWN)
    assert point(gdb, gdb.gids[0]) is None  # the local delete is still to be uploaded
    assert pending(gdb) == [("Points", "delete", gdb.gids[0], [])]
    assert gdb.conflicts() == [] and report.conflicts == 0


def test_downloaded_delete_of_a_locally_edited_row_goes_to_the_conflict_log(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET notes = 'my notes' WHERE OBJECTID = 1")
    conn.close()
    report = commit(gdb, None, [{"id": 0, "features": {"deleteIds": [gdb.gids[0]]}}])
    assert point(gdb, gdb.gids[0]) is None
    assert not gdb.has_pending_edits()
    (conflict,) = gdb.conflicts()
    assert conflict.reason == ConflictReason.DELETED_ON_SERVER
    assert conflict.local_operation == "update" and conflict.attributes["notes"] == "my notes"
    # Its attachment went with it, and the download counts it once.
    assert gdb.conn.execute("SELECT count(*) FROM Points__ATTACH").fetchone() == (0,)
    assert report.layers[0].downloaded.deletes == 1


def test_update_of_server_deleted_feature_goes_to_conflicts(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'edited offline' WHERE OBJECTID IN (1, 2)")
    conn.close()
    snapshot = gdb.snapshot_upload()
    not_found = {"code": 1019, "description": "Feature not found."}
    reply = [
        {
            "id": 0,
            # The server reports 1019 for both; only the first one's delete is downloaded.
            "features": {"deleteIds": [gdb.gids[0]]},
            "updateResults": [
                {"globalId": gdb.gids[0], "success": False, "error": not_found},
                {"globalId": gdb.gids[1], "success": False, "error": not_found},
            ],
        }
    ]
    report = commit(gdb, snapshot, reply)
    assert point(gdb, gdb.gids[0]) is None and point(gdb, gdb.gids[1]) is None
    conflicts = gdb.conflicts()
    assert sorted(c.global_id for c in conflicts) == sorted(gdb.gids[:2])
    assert {c.reason for c in conflicts} == {ConflictReason.DELETED_ON_SERVER}
    assert all(c.attributes["name"] == "edited offline" for c in conflicts)
    assert len(report.edit_errors) == 2 and report.edit_errors[0].code == 1019
    assert not gdb.has_pending_edits()


def test_rejected_add_goes_to_conflicts_and_restoring_adds_it_again(gdb):
    conn = writer(gdb)
    gid = "{EEEEEEEE-0000-4000-8000-000000000001}"
    conn.execute("INSERT INTO Points (name, GlobalID) VALUES ('bad value', ?)", (gid,))
    conn.close()
    snapshot = gdb.snapshot_upload()
    error = {"code": 1000, "description": "Invalid value for category."}
    report = commit(
        gdb,
        snapshot,
        [{"id": 0, "addResults": [{"globalId": gid, "success": False, "error": error}]}],
    )
    assert report.edit_errors[0].message == "Invalid value for category."
    assert point(gdb, gid) is None and not gdb.has_pending_edits()
    (conflict,) = gdb.conflicts()
    assert conflict.reason == ConflictReason.EDIT_REJECTED and conflict.error_code == 1000
    gdb.restore_conflict(conflict.id)
    assert gdb.conflicts() == []
    assert point(gdb, gid, "name") == ("bad value",)
    (add,) = gdb.snapshot_upload().edits[0]["features"]["adds"]
    assert add["attributes"]["GlobalID"] == gid and add["attributes"]["name"] == "bad value"


def test_rejected_update_overwritten_by_the_download_keeps_the_local_version(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'rejected value' WHERE OBJECTID = 1")
    conn.close()
    snapshot = gdb.snapshot_upload()
    reply = [
        {
            "id": 0,
            "features": {"updates": [server_feature(gdb.gids[0], name="server value")]},
            "updateResults": [
                {
                    "globalId": gdb.gids[0],
                    "success": False,
                    "error": {"code": 1000, "description": "No."},
                }
            ],
        }
    ]
    commit(gdb, snapshot, reply)
    assert point(gdb, gdb.gids[0], "name") == ("server value",)
    (conflict,) = gdb.conflicts()
    assert conflict.attributes["name"] == "rejected value"
    assert not gdb.has_pending_edits()


def test_restored_update_uploads_the_whole_local_version_and_dismiss_forgets(gdb):
    original = point(gdb, gdb.gids[1], "name")
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'mine' WHERE OBJECTID IN (1, 2)")
    conn.close()
    snapshot = gdb.snapshot_upload()
    reply = [{"id": 0, "updateResults": [_reject(gdb.gids[0]), _reject(gdb.gids[1])]}]
    commit(gdb, snapshot, reply)
    first, second = gdb.conflicts()
    gdb.restore_conflict(first.id)
    gdb.dismiss_conflict(second.id)
    assert gdb.conflicts() == []
    assert point(gdb, gdb.gids[0], "name") == ("mine",)
    assert point(gdb, gdb.gids[1], "name") == original
    (update,) = gdb.snapshot_upload().edits[0]["features"]["updates"]
    assert update["attributes"]["name"] == "mine" and update["geometry"] == {"x": 101.0, "y": 201.0}
    assert "observed" in update["attributes"]
    with pytest.raises(GeodatabaseError):
        gdb.dismiss_conflict(second.id)


def test_restoring_a_server_deleted_row_re_inserts_it_as_an_add(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'keep me' WHERE OBJECTID = 3")
    conn.close()
    commit(gdb, None, [{"id": 0, "features": {"deleteIds": [gdb.gids[2]]}}])
    (conflict,) = gdb.conflicts()
    gdb.restore_conflict(conflict.id)
    assert point(gdb, gdb.gids[2], "name") == ("keep me",)
    assert pending(gdb)[0][:3] == ("Points", "add", gdb.gids[2])


def test_a_conflict_logged_without_a_local_version_is_not_restored_as_an_empty_feature(gdb):
    """Earlier versions logged an update that the server rejected as not found, of a feature
    the user had deleted too, with no local version. Restoring it refuses with a message
    (it would make an empty feature without geometry) and changes nothing; dismissing works."""
    from plugin.core.conflicts import record_conflict

    with gdb.conn:
        record_conflict(
            gdb.conn,
            gdb.layer(0),
            global_id=gdb.gids[0],
            is_attachment=False,
            local_op="update",
            reason=ConflictReason.DELETED_ON_SERVER,
            local_row=None,
        )
    (conflict,) = gdb.conflicts()
    before = pending(gdb)
    with pytest.raises(GeodatabaseError, match="no local version"):
        gdb.restore_conflict(conflict.id)
    assert gdb.conflicts() == [conflict] and pending(gdb) == before
    gdb.dismiss_conflict(conflict.id)
    assert gdb.conflicts() == []


def test_failure_in_the_middle_of_applying_leaves_the_old_state(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'pending' WHERE OBJECTID = 1")
    conn.close()
    snapshot = gdb.snapshot_upload()
    before = gdb.conn.execute("SELECT * FROM Points ORDER BY OBJECTID").fetchall()

    def events():
        for i in range(2500):
            yield 0, "features.adds", lj.point_feature(1000 + i)
        yield 0, "features.deleteIds", gdb.gids[1]
        raise OSError("connection reset while reading the result")

    with pytest.raises(OSError):
        gdb.commit_sync(snapshot, lj.sync_header(999), events(), direction=BI)
    assert gdb.conn.execute("SELECT * FROM Points ORDER BY OBJECTID").fetchall() == before
    assert gdb.replica.server_gen == 100
    assert pending(gdb) == [("Points", "update", gdb.gids[0], ["name"])]
    assert gdb.history() == []
    # Tracking is on again for other writers.
    conn = writer(gdb)
    conn.execute("UPDATE Points SET visits = 1 WHERE OBJECTID = 2")
    conn.close()
    assert len(pending(gdb)) == 2


def test_large_download_is_applied_in_batches_in_one_transaction(gdb):
    def gid(i):
        return f"{{{i:08X}-0000-4000-8000-000000000000}}"

    def events():
        for i in range(20000):
            yield 0, "features.adds", lj.point_feature(10_000 + i, gid=gid(i))
        for i in range(0, 20000, 2):
            yield 0, "features.deleteIds", gid(i)

    report = gdb.commit_sync(None, lj.sync_header(200), events(), direction=DOWN)
    assert report.layers[0].downloaded.adds == 20000
    assert report.layers[0].downloaded.deletes == 10000
    assert gdb.conn.execute("SELECT count(*) FROM Points").fetchone() == (10005,)
    assert gdb.conn.execute("SELECT count(*) FROM rtree_Points_geom").fetchone() == (10005,)
    assert point(gdb, gid(1), "OBJECTID") == (10_001,)


def test_integer_delete_ids_are_tolerated_as_object_ids(gdb):
    commit(gdb, None, [{"id": 0, "features": {"deleteIds": [4]}}])
    assert point(gdb, gdb.gids[3]) is None


def test_upload_only_commit_does_not_move_the_generation(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'up' WHERE OBJECTID = 1")
    conn.close()
    snapshot = gdb.snapshot_upload()
    commit(gdb, snapshot, [], gen=500, direction=SyncDirection.UPLOAD)
    assert gdb.replica.server_gen == 100 and not gdb.has_pending_edits()


def test_per_layer_generations_move_only_for_the_synced_layers(gdb):
    header = {
        "replicaID": "x",
        "layerServerGens": [{"id": 0, "serverGen": 7}, {"id": 1, "serverGen": 8}],
    }
    gdb.commit_sync(None, header, iter([]), direction=DOWN, layer_ids=[1])
    assert gdb.replica.layer_gens == {1: 8}


def test_journal_keeps_the_snapshot_and_status_url_until_committed(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'journaled' WHERE OBJECTID = 1")
    conn.close()
    snapshot = gdb.snapshot_upload()
    entry_id = gdb.journal_begin(snapshot)
    gdb.journal_set_status_url(entry_id, "http://server/jobs/1")
    with Geodatabase.open(gdb.path) as after_crash:
        entry = after_crash.journal_open_entry()
        assert entry.id == entry_id and entry.status_url == "http://server/jobs/1"
        assert entry.snapshot == snapshot and entry.edits == snapshot.edits
        after_crash.commit_sync(entry.snapshot, lj.sync_header(101), iter([]), direction=BI)
        assert after_crash.journal_open_entry() is None
    entry2 = gdb.journal_begin(gdb.snapshot_upload())
    gdb.journal_close(entry2)
    assert gdb.journal_open_entry() is None


_HOLD_LOCK = """
import sys
from plugin.core.geodatabase import Geodatabase
with Geodatabase.open(sys.argv[1]) as gdb, gdb.sync_lock():
    print("locked", flush=True)
    sys.stdin.readline()
"""


def _lock_holder(path):
    """Another process holding the sync lock until its stdin is closed."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = _readline(proc, 60)
    assert line.strip() == "locked", line
    return proc


def _readline(proc, timeout):
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""


def test_sync_lock_excludes_other_processes_and_threads(gdb):
    proc = _lock_holder(gdb.path)
    try:
        with pytest.raises(SyncInProgressError, match="already synchronizing"), gdb.sync_lock():
            pass
    finally:
        proc.stdin.close()
        assert proc.wait(60) == 0
    with gdb.sync_lock():
        errors = []

        def other_thread():
            try:
                with Geodatabase.open(gdb.path) as again, again.sync_lock():
                    pass
            except SyncInProgressError as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(30)
        assert len(errors) == 1 and "already synchronizing" in str(errors[0])
    with gdb.sync_lock():
        pass  # released again


def test_lock_of_a_killed_process_is_released(gdb):
    proc = _lock_holder(gdb.path)
    with pytest.raises(SyncInProgressError), gdb.sync_lock():
        pass
    proc.kill()
    proc.wait(60)
    with gdb.sync_lock(timeout=10):
        pass


def add_local_attachment(gdb, parent_gid, name="local.txt", data=b"local"):
    conn = writer(gdb)
    conn.execute(
        "INSERT INTO Points__ATTACH (REL_GLOBALID, ATT_NAME, CONTENT_TYPE, DATA_SIZE, DATA)"
        " VALUES (?, ?, 'text/plain', ?, ?)",
        (parent_gid, name, len(data), data),
    )
    gid = conn.execute("SELECT GLOBALID FROM Points__ATTACH WHERE ATT_NAME = ?", (name,)).fetchone()
    conn.close()
    return gid[0]


def test_rejected_attachment_goes_to_conflicts_and_can_be_restored(gdb):
    att = add_local_attachment(gdb, gdb.gids[2])
    snapshot = gdb.snapshot_upload()
    assert snapshot.edits[0]["attachments"]["adds"][0]["globalId"] == att
    error = {"code": 1000, "description": "Attachment too large."}
    reply = [
        {
            "id": 0,
            "attachmentResults": {
                "addResults": [{"globalId": att, "success": False, "error": error}]
            },
        }
    ]
    report = commit(gdb, snapshot, reply)
    (edit_error,) = report.edit_errors
    assert edit_error.is_attachment and edit_error.operation == "add"
    (conflict,) = gdb.conflicts()
    assert conflict.is_attachment and conflict.attributes["DATA"] == b"local"
    assert gdb.conn.execute(
        "SELECT count(*) FROM Points__ATTACH WHERE GLOBALID = ?", (att,)
    ).fetchone() == (0,)
    gdb.restore_conflict(conflict.id)
    (again,) = gdb.snapshot_upload().edits[0]["attachments"]["adds"]
    assert again["globalId"] == att and again["parentGlobalId"] == gdb.gids[2]


def test_server_delete_of_a_feature_keeps_its_new_local_attachments_as_conflicts(gdb):
    att = add_local_attachment(gdb, gdb.gids[3])
    report = commit(gdb, None, [{"id": 0, "features": {"deleteIds": [gdb.gids[3]]}}])
    (conflict,) = gdb.conflicts()
    assert conflict.global_id == att and conflict.reason == ConflictReason.DELETED_ON_SERVER
    assert not gdb.has_pending_edits() and report.layers[0].conflicts == 1


def test_downloaded_attachment_delete_and_update_respect_local_edits(gdb):
    existing = gdb.conn.execute("SELECT GLOBALID FROM Points__ATTACH").fetchone()[0]
    conn = writer(gdb)
    conn.execute("UPDATE Points__ATTACH SET ATT_NAME = 'renamed locally'")
    conn.close()
    update = lj.attachment(gdb.gids[0], gid=existing, data=b"server bytes")
    commit(gdb, None, [{"id": 0, "attachments": {"updates": [update]}}])
    name = gdb.conn.execute("SELECT ATT_NAME FROM Points__ATTACH").fetchone()[0]
    assert name == "renamed locally"  # bidirectional: the pending local edit wins next upload
    commit(gdb, None, [{"id": 0, "attachments": {"updates": [update]}}], direction=DOWN)
    name = gdb.conn.execute("SELECT ATT_NAME FROM Points__ATTACH").fetchone()[0]
    assert name == "renamed locally"  # download-only too: it stays pending, nothing logged
    assert gdb.conflicts() == [] and gdb.has_pending_edits()
    commit(gdb, None, [{"id": 0, "attachments": {"deleteIds": [existing]}}])
    assert gdb.conn.execute("SELECT count(*) FROM Points__ATTACH").fetchone() == (0,)
    (conflict,) = gdb.conflicts()  # deleted on the server: the local version is kept there
    assert conflict.is_attachment and conflict.attributes["ATT_NAME"] == "renamed locally"


def test_geodatabase_stays_a_valid_geopackage_after_edits_and_syncs(gdb):
    validate = pytest.importorskip("osgeo_utils.samples.validate_gpkg")
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'mine' WHERE OBJECTID = 1")
    conn.execute("INSERT INTO Points (name) VALUES ('new')")
    conn.close()
    snapshot = gdb.snapshot_upload()
    reply = [
        {
            "id": 0,
            "features": {
                "adds": [lj.point_feature(700)],
                "updates": [server_feature(gdb.gids[1], name="theirs")],
                "deleteIds": [gdb.gids[2]],
            },
        }
    ]
    commit(gdb, snapshot, reply)
    errors = validate.check(
        gdb.path, abort_at_first_error=False, warning_msg=False, warning_as_error=True
    )
    assert errors == []


def test_commit_waits_for_another_writer_then_says_the_geodatabase_is_busy(gdb, monkeypatch):
    monkeypatch.setattr("plugin.core.gpkg_connection.BUSY_TIMEOUT_MS", 200)
    with Geodatabase.open(gdb.path) as impatient:
        other = writer(gdb)
        other.execute("BEGIN IMMEDIATE")  # e.g. QGIS in the middle of saving edits
        try:
            with pytest.raises(GeodatabaseError, match="busy"):
                impatient.commit_sync(None, lj.sync_header(101), iter([]), direction=DOWN)
        finally:
            other.execute("ROLLBACK")
            other.close()
        impatient.commit_sync(None, lj.sync_header(101), iter([]), direction=DOWN)
    assert gdb.replica.server_gen == 101


def test_qgis_reads_the_old_state_while_a_sync_is_writing(gdb, qgis_app):
    from qgis.core import QgsVectorLayer

    seen = []

    def events():
        for i in range(3000):
            yield 0, "features.adds", lj.point_feature(5000 + i)
        # The write transaction is open here: a reader must neither block nor see half of it.
        layer = QgsVectorLayer(f"{gdb.path}|layername=Points", "reader", "ogr")
        seen.append(sum(1 for _ in layer.getFeatures()))
        del layer

    commit(gdb, None, [], gen=101)  # warm up: the file is in WAL mode from the start
    gdb.commit_sync(None, lj.sync_header(102), events(), direction=DOWN)
    assert seen == [5]
    layer = QgsVectorLayer(f"{gdb.path}|layername=Points", "after", "ogr")
    assert sum(1 for _ in layer.getFeatures()) == 3005


_KILLED_DURING_APPLY = """
import sys, time
from plugin.core.enums import SyncDirection
from plugin.core.geodatabase import Geodatabase
from tests import layer_json as lj

def events():
    for i in range(3000):
        yield 0, "features.adds", lj.point_feature(7000 + i)
    print("applying", flush=True)
    time.sleep(120)  # killed here, in the middle of the transaction

with Geodatabase.open(sys.argv[1]) as gdb:
    gdb.commit_sync(None, lj.sync_header(999), events(), direction=SyncDirection.DOWNLOAD)
"""


def test_process_killed_during_apply_leaves_the_old_state(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'pending' WHERE OBJECTID = 1")
    conn.close()
    before = gdb.conn.execute("SELECT * FROM Points ORDER BY OBJECTID").fetchall()
    gdb.close()
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_DURING_APPLY, gdb.path],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert _readline(proc, 120).strip() == "applying"
    finally:
        proc.kill()
        proc.wait(60)
    with Geodatabase.open(gdb.path) as again:
        assert again.conn.execute("SELECT * FROM Points ORDER BY OBJECTID").fetchall() == before
        assert again.replica.server_gen == 100
        assert again.pending_counts()[0]["updates"] == 1
        assert again.history() == []
        again.commit_sync(None, lj.sync_header(101), iter([]), direction=BI)
        assert again.replica.server_gen == 101


def test_download_only_layers_of_a_per_layer_sync_keep_their_pending_edits(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'mine' WHERE OBJECTID = 1")
    conn.execute("UPDATE Lines SET name = 'my line' WHERE OBJECTID = 1")
    conn.close()
    line_gid = gdb.conn.execute("SELECT GlobalID FROM Lines WHERE OBJECTID = 1").fetchone()[0]
    snapshot = gdb.snapshot_upload(layer_ids=[1])  # Points (0) only downloads in this sync
    reply = [
        {"id": 0, "features": {"updates": [server_feature(gdb.gids[0], name="theirs")]}},
        {
            "id": 1,
            "features": {"updates": [{"attributes": {"GlobalID": line_gid, "name": "their line"}}]},
        },
    ]
    commit(gdb, snapshot, reply)
    # Points did not upload: its pending edit stays (uploaded and winning at its next upload).
    assert point(gdb, gdb.gids[0], "name") == ("mine",)
    assert gdb.conflicts() == []
    assert pending(gdb) == [("Points", "update", gdb.gids[0], ["name"])]
    # Lines uploaded its edit in this sync: what the download says is the server's state after
    # that upload, taken without a conflict.
    assert gdb.conn.execute("SELECT name FROM Lines WHERE OBJECTID = 1").fetchone() == (
        "their line",
    )


def test_download_only_sync_keeps_a_local_delete_and_the_attachments_until_it_is_uploaded(gdb):
    attachments = gdb.conn.execute("SELECT GLOBALID, DATA FROM Points__ATTACH").fetchall()
    conn = writer(gdb)
    conn.execute("DELETE FROM Points WHERE OBJECTID = 1")
    conn.close()
    reply = [{"id": 0, "features": {"updates": [server_feature(gdb.gids[0], name="server")]}}]
    commit(gdb, None, reply, direction=DOWN)  # the server updated it: the local delete stays
    assert point(gdb, gdb.gids[0], "name") is None
    assert gdb.conflicts() == []
    assert pending(gdb) == [("Points", "delete", gdb.gids[0], [])]
    # Kept until the server acknowledges the delete.
    assert gdb.conn.execute("SELECT GLOBALID, DATA FROM Points__ATTACH").fetchall() == attachments


def test_attachments_of_a_feature_deleted_on_both_sides_are_removed(gdb):
    conn = writer(gdb)
    conn.execute("DELETE FROM Points WHERE OBJECTID = 1")
    conn.close()
    commit(gdb, None, [{"id": 0, "features": {"deleteIds": [gdb.gids[0]]}}])
    assert gdb.conn.execute("SELECT count(*) FROM Points__ATTACH").fetchone() == (0,)
    assert not gdb.has_pending_edits() and gdb.conflicts() == []


def _reject(gid, code=1000):
    return {"globalId": gid, "success": False, "error": {"code": code, "description": "No."}}


def test_rejected_update_puts_the_servers_values_back_locally(gdb):
    original = point(gdb, gdb.gids[0], "name, visits")
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'bad', visits = 1 WHERE OBJECTID = 1")
    snapshot = gdb.snapshot_upload()
    conn.execute("UPDATE Points SET visits = 2, height = 9 WHERE OBJECTID = 1")  # during the sync
    conn.close()
    commit(gdb, snapshot, [{"id": 0, "updateResults": [_reject(gdb.gids[0])]}])
    # name goes back to the server's value; visits and height were edited again: still pending.
    assert point(gdb, gdb.gids[0], "name, visits, height") == (original[0], 2, 9.0)
    assert pending(gdb) == [("Points", "update", gdb.gids[0], ["height", "visits"])]
    (conflict,) = gdb.conflicts()
    assert conflict.attributes["name"] == "bad" and conflict.attributes["visits"] == 2


def test_a_field_rejected_after_an_accepted_upload_returns_to_the_accepted_value(gdb):
    conn = writer(gdb)
    conn.execute("UPDATE Points SET name = 'accepted' WHERE OBJECTID = 1")
    first = gdb.snapshot_upload()
    conn.execute("UPDATE Points SET name = 'rejected later' WHERE OBJECTID = 1")
    conn.close()
    commit(gdb, first, [])
    second = gdb.snapshot_upload()
    commit(gdb, second, [{"id": 0, "updateResults": [_reject(gdb.gids[0])]}])
    assert point(gdb, gdb.gids[0], "name") == ("accepted",)
    assert not gdb.has_pending_edits()
