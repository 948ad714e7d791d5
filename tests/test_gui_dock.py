"""The dock panel driven like a user, against the reference feature service.

A real offline map is made by the take-offline flow (through the dock's own task), opened in
the panel, added to the project, edited with QGIS's editing API, synchronized through QGIS's
task manager, and its results and conflicts are read back from the panel's widgets.
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

from plugin.core.rest import ArcGISClient
from plugin.core.take_offline import OfflineMapTask
from plugin.gui.dock import OfflineMapSyncDock
from plugin.layers import offline_map_layers
from plugin.take_offline_request import TakeOfflineRequest
from plugin.task import wait_for_task
from tests.featureservice import seed
from tests.test_gui_auth import auth_manager as _auth_manager_fixture
from tests.test_layers import take_demo_web_map_offline

POINTS, LINES, POLYGONS, INSPECTIONS = 0, 1, 2, 3
auth_manager = _auth_manager_fixture  # the QGIS auth configurations fixture, shared
WAIT = 60


@pytest.fixture
def demo_map(reference_server, tmp_path):
    """The demo web map taken offline by the core (what the dock's task does, faster)."""
    return take_demo_web_map_offline(reference_server, tmp_path / "demo_map").folder


@pytest.fixture
def dock(qgis_iface, qgis_new_project):
    panel = OfflineMapSyncDock(qgis_iface)
    yield panel
    if panel.task is not None:
        panel.task.cancel()
        wait_for_task(panel.task, WAIT)
    QgsApplication.taskManager().cancelAll()
    QgsProject.instance().clear()
    panel.deleteLater()


def _layer(dock, layer_id):
    return next(
        layer
        for layer in offline_map_layers(dock.offline_map.folder)
        if layer.customProperty("offline_map_sync/layer_id") == layer_id
        and not layer.customProperty("offline_map_sync/attachments_of")
        and layer.customProperty("offline_map_sync/attachments_of") != 0
    )


def _by_name(layer, name):
    request = QgsFeatureRequest().setFilterExpression(
        QgsExpression.createFieldEqualityExpression("name", name)
    )
    return next(layer.getFeatures(request))


def _sync_and_wait(dock):
    task = dock.sync()
    assert task is not None, dock.statusLabel.text()
    assert wait_for_task(task, WAIT), "the sync did not finish in time"
    return task


def test_take_offline_runs_as_a_task_and_opens_the_new_map(dock, reference_server, tmp_path):
    request = TakeOfflineRequest(
        folder=tmp_path / "new_map",
        portal_url=reference_server.portal_url,
        webmap_item_id=seed.DEMO_WEBMAP_ID,
    )
    task = dock.start_take_offline(request)
    assert task is not None
    assert wait_for_task(task, WAIT)

    assert task.succeeded, dock.statusLabel.text()
    assert dock.offline_map is not None
    assert dock.offline_map.folder == (tmp_path / "new_map").absolute()
    assert dock.contentTree.topLevelItemCount() == 1
    assert dock.contentTree.topLevelItem(0).childCount() == 4
    assert dock.recent_maps()[0] == str(dock.offline_map.folder)


def test_open_map_shows_its_geodatabases_layers_and_capabilities_in_words(dock, demo_map):
    assert dock.open_map(demo_map)

    top = dock.contentTree.topLevelItem(0)
    children = sorted(top.child(i).text(0) for i in range(top.childCount()))
    assert children == sorted(["Points", "Lines", "Polygons", "Inspections (table)"])
    assert dock.pending_text(top.data(0, dock_role())[0]) == "0 pending"
    assert dock.pending_text(top.data(0, dock_role())[0], POINTS) == "0"
    text = dock.capabilitiesLabel.text()
    assert "synchronizes with its feature services" in text
    assert "No local edits are waiting" in text
    assert dock.syncButton.isEnabled()
    assert str(demo_map) == dock.recentCombo.currentData()


def test_opening_a_folder_that_is_not_an_offline_map_says_so(dock, tmp_path):
    assert not dock.open_map(tmp_path)
    assert "not an offline map" in dock.statusLabel.text()
    assert dock.offline_map is None
    assert not dock.syncButton.isEnabled()


def test_add_to_map_loads_valid_styled_layers_with_relations(dock, demo_map):
    dock.open_map(demo_map)
    loaded = dock.add_to_map()

    assert len(loaded) == 1
    made = loaded[0]
    assert sorted(made.layers) == [POINTS, LINES, POLYGONS, INSPECTIONS]
    for layer_id, layer in made.layers.items():
        assert layer.isValid(), layer.name()
        assert layer.featureCount() == seed.DEMO_COUNTS[layer_id]
    points = made.layers[POINTS]
    assert isinstance(points.renderer(), QgsCategorizedSymbolRenderer)
    assert points.renderer().classAttribute() == "category"
    assert isinstance(made.layers[LINES].renderer(), QgsSingleSymbolRenderer)
    assert made.styled[POINTS] and made.styled[LINES] and made.styled[POLYGONS]
    assert points.labelsEnabled()
    assert points.labeling().rootRule().children()[0].settings().fieldName == "name"
    assert points.attributeAlias(points.fields().lookupField("height")) == "Height (m)"
    assert points.editorWidgetSetup(points.fields().lookupField("category")).type() == "ValueMap"

    relations = QgsProject.instance().relationManager().referencedRelations(points)
    referencing = sorted(r.referencingLayer().name() for r in relations)
    assert referencing == sorted(["Inspections", "Points attachments"])
    assert all(r.isValid() for r in relations)
    assert made.attachment_layers[POINTS].featureCount() > 0

    group = QgsProject.instance().layerTreeRoot().findGroup(made.group.name())
    assert group is not None
    # Adding again replaces, never duplicates.
    again = dock.add_to_map()
    assert len(offline_map_layers(demo_map)) == 5
    assert len(QgsProject.instance().relationManager().relations()) == 2
    assert len(QgsProject.instance().layerTreeRoot().findGroups()) == 1
    assert again[0].layers[POINTS].isValid()


def test_an_edit_made_with_qgis_editing_reaches_the_service(dock, demo_map, reference_server):
    dock.open_map(demo_map)
    dock.add_to_map()
    points = _layer(dock, POINTS)
    name = seed.POINT_NAMES[0]
    feature = _by_name(points, name)

    assert points.startEditing()
    assert points.changeAttributeValue(
        feature.id(), points.fields().lookupField("notes"), "edited in QGIS"
    )
    assert points.commitChanges()
    # The panel follows saved edits by itself.
    assert "1 changed" in dock.pending_text(dock.offline_map.geodatabases[0].file, POINTS)
    assert "Local edits are waiting" in dock.capabilitiesLabel.text()

    task = _sync_and_wait(dock)

    assert task.succeeded, dock.statusLabel.text()
    rows = {row[0]: row for row in dock.result_rows()}
    assert rows["Points"][1] == "1"  # one row up
    assert rows["Points"][3] == "0"  # no edit errors
    server_rows = {
        f["attributes"]["name"]: f["attributes"]
        for f in reference_server.query_all(seed.DEMO_SERVICE, POINTS)
    }
    assert server_rows[name]["notes"] == "edited in QGIS"
    assert dock.pending_text(dock.offline_map.geodatabases[0].file, POINTS) == "0"


def test_server_changes_come_down_and_the_layer_shows_them(dock, demo_map, reference_server):
    dock.open_map(demo_map)
    dock.add_to_map()
    points = _layer(dock, POINTS)
    name = seed.POINT_NAMES[1]
    global_id = _by_name(points, name)["GlobalID"]
    reference_server.apply_edits(
        seed.DEMO_SERVICE, POINTS, updates=[{"GlobalID": global_id, "visits": 4242}]
    )

    task = _sync_and_wait(dock)

    assert task.succeeded
    assert {row[0]: row for row in dock.result_rows()}["Points"][2] == "1"
    assert _by_name(points, name)["visits"] == 4242


def test_unsaved_edits_stop_the_sync_unless_the_user_saves_them(dock, demo_map, reference_server):
    dock.open_map(demo_map)
    dock.add_to_map()
    points = _layer(dock, POINTS)
    feature = _by_name(points, seed.POINT_NAMES[2])
    points.startEditing()
    points.changeAttributeValue(feature.id(), points.fields().lookupField("visits"), 77)

    asked = []
    dock.confirm_save_edits = lambda layers: (
        asked.append([layer.name() for layer in layers]) or False
    )
    assert dock.sync() is None
    assert asked == [["Points"]]
    assert "did not start" in dock.statusLabel.text()
    assert points.isModified()

    dock.confirm_save_edits = lambda layers: True
    task = _sync_and_wait(dock)
    assert task.succeeded
    assert not points.isModified()
    server_rows = {
        f["attributes"]["name"]: f["attributes"]
        for f in reference_server.query_all(seed.DEMO_SERVICE, POINTS)
    }
    assert server_rows[seed.POINT_NAMES[2]]["visits"] == 77
    points.rollBack()


def test_a_conflict_shows_in_the_results_and_the_log_and_can_be_restored(
    dock, demo_map, reference_server
):
    dock.open_map(demo_map)
    dock.add_to_map()
    points = _layer(dock, POINTS)
    name = seed.POINT_NAMES[3]
    feature = _by_name(points, name)
    points.startEditing()
    points.changeAttributeValue(feature.id(), points.fields().lookupField("status"), "damaged")
    points.commitChanges()
    reference_server.apply_edits(seed.DEMO_SERVICE, POINTS, deletes=[feature["GlobalID"]])

    task = _sync_and_wait(dock)

    assert task.succeeded
    rows = {row[0]: row for row in dock.result_rows()}
    assert rows["Points"][4] == "1"  # one conflict
    assert dock.conflictsButton.text() == "Conflict log (1)…"
    dialog = dock.conflict_dialog()
    assert dialog.row_count() == 1
    assert dialog.conflictTable.item(0, 1).text() == "Points"
    assert dialog.conflictTable.item(0, 2).text() == feature["GlobalID"]
    assert "deleted" in dialog.conflictTable.item(0, 3).text()

    dialog.conflictTable.selectRow(0)
    assert dialog.restore_selected()
    assert dialog.row_count() == 0
    assert dock.conflictsButton.text() == "Conflict log…"
    assert dock.pending_text(dock.offline_map.geodatabases[0].file, POINTS) == "1 added"


def test_dismissing_a_conflict_keeps_the_server_version(dock, demo_map, reference_server):
    dock.open_map(demo_map)
    dock.add_to_map()
    points = _layer(dock, POINTS)
    feature = _by_name(points, seed.POINT_NAMES[4])
    points.startEditing()
    points.changeAttributeValue(feature.id(), points.fields().lookupField("visits"), 1)
    points.commitChanges()
    reference_server.apply_edits(seed.DEMO_SERVICE, POINTS, deletes=[feature["GlobalID"]])
    _sync_and_wait(dock)
    count = points.featureCount()

    dialog = dock.conflict_dialog()
    dialog.conflictTable.selectRow(0)
    assert dialog.dismiss_selected()

    assert dialog.row_count() == 0
    assert dock.pending_text(dock.offline_map.geodatabases[0].file, POINTS) == "0"
    assert points.featureCount() == count == seed.DEMO_COUNTS[POINTS] - 1


def test_cancelling_a_sync_stops_it_and_says_so(dock, demo_map, reference_server):
    dock.open_map(demo_map)
    # The server keeps the sync job "in progress" for a long time; the user cancels it.
    reference_server.inject_fault("synchronizeReplica", "slow_job", polls=10_000)
    reference_server.inject_fault("synchronizeReplica", "delay", seconds=3)
    messages = []
    task = dock.sync()
    assert task is not None
    task.progress_message.connect(lambda percent, message: messages.append(message))
    assert dock.cancelButton.isEnabled()
    assert not dock.syncButton.isEnabled()

    dock.cancel()
    assert wait_for_task(task, WAIT)

    assert task.cancelled
    assert dock.statusLabel.text() == "Cancelled."
    assert dock.task is None
    assert dock.syncButton.isEnabled()


def test_check_for_updates_tells_what_is_waiting(dock, demo_map):
    dock.open_map(demo_map)
    dock.add_to_map()
    points = _layer(dock, POINTS)
    points.startEditing()
    feature = _by_name(points, seed.POINT_NAMES[0])
    points.changeAttributeValue(feature.id(), points.fields().lookupField("visits"), 5)
    points.commitChanges()

    task = dock.check_for_updates()
    assert task is not None
    assert wait_for_task(task, WAIT)

    text = dock.capabilitiesLabel.text()
    assert "Upload: updates are available." in text
    assert "Download: cannot be known without synchronizing." in text


def dock_role():
    from plugin.gui.dock import ROLE_KEY

    return ROLE_KEY


def take_secured_map_offline(dock, server, auth_manager, folder, password="alice-secret"):
    """Take the demo web map offline through the dock's own task, signed in as alice by a QGIS
    Basic auth configuration with ``password``; the finished task and the configuration id."""
    config_id = auth_manager("Basic", username="alice", password=password)
    request = TakeOfflineRequest(
        folder=folder,
        portal_url=server.portal_url,
        webmap_item_id=seed.DEMO_WEBMAP_ID,
        authcfg=config_id,
    )
    task = dock.start_take_offline(request)
    assert wait_for_task(task, WAIT)
    return task, config_id


def test_a_secured_service_is_used_through_a_qgis_auth_configuration(
    dock, secured_reference_server, auth_manager, tmp_path
):
    server = secured_reference_server
    task, config_id = take_secured_map_offline(dock, server, auth_manager, tmp_path / "secured_map")
    assert task.succeeded, dock.statusLabel.text()
    # The map remembers which configuration it uses (its id only, never the password).
    assert dock.authSelect.configId() == config_id

    dock.add_to_map()
    points = _layer(dock, POINTS)
    points.startEditing()
    feature = _by_name(points, seed.POINT_NAMES[0])
    points.changeAttributeValue(feature.id(), points.fields().lookupField("visits"), 12)
    points.commitChanges()
    task = _sync_and_wait(dock)

    assert task.succeeded, dock.statusLabel.text()
    assert "alice-secret" not in dock.statusLabel.text()
    rows = {
        f["attributes"]["name"]: f["attributes"] for f in server.query_all(seed.DEMO_SERVICE, 0)
    }
    assert rows[seed.POINT_NAMES[0]]["visits"] == 12


def test_wrong_credentials_fail_with_a_message_and_no_secret(
    dock, secured_reference_server, auth_manager, tmp_path
):
    task, _ = take_secured_map_offline(
        dock,
        secured_reference_server,
        auth_manager,
        tmp_path / "secured_map",
        password="wrong-password",
    )

    assert not task.succeeded
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
        panel.open_map(demo_map)
        task = panel.sync()
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

    assert dock.open_map(folder)

    assert "(download only)" in dock.contentTree.topLevelItem(0).text(0)
    assert "Download only" in dock.capabilitiesLabel.text()
    assert dock.directionCombo.currentText() == "Download server changes only"


def test_features_added_and_moved_in_qgis_reach_the_service(dock, demo_map, reference_server):
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY

    dock.open_map(demo_map)
    dock.add_to_map()
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

    task = _sync_and_wait(dock)

    assert task.succeeded, dock.statusLabel.text()
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

    dock.open_map(demo_map)
    loaded = dock.add_to_map()
    attachments = loaded[0].attachment_layers[POINTS]
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

    task = _sync_and_wait(dock)

    assert task.succeeded, dock.statusLabel.text()
    on_server = [
        a
        for a in reference_server.attachments(seed.DEMO_SERVICE, POINTS)
        if a["name"] == "field_photo.png"
    ]
    assert len(on_server) == 1
    assert on_server[0]["parentGlobalId"] == parent["GlobalID"]
    assert on_server[0]["data"] == data


def test_an_unreachable_service_is_reported_per_layer_and_in_the_message_bar(
    dock, demo_map, reference_server, qgis_iface
):
    from qgis.core import Qgis

    dock.open_map(demo_map)
    qgis_iface.messageBar().clear_messages()
    reference_server.stop()

    task = _sync_and_wait(dock)

    assert task.succeeded  # the job ran; the geodatabase failed and says why
    rows = {row[0]: row for row in dock.result_rows()}
    assert rows["Points"][5] != ""
    assert rows["Points"][5] == rows["Inspections (table)"][5]
    assert dock.last_result.has_errors
    warnings = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Warning)
    assert any("Synchronized with errors" in message for message in warnings)


