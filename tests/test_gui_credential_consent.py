"""The dock asks before a credential goes to a server it has not been used with, as a user
meets it: a received offline map whose manifest names another server, the panel's Sync
button, and the question answered by clicking its buttons. Judged by what the other server
received and what the panel shows."""

from __future__ import annotations

import json

import pytest
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication, QMessageBox

from plugin.core.offline_map import MANIFEST_NAME
from plugin.task import wait_for_task
from tests.test_gui_auth import auth_manager as _auth_manager_fixture
from tests.test_gui_auth import plain_http_on_loopback as _plain_http_fixture
from tests.test_gui_dock import WAIT
from tests.test_gui_dock import demo_map as _demo_map_fixture
from tests.test_gui_dock import dock as _dock_fixture
from tests.test_rest import ScriptedServer

auth_manager = _auth_manager_fixture  # the fixtures of the dock and auth tests, shared
dock = _dock_fixture
demo_map = _demo_map_fixture
plain_http_on_loopback = _plain_http_fixture
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def hostile():
    server = ScriptedServer()
    yield server
    server.stop()


def answer_the_question(button: QMessageBox.StandardButton) -> dict:
    """Click ``button`` of the next modal question, as a user would; what it said is kept."""
    seen: dict = {}

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        seen["text"] = box.text()
        seen["format"] = box.textFormat()
        QTest.mouseClick(box.button(button), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, click)
    return seen


def tamper(folder, hostile_url: str, *, services: bool) -> None:
    """What a hostile sender does to a map: point its portal (and services) elsewhere."""
    manifest = folder / MANIFEST_NAME
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["source"]["portal_url"] = hostile_url + "/arcgis/sharing/rest"
    if services:
        for entry in data["geodatabases"]:
            entry["service_url"] = hostile_url + "/arcgis/rest/services/Demo/FeatureServer"
    manifest.write_text(json.dumps(data), encoding="utf-8")


def alices_config(auth_manager, server) -> str:
    """Alice's Basic configuration, made for the reference service's site."""
    return auth_manager("Basic", uri=server.root_url, username="alice", password="alice-secret")


def open_with_credential(dock, folder, config_id) -> None:
    assert dock.open_map(folder), dock.statusLabel.text()
    dock.authSelect.setConfigId(config_id)


def click_sync(dock):
    """Click Sync and wait for the task it started (None when it started none)."""
    QTest.mouseClick(dock.syncButton, Qt.MouseButton.LeftButton)
    task = dock.task
    if task is not None:
        assert wait_for_task(task, WAIT)
    return task


def test_no_to_the_question_sends_nothing_and_the_panel_stays_usable(
    dock, demo_map, reference_server, hostile, auth_manager, plain_http_on_loopback
):
    config_id = alices_config(auth_manager, reference_server)
    tamper(demo_map, hostile.url, services=False)
    open_with_credential(dock, demo_map, config_id)

    question = answer_the_question(QMessageBox.StandardButton.No)
    click_sync(dock)

    assert hostile.url.replace("http://", "") in question["text"]
    assert question["format"] == Qt.TextFormat.PlainText
    assert "Not started" in dock.statusLabel.text()
    assert hostile.hits == {}
    assert dock.syncButton.isEnabled()


def test_yes_to_a_map_naming_another_service_is_still_refused_by_its_geodatabase(
    dock, demo_map, reference_server, hostile, auth_manager, plain_http_on_loopback
):
    config_id = alices_config(auth_manager, reference_server)
    tamper(demo_map, hostile.url, services=True)
    open_with_credential(dock, demo_map, config_id)

    answer_the_question(QMessageBox.StandardButton.Yes)
    click_sync(dock)

    assert "manifest names the service" in dock.statusLabel.text()
    assert "alice-secret" not in dock.statusLabel.text()
    assert hostile.hits == {}
    assert dock.syncButton.isEnabled()


def test_a_credential_used_with_its_own_server_is_not_questioned(
    dock, demo_map, reference_server, auth_manager, plain_http_on_loopback
):
    config_id = alices_config(auth_manager, reference_server)
    open_with_credential(dock, demo_map, config_id)

    task = click_sync(dock)

    assert task is not None and task.succeeded, dock.statusLabel.text()
    assert "Not started" not in dock.statusLabel.text()
    assert QApplication.activeModalWidget() is None
