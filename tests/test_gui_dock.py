"""The dock panel driven like a user, against the reference feature service.

A real offline map is taken offline (by the Take offline dialog, or by the core for speed),
opened with the Open… button and its folder dialog, added to the project with Add to map,
edited with QGIS's editing API, synchronized with the Sync button, and its results and
conflicts are read back from the panel's widgets. Modal questions are answered by clicking.
"""

from __future__ import annotations

import pytest
from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsExpression,
    QgsFeatureRequest,
    QgsProject,
    QgsSingleSymbolRenderer,
)
from qgis.PyQt.QtWidgets import QDialogButtonBox, QFileDialog, QMessageBox

from plugin.core.rest import ArcGISClient
from plugin.core.take_offline import OfflineMapTask
from plugin.gui.conflict_dialog import ConflictDialog
from plugin.gui.dock import ROLE_KEY, OfflineMapSyncDock
from plugin.gui.remove_dialog import RemoveDialog
from plugin.gui.take_offline_dialog import TakeOfflineDialog
from plugin.layers import PROPERTY_ATTACHMENTS, PROPERTY_LAYER_ID, offline_map_layers
from plugin.task import wait_for_task
from tests.featureservice import seed
from tests.gui_user import (
    answering,
    choose,
    choose_folder,
    click,
    click_item,
    press,
    type_into,
    wait_until_idle,
)
from tests.test_gui_auth import auth_manager as _auth_manager_fixture
from tests.test_gui_auth import plain_http_on_loopback as _plain_http_fixture
from tests.test_layers import take_demo_web_map_offline

POINTS, LINES, POLYGONS, INSPECTIONS = 0, 1, 2, 3
auth_manager = _auth_manager_fixture  # the QGIS auth configurations fixture, shared
plain_http_on_loopback = _plain_http_fixture
WAIT = 60
OK = QDialogButtonBox.StandardButton.Ok


@pytest.fixture
def demo_map(reference_server, tmp_path):
    """The demo web map taken offline by the core (what the dock's task does, faster)."""
    return take_demo_web_map_offline(reference_server, tmp_path / "demo_map").folder


@pytest.fixture
def dock(qgis_iface, qgis_new_project):
    qgis_iface.messageBar().clear_messages()
    panel = OfflineMapSyncDock(qgis_iface)
    panel.show()
    yield panel
    if panel.task is not None:
        panel.task.cancel()
        wait_for_task(panel.task, WAIT)
    QgsApplication.taskManager().cancelAll()
    QgsProject.instance().clear()
    panel.hide()
    panel.deleteLater()


# -- what the user does ------------------------------------------------------------------------
def open_map(dock, folder) -> None:
    """Open… and pick ``folder`` in the folder dialog."""
    with answering(choose_folder(folder), QFileDialog):
        click(dock.openButton)


def add_to_map(dock) -> None:
    click(dock.addToMapButton)


def sync(dock, answer=None) -> None:
    """Click Sync (answering the question it asks with ``answer``) and wait for the end."""
    if answer is None:
        click(dock.syncButton)
    else:
        with answering(answer, QMessageBox):
            click(dock.syncButton)
    wait_until_idle(dock)


def fill_take_offline(dialog, portal, item, folder, auth_name=None) -> None:
    type_into(dialog.portalEdit, portal)
    type_into(dialog.itemEdit, item)
    type_into(dialog.folderWidget, str(folder))
    if auth_name:
        choose(_auth_combo(dialog.authSelect), auth_name)


def take_offline(dock, portal, item, folder, auth_name=None, more=None) -> None:
    """Take offline…, fill the dialog in, click Take offline, wait for the task."""

    def answer(dialog):
        fill_take_offline(dialog, portal, item, folder, auth_name)
        if more is not None:
            more(dialog)
        click(dialog.buttonBox.button(OK))
        assert not dialog.isVisible(), dialog.messageLabel.text()

    with answering(answer, TakeOfflineDialog):
        click(dock.takeOfflineButton)
    wait_until_idle(dock)


def _auth_combo(select):
    from qgis.PyQt.QtWidgets import QComboBox

    return select.findChild(QComboBox)


def open_conflict_log(dock, act) -> None:
    with answering(act, ConflictDialog):
        click(dock.conflictsButton)


def close_dialog(dialog) -> None:
    click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Close))


def remove(dock, act) -> None:
    """Remove…, answered by ``act(dialog)``; waits for whatever the answer started."""
    with answering(act, RemoveDialog):
        click(dock.removeButton)
    wait_until_idle(dock)


def confirm_removal(dialog) -> None:
    if dialog.pendingGroup.isVisible():
        click(dialog.discardCheck)
    click(dialog.buttonBox.button(OK))


# -- reading the outcome -----------------------------------------------------------------------
def _layer(dock, layer_id):
    return next(
        layer
        for layer in offline_map_layers(dock.offline_map.folder)
        if layer.customProperty(PROPERTY_LAYER_ID) == layer_id
        and layer.customProperty(PROPERTY_ATTACHMENTS) in (None, "")
    )


def _attachments(dock, layer_id):
    return next(
        layer
        for layer in offline_map_layers(dock.offline_map.folder)
        if layer.customProperty(PROPERTY_ATTACHMENTS) == layer_id
    )