def test_a_scheduled_updates_map_shows_its_updates_and_applies_them(
    dock, reference_server, tmp_path
):
    # An ahead-of-time map whose portal serves update packages (helpers of the sync tests).
    from plugin.core.enums import PreplannedUpdateMode
    from tests.test_rest import ScriptedServer
    from tests.test_sync import ScheduledUpdatesPortal, make_ahead_of_time, take_offline

    scripted = ScriptedServer()
    try:
        portal = ScheduledUpdatesPortal(scripted)
        offline_map, generation = make_ahead_of_time(
            take_offline(reference_server, tmp_path / "ahead"),
            portal,
            PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES,
        )
        assert dock.open_map(offline_map.folder)
        dock.add_to_map()
        points = _layer(dock, POINTS)
        global_id = _by_name(points, seed.POINT_NAMES[0])["GlobalID"]
        update = {"attributes": {"GlobalID": global_id, "name": "From an update package"}}
        portal.add_delta(generation + 1, [{"id": 0, "features": {"updates": [update]}}])

        assert "scheduled update packages" in dock.capabilitiesLabel.text()
        assert dock.scheduledUpdatesCheck.isEnabled()
        assert dock.scheduledUpdatesCheck.isChecked()
        assert dock.directionCombo.currentText() == "Download server changes only"
        check = dock.check_for_updates()
        assert wait_for_task(check, WAIT)
        assert "Download: updates are available." in dock.capabilitiesLabel.text()
        assert "Scheduled updates to download" in dock.capabilitiesLabel.text()

        task = _sync_and_wait(dock)

        assert task.succeeded, dock.statusLabel.text()
        assert _by_name(points, "From an update package")["GlobalID"] == global_id
    finally:
        scripted.stop()


