"""Esri JSON <-> GeoPackage geometry: exact round trips, GDAL agreement, refusals."""

from __future__ import annotations

import json
import math
import struct

import pytest
from osgeo import gdal, ogr, osr

from plugin.core.errors import UnsupportedGeometryError
from plugin.core.geometry import (
    DENSIFY_TOLERANCE,
    densifies,
    esri_to_gpkg,
    gpkg_envelope,
    gpkg_is_empty,
    gpkg_to_esri,
)

POINT = "esriGeometryPoint"
MULTIPOINT = "esriGeometryMultipoint"
POLYLINE = "esriGeometryPolyline"
POLYGON = "esriGeometryPolygon"


def _wkb(blob: bytes) -> bytes:
    """The WKB part of a GeoPackage blob."""
    flags = blob[3]
    env = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 7]
    return blob[8 + env :]


def _ogr(blob: bytes) -> ogr.Geometry:
    return ogr.CreateGeometryFromWkb(_wkb(blob))


def _round_trip(geom, gtype, has_z=False, has_m=False):
    blob = esri_to_gpkg(geom, gtype, 3857, has_z, has_m)
    return blob, gpkg_to_esri(blob, gtype, has_z, has_m)


@pytest.mark.parametrize(
    ("geom", "gtype", "has_z", "has_m"),
    [
        ({"x": 1.5, "y": -2.25}, POINT, False, False),
        ({"x": 1.5, "y": -2.25, "z": 7.0}, POINT, True, False),
        ({"x": 1.5, "y": -2.25, "m": 3.0}, POINT, False, True),
        ({"x": 1.5, "y": -2.25, "z": 7.0, "m": 3.0}, POINT, True, True),
        ({"points": [[1.0, 2.0], [3.0, 4.0]]}, MULTIPOINT, False, False),
        ({"hasZ": True, "points": [[1.0, 2.0, 5.0]]}, MULTIPOINT, True, False),
        ({"paths": [[[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]]]}, POLYLINE, False, False),
        (
            {"paths": [[[0.0, 0.0], [1.0, 1.0]], [[5.0, 5.0], [6.0, 7.0], [8.0, 9.0]]]},
            POLYLINE,
            False,
            False,
        ),
        (
            {"hasZ": True, "hasM": True, "paths": [[[0.0, 0.0, 1.0, 2.0], [1.0, 1.0, 3.0, None]]]},
            POLYLINE,
            True,
            True,
        ),
        ({"hasM": True, "paths": [[[0.0, 0.0, 10.0], [1.0, 1.0, 11.0]]]}, POLYLINE, False, True),
        (
            {"rings": [[[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0], [0.0, 0.0]]]},
            POLYGON,
            False,
            False,
        ),
        (
            {
                "rings": [
                    [[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0], [0.0, 0.0]],
                    [[2.0, 2.0], [4.0, 2.0], [4.0, 4.0], [2.0, 4.0], [2.0, 2.0]],
                    [[6.0, 6.0], [8.0, 6.0], [8.0, 8.0], [6.0, 6.0]],
                    [[20.0, 0.0], [20.0, 5.0], [25.0, 5.0], [20.0, 0.0]],
                ]
            },
            POLYGON,
            False,
            False,
        ),
        (
            {
                "hasZ": True,
                "rings": [[[0.0, 0.0, 1.0], [0.0, 10.0, 2.0], [10.0, 10.0, 3.0], [0.0, 0.0, 1.0]]],
            },
            POLYGON,
            True,
            False,
        ),
    ],
)
def test_every_geometry_kind_round_trips_exactly(geom, gtype, has_z, has_m):
    _blob, back = _round_trip(geom, gtype, has_z, has_m)
    expected = dict(geom)
    if gtype != POINT:
        expected.pop("hasZ", None)
        expected.pop("hasM", None)
        if has_z:
            expected["hasZ"] = True
        if has_m:
            expected["hasM"] = True
    assert back == expected


