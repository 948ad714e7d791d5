"""The whole job by clicks, as a new user meets it: toolbar button, panel, Take offline… (a web
map, the canvas extent, attachments), Add to map, an edit in an edit session, Sync (answering
the save question), the results, the conflict log, Restore, Remove…; and Cancel in each dialog
creates nothing."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsProject, QgsRectangle
from qgis.PyQt.QtWidgets import QDialogButtonBox

from plugin.core.rest import ArcGISClient
from plugin.gui.conflict_dialog import ConflictDialog
from plugin.gui.remove_dialog import RemoveDialog
from plugin.gui.take_offline_dialog import TakeOfflineDialog
from plugin.layers import offline_map_layers
from plugin.main import OfflineMapSyncPlugin
from tests.featureservice import seed
from tests.gui_user import answering, click, click_item, press, wait_until_idle
from tests.test_gui_dock import (
    POINTS,
    _layer,
    _rows,
    add_to_map,
    close_dialog,
    fill_take_offline,
    sync,
)

CANCEL = QDialogButtonBox.StandardButton.Cancel
OK = QDialogButtonBox.StandardButton.Ok


@pytest.fixture
def plugin(qgis_iface, qgis_new_project):
    qgis_iface.messageBar().clear_messages()
    window = qgis_iface.mainWindow()
    window.show()
    loaded = OfflineMapSyncPlugin(qgis_iface)
    loaded.initGui()
    loaded.toolbar.show()
    yield loaded
    if loaded.dock is not None and loaded.dock.task is not None:
        wait_until_idle(loaded.dock)
    QgsApplication.taskManager().cancelAll()
    loaded.unload()
    QgsProject.instance().clear()
    window.hide()


def _west_half_on_the_canvas(canvas) -> None:
    # The user zooms to the west half of the points (the canvas in Web Mercator): a square
    # of 1120 m around the second column of points, all rows, not the third column.
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    x, y = seed.mercator(seed.BASE_LON + 0.002, seed.BASE_LAT + 0.003)
    canvas.setExtent(QgsRectangle(x - 560, y - 560, x + 560, y + 560))


def _replicas(server) -> list:
    return ArcGISClient().replicas(server.service_url(seed.DEMO_SERVICE))


def test_take_offline_edit_sync_resolve_and_remove_by_clicks(
    plugin, qgis_iface, reference_server, tmp_path
):
    folder = tmp_path / "Field map"
    _west_half_on_the_canvas(qgis_iface.mapCanvas())

    # The toolbar button opens the panel.
    click(plugin.toolbar.widgetForAction(plugin.action))
    dock = plugin.dock
    assert dock is not None and dock.isVisible()
    assert plugin.action.isChecked()

    # Take offline…, filled in, then Cancel: nothing is made, on disk or on the service.
    def fill_then_cancel(dialog):
        fill_take_offline(dialog, reference_server.portal_url, seed.DEMO_WEBMAP_ID, folder)
        click(dialog.buttonBox.button(CANCEL))

    with answering(fill_then_cancel, TakeOfflineDialog):
        click(dock.takeOfflineButton)
    assert not folder.exists() and _replicas(reference_server) == []
    assert dock.offline_map is None

    # Take offline… for real: the web map, the canvas extent, with attachments.
    def take_the_west_half(dialog):
        fill_take_offline(dialog, reference_server.portal_url, seed.DEMO_WEBMAP_ID, folder)
        click(dialog.canvasRadio)
        assert dialog.attachmentsCheck.isChecked()
        click(dialog.buttonBox.button(OK))

    with answering(take_the_west_half, TakeOfflineDialog):
        click(dock.takeOfflineButton)
    wait_until_idle(dock)
    assert dock.offline_map is not None, dock.statusLabel.text()
    assert len(_replicas(reference_server)) == 1

    # Add to map: the canvas extent's share of the points, with their attachments.
    add_to_map(dock)
    points = _layer(dock, POINTS)
    assert 0 < points.featureCount() < seed.DEMO_COUNTS[POINTS]

    # An edit in an edit session, not saved; meanwhile the office deletes that very point.
    feature = next(points.getFeatures())
    assert points.startEditing()
    points.changeAttributeValue(feature.id(), points.fields().lookupField("status"), "damaged")
    reference_server.apply_edits(seed.DEMO_SERVICE, POINTS, deletes=[feature["GlobalID"]])

    # Sync asks to save the edit first; the user clicks Save.
    sync(dock, press("Save"))
    assert not points.isModified()
    row = _rows(dock)["Points"]
    assert row[3] == "1", dock.result_rows()  # the local version went to the conflict log
    assert dock.conflictsButton.text() == "Conflict log (1)…"

    # The conflict log: closed without acting, nothing changes; then Restore.
    with answering(close_dialog, ConflictDialog):
        click(dock.conflictsButton)
    assert dock.conflictsButton.text() == "Conflict log (1)…"

    def restore(dialog):
        click_item(dialog.conflictTable, dialog.conflictTable.item(0, 1))
        click(dialog.restoreButton)
        assert dialog.conflictTable.rowCount() == 0
        close_dialog(dialog)

    count = points.featureCount()
    with answering(restore, ConflictDialog):
        click(dock.conflictsButton)
    assert points.featureCount() == count + 1  # the point is back on the map
    assert dock.pending_text(dock.offline_map.geodatabases[0].file, POINTS) == "1 added"

    # Remove…, then Cancel: everything stays.
    with answering(press("Cancel"), RemoveDialog):
        click(dock.removeButton)
    assert folder.exists() and len(_replicas(reference_server)) == 1
    assert offline_map_layers(folder)

    # Remove… for real: the restored edit is named and must be discarded explicitly.
    def discard_and_remove(dialog):
        assert not dialog.buttonBox.button(OK).isEnabled()
        click(dialog.discardCheck)
        click(dialog.buttonBox.button(OK))

    with answering(discard_and_remove, RemoveDialog):
        click(dock.removeButton)
    wait_until_idle(dock)

    assert not folder.exists()
    assert _replicas(reference_server) == []
    assert offline_map_layers(folder) == []
    assert dock.offline_map is None

    # The toolbar button hides the panel again.
    click(plugin.toolbar.widgetForAction(plugin.action))
    assert not dock.isVisible()
