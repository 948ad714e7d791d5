"""Change tracking by triggers: every writer (plain sqlite3, GDAL/OGR, QGIS) is tracked, and
the upload snapshot carries exactly the spec §3 edits."""

from __future__ import annotations

import base64
import re
import sqlite3
import struct

import pytest
from osgeo import ogr

from plugin.core.enums import SyncDirection
from plugin.core.gdal_mode import gdal_exceptions
from plugin.core.gpkg_connection import register_functions
from tests import layer_json as lj
from tests.layer_json import demo_events, make_gdb

GUID_RE = re.compile(r"^\{[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}\}$")


@pytest.fixture
def gdb(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    points, events = demo_events()
    gdb.load_replica(lj.replica_header(), iter(events))
    gdb.points = points
    yield gdb
    gdb.close()


def plain(path, *, spatial: bool = False) -> sqlite3.Connection:
    """A plain sqlite3 connection; GDAL's spatial-index triggers need the ST_ functions."""
    conn = sqlite3.connect(path, isolation_level=None)
    if spatial:
        register_functions(conn)
    return conn


def changes(path):
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT table_name, fid, op FROM oms_changes ORDER BY table_name, fid"
    ).fetchall()
    fields = conn.execute(
        "SELECT table_name, fid, field FROM oms_changed_fields ORDER BY table_name, fid, field"
    ).fetchall()
    conn.close()
    return rows, fields


def feature_edits(snapshot, layer_id):
    entry = next(e for e in snapshot.edits if e["id"] == layer_id)
    return entry.get("features", {}), entry.get("attachments", {})


def test_plain_sqlite3_writes_to_a_table_are_tracked_without_any_function_of_ours(gdb):
    conn = plain(gdb.path)  # no functions registered: the triggers use SQLite built-ins only
    conn.execute("INSERT INTO Inspections (inspector) VALUES ('new row')")
    conn.execute("UPDATE Inspections SET inspector = 'changed' WHERE OBJECTID = 1")
    conn.execute("DELETE FROM Inspections WHERE OBJECTID = 2")
    gid2 = gdb.conn.execute("SELECT global_id FROM oms_changes WHERE op = 'delete'").fetchone()[0]
    minted = conn.execute("SELECT GlobalID FROM Inspections WHERE inspector = 'new row'").fetchone()
    conn.close()
    assert GUID_RE.match(minted[0])
    rows, fields = changes(gdb.path)
    assert rows == [
        ("Inspections", 1, "update"),
        ("Inspections", 2, "delete"),
        ("Inspections", 4, "add"),
    ]
    assert fields == [("Inspections", 1, "inspector")]
    assert GUID_RE.match(gid2)
    assert gdb.pending_counts()[3] == {
        "adds": 1,
        "updates": 1,
        "deletes": 1,
        "attachment_adds": 0,
        "attachment_updates": 0,
        "attachment_deletes": 0,
    }
    assert gdb.has_pending_edits()


def test_geometry_and_field_changes_are_recorded_per_field(gdb):
    conn = plain(gdb.path, spatial=True)
    blob = conn.execute("SELECT geom FROM Points WHERE OBJECTID = 2").fetchone()[0]
    conn.execute("UPDATE Points SET geom = ? WHERE OBJECTID = 1", (blob,))
    conn.execute("UPDATE Points SET visits = 99, notes = notes WHERE OBJECTID = 1")
    conn.execute("UPDATE Points SET name = name WHERE OBJECTID = 3")  # no real change
    conn.execute("UPDATE Points SET last_edited_user = 'bob' WHERE OBJECTID = 4")  # not editable
    conn.close()
    rows, fields = changes(gdb.path)
    assert rows == [("Points", 1, "update")]
    assert fields == [("Points", 1, "geom"), ("Points", 1, "visits")]


def test_update_of_a_pending_add_stays_an_add_and_its_delete_forgets_it(gdb):
    conn = plain(gdb.path, spatial=True)
    conn.execute("INSERT INTO Points (name) VALUES ('temp')")
    fid = conn.execute("SELECT OBJECTID FROM Points WHERE name = 'temp'").fetchone()[0]
    conn.execute("UPDATE Points SET visits = 5 WHERE OBJECTID = ?", (fid,))
    assert changes(gdb.path)[0] == [("Points", fid, "add")]
    conn.execute("DELETE FROM Points WHERE OBJECTID = ?", (fid,))
    conn.close()
    assert changes(gdb.path) == ([], [])
    assert not gdb.has_pending_edits()


