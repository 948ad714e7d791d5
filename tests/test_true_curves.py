"""True curves and odd rings from a service that stores them (the reference "Parcels" service):
taken offline exactly, edited in QGIS, synchronized back with the arcs intact."""

from __future__ import annotations

import json
import math

import pytest
import requests
from osgeo import ogr
from qgis.core import QgsFeatureRequest, QgsGeometry, QgsProject, QgsWkbTypes

from plugin.core.geodatabase import Geodatabase
from plugin.core.geometry import gpkg_to_esri
from plugin.layers import add_offline_map_to_project
from tests.featureservice import seed
from tests.test_sync import Local, assert_no_errors, server_rows, sync_map, take_offline

PARCELS, CURBS, ODD_RINGS = 0, 1, 2
SERVICE = seed.PARCELS_SERVICE


def gid(layer_id: int, i: int) -> str:
    return seed.guid(SERVICE, layer_id, i)


def on_server(server, layer_id: int, i: int) -> dict:
    return server_rows(server, layer_id, SERVICE)[gid(layer_id, i)]


def local_geometry(local: Local, layer_id: int, i: int) -> dict:
    layer = local.layers[layer_id]
    blob = local.rows(layer_id)[gid(layer_id, i)][layer.geometry_column]
    return gpkg_to_esri(blob, layer.geometry_type, layer.has_z, layer.has_m)


@pytest.fixture
def parcels_map(reference_server, tmp_path):
    return take_offline(reference_server, tmp_path / "parcels", service=SERVICE)


@pytest.fixture
def project(qgis_new_project):
    yield QgsProject.instance()
    QgsProject.instance().clear()


def test_circular_arcs_come_offline_exactly_and_elliptic_ones_densified(
    reference_server, parcels_map
):
    local = Local(parcels_map)
    seeded = seed.parcels_geometries()
    for i in (0, 1, 3):  # circular arcs only: stored as curves, read back as the service has them
        assert local_geometry(local, PARCELS, i) == json.loads(json.dumps(seeded[PARCELS][i]))
    assert local_geometry(local, CURBS, 0) == json.loads(json.dumps(seeded[CURBS][0]))
    oval = local_geometry(local, PARCELS, 2)
    assert "rings" in oval and len(oval["rings"][0]) > 50  # the elliptic arc, densified
    assert "CIRCULARSTRING" in local.geometry_wkt(PARCELS, gid(PARCELS, 0))
    with Geodatabase.open(local.path) as gdb:
        assert [lyr.true_curves for lyr in gdb.layers] == [True, True, True]


def test_arcs_edited_in_qgis_reach_the_service_as_arcs_and_untouched_curves_stay_exact(
    reference_server, parcels_map, project
):
    before_oval = on_server(reference_server, PARCELS, 2)["geometry"]
    before_curb = on_server(reference_server, CURBS, 1)["geometry"]
    loaded = add_offline_map_to_project(parcels_map, project)
    parcels, curbs = loaded[0].layers[PARCELS], loaded[0].layers[CURBS]
    assert QgsWkbTypes.isCurvedType(parcels.wkbType())
    assert parcels.wkbType() == QgsWkbTypes.Type.MultiSurface
    assert curbs.wkbType() == QgsWkbTypes.Type.MultiCurve

    def feature(layer, i):
        layer_id = PARCELS if layer is parcels else CURBS
        request = QgsFeatureRequest().setFilterExpression(f"\"GlobalID\" = '{gid(layer_id, i)}'")
        return next(layer.getFeatures(request))

    # The lot's arc now bulges 20 m further: the user moves the arc's middle vertex in QGIS.
    lot = feature(parcels, 0)
    x, y = lot.geometry().vertexAt(3).x(), lot.geometry().vertexAt(3).y()
    ring = lot.geometry().constGet().geometryN(0).exteriorRing()
    assert ring.wkbType() == QgsWkbTypes.Type.CompoundCurve
    parcels.startEditing()
    moved = QgsGeometry(lot.geometry())
    assert moved.moveVertex(x, y + 20, 3)
    assert parcels.changeGeometry(lot.id(), moved)
    # Attribute-only edits of features whose curves were densified (elliptic arc, Bézier).
    field = parcels.fields().lookupField("parcel_no")
    assert parcels.changeAttributeValue(feature(parcels, 2).id(), field, 777)
    assert parcels.commitChanges()
    curbs.startEditing()
    assert curbs.changeAttributeValue(
        feature(curbs, 1).id(), curbs.fields().lookupField("name"), "Garden path"
    )
    assert curbs.commitChanges()

    assert_no_errors(sync_map(parcels_map))

    lot_now = on_server(reference_server, PARCELS, 0)["geometry"]
    start, north, arc, east, end = lot_now["curveRings"][0]
    end_point, mid = arc["c"]
    assert mid == pytest.approx([x, y + 20])
    assert end_point == seed.parcels_geometries()[PARCELS][0]["curveRings"][0][2]["c"][0]
    # Never uploaded with a geometry the user did not change: the curves are as they were.
    oval = on_server(reference_server, PARCELS, 2)
    assert oval["attributes"]["parcel_no"] == 777 and oval["geometry"] == before_oval
    path = on_server(reference_server, CURBS, 1)
    assert path["attributes"]["name"] == "Garden path" and path["geometry"] == before_curb

    # Another user taking the service offline gets the edited arc exactly.
    again = take_offline(reference_server, parcels_map.folder.parent / "again", service=SERVICE)
    assert local_geometry(Local(again), PARCELS, 0) == lot_now