def test_a_preplanned_map_area_is_downloaded_as_a_task_in_the_chosen_update_mode(
    dock, reference_server, tmp_path
):
    from plugin.core.enums import PreplannedUpdateMode
    from plugin.take_offline_request import list_map_areas

    reference_server.prepare_map_areas()
    request = TakeOfflineRequest(
        folder=tmp_path / "west",
        portal_url=reference_server.portal_url,
        webmap_item_id=seed.DEMO_WEBMAP_ID,
        update_mode=PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES,
    )
    request.map_area = next(a for a in list_map_areas(request) if a.title == "West half")

    task = dock.start_take_offline(request)
    assert task is not None
    assert "West half" in dock.statusLabel.text()
    assert wait_for_task(task, WAIT)

    assert task.succeeded, dock.statusLabel.text()
    assert dock.offline_map.folder == (tmp_path / "west").absolute()
    assert dock.offline_map.update_mode == PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES
    assert dock.offline_map.source.map_area_item_id == request.map_area.item_id
    assert "scheduled update packages" in dock.capabilitiesLabel.text()
    assert dock.scheduledUpdatesCheck.isEnabled()
    loaded = dock.add_to_map()
    points = loaded[0].layers[POINTS]
    # The west half of the demo area holds some of the points, not all.
    assert 0 < points.featureCount() < seed.DEMO_COUNTS[POINTS]


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


