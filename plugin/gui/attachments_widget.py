"""The attachments editor of a feature form (layout in ``ui/attachments_widget.ui``).

A feature's attachments live in its layer's ``<table>__ATTACH`` table, related to it by the
parent's GlobalID. QGIS's own relation editor would show them as rows of that table; this
relation editor widget shows them as attachments: a list with name, type and size, a preview
of the selected photo, Open and Save as…, and, while the attachments are being edited, Add…
(a file's name, type, size and bytes) and Delete. Both go through the attachments layer's edit
buffer, so saving it (or the save question before a sync) writes them to the geodatabase, whose
tracking triggers record them for the next sync.

Registered with QGIS's relation widget registry by the plugin (:func:`register`), used for the
relations ``plugin/layers.py`` makes between a layer and its attachments. Attachment names and
types come from the service or a file: they are shown as plain text, and only images below a
size cap are decoded for the preview.
"""

from __future__ import annotations

import mimetypes
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsFeatureRequest,
    QgsGeometry,
    QgsVectorLayer,
    QgsVectorLayerUtils,
)
from qgis.gui import (
    QgsAbstractRelationEditorConfigWidget,
    QgsAbstractRelationEditorWidget,
    QgsAbstractRelationEditorWidgetFactory,
    QgsGui,
)
from qgis.PyQt import uic
from qgis.PyQt.QtCore import QBuffer, QByteArray, QIODevice, QSize, Qt, QTimer, QUrl, pyqtSlot
from qgis.PyQt.QtGui import QDesktopServices, QImageReader, QPixmap
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QLabel,
    QMessageBox,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.sync_model import MAX_ATTACHMENT_UPLOAD_BYTES
from ..layers import (
    ATTACHMENT_DATA_FIELD,
    ATTACHMENT_NAME_FIELD,
    ATTACHMENT_SIZE_FIELD,
    ATTACHMENT_TYPE_FIELD,
    ATTACHMENTS_WIDGET,
)
from ..qgis_compat import ADD_FEATURES, NO_GEOMETRY
from ..resources import tr, ui_path
from .formatting import ask, name_column_stretches, size_text, tooltip

FORM_CLASS, _ = uic.loadUiType(ui_path("attachments_widget.ui"))

#: The preview's box; images are scaled down into it while they are decoded.
PREVIEW_SIZE = QSize(320, 240)
#: Attachments larger than this are not read for a preview (Open and Save as… still work).
MAX_PREVIEW_BYTES = 16 * 1024 * 1024
#: Images with more pixels than this are not decoded for a preview.
MAX_PREVIEW_PIXELS = 50_000_000
ROLE_ATTACHMENT = Qt.ItemDataRole.UserRole

_NO_FILE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


# -- what an attachment is -------------------------------------------------------------------
def content_type(file_name: str) -> str:
    """The MIME type of a file, from its name (``application/octet-stream`` if unknown)."""
    return mimetypes.guess_type(file_name, strict=False)[0] or "application/octet-stream"


def safe_file_name(name: Any) -> str:
    """An attachment's name (untrusted: it came from a service) as a plain file name: no
    folders, no characters file systems refuse, not empty."""
    text = "" if _is_null(name) else str(name)
    text = _NO_FILE_NAME.sub("_", text.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    return text[:150] or tr("attachment")


def preview_image(data: bytes, box: QSize = PREVIEW_SIZE) -> tuple[QPixmap | None, str]:
    """``data`` decoded as an image scaled into ``box``, or None and why there is no preview:
    not an image Qt can read, or too large to decode for a preview."""
    too_large = tr("Too large to preview")
    if len(data) > MAX_PREVIEW_BYTES:
        return None, too_large
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer)
    not_an_image = tr("No preview: not an image that can be shown")
    size = reader.size()  # from the image's header, before any pixel is decoded
    if not size.isValid():
        return None, not_an_image
    if size.width() * size.height() > MAX_PREVIEW_PIXELS:
        return None, too_large
    if size.width() > box.width() or size.height() > box.height():
        reader.setScaledSize(size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return (None, not_an_image) if image.isNull() else (QPixmap.fromImage(image), "")


@dataclass(frozen=True)
class Attachment:
    """One attachment as the list shows it (its bytes are read only when needed)."""

    fid: int
    name: str
    content_type: str
    size: int | None  # DATA_SIZE as stored; None when missing or not a number

    def is_image(self) -> bool:
        return self.content_type.lower().startswith("image/") or content_type(self.name).startswith(
            "image/"
        )


def _byte_count(value: Any) -> int | None:
    try:
        return None if _is_null(value) else int(value)
    except (TypeError, ValueError):
        return None


def _is_null(value: Any) -> bool:
    return value is None or (hasattr(value, "isNull") and value.isNull())


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, QByteArray):
        return bytes(value.data())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return None


