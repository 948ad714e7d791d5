"""Independent clients read the reference service: QGIS's ArcGIS Feature Server provider and
GDAL's ESRIJSON driver. If they disagree with the server, the server is wrong."""

from __future__ import annotations

import pytest
from osgeo import ogr
from qgis.core import Qgis, QgsVectorLayer, QgsWkbTypes

from plugin.core.gdal_mode import gdal_exceptions
from tests.featureservice.client import get
from tests.featureservice.seed import DEMO_COUNTS, DEMO_SERVICE

GEOMETRY_TYPES = {
    0: QgsWkbTypes.PointGeometry,
    1: QgsWkbTypes.LineGeometry,
    2: QgsWkbTypes.PolygonGeometry,
}


@pytest.fixture
def gdal_raises():
    """GDAL raises on errors during the test, and is in its previous mode afterwards."""
    with gdal_exceptions(True):
        yield


def afs_layer(url: str) -> QgsVectorLayer:
    # QGIS 3.22's provider URI: crs and url as quoted key='value' pairs.
    return QgsVectorLayer(f"crs='EPSG:3857' url='{url}'", "layer", "arcgisfeatureserver")


@pytest.mark.parametrize("layer_id", [0, 1, 2])
def test_qgis_arcgis_provider_loads_each_layer(reference_server, layer_id):
    url = f"{reference_server.service_url(DEMO_SERVICE)}/{layer_id}"
    layer = afs_layer(url)
    assert layer.isValid(), (
        layer.dataProvider().error().summary() if layer.dataProvider() else "no provider"
    )
    service_fields = [f["name"] for f in get(url)["fields"]]
    assert [f.name() for f in layer.fields()] == service_fields
    assert QgsWkbTypes.geometryType(layer.wkbType()) == GEOMETRY_TYPES[layer_id]
    assert layer.featureCount() == DEMO_COUNTS[layer_id]
    features = list(layer.getFeatures())
    assert len(features) == DEMO_COUNTS[layer_id]
    assert all(not f.geometry().isEmpty() for f in features)
    expected = {
        f["attributes"]["GlobalID"]: f["attributes"]
        for f in reference_server.query_all(DEMO_SERVICE, layer_id)
    }
    for feature in features:
        assert feature["name"] == expected[feature["GlobalID"]]["name"]


def test_qgis_reads_holes_multiparts_dates_and_special_characters(reference_server):
    demo = reference_server.service_url(DEMO_SERVICE)
    polygons = {f["name"]: f.geometry() for f in afs_layer(f"{demo}/2").getFeatures()}
    park = polygons["Park with pond"]
    assert park.area() == pytest.approx(400 * 300 - 100 * 100, rel=1e-6)
    assert (
        polygons["Twin fields"].isMultipart() and len(polygons["Twin fields"].asMultiPolygon()) == 2
    )
    points = {f["GlobalID"]: f for f in afs_layer(f"{demo}/0").getFeatures()}
    for row in reference_server.query_all(DEMO_SERVICE, 0):
        attributes = row["attributes"]
        feature = points[attributes["GlobalID"]]
        assert feature["name"] == attributes["name"]
        if attributes["observed"] is not None:
            assert feature["observed"].toMSecsSinceEpoch() == attributes["observed"]
        assert feature.geometry().asPoint().x() == pytest.approx(row["geometry"]["x"])


@pytest.mark.skipif(
    Qgis.QGIS_VERSION_INT < 33400, reason="QGIS before 3.34 cannot open geometryless ArcGIS tables"
)
def test_qgis_loads_the_related_table(reference_server):
    layer = afs_layer(f"{reference_server.service_url(DEMO_SERVICE)}/3")
    assert layer.isValid() and layer.featureCount() == DEMO_COUNTS[3]


def test_gdal_esrijson_pages_through_a_query(reference_server, gdal_raises):
    url = f"{reference_server.service_url(DEMO_SERVICE)}/0/query?where=1=1&outFields=*&f=json&resultRecordCount=5"
    dataset = ogr.Open(f"ESRIJSON:{url}")
    layer = dataset.GetLayer(0)
    names = [feature.GetField("name") for feature in layer]
    expected = [f["attributes"]["name"] for f in reference_server.query_all(DEMO_SERVICE, 0)]
    assert names == expected  # 12 features through pages of 5
    assert layer.GetFeatureCount() == DEMO_COUNTS[0]


def test_gdal_reads_geometries_of_lines_and_polygons(reference_server, gdal_raises):
    demo = reference_server.service_url(DEMO_SERVICE)
    # Keep the datasets referenced while their layers are used (GDAL's Python ownership rule).
    lines_ds = ogr.Open(f"ESRIJSON:{demo}/1/query?where=1=1&outFields=*&f=json")
    lines = lines_ds.GetLayer(0)
    assert [f.GetGeometryRef().GetGeometryName() for f in lines].count("MULTILINESTRING") == 1
    polygons_ds = ogr.Open(f"{demo}/2/query?where=1=1&outFields=*&f=json&resultRecordCount=1")
    polygons = polygons_ds.GetLayer(0)
    kinds = {f.GetField("name"): f.GetGeometryRef().Clone() for f in polygons}
    assert (
        kinds["Park with pond"].GetGeometryName() == "POLYGON"
        and kinds["Park with pond"].GetGeometryCount() == 2
    )
    forest = kinds["Forest (multipart with hole)"]
    assert forest.GetGeometryName() == "MULTIPOLYGON" and forest.GetGeometryCount() == 2
    assert forest.GetGeometryRef(0).GetGeometryCount() == 2  # the first part has a hole


def test_gdal_reads_geojson_output(reference_server, gdal_raises):
    url = f"{reference_server.service_url(DEMO_SERVICE)}/0/query?where=category%3D1&outFields=*&f=geojson"
    dataset = ogr.Open(url)
    layer = dataset.GetLayer(0)
    assert layer.GetFeatureCount() == 3
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "4326"
