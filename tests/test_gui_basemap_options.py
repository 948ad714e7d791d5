"""The Basemap section of the Take-offline dialog, used by clicks: download (levels, a tile
limit, an estimate first), keep online, a local file, or none; the choice goes into the request
and is remembered; over the limit, Take offline says so and the dialog stays open."""

from __future__ import annotations

import time

import pytest
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsLayerTreeLayer,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorTileLayer,
)
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QImage
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QFileDialog

from plugin.core.basemap import BasemapOptions
from plugin.gui.dock import OfflineMapSyncDock
from plugin.gui.remove_dialog import RemoveDialog
from plugin.gui.take_offline_dialog import TakeOfflineDialog
from plugin.layers import offline_map_layers
from tests import basemap_files
from tests.featureservice import seed
from tests.gui_user import (
    WAIT,
    answering,
    choose,
    choose_folder,
    click,
    press,
    process_events,
    type_into,
    wait_until_idle,
)
from tests.test_gui_walkthrough import plugin as _plugin_fixture
from tests.test_layers import take_demo_web_map_offline

ITEM = "0123456789abcdef0123456789abcdef"
OK = QDialogButtonBox.StandardButton.Ok
MAGENTA = QColor(255, 0, 255)
plugin = _plugin_fixture  # the plugin loaded into QGIS's window, shared


@pytest.fixture
def dialog(qgis_iface):
    shown = TakeOfflineDialog(qgis_iface)
    shown.show()
    yield shown
    shown.basemapSection.cancel_estimate()
    shown.hide()
    shown.deleteLater()


def section(dialog):
    return dialog.basemapSection


