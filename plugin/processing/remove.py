"""Processing algorithms: remove an offline map, or one stand-alone geodatabase, after
unregistering its replicas (see :mod:`plugin.core.removal`)."""

from __future__ import annotations

import json

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
)

from ..resources import tr
from .base import GEODATABASE, OfflineMapAlgorithm

DISCARD = "DISCARD_PENDING_EDITS"
UNREACHABLE = "REMOVE_IF_UNREACHABLE"
COPIES = "IF_A_COPY"
# The remove dialog's choice when another copy of the map may use the same replicas.
REFUSE, FILES_ONLY, UNREGISTER_ANYWAY = range(3)


class _RemovalAlgorithm(OfflineMapAlgorithm):
    """Shared parameters, outputs and reporting of the two removal algorithms."""

    def add_removal_parameters(self) -> None:
        self.addParameter(
            QgsProcessingParameterBoolean(
                DISCARD, tr("Discard local edits that were never uploaded"), False
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                UNREACHABLE,
                tr("Remove the local copy even if the service cannot be reached"),
                False,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                COPIES,
                tr("When another copy of the map may use the same replicas"),
                [
                    tr("Refuse (nothing is changed)"),
                    tr("Remove the files only (the replicas stay registered for the other copy)"),
                    tr("Unregister the replicas anyway (the other copy can no longer sync)"),
                ],
                defaultValue=REFUSE,
            )
        )
        self.add_auth_parameter()
        self.addOutput(QgsProcessingOutputNumber("UNREGISTERED", tr("Replicas unregistered")))
        self.addOutput(
            QgsProcessingOutputString("LEFT_REGISTERED", tr("Replicas still registered (JSON)"))
        )
        self.addOutput(QgsProcessingOutputNumber("DISCARDED_EDITS", tr("Local edits discarded")))
        self.addOutput(QgsProcessingOutputString("REMOVED", tr("Removed files (JSON)")))

    def removal_parameters(self, parameters, context):
        from ..core.removal import RemovalParameters

        copies = self.parameterAsEnum(parameters, COPIES, context)
        return RemovalParameters(
            discard_pending_edits=self.parameterAsBool(parameters, DISCARD, context),
            remove_locally_if_unreachable=self.parameterAsBool(parameters, UNREACHABLE, context),
            files_only=copies == FILES_ONLY,
            unregister_shared_replicas=copies == UNREGISTER_ANYWAY,
        )

    def outputs(self, result, feedback) -> dict:
        for warning in result.warnings:
            feedback.pushWarning(warning)
        feedback.pushInfo(
            tr("Removed {0}: {1} replicas unregistered, {2} files and folders deleted.").format(
                result.title, len(result.unregistered), len(result.removed)
            )
        )
        return {
            "UNREGISTERED": len(result.unregistered),
            "LEFT_REGISTERED": json.dumps(
                [
                    {
                        "geodatabase": r.geodatabase,
                        "service_url": r.service_url,
                        "replica_id": r.replica_id,
                        "reason": reason,
                    }
                    for r, reason in result.left_registered
                ],
                ensure_ascii=False,
            ),
            "DISCARDED_EDITS": result.discarded_edits,
            "REMOVED": json.dumps([str(p) for p in result.removed], ensure_ascii=False),
        }


class RemoveOfflineMapAlgorithm(_RemovalAlgorithm):
    NAME = "removeofflinemap"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Remove offline map")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Unregisters the offline map's replicas on their feature services, then deletes its "
            "geodatabases, manifest and deltas (and the folder when nothing else is in it). "
            "Refused while local edits have not been uploaded unless DISCARD_PENDING_EDITS is "
            "set. When a service cannot be reached nothing is deleted, unless "
            "REMOVE_IF_UNREACHABLE is set: the replica then stays registered on the service. "
            "A copied map folder shares its replicas with the original: IF_A_COPY says whether "
            "to refuse, remove the files only, or unregister the replicas anyway. "
            "Remove the map's layers from the project first."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_offline_map_parameter()
        self.add_removal_parameters()

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        self.prepare_offline_map_credentials(parameters, context)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        from ..core.removal import RemoveOfflineMapJob

        offline_map = self.open_offline_map(parameters, context)
        job = RemoveOfflineMapJob(
            offline_map, self.removal_parameters(parameters, context), self.credentials
        )
        return self.outputs(self.run_job(job, feedback), feedback)


class RemoveGeodatabaseAlgorithm(_RemovalAlgorithm):
    NAME = "removegeodatabase"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Remove geodatabase")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Unregisters the replica of a stand-alone geodatabase (made by 'Generate geodatabase "
            "from a feature service') and deletes the GeoPackage and its deltas. Same rules as "
            "'Remove offline map'; a geodatabase that belongs to an offline map is refused "
            "(remove the map)."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_geodatabase_parameter()
        self.add_removal_parameters()

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        # A damaged file can still be removed; processAlgorithm says what it can.
        self.prepare_geodatabase_credentials(parameters, context)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        from ..core.removal import RemoveGeodatabaseJob

        job = RemoveGeodatabaseJob(
            self.parameterAsFile(parameters, GEODATABASE, context),
            self.removal_parameters(parameters, context),
            self.credentials,
        )
        return self.outputs(self.run_job(job, feedback), feedback)