def test_globalid_is_minted_normalised_and_deduplicated(gdb):
    conn = plain(gdb.path, spatial=True)
    existing = gdb.points[0]["attributes"]["GlobalID"]
    conn.execute("INSERT INTO Points (name, GlobalID) VALUES ('empty', '')")
    conn.execute(
        "INSERT INTO Points (name, GlobalID) VALUES ('lower', 'a1b2c3d4-0000-4000-8000-00000000000a')"
    )
    # Copy-paste in QGIS copies the GlobalID too: the copy must become a new feature.
    conn.execute("INSERT INTO Points (name, GlobalID) VALUES ('copy', ?)", (existing,))
    got = dict(conn.execute("SELECT name, GlobalID FROM Points WHERE OBJECTID > 5"))
    conn.close()
    assert GUID_RE.match(got["empty"])
    assert got["lower"] == "{A1B2C3D4-0000-4000-8000-00000000000A}"
    assert GUID_RE.match(got["copy"]) and got["copy"] != existing
    assert len(set(got.values())) == 3


def test_globalid_of_a_synchronized_row_cannot_change_but_survives_a_stale_null(gdb):
    conn = plain(gdb.path, spatial=True)
    with pytest.raises(sqlite3.DatabaseError, match="GlobalID"):
        conn.execute("UPDATE Points SET GlobalID = '{00000000-0000-4000-8000-000000000000}'")
    before = conn.execute("SELECT GlobalID FROM Points WHERE OBJECTID = 1").fetchone()[0]
    conn.execute("UPDATE Points SET GlobalID = NULL, visits = 1 WHERE OBJECTID = 1")
    after = conn.execute("SELECT GlobalID FROM Points WHERE OBJECTID = 1").fetchone()[0]
    conn.close()
    assert after == before
    assert changes(gdb.path)[1] == [("Points", 1, "visits")]


def test_attachment_edits_are_tracked_and_go_with_their_feature(gdb):
    conn = plain(gdb.path, spatial=True)
    parent2 = gdb.points[1]["attributes"]["GlobalID"]
    conn.execute(
        "INSERT INTO Points__ATTACH (REL_GLOBALID, ATT_NAME, CONTENT_TYPE, DATA_SIZE, DATA)"
        " VALUES (?, 'new.txt', 'text/plain', 3, ?)",
        (parent2, b"abc"),
    )
    conn.execute("UPDATE Points__ATTACH SET ATT_NAME = 'renamed.png' WHERE ATTACHMENTID = 1")
    rows, _fields = changes(gdb.path)
    assert rows == [("Points__ATTACH", 1, "update"), ("Points__ATTACH", 2, "add")]
    # Deleting a feature takes its attachment edits with it: a never-uploaded attachment goes,
    # an uploaded one stays (without its pending edit) until the server acknowledges the delete.
    conn.execute("DELETE FROM Points WHERE OBJECTID = 1")
    conn.execute("DELETE FROM Points WHERE OBJECTID = 2")
    remaining = conn.execute("SELECT ATTACHMENTID FROM Points__ATTACH").fetchall()
    conn.close()
    assert remaining == [(1,)]
    rows, fields = changes(gdb.path)
    assert rows == [("Points", 1, "delete"), ("Points", 2, "delete")] and fields == []
    snapshot = gdb.snapshot_upload()
    assert "attachments" not in snapshot.edits[0]
    gdb.commit_sync(snapshot, lj.sync_header(101), iter([]), direction=SyncDirection.BIDIRECTIONAL)
    assert gdb.conn.execute("SELECT count(*) FROM Points__ATTACH").fetchone() == (0,)


def test_ogr_writes_are_tracked_field_by_field(gdb):
    ds = ogr.Open(gdb.path, 1)
    layer = ds.GetLayerByName("Points")
    feature = layer.GetFeature(2)
    feature.SetField("name", "renamed by OGR")
    assert layer.SetFeature(feature) == 0  # OGR rewrites every column, geometry and dates too
    new = ogr.Feature(layer.GetLayerDefn())
    new.SetField("name", "added by OGR")
    new.SetGeometry(ogr.CreateGeometryFromWkt("POINT (7 8)"))
    assert layer.CreateFeature(new) == 0
    new_fid = new.GetFID()
    assert layer.DeleteFeature(3) == 0
    feature = new = layer = None
    ds = None
    rows, fields = changes(gdb.path)
    assert rows == [("Points", 2, "update"), ("Points", 3, "delete"), ("Points", new_fid, "add")]
    assert fields == [("Points", 2, "name")]
    snapshot = gdb.snapshot_upload()
    features, _ = feature_edits(snapshot, 0)
    assert features["updates"] == [
        {
            "attributes": {
                "GlobalID": gdb.points[1]["attributes"]["GlobalID"],
                "name": "renamed by OGR",
            }
        }
    ]
    (add,) = features["adds"]
    assert GUID_RE.match(add["attributes"]["GlobalID"])
    assert add["geometry"] == {"x": 7.0, "y": 8.0}
    assert features["deleteIds"] == [gdb.points[2]["attributes"]["GlobalID"]]


