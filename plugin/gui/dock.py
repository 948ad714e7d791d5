"""The plugin's dock panel (layout in ``ui/dock_panel.ui``)."""

from __future__ import annotations

from qgis.PyQt import uic
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QDockWidget, QWidget

from ..resources import ui_path

FORM_CLASS, _ = uic.loadUiType(ui_path("dock_panel.ui"))


class OfflineMapSyncDock(QDockWidget, FORM_CLASS):
    """Dock panel: opens an offline map, shows what it can do and what is waiting, syncs it."""

    closed = pyqtSignal()

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.setupUi(self)
        self.setObjectName("OfflineMapSyncDock")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API name)
        self.closed.emit()
        super().closeEvent(event)
