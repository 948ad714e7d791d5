"""The Take offline dialog turns what the user typed into a request, or says what is missing."""

from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRectangle, QgsVectorLayer

from plugin.gui.take_offline_dialog import TakeOfflineDialog
from plugin.layers import esri_envelope, esri_spatial_reference

ITEM = "0123456789abcdef0123456789abcdef"


def _message(dialog) -> str:
    dialog.accept()
    return dialog.messageLabel.text()


def test_web_map_request_with_whole_area(qgis_iface, tmp_path):
    dialog = TakeOfflineDialog(qgis_iface)
    dialog.portalEdit.setText("http://127.0.0.1:9/arcgis/sharing/rest/")
    dialog.itemEdit.setText(ITEM)
    dialog.folderWidget.setFilePath(str(tmp_path / "map"))
    dialog.attachmentsCheck.setChecked(False)

    request = dialog.request()
    assert request.portal_url == "http://127.0.0.1:9/arcgis/sharing/rest"
    assert request.webmap_item_id == ITEM
    assert request.service_urls == []
    assert request.area_of_interest is None
    assert request.include_attachments is False
    assert request.folder == tmp_path / "map"


def test_service_urls_and_a_layer_extent(qgis_iface, tmp_path):
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "area", "memory")
    provider = layer.dataProvider()
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY

    for x, y in ((10, 20), (12, 23)):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        provider.addFeatures([feature])
    layer.updateExtents()
    QgsProject.instance().addMapLayer(layer)
    try:
        dialog = TakeOfflineDialog(qgis_iface)
        dialog.servicesRadio.setChecked(True)
        dialog.servicesEdit.setPlainText(
            "http://h/arcgis/rest/services/A/FeatureServer\n\n http://h/arcgis/rest/services/B/FeatureServer "
        )
        dialog.layerRadio.setChecked(True)
        dialog.layerCombo.setLayer(layer)
        dialog.folderWidget.setFilePath(str(tmp_path / "map"))

        request = dialog.request()
        assert request.service_urls == [
            "http://h/arcgis/rest/services/A/FeatureServer",
            "http://h/arcgis/rest/services/B/FeatureServer",
        ]
        assert request.area_of_interest == {
            "xmin": 10.0,
            "ymin": 20.0,
            "xmax": 12.0,
            "ymax": 23.0,
            "spatialReference": {"wkid": 4326},
        }
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_incomplete_answers_are_refused_with_a_message(qgis_iface, tmp_path):
    dialog = TakeOfflineDialog(qgis_iface)
    assert "target folder" in _message(dialog)

    dialog.folderWidget.setFilePath(str(tmp_path / "map"))
    dialog.portalEdit.setText("http://h/arcgis/sharing/rest")
    dialog.itemEdit.setText("not-an-id")
    assert "32 hexadecimal" in _message(dialog)

    dialog.servicesRadio.setChecked(True)
    dialog.servicesEdit.setPlainText("http://h/arcgis/rest/services/A/MapServer")
    assert "not a feature service URL" in _message(dialog)

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    dialog.folderWidget.setFilePath(str(tmp_path / "full"))
    assert "not empty" in _message(dialog)


def test_spatial_references_use_esri_codes():
    assert esri_spatial_reference(QgsCoordinateReferenceSystem("EPSG:3857")) == {
        "wkid": 102100,
        "latestWkid": 3857,
    }
    envelope = esri_envelope(QgsRectangle(1, 2, 3, 4), QgsCoordinateReferenceSystem("EPSG:2056"))
    assert envelope["spatialReference"] == {"wkid": 2056}
    assert (envelope["xmin"], envelope["ymax"]) == (1.0, 4.0)


def test_the_canvas_extent_is_the_area_in_the_canvas_crs(qgis_iface, tmp_path):
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setExtent(QgsRectangle(950000, 6000000, 952000, 6001000))
    dialog = TakeOfflineDialog(qgis_iface)
    dialog.servicesRadio.setChecked(True)
    dialog.servicesEdit.setPlainText("http://h/arcgis/rest/services/A/FeatureServer")
    dialog.canvasRadio.setChecked(True)
    dialog.folderWidget.setFilePath(str(tmp_path / "map"))

    area = dialog.request().area_of_interest

    assert area["spatialReference"] == {"wkid": 102100, "latestWkid": 3857}
    shown = canvas.extent()
    assert (area["xmin"], area["ymin"], area["xmax"], area["ymax"]) == (
        shown.xMinimum(),
        shown.yMinimum(),
        shown.xMaximum(),
        shown.yMaximum(),
    )
    assert area["xmin"] <= 950000 and area["xmax"] >= 952000


