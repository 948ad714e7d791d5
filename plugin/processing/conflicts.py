"""Processing algorithms: list an offline map's conflict log, restore or dismiss an entry."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.errors import OfflineMapSyncError
from ..qgis_compat import INTEGER_TYPE
from ..resources import tr
from .base import OfflineMapAlgorithm


def conflict_dicts(offline_map) -> list[dict]:
    """Every conflict-log entry of the map as a plain dict (geometry and blobs left out)."""
    rows = []
    for found in offline_map.conflicts():
        conflict = found.conflict
        rows.append(
            {
                "geodatabase": found.entry.file,
                "id": conflict.id,
                "layer_id": conflict.layer_id,
                "layer": found.layer_title,
                "global_id": conflict.global_id,
                "is_attachment": conflict.is_attachment,
                "local_operation": conflict.local_operation,
                "reason": getattr(conflict.reason, "value", str(conflict.reason)),
                "error_code": conflict.error_code,
                "error_message": conflict.error_message,
                "created_at": conflict.created_at,
                "attributes": {
                    k: v
                    for k, v in conflict.attributes.items()
                    if not isinstance(v, (bytes, bytearray, memoryview))
                },
            }
        )
    return rows


class ListConflictsAlgorithm(OfflineMapAlgorithm):
    NAME = "listconflicts"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("List offline map conflicts")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Lists the conflict log of an offline map: local versions that lost to the server "
            "during a sync (deleted or changed there, or refused). Use 'Restore or dismiss a "
            "conflict' with an entry's geodatabase and id."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_offline_map_parameter()
        self.add_report_parameter(tr("Conflict report"))
        self.addOutput(QgsProcessingOutputNumber("CONFLICT_COUNT", tr("Conflict-log entries")))
        self.addOutput(QgsProcessingOutputString("CONFLICTS", tr("Conflicts (JSON)")))
        self.addOutput(QgsProcessingOutputFile("REPORT", tr("Conflict report")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        import json

        offline_map = self.open_offline_map(parameters, context)
        try:
            rows = conflict_dicts(offline_map)
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None
        for row in rows:
            feedback.pushInfo(
                f"{row['geodatabase']} #{row['id']} {row['layer']} {row['global_id']}: "
                f"{row['reason']} {row['error_message'] or ''}".strip()
            )
        outputs = {
            "CONFLICT_COUNT": len(rows),
            "CONFLICTS": json.dumps(rows, ensure_ascii=False, default=str),
        }
        self.write_report_output(
            parameters,
            context,
            outputs,
            tr("Offline map conflicts"),
            {"offline_map": str(offline_map.folder), "CONFLICT_COUNT": len(rows)},
            rows,
        )
        return outputs


class ResolveConflictAlgorithm(OfflineMapAlgorithm):
    NAME = "resolveconflict"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Restore or dismiss a conflict")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Restore: the local version of a conflict-log entry becomes a pending local edit again "
            "(the next sync uploads it). Dismiss: keep the server's version and drop the entry. "
            "GEODATABASE is the entry's geodatabase file name (may be left empty when the map has "
            "one geodatabase); CONFLICT_ID its id, as 'List offline map conflicts' gives them."
        )

    ACTIONS = ("restore", "dismiss")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_offline_map_parameter()
        self.addParameter(
            QgsProcessingParameterString("GEODATABASE", tr("Geodatabase file"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber("CONFLICT_ID", tr("Conflict id"), INTEGER_TYPE)
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "ACTION", tr("Action"), options=[tr("Restore"), tr("Dismiss")], defaultValue=0
            )
        )
        self.addOutput(QgsProcessingOutputNumber("REMAINING", tr("Conflict-log entries left")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        offline_map = self.open_offline_map(parameters, context)
        file = self.parameterAsString(parameters, "GEODATABASE", context).strip()
        conflict_id = self.parameterAsInt(parameters, "CONFLICT_ID", context)
        action = self.ACTIONS[self.parameterAsEnum(parameters, "ACTION", context)]
        entries = offline_map.geodatabases
        if file:
            entries = [e for e in entries if e.file == file]
        if len(entries) != 1:
            raise QgsProcessingException(
                tr("Name the geodatabase of the conflict (one of: {0}).").format(
                    ", ".join(e.file for e in offline_map.geodatabases)
                )
            )
        try:
            with offline_map.open_geodatabase(entries[0]) as geodatabase:
                if action == "restore":
                    geodatabase.restore_conflict(conflict_id)
                else:
                    geodatabase.dismiss_conflict(conflict_id)
                remaining = len(geodatabase.conflicts())
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None
        feedback.pushInfo(tr("Conflict {0}: {1} done.").format(conflict_id, action))
        return {"REMAINING": remaining}
