"""Hostile inputs through the dock door (issue 8): the panel driven like a user.

A real offline map is taken offline from the reference service, damaged or served badly, then
opened and synchronized through the dock. Each case checks what the user reads (status line,
message bar, per-layer result rows: the problem named, no traceback, no token), that the panel
stays usable (its buttons enabled again), and that the local data is intact. The core and
Processing doors are covered in tests/test_hostile_inputs.py.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from qgis.core import Qgis, QgsApplication, QgsProject

from plugin.core.gpkg_connection import register_functions
from plugin.core.take_offline import OfflineMapTask
from plugin.gui.dock import OfflineMapSyncDock
from plugin.layers import offline_map_layers
from plugin.task import wait_for_task
from tests.featureservice import seed
from tests.gui_user import click
from tests.test_gui_auth import auth_manager as _auth_manager_fixture
from tests.test_gui_auth import plain_http_on_loopback as _plain_http_fixture
from tests.test_gui_dock import open_map, take_secured_map_offline
from tests.test_gui_dock import sync as sync_by_click
from tests.test_hostile_inputs import local_state
from tests.test_sync import POINTS, Local, fast_client, point_gid, server_rows, take_offline

WAIT = 60
auth_manager = _auth_manager_fixture  # the QGIS auth configurations fixture, shared
plain_http_on_loopback = _plain_http_fixture


@pytest.fixture
def dock(qgis_iface, qgis_new_project):
    qgis_iface.messageBar().clear_messages()
    panel = OfflineMapSyncDock(qgis_iface)
    panel.show()
    # The user's client, without the long retry pauses of the default one.
    panel._client = fast_client
    yield panel
    if panel.task is not None:
        panel.task.cancel()
        wait_for_task(panel.task, WAIT)
    QgsApplication.taskManager().cancelAll()
    QgsProject.instance().clear()
    panel.deleteLater()


@pytest.fixture
def edited_map(reference_server, tmp_path):
    """The demo service taken offline, with one local update and one local add pending."""
    offline_map = take_offline(reference_server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Edited offline", visits=5)
    added = local.add(POINTS, "POINT (950000 6003000)", name="Added offline")
    return offline_map, local, added


def _messages(iface, level) -> list[str]:
    return list(iface.messageBar().get_messages(level))


def _assert_clear(text: str, *expected: str) -> None:
    for words in expected:
        assert words in text, text
    assert "Traceback" not in text and 'File "' not in text, text
    assert "token=" not in text.lower(), text
    assert "Unexpected error" not in text, text


def _assert_usable(dock) -> None:
    assert dock.task is None
    assert dock.openButton.isEnabled()
    assert dock.takeOfflineButton.isEnabled()
    assert dock.recentCombo.isEnabled()
    if dock.offline_map is not None:
        assert dock.syncButton.isEnabled()
        assert dock.checkUpdatesButton.isEnabled()
        assert dock.removeButton.isEnabled()
        assert not dock.cancelButton.isEnabled()


def _sync_and_wait(dock):
    assert dock.syncButton.isEnabled(), dock.statusLabel.text()
    sync_by_click(dock)


def _error_cells(dock) -> list[str]:
    return [row[4] for row in dock.result_rows()]


# -- damaged files -----------------------------------------------------------------------------


def test_a_manifest_from_a_newer_version_is_refused_with_a_message_and_left_as_is(
    dock, edited_map, qgis_iface
):
    offline_map, local, _ = edited_map
    manifest = offline_map.folder / "offline_map.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["format_version"] = 99
    manifest.write_text(json.dumps(data), encoding="utf-8")
    manifest_bytes = manifest.read_bytes()
    gpkg_bytes = local.path.read_bytes()

    open_map(dock, offline_map.folder)

    _assert_clear(dock.statusLabel.text(), "newer version", "Update the plugin")
    critical = _messages(qgis_iface, Qgis.MessageLevel.Critical)
    assert any("newer version" in message for message in critical), critical
    assert dock.offline_map is None
    assert not dock.syncButton.isEnabled()
    _assert_usable(dock)
    assert manifest.read_bytes() == manifest_bytes
    assert local.path.read_bytes() == gpkg_bytes


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garble_pages(data: bytes) -> bytes:
    damaged = bytearray(data)
    for offset in range(8192, len(damaged) - 8192, 3 * 4096):
        damaged[offset : offset + 2000] = b"\xff" * 2000
    return bytes(damaged)


@pytest.fixture
def two_geodatabase_map(reference_server, tmp_path):
    """The demo service (with two pending edits) and the read-only one, taken offline together."""
    task = OfflineMapTask(
        service_urls=[
            reference_server.service_url(seed.DEMO_SERVICE),
            reference_server.service_url(seed.READONLY_SERVICE),
        ],
        client=fast_client(),
    )
    parameters = task.create_default_generate_offline_map_parameters(None)
    offline_map = task.generate_offline_map(parameters, tmp_path / "map").run().offline_map
    intact, damaged = offline_map.geodatabases
    assert intact.file == "Demo.gpkg"
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Edited offline")
    added = local.add(POINTS, "POINT (950000 6003000)", name="Added offline")
    return offline_map, damaged, added


@pytest.mark.parametrize("damage", [_truncate, _garble_pages], ids=["truncated", "garbled"])
def test_a_damaged_geopackage_is_named_in_the_panel_its_bytes_untouched_and_the_other_syncs(
    dock, two_geodatabase_map, reference_server, qgis_iface, damage
):
    offline_map, damaged, added = two_geodatabase_map
    damaged.path.write_bytes(damage(damaged.path.read_bytes()))
    damaged_bytes = damaged.path.read_bytes()

    open_map(dock, offline_map.folder)
    assert dock.offline_map is not None, dock.statusLabel.text()

    _assert_clear(dock.statusLabel.text(), damaged.file, "damaged or not a GeoPackage")
    assert dock.pending_text(damaged.file) == "cannot be read"
    # The intact geodatabase's edits are still shown as waiting.
    assert dock.pending_text("Demo.gpkg") == "2 pending"
    assert "Local edits are waiting" in dock.capabilitiesLabel.text()
    assert f"The local edits of {damaged.file} cannot be read" in dock.capabilitiesLabel.text()
    assert "No local edits are waiting" not in dock.capabilitiesLabel.text()
    _assert_usable(dock)
    click(dock.addToMapButton)  # refused with the same message, nothing half-loaded
    assert offline_map_layers(offline_map.folder) == []
    _assert_clear(dock.statusLabel.text(), damaged.file)

    _sync_and_wait(dock)

    # The job ran; one geodatabase failed and says why.
    rows = dock.result_rows()
    failed = [row[4] for row in rows if row[4]]
    assert failed and len(failed) < len(rows), rows
    for text in failed:
        _assert_clear(text, damaged.file)
        assert "damaged or not a GeoPackage" in text, text
    warnings = _messages(qgis_iface, Qgis.MessageLevel.Warning)
    assert any("Synchronized with errors" in message for message in warnings), warnings
    assert dock.statusLabel.text() != "Done.", "a sync with errors must not read as all fine"
    for message in _messages(qgis_iface, Qgis.MessageLevel.Critical):
        _assert_clear(message)
    _assert_usable(dock)
    assert damaged.path.read_bytes() == damaged_bytes
    assert dock.pending_text("Demo.gpkg") == "0 pending"
    assert added in server_rows(reference_server, POINTS)


def test_a_geodatabase_whose_bookkeeping_tables_were_dropped_keeps_its_data_and_edits(
    dock, edited_map, reference_server, qgis_iface
):
    offline_map, local, added = edited_map
    con = sqlite3.connect(local.path)
    register_functions(con)
    points = con.execute("SELECT count(*) FROM Points").fetchone()[0]
    for table in ("oms_journal", "oms_history"):
        con.execute(f"DROP TABLE {table}")
    con.commit()
    con.close()
    damaged = local.path.read_bytes()

    open_map(dock, offline_map.folder)
    assert dock.offline_map is not None, dock.statusLabel.text()
    _sync_and_wait(dock)

    errors = _error_cells(dock)
    assert errors and all(errors), dock.result_rows()
    for text in errors:
        _assert_clear(text, "Demo.gpkg", "damaged sync information", "oms_journal")
    for message in _messages(qgis_iface, Qgis.MessageLevel.Critical):
        _assert_clear(message)
    _assert_usable(dock)
    assert local.path.read_bytes() == damaged
    con = sqlite3.connect(local.path)
    assert con.execute("SELECT count(*) FROM Points").fetchone()[0] == points
    assert con.execute("SELECT count(*) FROM oms_changes").fetchone()[0] == 2
    con.close()
    assert added not in server_rows(reference_server, POINTS)


# -- what the server sends -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("html_error", "web page instead of data"), ("truncated_json", "cut off or is not valid")],
)
def test_a_garbled_server_answer_fails_the_sync_clearly_and_the_next_sync_converges(
    dock, edited_map, reference_server, qgis_iface, kind, expected
):
    offline_map, local, added = edited_map
    before = local_state(local.path)
    open_map(dock, offline_map.folder)
    assert dock.offline_map is not None, dock.statusLabel.text()
    pending = dock.pending_text("Demo.gpkg", POINTS)
    assert pending != "0"
    reference_server.inject_fault("synchronizeReplica", kind, count=10)

    _sync_and_wait(dock)

    errors = _error_cells(dock)
    assert errors and all(errors), dock.result_rows()
    for text in errors:
        _assert_clear(text, expected, "Syncing again will resolve it")
    # Nothing synchronized: a failure, with the reason, not "Synchronized with errors".
    assert any(
        "Sync failed" in message and expected in message
        for message in _messages(qgis_iface, Qgis.MessageLevel.Critical)
    )
    assert dock.statusLabel.text().startswith("Sync failed: "), dock.statusLabel.text()
    _assert_usable(dock)
    assert local_state(local.path)[1] == before[1]  # no row changed locally
    if kind == "html_error":  # nothing reached the server: every edit is still pending
        assert local_state(local.path) == before
        assert dock.pending_text("Demo.gpkg", POINTS) == pending

    reference_server.clear_faults()
    _sync_and_wait(dock)

    assert not dock.last_result.has_errors, dock.result_rows()
    assert dock.pending_text("Demo.gpkg", POINTS) == "0"
    on_server = server_rows(reference_server, POINTS)
    assert on_server[point_gid(0)]["attributes"]["name"] == "Edited offline"
    assert len(on_server) == seed.DEMO_COUNTS[POINTS] + 1  # the add arrived exactly once
    assert added in on_server


def test_an_unreachable_service_fails_the_sync_clearly_and_the_next_sync_converges(
    dock, edited_map, reference_server, qgis_iface
):
    offline_map, local, added = edited_map
    before = local_state(local.path)
    open_map(dock, offline_map.folder)
    assert dock.offline_map is not None, dock.statusLabel.text()
    pending = dock.pending_text("Demo.gpkg", POINTS)
    reference_server.stop()

    _sync_and_wait(dock)

    errors = _error_cells(dock)
    assert errors and all(errors), dock.result_rows()
    for text in errors:
        _assert_clear(text, "The connection to", "failed", "Syncing again will resolve it")
    _assert_usable(dock)
    assert local_state(local.path) == before
    assert dock.pending_text("Demo.gpkg", POINTS) == pending

    reference_server.start()  # same port: the service is back
    _sync_and_wait(dock)

    assert not dock.last_result.has_errors, dock.result_rows()
    assert dock.pending_text("Demo.gpkg", POINTS) == "0"
    assert added in server_rows(reference_server, POINTS)


def test_an_html_page_from_a_secured_service_shows_neither_token_nor_password(
    dock, secured_reference_server, auth_manager, plain_http_on_loopback, tmp_path, qgis_iface
):
    server = secured_reference_server
    del dock._client  # the panel's own client, with the QGIS auth configuration
    take_secured_map_offline(dock, server, auth_manager, tmp_path / "secured_map")
    assert dock.offline_map is not None, dock.statusLabel.text()
    server.inject_fault("synchronizeReplica", "html_error", count=10)

    _sync_and_wait(dock)

    tokens = list(server.app.auth._tokens)
    assert tokens  # the sync signed in: there is a token that must not be shown
    shown = [
        dock.statusLabel.text(),
        dock.capabilitiesLabel.text(),
        *_error_cells(dock),
        *(
            message
            for messages in qgis_iface.messageBar().messages.values()
            for message in messages
        ),
    ]
    assert any("web page instead of data" in text for text in shown), shown
    for text in shown:
        _assert_clear(text)
        assert "alice-secret" not in text
        assert not any(token in text for token in tokens), text
    _assert_usable(dock)


# -- server text is text (issue 16, item 2) ----------------------------------------------------


def _red_square(folder) -> str:
    """A small red PNG: if a widget rendered server text as HTML, this image would show."""
    from qgis.PyQt.QtGui import QColor, QImage

    image = QImage(16, 16, QImage.Format.Format_RGB32)
    image.fill(QColor(255, 0, 0))
    path = str(folder / "red.png")
    assert image.save(path, "PNG")
    return path


def _shows_red(widget) -> bool:
    from qgis.PyQt.QtGui import QColor

    image = widget.grab().toImage()
    red = QColor(255, 0, 0).rgb()
    return any(
        image.pixel(x, y) == red
        for x in range(0, image.width(), 2)
        for y in range(0, image.height(), 2)
    )


def _anchors(document) -> list[str]:
    found = []
    block = document.begin()
    while block.isValid():
        iterator = block.begin()
        while not iterator.atEnd():
            fragment = iterator.fragment()
            if fragment.isValid() and fragment.charFormat().isAnchor():
                found.append(fragment.charFormat().anchorHref())
            iterator += 1
        block = block.next()
    return found


def _tooltip_document(text: str):
    # What QToolTip does with a tooltip: rich text when it looks like HTML, else plain.
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QTextDocument

    document = QTextDocument()
    if Qt.mightBeRichText(text):
        document.setHtml(text)
    else:
        document.setPlainText(text)
    return document


def test_server_text_that_looks_like_html_is_shown_as_typed(
    dock, edited_map, reference_server, qgis_iface, tmp_path
):
    from qgis.gui import QgsMessageBarItem
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QTextBrowser

    image = _red_square(tmp_path)
    hostile = (
        f'<img src="{image}" width="40" height="40"><a href="https://evil.example/">Sign in</a>'
    )
    offline_map, local, _ = edited_map
    open_map(dock, offline_map.folder)
    reference_server.inject_fault("synchronizeReplica", "json_error", count=10, message=hostile)

    _sync_and_wait(dock)

    # The status line: the text as the server sent it, no image drawn.
    assert '<img src="' in dock.statusLabel.text()
    assert dock.statusLabel.textFormat() == Qt.TextFormat.PlainText
    assert not _shows_red(dock.statusLabel)
    # The message bar (rich text only): its real item shows the tags as text, no link.
    critical = _messages(qgis_iface, Qgis.MessageLevel.Critical)
    assert critical
    for message in critical:
        item = QgsMessageBarItem("Offline Map Sync", message.split(":", 1)[1])
        item.resize(900, 120)
        item.show()
        browser = item.findChild(QTextBrowser)
        if browser is not None:
            assert '<img src="' in browser.toPlainText(), browser.toPlainText()
            assert "<a href=" in browser.toPlainText()
            assert _anchors(browser.document()) == []
        assert not _shows_red(item)
        item.hide()
    # The results: cells are plain; their tooltips show the tags as text, no link, no image.
    table = dock.resultsTable
    cells = [table.item(row, 0) for row in range(table.rowCount()) if table.columnSpan(row, 0) > 1]
    assert cells and all("<a href=" in cell.text() for cell in cells)
    for cell in cells:
        document = _tooltip_document(cell.toolTip())
        assert '<img src="' in document.toPlainText()
        assert _anchors(document) == []
    _assert_usable(dock)