def test_listed_layers_left_unchecked_are_taken_offline_empty(
    qgis_iface, reference_server, tmp_path
):
    from qgis.PyQt.QtCore import Qt

    from plugin.take_offline_request import TakeOfflineJob
    from plugin.task import wait_for_task
    from tests.featureservice import seed

    dialog = TakeOfflineDialog(qgis_iface)
    dialog.portalEdit.setText(reference_server.portal_url)
    dialog.itemEdit.setText(seed.DEMO_WEBMAP_ID)
    dialog.folderWidget.setFilePath(str(tmp_path / "map"))
    task = dialog.list_layers()
    assert task is not None
    assert wait_for_task(task, 60)

    titles = [dialog.layersList.item(row).text() for row in range(dialog.layersList.count())]
    assert sorted(titles) == sorted(["Points", "Lines", "Polygons", "Inspections (table)"])
    polygons = dialog.layersList.item(titles.index("Polygons"))
    polygons.setCheckState(Qt.CheckState.Unchecked)

    request = dialog.request()
    service_url = reference_server.service_url(seed.DEMO_SERVICE)
    assert request.schema_only_layers == [(service_url, 2)]

    offline_map = TakeOfflineJob(request).run().offline_map
    counts = {}
    entry = offline_map.geodatabases[0]
    with offline_map.open_geodatabase(entry) as geodatabase:
        from osgeo import ogr

        source = ogr.Open(str(entry.path))
        for layer in geodatabase.layers:
            counts[layer.id] = source.GetLayerByName(layer.table_name).GetFeatureCount()
        source = None
    assert counts[2] == 0
    assert counts[0] == seed.DEMO_COUNTS[0]


def test_changing_the_source_forgets_the_listed_layers(qgis_iface):
    from qgis.PyQt.QtWidgets import QListWidgetItem

    dialog = TakeOfflineDialog(qgis_iface)
    dialog.layersList.addItem(QListWidgetItem("Points"))
    dialog.itemEdit.setText(ITEM)
    assert dialog.layersList.count() == 0


def _list_areas(dialog, server):
    server.prepare_map_areas()
    dialog.portalEdit.setText(server.portal_url)
    from tests.featureservice import seed

    dialog.itemEdit.setText(seed.DEMO_WEBMAP_ID)
    dialog.preplannedRadio.setChecked(True)
    task = dialog.list_areas()
    assert task is not None
    from plugin.task import wait_for_task

    assert wait_for_task(task, 60)
    return [dialog.areasList.item(row).text() for row in range(dialog.areasList.count())]


def test_preplanned_areas_are_listed_with_their_download_size(qgis_iface, reference_server):
    dialog = TakeOfflineDialog(qgis_iface)

    texts = _list_areas(dialog, reference_server)

    assert [t.split(" — ")[0] for t in texts] == ["Whole demo area", "West half"]
    assert all(t.endswith(("KB", "MB", "bytes")) for t in texts), texts
    assert dialog.selected_area().title == "Whole demo area"
    assert dialog.selected_area().size > 0
    # A map area comes as its packages were made: no layer choice, no attachments switch.
    assert dialog.layersGroup.isHidden()
    assert dialog.attachmentsCheck.isHidden()


def test_the_chosen_area_and_update_mode_make_the_request(qgis_iface, reference_server, tmp_path):
    from plugin.core.enums import PreplannedUpdateMode

    dialog = TakeOfflineDialog(qgis_iface)
    texts = _list_areas(dialog, reference_server)
    dialog.areasList.setCurrentRow(next(i for i, t in enumerate(texts) if t.startswith("West")))
    mode = PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES
    dialog.updateModeCombo.setCurrentIndex(dialog.updateModeCombo.findData(int(mode)))
    dialog.folderWidget.setFilePath(str(tmp_path / "west"))

    request = dialog.request()

    assert request.is_preplanned
    assert request.map_area.title == "West half"
    assert request.update_mode == mode
    assert request.area_of_interest is None
    assert request.schema_only_layers == []


def test_a_preplanned_area_needs_a_web_map_and_a_chosen_area(qgis_iface, tmp_path):
    dialog = TakeOfflineDialog(qgis_iface)
    dialog.folderWidget.setFilePath(str(tmp_path / "map"))
    dialog.portalEdit.setText("http://h/arcgis/sharing/rest")
    dialog.itemEdit.setText(ITEM)
    dialog.preplannedRadio.setChecked(True)
    assert "Choose a map area" in _message(dialog)

    dialog.servicesRadio.setChecked(True)
    assert not dialog.preplannedRadio.isEnabled()
    assert dialog.wholeRadio.isChecked()
    assert not dialog.layersGroup.isHidden()
    assert dialog.areasList.isHidden()


def test_a_web_map_without_map_areas_says_so(qgis_iface, reference_server):
    from plugin.task import wait_for_task
    from tests.featureservice import seed

    dialog = TakeOfflineDialog(qgis_iface)
    dialog.portalEdit.setText(reference_server.portal_url)
    dialog.itemEdit.setText(seed.DEMO_WEBMAP_ID)
    dialog.preplannedRadio.setChecked(True)
    task = dialog.list_areas()
    assert wait_for_task(task, 60)

    assert dialog.areasList.count() == 0
    assert "no preplanned map areas" in dialog.messageLabel.text()
