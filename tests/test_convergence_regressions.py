"""Core bugs found by the convergence suite (tests/convergence.py), pinned one by one with the
smallest reproduction."""

from __future__ import annotations

import pytest

from plugin.core.enums import SyncDirection
from tests import layer_json as lj
from tests.test_geodatabase import demo_events, make_gdb


@pytest.fixture
def gdb(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    _points, events = demo_events()  # Points with ObjectIDs 1..5
    gdb.load_replica(lj.replica_header(server_gen=100), iter(events))
    yield gdb
    gdb.close()


def test_downloaded_adds_whose_object_id_is_taken_do_not_collide_with_the_next_ones(gdb):
    # Row A's ObjectID 2 is taken locally, so A gets the next free fid (6); row B arrives with
    # ObjectID 6 in the same batch, which was still free when checked. Seed 1 of the stress run
    # failed every later sync of a replica with "UNIQUE constraint failed: Points.OBJECTID".
    a = lj.point_feature(2, gid="{AAAAAAAA-0000-4000-8000-000000000001}")
    b = lj.point_feature(6, gid="{BBBBBBBB-0000-4000-8000-000000000002}")
    reply = [{"id": 0, "features": {"adds": [a, b], "deleteIds": []}}]

    gdb.commit_sync(
        None, lj.sync_header(101), lj.edits_to_events(reply), direction=SyncDirection.DOWNLOAD
    )

    rows = dict(gdb.conn.execute("SELECT GlobalID, OBJECTID FROM Points").fetchall())
    assert rows["{BBBBBBBB-0000-4000-8000-000000000002}"] == 6
    assert rows["{AAAAAAAA-0000-4000-8000-000000000001}"] not in (2, 6)
    assert len(rows) == 7


# -- with the reference service -------------------------------------------------------------


# Found by python tests/tools/stress.py --seed 3 --rounds 30 --replicas 3 (fixed in commit.py);
# since issue 15 a download-only sync keeps the pending local delete instead of restoring the row.
def test_download_only_sync_keeps_a_local_delete_of_a_row_with_attachments_until_it_is_uploaded(
    reference_server, tmp_path
):
    from plugin.core.enums import SyncModel
    from tests.featureservice import seed
    from tests.test_sync import Local, assert_no_errors, sync_map, take_offline

    server = reference_server
    offline_map = take_offline(server, tmp_path / "map", SyncModel.PER_REPLICA)
    local = Local(offline_map)
    gid = seed.guid(seed.DEMO_SERVICE, 0, 0)  # Points #0 has an attachment
    on_server = [a for a in server.attachments(seed.DEMO_SERVICE, 0) if a["parentGlobalId"] == gid]
    assert on_server
    server.apply_edits(seed.DEMO_SERVICE, 0, updates=[{"GlobalID": gid, "name": "server"}])
    local.delete(0, gid)  # the local delete also removes the row's attachments

    assert_no_errors(sync_map(offline_map, SyncDirection.DOWNLOAD))

    assert gid not in local.rows(0)  # the pending delete stays, nothing is logged
    assert local.pending()[0]["deletes"] == 1 and local.conflicts() == []

    assert_no_errors(sync_map(offline_map))  # uploaded: gone on the service too
    assert gid not in {f["attributes"]["GlobalID"] for f in server.query_all(seed.DEMO_SERVICE, 0)}
    assert not [a for a in server.attachments(seed.DEMO_SERVICE, 0) if a["parentGlobalId"] == gid]
    con = local._connect()
    try:
        left = con.execute(
            "SELECT count(*) FROM Points__ATTACH WHERE REL_GLOBALID = ?", (gid,)
        ).fetchone()
    finally:
        con.close()
    assert left == (0,) and not local.has_pending()
