"""QGIS entry point of the Offline Map Sync plugin."""

from __future__ import annotations


def classFactory(iface):  # noqa: N802 (the name QGIS looks for)
    """Create the plugin object; imported lazily so QGIS starts fast."""
    from .plugin.main import OfflineMapSyncPlugin

    return OfflineMapSyncPlugin(iface)