def _by_name(layer, name):
    request = QgsFeatureRequest().setFilterExpression(
        QgsExpression.createFieldEqualityExpression("name", name)
    )
    return next(layer.getFeatures(request))


def _edit(layer, name, field, value) -> None:
    feature = _by_name(layer, name)
    assert layer.startEditing()
    assert layer.changeAttributeValue(feature.id(), layer.fields().lookupField(field), value)
    assert layer.commitChanges(), layer.commitErrors()


def _rows(dock) -> dict[str, list[str]]:
    return {row[0]: row for row in dock.result_rows()}


def _server_rows(server, layer_id=POINTS):
    return {
        f["attributes"]["name"]: f["attributes"]
        for f in server.query_all(seed.DEMO_SERVICE, layer_id)
    }


def _gdb(dock) -> str:
    return dock.offline_map.geodatabases[0].file


# -- tests -------------------------------------------------------------------------------------
def test_take_offline_runs_as_a_task_and_opens_the_new_map(dock, reference_server, tmp_path):
    take_offline(dock, reference_server.portal_url, seed.DEMO_WEBMAP_ID, tmp_path / "new_map")

    assert dock.offline_map is not None, dock.statusLabel.text()
    assert dock.offline_map.folder == (tmp_path / "new_map").absolute()
    assert dock.contentTree.topLevelItemCount() == 1
    assert dock.contentTree.topLevelItem(0).childCount() == 4
    assert dock.recentCombo.currentData() == str(dock.offline_map.folder)
    assert dock.progressBar.isHidden()  # no bar at 100 % once the job is over


def test_cancel_in_the_take_offline_dialog_creates_nothing(dock, reference_server, tmp_path):
    def cancel(dialog):
        fill_take_offline(
            dialog, reference_server.portal_url, seed.DEMO_WEBMAP_ID, tmp_path / "never"
        )
        click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Cancel))

    with answering(cancel, TakeOfflineDialog):
        click(dock.takeOfflineButton)

    assert dock.task is None
    assert dock.offline_map is None
    assert not (tmp_path / "never").exists()
    assert reference_server.app is not None
    assert ArcGISClient().replicas(reference_server.service_url(seed.DEMO_SERVICE)) == []


def test_the_take_offline_dialog_remembers_the_portal_and_the_web_map(
    dock, reference_server, tmp_path
):
    take_offline(dock, reference_server.portal_url, seed.DEMO_WEBMAP_ID, tmp_path / "first")
    seen = {}

    def look(dialog):
        seen["portal"] = dialog.portalEdit.text()
        seen["item"] = dialog.itemEdit.text()
        click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Cancel))

    with answering(look, TakeOfflineDialog):
        click(dock.takeOfflineButton)

    assert seen == {"portal": reference_server.portal_url, "item": seed.DEMO_WEBMAP_ID}


def test_open_map_shows_its_geodatabases_layers_and_capabilities_in_words(dock, demo_map):
    assert dock.progressBar.isHidden()
    open_map(dock, demo_map)

    top = dock.contentTree.topLevelItem(0)
    children = sorted(top.child(i).text(0) for i in range(top.childCount()))
    assert children == sorted(["Points", "Lines", "Polygons", "Inspections (table)"])
    assert dock.pending_text(top.data(0, ROLE_KEY)[0]) == "0 pending"
    assert dock.pending_text(top.data(0, ROLE_KEY)[0], POINTS) == "0"
    text = dock.capabilitiesLabel.text()
    assert "synchronizes with its feature services" in text
    assert "No local edits are waiting" in text
    assert dock.syncButton.isEnabled()
    assert str(demo_map) == dock.recentCombo.currentData()
    assert dock.progressBar.isHidden()


def test_a_recent_map_is_reopened_from_the_list(dock, demo_map, qgis_iface):
    open_map(dock, demo_map)
    # Next time (a new panel, as after restarting QGIS) nothing is open; the list remembers.
    again = OfflineMapSyncDock(qgis_iface)
    again.show()
    try:
        assert again.offline_map is None
        choose(again.recentCombo, demo_map.name)

        assert again.offline_map is not None
        assert again.offline_map.folder == demo_map
        assert again.contentTree.topLevelItemCount() == 1
    finally:
        again.hide()
        again.deleteLater()


def test_opening_a_folder_that_is_not_an_offline_map_says_so(dock, tmp_path):
    open_map(dock, tmp_path)
    assert "not an offline map" in dock.statusLabel.text()
    assert dock.offline_map is None
    assert not dock.syncButton.isEnabled()