def set_spin(spin, value: int) -> None:
    """Type ``value`` into a spin box as a user does (select all, type, Tab away)."""
    click(spin)
    QTest.keyClick(spin, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClicks(spin, str(value))
    QTest.keyClick(spin, Qt.Key.Key_Tab)


def fill_web_map(dialog, portal: str, item: str, folder) -> None:
    click(dialog.webmapRadio)
    type_into(dialog.portalEdit, portal)
    type_into(dialog.itemEdit, item)
    type_into(dialog.folderWidget, str(folder))


def press_take_offline(dialog) -> str:
    click(dialog.buttonBox.button(OK))
    return "" if not dialog.isVisible() else dialog.messageLabel.text()


def test_downloading_levels_0_to_16_is_the_default(dialog, tmp_path):
    fill_web_map(dialog, "https://h/portal/sharing/rest", ITEM, tmp_path / "map")
    assert section(dialog).estimateButton.isVisible()

    assert press_take_offline(dialog) == ""

    assert dialog.request().basemap == BasemapOptions()


def test_the_lowest_level_never_passes_the_highest(dialog):
    low, high = section(dialog).minLevelSpin, section(dialog).maxLevelSpin
    set_spin(high, 5)
    set_spin(low, 9)
    assert (low.value(), high.value()) == (9, 9)
    set_spin(high, 3)
    assert (low.value(), high.value()) == (3, 3)
    set_spin(high, 14)
    assert (low.value(), high.value()) == (3, 14)


def test_keep_online_and_none_hide_the_levels_and_go_into_the_request(qgis_iface, tmp_path):
    for label, mode in (("Keep online", "online"), ("None", "none")):
        dialog = TakeOfflineDialog(qgis_iface)
        dialog.show()
        fill_web_map(dialog, "https://h/portal/sharing/rest", ITEM, tmp_path / mode)
        choose(section(dialog).modeCombo, label)
        assert not section(dialog).minLevelSpin.isVisible()
        assert not section(dialog).estimateButton.isVisible()

        assert press_take_offline(dialog) == ""

        assert dialog.request().basemap.mode == mode
        dialog.deleteLater()


def test_a_preplanned_area_brings_its_basemap_as_packaged_without_levels_to_choose(dialog):
    click(dialog.preplannedRadio)
    assert section(dialog).modeCombo.isVisible()
    assert not section(dialog).minLevelSpin.isVisible()
    assert not section(dialog).estimateButton.isVisible()
    click(dialog.wholeRadio)
    assert section(dialog).minLevelSpin.isVisible()


def test_a_local_file_must_be_chosen_and_exist(dialog, tmp_path):
    fill_web_map(dialog, "https://h/portal/sharing/rest", ITEM, tmp_path / "map")
    choose(section(dialog).modeCombo, "Use a local tile file")
    assert section(dialog).fileWidget.isVisible()

    assert "Choose the local basemap file" in press_take_offline(dialog)
    type_into(section(dialog).fileWidget, str(tmp_path / "nowhere.gpkg"))
    assert "does not exist" in press_take_offline(dialog)
    mine = basemap_files.raster_gpkg(tmp_path / "mine.gpkg")
    type_into(section(dialog).fileWidget, str(mine))

    assert press_take_offline(dialog) == ""

    basemap = dialog.request().basemap
    assert (basemap.mode, basemap.local_path) == ("local", str(mine))


def test_the_choices_are_remembered_for_the_next_time(qgis_iface, tmp_path):
    first = TakeOfflineDialog(qgis_iface)
    first.show()
    fill_web_map(first, "https://h/portal/sharing/rest", ITEM, tmp_path / "first")
    set_spin(section(first).maxLevelSpin, 12)
    set_spin(section(first).minLevelSpin, 3)
    set_spin(section(first).limitSpin, 5000)
    assert press_take_offline(first) == ""
    first.deleteLater()

    again = TakeOfflineDialog(qgis_iface)
    again.show()
    try:
        assert section(again).minLevelSpin.value() == 3
        assert section(again).maxLevelSpin.value() == 12
        assert section(again).limitSpin.value() == 5000
        assert section(again).modeCombo.currentText() == "Download for the area"
    finally:
        again.deleteLater()


def test_cancel_remembers_nothing(qgis_iface, tmp_path):
    first = TakeOfflineDialog(qgis_iface)
    first.show()
    choose(section(first).modeCombo, "None")
    click(first.buttonBox.button(QDialogButtonBox.StandardButton.Cancel))
    assert first.result() == QDialog.DialogCode.Rejected
    first.deleteLater()

    again = TakeOfflineDialog(qgis_iface)
    try:
        assert again.basemapSection.mode == "download"
    finally:
        again.deleteLater()


# -- with the reference service: estimate, limit, and the basemap in the map's group ----------
def wait_for_estimate(dialog) -> None:
    deadline = time.monotonic() + WAIT
    while section(dialog).task is not None and time.monotonic() < deadline:
        process_events(0.05)
    assert section(dialog).task is None, "the estimate did not finish"


def demo_area(dialog, canvas) -> None:
    """The canvas on the demo points (Web Mercator), and "the current map canvas extent"."""
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    x, y = seed.mercator(seed.BASE_LON + 0.006, seed.BASE_LAT + 0.004)
    canvas.setExtent(QgsRectangle(x - 1500, y - 1500, x + 1500, y + 1500))
    click(dialog.canvasRadio)


def test_the_estimate_shows_tiles_and_size_and_take_offline_refuses_over_the_limit(
    dialog, qgis_iface, reference_server, tmp_path
):
    fill_web_map(dialog, reference_server.portal_url, seed.DEMO_WEBMAP_ID, tmp_path / "map")
    demo_area(dialog, qgis_iface.mapCanvas())
    set_spin(section(dialog).maxLevelSpin, 15)
    dialog.scrollArea.ensureWidgetVisible(section(dialog))

    click(section(dialog).estimateButton)
    assert section(dialog).estimateButton.text() == "Stop"
    wait_for_estimate(dialog)

    text = section(dialog).estimateLabel.text()
    estimate = section(dialog).estimate
    assert estimate is not None and estimate.tiles > 1, text
    assert f"About {estimate.tiles:,} tiles" in text
    assert {layer.title for layer in estimate.layers} == {"Demo topographic", "Demo streets"}
    assert section(dialog).estimateButton.text() == "Estimate"

    set_spin(section(dialog).limitSpin, estimate.tiles - 1)
    assert "more than the limit" in section(dialog).estimateLabel.text()
    message = press_take_offline(dialog)
    assert (
        f"needs {estimate.tiles:,} tiles, more than the limit of {estimate.tiles - 1:,}" in message
    )
    assert not (tmp_path / "map").exists()

    # Other levels than estimated: the figures are not shown as if they held.
    set_spin(section(dialog).maxLevelSpin, 14)
    assert section(dialog).estimateLabel.text() == "Estimate again for these choices."
    set_spin(section(dialog).maxLevelSpin, 15)
    assert f"About {estimate.tiles:,} tiles" in section(dialog).estimateLabel.text()
    click(dialog.wholeRadio)  # another area
    assert section(dialog).estimateLabel.text() == "Estimate again for these choices."
    click(dialog.canvasRadio)
    assert f"About {estimate.tiles:,} tiles" in section(dialog).estimateLabel.text()

    set_spin(section(dialog).limitSpin, estimate.tiles)
    assert press_take_offline(dialog) == ""
    assert dialog.request().basemap.tile_limit == estimate.tiles


def test_an_estimate_can_be_stopped(dialog, qgis_iface, reference_server, tmp_path):
    reference_server.inject_fault("estimateExportTilesSize", "delay", seconds=2)
    fill_web_map(dialog, reference_server.portal_url, seed.DEMO_WEBMAP_ID, tmp_path / "map")
    demo_area(dialog, qgis_iface.mapCanvas())
    dialog.scrollArea.ensureWidgetVisible(section(dialog))

    click(section(dialog).estimateButton)
    click(section(dialog).estimateButton)  # now reading "Stop"
    wait_for_estimate(dialog)

    assert section(dialog).estimateLabel.text() == "Estimate stopped."
    assert section(dialog).estimate is None
    assert section(dialog).estimateButton.text() == "Estimate"


def test_the_demo_web_map_comes_with_its_basemap_under_its_layers_by_clicks(
    plugin, qgis_iface, reference_server, tmp_path
):
    folder = tmp_path / "Field map"
    click(plugin.toolbar.widgetForAction(plugin.action))
    dock = plugin.dock

    def take_with_basemap(dialog):
        fill_web_map(dialog, reference_server.portal_url, seed.DEMO_WEBMAP_ID, folder)
        demo_area(dialog, qgis_iface.mapCanvas())
        dialog.scrollArea.ensureWidgetVisible(section(dialog))
        set_spin(section(dialog).maxLevelSpin, 15)
        set_spin(section(dialog).minLevelSpin, 10)
        click(section(dialog).estimateButton)
        wait_for_estimate(dialog)
        assert section(dialog).estimate.tiles > 0, section(dialog).estimateLabel.text()
        click(dialog.buttonBox.button(OK))

    with answering(take_with_basemap, TakeOfflineDialog):
        click(dock.takeOfflineButton)
    wait_until_idle(dock)
    assert dock.offline_map is not None, dock.statusLabel.text()
    click(dock.addToMapButton)

    group_title = dock.offline_map.title
    group = QgsProject.instance().layerTreeRoot().findGroup(group_title)
    *operational, basemap_group = group.children()
    assert basemap_group.name() == "Basemap"
    assert any(isinstance(node, QgsLayerTreeLayer) for node in operational)
    streets, topo = [node.layer() for node in basemap_group.findLayers()]
    assert (streets.name(), topo.name()) == ("Demo streets", "Demo topographic")
    assert isinstance(streets, QgsVectorTileLayer) and isinstance(topo, QgsRasterLayer)
    area = qgis_iface.mapCanvas().extent()
    for layer in (streets, topo):
        assert layer.isValid() and layer.extent().intersects(area), layer.name()
    for layer in (topo, streets):
        # Drawn from the files over the whole area: no pixel left in the background colour.
        image = render([layer], area)
        image.save(str(tmp_path / f"{layer.name()}.png"))
        pixels = [image.pixelColor(x, y) for x in range(0, 128, 8) for y in range(0, 128, 8)]
        assert MAGENTA not in pixels, layer.name()

    # Remove…: the basemap layers leave the project with the map.
    with answering(press("Remove"), RemoveDialog):
        click(dock.removeButton)
    wait_until_idle(dock)
    assert dock.offline_map is None
    assert QgsProject.instance().mapLayers() == {}
    assert QgsProject.instance().layerTreeRoot().findGroup(group_title) is None


def render(layers, extent: QgsRectangle) -> QImage:
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    settings.setExtent(extent)
    settings.setOutputSize(QSize(128, 128))
    settings.setBackgroundColor(MAGENTA)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def test_add_to_map_names_a_missing_basemap_and_adds_the_rest(
    qgis_iface, qgis_new_project, reference_server, tmp_path
):
    folder = take_demo_web_map_offline(reference_server, tmp_path / "map").folder
    (folder / "basemap" / "Demo_streets.mbtiles").unlink()
    qgis_iface.messageBar().clear_messages()
    dock = OfflineMapSyncDock(qgis_iface)
    dock.show()
    try:
        with answering(choose_folder(folder), QFileDialog):
            click(dock.openButton)
        click(dock.addToMapButton)

        warnings = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Warning)
        assert any("Demo streets" in text and "missing" in text for text in warnings), warnings
        group = QgsProject.instance().layerTreeRoot().findGroup(dock.offline_map.title)
        basemap_group = group.children()[-1]
        assert [node.layer().name() for node in basemap_group.findLayers()] == ["Demo topographic"]
        assert offline_map_layers(folder)
    finally:
        QgsProject.instance().clear()
        dock.hide()
        dock.deleteLater()