def test_a_curve_update_the_layer_forbids_is_refused_and_kept_in_the_conflict_log(
    reference_server, parcels_map
):
    with reference_server.app.store.write() as tx:
        row = tx.conn.execute(
            "SELECT definition FROM layers WHERE service = ? AND layer_id = ?", (SERVICE, PARCELS)
        ).fetchone()
        definition = json.loads(row["definition"])
        definition["allowTrueCurvesUpdates"] = False
        tx.conn.execute(
            "UPDATE layers SET definition = ? WHERE service = ? AND layer_id = ?",
            (json.dumps(definition), SERVICE, PARCELS),
        )
    before = on_server(reference_server, PARCELS, 0)["geometry"]
    local = Local(parcels_map)
    local.set_geometry(PARCELS, gid(PARCELS, 0), "MULTIPOLYGON (((0 0,10 0,10 10,0 0)))")

    result = sync_map(parcels_map)

    errors = [e.message for r in result.all_results() for e in r.edit_errors]
    assert any("true curves cannot be updated" in m for m in errors), errors
    assert on_server(reference_server, PARCELS, 0)["geometry"] == before
    conflicts = local.conflicts()
    assert [c.global_id for c in conflicts] == [gid(PARCELS, 0)]


def test_odd_rings_are_grouped_by_containment_like_gdal(reference_server, parcels_map):
    local = Local(parcels_map)
    for i, esri in enumerate(seed.parcels_geometries()[ODD_RINGS]):
        ours = ogr.CreateGeometryFromWkt(local.geometry_wkt(ODD_RINGS, gid(ODD_RINGS, i)))
        gdal = ogr.CreateGeometryFromEsriJson(json.dumps(esri))
        assert ours.IsValid() and ours.GetArea() > 0
        assert ours.SymDifference(gdal).GetArea() == 0
    two = ogr.CreateGeometryFromWkt(local.geometry_wkt(ODD_RINGS, gid(ODD_RINGS, 0)))
    courtyard = ogr.CreateGeometryFromWkt(local.geometry_wkt(ODD_RINGS, gid(ODD_RINGS, 1)))
    assert two.GetGeometryCount() == 2  # the backwards ring is an island, not a hole
    assert courtyard.GetGeometryRef(0).GetGeometryCount() == 2  # the courtyard is a hole


def test_the_service_sends_true_curves_only_to_queries_that_ask_for_them(reference_server):
    url = f"{reference_server.service_url(SERVICE)}/{PARCELS}/query"
    params = {"where": "parcel_no = 100", "outFields": "*", "f": "json"}
    plain = requests.get(url, params=params, timeout=10).json()["features"][0]["geometry"]
    curved = requests.get(url, params={**params, "returnTrueCurves": "true"}, timeout=10).json()
    assert "curveRings" not in plain and len(plain["rings"][0]) > 10
    assert curved["features"][0]["geometry"] == seed.parcels_geometries()[PARCELS][0]
    top = max(v[1] for v in plain["rings"][0])
    x, y = seed.parcels_geometries()[PARCELS][0]["curveRings"][0][0]
    assert top == pytest.approx(y + 90, abs=0.5)
    assert math.isfinite(x)