def test_add_to_map_loads_valid_styled_layers_with_relations(dock, demo_map):
    open_map(dock, demo_map)
    add_to_map(dock)

    layers = {layer_id: _layer(dock, layer_id) for layer_id in (0, 1, 2, 3)}
    for layer_id, layer in layers.items():
        assert layer.isValid(), layer.name()
        assert layer.featureCount() == seed.DEMO_COUNTS[layer_id]
    points = layers[POINTS]
    assert isinstance(points.renderer(), QgsCategorizedSymbolRenderer)
    assert points.renderer().classAttribute() == "category"
    assert isinstance(layers[LINES].renderer(), QgsSingleSymbolRenderer)
    assert points.labelsEnabled()
    assert points.labeling().rootRule().children()[0].settings().fieldName == "name"
    assert points.attributeAlias(points.fields().lookupField("height")) == "Height (m)"
    assert points.editorWidgetSetup(points.fields().lookupField("category")).type() == "ValueMap"

    relations = QgsProject.instance().relationManager().referencedRelations(points)
    assert all(r.isValid() for r in relations)
    assert len(relations) == 2
    assert _attachments(dock, POINTS).featureCount() > 0

    # One group, named after the map (not after the service, which two maps may share).
    root = QgsProject.instance().layerTreeRoot()
    assert [group.name() for group in root.findGroups()] == [dock.offline_map.title]
    # Adding again replaces, never duplicates.
    add_to_map(dock)
    assert len(offline_map_layers(demo_map)) == 5
    assert len(QgsProject.instance().relationManager().relations()) == 2
    assert len(root.findGroups()) == 1
    assert _layer(dock, POINTS).isValid()


def test_an_edit_made_with_qgis_editing_reaches_the_service(dock, demo_map, reference_server):
    open_map(dock, demo_map)
    add_to_map(dock)
    name = seed.POINT_NAMES[0]

    _edit(_layer(dock, POINTS), name, "notes", "edited in QGIS")
    # The panel follows saved edits by itself.
    assert "1 changed" in dock.pending_text(_gdb(dock), POINTS)
    assert "Local edits are waiting" in dock.capabilitiesLabel.text()

    sync(dock)

    rows = _rows(dock)
    assert rows["Points"][1] == "1"  # one row up
    assert _server_rows(reference_server)[name]["notes"] == "edited in QGIS"
    assert dock.pending_text(_gdb(dock), POINTS) == "0"
    assert dock.progressBar.isHidden()


def test_server_changes_come_down_and_the_layer_shows_them(dock, demo_map, reference_server):
    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    name = seed.POINT_NAMES[1]
    global_id = _by_name(points, name)["GlobalID"]
    reference_server.apply_edits(
        seed.DEMO_SERVICE, POINTS, updates=[{"GlobalID": global_id, "visits": 4242}]
    )

    sync(dock)

    assert _rows(dock)["Points"][2] == "1"
    assert _by_name(points, name)["visits"] == 4242


def test_unsaved_edits_stop_the_sync_unless_the_user_saves_them(dock, demo_map, reference_server):
    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    feature = _by_name(points, seed.POINT_NAMES[2])
    points.startEditing()
    points.changeAttributeValue(feature.id(), points.fields().lookupField("visits"), 77)
    asked = []

    def cancel(box):
        asked.append(box.text())
        click(box.button(QMessageBox.StandardButton.Cancel))

    sync(dock, cancel)

    assert "Points" in asked[0]
    assert "did not start" in dock.statusLabel.text()
    assert points.isModified()
    assert dock.result_rows() == []

    sync(dock, press("Save"))

    assert not points.isModified()
    assert _server_rows(reference_server)[seed.POINT_NAMES[2]]["visits"] == 77
    points.rollBack()


def _restore_first(dock, seen):
    def act(dialog):
        seen["rows"] = dialog.conflictTable.rowCount()
        seen["cells"] = [
            dialog.conflictTable.item(0, column).text()
            for column in range(dialog.conflictTable.columnCount())
        ]
        seen["tooltips"] = [
            dialog.conflictTable.item(0, column).toolTip()
            for column in range(dialog.conflictTable.columnCount())
        ]
        click_item(dialog.conflictTable, dialog.conflictTable.item(0, 1))
        click(dialog.restoreButton)
        seen["after"] = dialog.conflictTable.rowCount()
        close_dialog(dialog)

    return act


def test_a_conflict_shows_in_the_results_and_the_log_and_can_be_restored(
    dock, demo_map, reference_server, qgis_iface
):
    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    name = seed.POINT_NAMES[3]
    feature = _by_name(points, name)
    _edit(points, name, "status", "damaged")
    reference_server.apply_edits(seed.DEMO_SERVICE, POINTS, deletes=[feature["GlobalID"]])
    sync(dock)
    assert _rows(dock)["Points"][3:4] == ["1"]  # one conflict, counted once
    details = _rows(dock)["Points"][4]
    assert details.startswith(f"update {name}: "), details  # named for people
    assert dock.conflictsButton.text() == "Conflict log (1)…"
    count = points.featureCount()
    repaints = []
    points.repaintRequested.connect(lambda *args: repaints.append(args))
    seen = {}

    open_conflict_log(dock, _restore_first(dock, seen))

    assert seen["rows"] == 1
    assert seen["cells"][1] == "Points"
    assert seen["cells"][2] == name  # named by the layer's display field
    assert "deleted" in seen["cells"][3]
    assert feature["GlobalID"] in seen["tooltips"][2]  # its GlobalID in the tooltip
    assert seen["after"] == 0
    assert dock.conflictsButton.text() == "Conflict log…"
    assert dock.pending_text(_gdb(dock), POINTS) == "1 added"
    # The restored feature is back on the layer and the canvas was asked to repaint it.
    assert points.featureCount() == count + 1
    assert repaints


