"""What every Offline Map Sync algorithm shares: naming, the offline map parameter, credentials
prepared on the main thread, and running a core job with Processing's feedback."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    Qgis,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterAuthConfig,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)
from qgis.PyQt.QtGui import QIcon

from ..auth import credentials_from_auth_config
from ..core.errors import CancelledError, OfflineMapSyncError
from ..core.jobs import Job
from ..core.offline_map import OfflineMap
from ..resources import icon_path, tr

# QGIS 3.36 moved these enums to Qgis; older versions only have the class-scoped ones.
FOLDER_BEHAVIOR = (
    Qgis.ProcessingFileParameterBehavior.Folder
    if hasattr(Qgis, "ProcessingFileParameterBehavior")
    else QgsProcessingParameterFile.Behavior.Folder
)
INTEGER_TYPE = (
    Qgis.ProcessingNumberParameterType.Integer
    if hasattr(Qgis, "ProcessingNumberParameterType")
    else QgsProcessingParameterNumber.Type.Integer
)

OFFLINE_MAP = "OFFLINE_MAP"
AUTHCFG = "AUTHCFG"


class OfflineMapAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses define ``NAME``, ``displayName()``, ``shortHelpString()`` and the
    Processing methods."""

    NAME = ""

    def __init__(self) -> None:
        super().__init__()
        self.credentials = None

    def name(self) -> str:
        return self.NAME

    def icon(self) -> QIcon:
        return QIcon(icon_path("processing_provider.svg"))

    def createInstance(self):  # noqa: N802 (QGIS API name)
        return type(self)()

    # -- shared parameters -----------------------------------------------------------------
    def add_offline_map_parameter(self) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                OFFLINE_MAP,
                tr("Offline map folder"),
                behavior=FOLDER_BEHAVIOR,
            )
        )

    def add_auth_parameter(self) -> None:
        self.addParameter(
            QgsProcessingParameterAuthConfig(
                AUTHCFG, tr("Authentication configuration"), optional=True
            )
        )

    def open_offline_map(self, parameters, context) -> OfflineMap:
        folder = self.parameterAsFile(parameters, OFFLINE_MAP, context)
        try:
            return OfflineMap.open(folder)
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None

    def prepare_credentials(self, parameters, context, url: str) -> None:
        """Turn the auth configuration into credentials; call from ``prepareAlgorithm`` (main
        thread: the auth manager may ask for the master password)."""
        authcfg = self.parameterAsString(parameters, AUTHCFG, context)
        try:
            self.credentials = credentials_from_auth_config(authcfg, url)
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None

    def run_job(self, job: Job, feedback) -> Any:
        """Run ``job`` here, with progress, messages and cancel bridged to ``feedback``."""

        def report(percent: int, message: str) -> None:
            if feedback is None:
                return
            if feedback.isCanceled():
                job.cancel()
            feedback.setProgress(percent)
            if message:
                feedback.setProgressText(message)

        job.add_progress_listener(report)
        if feedback is not None:
            feedback.canceled.connect(job.cancel)
        try:
            return job.run()
        except CancelledError as error:
            raise QgsProcessingException(str(error)) from None
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None