def test_qgis_edit_sessions_are_tracked(gdb, qgis_app):
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

    layer = QgsVectorLayer(f"{gdb.path}|layername=Points", "points", "ogr")
    assert layer.isValid()
    name_idx = layer.fields().indexFromName("name")
    assert layer.startEditing()
    assert layer.changeAttributeValue(1, name_idx, "renamed in QGIS")
    assert layer.changeGeometry(2, QgsGeometry.fromPointXY(QgsPointXY(500, 600)))
    feature = QgsFeature(layer.fields())
    feature.setAttribute("name", "added in QGIS")
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(1, 2)))
    assert layer.addFeature(feature)
    assert layer.deleteFeature(4)
    assert layer.commitChanges(), layer.commitErrors()
    # A second session on the feature QGIS added (its GlobalID is still NULL in QGIS's copy).
    added = next(layer.getFeatures("name = 'added in QGIS'"))
    assert layer.startEditing()
    assert layer.changeAttributeValue(added.id(), layer.fields().indexFromName("visits"), 3)
    assert layer.commitChanges(), layer.commitErrors()
    del layer

    rows, fields = changes(gdb.path)
    assert rows == [
        ("Points", 1, "update"),
        ("Points", 2, "update"),
        ("Points", 4, "delete"),
        ("Points", added.id(), "add"),
    ]
    # QGIS rewrites whole rows (dates, floats, geometry): only real changes may count.
    assert [f for f in fields if f[1] in (1, 2)] == [("Points", 1, "name"), ("Points", 2, "geom")]
    snapshot = gdb.snapshot_upload()
    features, _ = feature_edits(snapshot, 0)
    (add,) = features["adds"]
    assert GUID_RE.match(add["attributes"]["GlobalID"])
    assert add["attributes"]["visits"] == 3 and add["geometry"] == {"x": 1.0, "y": 2.0}
    updates = {u["attributes"]["GlobalID"]: u for u in features["updates"]}
    first = updates[gdb.points[0]["attributes"]["GlobalID"]]
    assert first == {
        "attributes": {
            "GlobalID": gdb.points[0]["attributes"]["GlobalID"],
            "name": "renamed in QGIS",
        }
    }
    second = updates[gdb.points[1]["attributes"]["GlobalID"]]
    assert second["geometry"] == {"x": 500.0, "y": 600.0}
    assert set(second["attributes"]) == {"GlobalID"}


def test_snapshot_is_the_spec_edits_in_dependency_order(gdb):
    conn = plain(gdb.path, spatial=True)
    point_gid = "{11111111-2222-4333-8444-555555555555}"
    conn.execute(
        "INSERT INTO Points (GlobalID, name, observed, big, geom) VALUES (?, 'n', ?, ?, ?)",
        (
            point_gid,
            "2024-01-02T03:04:05.678Z",
            2**50,
            gdb.conn.execute("SELECT geom FROM Points WHERE OBJECTID = 1").fetchone()[0],
        ),
    )
    conn.execute("INSERT INTO Inspections (PointGlobalID, inspector) VALUES (?, 'i')", (point_gid,))
    conn.execute(
        "INSERT INTO Points__ATTACH (REL_GLOBALID, ATT_NAME, CONTENT_TYPE, DATA_SIZE, DATA)"
        " VALUES (?, 'a.bin', 'application/octet-stream', 2, ?)",
        (point_gid, b"\x00\xff"),
    )
    conn.execute("DELETE FROM Points__ATTACH WHERE ATTACHMENTID = 1")
    conn.execute("UPDATE Polygons SET owner_count = 3")
    conn.close()
    snapshot = gdb.snapshot_upload()
    assert [e["id"] for e in snapshot.edits] == [0, 2, 3]  # Points (origin) before Inspections
    features, attachments = feature_edits(snapshot, 0)
    (add,) = features["adds"]
    attrs = add["attributes"]
    assert attrs["GlobalID"] == point_gid
    assert attrs["observed"] == 1704164645678 and attrs["big"] == 2**50
    assert "OBJECTID" not in attrs and "created_user" not in attrs and "Shape__Area" not in attrs
    assert add["geometry"] == {"x": 101.0, "y": 201.0}
    (att,) = attachments["adds"]
    assert att["parentGlobalId"] == point_gid and att["name"] == "a.bin"
    assert base64.b64decode(att["data"]) == b"\x00\xff"
    assert att["contentType"] == "application/octet-stream" and GUID_RE.match(att["globalId"])
    assert len(attachments["deleteIds"]) == 1
    inspections, _ = feature_edits(snapshot, 3)
    assert inspections["adds"][0]["attributes"]["PointGlobalID"] == point_gid
    polygons, _ = feature_edits(snapshot, 2)
    assert polygons["updates"][0]["attributes"]["owner_count"] == 3
    assert "geometry" not in polygons["updates"][0]
    assert snapshot.counts[0]["adds"] == 1 and snapshot.counts[0]["attachment_deletes"] == 1
    assert snapshot.seq > 0 and not snapshot.is_empty
    only_adds = gdb.snapshot_upload(only_adds=True)
    assert [e["id"] for e in only_adds.edits] == [0, 3]
    assert "deleteIds" not in feature_edits(only_adds, 0)[1]
    assert gdb.snapshot_upload(layer_ids=[2]).counts == {
        2: {
            "adds": 0,
            "updates": 1,
            "deletes": 0,
            "attachment_adds": 0,
            "attachment_updates": 0,
            "attachment_deletes": 0,
        }
    }