def test_dismissing_a_conflict_keeps_the_server_version(dock, demo_map, reference_server):
    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    feature = _by_name(points, seed.POINT_NAMES[4])
    _edit(points, seed.POINT_NAMES[4], "visits", 1)
    reference_server.apply_edits(seed.DEMO_SERVICE, POINTS, deletes=[feature["GlobalID"]])
    sync(dock)
    count = points.featureCount()
    seen = {}

    def dismiss(dialog):
        click_item(dialog.conflictTable, dialog.conflictTable.item(0, 0))
        click(dialog.dismissButton)
        seen["after"] = dialog.conflictTable.rowCount()
        close_dialog(dialog)

    open_conflict_log(dock, dismiss)

    assert seen["after"] == 0
    assert dock.pending_text(_gdb(dock), POINTS) == "0"
    assert points.featureCount() == count == seed.DEMO_COUNTS[POINTS] - 1


def test_cancelling_a_sync_stops_it_and_says_so(dock, demo_map, reference_server):
    open_map(dock, demo_map)
    # The server keeps the sync job "in progress" for a long time; the user cancels it.
    reference_server.inject_fault("synchronizeReplica", "slow_job", polls=10_000)
    reference_server.inject_fault("synchronizeReplica", "delay", seconds=3)

    click(dock.syncButton)
    assert dock.cancelButton.isEnabled()
    assert not dock.syncButton.isEnabled()
    assert dock.progressBar.isVisible()  # shown while the job runs
    click(dock.cancelButton)
    wait_until_idle(dock)

    assert dock.statusLabel.text() == "Cancelled."
    assert dock.syncButton.isEnabled()
    assert dock.progressBar.isHidden()


def test_check_for_updates_tells_what_is_waiting_and_a_sync_refreshes_it(dock, demo_map):
    open_map(dock, demo_map)
    add_to_map(dock)
    _edit(_layer(dock, POINTS), seed.POINT_NAMES[0], "visits", 5)

    click(dock.checkUpdatesButton)
    wait_until_idle(dock)

    assert dock.statusLabel.text() == "Checked for updates."
    text = dock.capabilitiesLabel.text()
    assert "Upload: updates are available." in text
    assert "Download: cannot be known without synchronizing." in text

    sync(dock)

    text = dock.capabilitiesLabel.text()
    assert "Upload: updates are available." not in text
    assert "No local edits are waiting." in text


def test_check_for_updates_with_the_service_down_says_it_failed(dock, demo_map, reference_server):
    open_map(dock, demo_map)
    reference_server.stop()

    click(dock.checkUpdatesButton)
    wait_until_idle(dock)

    assert dock.statusLabel.text().startswith("Could not check for updates"), (
        dock.statusLabel.text()
    )
    assert "Checked for updates" not in dock.statusLabel.text()
    assert "updates are available" not in dock.capabilitiesLabel.text()


def take_secured_map_offline(dock, server, auth_manager, folder, password="alice-secret"):
    """Take the demo web map offline through the dialog, signed in as alice by a QGIS Basic
    auth configuration with ``password`` (chosen in the dialog); the configuration id."""
    # Made for the reference service's site, whose plain http the test allowed for loopback.
    config_id = auth_manager("Basic", uri=server.root_url, username="alice", password=password)
    take_offline(
        dock, server.portal_url, seed.DEMO_WEBMAP_ID, folder, auth_name="test Basic (Basic)"
    )
    return config_id


def test_a_secured_service_is_used_through_a_qgis_auth_configuration(
    dock, secured_reference_server, auth_manager, plain_http_on_loopback, tmp_path
):
    server = secured_reference_server
    config_id = take_secured_map_offline(dock, server, auth_manager, tmp_path / "secured_map")
    assert dock.offline_map is not None, dock.statusLabel.text()
    # The map remembers which configuration it uses (its id only, never the password).
    assert dock.authSelect.configId() == config_id

    add_to_map(dock)
    _edit(_layer(dock, POINTS), seed.POINT_NAMES[0], "visits", 12)
    sync(dock)

    assert not dock.last_result.has_errors, dock.result_rows()
    assert "alice-secret" not in dock.statusLabel.text()
    assert _server_rows(server)[seed.POINT_NAMES[0]]["visits"] == 12


def test_wrong_credentials_fail_with_a_message_and_no_secret(
    dock, secured_reference_server, auth_manager, plain_http_on_loopback, tmp_path
):
    take_secured_map_offline(
        dock,
        secured_reference_server,
        auth_manager,
        tmp_path / "secured_map",
        password="wrong-password",
    )

    assert dock.offline_map is None
    assert "alice" in dock.statusLabel.text()
    assert "wrong-password" not in dock.statusLabel.text()
    assert not (tmp_path / "secured_map").exists()


