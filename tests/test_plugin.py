"""The plugin loads into a real QGIS, shows its panel, registers its provider and unloads cleanly."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication
from qgis.gui import QgsGui
from qgis.PyQt.QtWidgets import QDockWidget, QToolBar

from plugin.layers import ATTACHMENTS_WIDGET
from plugin.main import OfflineMapSyncPlugin
from plugin.processing.provider import PROVIDER_ID


def _ours(widgets, name):
    return [w for w in widgets if w.objectName() == name]


@pytest.fixture
def loaded_plugin(qgis_iface):
    plugin = OfflineMapSyncPlugin(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


def _toolbars(qgis_iface):
    return _ours(qgis_iface.mainWindow().findChildren(QToolBar), "OfflineMapSyncToolbar")


def _docks(qgis_iface):
    return _ours(qgis_iface.mainWindow().findChildren(QDockWidget), "OfflineMapSyncDock")


def test_toolbar_button_exists_and_toggles_the_dock(qgis_iface, loaded_plugin):
    toolbars = _toolbars(qgis_iface)
    assert len(toolbars) == 1
    assert loaded_plugin.action in toolbars[0].actions()
    assert not loaded_plugin.action.icon().isNull()

    loaded_plugin.action.trigger()
    docks = _docks(qgis_iface)
    assert len(docks) == 1
    assert not docks[0].isHidden()
    assert docks[0].windowTitle() == "Offline Map Sync"

    loaded_plugin.action.trigger()
    assert docks[0].isHidden()
    assert not loaded_plugin.action.isChecked()


def test_closing_the_dock_unchecks_the_button(qgis_iface, loaded_plugin):
    loaded_plugin.action.trigger()
    loaded_plugin.dock.close()
    assert not loaded_plugin.action.isChecked()


def test_provider_is_registered_with_its_icon(loaded_plugin):
    provider = QgsApplication.processingRegistry().providerById(PROVIDER_ID)
    assert provider is not None
    assert provider.name() == "Offline Map Sync"
    assert not provider.icon().isNull()


def test_unload_removes_everything_and_a_second_load_leaves_no_duplicates(qgis_iface, qgis_app):
    plugin = OfflineMapSyncPlugin(qgis_iface)
    plugin.initGui()
    plugin.action.trigger()
    plugin.unload()
    qgis_app.processEvents()

    assert _toolbars(qgis_iface) == []
    assert _docks(qgis_iface) == []
    assert QgsApplication.processingRegistry().providerById(PROVIDER_ID) is None
    assert ATTACHMENTS_WIDGET not in QgsGui.relationWidgetRegistry().relationWidgetNames()

    plugin = OfflineMapSyncPlugin(qgis_iface)
    plugin.initGui()
    plugin.action.trigger()
    try:
        assert len(_toolbars(qgis_iface)) == 1
        assert len(_docks(qgis_iface)) == 1
        ours = [p for p in QgsApplication.processingRegistry().providers() if p.id() == PROVIDER_ID]
        assert len(ours) == 1
        # The feature forms' attachments editor, once.
        names = QgsGui.relationWidgetRegistry().relationWidgetNames()
        assert names.count(ATTACHMENTS_WIDGET) == 1
    finally:
        plugin.unload()
        qgis_app.processEvents()


def test_processing_only_load_works_without_an_interface():
    # This is how qgis_process loads plugins: iface is None and only initProcessing() is called.
    plugin = OfflineMapSyncPlugin(None)
    plugin.initProcessing()
    try:
        assert QgsApplication.processingRegistry().providerById(PROVIDER_ID) is not None
    finally:
        plugin.unload()
    assert QgsApplication.processingRegistry().providerById(PROVIDER_ID) is None
