"""The Processing provider that groups the plugin's algorithms."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..resources import icon_path, tr

PROVIDER_ID = "offlinemapsync"


class OfflineMapSyncProvider(QgsProcessingProvider):
    """Offline Map Sync algorithms (take offline, synchronize, check for updates, conflicts)."""

    def id(self) -> str:
        return PROVIDER_ID

    def name(self) -> str:
        return tr("Offline Map Sync")

    def longName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Offline Map Sync (ArcGIS feature service offline sync)")

    def icon(self) -> QIcon:
        return QIcon(icon_path("processing_provider.svg"))

    def svgIconPath(self) -> str:  # noqa: N802 (QGIS API name)
        return icon_path("processing_provider.svg")

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API name)
        from .algorithms import all_algorithms

        for algorithm in all_algorithms():
            self.addAlgorithm(algorithm)