def test_a_sync_finishes_even_if_the_panel_goes_away(qgis_iface, demo_map, reference_server):
    from qgis.core import Qgis
    from qgis.PyQt import sip

    logged = []

    def collect(message, tag, level):
        if tag == "Offline Map Sync" and level == Qgis.MessageLevel.Critical:
            logged.append(message)

    QgsApplication.messageLog().messageReceived.connect(collect)
    try:
        panel = OfflineMapSyncDock(qgis_iface)
        panel.show()
        open_map(panel, demo_map)
        click(panel.syncButton)
        task = panel.task
        sip.delete(panel)  # what unloading the plugin does to the panel

        assert wait_for_task(task, WAIT)
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(collect)
    assert task.succeeded
    assert logged == []


def test_a_download_only_service_is_shown_as_such_and_defaults_to_download(
    dock, reference_server, tmp_path
):
    task = OfflineMapTask(
        service_urls=[reference_server.service_url(seed.READONLY_SERVICE)], client=ArcGISClient()
    )
    parameters = task.create_default_generate_offline_map_parameters(None)
    folder = task.generate_offline_map(parameters, tmp_path / "readonly").run().offline_map.folder

    open_map(dock, folder)

    assert "(download only)" in dock.contentTree.topLevelItem(0).text(0)
    assert "Download only" in dock.capabilitiesLabel.text()
    assert dock.directionCombo.currentText() == "Download only"


def test_edits_in_a_download_only_geodatabase_are_not_said_to_wait_for_upload(
    dock, reference_server, tmp_path
):
    from tests.test_sync import Local

    task = OfflineMapTask(
        service_urls=[reference_server.service_url(seed.READONLY_SERVICE)], client=ArcGISClient()
    )
    parameters = task.create_default_generate_offline_map_parameters(None)
    offline_map = task.generate_offline_map(parameters, tmp_path / "readonly").run().offline_map
    local = Local(offline_map)
    local.update(POINTS, next(iter(local.rows(POINTS))), name="Changed here")

    open_map(dock, offline_map.folder)

    assert "1 pending" in dock.contentTree.topLevelItem(0).text(1)
    text = dock.capabilitiesLabel.text()
    assert "No local edits are waiting." in text
    assert "Local edits are waiting" not in text
    # Checking for updates applies the same rule: nothing to upload.
    click(dock.checkUpdatesButton)
    wait_until_idle(dock)
    assert dock.statusLabel.text() == "Checked for updates."
    assert "Upload: nothing to transfer." in dock.capabilitiesLabel.text()


def test_features_added_and_moved_in_qgis_reach_the_service(dock, demo_map, reference_server):
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY

    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    moved = _by_name(points, seed.POINT_NAMES[5])
    x, y = seed.mercator(seed.BASE_LON + 0.001, seed.BASE_LAT + 0.0005)

    assert points.startEditing()
    new = QgsFeature(points.fields())
    new["name"] = "Added in QGIS"
    new["category"] = 2
    new.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
    assert points.addFeature(new)
    assert points.changeGeometry(moved.id(), QgsGeometry.fromPointXY(QgsPointXY(x + 50, y + 50)))
    assert points.commitChanges(), points.commitErrors()

    sync(dock)

    assert not dock.last_result.has_errors, dock.result_rows()
    server = {f["attributes"]["name"]: f for f in reference_server.query_all(seed.DEMO_SERVICE, 0)}
    added = server["Added in QGIS"]
    assert added["attributes"]["GlobalID"]  # minted locally, kept by the server
    assert added["geometry"]["x"] == pytest.approx(x, abs=0.01)
    assert added["attributes"]["category"] == 2
    assert server[seed.POINT_NAMES[5]]["geometry"]["x"] == pytest.approx(x + 50, abs=0.01)
    assert _by_name(points, "Added in QGIS")["GlobalID"] == added["attributes"]["GlobalID"]


def test_an_attachment_added_through_the_related_table_reaches_the_service(
    dock, demo_map, reference_server
):
    from qgis.core import QgsFeature
    from qgis.PyQt.QtCore import QByteArray

    open_map(dock, demo_map)
    add_to_map(dock)
    attachments = _attachments(dock, POINTS)
    parent = _by_name(_layer(dock, POINTS), seed.POINT_NAMES[6])
    data = b"\x89PNG\r\n\x1a\n offline photo"

    assert attachments.startEditing()
    row = QgsFeature(attachments.fields())
    row["REL_GLOBALID"] = parent["GlobalID"]
    row["ATT_NAME"] = "field_photo.png"
    row["CONTENT_TYPE"] = "image/png"
    row["DATA_SIZE"] = len(data)
    row["DATA"] = QByteArray(data)
    assert attachments.addFeature(row)
    assert attachments.commitChanges(), attachments.commitErrors()

    sync(dock)

    assert not dock.last_result.has_errors, dock.result_rows()
    on_server = [
        a
        for a in reference_server.attachments(seed.DEMO_SERVICE, POINTS)
        if a["name"] == "field_photo.png"
    ]
    assert len(on_server) == 1
    assert on_server[0]["parentGlobalId"] == parent["GlobalID"]
    assert on_server[0]["data"] == data


def test_an_unreachable_service_is_a_failed_sync_that_says_why(
    dock, demo_map, reference_server, qgis_iface
):
    from qgis.core import Qgis

    open_map(dock, demo_map)
    reference_server.stop()

    sync(dock)

    rows = _rows(dock)
    assert rows["Points"][4] != ""
    assert rows["Points"][4] == rows["Inspections (table)"][4]
    status = dock.statusLabel.text()
    assert status.startswith("Sync failed: "), status
    assert rows["Points"][4] in status  # why
    assert "Synchronized" not in status
    critical = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert any("Sync failed" in message for message in critical), critical
    assert dock.progressBar.isHidden()


