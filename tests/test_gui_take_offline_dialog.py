"""The Take offline dialog, filled in and answered by clicks: its buttons do what they say, it
turns what the user typed into a request, or says what is missing and stays open."""

from __future__ import annotations

import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox

from plugin.gui.formatting import size_text
from plugin.gui.take_offline_dialog import TakeOfflineDialog
from plugin.layers import esri_envelope, esri_spatial_reference
from plugin.task import wait_for_task
from tests.featureservice import seed
from tests.gui_user import choose, click, click_item, type_into, type_lines

ITEM = "0123456789abcdef0123456789abcdef"
OK = QDialogButtonBox.StandardButton.Ok
CANCEL = QDialogButtonBox.StandardButton.Cancel


@pytest.fixture
def dialog(qgis_iface):
    shown = TakeOfflineDialog(qgis_iface)
    shown.show()
    yield shown
    shown.hide()
    shown.deleteLater()


def _press_take_offline(dialog) -> str:
    """Click "Take offline"; the message the dialog shows ("" when it closed with an answer)."""
    button = dialog.buttonBox.button(OK)
    assert button.text() == "Take offline"
    click(button)
    return "" if not dialog.isVisible() else dialog.messageLabel.text()


def _web_map(dialog, portal: str, item: str, folder) -> None:
    click(dialog.webmapRadio)
    type_into(dialog.portalEdit, portal)
    type_into(dialog.itemEdit, item)
    type_into(dialog.folderWidget, str(folder))


def test_take_offline_closes_the_dialog_with_the_web_map_request(dialog, tmp_path):
    _web_map(dialog, "http://127.0.0.1:9/arcgis/sharing/rest/", ITEM, tmp_path / "map")
    click(dialog.attachmentsCheck)  # the user does not want the photos

    assert _press_take_offline(dialog) == ""

    assert dialog.result() == QDialog.DialogCode.Accepted
    request = dialog.request()
    assert request.portal_url == "http://127.0.0.1:9/arcgis/sharing/rest"
    assert request.webmap_item_id == ITEM
    assert request.service_urls == []
    assert request.area_of_interest is None
    assert request.include_attachments is False
    assert request.folder == tmp_path / "map"


def test_enter_takes_offline_and_cancel_and_escape_close_without_an_answer(qgis_iface, tmp_path):
    for key in ("enter", "cancel", "escape"):
        dialog = TakeOfflineDialog(qgis_iface)
        dialog.show()
        _web_map(dialog, "https://h/portal/sharing/rest", ITEM, tmp_path / key)
        if key == "enter":
            QTest.keyClick(dialog.folderWidget.lineEdit(), Qt.Key.Key_Return)
        elif key == "cancel":
            click(dialog.buttonBox.button(CANCEL))
        else:
            QTest.keyClick(dialog, Qt.Key.Key_Escape)
        assert not dialog.isVisible(), key
        expected = QDialog.DialogCode.Accepted if key == "enter" else QDialog.DialogCode.Rejected
        assert dialog.result() == expected, key
        dialog.deleteLater()
    assert not any(tmp_path.iterdir())  # the dialog itself creates nothing


def _points_layer(name: str, crs: str, points) -> QgsVectorLayer:
    """A layer of ``points`` added to the project (the caller removes it)."""
    layer = QgsVectorLayer(f"Point?crs={crs}&field=name:string", name, "memory")
    for x, y in points:
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        layer.dataProvider().addFeatures([feature])
    layer.updateExtents()
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_service_urls_and_a_layer_extent(dialog, tmp_path):
    layer = _points_layer("area", "EPSG:4326", ((10, 20), (12, 23)))
    try:
        click(dialog.servicesRadio)
        type_lines(
            dialog.servicesEdit,
            [
                "http://h/arcgis/rest/services/A/FeatureServer",
                "",
                " http://h/arcgis/rest/services/B/FeatureServer ",
            ],
        )
        click(dialog.layerRadio)
        choose(dialog.layerCombo, "area")
        type_into(dialog.folderWidget, str(tmp_path / "map"))

        assert _press_take_offline(dialog) == ""

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


def test_incomplete_answers_are_refused_with_a_message_and_the_dialog_stays(dialog, tmp_path):
    assert "target folder" in _press_take_offline(dialog)

    _web_map(dialog, "http://h/arcgis/sharing/rest", "not-an-id", tmp_path / "map")
    assert "32 hexadecimal" in _press_take_offline(dialog)

    click(dialog.servicesRadio)
    type_lines(dialog.servicesEdit, ["http://h/arcgis/rest/services/A/MapServer"])
    assert "not a feature service URL" in _press_take_offline(dialog)

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    type_into(dialog.folderWidget, str(tmp_path / "full"))
    assert "not empty" in _press_take_offline(dialog)
    assert dialog.isVisible()


