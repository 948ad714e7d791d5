"""Processing algorithm: synchronize one geodatabase with its feature service (SDK
``GeodatabaseSyncTask.syncGeodatabase``), with per-layer directions for per-layer replicas."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingException, QgsProcessingParameterString

from ..core.enums import SyncDirection, SyncModel
from ..core.errors import OfflineMapSyncError
from ..resources import tr
from .base import GEODATABASE, SyncAlgorithm
from .reports import sync_result_dicts, sync_row_line, sync_totals

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


class SyncGeodatabaseAlgorithm(SyncAlgorithm):
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
        self.add_geodatabase_parameter()
        self.add_direction_parameter()
        self.addParameter(
            QgsProcessingParameterString(
                "LAYER_DIRECTIONS",
                tr("Directions per layer (per-layer replicas), e.g. 0=upload, 3=none"),
                optional=True,
            )
        )
        self.add_rollback_parameter()
        self.add_save_edits_parameter()
        self.add_auth_parameter()
        self.add_sync_outputs()

    def _replica(self, parameters, context):
        from ..core.geodatabase import Geodatabase

        path = self.parameterAsFile(parameters, GEODATABASE, context)
        try:
            with Geodatabase.open(path) as gdb:
                return path, gdb.replica, [layer.id for layer in gdb.layers]
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        self.prepare_geodatabase_credentials(parameters, context)
        path = Path(self.parameterAsFile(parameters, GEODATABASE, context)).absolute()
        self.save_edits_first(parameters, context, path.parent, path.name)
        return True

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 (QGIS API name)
        self.reload_synced_layers(context)
        return {}

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        from ..core.geodatabase_sync import GeodatabaseSyncTask
        from ..core.sync_model import OfflineMapSyncResult, SyncLayerOption

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
        direction = self.direction(parameters, context)
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
        params.rollback_on_failure = self.rollback_on_failure(parameters, context)
        results = self.run_job(task.sync_geodatabase(params, path), feedback)
        rows = sync_result_dicts(
            OfflineMapSyncResult(
                layer_results=[r for r in results if not r.is_table],
                table_results=[r for r in results if r.is_table],
            )
        )
        for row in rows:
            feedback.pushInfo(sync_row_line(row))
            for error in row["edit_errors"]:
                feedback.reportError(f"{row['name']} {error['global_id']}: {error['message']}")
        summary = {
            "geodatabase": str(path),
            **sync_totals(rows),
            "HAS_ERRORS": any(r["error"] or r["edit_errors"] for r in rows),
        }
        return self.sync_outputs(parameters, context, tr("Geodatabase sync"), summary, rows)