def test_a_scheduled_updates_map_shows_its_updates_and_applies_them(
    dock, reference_server, tmp_path
):
    # An ahead-of-time map whose portal serves update packages (helpers of the sync tests).
    from plugin.core.enums import PreplannedUpdateMode
    from tests.test_rest import ScriptedServer
    from tests.test_sync import ScheduledUpdatesPortal, make_ahead_of_time
    from tests.test_sync import take_offline as core_take_offline

    scripted = ScriptedServer()
    try:
        portal = ScheduledUpdatesPortal(scripted)
        offline_map, generation = make_ahead_of_time(
            core_take_offline(reference_server, tmp_path / "ahead"),
            portal,
            PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES,
        )
        open_map(dock, offline_map.folder)
        add_to_map(dock)
        points = _layer(dock, POINTS)
        global_id = _by_name(points, seed.POINT_NAMES[0])["GlobalID"]
        update = {"attributes": {"GlobalID": global_id, "name": "From an update package"}}
        portal.add_delta(generation + 1, [{"id": 0, "features": {"updates": [update]}}])

        assert "scheduled update packages" in dock.capabilitiesLabel.text()
        assert dock.scheduledUpdatesCheck.isEnabled()
        assert dock.scheduledUpdatesCheck.isChecked()
        assert dock.directionCombo.currentText() == "Download only"
        click(dock.checkUpdatesButton)
        wait_until_idle(dock)
        assert "Download: updates are available." in dock.capabilitiesLabel.text()
        assert "Scheduled updates to download" in dock.capabilitiesLabel.text()

        sync(dock)

        assert not dock.last_result.has_errors, dock.result_rows()
        assert _by_name(points, "From an update package")["GlobalID"] == global_id
    finally:
        scripted.stop()


def test_a_preplanned_map_area_is_downloaded_as_a_task_in_the_chosen_update_mode(
    dock, reference_server, tmp_path
):
    from plugin.core.enums import PreplannedUpdateMode
    from plugin.take_offline_request import update_mode_labels

    reference_server.prepare_map_areas()
    mode = PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES

    def west_half(dialog):
        click(dialog.preplannedRadio)
        click(dialog.listAreasButton)
        assert wait_for_task(dialog.task, WAIT)
        west = next(
            dialog.areasList.item(row)
            for row in range(dialog.areasList.count())
            if dialog.areasList.item(row).text().startswith("West half")
        )
        click_item(dialog.areasList, west)
        choose(dialog.updateModeCombo, dict(update_mode_labels())[mode])
        # The dialog stays on the screen with the area list shown: its buttons can be reached.
        screen = dialog.screen().availableGeometry()
        assert dialog.frameGeometry().height() <= screen.height()

    take_offline(
        dock, reference_server.portal_url, seed.DEMO_WEBMAP_ID, tmp_path / "west", more=west_half
    )

    assert dock.offline_map is not None, dock.statusLabel.text()
    assert dock.offline_map.folder == (tmp_path / "west").absolute()
    assert dock.offline_map.update_mode == mode
    assert "scheduled update packages" in dock.capabilitiesLabel.text()
    assert dock.scheduledUpdatesCheck.isEnabled()
    add_to_map(dock)
    # The west half of the demo area holds some of the points, not all.
    assert 0 < _layer(dock, POINTS).featureCount() < seed.DEMO_COUNTS[POINTS]


def _replica_ids(server):
    client = ArcGISClient()
    return {
        str(r.get("replicaID")).strip("{}").lower()
        for r in client.replicas(server.service_url(seed.DEMO_SERVICE))
    }


def _own_replica_id(folder):
    from plugin.core.offline_map import OfflineMap

    offline_map = OfflineMap.open(folder)
    with offline_map.open_geodatabase(offline_map.geodatabases[0]) as geodatabase:
        return str(geodatabase.replica.replica_id).strip("{}").lower()


def test_remove_unregisters_the_replica_deletes_the_map_and_its_layers(
    dock, demo_map, reference_server
):
    replica_id = _own_replica_id(demo_map)
    assert replica_id in _replica_ids(reference_server)
    open_map(dock, demo_map)
    add_to_map(dock)
    seen = {}

    def look_and_remove(dialog):
        seen["pending"] = dialog.pendingGroup.isVisible()
        seen["details"] = dialog.detailsLabel.text()
        confirm_removal(dialog)

    remove(dock, look_and_remove)

    assert not seen["pending"]
    assert "5 layers" in seen["details"]
    assert not demo_map.exists()
    assert replica_id not in _replica_ids(reference_server)
    assert offline_map_layers(demo_map) == []
    assert dock.offline_map is None
    assert str(demo_map) not in dock.recent_maps()
    assert not dock.removeButton.isEnabled()