def _remove_and_wait(dock):
    task = dock.remove_map()
    assert task is not None, dock.statusLabel.text()
    assert wait_for_task(task, WAIT), "the removal did not finish in time"
    # A retry (remove locally anyway) starts a second task from the first one's end.
    if dock.task is not None:
        assert wait_for_task(dock.task, WAIT)
    return task


def test_remove_unregisters_the_replica_deletes_the_map_and_its_layers(
    dock, demo_map, reference_server
):
    from plugin.core.removal import RemovalParameters

    replica_id = _own_replica_id(demo_map)
    assert replica_id in _replica_ids(reference_server)
    dock.open_map(demo_map)
    dock.add_to_map()
    asked = []
    dock.confirm_removal = lambda plan, layers: asked.append((plan, layers)) or RemovalParameters()

    task = _remove_and_wait(dock)

    assert task.succeeded, dock.statusLabel.text()
    plan, layers = asked[0]
    assert plan.pending_total == 0 and len(plan.replicas) == 1
    assert len(layers) == 5
    assert not demo_map.exists()
    assert replica_id not in _replica_ids(reference_server)
    assert offline_map_layers(demo_map) == []
    assert dock.offline_map is None
    assert str(demo_map) not in dock.recent_maps()
    assert not dock.removeButton.isEnabled()


