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