def test_cancel_in_the_remove_dialog_keeps_everything(dock, demo_map, reference_server):
    replica_id = _own_replica_id(demo_map)
    open_map(dock, demo_map)
    add_to_map(dock)

    remove(dock, press("Cancel"))

    assert demo_map.exists() and dock.offline_map is not None
    assert replica_id in _replica_ids(reference_server)
    assert len(offline_map_layers(demo_map)) == 5


def test_pending_edits_are_named_and_must_be_confirmed_before_removal(
    dock, demo_map, reference_server
):
    from osgeo import ogr

    source = ogr.Open(str(next(demo_map.glob("*.gpkg"))), update=1)
    layer = source.GetLayerByName("Points")
    feature = layer.GetNextFeature()
    feature.SetField("notes", "never uploaded")
    layer.SetFeature(feature)
    source = None
    open_map(dock, demo_map)
    seen = {}

    def look_then_cancel(dialog):
        seen["lines"] = [
            dialog.pendingList.item(r).text() for r in range(dialog.pendingList.count())
        ]
        seen["enabled_before"] = dialog.buttonBox.button(OK).isEnabled()
        click(dialog.discardCheck)
        seen["enabled_after"] = dialog.buttonBox.button(OK).isEnabled()
        click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Cancel))

    remove(dock, look_then_cancel)

    assert len(seen["lines"]) == 1 and seen["lines"][0].startswith("Points: 1 edit ")
    assert not seen["enabled_before"] and seen["enabled_after"]
    assert demo_map.exists() and dock.offline_map is not None

    remove(dock, confirm_removal)

    assert not demo_map.exists()
    assert dock.last_removal.discarded_edits == 1


def test_an_unreachable_service_offers_to_remove_the_local_copy_anyway(
    dock, demo_map, reference_server
):
    from plugin.core.removal import UnregisterError

    open_map(dock, demo_map)
    add_to_map(dock)
    # Connection refused is final: no need to wait through the client's retry pauses.
    dock._client = lambda: ArcGISClient(retries=1, backoff=0.01)
    reference_server.stop()
    asked = []

    def no(box):
        asked.append(box.text())
        click(box.button(QMessageBox.StandardButton.No))

    with answering(no, QMessageBox):
        remove(dock, confirm_removal)

    # Declined: nothing is deleted and the map comes back into the project.
    assert isinstance(dock.last_error, UnregisterError)
    assert len(asked) == 1 and "cannot be reached" in asked[0]
    assert demo_map.exists() and dock.offline_map is not None
    assert len(offline_map_layers(demo_map)) == 5

    with answering(press("Yes"), QMessageBox):
        remove(dock, confirm_removal)

    assert not demo_map.exists()
    assert dock.offline_map is None
    assert offline_map_layers(demo_map) == []
    assert any("still registered" in w for w in dock.last_removal.warnings)


def test_forms_are_field_ready_and_attachment_tables_stay_out_of_the_layer_list(
    dock, demo_map, qgis_iface
):
    from qgis.core import QgsTrackedVectorLayerTools
    from qgis.gui import QgsAttributeEditorContext, QgsAttributeForm, QgsGui
    from qgis.PyQt import sip
    from qgis.PyQt.QtWidgets import QGroupBox, QLabel

    open_map(dock, demo_map)
    add_to_map(dock)

    top = QgsProject.instance().layerTreeRoot().findGroup(dock.offline_map.title)
    # The demo web map's basemap goes offline with it, in a sub-group under the layers.
    assert [child.name() for child in top.children()] == [
        "Points",
        "Lines",
        "Polygons",
        "Inspections",
        "Attachments",
        "Basemap",
    ]
    attachments_group = top.findGroup("Attachments")
    assert not attachments_group.isExpanded()
    assert [node.name() for node in attachments_group.children()] == ["Points attachments"]

    points = _layer(dock, POINTS)
    # What the QGIS application gives every form: its widgets and its layer tools.
    QgsGui.editorWidgetRegistry().initEditors(qgis_iface.mapCanvas())
    tools = QgsTrackedVectorLayerTools()
    context = QgsAttributeEditorContext()
    context.setVectorLayerTools(tools)
    form = QgsAttributeForm(points, _by_name(points, seed.POINT_NAMES[0]), context)
    form.resize(700, 1200)
    form.show()
    try:
        labels = {label.text() for label in form.findChildren(QLabel) if label.isVisible()}
        titles = [box.title() for box in form.findChildren(QGroupBox)]
        # Aliases are the labels; relations carry the related layer's title, not the raw
        # relationship name; the system fields sit in the "Record" group, read-only.
        assert "Height (m)" in labels
        assert "Inspections" in titles and "Attachments" in titles
        assert not any("Points_Inspections" in text for text in labels | set(titles))
        record = next(box for box in form.findChildren(QGroupBox) if box.title() == "Record")
        record_labels = {label.text() for label in record.findChildren(QLabel)}
        assert {"OBJECTID", "GlobalID", "created_user", "last_edited_date"} <= record_labels
        assert "Height (m)" not in record_labels
        config = points.editFormConfig()
        for name in ("OBJECTID", "GlobalID", "created_user"):
            assert config.readOnly(points.fields().lookupField(name)), name
        assert not config.readOnly(points.fields().lookupField("height"))
    finally:
        form.hide()
        sip.delete(form)  # before the layer tools it uses
        del tools