def test_spatial_references_use_esri_codes():
    assert esri_spatial_reference(QgsCoordinateReferenceSystem("EPSG:3857")) == {
        "wkid": 102100,
        "latestWkid": 3857,
    }
    envelope = esri_envelope(QgsRectangle(1, 2, 3, 4), QgsCoordinateReferenceSystem("EPSG:2056"))
    assert envelope["spatialReference"] == {"wkid": 2056}
    assert (envelope["xmin"], envelope["ymax"]) == (1.0, 4.0)


def test_the_canvas_extent_is_the_area_in_the_canvas_crs(dialog, qgis_iface, tmp_path):
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setExtent(QgsRectangle(950000, 6000000, 952000, 6001000))
    click(dialog.servicesRadio)
    type_lines(dialog.servicesEdit, ["http://h/arcgis/rest/services/A/FeatureServer"])
    click(dialog.canvasRadio)
    type_into(dialog.folderWidget, str(tmp_path / "map"))

    assert _press_take_offline(dialog) == ""
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


def _list_layers(dialog):
    click(dialog.listLayersButton)
    assert dialog.task is not None, dialog.messageLabel.text()
    assert wait_for_task(dialog.task, 60)
    return [dialog.layersList.item(row).text() for row in range(dialog.layersList.count())]


def test_listed_layers_left_unchecked_are_taken_offline_empty(dialog, reference_server, tmp_path):
    from osgeo import ogr

    from plugin.take_offline_request import TakeOfflineJob

    _web_map(dialog, reference_server.portal_url, seed.DEMO_WEBMAP_ID, tmp_path / "map")
    titles = _list_layers(dialog)
    assert sorted(titles) == sorted(["Points", "Lines", "Polygons", "Inspections (table)"])
    polygons = dialog.layersList.item(titles.index("Polygons"))
    click_item(dialog.layersList, polygons)
    QTest.keyClick(dialog.layersList, Qt.Key.Key_Space)  # unticks the current item
    assert polygons.checkState() == Qt.CheckState.Unchecked

    assert _press_take_offline(dialog) == ""
    request = dialog.request()
    service_url = reference_server.service_url(seed.DEMO_SERVICE)
    assert request.schema_only_layers == [(service_url, 2)]

    offline_map = TakeOfflineJob(request).run().offline_map
    entry = offline_map.geodatabases[0]
    with offline_map.open_geodatabase(entry) as geodatabase:
        tables = {layer.id: layer.table_name for layer in geodatabase.layers}
    source = ogr.Open(str(entry.path))
    counts = {key: source.GetLayerByName(table).GetFeatureCount() for key, table in tables.items()}
    source = None
    assert counts[2] == 0
    assert counts[0] == seed.DEMO_COUNTS[0]


def test_changing_the_source_forgets_the_listed_layers(dialog, reference_server, tmp_path):
    _web_map(dialog, reference_server.portal_url, seed.DEMO_WEBMAP_ID, tmp_path / "map")
    assert _list_layers(dialog)

    type_into(dialog.itemEdit, ITEM)

    assert dialog.layersList.count() == 0


def _list_areas(dialog, server):
    server.prepare_map_areas()
    click(dialog.webmapRadio)
    type_into(dialog.portalEdit, server.portal_url)
    type_into(dialog.itemEdit, seed.DEMO_WEBMAP_ID)
    click(dialog.preplannedRadio)
    click(dialog.listAreasButton)
    assert dialog.task is not None, dialog.messageLabel.text()
    assert wait_for_task(dialog.task, 60)
    return [dialog.areasList.item(row).text() for row in range(dialog.areasList.count())]


def test_preplanned_areas_are_listed_with_their_download_size(dialog, reference_server):
    texts = _list_areas(dialog, reference_server)

    assert [t.split(" — ")[0] for t in texts] == ["Whole demo area", "West half"]
    assert all(t.endswith(("KB", "MB", "bytes")) for t in texts), texts
    # The tooltip tells the size of each package the area is made of.
    area = dialog.areasList.item(0).data(Qt.ItemDataRole.UserRole)
    assert area.packages
    for package in area.packages:
        assert f"{package.title}: {size_text(package.size)}" in dialog.areasList.item(0).toolTip()
    assert dialog.areasList.currentItem().text() == texts[0]
    # A map area comes as its packages were made: no layer choice, no attachments switch.
    assert dialog.layersGroup.isHidden()
    assert dialog.attachmentsCheck.isHidden()


