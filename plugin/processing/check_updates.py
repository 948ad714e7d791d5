"""Processing algorithm: what is waiting to be uploaded or downloaded for an offline map."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
)

from ..core.errors import OfflineMapSyncError
from ..resources import tr
from .base import OfflineMapAlgorithm


class CheckForUpdatesAlgorithm(OfflineMapAlgorithm):
    NAME = "checkforupdates"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Check offline map for updates")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Says whether an offline map has local edits to upload and, for ahead-of-time maps "
            "with scheduled updates, whether update packages are waiting and how big they are. "
            "For maps that sync with their feature services, download availability is "
            "INDETERMINATE: only a sync can tell. Also outputs the update capabilities."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_offline_map_parameter()
        self.add_auth_parameter()
        self.addOutput(QgsProcessingOutputString("UPLOAD_AVAILABILITY", tr("Upload availability")))
        self.addOutput(
            QgsProcessingOutputString("DOWNLOAD_AVAILABILITY", tr("Download availability"))
        )
        self.addOutput(
            QgsProcessingOutputNumber(
                "SCHEDULED_UPDATES_SIZE", tr("Scheduled updates size (bytes)")
            )
        )
        self.addOutput(
            QgsProcessingOutputBoolean("REOPEN_REQUIRED", tr("Must be downloaded again"))
        )
        self.addOutput(QgsProcessingOutputNumber("PENDING_EDITS", tr("Local edits waiting")))
        self.addOutput(
            QgsProcessingOutputBoolean(
                "SUPPORTS_SYNC_WITH_FEATURE_SERVICES", tr("Syncs with feature services")
            )
        )
        self.addOutput(
            QgsProcessingOutputBoolean(
                "SUPPORTS_SCHEDULED_UPDATES_FOR_FEATURES", tr("Takes scheduled updates")
            )
        )

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        self.prepare_offline_map_credentials(parameters, context)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        from ..core.sync import OfflineMapSyncTask

        offline_map = self.open_offline_map(parameters, context)
        try:
            task = OfflineMapSyncTask(offline_map, self.credentials)
            info = task.check_for_updates()
            counts = offline_map.local_edit_counts()
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None
        pending = sum(
            sum(layer_counts.values())
            for gdb_counts in counts.values()
            for layer_counts in gdb_counts.values()
        )
        capabilities = offline_map.update_capabilities
        outputs = {
            "UPLOAD_AVAILABILITY": info.upload_availability.name,
            "DOWNLOAD_AVAILABILITY": info.download_availability.name,
            "SCHEDULED_UPDATES_SIZE": info.scheduled_updates_download_size,
            "REOPEN_REQUIRED": info.is_mobile_map_package_reopen_required,
            "PENDING_EDITS": pending,
            "SUPPORTS_SYNC_WITH_FEATURE_SERVICES": capabilities.supports_sync_with_feature_services,
            "SUPPORTS_SCHEDULED_UPDATES_FOR_FEATURES": capabilities.supports_scheduled_updates_for_features,
        }
        for key, value in outputs.items():
            feedback.pushInfo(f"{key}: {value}")
        return outputs
