"""Creating, opening and loading geodatabases: a valid GeoPackage for GDAL and QGIS, with
the service's schema, values and dates stored losslessly."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest
from osgeo import gdal, ogr

from plugin.core import field_values as fv
from plugin.core.enums import SyncDirection, SyncModel
from plugin.core.errors import CancelledError, GeodatabaseError, UnsupportedGeometryError
from plugin.core.geodatabase import Geodatabase
from plugin.core.geometry import gpkg_to_esri
from tests import layer_json as lj
from tests.layer_json import demo_events, make_gdb


@pytest.fixture
def loaded(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    points, events = demo_events()
    gdb.load_replica(lj.replica_header(server_gen=42), iter(events))
    yield gdb, points
    gdb.close()


def test_created_geodatabase_is_a_geopackage_gdal_reads_with_every_table(tmp_path):
    path = tmp_path / "demo.gpkg"
    make_gdb(path).close()
    ds = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    assert ds.GetDriver().ShortName == "GPKG"
    names = sorted(ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount()))
    assert names == ["Inspections", "Lines", "Points", "Points__ATTACH", "Polygons"]
    points = ds.GetLayerByName("Points")
    assert points.GetGeomType() == ogr.wkbPoint
    assert points.GetFIDColumn() == "OBJECTID"
    assert points.GetSpatialRef().GetAuthorityCode(None) == "3857"
    assert ds.GetLayerByName("Lines").GetGeomType() == ogr.wkbMultiLineString
    assert ds.GetLayerByName("Polygons").GetGeomType() == ogr.wkbMultiPolygon
    assert ds.GetLayerByName("Inspections").GetGeomType() == ogr.wkbNone
    defn = points.GetLayerDefn()
    types = {
        defn.GetFieldDefn(i).GetName(): (
            defn.GetFieldDefn(i).GetType(),
            defn.GetFieldDefn(i).GetSubType(),
            defn.GetFieldDefn(i).GetWidth(),
        )
        for i in range(defn.GetFieldCount())
    }
    assert types["GlobalID"] == (ogr.OFTString, ogr.OFSTNone, 38)
    assert types["name"] == (ogr.OFTString, ogr.OFSTNone, 100)
    assert types["category"][:2] == (ogr.OFTInteger, ogr.OFSTInt16)
    assert types["visits"][0] == ogr.OFTInteger
    assert types["big"][0] == ogr.OFTInteger64
    assert types["rating"][:2] == (ogr.OFTReal, ogr.OFSTFloat32)
    assert types["height"][0] == ogr.OFTReal
    assert types["observed"][0] == ogr.OFTDateTime
    assert types["day"][0] == ogr.OFTDate
    category = defn.GetFieldDefn(defn.GetFieldIndex("category"))
    assert category.GetDomainName() == "PointCategory"
    domain = ds.GetFieldDomain("PointCategory")
    assert domain.GetEnumeration() == {"1": "Fountain", "2": "Viewpoint", "3": "Other"}
    attach = ds.GetLayerByName("Points__ATTACH").GetLayerDefn()
    assert [attach.GetFieldDefn(i).GetName() for i in range(attach.GetFieldCount())] == [
        "GLOBALID",
        "REL_GLOBALID",
        "CONTENT_TYPE",
        "ATT_NAME",
        "DATA_SIZE",
        "DATA",
    ]
    ds = None


def test_bookkeeping_tables_stay_out_of_gpkg_contents(tmp_path):
    path = tmp_path / "demo.gpkg"
    make_gdb(path).close()
    conn = sqlite3.connect(path)
    contents = {r[0] for r in conn.execute("SELECT table_name FROM gpkg_contents")}
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert not any(t.startswith("oms_") for t in contents)
    assert {"oms_meta", "oms_layers", "oms_changes", "oms_journal", "oms_conflicts"} <= tables
    # An unclosed connection lives on in a reference cycle until a later test's collection.
    with closing(sqlite3.connect(path)) as conn:
        constraints = conn.execute(
            "SELECT constraint_name, value, description FROM gpkg_data_column_constraints"
            " WHERE constraint_name = 'PointStatus' ORDER BY value"
        ).fetchall()
    assert constraints == [
        ("PointStatus", "damaged", "Damaged"),
        ("PointStatus", "ok", "In order"),
    ]


def test_qgis_opens_every_table_as_a_valid_layer(loaded, qgis_app):
    from qgis.core import QgsVectorLayer, QgsWkbTypes

    gdb, _points = loaded
    for table, count in (("Points", 5), ("Lines", 2), ("Polygons", 1), ("Inspections", 3)):
        layer = QgsVectorLayer(f"{gdb.path}|layername={table}", table, "ogr")
        assert layer.isValid(), table
        assert layer.featureCount() == count
    points = QgsVectorLayer(f"{gdb.path}|layername=Points", "p", "ogr")
    assert points.wkbType() == QgsWkbTypes.Point
    assert points.crs().authid() == "EPSG:3857"
    feature = next(points.getFeatures("name = 'Point 1'"))
    assert feature.geometry().asPoint().x() == 101.0
    assert feature["notes"] == lj.TRICKY_TEXT


def test_loaded_values_are_lossless(loaded):
    gdb, points = loaded
    conn = sqlite3.connect(gdb.path)
    row = conn.execute(
        "SELECT OBJECTID, GlobalID, name, category, big, observed, day, notes, rating"
        " FROM Points WHERE OBJECTID = 3"
    ).fetchone()
    src = points[2]["attributes"]
    assert row[0] == 3  # the service's ObjectID is kept for the initial copy
    assert row[1] == src["GlobalID"]
    assert row[2:5] == (src["name"], src["category"], 2**40 + 3)
    assert row[5] == fv.ms_to_datetime_text(lj.OBSERVED_MS + 3) == "2023-11-14T22:15:23.459Z"
    assert fv.datetime_text_to_ms(row[5]) == lj.OBSERVED_MS + 3
    assert row[6] == "2024-02-29"
    assert row[7] == lj.TRICKY_TEXT
    assert row[8] == 2.5
    attachment = conn.execute(
        "SELECT REL_GLOBALID, ATT_NAME, CONTENT_TYPE, DATA_SIZE, DATA FROM Points__ATTACH"
    ).fetchone()
    assert attachment == (
        points[0]["attributes"]["GlobalID"],
        "photo.png",
        "image/png",
        9,
        b"\x00\x01binary\xff",
    )
    conn.close()
    assert gdb.replica.replica_id == "{5D1A7E9C-1111-4222-8333-944455556666}"
    assert gdb.replica.server_gen == 42
    assert not gdb.has_pending_edits()


def test_gdal_reads_loaded_dates_and_geometries(loaded):
    gdb, _points = loaded
    ds = ogr.Open(gdb.path)
    layer = ds.GetLayerByName("Points")
    feature = layer.GetFeature(1)
    assert feature.GetFieldAsString("observed") == "2023/11/14 22:15:23.457+00"
    assert feature.GetGeometryRef().ExportToWkt() == "POINT (101 201)"
    polygons = ds.GetLayerByName("Polygons")
    polygon = polygons.GetNextFeature()
    geometry = polygon.GetGeometryRef()
    assert geometry.GetGeometryCount() == 2 and geometry.IsValid()
    assert layer.GetExtent() == (101.0, 105.0, 201.0, 205.0)
    feature = polygon = geometry = layer = polygons = None
    ds = None


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_700_000_123_456, "2023-11-14T22:15:23.456Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_dates_convert_exactly_both_ways(ms, text):
    assert fv.ms_to_datetime_text(ms) == text
    assert fv.datetime_text_to_ms(text) == ms


def test_dates_written_by_other_tools_are_read():
    assert fv.datetime_text_to_ms("2023-11-14T22:15:23Z") == 1_700_000_123_000
    assert fv.datetime_text_to_ms("2023-11-14 22:15:23.4") == 1_700_000_123_400
    assert fv.datetime_text_to_ms("2023-11-14T23:15:23.456+01:00") == 1_700_000_123_456
    assert fv.datetime_text_to_ms("2023-11-14") == 1_699_920_000_000
    assert fv.datetime_text_to_ms("not a date") is None


def test_guids_match_however_written_and_a_malformed_id_never_matches_a_guid():
    guid = "{12345678-9ABC-4DEF-8123-456789ABCDEF}"
    for written in (guid, guid.lower(), guid.strip("{}"), f"  {guid}\n", f" {guid.lower()} "):
        assert fv.same_guid(written, guid) and fv.same_guid(guid, written)
    digits = "{12345678-1234-4123-8123-123456789012}"  # no letters: lower() cannot tell
    for malformed in (guid + "}", "{" + guid, f"{{ {digits} }}", guid[:-2] + "}", "{}"):
        assert not fv.same_guid(malformed, guid) and not fv.same_guid(malformed, digits)
    # Nothing to compare is no match; odd values are compared, never a crash.
    assert not fv.same_guid(None, None) and not fv.same_guid("", "  ")
    assert fv.same_guid(" {Not A Guid} ", "not a guid")
    assert not fv.same_guid(12345, guid) and fv.same_guid(12345, "12345")


def test_reopening_gives_the_same_layers_and_replica(loaded):
    gdb, _points = loaded
    with Geodatabase.open(gdb.path) as again:
        assert [lyr.table_name for lyr in again.layers] == [
            "Points",
            "Lines",
            "Polygons",
            "Inspections",
        ]
        points = again.layer(0)
        assert points.attachment_table == "Points__ATTACH"
        assert points.srs_id == 3857 and points.geometry_type == "esriGeometryPoint"
        assert points.layer_json["fields"][2]["name"] == "name"
        assert again.layer(3).is_table
        assert again.replica == gdb.replica
        uploadable = {f.name for f in points.uploadable_fields}
        assert "created_user" not in uploadable and "Shape__Area" not in uploadable
        assert "GlobalID" not in uploadable and {"name", "observed"} <= uploadable


def test_open_refuses_missing_foreign_and_corrupt_files(tmp_path):
    with pytest.raises(GeodatabaseError, match="does not exist"):
        Geodatabase.open(tmp_path / "missing.gpkg")
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(GeodatabaseError, match="damaged or not a GeoPackage"):
        Geodatabase.open(junk)
    plain = tmp_path / "plain.gpkg"
    ds = gdal.GetDriverByName("GPKG").Create(str(plain), 0, 0, 0, gdal.GDT_Unknown)
    ds.CreateLayer("foreign", None, ogr.wkbNone)
    ds = None
    with pytest.raises(GeodatabaseError, match="not an offline-map geodatabase"):
        Geodatabase.open(plain)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(GeodatabaseError, match="not a GeoPackage"):
        Geodatabase.open(other)


def test_create_refuses_an_existing_file_and_cleans_up_after_a_failure(tmp_path):
    path = tmp_path / "demo.gpkg"
    make_gdb(path).close()
    with pytest.raises(GeodatabaseError, match="already exists"):
        make_gdb(path)
    bad = lj.layer_infos()
    bad[1]["globalIdField"] = None
    bad[1]["fields"] = [f for f in bad[1]["fields"] if f["type"] != "esriFieldTypeGlobalID"]
    # A sync lock file left behind by an earlier geodatabase of that name goes too.
    (tmp_path / "bad.gpkg.synclock").write_bytes(b"")
    with pytest.raises(GeodatabaseError, match="no GlobalID"):
        make_gdb(tmp_path / "bad.gpkg", layer_infos=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.gpkg"]


def test_unknown_spatial_reference_is_refused(tmp_path):
    info = lj.service_info()
    info["spatialReference"] = {"wkid": 999999}
    layers = lj.layer_infos()
    for layer in layers.values():
        layer.pop("extent", None)
    with pytest.raises(GeodatabaseError, match="spatial reference"):
        make_gdb(tmp_path / "x.gpkg", layer_infos=layers, service_info=info)


def test_esri_only_wkid_and_z_m_layers(tmp_path):
    info = lj.service_info()
    info["spatialReference"] = {"wkid": 102003}  # USA Contiguous Albers: an ESRI: code
    layers = {1: lj.lines_layer()}
    layers[1]["hasZ"] = True
    layers[1]["hasM"] = True
    with make_gdb(tmp_path / "z.gpkg", layer_infos=layers, service_info=info) as gdb:
        feature = lj.line_feature(1)
        feature["geometry"] = {
            "hasZ": True,
            "hasM": True,
            "paths": [[[0.0, 0.0, 5.0, 1.0], [1.0, 1.0, 6.0, 2.0]]],
        }
        gdb.load_replica(lj.replica_header(), iter([(1, "features", feature)]))
        srs_id = gdb.layer(1).srs_id
    ds = ogr.Open(str(tmp_path / "z.gpkg"))
    layer = ds.GetLayer(0)
    assert layer.GetGeomType() == ogr.wkbMultiLineStringZM
    assert layer.GetSpatialRef().GetAuthorityName(None) == "ESRI"
    assert srs_id == 102003
    feature = layer.GetNextFeature()
    wkt = feature.GetGeometryRef().ExportToIsoWkt()
    assert wkt == "MULTILINESTRING ZM ((0 0 5 1,1 1 6 2))"
    feature = layer = None
    ds = None


def test_cancelled_load_raises_and_keeps_no_replica_id(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    events = [(0, "features", lj.point_feature(i)) for i in range(1, 12001)]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 2

    with pytest.raises(CancelledError):
        gdb.load_replica(lj.replica_header(), iter(events), cancel=cancel)
    assert gdb.replica.replica_id is None  # an unfinished load is recognisable
    gdb.close()


def test_attachments_by_url_are_fetched(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    point = lj.point_feature(1)
    item = lj.attachment(point["attributes"]["GlobalID"])
    del item["data"]
    item["url"] = "http://example/att/1"
    fetched = []

    def fetch(url):
        fetched.append(url)
        return b"fetched bytes"

    gdb.load_replica(
        lj.replica_header(),
        iter([(0, "features", point), (0, "attachments", item)]),
        fetch_attachment=fetch,
    )
    with closing(sqlite3.connect(gdb.path)) as conn:
        data = conn.execute("SELECT DATA FROM Points__ATTACH").fetchone()[0]
    assert fetched == ["http://example/att/1"] and data == b"fetched bytes"
    gdb.close()


def test_per_layer_generations_are_stored(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    header = lj.replica_header()
    header.pop("replicaServerGen")
    header["syncModel"] = "perLayer"
    header["layerServerGens"] = '[{"id": 0, "serverGen": "12"}, {"id": 1, "serverGen": 13}]'
    gdb.load_replica(header, iter([]))
    assert gdb.replica.sync_model == SyncModel.PER_LAYER
    assert gdb.replica.layer_gens == {0: 12, 1: 13}
    gdb.close()


def test_bulk_load_fills_the_spatial_index_and_feature_counts_and_keeps_the_triggers(loaded):
    gdb, _points = loaded
    conn = sqlite3.connect(gdb.path)
    from plugin.core.gpkg_connection import register_functions

    register_functions(conn)
    boxes = conn.execute("SELECT id, minx, maxx, miny, maxy FROM rtree_Points_geom ORDER BY id")
    assert boxes.fetchall() == [
        (i, 100.0 + i, 100.0 + i, 200.0 + i, 200.0 + i) for i in range(1, 6)
    ]
    counts = dict(conn.execute("SELECT table_name, feature_count FROM gpkg_ogr_contents"))
    assert counts["Points"] == 5 and counts["Polygons"] == 1 and counts["Inspections"] == 3
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {
        "rtree_Points_geom_insert",
        "trigger_insert_feature_count_Points",
        "oms_Points_insert",
    } <= triggers
    blob = conn.execute("SELECT geom FROM Points WHERE OBJECTID = 1").fetchone()[0]
    conn.execute("INSERT INTO Points (name, geom) VALUES ('after load', ?)", (blob,))
    conn.commit()
    assert conn.execute("SELECT count(*) FROM rtree_Points_geom").fetchone() == (6,)
    assert conn.execute(
        "SELECT feature_count FROM gpkg_ogr_contents WHERE table_name = 'Points'"
    ).fetchone() == (6,)
    conn.close()


def test_large_attachments_are_stored_in_small_batches(tmp_path, monkeypatch):
    monkeypatch.setattr("plugin.core.geodatabase.LOAD_BATCH_BYTES", 1000)
    gdb = make_gdb(tmp_path / "demo.gpkg")
    point = lj.point_feature(1)
    parent = point["attributes"]["GlobalID"]
    events = [(0, "features", point)]
    events += [(0, "attachments", lj.attachment(parent, data=bytes(600))) for _ in range(4)]
    messages = []
    gdb.load_replica(
        lj.replica_header(), iter(events), progress=lambda f, m: messages.append((f, m))
    )
    assert messages == [(None, "Stored 3 rows"), (None, "Stored 5 rows"), (1.0, "Stored 5 rows")]
    assert gdb.conn.execute("SELECT count(*), sum(DATA_SIZE) FROM Points__ATTACH").fetchone() == (
        4,
        2400,
    )
    gdb.close()


def test_bulk_load_puts_back_the_globalid_index_and_wal(loaded):
    gdb, points = loaded
    conn = gdb.conn
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"oms_Points_globalid", "oms_Points__ATTACH_globalid"} <= indexes
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT OBJECTID FROM Points WHERE GlobalID = ?",
        (points[0]["attributes"]["GlobalID"],),
    ).fetchall()
    assert "oms_Points_globalid" in str(plan)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # QGIS reads during syncs
    assert not conn.execute("SELECT name FROM sqlite_temp_master").fetchall()


def test_update_rows_keeps_the_spatial_index_and_leaves_unchanged_columns_alone(loaded):
    from plugin.core.bulk_insert import update_rows

    gdb, _points = loaded
    conn = gdb.conn
    blob2, gid1 = conn.execute(
        "SELECT (SELECT geom FROM Points WHERE OBJECTID = 2), GlobalID FROM Points"
        " WHERE OBJECTID = 1"
    ).fetchone()
    # A trigger that would refuse any write of the GlobalID (the rows are matched on it).
    conn.execute(
        "CREATE TEMP TRIGGER no_gid BEFORE UPDATE OF GlobalID ON Points"
        " BEGIN SELECT RAISE(ABORT, 'GlobalID written'); END"
    )
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    with conn:
        update_rows(
            conn,
            "Points",
            "OBJECTID",
            ["geom", "name", "GlobalID"],
            [[None, "no shape", "ignored", 3], [blob2, "moved", gid1, 1]],
            geometry_column="geom",
            unchanged=["GlobalID"],
        )
    conn.execute("DROP TRIGGER temp.no_gid")
    assert conn.execute("SELECT name, GlobalID FROM Points WHERE OBJECTID = 1").fetchone() == (
        "moved",
        gid1,
    )
    boxes = dict(conn.execute("SELECT id, minx FROM rtree_Points_geom").fetchall())
    assert boxes == {1: 102.0, 2: 102.0, 4: 104.0, 5: 105.0}  # 3 has no geometry now
    after = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    assert sorted(after) == sorted(triggers)


def test_our_connections_can_run_gdal_spatial_index_triggers(loaded):
    from plugin.core.gpkg_connection import connect

    gdb, _points = loaded
    conn = connect(gdb.path)
    # Some SQLite builds distrust schemas by default, which forbids our ST_ functions in triggers.
    assert conn.execute("PRAGMA trusted_schema").fetchone() == (1,)
    conn.execute(
        "UPDATE Points SET geom = (SELECT geom FROM Points WHERE OBJECTID = 2) WHERE OBJECTID = 1"
    )
    assert conn.execute("SELECT minx FROM rtree_Points_geom WHERE id = 1").fetchone() == (102.0,)
    conn.close()


def test_a_malformed_curve_stops_the_load_with_the_layer_named(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    curved = lj.line_feature(1)
    curved["geometry"] = {"curvePaths": [[{"c": [[2, 0], [1, 1]]}]]}
    with pytest.raises(UnsupportedGeometryError, match="^Lines: A curve segment"):
        gdb.load_replica(lj.replica_header(), iter([(1, "features", curved)]))
    assert gdb.replica.replica_id is None
    gdb.close()


def test_true_curve_layers_get_curved_columns_that_gdal_reads_as_curves(tmp_path):
    service = {**lj.service_info(), "supportsTrueCurve": True, "allowTrueCurvesUpdates": True}
    gdb = make_gdb(tmp_path / "curves.gpkg", service_info=service)
    arc = {"curvePaths": [[[0.0, 0.0], {"c": [[2.0, 0.0], [1.0, 1.0]]}, [3.0, 0.0]]]}
    curved = lj.line_feature(1)
    curved["geometry"] = arc
    gdb.load_replica(lj.replica_header(), iter([(1, "features", curved)]))
    assert [lyr.true_curves for lyr in gdb.layers] == [False, True, True, False]
    gdb.close()
    with Geodatabase.open(tmp_path / "curves.gpkg") as again:  # the flag survives reopening
        assert again.layer(1).true_curves and not again.layer(0).true_curves
    ds = ogr.Open(str(tmp_path / "curves.gpkg"))
    assert ds.GetLayerByName("Lines").GetGeomType() == ogr.wkbMultiCurve
    assert ds.GetLayerByName("Polygons").GetGeomType() == ogr.wkbMultiSurface
    assert ds.GetLayerByName("Points").GetGeomType() == ogr.wkbPoint
    feature = ds.GetLayerByName("Lines").GetNextFeature()
    assert feature.GetGeometryRef().ExportToIsoWkt() == (
        "MULTICURVE (COMPOUNDCURVE (CIRCULARSTRING (0 0,1 1,2 0),(2 0,3 0)))"
    )
    feature = ds = None


def test_a_curve_from_a_service_without_true_curve_support_is_densified(tmp_path):
    gdb = make_gdb(tmp_path / "demo.gpkg")
    curved = lj.line_feature(1)
    curved["geometry"] = {"curvePaths": [[[0, 0], {"c": [[2, 0], [1, 1]]}]]}
    gdb.load_replica(lj.replica_header(), iter([(1, "features", curved)]))
    table = gdb.layer(1).table_name
    blob = gdb.conn.execute(f'SELECT geom FROM "{table}"').fetchone()[0]
    back = gpkg_to_esri(blob, "esriGeometryPolyline")
    assert "curvePaths" not in back
    assert len(back["paths"][0]) > 10 and max(v[1] for v in back["paths"][0]) == pytest.approx(
        1, 1e-3
    )
    gdb.close()


@pytest.mark.parametrize("share", [0.0, 2.0], ids=["index written anew", "entries replaced"])
@pytest.mark.parametrize("known", [False, True], ids=["extents worked out", "extents given"])
@pytest.mark.parametrize("everything", [True, False], ids=["all moved", "some moved"])
def test_moved_rows_bring_the_spatial_index_to_the_rows_final_geometries(
    loaded, share, known, everything
):
    from plugin.core.bulk_insert import MovedRows, envelope_row, update_rows
    from plugin.core.geometry import gpkg_envelope

    gdb, _points = loaded
    conn = gdb.conn
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    blobs = dict(conn.execute("SELECT OBJECTID, geom FROM Points"))
    fids = sorted(blobs)
    first, second, third, fourth = fids[:4]
    with conn:
        moved = MovedRows(conn, "Points", "OBJECTID", "geom")
        moved.REBUILD_SHARE = share
        # Every row takes the next row's place; one loses its shape.
        rows = [[blobs[fids[(i + 1) % len(fids)]], fid] for i, fid in enumerate(fids)]
        rows[1][0] = None
        if not everything:
            rows = rows[: len(rows) // 2 + 1]
        envelopes = [gpkg_envelope(row[0]) for row in rows] if known else None
        update_rows(
            conn,
            "Points",
            "OBJECTID",
            ["geom"],
            rows,
            geometry_column="geom",
            moved=moved,
            envelopes=envelopes,
        )
        # Until finish() the index still has the old places; moved rows are deleted meanwhile,
        # (when only some moved) one of them coming back with the same fid and another place
        # (GDAL's triggers index it).
        assert conn.execute("SELECT count(*) FROM rtree_Points_geom").fetchone()[0] == len(fids)
        conn.execute("DELETE FROM Points WHERE OBJECTID IN (?, ?)", (third, fourth))
        if not everything:
            conn.execute(
                "INSERT INTO Points (OBJECTID, GlobalID, geom) VALUES (?, '{0}', ?)",
                (fourth, blobs[first]),
            )
        moved.finish()
    expected = {
        box[0]: box[1:]
        for fid, blob in conn.execute("SELECT OBJECTID, geom FROM Points")
        for box in [envelope_row(fid, blob)]
        if box is not None
    }
    assert second not in expected and third not in expected and first in expected
    if everything:
        assert fourth not in expected
    else:
        assert expected[fourth] == envelope_row(first, blobs[first])[1:]
    index = {r[0]: r[1:] for r in conn.execute("SELECT * FROM rtree_Points_geom")}
    assert index == expected  # whole numbers: exact in the index
    assert conn.execute("SELECT rtreecheck('rtree_Points_geom')").fetchone() == ("ok",)
    after = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    assert sorted(after) == sorted(triggers)
    assert not conn.execute("SELECT name FROM sqlite_temp_master").fetchall()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{8C4B0F6A-3E1D-4B5C-9A7F-0123456789AB}", "{8C4B0F6A-3E1D-4B5C-9A7F-0123456789AB}"),
        ("{8c4b0f6a-3e1d-4b5c-9a7f-0123456789ab}", "{8C4B0F6A-3E1D-4B5C-9A7F-0123456789AB}"),
        ("8c4b0f6a-3e1d-4b5c-9a7f-0123456789ab", "{8C4B0F6A-3E1D-4B5C-9A7F-0123456789AB}"),
        (" {8C4B0F6A-3E1D-4B5C-9A7F-0123456789AB} ", "{8C4B0F6A-3E1D-4B5C-9A7F-0123456789AB}"),
        ("{12345678-1234-1234-1234-123456789012}", "{12345678-1234-1234-1234-123456789012}"),
        ("", None),
        (None, None),
    ],
)
def test_global_ids_take_arcgis_form_whatever_form_they_come_in(raw, expected):
    from plugin.core.field_values import normalize_guid

    assert normalize_guid(raw) == expected


def test_the_layer_extent_qgis_reads_covers_the_rows_after_loading_and_after_a_download(loaded):
    """gpkg_contents' extent (which GDAL and QGIS read instead of scanning) is the bounds of
    the points after taking offline, and grows with a downloaded point moved far out."""
    gdb, points = loaded

    def extent():
        return gdb.conn.execute(
            "SELECT min_x, max_x, min_y, max_y FROM gpkg_contents WHERE table_name = 'Points'"
        ).fetchone()

    xs = [p["geometry"]["x"] for p in points]
    ys = [p["geometry"]["y"] for p in points]
    assert extent() == (min(xs), max(xs), min(ys), max(ys))  # whole numbers: exact
    moved = dict(points[2], geometry={"x": -5000.0, "y": 9000.0})
    gdb.commit_sync(
        None,
        lj.sync_header(43),
        iter([(0, "features.updates", moved)]),
        direction=SyncDirection.DOWNLOAD,
    )
    assert extent() == (-5000.0, max(xs), min(ys), 9000.0)
