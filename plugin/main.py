"""The QGIS plugin object: toolbar button, menu entry, dock panel and Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon

try:  # Qt6 (QGIS 4) moved QAction to QtGui; QGIS's PyQt6 shim does not re-export it.
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt5
    from qgis.PyQt.QtWidgets import QAction

from .message_log import install_message_log_handler, remove_message_log_handler
from .resources import PLUGIN_NAME, icon_path, tr


class OfflineMapSyncPlugin:
    """Wires the plugin into QGIS; all real work lives in ``plugin.core``.

    ``qgis_process`` creates this object with ``iface=None`` and calls only
    ``initProcessing()``, so the constructor must not touch the interface.
    """

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self.action: QAction | None = None
        self.toolbar = None
        self.dock = None

    # Processing -----------------------------------------------------------------------
    def initProcessing(self) -> None:  # noqa: N802 (QGIS API name)
        # Also here, not only in initGui: qgis_process calls initProcessing alone.
        install_message_log_handler()
        if self.provider is not None:
            return
        from .processing.provider import OfflineMapSyncProvider

        self.provider = OfflineMapSyncProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    # GUI --------------------------------------------------------------------------------
    def initGui(self) -> None:  # noqa: N802 (QGIS API name)
        self.initProcessing()
        if self.iface is None:
            return
        self.action = QAction(
            QIcon(icon_path("offline_map_sync.svg")),
            tr("Offline Map Sync"),
            self.iface.mainWindow(),
        )
        self.action.setObjectName("OfflineMapSyncAction")
        self.action.setCheckable(True)
        self.action.setToolTip(tr("Show or hide the Offline Map Sync panel"))
        self.action.toggled.connect(self._set_dock_visible)

        self.toolbar = self.iface.addToolBar(tr("Offline Map Sync"))
        self.toolbar.setObjectName("OfflineMapSyncToolbar")
        self.toolbar.addAction(self.action)
        self.iface.addPluginToWebMenu(tr(PLUGIN_NAME), self.action)
        from .gui import attachments_widget  # the feature forms' attachments editor

        attachments_widget.register()

    def _ensure_dock(self):
        if self.dock is None:
            from .gui.dock import OfflineMapSyncDock

            self.dock = OfflineMapSyncDock(self.iface, self.iface.mainWindow())
            self.dock.closed.connect(self._dock_closed)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        return self.dock

    def _set_dock_visible(self, visible: bool) -> None:
        if visible:
            self._ensure_dock().show()
            self.dock.raise_()
        elif self.dock is not None:
            self.dock.hide()

    def _dock_closed(self) -> None:
        # Closing the dock with its own close button must uncheck the toolbar button.
        if self.action is not None:
            self.action.setChecked(False)

    def unload(self) -> None:
        if self.dock is not None:
            self.dock.remove_area_outline()
            self.dock.hide()
            self.iface.removeDockWidget(self.dock)
            self.dock.setParent(None)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginWebMenu(tr(PLUGIN_NAME), self.action)
            if self.toolbar is not None:
                self.toolbar.removeAction(self.action)
            self.action.setParent(None)
            self.action.deleteLater()
            self.action = None
        if self.toolbar is not None:
            self.iface.mainWindow().removeToolBar(self.toolbar)
            self.toolbar.setParent(None)
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.iface is not None:
            from .gui import attachments_widget

            attachments_widget.unregister()
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        remove_message_log_handler()
