"""Processing algorithm: synchronize an offline map with its feature services."""

from __future__ import annotations

from qgis.core import QgsProcessingException, QgsProcessingParameterBoolean

from ..core.enums import PreplannedScheduledUpdatesOption
from ..core.errors import OfflineMapSyncError
from ..resources import tr
from .base import SyncAlgorithm
from .reports import sync_result_dicts, sync_row_line, sync_totals


class SynchronizeOfflineMapAlgorithm(SyncAlgorithm):
    NAME = "synchronizeofflinemap"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Synchronize offline map")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Uploads the local edits of an offline map to its feature services and downloads the "
            "server's changes (or only one of the two). Conflicts follow 'the last synchronized edit "
            "wins'; local versions that lose go to the conflict log. Outputs the counts and a JSON "
            "or HTML report with one row per layer and table. Fails when no geodatabase could be "
            "synchronized; partial failures set HAS_ERRORS."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_offline_map_parameter()
        self.add_direction_parameter()
        self.add_rollback_parameter()
        self.addParameter(
            QgsProcessingParameterBoolean(
                "SCHEDULED_UPDATES", tr("Download scheduled updates (ahead-of-time maps)"), True
            )
        )
        self.add_save_edits_parameter()
        self.add_auth_parameter()
        self.add_sync_outputs()

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        # Main thread: the project's layers may be saved here, and reloaded in postProcess.
        self.prepare_offline_map_credentials(parameters, context)
        folder = self.open_offline_map(parameters, context).folder
        self.save_edits_first(parameters, context, folder)
        return True

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 (QGIS API name)
        self.reload_synced_layers(context)
        return {}

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        from ..core.sync import OfflineMapSyncTask

        offline_map = self.open_offline_map(parameters, context)
        try:
            task = OfflineMapSyncTask(offline_map, self.credentials)
            params = task.create_default_offline_map_sync_parameters()
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None
        params.sync_direction = self.direction(parameters, context)
        params.rollback_on_failure = self.rollback_on_failure(parameters, context)
        params.preplanned_scheduled_updates_option = (
            PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
            if self.parameterAsBool(parameters, "SCHEDULED_UPDATES", context)
            else PreplannedScheduledUpdatesOption.NO_UPDATES
        )
        result = self.run_job(task.create_offline_map_sync_job(params), feedback)
        rows = sync_result_dicts(result)
        for row in rows:
            line = sync_row_line(row)
            if row["error"]:
                line += " — " + row["error"]
            feedback.pushInfo(line)
        for file, message in result.geodatabase_errors.items():
            feedback.reportError(f"{file}: {message}")
        summary = {
            "offline_map": str(offline_map.folder),
            **sync_totals(rows),
            "HAS_ERRORS": result.has_errors,
            "REOPEN_REQUIRED": result.is_mobile_map_package_reopen_required,
        }
        outputs = self.sync_outputs(parameters, context, tr("Offline map sync"), summary, rows)
        if result.failed:
            # Nothing synchronized at all: fail, so that scripts see a non-zero exit status.
            raise QgsProcessingException(
                tr("The sync failed: {0}").format("; ".join(result.geodatabase_errors.values()))
            )
        return outputs
