"""What every Offline Map Sync algorithm shares: naming, the offline map parameter, credentials
prepared on the main thread, and running a core job with Processing's feedback."""

from __future__ import annotations

import json
from typing import Any, Iterable

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterAuthConfig,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtGui import QIcon

from .. import layers as map_layers
from ..auth import credentials_from_auth_config, offline_map_auth_url, offline_map_credential_urls
from ..core.enums import SyncDirection
from ..core.errors import CancelledError, OfflineMapSyncError, SiteNotApprovedError
from ..core.jobs import Job
from ..core.offline_map import OfflineMap
from ..layers import esri_envelope
from ..qgis_compat import FOLDER_BEHAVIOR
from ..resources import icon_path, tr
from .reports import write_report

OFFLINE_MAP = "OFFLINE_MAP"
GEODATABASE = "GEODATABASE"
AUTHCFG = "AUTHCFG"
APPROVE_NEW_SITES = "APPROVE_NEW_SITES"
REPORT = "REPORT"
# The DIRECTION enum parameter's options, in order.
DIRECTIONS = (SyncDirection.BIDIRECTIONAL, SyncDirection.UPLOAD, SyncDirection.DOWNLOAD)


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

    def add_geodatabase_parameter(self) -> None:
        self.addParameter(
            QgsProcessingParameterFile(GEODATABASE, tr("Geodatabase"), extension="gpkg")
        )

    def add_auth_parameter(self) -> None:
        self.addParameter(
            QgsProcessingParameterAuthConfig(
                AUTHCFG, tr("Authentication configuration"), optional=True
            )
        )
        # The dock asks before a credential goes to a new server; a model cannot ask.
        self.addParameter(
            QgsProcessingParameterBoolean(
                APPROVE_NEW_SITES,
                tr("Use the credential for servers it has not been used with"),
                defaultValue=False,
                optional=True,
            )
        )

    def add_report_parameter(self, description: str) -> None:
        """The optional REPORT file destination (JSON, or HTML when it ends in .html)."""
        self.addParameter(
            QgsProcessingParameterFileDestination(
                REPORT,
                description,
                fileFilter=tr("JSON files (*.json);;HTML files (*.html)"),
                optional=True,
                createByDefault=False,
            )
        )

    def write_report_output(
        self, parameters, context, outputs: dict, title: str, summary: dict, rows: list
    ) -> None:
        """Write the report when REPORT was given, and put its path in ``outputs``."""
        report = self.parameterAsFileOutput(parameters, REPORT, context)
        if report:
            outputs[REPORT] = write_report(report, title, summary, rows)

    def open_offline_map(self, parameters, context) -> OfflineMap:
        folder = self.parameterAsFile(parameters, OFFLINE_MAP, context)
        try:
            return OfflineMap.open(folder)
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None

    def prepare_credentials(
        self, parameters, context, url: str, also_for: Iterable[str] = ()
    ) -> None:
        """Turn the auth configuration into credentials for ``url`` (and ``also_for``); call
        from ``prepareAlgorithm`` (main thread: the auth manager may ask for the master
        password). A server the credential was not used with before is refused unless
        APPROVE_NEW_SITES is set."""
        authcfg = self.parameterAsString(parameters, AUTHCFG, context)
        approve = self.parameterAsBoolean(parameters, APPROVE_NEW_SITES, context)
        try:
            self.credentials = credentials_from_auth_config(
                authcfg, url, also_for=also_for, approve_new_sites=approve
            )
        except SiteNotApprovedError as error:
            raise QgsProcessingException(
                tr("{0} Set '{1}' ({2}) to allow it.").format(
                    error,
                    tr("Use the credential for servers it has not been used with"),
                    APPROVE_NEW_SITES,
                )
            ) from None
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None

    def prepare_offline_map_credentials(self, parameters, context) -> None:
        """``prepare_credentials`` for the offline map in OFFLINE_MAP: its portal, or else its
        first feature service, and every service it names."""
        offline_map = self.open_offline_map(parameters, context)
        self.prepare_credentials(
            parameters,
            context,
            offline_map_auth_url(offline_map),
            offline_map_credential_urls(offline_map),
        )

    def area_of_interest(self, parameters, context, name: str = "EXTENT") -> dict | None:
        """The extent parameter ``name`` as an Esri envelope, None when not given or empty; in
        the project's CRS when the extent names none. Call from ``prepareAlgorithm``: it may
        read the project and its layers, which belong to the main thread."""
        if not parameters.get(name):
            return None
        rect = self.parameterAsExtent(parameters, name, context)
        crs = self.parameterAsExtentCrs(parameters, name, context)
        if rect.isNull() or rect.isEmpty():
            return None
        if not crs.isValid() and context.project():
            crs = context.project().crs()
        return esri_envelope(rect, crs)

    def prepare_geodatabase_credentials(self, parameters, context) -> None:
        """``prepare_credentials`` for the feature service of the GeoPackage in GEODATABASE.
        An unreadable file gets none: processAlgorithm says what is wrong with it (Processing
        hides prepareAlgorithm's messages)."""
        from ..core.geodatabase import Geodatabase

        url = ""
        try:
            with Geodatabase.open(self.parameterAsFile(parameters, GEODATABASE, context)) as gdb:
                url = gdb.replica.service_url
        except OfflineMapSyncError:
            pass
        self.prepare_credentials(parameters, context, url)

    def add_take_offline_outputs(self) -> None:
        """TITLE, AUTHCFG and the OUTPUT folder parameters, and the outputs of ``take_offline``."""
        self.addParameter(QgsProcessingParameterString("TITLE", tr("Title"), optional=True))
        self.add_auth_parameter()
        self.addParameter(
            QgsProcessingParameterFolderDestination("OUTPUT", tr("Offline map folder"))
        )
        self.addOutput(QgsProcessingOutputFolder("OUTPUT", tr("Offline map folder")))
        self.addOutput(QgsProcessingOutputString("TITLE", tr("Title")))
        self.addOutput(QgsProcessingOutputNumber("GEODATABASE_COUNT", tr("Geodatabases")))
        self.addOutput(QgsProcessingOutputNumber("LAYER_COUNT", tr("Layers and tables")))
        self.addOutput(QgsProcessingOutputString("SKIPPED", tr("Layers left out (JSON)")))

    def take_offline(self, request, feedback, done_message: str) -> tuple[Any, dict]:
        """Run a ``TakeOfflineJob`` for ``request``; report the layers left out and
        ``done_message`` (formatted with title, folder and layer count). Returns the offline map
        and the outputs both take-offline algorithms share."""
        from ..take_offline_request import TakeOfflineJob

        try:
            job = TakeOfflineJob(request, self.credentials)
        except (OfflineMapSyncError, ValueError) as error:
            raise QgsProcessingException(str(error)) from None
        result = self.run_job(job, feedback)
        offline_map = result.offline_map
        for skipped in result.skipped_layers:
            feedback.pushWarning(tr("Left out {0}: {1}").format(skipped.title, skipped.reason))
        layers = sum(len(entry.layers) for entry in offline_map.geodatabases)
        feedback.pushInfo(done_message.format(offline_map.title, offline_map.folder, layers))
        return offline_map, {
            "OUTPUT": str(offline_map.folder),
            "TITLE": offline_map.title,
            "GEODATABASE_COUNT": len(offline_map.geodatabases),
            "LAYER_COUNT": layers,
            "SKIPPED": json.dumps(
                [
                    {"title": s.title, "url": s.url, "reason": s.reason}
                    for s in result.skipped_layers
                ],
                ensure_ascii=False,
            ),
        }

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


