"""The conflict log of an offline map as a table, with Restore and Dismiss
(layout in ``ui/conflict_dialog.ui``)."""

from __future__ import annotations

from typing import Any

from qgis.PyQt import uic
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QDialog, QTableWidgetItem, QWidget

from ..core.errors import OfflineMapSyncError
from ..core.offline_map import OfflineMap
from ..resources import tr, ui_path
from .formatting import tooltip

FORM_CLASS, _ = uic.loadUiType(ui_path("conflict_dialog.ui"))

ROLE_KEY = Qt.ItemDataRole.UserRole


def _reasons() -> dict[str, str]:
    return {
        "deleted_on_server": tr("The server deleted this row; your local {0} was kept here."),
        "edit_rejected": tr("The server refused your local {0}."),
        "overwritten_by_download": tr("The server's version replaced your local {0}."),
    }


def describe_conflict(conflict: Any) -> str:
    """One sentence saying why the local version lost (with the server's message, if any)."""
    reason = getattr(conflict.reason, "value", conflict.reason)
    operation = {"add": tr("new row"), "update": tr("change"), "delete": tr("deletion")}.get(
        conflict.local_operation, conflict.local_operation
    )
    if conflict.is_attachment:
        operation = tr("attachment {0}").format(operation)
    text = _reasons().get(str(reason), "{0}").format(operation)
    if conflict.error_message:
        text += " " + conflict.error_message
    return text


class ConflictDialog(QDialog, FORM_CLASS):
    """Lists the map's conflict log; restores or dismisses the selected entry.

    ``changed`` is emitted after an entry was restored or dismissed (pending edits changed).
    """

    changed = pyqtSignal()

    def __init__(self, offline_map: OfflineMap, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setupUi(self)
        self.offline_map = offline_map
        columns = [
            tr("Geodatabase"),
            tr("Layer / table"),
            tr("Feature"),
            tr("What happened"),
            tr("When"),
        ]
        self.conflictTable.setColumnCount(len(columns))
        self.conflictTable.setHorizontalHeaderLabels(columns)
        self.restoreButton.clicked.connect(self.restore_selected)
        self.dismissButton.clicked.connect(self.dismiss_selected)
        self.conflictTable.itemSelectionChanged.connect(self._update_buttons)
        self.reload()

    def reload(self) -> None:
        """Read the conflict log again from the geodatabases."""
        rows = self.offline_map.conflicts()
        self.conflictTable.setRowCount(len(rows))
        for row, found in enumerate(rows):
            entry, conflict = found.entry, found.conflict
            values = (
                entry.title or entry.file,
                found.layer_title,
                found.feature_name or conflict.global_id,
                describe_conflict(conflict),
                conflict.created_at,
            )
            for column, value in enumerate(values):
                text = "" if value is None else str(value)
                item = QTableWidgetItem(text)
                # The feature's GlobalID (its identity everywhere) stays at hand in the tooltip.
                item.setToolTip(tooltip(f"{text}\n{conflict.global_id}" if column == 2 else text))
                if column == 0:
                    item.setData(ROLE_KEY, (entry.file, conflict.id))
                self.conflictTable.setItem(row, column, item)
        self.conflictTable.resizeColumnsToContents()
        self._update_buttons()

    def row_count(self) -> int:
        return self.conflictTable.rowCount()

    def _selected_key(self) -> tuple[str, Any] | None:
        rows = self.conflictTable.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.conflictTable.item(rows[0].row(), 0)
        return item.data(ROLE_KEY) if item is not None else None

    def _update_buttons(self) -> None:
        selected = self._selected_key() is not None
        self.restoreButton.setEnabled(selected)
        self.dismissButton.setEnabled(selected)

    def restore_selected(self) -> bool:
        """Restore the selected entry's local version as a pending edit."""
        return self._act("restore_conflict")

    def dismiss_selected(self) -> bool:
        """Drop the selected entry (keep the server's version)."""
        return self._act("dismiss_conflict")

    def _act(self, method: str) -> bool:
        key = self._selected_key()
        if key is None:
            return False
        file, conflict_id = key
        entry = next(e for e in self.offline_map.geodatabases if e.file == file)
        try:
            with self.offline_map.open_geodatabase(entry) as geodatabase:
                getattr(geodatabase, method)(conflict_id)
        except OfflineMapSyncError as error:
            self.introLabel.setText(str(error))
            return False
        self.reload()
        self.changed.emit()
        return True