def test_the_chosen_area_and_update_mode_make_the_request(dialog, reference_server, tmp_path):
    from plugin.core.enums import PreplannedUpdateMode
    from plugin.take_offline_request import update_mode_labels

    texts = _list_areas(dialog, reference_server)
    west = next(i for i, t in enumerate(texts) if t.startswith("West"))
    click_item(dialog.areasList, dialog.areasList.item(west))
    mode = PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES
    choose(dialog.updateModeCombo, dict(update_mode_labels())[mode])
    type_into(dialog.folderWidget, str(tmp_path / "west"))

    assert _press_take_offline(dialog) == ""
    request = dialog.request()

    assert request.is_preplanned
    assert request.map_area.title == "West half"
    assert request.update_mode == mode
    assert request.area_of_interest is None
    assert request.schema_only_layers == []


def test_a_preplanned_area_needs_a_web_map_and_a_chosen_area(dialog, tmp_path):
    _web_map(dialog, "http://h/arcgis/sharing/rest", ITEM, tmp_path / "map")
    click(dialog.preplannedRadio)
    assert "Choose a map area" in _press_take_offline(dialog)

    click(dialog.servicesRadio)
    assert not dialog.preplannedRadio.isEnabled()
    assert dialog.wholeRadio.isChecked()
    assert not dialog.layersGroup.isHidden()
    assert dialog.areasList.isHidden()


def test_a_web_map_without_map_areas_says_so(dialog, reference_server):
    type_into(dialog.portalEdit, reference_server.portal_url)
    type_into(dialog.itemEdit, seed.DEMO_WEBMAP_ID)
    click(dialog.preplannedRadio)
    click(dialog.listAreasButton)
    assert wait_for_task(dialog.task, 60)

    assert dialog.areasList.count() == 0
    assert "no preplanned map areas" in dialog.messageLabel.text()


def test_attachment_choice_shows_the_web_maps_default_until_the_user_changes_it(
    qgis_iface, reference_server, tmp_path
):
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtTest import QTest

    from plugin.task import wait_for_task
    from tests.featureservice import seed

    dialog = TakeOfflineDialog(qgis_iface)
    dialog.portalEdit.setText(reference_server.portal_url)
    dialog.itemEdit.setText(seed.OFFLINE_SETTINGS_WEBMAP_ID)
    dialog.folderWidget.setFilePath(str(tmp_path / "map"))
    assert dialog.request().include_attachments is None  # nothing read yet: the web map decides

    dialog.show()
    QTest.mouseClick(dialog.listLayersButton, Qt.MouseButton.LeftButton)
    task = dialog.task
    assert task is not None and wait_for_task(task, 60)
    assert dialog.layersList.count() == 5, dialog.messageLabel.text()

    # The web map brings attachments of its read-only layers only: shown partly checked.
    assert dialog.attachmentsCheck.checkState() == Qt.CheckState.PartiallyChecked
    assert dialog.request().include_attachments is None
    QTest.mouseClick(dialog.attachmentsCheck, Qt.MouseButton.LeftButton)
    assert dialog.attachmentsCheck.checkState() == Qt.CheckState.Checked
    assert dialog.request().include_attachments is True


# -- the area on the canvas ----------------------------------------------------------------------


def _rubber_bands(canvas) -> list:
    from qgis.gui import QgsRubberBand

    return [i for i in canvas.scene().items() if isinstance(i, QgsRubberBand) and i.isVisible()]


def _in_canvas_crs(canvas, area: dict) -> QgsRectangle:
    from qgis.core import QgsCoordinateTransform

    from plugin.layers import area_geometry

    geometry, crs = area_geometry(area)
    transform = QgsCoordinateTransform(
        crs, canvas.mapSettings().destinationCrs(), QgsProject.instance()
    )
    return transform.transformBoundingBox(geometry.boundingBox())


def _same_box(shown: QgsRectangle, expected: QgsRectangle) -> bool:
    tolerance = max(expected.width(), expected.height()) * 1e-6 + 1e-6
    return all(
        abs(a - b) <= tolerance
        for a, b in (
            (shown.xMinimum(), expected.xMinimum()),
            (shown.yMinimum(), expected.yMinimum()),
            (shown.xMaximum(), expected.xMaximum()),
            (shown.yMaximum(), expected.yMaximum()),
        )
    )