def test_guid_values_typed_by_hand_are_uploaded_in_arcgis_form(gdb):
    conn = plain(gdb.path)
    conn.execute(
        "INSERT INTO Inspections (PointGlobalID, inspector) VALUES (?, 'typed')",
        ("8c4b0f3e-1d2a-4b5c-9d8e-7f6a5b4c3d2e",),
    )
    conn.close()
    (add,) = feature_edits(gdb.snapshot_upload(), 3)[0]["adds"]
    assert add["attributes"]["PointGlobalID"] == "{8C4B0F3E-1D2A-4B5C-9D8E-7F6A5B4C3D2E}"


def test_rewrites_of_unchanged_dates_and_geometries_in_another_format_are_not_edits(gdb):
    conn = plain(gdb.path, spatial=True)
    # Same instant written as another GDAL version or tool might write it.
    conn.execute("UPDATE Points SET observed = '2023-11-14T22:15:23.457' WHERE OBJECTID = 1")
    conn.execute("UPDATE Points SET observed = '2023-11-14T23:15:23.458+01:00' WHERE OBJECTID = 2")
    # Same geometry with an envelope in the header (points are stored without one).
    blob = conn.execute("SELECT geom FROM Points WHERE OBJECTID = 3").fetchone()[0]
    x, y = struct.unpack_from("<2d", blob, 13)
    with_envelope = struct.pack("<2sBBi4d", b"GP", 0, 3, 3857, x, x, y, y) + blob[8:]
    conn.execute("UPDATE Points SET geom = ? WHERE OBJECTID = 3", (with_envelope,))
    assert changes(gdb.path) == ([], [])
    conn.execute("UPDATE Points SET observed = '2023-11-14T22:15:23.999Z' WHERE OBJECTID = 1")
    conn.execute("UPDATE Points SET observed = 'not a date' WHERE OBJECTID = 2")
    header = struct.pack("<2sBBi4d", b"GP", 0, 3, 3857, x, x, y + 1, y + 1)
    moved = header + blob[8:21] + struct.pack("<d", y + 1)  # WKB order, type and x kept
    conn.execute("UPDATE Points SET geom = ? WHERE OBJECTID = 3", (moved,))
    conn.close()
    assert changes(gdb.path)[1] == [
        ("Points", 1, "observed"),
        ("Points", 2, "observed"),
        ("Points", 3, "geom"),
    ]


def test_tracking_triggers_lost_to_a_table_rebuild_are_restored_on_open(gdb):
    from plugin.core.geodatabase import Geodatabase

    conn = plain(gdb.path, spatial=True)
    # What a table rebuild by an older GDAL (copy, drop, rename) leaves: no triggers of ours,
    # and here one field fewer.
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'oms_Points_%'"
    ).fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    conn.execute('ALTER TABLE Points DROP COLUMN "notes"')
    conn.execute("UPDATE Points SET name = 'untracked' WHERE OBJECTID = 2")
    conn.close()
    assert changes(gdb.path) == ([], [])
    with Geodatabase.open(gdb.path) as again:
        conn = plain(again.path, spatial=True)
        conn.execute("UPDATE Points SET name = 'tracked again' WHERE OBJECTID = 1")
        conn.close()
        assert changes(again.path)[1] == [("Points", 1, "name")]


def test_deleting_a_synchronized_field_is_refused(gdb):
    from osgeo import gdal

    ds = ogr.Open(gdb.path, 1)
    layer = ds.GetLayerByName("Points")
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        # The tracking triggers name the field, so SQLite refuses to drop it.
        with gdal_exceptions(False):  # GDAL answers with an error code
            assert layer.DeleteField(layer.GetLayerDefn().GetFieldIndex("notes")) != 0
    finally:
        gdal.PopErrorHandler()
    layer = None
    ds = None
    assert "notes" in {r[1] for r in gdb.conn.execute("PRAGMA table_info(Points)")}