def test_pending_edits_are_named_and_must_be_confirmed_before_removal(
    dock, demo_map, reference_server
):
    from osgeo import ogr
    from qgis.PyQt.QtWidgets import QDialogButtonBox

    from plugin.gui.remove_dialog import RemoveDialog

    source = ogr.Open(str(next(demo_map.glob("*.gpkg"))), update=1)
    layer = source.GetLayerByName("Points")
    feature = layer.GetNextFeature()
    feature.SetField("notes", "never uploaded")
    layer.SetFeature(feature)
    source = None
    dock.open_map(demo_map)
    shown = []

    def cancel(plan, layers):
        dialog = RemoveDialog(plan, len(layers))
        shown.append(
            (
                dialog.pending_lines(),
                dialog.buttonBox.button(QDialogButtonBox.StandardButton.Ok).isEnabled(),
            )
        )
        dialog.discardCheck.setChecked(True)
        shown.append(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Ok).isEnabled())
        shown.append(dialog.parameters())
        return None  # the user cancels

    dock.confirm_removal = cancel
    assert dock.remove_map() is None

    (lines, enabled_before), enabled_after, parameters = shown
    assert len(lines) == 1 and lines[0].startswith("Points: 1 edit ")
    assert not enabled_before and enabled_after
    assert parameters.discard_pending_edits
    assert demo_map.exists() and dock.offline_map is not None

    dock.confirm_removal = lambda plan, layers: parameters
    task = _remove_and_wait(dock)

    assert task.succeeded, dock.statusLabel.text()
    assert not demo_map.exists()
    assert dock.last_removal.discarded_edits == 1


def test_an_unreachable_service_offers_to_remove_the_local_copy_anyway(
    dock, demo_map, reference_server
):
    from plugin.core.removal import RemovalParameters, UnregisterError

    dock.open_map(demo_map)
    dock.add_to_map()
    dock.confirm_removal = lambda plan, layers: RemovalParameters()
    asked = []
    dock.confirm_remove_locally = lambda error: asked.append(error) or False
    # Connection refused is final: no need to wait through the client's retry pauses.
    dock._client = lambda: ArcGISClient(retries=1, backoff=0.01)
    reference_server.stop()

    task = _remove_and_wait(dock)

    # Declined: nothing is deleted and the map comes back into the project.
    assert isinstance(task.error, UnregisterError)
    assert len(asked) == 1
    assert "cannot be reached" in str(asked[0])
    assert demo_map.exists() and dock.offline_map is not None
    assert len(offline_map_layers(demo_map)) == 5

    dock.confirm_remove_locally = lambda error: True
    _remove_and_wait(dock)

    assert not demo_map.exists()
    assert dock.offline_map is None
    assert offline_map_layers(demo_map) == []
    assert any("still registered" in w for w in dock.last_removal.warnings)