# -- the widget ------------------------------------------------------------------------------
class AttachmentsWidget(QgsAbstractRelationEditorWidget, FORM_CLASS):
    """The attachments of the form's feature: list, preview, Open, Save as…, Add…, Delete."""

    def __init__(self, config: dict | None = None, parent: QWidget | None = None):
        super().__init__(config or {}, parent)
        self.setupUi(self)
        self._config = dict(config or {})
        self._followed: list[QgsVectorLayer] = []
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self._refresh)

        for button, icon in (
            (self.editButton, "/mActionToggleEditing.svg"),
            (self.addButton, "/mActionNewAttribute.svg"),
            (self.deleteButton, "/mActionDeleteSelected.svg"),
            (self.openButton, "/mActionFileOpen.svg"),
            (self.saveButton, "/mActionFileSaveAs.svg"),
        ):
            button.setIcon(QgsApplication.getThemeIcon(icon))
        name_column_stretches(self.attachmentsList.header())

        self.editButton.toggled.connect(self._toggle_editing)
        self.addButton.clicked.connect(self.add_file)
        self.deleteButton.clicked.connect(self.delete_selected)
        self.openButton.clicked.connect(self.open_selected)
        self.saveButton.clicked.connect(self.save_selected)
        self.attachmentsList.itemSelectionChanged.connect(self._selection_changed)
        self.attachmentsList.itemDoubleClicked.connect(lambda *_: self.open_selected())
        self._refresh()

    # QgsAbstractRelationEditorWidget -----------------------------------------------------
    def config(self) -> dict:
        return dict(self._config)

    def setConfig(self, config: dict) -> None:  # noqa: N802 (QGIS API name)
        self._config = dict(config or {})

    def updateUi(self) -> None:  # noqa: N802 (QGIS API name)
        self._refresh_timer.start()

    def parentFormValueChanged(self, attribute: str, value: Any) -> None:  # noqa: N802
        if attribute in self.relation().fieldPairs().values():
            self._refresh_timer.start()

    def beforeSetRelations(self, relation, nm_relation) -> None:  # noqa: N802 (QGIS API name)
        for layer in self._followed:
            for signal in _layer_signals(layer):
                try:
                    signal.disconnect(self._layer_changed)
                except (TypeError, RuntimeError):  # not connected, or gone with its layer
                    pass
        self._followed = []

    def afterSetRelations(self) -> None:  # noqa: N802 (QGIS API name)
        for layer in (self._attachments(), self._parent_layer()):
            if layer is not None and layer not in self._followed:
                for signal in _layer_signals(layer):
                    signal.connect(self._layer_changed)
                self._followed.append(layer)
        self._refresh_timer.start()

    # reading --------------------------------------------------------------------------------
    def _attachments(self) -> QgsVectorLayer | None:
        relation = self.relation()
        return relation.referencingLayer() if relation.isValid() else None

    def _parent_layer(self) -> QgsVectorLayer | None:
        relation = self.relation()
        return relation.referencedLayer() if relation.isValid() else None

    def _parent_keys(self) -> dict[str, Any] | None:
        """The attachments' key fields and the values that tie them to the form's feature;
        None while the feature has no key yet (a new feature gets its GlobalID when saved)."""
        feature = self.feature()
        if not self.relation().isValid() or not feature.isValid():
            return None
        keys = {}
        for child_field, parent_field in self.relation().fieldPairs().items():
            value = feature.attribute(parent_field)
            if _is_null(value) or not str(value).strip():
                return None
            keys[child_field] = value
        return keys

    def rows(self) -> list[Attachment]:
        """The feature's attachments (from the edit buffer while they are edited), by name."""
        layer = self._attachments()
        if layer is None or self._parent_keys() is None:
            return []
        request = self.relation().getRelatedFeaturesRequest(self.feature())
        fields = layer.fields()
        wanted = (ATTACHMENT_NAME_FIELD, ATTACHMENT_TYPE_FIELD, ATTACHMENT_SIZE_FIELD)
        request.setSubsetOfAttributes([n for n in wanted if fields.lookupField(n) >= 0], fields)
        request.setFlags(NO_GEOMETRY)
        found = []
        for feature in layer.getFeatures(request):
            name, kind, size = (
                feature.attribute(n) if fields.lookupField(n) >= 0 else None for n in wanted
            )
            found.append(
                Attachment(
                    feature.id(),
                    "" if _is_null(name) else str(name),
                    "" if _is_null(kind) else str(kind),
                    _byte_count(size),
                )
            )
        return sorted(found, key=lambda row: (row.name.lower(), row.fid))

    def data(self, fid: int) -> bytes:
        """The bytes of attachment ``fid`` (from the edit buffer while it is edited)."""
        layer = self._attachments()
        request = QgsFeatureRequest(fid)
        request.setSubsetOfAttributes([ATTACHMENT_DATA_FIELD], layer.fields())
        request.setFlags(NO_GEOMETRY)
        feature = next(layer.getFeatures(request), None)
        data = None if feature is None else _as_bytes(feature.attribute(ATTACHMENT_DATA_FIELD))
        return data or b""

    def selected(self) -> Attachment | None:
        items = self.attachmentsList.selectedItems()
        return items[0].data(0, ROLE_ATTACHMENT) if items else None

    # showing --------------------------------------------------------------------------------
    @pyqtSlot()
    def _layer_changed(self, *_args) -> None:
        self._refresh_timer.start()

    def _refresh(self) -> None:
        chosen = self.selected()
        self.attachmentsList.blockSignals(True)
        self.attachmentsList.clear()
        for row in self.rows():
            size = "" if row.size is None else size_text(row.size)
            item = QTreeWidgetItem([row.name, row.content_type, size])
            item.setData(0, ROLE_ATTACHMENT, row)
            item.setToolTip(0, tooltip(row.name))
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.attachmentsList.addTopLevelItem(item)
            if chosen is not None and chosen.fid == row.fid:
                item.setSelected(True)
        if not self.attachmentsList.selectedItems() and self.attachmentsList.topLevelItemCount():
            self.attachmentsList.topLevelItem(0).setSelected(True)
        self.attachmentsList.blockSignals(False)
        self._selection_changed()

    def _selection_changed(self) -> None:
        self._update_buttons()
        self._show_preview()

    def _update_buttons(self) -> None:
        layer, parent = self._attachments(), self._parent_layer()
        can_edit = bool(
            layer is not None
            and layer.dataProvider() is not None
            and layer.dataProvider().capabilities() & ADD_FEATURES
        )
        editing = bool(layer is not None and layer.isEditable())
        self.editButton.blockSignals(True)
        self.editButton.setChecked(editing)
        self.editButton.blockSignals(False)
        self.editButton.setEnabled(can_edit)
        # Like QGIS's relation editor: adding and deleting while the attachments are edited;
        # also while their feature's layer is (the attachments' edit session then starts).
        may_change = can_edit and (editing or bool(parent is not None and parent.isEditable()))
        has_key = self._parent_keys() is not None
        chosen = self.selected() is not None
        self.addButton.setEnabled(may_change and has_key)
        self.addButton.setToolTip(
            tr("Attach a file: its name, type and size are taken from the file")
            if has_key
            else tr("Save the new feature first, then attach files to it")
        )
        self.deleteButton.setEnabled(may_change and chosen)
        self.openButton.setEnabled(chosen)
        self.saveButton.setEnabled(chosen)

    def _show_preview(self) -> None:
        label: QLabel = self.previewLabel
        label.clear()
        chosen = self.selected()
        if chosen is None:
            label.setText(tr("No attachments") if self._parent_keys() is not None else "")
            return
        if not chosen.is_image():
            label.setText(tr("No preview"))
            return
        if chosen.size is not None and chosen.size > MAX_PREVIEW_BYTES:
            label.setText(tr("Too large to preview"))
            return
        pixmap, why_not = preview_image(self.data(chosen.fid))
        if pixmap is None:
            label.setText(why_not)
        else:
            label.setPixmap(pixmap)

    # acting ---------------------------------------------------------------------------------
    def _toggle_editing(self, on: bool) -> None:
        layer = self._attachments()
        if layer is None:
            return
        if on and not layer.isEditable():
            layer.startEditing()
        elif not on and layer.isEditable():
            self._stop_editing(layer)
        self._update_buttons()

    def _stop_editing(self, layer: QgsVectorLayer) -> None:
        if not layer.isModified():
            layer.rollBack()
            return
        answer = ask(
            self,
            tr("Attachments"),
            tr("Save the changes to the attachments of {0}?").format(layer.name()),
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            if not layer.commitChanges():
                self._warn(
                    tr("The attachments could not be saved:\n{0}").format(
                        "\n".join(layer.commitErrors())
                    )
                )
        elif answer == QMessageBox.StandardButton.Discard:
            layer.rollBack()

    def add_file(self) -> None:
        """Add…: attach a file the user picks to the form's feature (in the edit buffer)."""
        layer, keys = self._attachments(), self._parent_keys()
        if layer is None or keys is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, tr("Attach a file"))
        if not path:
            return
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_ATTACHMENT_UPLOAD_BYTES + 1)
        except OSError as error:
            self._warn(tr("The file {0} could not be read: {1}").format(path, error.strerror))
            return
        if len(data) > MAX_ATTACHMENT_UPLOAD_BYTES:
            self._warn(
                tr(
                    "{0} is larger than {1}, the largest attachment a sync uploads. "
                    "Attach a smaller file (a photo at a lower resolution, for example)."
                ).format(Path(path).name, size_text(MAX_ATTACHMENT_UPLOAD_BYTES))
            )
            return
        if not layer.isEditable() and not layer.startEditing():
            self._warn(tr("The attachments of {0} cannot be edited.").format(layer.name()))
            return
        name = Path(path).name
        values = {
            **keys,
            ATTACHMENT_NAME_FIELD: name,
            ATTACHMENT_TYPE_FIELD: content_type(name),
            ATTACHMENT_SIZE_FIELD: len(data),
            ATTACHMENT_DATA_FIELD: QByteArray(data),
        }
        fields = layer.fields()
        attributes = {fields.lookupField(k): v for k, v in values.items()}
        feature = QgsVectorLayerUtils.createFeature(
            layer, QgsGeometry(), attributes, layer.createExpressionContext()
        )
        if not layer.addFeature(feature):
            self._warn(tr("{0} could not be attached.").format(name))
            return
        self._select_after_refresh(feature.id())

    def delete_selected(self) -> None:
        """Delete: remove the selected attachment (in the edit buffer), once confirmed."""
        layer, chosen = self._attachments(), self.selected()
        if layer is None or chosen is None:
            return
        fid, name = chosen.fid, chosen.name
        answer = ask(
            self,
            tr("Delete attachment"),
            tr("Delete the attachment {0}?").format(name or tr("without a name")),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        if not layer.isEditable() and not layer.startEditing():
            self._warn(tr("The attachments of {0} cannot be edited.").format(layer.name()))
            return
        if not layer.deleteFeature(fid):
            self._warn(tr("The attachment {0} could not be deleted.").format(name))

    def open_selected(self) -> None:
        """Open: the attachment as a temporary file, in the application the system chooses."""
        chosen = self.selected()
        if chosen is None:
            return
        folder = Path(tempfile.mkdtemp(prefix="attachment-", dir=_temporary_folder()))
        path = folder / safe_file_name(chosen.name)
        try:
            path.write_bytes(self.data(chosen.fid))
        except OSError as error:
            self._warn(tr("The attachment could not be written to {0}: {1}").format(path, error))
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            self._warn(
                tr("No application opens {0}. Use Save as… to keep it as a file.").format(path.name)
            )

    def save_selected(self) -> None:
        """Save as…: write the attachment to a file the user names."""
        chosen = self.selected()
        if chosen is None:
            return
        suggested = str(Path.home() / safe_file_name(chosen.name))
        path, _ = QFileDialog.getSaveFileName(self, tr("Save the attachment"), suggested)
        if not path:
            return
        try:
            Path(path).write_bytes(self.data(chosen.fid))
        except OSError as error:
            self._warn(tr("The attachment could not be saved to {0}: {1}").format(path, error))

    def _select_after_refresh(self, fid: int) -> None:
        self._refresh_timer.stop()
        self._refresh()
        for index in range(self.attachmentsList.topLevelItemCount()):
            item = self.attachmentsList.topLevelItem(index)
            item.setSelected(item.data(0, ROLE_ATTACHMENT).fid == fid)

    def _warn(self, text: str) -> None:
        ask(
            self,
            tr("Attachments"),
            text,
            QMessageBox.StandardButton.Ok,
            QMessageBox.StandardButton.Ok,
            QMessageBox.Icon.Warning,
        )


def _layer_signals(layer: QgsVectorLayer) -> list:
    return [
        layer.editingStarted,
        layer.editingStopped,
        layer.featureAdded,
        layer.featuresDeleted,
        layer.attributeValueChanged,
        layer.afterRollBack,
        layer.dataChanged,
    ]


# -- the factory and its registration --------------------------------------------------------
class AttachmentsConfigWidget(QgsAbstractRelationEditorConfigWidget):
    """What the form designer shows for the attachments editor: it has no settings."""

    def __init__(self, relation, parent: QWidget | None = None):
        super().__init__(relation, parent)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(tr("Attachments: name, type, size, preview, open and add.")))
        self._config: dict = {}

    def config(self) -> dict:
        return dict(self._config)

    def setConfig(self, config: dict) -> None:  # noqa: N802 (QGIS API name)
        self._config = dict(config or {})


