"""Attachments in the feature form, used like a field worker uses them.

The demo web map is taken offline and added to the map with the panel; a point's form shows
the plugin's attachments editor (registered as the plugin does). The test reads the list,
looks at the preview, opens and saves attachments, adds a file through the real file dialog
and deletes one, saves with the panel's Sync question, and judges what the reference service
holds afterwards.
"""

from __future__ import annotations

import sqlite3
import zlib
from contextlib import closing

import pytest
from qgis.core import QgsTrackedVectorLayerTools
from qgis.gui import QgsAttributeEditorContext, QgsAttributeForm, QgsGui
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, QUrl, pyqtSlot
from qgis.PyQt.QtGui import QColor, QDesktopServices, QImage
from qgis.PyQt.QtWidgets import QFileDialog, QLabel, QTreeWidget

from plugin.gui import attachments_widget
from plugin.gui.formatting import size_text
from tests.featureservice import seed
from tests.gui_user import (
    answering,
    button_named,
    choose_file,
    click,
    click_item,
    press,
    process_events,
)
from tests.test_gui_dock import (
    POINTS,
    _attachments,
    _by_name,
    _layer,
    add_to_map,
    open_map,
    sync,
)
from tests.test_gui_dock import demo_map as _demo_map_fixture
from tests.test_gui_dock import dock as _dock_fixture

demo_map, dock = _demo_map_fixture, _dock_fixture  # the panel's fixtures, shared
PHOTO_POINT = seed.POINT_NAMES[4]  # photo_4.png and a text note


@pytest.fixture
def editor_registered(qgis_iface):
    """The attachments editor, registered as the plugin's initGui does (unload withdraws it)."""
    QgsGui.editorWidgetRegistry().initEditors(qgis_iface.mapCanvas())
    attachments_widget.register()
    yield
    attachments_widget.unregister()


@pytest.fixture
def open_form(editor_registered):
    """Opens a feature's form as QGIS does (its layer tools included); closes them after."""
    opened = []
    tools = QgsTrackedVectorLayerTools()

    def open_(layer, feature):
        context = QgsAttributeEditorContext()
        context.setVectorLayerTools(tools)
        form = QgsAttributeForm(layer, feature, context)
        form.resize(760, 1100)
        form.show()
        process_events(0.1)
        opened.append(form)
        return form

    yield open_
    for form in opened:
        form.hide()
        sip.delete(form)  # before the layer tools it uses


def _editor(form):
    editors = form.findChildren(attachments_widget.AttachmentsWidget)
    assert len(editors) == 1, "the form has no attachments editor"
    return editors[0]


def _rows(editor) -> list[list[str]]:
    listing: QTreeWidget = editor.findChild(QTreeWidget, "attachmentsList")
    return [
        [listing.topLevelItem(i).text(c) for c in range(3)]
        for i in range(listing.topLevelItemCount())
    ]


def _pick(editor, name: str) -> None:
    listing: QTreeWidget = editor.findChild(QTreeWidget, "attachmentsList")
    item = next(
        listing.topLevelItem(i)
        for i in range(listing.topLevelItemCount())
        if listing.topLevelItem(i).text(0) == name
    )
    click_item(listing, item)


def _button(editor, text: str):
    return button_named(editor, text)


class _UrlCatcher(QObject):
    """Stands in for the desktop's file opener: Qt hands it the URLs that would be opened."""

    def __init__(self):
        super().__init__()
        self.urls: list[QUrl] = []

    @pyqtSlot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


@pytest.fixture
def opened_urls():
    catcher = _UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    yield catcher.urls
    QDesktopServices.unsetUrlHandler("file")


def _server_attachments(reference_server, parent_gid) -> dict[str, dict]:
    return {
        a["name"]: a
        for a in reference_server.attachments(seed.DEMO_SERVICE, POINTS)
        if a["parentGlobalId"] == parent_gid
    }


def test_the_form_lists_attachments_previews_photos_and_opens_and_saves_them(
    dock, demo_map, reference_server, open_form, opened_urls, tmp_path
):
    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    feature = _by_name(points, PHOTO_POINT)
    on_server = _server_attachments(reference_server, feature["GlobalID"])
    photo, note = on_server["photo_4.png"]["data"], on_server["notiz ü.txt"]["data"]

    editor = _editor(open_form(points, feature))
    assert _rows(editor) == [
        ["notiz ü.txt", "text/plain", size_text(len(note))],
        ["photo_4.png", "image/png", size_text(len(photo))],
    ]
    preview: QLabel = editor.findChild(QLabel, "previewLabel")
    _pick(editor, "photo_4.png")
    shown = preview.pixmap()
    assert shown is not None and not shown.isNull()
    assert shown.toImage().pixelColor(0, 0) == QImage.fromData(photo).pixelColor(0, 0)
    _pick(editor, "notiz ü.txt")
    assert preview.pixmap() is None or preview.pixmap().isNull()
    assert preview.text() == "No preview"

    # Not in an edit session: the attachments can be looked at, not changed.
    assert not _button(editor, "Add…").isEnabled()
    assert not _button(editor, "Delete").isEnabled()
    click(_button(editor, "Open"))
    assert len(opened_urls) == 1
    opened = opened_urls[0].toLocalFile()
    assert opened.endswith("notiz ü.txt")
    with open(opened, "rb") as file:
        assert file.read() == note

    _pick(editor, "photo_4.png")
    target = tmp_path / "saved photo.png"
    with answering(choose_file(target, "Save"), QFileDialog):
        click(_button(editor, "Save as…"))
    assert target.read_bytes() == photo

    # Edit starts the attachments' edit session; leaving it unchanged asks nothing.
    attachments = _attachments(dock, POINTS)
    click(_button(editor, "Edit"))
    assert attachments.isEditable()
    assert _button(editor, "Add…").isEnabled() and _button(editor, "Delete").isEnabled()
    click(_button(editor, "Edit"))
    assert not attachments.isEditable()
    assert not _button(editor, "Add…").isEnabled()

    # A change, then leaving the edit session: the question offers to discard it.
    click(_button(editor, "Edit"))
    _pick(editor, "notiz ü.txt")
    with answering(press("Yes")):
        click(_button(editor, "Delete"))
    assert [row[0] for row in _rows(editor)] == ["photo_4.png"]
    with answering(press("Discard")):
        click(_button(editor, "Edit"))
    assert not attachments.isEditable()
    assert [row[0] for row in _rows(editor)] == ["notiz ü.txt", "photo_4.png"]


