"""Processing algorithm: synchronize an offline map with its feature services."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
)

from ..core.enums import PreplannedScheduledUpdatesOption, SyncDirection
from ..core.errors import OfflineMapSyncError
from ..resources import tr
from .base import OfflineMapAlgorithm
from .reports import write_report

DIRECTIONS = (SyncDirection.BIDIRECTIONAL, SyncDirection.UPLOAD, SyncDirection.DOWNLOAD)


def sync_result_dicts(result) -> list[dict]:
    """One plain dict per layer/table of an ``OfflineMapSyncResult`` (for reports and JSON)."""
    rows = []
    for layer in result.all_results():
        rows.append(
            {
                "geodatabase": layer.geodatabase_path.name if layer.geodatabase_path else "",
                "layer_id": layer.layer_id,
                "name": layer.name,
                "is_table": layer.is_table,
                "uploaded": layer.uploaded.total,
                "downloaded": layer.downloaded.total,
                "uploaded_counts": dict(vars(layer.uploaded)),
                "downloaded_counts": dict(vars(layer.downloaded)),
                "edit_errors": [
                    {"global_id": e.global_id, "kind": e.kind, "code": e.code, "message": e.message}
                    for e in layer.edit_errors
                ],
                "conflicts": layer.conflicts,
                "error": layer.error,
            }
        )
    return rows


class SynchronizeOfflineMapAlgorithm(OfflineMapAlgorithm):
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
        self.addParameter(
            QgsProcessingParameterEnum(
                "DIRECTION",
                tr("Direction"),
                options=[tr("Both ways"), tr("Upload only"), tr("Download only")],
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "ROLLBACK_ON_FAILURE", tr("Roll back the whole upload if one edit fails"), False
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "SCHEDULED_UPDATES", tr("Download scheduled updates (ahead-of-time maps)"), True
            )
        )
        self.add_auth_parameter()
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "REPORT",
                tr("Sync report"),
                fileFilter=tr("JSON files (*.json);;HTML files (*.html)"),
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputNumber("UPLOADED", tr("Rows and attachments uploaded")))
        self.addOutput(
            QgsProcessingOutputNumber("DOWNLOADED", tr("Rows and attachments downloaded"))
        )
        self.addOutput(QgsProcessingOutputNumber("EDIT_ERRORS", tr("Edits the server refused")))
        self.addOutput(QgsProcessingOutputNumber("CONFLICTS", tr("New conflict-log entries")))
        self.addOutput(QgsProcessingOutputBoolean("HAS_ERRORS", tr("Had errors")))
        self.addOutput(QgsProcessingOutputString("RESULTS", tr("Results per layer (JSON)")))
        self.addOutput(QgsProcessingOutputFile("REPORT", tr("Sync report")))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        offline_map = self.open_offline_map(parameters, context)
        url = offline_map.source.portal_url or next(
            (e.service_url for e in offline_map.geodatabases), ""
        )
        self.prepare_credentials(parameters, context, url)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        import json

        from ..core.sync import OfflineMapSyncTask

        offline_map = self.open_offline_map(parameters, context)
        try:
            task = OfflineMapSyncTask(offline_map, self.credentials)
            params = task.create_default_offline_map_sync_parameters()
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None
        params.sync_direction = DIRECTIONS[self.parameterAsEnum(parameters, "DIRECTION", context)]
        params.rollback_on_failure = self.parameterAsBool(
            parameters, "ROLLBACK_ON_FAILURE", context
        )
        params.preplanned_scheduled_updates_option = (
            PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
            if self.parameterAsBool(parameters, "SCHEDULED_UPDATES", context)
            else PreplannedScheduledUpdatesOption.NO_UPDATES
        )
        result = self.run_job(task.create_offline_map_sync_job(params), feedback)
        rows = sync_result_dicts(result)
        for row in rows:
            line = tr("{0}: {1} up, {2} down, {3} edit errors, {4} conflicts").format(
                row["name"],
                row["uploaded"],
                row["downloaded"],
                len(row["edit_errors"]),
                row["conflicts"],
            )
            if row["error"]:
                line += " — " + row["error"]
            feedback.pushInfo(line)
        for file, message in result.geodatabase_errors.items():
            feedback.reportError(f"{file}: {message}")
        summary = {
            "offline_map": str(offline_map.folder),
            "UPLOADED": sum(r["uploaded"] for r in rows),
            "DOWNLOADED": sum(r["downloaded"] for r in rows),
            "EDIT_ERRORS": sum(len(r["edit_errors"]) for r in rows),
            "CONFLICTS": sum(r["conflicts"] for r in rows),
            "HAS_ERRORS": result.has_errors,
            "REOPEN_REQUIRED": result.is_mobile_map_package_reopen_required,
        }
        outputs = {key: value for key, value in summary.items() if key.isupper()}
        outputs["RESULTS"] = json.dumps(rows, ensure_ascii=False, default=str)
        report = self.parameterAsFileOutput(parameters, "REPORT", context)
        if report:
            outputs["REPORT"] = write_report(report, tr("Offline map sync"), summary, rows)
        if offline_map.geodatabases and len(result.geodatabase_errors) == len(
            offline_map.geodatabases
        ):
            # Nothing synchronized at all: fail, so that scripts see a non-zero exit status.
            raise QgsProcessingException(
                tr("The sync failed: {0}").format("; ".join(result.geodatabase_errors.values()))
            )
        return outputs
