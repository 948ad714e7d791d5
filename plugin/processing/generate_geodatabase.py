"""Processing algorithm: generate one geodatabase from one feature service (SDK
``GeodatabaseSyncTask.generateGeodatabase``), outside any offline map folder."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
)

from ..core.enums import SyncModel
from ..core.errors import OfflineMapSyncError
from ..resources import tr
from .base import OfflineMapAlgorithm

#: SYNC_MODEL choices; None = what the service supports best (per layer where it can).
SYNC_MODELS = (None, SyncModel.PER_LAYER, SyncModel.PER_REPLICA)


def parse_layer_ids(text: str) -> list[int]:
    """``"0, 3"`` -> ``[0, 3]``; raises QgsProcessingException naming a bad entry."""
    ids = []
    for part in text.replace(";", ",").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise QgsProcessingException(
                tr("'{0}' is not a layer id (use numbers such as 0, 3).").format(part)
            )
        ids.append(int(part))
    return ids


class GenerateGeodatabaseAlgorithm(OfflineMapAlgorithm):
    NAME = "generategeodatabase"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        return tr("Generate geodatabase from a feature service")

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API name)
        return tr(
            "Creates a replica of one feature service (SERVICE_URL …/FeatureServer) for an area "
            "(EXTENT; empty = everything) and stores it in a new GeoPackage that can be edited in "
            "QGIS and synchronized with 'Synchronize geodatabase'. LAYERS: layer and table ids "
            "to include (empty = all). The service must allow sync. A failed run leaves no file "
            "and no replica behind."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(
            QgsProcessingParameterString("SERVICE_URL", tr("Feature service URL (…/FeatureServer)"))
        )
        self.addParameter(QgsProcessingParameterExtent("EXTENT", tr("Area"), optional=True))
        self.addParameter(
            QgsProcessingParameterString(
                "LAYERS", tr("Layer and table ids (empty = all)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean("INCLUDE_ATTACHMENTS", tr("Include attachments"), True)
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "SYNC_MODEL",
                tr("Sync model"),
                options=[tr("Service default"), tr("Per layer"), tr("Per replica")],
                defaultValue=0,
            )
        )
        self.add_auth_parameter()
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", tr("Geodatabase"), fileFilter=tr("GeoPackage (*.gpkg)")
            )
        )
        self.addOutput(QgsProcessingOutputFile("OUTPUT", tr("Geodatabase")))
        self.addOutput(QgsProcessingOutputString("REPLICA_ID", tr("Replica ID")))
        self.addOutput(QgsProcessingOutputNumber("LAYER_COUNT", tr("Layers and tables")))

    def _service_url(self, parameters, context) -> str:
        url = self.parameterAsString(parameters, "SERVICE_URL", context).strip().rstrip("/")
        if "/featureserver" not in url.lower():
            raise QgsProcessingException(
                tr("{0} is not a feature service URL (…/FeatureServer).").format(url or "''")
            )
        return url

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        # A bad URL is reported by processAlgorithm: Processing hides prepare's messages.
        url = self.parameterAsString(parameters, "SERVICE_URL", context).strip()
        self.prepare_credentials(parameters, context, url)
        self.extent = self.area_of_interest(parameters, context)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        from ..core.geodatabase import Geodatabase
        from ..core.geodatabase_sync import GeodatabaseSyncTask

        url = self._service_url(parameters, context)
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not output.lower().endswith(".gpkg"):
            output += ".gpkg"
        wanted = parse_layer_ids(self.parameterAsString(parameters, "LAYERS", context))
        try:
            task = GeodatabaseSyncTask(url, self.credentials)
            params = task.create_default_generate_geodatabase_parameters(self.extent)
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None
        if wanted:
            offered = {o.layer_id for o in params.layer_options}
            missing = sorted(set(wanted) - offered)
            if missing:
                raise QgsProcessingException(
                    tr("The service has no layer or table {0} (it has {1}).").format(
                        ", ".join(map(str, missing)), ", ".join(map(str, sorted(offered)))
                    )
                )
            params.layer_options = [o for o in params.layer_options if o.layer_id in wanted]
        params.return_attachments = self.parameterAsBool(parameters, "INCLUDE_ATTACHMENTS", context)
        model = SYNC_MODELS[self.parameterAsEnum(parameters, "SYNC_MODEL", context)]
        if model is not None:
            params.sync_model = model
        path = self.run_job(task.generate_geodatabase(params, output), feedback)
        with Geodatabase.open(path) as gdb:
            replica_id = gdb.replica.replica_id or ""
            layers = len(gdb.layers)
        feedback.pushInfo(tr("Created {0} ({1} layers and tables).").format(path, layers))
        return {"OUTPUT": str(path), "REPLICA_ID": replica_id, "LAYER_COUNT": layers}