def test_map_areas_are_outlined_on_the_canvas_the_chosen_one_highlighted(
    qgis_iface, reference_server
):
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setExtent(QgsRectangle(0, 0, 1000, 1000))  # far from the map areas
    before = _rubber_bands(canvas)  # what other panels show
    dialog = TakeOfflineDialog(qgis_iface)
    dialog.show()
    texts = _list_areas(dialog, reference_server)
    areas = {
        t.split(" — ")[0]: dialog.areasList.item(i).data(Qt.ItemDataRole.UserRole)
        for i, t in enumerate(texts)
    }
    whole, west = areas["Whole demo area"], areas["West half"]

    chosen = dialog.area_preview.chosen.band()
    assert chosen is not None and _same_box(
        chosen.asGeometry().boundingBox(), _in_canvas_crs(canvas, whole.outline)
    )
    others = dialog.area_preview.others.band()
    assert others is not None and _same_box(
        others.asGeometry().boundingBox(), _in_canvas_crs(canvas, west.outline)
    )
    # The canvas moved to the chosen area: the user sees it.
    assert canvas.extent().contains(_in_canvas_crs(canvas, whole.outline))

    click_item(
        dialog.areasList,
        dialog.areasList.item(texts.index(next(t for t in texts if t.startswith("West")))),
    )

    chosen = dialog.area_preview.chosen.band()
    assert _same_box(chosen.asGeometry().boundingBox(), _in_canvas_crs(canvas, west.outline))
    assert _same_box(
        dialog.area_preview.others.band().asGeometry().boundingBox(),
        _in_canvas_crs(canvas, whole.outline),
    )
    assert len(_rubber_bands(canvas)) == len(before) + 2

    click(dialog.buttonBox.button(CANCEL))

    assert not dialog.isVisible()
    assert _rubber_bands(canvas) == before
    # Closed, the dialog no longer draws nor moves the canvas when the user pans away.
    far = QgsRectangle(0, 0, 1000, 1000)
    canvas.setExtent(far)
    center = canvas.extent().center()
    assert canvas.extent().contains(far) and abs(center.x() - 500) < 1 and abs(center.y() - 500) < 1
    assert _rubber_bands(canvas) == before
    dialog.deleteLater()


def test_the_on_demand_area_is_outlined_as_the_user_chooses_it(qgis_iface, tmp_path):
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setExtent(QgsRectangle(950000, 6000000, 952000, 6001000))
    layer = _points_layer("survey area", "EPSG:3857", ((951000, 6000200), (951500, 6000800)))
    before = _rubber_bands(canvas)  # what other panels show
    dialog = TakeOfflineDialog(qgis_iface)
    dialog.show()
    try:
        assert dialog.wholeRadio.isChecked()
        assert dialog.area_preview.chosen.band() is None  # everything: no outline

        click(dialog.canvasRadio)
        band = dialog.area_preview.chosen.band()
        assert band is not None and _same_box(band.asGeometry().boundingBox(), canvas.extent())
        # The canvas moves (a panel opens, the map is panned): the outline follows.
        canvas.setExtent(QgsRectangle(951000, 6000000, 953000, 6001000))
        assert _same_box(band.asGeometry().boundingBox(), canvas.extent())

        click(dialog.layerRadio)
        choose(dialog.layerCombo, "survey area")
        band = dialog.area_preview.chosen.band()
        assert _same_box(band.asGeometry().boundingBox(), layer.extent())

        click(dialog.wholeRadio)
        assert dialog.area_preview.chosen.band() is None

        click(dialog.canvasRadio)
        QTest.keyClick(dialog, Qt.Key.Key_Escape)
        assert not dialog.isVisible()
        assert _rubber_bands(canvas) == before
    finally:
        dialog.deleteLater()
        QgsProject.instance().removeMapLayer(layer.id())


def test_outlining_another_area_repaints_the_outline_not_the_map(qgis_iface):
    from tests.gui_user import process_events

    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setExtent(QgsRectangle(950000, 6000000, 952000, 6001000))
    layer = _points_layer("survey area", "EPSG:3857", ((951000, 6000200), (951500, 6000800)))
    dialog = TakeOfflineDialog(qgis_iface)
    dialog.show()
    renders = []
    canvas.renderStarting.connect(lambda: renders.append(True))
    try:
        click(dialog.canvasRadio)
        process_events(0.2)
        renders.clear()

        click(dialog.layerRadio)
        choose(dialog.layerCombo, "survey area")
        process_events(0.2)

        band = dialog.area_preview.chosen.band()
        assert band is not None and _same_box(band.asGeometry().boundingBox(), layer.extent())
        assert renders == []  # the map's layers were not drawn again for a new outline
    finally:
        dialog.deleteLater()
        QgsProject.instance().removeMapLayer(layer.id())


def test_without_a_canvas_nothing_is_outlined(reference_server, tmp_path):
    dialog = TakeOfflineDialog(None)
    dialog.show()
    texts = _list_areas(dialog, reference_server)
    assert texts and dialog.area_preview.chosen.band() is None
    click(dialog.buttonBox.button(CANCEL))
    dialog.deleteLater()