class SyncAlgorithm(OfflineMapAlgorithm):
    """Shared by the two sync algorithms: direction and rollback parameters, and the counts,
    per-layer results and report they output."""

    def add_direction_parameter(self) -> None:
        self.addParameter(
            QgsProcessingParameterEnum(
                "DIRECTION",
                tr("Direction"),
                options=[tr("Both ways"), tr("Upload only"), tr("Download only")],
                defaultValue=0,
            )
        )

    def add_rollback_parameter(self) -> None:
        self.addParameter(
            QgsProcessingParameterBoolean(
                "ROLLBACK_ON_FAILURE", tr("Roll back the whole upload if one edit fails"), False
            )
        )

    def add_sync_outputs(self) -> None:
        """The REPORT parameter and every output of a sync."""
        self.add_report_parameter(tr("Sync report"))
        self.addOutput(QgsProcessingOutputNumber("UPLOADED", tr("Rows and attachments uploaded")))
        self.addOutput(
            QgsProcessingOutputNumber("DOWNLOADED", tr("Rows and attachments downloaded"))
        )
        self.addOutput(QgsProcessingOutputNumber("EDIT_ERRORS", tr("Edits the server refused")))
        self.addOutput(QgsProcessingOutputNumber("CONFLICTS", tr("New conflict-log entries")))
        self.addOutput(QgsProcessingOutputBoolean("HAS_ERRORS", tr("Had errors")))
        self.addOutput(QgsProcessingOutputString("RESULTS", tr("Results per layer (JSON)")))
        self.addOutput(QgsProcessingOutputFile(REPORT, tr("Sync report")))

    def add_save_edits_parameter(self) -> None:
        self.addParameter(
            QgsProcessingParameterBoolean(
                "SAVE_EDITS",
                tr("Save edits not yet saved in QGIS first (else the sync refuses to start)"),
                False,
            )
        )

    def save_edits_first(self, parameters, context, folder, file: str | None = None) -> None:
        """The dock's rule for edits not saved in QGIS: refuse, or save them with SAVE_EDITS.
        Call from ``prepareAlgorithm`` (main thread: it touches the project's layers)."""
        self.synced = (folder, file)
        save = self.parameterAsBool(parameters, "SAVE_EDITS", context)
        try:
            map_layers.save_edits_before_sync(folder, save, context.project(), file)
        except OfflineMapSyncError as error:
            raise QgsProcessingException(str(error)) from None

    def reload_synced_layers(self, context) -> None:
        """Re-read the project's layers of what was synchronized, as after the dock's sync
        (from ``postProcessAlgorithm``, on the main thread)."""
        folder, _ = getattr(self, "synced", (None, None))
        if folder is not None:
            map_layers.reload_offline_map_layers(folder, context.project())

    def direction(self, parameters, context) -> SyncDirection:
        return DIRECTIONS[self.parameterAsEnum(parameters, "DIRECTION", context)]

    def rollback_on_failure(self, parameters, context) -> bool:
        return self.parameterAsBool(parameters, "ROLLBACK_ON_FAILURE", context)

    def sync_outputs(
        self, parameters, context, title: str, summary: dict, rows: list[dict]
    ) -> dict:
        """The outputs of a sync: the upper-case keys of ``summary``, the per-layer ``rows`` as
        JSON in RESULTS, and the report (summary and rows) when REPORT was given."""
        outputs = {key: value for key, value in summary.items() if key.isupper()}
        outputs["RESULTS"] = json.dumps(rows, ensure_ascii=False, default=str)
        self.write_report_output(parameters, context, outputs, title, summary, rows)
        return outputs