def _jpeg(path) -> bytes:
    image = QImage(640, 480, QImage.Format.Format_RGB32)
    image.fill(QColor(200, 40, 40))
    assert image.save(str(path), "JPG")
    return path.read_bytes()


def test_a_file_added_and_an_attachment_deleted_in_the_form_are_on_the_service_after_sync(
    dock, demo_map, reference_server, open_form, tmp_path
):
    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    feature = _by_name(points, PHOTO_POINT)
    new_file = tmp_path / "Schaden Mauer.jpg"
    data = _jpeg(new_file)

    # The field worker edits the point layer; its form's attachments can then be changed.
    assert points.startEditing()
    editor = _editor(open_form(points, feature))
    with answering(choose_file(new_file, "Open"), QFileDialog):
        click(_button(editor, "Add…"))
    assert ["Schaden Mauer.jpg", "image/jpeg", size_text(len(data))] in _rows(editor)
    preview = editor.findChild(QLabel, "previewLabel").pixmap()
    assert preview is not None and (preview.width(), preview.height()) == (320, 240)

    _pick(editor, "photo_4.png")
    with answering(press("Yes")):
        click(_button(editor, "Delete"))
    assert [row[0] for row in _rows(editor)] == ["notiz ü.txt", "Schaden Mauer.jpg"]

    # Sync asks to save the unsaved edits (the attachments' too): Save.
    sync(dock, press("Save"))
    assert not dock.last_result.has_errors, dock.result_rows()

    on_server = _server_attachments(reference_server, feature["GlobalID"])
    assert set(on_server) == {"notiz ü.txt", "Schaden Mauer.jpg"}
    added = on_server["Schaden Mauer.jpg"]
    assert added["contentType"] == "image/jpeg"
    assert added["data"] == data
    assert _rows(editor)[1] == ["Schaden Mauer.jpg", "image/jpeg", size_text(len(data))]


def test_a_new_feature_gets_attachments_only_once_it_is_saved(dock, demo_map, open_form):
    from qgis.core import QgsFeature

    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    assert points.startEditing()
    new = QgsFeature(points.fields())
    editor = _editor(open_form(points, new))
    assert _rows(editor) == []  # not the attachments of every feature without a GlobalID
    add = _button(editor, "Add…")
    assert not add.isEnabled()
    assert "Save the new feature first" in add.toolTip()
    points.rollBack()


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    # A valid start: the size is read from it; the pixels are never there.
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def test_attachments_from_an_untrusted_map_are_shown_as_typed_and_never_decoded_too_big(
    dock, demo_map, open_form, opened_urls
):
    from plugin.core.offline_map import OfflineMap

    # The map folder is untrusted: names that look like HTML and paths, an image that claims
    # to be 60000 x 60000 pixels.
    gdb = OfflineMap.open(demo_map).geodatabases[0].path
    with closing(sqlite3.connect(gdb)) as conn, conn:
        parent = conn.execute(
            'SELECT "GlobalID" FROM "Points" WHERE name = ?', (PHOTO_POINT,)
        ).fetchone()[0]
        for name, data in (
            ("<b>bold</b><img src=x.png>", b"plain"),
            ("../../escape.png", _png_header(60000, 60000)),
        ):
            conn.execute(
                'INSERT INTO "Points__ATTACH" (REL_GLOBALID, CONTENT_TYPE, ATT_NAME, DATA_SIZE, '
                "DATA) VALUES (?, 'image/png', ?, ?, ?)",
                (parent, name, len(data), data),
            )
    open_map(dock, demo_map)
    add_to_map(dock)
    points = _layer(dock, POINTS)
    editor = _editor(open_form(points, _by_name(points, PHOTO_POINT)))

    names = [row[0] for row in _rows(editor)]
    assert "<b>bold</b><img src=x.png>" in names and "../../escape.png" in names
    preview = editor.findChild(QLabel, "previewLabel")
    _pick(editor, "../../escape.png")
    assert preview.pixmap() is None or preview.pixmap().isNull()
    assert preview.text() == "Too large to preview"
    _pick(editor, "<b>bold</b><img src=x.png>")
    assert preview.text() == "No preview: not an image that can be shown"

    _pick(editor, "../../escape.png")
    click(_button(editor, "Open"))
    opened = opened_urls[-1].toLocalFile()
    assert opened.endswith("/escape.png")
    assert "/../" not in opened
    assert opened.startswith(attachments_widget._temporary_folder())