def _cut(widget, text: str, room: int) -> bool:
    return widget.fontMetrics().horizontalAdvance(text) > room


def test_at_the_panels_default_width_no_text_is_cut(dock, demo_map, reference_server):
    from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QPushButton

    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    feature = _by_name(points, seed.POINT_NAMES[3])
    _edit(points, seed.POINT_NAMES[3], "status", "damaged")
    reference_server.apply_edits(seed.DEMO_SERVICE, POINTS, deletes=[feature["GlobalID"]])
    sync(dock)
    # The width QGIS gives a newly docked panel: its size hint, at most what it needs.
    dock.resize(dock.minimumSizeHint().width(), dock.sizeHint().height())
    QgsApplication.processEvents()

    cut = [
        w.text()
        for w in dock.findChildren(QPushButton) + dock.findChildren(QCheckBox)
        if w.isVisible() and _cut(w, w.text(), w.width() - 8)
    ]
    cut += [
        c.currentText()
        for c in dock.findChildren(QComboBox)
        if c.isVisible() and _cut(c, c.currentText(), c.width() - 24)
    ]
    assert cut == []
    table = dock.resultsTable
    header = table.horizontalHeader()
    sizes = [header.sectionSize(c) for c in range(table.columnCount())]
    assert sum(sizes) <= table.viewport().width(), (sizes, table.viewport().width())
    for column in range(table.columnCount()):
        label = table.horizontalHeaderItem(column).text()
        assert not _cut(header, label, header.sectionSize(column)), label
        for row in range(table.rowCount()):
            if table.columnSpan(row, 0) == 1:
                text = table.item(row, column).text()
                assert not _cut(table, text, header.sectionSize(column)), text
    # The conflict's reason: on its own row under Points, across the table, wrapped.
    assert table.item(0, 0).text() == "Points"
    assert table.columnSpan(1, 0) == table.columnCount()
    assert table.item(1, 0).text()
    assert table.rowHeight(1) > table.rowHeight(0)


def test_the_tree_shows_when_each_geodatabase_last_synced_and_what_it_brought(
    dock, demo_map, reference_server
):
    open_map(dock, demo_map)
    top = dock.contentTree.topLevelItem(0)
    assert top.text(2) == "never"
    add_to_map(dock)
    _edit(_layer(dock, POINTS), seed.POINT_NAMES[0], "visits", 3)
    global_id = _by_name(_layer(dock, POINTS), seed.POINT_NAMES[1])["GlobalID"]
    reference_server.apply_edits(
        seed.DEMO_SERVICE, POINTS, updates=[{"GlobalID": global_id, "visits": 8}]
    )

    sync(dock)

    top = dock.contentTree.topLevelItem(0)
    assert top.text(2) not in ("", "never")
    assert "1 up, 1 down" in top.toolTip(2)
    points = next(top.child(i) for i in range(top.childCount()) if top.child(i).text(0) == "Points")
    lines = next(top.child(i) for i in range(top.childCount()) if top.child(i).text(0) == "Lines")
    assert points.text(2) == "↑1 ↓1"
    assert lines.text(2) == "–"


def test_the_maps_area_can_be_outlined_on_the_canvas(dock, reference_server, qgis_iface, tmp_path):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    x, y = seed.mercator(seed.BASE_LON, seed.BASE_LAT)
    canvas.setExtent(QgsRectangle(x - 500, y - 500, x + 500, y + 500))
    asked = canvas.extent()
    take_offline(
        dock,
        reference_server.portal_url,
        seed.DEMO_WEBMAP_ID,
        tmp_path / "area",
        more=lambda dialog: click(dialog.canvasRadio),
    )
    assert dock.offline_map is not None, dock.statusLabel.text()
    assert dock.area_outline() is None

    click(dock.areaCheck)

    outline = dock.area_outline()
    assert outline is not None
    box = outline.asGeometry().boundingBox()
    assert box.xMinimum() == pytest.approx(asked.xMinimum(), abs=1)
    assert box.yMaximum() == pytest.approx(asked.yMaximum(), abs=1)

    click(dock.areaCheck)
    assert dock.area_outline() is None


def test_related_rows_and_attachments_are_listed_by_name(dock, demo_map):
    from qgis.core import QgsExpressionContext, QgsExpressionContextUtils

    open_map(dock, demo_map)
    add_to_map(dock)

    def shown(layer, feature):
        context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
        context.setFeature(feature)
        return QgsExpression(layer.displayExpression()).evaluate(context)

    points = _layer(dock, POINTS)
    feature = _by_name(points, seed.POINT_NAMES[0])
    assert shown(points, feature) == seed.POINT_NAMES[0]
    attachments = _attachments(dock, POINTS)
    photo = next(a for a in attachments.getFeatures() if a["REL_GLOBALID"] == feature["GlobalID"])
    assert shown(attachments, photo).startswith("photo_0.png (image/png, ")
    assert shown(attachments, photo).endswith(" KB)")
    names = [attachments.attributeDisplayName(i) for i in range(attachments.fields().count())]
    assert {"Name", "Type", "Size (bytes)", "File"} <= set(names)