class AttachmentsWidgetFactory(QgsAbstractRelationEditorWidgetFactory):
    def type(self) -> str:
        return ATTACHMENTS_WIDGET

    def name(self) -> str:
        return tr("Attachments (Offline Map Sync)")

    def create(self, config: dict, parent: QWidget | None = None) -> AttachmentsWidget:
        return AttachmentsWidget(config, parent)

    def configWidget(self, relation, parent: QWidget | None = None):  # noqa: N802
        return AttachmentsConfigWidget(relation, parent)


_state: dict[str, Any] = {}


def register() -> None:
    """Make the attachments editor available to feature forms (once)."""
    registry = QgsGui.relationWidgetRegistry()
    if ATTACHMENTS_WIDGET in registry.relationWidgetNames():
        return
    factory = AttachmentsWidgetFactory()
    registry.addRelationWidget(factory)
    _state["factory"] = factory


def unregister() -> None:
    """Withdraw the attachments editor (plugin unload); forms fall back to QGIS's own."""
    registry = QgsGui.relationWidgetRegistry()
    if ATTACHMENTS_WIDGET in registry.relationWidgetNames():
        registry.removeRelationWidget(ATTACHMENTS_WIDGET)
    _state.pop("factory", None)
    folder = _state.pop("temporary", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _temporary_folder() -> str:
    """Where Open puts attachments for other applications; removed when the plugin unloads."""
    if "temporary" not in _state:
        _state["temporary"] = tempfile.mkdtemp(prefix="offline-map-sync-attachments-")
    return _state["temporary"]
