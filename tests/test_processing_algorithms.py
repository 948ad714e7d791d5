"""The Processing algorithms make the same core calls as the dock, for models and scripts:
through ``processing.run`` in this QGIS, and through the ``qgis_process`` command line."""

from __future__ import annotations

import json

import pytest
from osgeo import ogr
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

from plugin.processing.provider import PROVIDER_ID, OfflineMapSyncProvider
from tests.featureservice import seed
from tests.test_gui_auth import auth_manager as _auth_manager_fixture
from tests.test_gui_auth import plain_http_on_loopback as _plain_http_fixture
from tests.tools.qgis_process import QgisProcess

POINTS = 0
auth_manager = _auth_manager_fixture  # the QGIS auth configurations fixture, shared
plain_http_on_loopback = _plain_http_fixture


@pytest.fixture(scope="module")
def processing(qgis_app):
    from processing.core.Processing import Processing

    Processing.initialize()
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById(PROVIDER_ID)
    added = None
    if provider is None:
        added = OfflineMapSyncProvider()
        registry.addProvider(added)
    from qgis import processing as qgis_processing

    yield qgis_processing
    if added is not None:
        registry.removeProvider(added)


def _alg(name: str) -> str:
    return f"{PROVIDER_ID}:{name}"


def _edit_point(folder, name, field, value):
    # Any writer is tracked: GDAL here, as a script or another tool would.
    source = ogr.Open(str(next(folder.glob("*.gpkg"))), update=1)
    layer = source.GetLayerByName("Points")
    layer.SetAttributeFilter(f"name = '{name}'")
    feature = layer.GetNextFeature()
    feature.SetField(field, value)
    layer.SetFeature(feature)
    global_id = feature.GetField("GlobalID")
    source = None
    return global_id