def test_blobs_are_byte_identical_to_what_gdal_writes(tmp_path):
    cases = [
        ("pt", ogr.wkbPoint, "POINT (1 2)", {"x": 1, "y": 2}, POINT, False, False),
        (
            "ptzm",
            ogr.wkbPointZM,
            "POINT ZM (1 2 3 4)",
            {"x": 1, "y": 2, "z": 3, "m": 4},
            POINT,
            1,
            1,
        ),
        (
            "mp",
            ogr.wkbMultiPoint,
            "MULTIPOINT ((1 2),(3 4))",
            {"points": [[1, 2], [3, 4]]},
            MULTIPOINT,
            0,
            0,
        ),
        (
            "mlz",
            ogr.wkbMultiLineString25D,
            "MULTILINESTRING Z ((1 2 5,3 4 6))",
            {"paths": [[[1, 2, 5], [3, 4, 6]]]},
            POLYLINE,
            True,
            False,
        ),
        (
            "mpoly",
            ogr.wkbMultiPolygon,
            "MULTIPOLYGON (((0 0,10 0,10 10,0 10,0 0)))",
            {"rings": [[[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]]},
            POLYGON,
            False,
            False,
        ),
        ("empty", ogr.wkbMultiLineString, "MULTILINESTRING EMPTY", {"paths": []}, POLYLINE, 0, 0),
        ("emptypt", ogr.wkbPoint, "POINT EMPTY", {"x": None}, POINT, False, False),
    ]
    path = str(tmp_path / "gdal.gpkg")
    ds = gdal.GetDriverByName("GPKG").Create(path, 0, 0, 0, gdal.GDT_Unknown)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    for name, gt, wkt, *_rest in cases:
        layer = ds.CreateLayer(name, srs, gt)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    feature = layer = None  # GDAL objects must die before their dataset
    ds = None
    import sqlite3

    conn = sqlite3.connect(path)
    for name, _gt, _wkt, esri, gtype, has_z, has_m in cases:
        gdal_blob = conn.execute(f'SELECT geom FROM "{name}"').fetchone()[0]
        assert esri_to_gpkg(esri, gtype, 3857, bool(has_z), bool(has_m)) == gdal_blob, name
    conn.close()


def test_polygon_rings_are_grouped_by_orientation_and_containment():
    outer_a = [[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0], [0.0, 0.0]]
    outer_b = [[20.0, 0.0], [20.0, 10.0], [30.0, 10.0], [30.0, 0.0], [20.0, 0.0]]
    hole_b = [[22.0, 2.0], [24.0, 2.0], [24.0, 4.0], [22.0, 4.0], [22.0, 2.0]]
    hole_a = [[2.0, 2.0], [4.0, 2.0], [4.0, 4.0], [2.0, 4.0], [2.0, 2.0]]
    # Non-canonical order: all outers first, holes after, in the "wrong" order.
    blob = esri_to_gpkg({"rings": [outer_a, outer_b, hole_b, hole_a]}, POLYGON, 3857)
    geom = _ogr(blob)
    assert geom.GetGeometryType() == ogr.wkbMultiPolygon
    assert geom.GetGeometryCount() == 2
    first, second = geom.GetGeometryRef(0), geom.GetGeometryRef(1)
    assert first.GetGeometryCount() == 2 and second.GetGeometryCount() == 2
    assert first.GetGeometryRef(1).GetEnvelope() == (2.0, 4.0, 2.0, 4.0)
    assert second.GetGeometryRef(1).GetEnvelope() == (22.0, 24.0, 2.0, 4.0)
    assert geom.IsValid()
    assert pytest.approx(geom.GetArea()) == 200.0 - 8.0
    back = gpkg_to_esri(blob, POLYGON)
    assert back == {"rings": [outer_a, hole_a, outer_b, hole_b]}


def test_island_inside_a_hole_is_a_polygon_of_its_own():
    outer = [[0.0, 0.0], [0.0, 100.0], [100.0, 100.0], [100.0, 0.0], [0.0, 0.0]]
    hole = [[10.0, 10.0], [90.0, 10.0], [90.0, 90.0], [10.0, 90.0], [10.0, 10.0]]
    island = [[40.0, 40.0], [40.0, 60.0], [60.0, 60.0], [60.0, 40.0], [40.0, 40.0]]
    island_hole = [[45.0, 45.0], [55.0, 45.0], [55.0, 55.0], [45.0, 55.0], [45.0, 45.0]]
    esri = {"rings": [outer, hole, island, island_hole]}
    blob = esri_to_gpkg(esri, POLYGON, 3857)
    geom = _ogr(blob)
    assert geom.GetGeometryCount() == 2
    assert geom.GetGeometryRef(1).GetGeometryCount() == 2  # island keeps its own hole
    assert gpkg_to_esri(blob, POLYGON) == esri


def test_blobs_use_ogc_orientation_and_read_back_in_esri_orientation():
    cw = [[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0], [0.0, 0.0]]
    blob = esri_to_gpkg({"rings": [cw]}, POLYGON, 3857)
    geom = _ogr(blob)  # keep the parent alive while its parts are used
    # Exterior counter-clockwise in the GeoPackage.
    assert geom.ExportToWkt() == "MULTIPOLYGON (((0 0,10 0,10 10,0 10,0 0)))"
    # A writer that stored a clockwise exterior (any orientation is legal) reads the same.
    gdal_cw = ogr.CreateGeometryFromWkt("MULTIPOLYGON (((0 0,0 10,10 10,10 0,0 0)))")
    header = struct.pack("<2sBBi", b"GP", 0, 1, 3857)
    assert gpkg_to_esri(header + gdal_cw.ExportToIsoWkb(), POLYGON) == {"rings": [cw]}


def test_single_part_blobs_from_other_writers_are_accepted():
    header = struct.pack("<2sBBi", b"GP", 0, 1, 3857)
    line = ogr.CreateGeometryFromWkt("LINESTRING (0 0,1 1)")
    assert gpkg_to_esri(header + line.ExportToIsoWkb(), POLYLINE) == {
        "paths": [[[0.0, 0.0], [1.0, 1.0]]]
    }
    poly = ogr.CreateGeometryFromWkt("POLYGON ((0 0,10 0,10 10,0 0))")
    assert gpkg_to_esri(header + poly.ExportToIsoWkb(), POLYGON) == {
        "rings": [[[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 0.0]]]
    }
    point = ogr.CreateGeometryFromWkt("POINT (3 4)")
    assert gpkg_to_esri(header + point.ExportToIsoWkb(), MULTIPOINT) == {"points": [[3.0, 4.0]]}
    big_endian = struct.pack(">2sBBi", b"GP", 0, 0, 3857) + point.ExportToWkb(ogr.wkbXDR)
    assert gpkg_to_esri(big_endian, POINT) == {"x": 3.0, "y": 4.0}


def test_missing_dimensions_are_filled_and_extra_ones_dropped():
    blob = esri_to_gpkg({"paths": [[[0.0, 0.0], [1.0, 1.0]]]}, POLYLINE, 3857, True, True)
    assert gpkg_to_esri(blob, POLYLINE, True, True) == {
        "hasZ": True,
        "hasM": True,
        "paths": [[[0.0, 0.0, 0.0, None], [1.0, 1.0, 0.0, None]]],
    }
    blob = esri_to_gpkg({"x": 1.0, "y": 2.0, "z": 9.0, "m": 8.0}, POINT, 3857)
    assert gpkg_to_esri(blob, POINT) == {"x": 1.0, "y": 2.0}
    assert gpkg_to_esri(blob, POINT, True, True) == {"x": 1.0, "y": 2.0, "z": 0.0, "m": None}


def test_null_and_empty_geometries():
    assert esri_to_gpkg(None, POLYGON, 3857) is None
    assert gpkg_to_esri(None, POLYGON) is None
    for geom, gtype in (
        ({"x": None, "y": None}, POINT),
        ({"x": "NaN", "y": "NaN"}, POINT),
        ({"points": []}, MULTIPOINT),
        ({"paths": []}, POLYLINE),
        ({"rings": []}, POLYGON),
    ):
        blob = esri_to_gpkg(geom, gtype, 3857)
        assert gpkg_is_empty(blob) is True
        assert gpkg_envelope(blob) is None
        assert _ogr(blob).IsEmpty()
        back = gpkg_to_esri(blob, gtype)
        assert back == ({"x": None, "y": None} if gtype == POINT else geom)


@pytest.mark.parametrize(
    ("geom", "gtype"),
    [
        ({"paths": [[[0, 0], {"b": [[3, 3], [1, 4], [2, 2]]}]]}, POLYLINE),
        ({"rings": [[[0, 0], {"c": [[3, 3], [1, 4]]}, [0, 0]]]}, POLYGON),
        ({"curvePaths": [[{"c": [[3, 3], [1, 4]]}]]}, POLYLINE),
        ({"curvePaths": [[[0, 0], {"q": [[3, 3]]}]]}, POLYLINE),
        ({"curvePaths": [[[0, 0], {"c": [[3, 3]]}]]}, POLYLINE),
        ({"x": 1, "y": 2}, "esriGeometryEnvelope"),
    ],
)
def test_malformed_curves_and_unknown_types_are_refused_with_a_clear_message(geom, gtype):
    with pytest.raises(UnsupportedGeometryError) as info:
        esri_to_gpkg(geom, gtype, 3857, true_curves=True)
    assert any(w in str(info.value) for w in ("curve", "Curve", "supported"))


# --- true curves ------------------------------------------------------------------------------

# A parcel: straight west, south and east sides, a circular arc bulging north (centre (5, 10)
# is not on it: the arc through (5, 15) is a half circle of radius 5).
PARCEL = {
    "curveRings": [
        [[0.0, 0.0], [0.0, 10.0], {"c": [[10.0, 10.0], [5.0, 15.0]]}, [10.0, 0.0], [0.0, 0.0]]
    ]
}
# A road: an arc, a straight piece, an old-style circular "a" arc (centre and direction).
ROAD = {
    "curvePaths": [
        [
            [0.0, 0.0],
            {"c": [[10.0, 0.0], [5.0, 5.0]]},
            [20.0, 0.0],
            {"a": [[30.0, 0.0], [25.0, 0.0], 1, 1]},
        ]
    ]
}


def test_circular_arcs_are_stored_as_iso_curves_that_gdal_reads_back_unchanged():
    blob = esri_to_gpkg(PARCEL, POLYGON, 3857, true_curves=True)
    geom = _ogr(blob)
    assert geom.ExportToIsoWkt() == (
        "MULTISURFACE (CURVEPOLYGON (COMPOUNDCURVE ((0 0,10 0,10 10),"
        "CIRCULARSTRING (10 10,5 15,0 10),(0 10,0 0))))"
    )
    # GDAL writes exactly these bytes for the geometry it read: QGIS saving an unchanged
    # feature does not turn it into a geometry edit.
    assert geom.ExportToIsoWkb() == _wkb(blob)
    assert pytest.approx(geom.GetArea(), rel=1e-3) == 100 + math.pi * 25 / 2
    assert gpkg_envelope(blob) == pytest.approx((0.0, 10.0, 0.0, 15.0))
    assert gpkg_to_esri(blob, POLYGON) == PARCEL

    blob = esri_to_gpkg(ROAD, POLYLINE, 3857, true_curves=True)
    line = _ogr(blob)
    assert line.ExportToIsoWkt() == (
        "MULTICURVE (COMPOUNDCURVE (CIRCULARSTRING (0 0,5 5,10 0),(10 0,20 0),"
        "CIRCULARSTRING (20 0,25 5,30 0)))"
    )
    assert line.ExportToIsoWkb() == _wkb(blob)
    back = gpkg_to_esri(blob, POLYLINE)
    assert back["curvePaths"][0][:3] == ROAD["curvePaths"][0][:3]
    end, mid = back["curvePaths"][0][3]["c"]  # the "a" arc comes back as the "c" it is
    assert end == [30.0, 0.0] and mid == pytest.approx([25.0, 5.0])


def test_curves_are_read_from_curve_rings_even_when_densified_rings_come_too():
    both = {**PARCEL, "rings": [[[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0], [0.0, 0.0]]]}
    blob = esri_to_gpkg(both, POLYGON, 3857, true_curves=True)
    assert gpkg_to_esri(blob, POLYGON) == PARCEL


def test_curves_with_z_and_m_keep_their_vertices():
    geom = {
        "hasZ": True,
        "hasM": True,
        "curvePaths": [[[0.0, 0.0, 1.0, 5.0], {"c": [[10.0, 0.0, 3.0, 7.0], [5.0, 5.0]]}]],
    }
    blob = esri_to_gpkg(geom, POLYLINE, 3857, True, True, true_curves=True)
    assert _ogr(blob).ExportToIsoWkt() == (
        "MULTICURVE ZM (COMPOUNDCURVE ZM (CIRCULARSTRING ZM (0 0 1 5,5 5 2 6,10 0 3 7)))"
    )
    assert gpkg_to_esri(blob, POLYLINE, True, True) == geom


def test_curved_geometries_from_qgis_come_back_as_c_segments():
    header = struct.pack("<2sBBi", b"GP", 0, 1, 3857)
    for wkt, gtype, expected in (
        (
            "CIRCULARSTRING (0 0,1 1,2 0)",
            POLYLINE,
            {"curvePaths": [[[0.0, 0.0], {"c": [[2.0, 0.0], [1.0, 1.0]]}]]},
        ),
        (
            "MULTISURFACE (CURVEPOLYGON (CIRCULARSTRING (0 0,2 2,0 4,-2 2,0 0)),((10 0,11 0,11 1,10 0)))",
            POLYGON,
            {
                "curveRings": [
                    [[0.0, 0.0], {"c": [[0.0, 4.0], [-2.0, 2.0]]}, {"c": [[0.0, 0.0], [2.0, 2.0]]}],
                    [[10.0, 0.0], [11.0, 1.0], [11.0, 0.0], [10.0, 0.0]],
                ]
            },
        ),
    ):
        wkb = ogr.CreateGeometryFromWkt(wkt).ExportToIsoWkb()
        assert gpkg_to_esri(header + wkb, gtype) == expected, wkt


def _max_distance_from(line: ogr.Geometry, points) -> float:
    worst = 0.0
    for x, y in points:
        p = ogr.Geometry(ogr.wkbPoint)
        p.AddPoint_2D(x, y)
        worst = max(worst, line.Distance(p))
    return worst


def test_elliptic_arcs_and_beziers_are_densified_within_the_stated_tolerance():
    # Upper half of an ellipse centred at the origin, semi-axes 100 and 40, counter-clockwise.
    ellipse = {
        "curvePaths": [[[100.0, 0.0], {"a": [[-100.0, 0.0], [0.0, 0.0], 0, 0, 0.0, 100.0, 0.4]}]]
    }
    bezier = {"curvePaths": [[[0.0, 0.0], {"b": [[90.0, 0.0], [30.0, 60.0], [60.0, -60.0]]}]]}
    assert densifies(ellipse) and densifies(bezier) and not densifies(ROAD)
    assert densifies(ROAD, true_curves=False)

    line = _ogr(esri_to_gpkg(ellipse, POLYLINE, 3857, true_curves=True))
    assert line.GetGeometryType() == ogr.wkbMultiLineString  # nothing left to keep as an arc
    true_points = [
        (100 * math.cos(t), 40 * math.sin(t)) for t in (math.pi * i / 997 for i in range(998))
    ]
    assert _max_distance_from(line, true_points) <= DENSIFY_TOLERANCE * 100
    assert _ogr(esri_to_gpkg(ellipse, POLYLINE, 3857)).GetGeometryRef(0).GetY(1) > 0  # upper half

    line = _ogr(esri_to_gpkg(bezier, POLYLINE, 3857, true_curves=True))
    p0, p1, p2, p3 = (0, 0), (30, 60), (60, -60), (90, 0)

    def b(t):
        u = 1 - t
        return tuple(
            u**3 * a + 3 * u * u * t * c + 3 * u * t * t * d + t**3 * e
            for a, c, d, e in zip(p0, p1, p2, p3)
        )

    size = math.dist(p0, p1) + math.dist(p1, p2) + math.dist(p2, p3)
    assert _max_distance_from(line, [b(i / 997) for i in range(998)]) <= DENSIFY_TOLERANCE * size


def test_arcs_in_a_linear_column_are_densified_like_gdal_linearizes_them():
    blob = esri_to_gpkg(PARCEL, POLYGON, 3857)  # the layer's column is MULTIPOLYGON
    geom = _ogr(blob)
    assert geom.GetGeometryType() == ogr.wkbMultiPolygon
    exact = _ogr(esri_to_gpkg(PARCEL, POLYGON, 3857, true_curves=True)).GetLinearGeometry()
    assert geom.SymDifference(exact).GetArea() < 1e-3 * exact.GetArea()
    assert "rings" in gpkg_to_esri(blob, POLYGON)


def test_gdal_reads_the_densified_rings_arcgis_sends_where_we_keep_the_arc():
    # GDAL's ESRIJSON reader ignores curveRings; given the densified rings ArcGIS sends next to
    # them, it must describe the same shape as our exact curve.
    exact = _ogr(esri_to_gpkg(PARCEL, POLYGON, 3857, true_curves=True))
    arc = [
        [5 + 5 * math.cos(math.pi * i / 64), 10 + 5 * math.sin(math.pi * i / 64)] for i in range(65)
    ]
    densified = {"rings": [[[0.0, 0.0], [0.0, 10.0], *arc[::-1], [10.0, 0.0], [0.0, 0.0]]]}
    gdal_geom = ogr.CreateGeometryFromEsriJson(json.dumps({**PARCEL, **densified}))
    assert gdal_geom is not None
    assert gdal_geom.SymDifference(exact.GetLinearGeometry()).GetArea() < 1e-2 * gdal_geom.GetArea()


# --- rings grouped by containment, as GDAL groups them ------------------------------------------

SQUARE_CW = [[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize(
    "rings",
    [
        # One outer ring and a disjoint counter-clockwise ring: two polygons, not a "hole".
        [SQUARE_CW, [[20.0, 0.0], [30.0, 0.0], [30.0, 10.0], [20.0, 10.0], [20.0, 0.0]]],
        # A clockwise ring inside another: a hole all the same.
        [SQUARE_CW, [[2.0, 2.0], [2.0, 8.0], [8.0, 8.0], [8.0, 2.0], [2.0, 2.0]]],
        # The hole listed before its outer ring.
        [[[2.0, 2.0], [8.0, 2.0], [8.0, 8.0], [2.0, 8.0], [2.0, 2.0]], SQUARE_CW],
        # A lone counter-clockwise ring.
        [[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]]],
        # Outer, hole, island in the hole, and a hole touching the outer ring at a vertex.
        [
            [[0.0, 0.0], [0.0, 100.0], [100.0, 100.0], [100.0, 0.0], [0.0, 0.0]],
            [[10.0, 10.0], [90.0, 10.0], [90.0, 90.0], [10.0, 90.0], [10.0, 10.0]],
            [[40.0, 40.0], [40.0, 60.0], [60.0, 60.0], [60.0, 40.0], [40.0, 40.0]],
            [[0.0, 0.0], [5.0, 2.0], [2.0, 5.0], [0.0, 0.0]],
        ],
    ],
)
def test_rings_are_grouped_by_containment_like_gdal(rings):
    esri = {"rings": rings}
    ours = _ogr(esri_to_gpkg(esri, POLYGON, 3857))
    theirs = ogr.CreateGeometryFromEsriJson(json.dumps(esri))
    assert ours.IsValid()
    assert ours.GetArea() > 0
    assert ours.GetGeometryCount() == (
        theirs.GetGeometryCount() if theirs.GetGeometryType() == ogr.wkbMultiPolygon else 1
    )
    assert ours.Equals(theirs) or ours.SymDifference(theirs).GetArea() == 0
    assert pytest.approx(ours.GetArea()) == theirs.GetArea()


def test_wrong_geometry_kind_for_the_layer_is_refused():
    blob = esri_to_gpkg({"x": 1.0, "y": 2.0}, POINT, 3857)
    with pytest.raises(UnsupportedGeometryError):
        gpkg_to_esri(blob, POLYGON)


def test_envelope_comes_from_the_header_or_the_point():
    point = esri_to_gpkg({"x": 5.0, "y": 6.0, "z": 1.0}, POINT, 3857, True)
    assert gpkg_envelope(point) == (5.0, 5.0, 6.0, 6.0)
    line = esri_to_gpkg({"paths": [[[0.0, 1.0], [4.0, -3.0]]]}, POLYLINE, 3857)
    assert gpkg_envelope(line) == (0.0, 4.0, -3.0, 1.0)
    assert gpkg_is_empty(line) is False
    assert gpkg_envelope(None) is None


def test_large_geometries_round_trip():
    path = [[float(i), float(i % 7)] for i in range(20000)]
    blob, back = _round_trip({"paths": [path]}, POLYLINE)
    assert back == {"paths": [path]}
    points = [esri_to_gpkg({"x": float(i), "y": 2.0 * i}, POINT, 3857) for i in range(1000)]
    assert [gpkg_to_esri(b, POINT)["y"] for b in points] == [2.0 * i for i in range(1000)]
