"""Processing algorithm: synchronize one geodatabase with its feature service (SDK
``GeodatabaseSyncTask.syncGeodatabase``), with per-layer directions for per-layer replicas."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
)

from ..core.enums import SyncDirection, SyncModel
from ..core.errors import OfflineMapSyncError
from ..resources import tr
from .base import OfflineMapAlgorithm
from .reports import write_report
from .synchronize import DIRECTIONS, sync_result_dicts

GEODATABASE = "GEODATABASE"
_DIRECTION_WORDS = {d.wire: d for d in SyncDirection}
_DIRECTION_WORDS["both"] = SyncDirection.BIDIRECTIONAL


def parse_layer_directions(text: str) -> dict[int, SyncDirection]:
    """``"0=upload, 3=none"`` -> ``{0: UPLOAD, 3: NONE}``; raises QgsProcessingException
    naming a bad entry."""
    directions = {}
    for part in text.replace(";", ",").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        layer, _, word = part.replace(":", "=").partition("=")
        direction = _DIRECTION_WORDS.get(word.strip().lower())
        if not layer.strip().isdigit() or direction is None:
            raise QgsProcessingException(
                tr(
                    "'{0}' is not a layer direction: write <layer id>=<direction> with "
                    "bidirectional, upload, download or none, e.g. 0=upload, 3=none."
                ).format(part)
            )
        directions[int(layer)] = direction
    return directions


class SyncGeodatabaseAlgorithm(OfflineMapAlgorithm):
    NAME = "synchronizegeodatabase"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Synchronize geodatabase")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Synchronizes one geodatabase (made by 'Generate geodatabase from a feature service' "
            "or one GeoPackage of an offline map) with its feature service. LAYER_DIRECTIONS "
            "sets a direction per layer for per-layer replicas, e.g. '0=upload, 1=download, "
            "3=none'; other layers use DIRECTION. With ROLLBACK_ON_FAILURE the server applies "
            "none of the upload if one edit fails. Edits the server refuses and local versions "
            "that lose go to the conflict log. Outputs counts and a report per layer."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(
            QgsProcessingParameterFile(GEODATABASE, tr("Geodatabase"), extension="gpkg")
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "DIRECTION",
                tr("Direction"),
                options=[tr("Both ways"), tr("Upload only"), tr("Download only")],
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                "LAYER_DIRECTIONS",
                tr("Directions per layer (per-layer replicas), e.g. 0=upload, 3=none"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "ROLLBACK_ON_FAILURE", tr("Roll back the whole upload if one edit fails"), False
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

    def _replica(self, parameters, context):
        from ..core.geodatabase import Geodatabase

        path = self.parameterAsFile(parameters, GEODATABASE, context)
        try:
            with Geodatabase.open(path) as gdb:
                return path, gdb.replica, [layer.id for layer in gdb.layers]
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        # An unreadable file is reported by processAlgorithm: Processing hides prepare's messages.
        try:
            url = self._replica(parameters, context)[1].service_url
        except QgsProcessingException:
            url = ""
        self.prepare_credentials(parameters, context, url)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        import json

        from ..core.sync import GeodatabaseSyncTask, OfflineMapSyncResult, SyncLayerOption

        path, replica, layer_ids = self._replica(parameters, context)
        if not replica.service_url or not replica.replica_id:
            raise QgsProcessingException(
                tr("{0} holds no replica to synchronize (it was never filled).").format(path)
            )
        layer_directions = parse_layer_directions(
            self.parameterAsString(parameters, "LAYER_DIRECTIONS", context)
        )
        unknown = sorted(set(layer_directions) - set(layer_ids))
        if unknown:
            raise QgsProcessingException(
                tr("The geodatabase has no layer or table {0} (it has {1}).").format(
                    ", ".join(map(str, unknown)), ", ".join(map(str, layer_ids))
                )
            )
        if layer_directions and SyncModel(replica.sync_model) != SyncModel.PER_LAYER:
            feedback.pushWarning(
                tr(
                    "This geodatabase is a per-replica replica: every layer moves in the same "
                    "direction, LAYER_DIRECTIONS is ignored."
                )
            )
        direction = DIRECTIONS[self.parameterAsEnum(parameters, "DIRECTION", context)]
        try:
            task = GeodatabaseSyncTask(replica.service_url, self.credentials)
            params = task.create_default_sync_geodatabase_parameters(path, direction)
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None
        if params.layer_options:
            params.layer_options = [
                SyncLayerOption(o.layer_id, layer_directions.get(o.layer_id, o.sync_direction))
                for o in params.layer_options
            ]
        params.rollback_on_failure = self.parameterAsBool(
            parameters, "ROLLBACK_ON_FAILURE", context
        )
        results = self.run_job(task.sync_geodatabase(params, path), feedback)
        rows = sync_result_dicts(
            OfflineMapSyncResult(
                layer_results=[r for r in results if not r.is_table],
                table_results=[r for r in results if r.is_table],
            )
        )
        for row in rows:
            feedback.pushInfo(
                tr("{0}: {1} up, {2} down, {3} edit errors, {4} conflicts").format(
                    row["name"],
                    row["uploaded"],
                    row["downloaded"],
                    len(row["edit_errors"]),
                    row["conflicts"],
                )
            )
            for error in row["edit_errors"]:
                feedback.reportError(f"{row['name']} {error['global_id']}: {error['message']}")
        summary = {
            "geodatabase": str(path),
            "UPLOADED": sum(r["uploaded"] for r in rows),
            "DOWNLOADED": sum(r["downloaded"] for r in rows),
            "EDIT_ERRORS": sum(len(r["edit_errors"]) for r in rows),
            "CONFLICTS": sum(r["conflicts"] for r in rows),
            "HAS_ERRORS": any(r["error"] or r["edit_errors"] for r in rows),
        }
        outputs = {key: value for key, value in summary.items() if key.isupper()}
        outputs["RESULTS"] = json.dumps(rows, ensure_ascii=False, default=str)
        report = self.parameterAsFileOutput(parameters, "REPORT", context)
        if report:
            outputs["REPORT"] = write_report(report, tr("Geodatabase sync"), summary, rows)
        return outputs