class _Feedback(QgsProcessingFeedback):
    """What Processing tells the user (its log)."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 (QGIS API names)
        self.errors.append(error)


def _server_points(server):
    return {
        f["attributes"]["name"]: f["attributes"] for f in server.query_all(seed.DEMO_SERVICE, 0)
    }


def test_the_provider_offers_every_algorithm(processing):
    names = sorted(
        a.name() for a in QgsApplication.processingRegistry().providerById(PROVIDER_ID).algorithms()
    )
    assert names == [
        "checkforupdates",
        "downloadpreplannedmaparea",
        "generategeodatabase",
        "listconflicts",
        "listpreplannedmapareas",
        "removegeodatabase",
        "removeofflinemap",
        "resolveconflict",
        "synchronizegeodatabase",
        "synchronizeofflinemap",
        "takemapoffline",
    ]


def test_take_offline_sync_and_conflicts_with_processing_run(
    processing, reference_server, tmp_path
):
    taken = processing.run(
        _alg("takemapoffline"),
        {
            "PORTAL_URL": reference_server.portal_url,
            "WEBMAP_ITEM_ID": seed.DEMO_WEBMAP_ID,
            "OUTPUT": str(tmp_path / "map"),
        },
    )
    folder = tmp_path / "map"
    assert taken["OUTPUT"] == str(folder)
    assert taken["GEODATABASE_COUNT"] == 1
    assert taken["LAYER_COUNT"] == 4

    edited = seed.POINT_NAMES[0]
    conflicted = seed.POINT_NAMES[1]
    _edit_point(folder, edited, "notes", "from processing")
    gone = _edit_point(folder, conflicted, "visits", 3)
    reference_server.apply_edits(seed.DEMO_SERVICE, POINTS, deletes=[gone])

    checked = processing.run(_alg("checkforupdates"), {"OFFLINE_MAP": str(folder)})
    assert checked["UPLOAD_AVAILABILITY"] == "AVAILABLE"
    assert checked["DOWNLOAD_AVAILABILITY"] == "INDETERMINATE"
    assert checked["PENDING_EDITS"] == 2
    assert checked["SUPPORTS_SYNC_WITH_FEATURE_SERVICES"] is True

    report = tmp_path / "report.json"
    synced = processing.run(
        _alg("synchronizeofflinemap"), {"OFFLINE_MAP": str(folder), "REPORT": str(report)}
    )
    assert synced["UPLOADED"] >= 1
    assert synced["DOWNLOADED"] >= 1  # the server's delete
    assert synced["CONFLICTS"] == 1
    assert synced["REPORT"] == str(report)
    written = json.loads(report.read_text(encoding="utf-8"))
    points_row = next(r for r in written["rows"] if r["name"] == "Points")
    assert points_row["conflicts"] == 1
    assert json.loads(synced["RESULTS"]) == written["rows"]
    assert _server_points(reference_server)[edited]["notes"] == "from processing"

    html_report = tmp_path / "conflicts.html"
    listed = processing.run(
        _alg("listconflicts"), {"OFFLINE_MAP": str(folder), "REPORT": str(html_report)}
    )
    assert listed["CONFLICT_COUNT"] == 1
    conflict = json.loads(listed["CONFLICTS"])[0]
    assert conflict["global_id"] == gone
    assert conflict["reason"] == "deleted_on_server"
    assert gone in html_report.read_text(encoding="utf-8")

    resolved = processing.run(
        _alg("resolveconflict"),
        {"OFFLINE_MAP": str(folder), "CONFLICT_ID": conflict["id"], "ACTION": 0},
    )
    assert resolved["REMAINING"] == 0
    again = processing.run(_alg("checkforupdates"), {"OFFLINE_MAP": str(folder)})
    assert again["UPLOAD_AVAILABILITY"] == "AVAILABLE"  # the restored version waits to go up


def test_take_offline_needs_a_web_map_or_services(processing, tmp_path):
    with pytest.raises(QgsProcessingException):
        processing.run(_alg("takemapoffline"), {"OUTPUT": str(tmp_path / "map")})


def test_sync_of_a_folder_that_is_not_a_map_fails_clearly(processing, tmp_path):
    with pytest.raises(QgsProcessingException):
        processing.run(_alg("synchronizeofflinemap"), {"OFFLINE_MAP": str(tmp_path)})


@pytest.mark.qgis_process
def test_take_offline_and_sync_with_qgis_process(reference_server, tmp_path):
    runner = QgisProcess(tmp_path / "qgis_process")
    try:
        folder = tmp_path / "map"
        taken = runner.run_json(
            "run",
            _alg("takemapoffline"),
            f"--SERVICE_URLS={reference_server.service_url(seed.DEMO_SERVICE)}",
            "--EXTENT=935000,6000000,955000,6010000 [EPSG:3857]",
            f"--SCHEMA_ONLY_LAYERS={reference_server.service_url(seed.DEMO_SERVICE)}/1",
            f"--OUTPUT={folder}",
        )
        assert taken["results"]["LAYER_COUNT"] == 4, taken
        source = ogr.Open(str(next(folder.glob("*.gpkg"))))
        assert source.GetLayerByName("Lines").GetFeatureCount() == 0  # taken offline empty
        assert source.GetLayerByName("Points").GetFeatureCount() == seed.DEMO_COUNTS[0]
        source = None
        _edit_point(folder, seed.POINT_NAMES[0], "notes", "from qgis_process")

        synced = runner.run_json(
            "run", _alg("synchronizeofflinemap"), f"--OFFLINE_MAP={folder}", "--DIRECTION=1"
        )
        results = synced["results"]
        assert results["UPLOADED"] == 1, synced
        assert results["HAS_ERRORS"] is False
        assert _server_points(reference_server)[seed.POINT_NAMES[0]]["notes"] == "from qgis_process"
    finally:
        runner.close()


def test_a_secured_service_with_an_auth_configuration(
    processing, secured_reference_server, auth_manager, plain_http_on_loopback, tmp_path
):
    config_id = auth_manager(
        "Basic", uri=secured_reference_server.root_url, username="bob", password="bob-secret"
    )
    folder = tmp_path / "secured"
    taken = processing.run(
        _alg("takemapoffline"),
        {
            "SERVICE_URLS": secured_reference_server.service_url(seed.DEMO_SERVICE),
            "AUTHCFG": config_id,
            "OUTPUT": str(folder),
        },
    )
    assert taken["LAYER_COUNT"] == 4
    _edit_point(folder, seed.POINT_NAMES[0], "notes", "by bob")

    synced = processing.run(
        _alg("synchronizeofflinemap"), {"OFFLINE_MAP": str(folder), "AUTHCFG": config_id}
    )

    assert synced["UPLOADED"] == 1
    assert _server_points(secured_reference_server)[seed.POINT_NAMES[0]]["notes"] == "by bob"
    with pytest.raises(QgsProcessingException):
        processing.run(_alg("synchronizeofflinemap"), {"OFFLINE_MAP": str(folder)})


def test_map_areas_are_listed_and_one_is_downloaded_by_title(
    processing, reference_server, tmp_path
):
    from plugin.core.enums import PreplannedUpdateMode
    from plugin.core.offline_map import OfflineMap

    reference_server.prepare_map_areas()
    web_map = {"PORTAL_URL": reference_server.portal_url, "WEBMAP_ITEM_ID": seed.DEMO_WEBMAP_ID}

    listed = processing.run(_alg("listpreplannedmapareas"), dict(web_map))
    areas = json.loads(listed["AREAS"])
    assert listed["COUNT"] == 2
    assert [a["title"] for a in areas] == ["Whole demo area", "West half"]
    # Each area: the Demo service's package and the basemap's tile and vector tile packages.
    assert all(a["size"] > 0 and a["packages"] == 3 for a in areas)

    taken = processing.run(
        _alg("downloadpreplannedmaparea"),
        {
            **web_map,
            "MAP_AREA": "west half",
            "UPDATE_MODE": 2,  # the third choice: scheduled updates and new-feature uploads
            "OUTPUT": str(tmp_path / "west"),
        },
    )

    west = next(a for a in areas if a["title"] == "West half")
    assert taken["MAP_AREA_ID"] == west["item_id"]
    assert taken["UPDATE_MODE"] == "DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES"
    assert taken["GEODATABASE_COUNT"] == 1
    offline_map = OfflineMap.open(taken["OUTPUT"])
    assert offline_map.update_mode == (
        PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES
    )
    assert offline_map.source.map_area_item_id == west["item_id"]


def test_an_unknown_map_area_is_refused_naming_the_areas_there_are(
    processing, reference_server, tmp_path
):
    reference_server.prepare_map_areas()
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(
            _alg("downloadpreplannedmaparea"),
            {
                "PORTAL_URL": reference_server.portal_url,
                "WEBMAP_ITEM_ID": seed.DEMO_WEBMAP_ID,
                "MAP_AREA": "East half",
                "OUTPUT": str(tmp_path / "east"),
            },
        )
    assert "no map area 'East half'" in str(raised.value)
    assert "'West half'" in str(raised.value)
    assert not (tmp_path / "east" / "offline_map.json").exists()


def test_a_token_in_a_web_map_layer_url_stays_out_of_the_skipped_output(
    processing, reference_server, tmp_path
):
    from tests.test_take_offline import FIELD_MAP_ID, field_map_data, save_item

    data = field_map_data()
    data["baseMap"]["baseMapLayers"] = [
        {
            "id": "imagery",
            "title": "Imagery",
            "url": "https://tiles.example.com/Imagery/MapServer?token=SECRET-IN-WEBMAP&f=json",
            "layerType": "ArcGISTiledMapServiceLayer",
        }
    ]
    save_item(reference_server, FIELD_MAP_ID, {"title": "Field map", "type": "Web Map"}, data)
    taken = processing.run(
        _alg("takemapoffline"),
        {
            "PORTAL_URL": reference_server.portal_url,
            "WEBMAP_ITEM_ID": FIELD_MAP_ID,
            "OUTPUT": str(tmp_path / "map"),
        },
    )
    skipped = {s["title"]: s["url"] for s in json.loads(taken["SKIPPED"])}
    assert skipped["Imagery"] == "https://tiles.example.com/Imagery/MapServer?f=json"
    assert "SECRET-IN-WEBMAP" not in taken["SKIPPED"]


def test_processing_sync_follows_the_docks_rule_for_unsaved_edits_and_reloads_layers(
    processing, reference_server, tmp_path, qgis_new_project
):
    from qgis.core import QgsExpression, QgsFeatureRequest, QgsProject

    from plugin.layers import add_offline_map_to_project
    from tests.test_layers import take_demo_web_map_offline

    offline_map = take_demo_web_map_offline(reference_server, tmp_path / "map")
    points = add_offline_map_to_project(offline_map)[0].layers[POINTS]

    def by_name(name):
        request = QgsFeatureRequest().setFilterExpression(
            QgsExpression.createFieldEqualityExpression("name", name)
        )
        return next(points.getFeatures(request))

    edited, changed = seed.POINT_NAMES[0], seed.POINT_NAMES[1]
    points.startEditing()
    points.changeAttributeValue(by_name(edited).id(), points.fields().lookupField("visits"), 9)
    reference_server.apply_edits(
        seed.DEMO_SERVICE, POINTS, updates=[{"GlobalID": by_name(changed)["GlobalID"], "visits": 4}]
    )
    parameters = {"OFFLINE_MAP": str(offline_map.folder)}
    geodatabase = {"GEODATABASE": str(offline_map.geodatabases[0].path)}
    try:
        for algorithm, given in (
            ("synchronizeofflinemap", parameters),
            ("synchronizegeodatabase", geodatabase),
        ):
            feedback = _Feedback()
            with pytest.raises(QgsProcessingException):
                processing.run(_alg(algorithm), given, feedback=feedback)
            assert any("save or discard the edits of Points" in e for e in feedback.errors)
            assert points.isModified()
            assert _server_points(reference_server)[edited]["visits"] != 9

        processing.run(_alg("synchronizegeodatabase"), {**geodatabase, "SAVE_EDITS": True})

        assert not points.isModified()
        assert _server_points(reference_server)[edited]["visits"] == 9
        assert by_name(changed)["visits"] == 4  # the layer was reloaded
    finally:
        points.rollBack()
        QgsProject.instance().clear()


def test_basemap_parameters_choose_what_becomes_of_the_basemap(
    processing, reference_server, tmp_path
):
    from plugin.core.offline_map import OfflineMap

    source = {"PORTAL_URL": reference_server.portal_url, "WEBMAP_ITEM_ID": seed.DEMO_WEBMAP_ID}
    processing.run(
        _alg("takemapoffline"),
        {**source, "BASEMAP_MAX_LEVEL": 12, "OUTPUT": str(tmp_path / "download")},
    )
    downloaded = OfflineMap.open(tmp_path / "download").basemaps
    assert [(b.kind, b.max_level) for b in downloaded] == [("raster", 12), ("vector", 12)]

    processing.run(
        _alg("takemapoffline"), {**source, "BASEMAP": 1, "OUTPUT": str(tmp_path / "online")}
    )
    assert {b.kind for b in OfflineMap.open(tmp_path / "online").basemaps} == {"online"}

    with pytest.raises(QgsProcessingException, match="more than the limit of 5"):
        processing.run(
            _alg("takemapoffline"),
            {**source, "BASEMAP_TILE_LIMIT": 5, "OUTPUT": str(tmp_path / "limited")},
        )
    feedback = _Feedback()
    with pytest.raises(QgsProcessingException):
        processing.run(
            _alg("takemapoffline"),
            {**source, "BASEMAP": 2, "OUTPUT": str(tmp_path / "local")},
            feedback=feedback,
        )
    assert any("Choose the local basemap file" in error for error in feedback.errors)
    assert not (tmp_path / "limited").exists() and not (tmp_path / "local").exists()
