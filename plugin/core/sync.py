"""Synchronize offline data with its feature services (SDK ``OfflineMapSyncTask`` and
``GeodatabaseSyncTask``).

:class:`GeodatabaseSyncTask.synchronize` is the one place where a geodatabase is synchronized
(ARCHITECTURE.md, "Synchronizing one geodatabase"): lock, finish an interrupted upload, snapshot
the pending edits, journal them, submit, poll, fetch the result, commit in one transaction. The
offline-map task runs it for each of its geodatabases, one after the other; a failure in one is
reported in the result and does not stop the others.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from . import updates
from .enums import (
    AttachmentSyncDirection,
    OfflineUpdateAvailability,
    PreplannedScheduledUpdatesOption,
    PreplannedUpdateMode,
    SyncDirection,
    SyncModel,
)
from .errors import (
    CancelledError,
    GeodatabaseError,
    NetworkError,
    NotSyncEnabledError,
    OfflineMapSyncError,
    ServiceError,
    UnsupportedGeometryError,
)
from .geometry import normalize_geometry_type
from .gpkg_connection import quote
from .jobs import Job
from .offline_map import GeodatabaseEntry, OfflineMap, OfflineMapUpdateCapabilities
from .rest import (
    ArcGISClient,
    BadAnswerError,
    CredentialProvider,
    create_replica_request,
    supports_async,
)
from .schema import ATTACHMENT_FID

ProgressCallback = Callable[[Optional[float], str], None]
CancelCallback = Callable[[], bool]

log = logging.getLogger(__name__)

_GUID = re.compile(r"^\{?[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\}?$")

RESYNC_HINT = "Syncing again will resolve it; no local edit is lost."

#: Largest attachment a sync uploads. Uploads carry attachments inline as base64 (spec §3), so
#: one attachment costs several times its size in memory; larger ones stay pending, reported.
MAX_ATTACHMENT_UPLOAD_BYTES = 50 * 1024 * 1024


class SchemaChangedError(OfflineMapSyncError):
    """The service's layers changed since the geodatabase was made (a field removed, a type
    changed, a layer gone) in a way that makes syncing unsafe. ``changes``: one line each."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


# ---------------------------------------------------------------------------------------------
# Parameters


@dataclass
class SyncLayerOption:
    """Direction of one layer or table in a per-layer sync (SDK ``SyncLayerOption``)."""

    layer_id: int
    sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL


@dataclass
class SyncGeodatabaseParameters:
    """How to synchronize one geodatabase (SDK ``SyncGeodatabaseParameters``).

    ``layer_options`` gives per-layer directions; they are honoured when the geodatabase is a
    per-layer replica (for a per-replica one every layer moves in ``sync_direction``).
    ``upload_only_new_features`` restricts the upload to added rows (maps in mode
    DownloadScheduledUpdatesAndUploadNewFeatures). With ``keep_geodatabase_deltas`` the uploaded
    edits and the downloaded result file are copied into ``deltas_folder`` (default: a folder
    ``<geodatabase name>_deltas`` next to the geodatabase).
    """

    sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL
    rollback_on_failure: bool = False
    layer_options: list[SyncLayerOption] = field(default_factory=list)
    upload_only_new_features: bool = False
    keep_geodatabase_deltas: bool = False
    deltas_folder: Path | None = None
    #: Sync as this replica instead of the geodatabase's own (the upload-only replica of an
    #: ahead-of-time map that uploads new features; its package replica never uploads).
    replica_id: str | None = None
    #: Attachments larger than this are not uploaded (they stay pending and are reported).
    max_attachment_upload_bytes: int = MAX_ATTACHMENT_UPLOAD_BYTES

    def direction_of(self, layer_id: int) -> SyncDirection:
        for option in self.layer_options:
            if int(option.layer_id) == int(layer_id):
                return SyncDirection(option.sync_direction)
        return SyncDirection(self.sync_direction)


@dataclass
class GenerateLayerOption:
    """Which rows of one layer or table a new geodatabase gets (SDK ``GenerateLayerOption``).

    ``query_option``: ``"useFilter"`` (``where_clause`` and, with ``use_geometry``, the extent),
    ``"all"`` or ``"none"`` (schema only).
    """

    layer_id: int
    where_clause: str = "1=1"
    use_geometry: bool = True
    query_option: str = "useFilter"
    include_related: bool = True


@dataclass
class GenerateGeodatabaseParameters:
    """What a new geodatabase holds (SDK ``GenerateGeodatabaseParameters``).

    ``extent`` is an Esri JSON envelope or polygon with its ``spatialReference`` (None = the
    whole service). ``sync_model`` per layer needs ``supportsPerLayerSync``.
    """

    extent: dict | None = None
    layer_options: list[GenerateLayerOption] = field(default_factory=list)
    return_attachments: bool = True
    sync_model: SyncModel = SyncModel.PER_REPLICA
    attachment_sync_direction: AttachmentSyncDirection = AttachmentSyncDirection.BIDIRECTIONAL
    sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL
    replica_name: str = ""


@dataclass
class OfflineMapSyncParameters:
    """How to synchronize an offline map (SDK ``OfflineMapSyncParameters``)."""

    sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL
    rollback_on_failure: bool = False
    preplanned_scheduled_updates_option: PreplannedScheduledUpdatesOption = (
        PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
    )
    keep_geodatabase_deltas: bool = False
    #: Attachments larger than this are not uploaded (they stay pending and are reported).
    max_attachment_upload_bytes: int = MAX_ATTACHMENT_UPLOAD_BYTES


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class SyncCounts:
    """Rows and attachments moved in one direction for one layer or table."""

    adds: int = 0
    updates: int = 0
    deletes: int = 0
    attachments: int = 0

    @property
    def total(self) -> int:
        return self.adds + self.updates + self.deletes + self.attachments

    def add(self, other: SyncCounts) -> None:
        self.adds += other.adds
        self.updates += other.updates
        self.deletes += other.deletes
        self.attachments += other.attachments


@dataclass(frozen=True)
class EditError:
    """One uploaded edit the server rejected (SDK ``FeatureEditResult`` with an error).

    ``kind`` is ``add``, ``update``, ``delete`` or ``attachment add``/``update``/``delete``.
    The local version of the row is kept in the geodatabase's conflict log.
    """

    global_id: str | None
    kind: str
    code: int | None
    message: str


@dataclass
class SyncLayerResult:
    """The outcome for one layer or table (SDK ``SyncLayerResult``).

    ``error`` is set when the whole layer (or its whole geodatabase) failed to sync;
    ``edit_errors`` lists rejected edits; ``conflicts`` counts local versions that lost and were
    saved to the conflict log during this sync.
    """

    layer_id: int
    name: str
    is_table: bool = False
    service_url: str = ""
    geodatabase_path: Path | None = None
    error: str | None = None
    edit_errors: list[EditError] = field(default_factory=list)
    uploaded: SyncCounts = field(default_factory=SyncCounts)
    downloaded: SyncCounts = field(default_factory=SyncCounts)
    conflicts: int = 0

    @property
    def has_errors(self) -> bool:
        return self.error is not None or bool(self.edit_errors)


@dataclass
class OfflineMapSyncResult:
    """The outcome of an offline map sync (SDK ``OfflineMapSyncResult``)."""

    layer_results: list[SyncLayerResult] = field(default_factory=list)
    table_results: list[SyncLayerResult] = field(default_factory=list)
    is_mobile_map_package_reopen_required: bool = False
    #: Whole-geodatabase failures: geodatabase file name -> message.
    geodatabase_errors: dict[str, str] = field(default_factory=dict)

    @property
    def has_errors(self) -> bool:
        return bool(self.geodatabase_errors) or any(
            r.has_errors for r in self.layer_results + self.table_results
        )

    def all_results(self) -> list[SyncLayerResult]:
        return self.layer_results + self.table_results


@dataclass(frozen=True)
class OfflineMapUpdatesInfo:
    """What a sync would bring (SDK ``OfflineMapUpdatesInfo``)."""

    download_availability: OfflineUpdateAvailability
    upload_availability: OfflineUpdateAvailability
    scheduled_updates_download_size: int = 0
    is_mobile_map_package_reopen_required: bool = False


class LoadStatus(str, Enum):
    """SDK ``LoadStatus``."""

    NOT_LOADED = "notLoaded"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED_TO_LOAD = "failedToLoad"


# ---------------------------------------------------------------------------------------------
# One geodatabase


def _capabilities(info: dict) -> set[str]:
    return {c.strip().lower() for c in str(info.get("capabilities") or "").split(",") if c.strip()}


def service_accepts_uploads(info: dict) -> bool:
    """A service with Sync but without Create/Update/Delete is download-only (spec §1)."""
    caps = _capabilities(info)
    return bool(caps & {"create", "update", "delete", "editing"})


class GeodatabaseSyncTask:
    """Synchronizes geodatabases with one feature service (SDK ``GeodatabaseSyncTask``)."""

    def __init__(
        self,
        feature_service_url: str,
        credentials: CredentialProvider | None = None,
        *,
        client: ArcGISClient | None = None,
    ) -> None:
        self.feature_service_url = feature_service_url.rstrip("/")
        self.client = client or ArcGISClient(credentials)
        self._service_info: dict | None = None

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> dict:
        """Fetch (once) and return the service description; refuses non-sync services."""
        if self._service_info is None:
            info = self.client.service_info(self.feature_service_url)
            if "sync" not in _capabilities(info):
                raise NotSyncEnabledError(
                    f"The service {self.feature_service_url} does not allow sync: its "
                    f"capabilities are {info.get('capabilities') or 'none'}."
                )
            self._service_info = info
        return self._service_info

    @property
    def service_info(self) -> dict | None:
        return self._service_info

    # -- parameters --------------------------------------------------------------------------
    def create_default_sync_geodatabase_parameters(
        self,
        geodatabase: Any,
        sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL,
    ) -> SyncGeodatabaseParameters:
        """Defaults for ``geodatabase``: bidirectional (download only when the service takes
        no edits), with one option per layer when the replica is per-layer."""
        with _opened(geodatabase) as gdb:
            info = self.load()
            direction = sync_direction
            if direction.uploads and not service_accepts_uploads(info):
                direction = SyncDirection.DOWNLOAD
            options = []
            if SyncModel(gdb.replica.sync_model) == SyncModel.PER_LAYER:
                options = [SyncLayerOption(layer.id, direction) for layer in gdb.layers]
            return SyncGeodatabaseParameters(sync_direction=direction, layer_options=options)

    def create_default_generate_geodatabase_parameters(
        self, extent: dict | None = None
    ) -> GenerateGeodatabaseParameters:
        """Every layer and table for ``extent`` with attachments; per-layer sync where the
        service supports it; download-only for services that take no edits."""
        info = self.load()
        caps = info.get("syncCapabilities") or {}
        ids = sorted(int(e["id"]) for e in (info.get("layers") or []) + (info.get("tables") or []))
        return GenerateGeodatabaseParameters(
            extent=extent,
            layer_options=[GenerateLayerOption(i, use_geometry=extent is not None) for i in ids],
            sync_model=(
                SyncModel.PER_LAYER if caps.get("supportsPerLayerSync") else SyncModel.PER_REPLICA
            ),
            sync_direction=(
                SyncDirection.BIDIRECTIONAL
                if service_accepts_uploads(info)
                else SyncDirection.DOWNLOAD
            ),
        )

    def generate_geodatabase(
        self, params: GenerateGeodatabaseParameters, path: str | Path
    ) -> GenerateGeodatabaseJob:
        """A job that creates a replica and stores it in a new GeoPackage at ``path``."""
        return GenerateGeodatabaseJob(self, params, Path(path))

    # -- jobs --------------------------------------------------------------------------------
    def sync_geodatabase(
        self, params: SyncGeodatabaseParameters, geodatabase: Any
    ) -> SyncGeodatabaseJob:
        """A job that synchronizes ``geodatabase`` (a Geodatabase or a path); start or run it."""
        return SyncGeodatabaseJob(self, params, geodatabase)

    def unregister_geodatabase(self, geodatabase_or_replica_id: Any) -> None:
        """Unregister the replica on the service so it stops tracking changes for it."""
        if isinstance(geodatabase_or_replica_id, str) and _GUID.match(geodatabase_or_replica_id):
            replica_id = geodatabase_or_replica_id
        else:
            with _opened(geodatabase_or_replica_id) as gdb:
                replica_id = gdb.replica.replica_id
        self.client.unregister_replica(self.feature_service_url, replica_id)

    # -- the algorithm -----------------------------------------------------------------------
    def synchronize(
        self,
        geodatabase: Any,
        params: SyncGeodatabaseParameters,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> list[SyncLayerResult]:
        """Synchronize one geodatabase, blocking; returns one result per layer and table.

        Raises for failures of the whole geodatabase (service unreachable, replica unknown to
        the server, another sync running...). After a network failure the upload journal lets
        the next call finish the job: the message says so.
        """
        run = _GeodatabaseSync(self, params, progress or _no_progress, cancel or _never)
        with _opened(geodatabase) as gdb:
            return run.execute(gdb)


def _no_progress(fraction: float | None, message: str) -> None:
    return None


def _never() -> bool:
    return False


class _opened:
    """Use a Geodatabase as given, or open (and afterwards close) one from a path."""

    def __init__(self, geodatabase: Any) -> None:
        self._given = geodatabase
        self._owned = None

    def __enter__(self):
        if isinstance(self._given, (str, Path)):
            from .geodatabase import Geodatabase

            self._owned = Geodatabase.open(self._given)
            return self._owned
        return self._given

    def __exit__(self, *exc: object) -> None:
        if self._owned is not None:
            self._owned.close()


class SyncGeodatabaseJob(Job):
    """Synchronizes one geodatabase (SDK ``SyncGeodatabaseJob``); result: list of
    :class:`SyncLayerResult`."""

    def __init__(
        self, task: GeodatabaseSyncTask, params: SyncGeodatabaseParameters, geodatabase: Any
    ) -> None:
        super().__init__()
        self.task = task
        self.parameters = params
        self.geodatabase = geodatabase

    def _execute(self) -> list[SyncLayerResult]:
        return self.task.synchronize(
            self.geodatabase,
            self.parameters,
            progress=self._sub_progress(0.0, 1.0),
            cancel=self._cancel_requested,
        )


class GenerateGeodatabaseJob(Job):
    """Creates a geodatabase from the service (SDK ``GenerateGeodatabaseJob``); result: the
    path of the GeoPackage. A failed or cancelled run leaves no file and unregisters the
    replica it created."""

    def __init__(
        self, task: GeodatabaseSyncTask, params: GenerateGeodatabaseParameters, path: Path
    ) -> None:
        super().__init__()
        self.task = task
        self.parameters = params
        self.path = path.absolute()

    def _execute(self) -> Path:
        from .geodatabase import Geodatabase

        if self.path.exists():
            raise GeodatabaseError(f"{self.path} already exists; choose a new file name.")
        task, params = self.task, self.parameters
        client = task.client
        self._report(0.0, f"Reading {task.feature_service_url}")
        info = task.load()
        layer_infos = client.all_layer_infos(task.feature_service_url, info)
        wanted = {o.layer_id for o in params.layer_options} or set(layer_infos)
        layer_infos = {k: v for k, v in layer_infos.items() if k in wanted}
        replica_name = params.replica_name or f"{self.path.stem}_{uuid.uuid4().hex[:12]}"
        request = self._request(info, sorted(layer_infos), replica_name)
        partial = self.path.with_name(f".{self.path.stem}.partial.gpkg")
        _check_writable_folder(partial)
        replica_id = None
        try:
            result = client.create_replica(
                task.feature_service_url,
                request,
                progress=self._sub_progress(0.05, 0.4),
                cancel=self._cancel_requested,
            )
            with result:
                # One pass over the file: the header fills in as the events are read, so a
                # replicaID that follows the data is picked up after load_replica (or by name).
                header, events = result.read()
                replica_id = header.get("replicaID")
                self._report(0.4, "Storing the data")
                gdb = Geodatabase.create(
                    partial,
                    service_url=task.feature_service_url,
                    service_info=info,
                    layer_infos=layer_infos,
                    replica_name=replica_name,
                    sync_model=params.sync_model,
                )
                try:
                    gdb.load_replica(
                        header,
                        events,
                        progress=self._sub_progress(0.4, 0.98),
                        cancel=self._cancel_requested,
                    )
                    replica_id = header.get("replicaID") or replica_id
                finally:
                    gdb.close()
            updates.replace_geopackage(partial, self.path)
            updates.remove_geopackage(partial)  # what is left: its .synclock
        except BaseException:
            updates.remove_geopackage(partial)
            self._unregister(replica_id, replica_name)
            raise
        self._report(1.0, f"Created {self.path.name}")
        return self.path

    def _unregister(self, replica_id: str | None, replica_name: str) -> None:
        """Undo the replica of a failed run (found by its unique name when the result with
        its id never arrived)."""
        client, url = self.task.client, self.task.feature_service_url
        try:
            ids = (
                [replica_id]
                if replica_id
                else [
                    r.get("replicaID")
                    for r in client.replicas(url)
                    if r.get("replicaName") == replica_name
                ]
            )
            for rid in ids:
                if rid:
                    client.unregister_replica(url, rid)
        except OfflineMapSyncError as error:
            log.warning("Could not unregister the replica of a failed generate: %s", error)

    def _request(self, info: dict, layer_ids: list[int], replica_name: str) -> dict:
        params = self.parameters
        options = {o.layer_id: o for o in params.layer_options}
        queries = {}
        for layer_id in layer_ids:
            option = options.get(layer_id) or GenerateLayerOption(layer_id)
            queries[str(layer_id)] = {
                "queryOption": option.query_option,
                "where": option.where_clause or "1=1",
                "useGeometry": bool(option.use_geometry and params.extent is not None),
                "includeRelated": option.include_related,
            }
        extent = params.extent
        area = None
        if extent is not None:
            area = ("esriGeometryPolygon" if "rings" in extent else "esriGeometryEnvelope", extent)
        return create_replica_request(
            info,
            replica_name=replica_name,
            layer_queries=queries,
            sync_model=SyncModel(params.sync_model).value,
            sync_direction=SyncDirection(params.sync_direction).wire,
            return_attachments=params.return_attachments,
            attachments_sync_direction=AttachmentSyncDirection(
                params.attachment_sync_direction
            ).value,
            area=area,
        )


def _check_writable_folder(partial: Path) -> None:
    """Fail before any replica exists when the GeoPackage cannot be written where asked."""
    folder = partial.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise GeodatabaseError(f"The folder {folder} {what}; choose an existing folder.")
    try:
        with open(partial, "xb"):
            pass
        partial.unlink()
    except FileExistsError:
        pass  # a leftover of an earlier run: Geodatabase.create reports it
    except OSError as error:
        raise GeodatabaseError(
            f"Cannot write in the folder {folder}: {error.strerror or error}. Choose another "
            "folder."
        ) from None


def _counts_from(counts: Any, prefix: str) -> SyncCounts:
    """``<prefix>_adds``... of a commit report's per-layer counts."""
    return SyncCounts(
        adds=int(getattr(counts, f"{prefix}_adds", 0) or 0),
        updates=int(getattr(counts, f"{prefix}_updates", 0) or 0),
        deletes=int(getattr(counts, f"{prefix}_deletes", 0) or 0),
        attachments=int(getattr(counts, f"{prefix}_attachments", 0) or 0),
    )


class _GeodatabaseSync:
    """One run of the one-geodatabase algorithm (kept apart so its state is per run)."""

    def __init__(
        self,
        task: GeodatabaseSyncTask,
        params: SyncGeodatabaseParameters,
        progress: ProgressCallback,
        cancel: CancelCallback,
    ) -> None:
        self.task = task
        self.client = task.client
        self.url = task.feature_service_url
        self.params = params
        self.progress = progress
        self.cancel = cancel
        self.results: dict[int, SyncLayerResult] = {}

    def _check_cancel(self) -> None:
        if self.cancel():
            raise CancelledError("The sync was cancelled.")

    def execute(self, gdb: Any) -> list[SyncLayerResult]:
        self.gdb = gdb
        for layer in gdb.layers:
            self.results[layer.id] = SyncLayerResult(
                layer_id=layer.id,
                name=layer.name,
                is_table=bool(layer.is_table),
                service_url=self.url,
                geodatabase_path=Path(gdb.path) if getattr(gdb, "path", None) else None,
            )
        try:
            self.progress(0.0, f"Connecting to {self.url}")
            if getattr(gdb, "path", None):
                _check_writable(Path(gdb.path))
            self.info = self.task.load()
            self._check_schema()
            self._check_cancel()
            with gdb.sync_lock():
                self._run()
            self.progress(1.0, "Synchronized")
        except (NetworkError, BadAnswerError) as error:
            raise NetworkError(
                f"The sync with {self.url} was interrupted: {error} {RESYNC_HINT}"
            ) from error
        except OSError as error:
            # A full disk or an unwritable folder (temporary result file, deltas): the
            # geodatabase is only written in its own transactions, so it is unchanged.
            where = f" ({error.filename})" if getattr(error, "filename", None) else ""
            reason = error.strerror or str(error)
            advice = "Free some disk space or check the folder"
            if isinstance(error, (FileExistsError, NotADirectoryError)):
                reason = "a file is in the way where a folder is expected"
            elif isinstance(error, PermissionError):
                advice = "Check that you may write to that folder"
            raise OfflineMapSyncError(
                f"The sync of {Path(gdb.path).name} could not write a file{where}: {reason}. "
                f"{advice}, then sync again. {RESYNC_HINT}"
            ) from error
        return [self.results[k] for k in sorted(self.results)]

    # -- steps -------------------------------------------------------------------------------
    def _run(self) -> None:
        gdb = self.gdb
        entry = gdb.journal_open_entry()
        if entry is not None:
            self.progress(0.05, "Finishing the upload interrupted during the last sync")
            self._finish_journal(entry)
        self._check_cancel()

        replica = gdb.replica
        per_layer = SyncModel(replica.sync_model) == SyncModel.PER_LAYER
        layer_ids = [layer.id for layer in gdb.layers]
        if per_layer:
            directions = {i: self.params.direction_of(i) for i in layer_ids}
        else:
            directions = dict.fromkeys(layer_ids, SyncDirection(self.params.sync_direction))
        upload_ids = [i for i, d in directions.items() if d.uploads]
        download_ids = [i for i, d in directions.items() if d.downloads]

        snapshot = None
        if upload_ids and gdb.has_pending_edits():
            if not service_accepts_uploads(self.info):
                self.progress(
                    None,
                    "The service is download-only: local edits stay in the geodatabase and "
                    "are not uploaded.",
                )
            elif self._oversized_attachments(upload_ids):
                pass  # reported per layer; every local edit stays pending, downloads go on
            else:
                candidate = gdb.snapshot_upload(
                    layer_ids=upload_ids if per_layer else None,
                    only_adds=self.params.upload_only_new_features,
                )
                if not candidate.is_empty:
                    snapshot = candidate
        uploads = snapshot is not None
        downloads = bool(download_ids)
        if not uploads and not downloads:
            self.progress(1.0, "Nothing to synchronize")
            return

        if uploads and downloads:
            direction = SyncDirection.BIDIRECTIONAL
        elif uploads:
            direction = SyncDirection.UPLOAD
        else:
            direction = SyncDirection.DOWNLOAD
        request = self._request(direction, snapshot.edits if uploads else None)
        if per_layer:

            def layer_wire(layer_direction: SyncDirection) -> str:
                up = uploads and layer_direction.uploads
                down = layer_direction.downloads
                if up and down:
                    return SyncDirection.BIDIRECTIONAL.wire
                if up:
                    return SyncDirection.UPLOAD.wire
                return SyncDirection.DOWNLOAD.wire if down else SyncDirection.NONE.wire

            # Layers that do not move this time are left out (servers refuse "none").
            request["syncLayers"] = [
                {
                    "id": i,
                    "serverGen": int(replica.layer_gens.get(i, replica.server_gen or 0) or 0),
                    "syncDirection": layer_wire(directions[i]),
                }
                for i in layer_ids
                if layer_wire(directions[i]) != SyncDirection.NONE.wire
            ]
        else:
            request["replicaServerGen"] = int(replica.server_gen or 0)

        entry = gdb.journal_begin(snapshot) if uploads else None
        self.progress(0.15, "Uploading local edits" if uploads else "Requesting server changes")
        result = self._submit(request, entry)
        self._commit(result, snapshot, direction, download_ids if per_layer else None, entry)

    def _request(self, direction: SyncDirection, edits: list | None) -> dict:
        caps = self.info.get("syncCapabilities") or {}
        request: dict[str, Any] = {
            "replicaID": self.params.replica_id or self.gdb.replica.replica_id,
            "syncDirection": direction.wire,
            "async": supports_async(self.info),
            "transportType": "esriTransportTypeUrl",
            "dataFormat": "json",
            "returnIdsForAdds": False,
            "returnAttachmentsDatabyURL": False,
        }
        if caps.get("supportsRollbackOnFailure", True) is not False:
            request["rollbackOnFailure"] = bool(self.params.rollback_on_failure)
        if edits is not None:
            request["edits"] = edits
            if any(layer.true_curves for layer in self.gdb.layers):
                # Circular arcs are kept exactly, so the service may accept our updates of
                # curved features (onlyAllowTrueCurveUpdatesByTrueCurveClients).
                request["trueCurveClient"] = True
        return request

    def _submit(self, request: dict, entry: Any):
        """Send the request and return the result file; journal bookkeeping on failure."""

        def on_status_url(url: str) -> None:
            if entry is not None:
                self.gdb.journal_set_status_url(entry, url)

        try:
            return self.client.synchronize_replica(
                self.url,
                request,
                on_status_url=on_status_url,
                progress=self._phase(0.2, 0.6),
                cancel=self.cancel,
            )
        except (NetworkError, BadAnswerError, CancelledError):
            # The server may have applied the upload: keep the journal entry so the next sync
            # finishes it (poll the saved job, or resend the same edits).
            raise
        except ServiceError:
            # The server refused the request: nothing was applied, the edits stay pending.
            if entry is not None:
                self.gdb.journal_close(entry)
            raise

    def _commit(
        self,
        result: Any,
        snapshot: Any,
        direction: SyncDirection,
        layer_ids: list[int] | None,
        entry: Any,
    ) -> None:
        with result:
            self._keep_deltas(snapshot, result)
            self.progress(0.7, "Applying changes to the geodatabase")
            # Cancelling here rolls the whole commit back; the journal then lets the next
            # sync pick the upload up again. The reader is closed with the result file.
            try:
                header, events = result.read()
                report = self.gdb.commit_sync(
                    snapshot,
                    header,
                    events,
                    direction=direction,
                    layer_ids=layer_ids,
                    progress=self._phase(0.7, 0.95),
                    cancel=self.cancel,
                )
            except ServiceError as error:
                # Only the result file raises ServiceError here (cut off or damaged); nothing
                # was committed and the journal still holds the upload.
                raise NetworkError(f"The result from the server was damaged: {error}") from error
        if entry is not None:
            self.gdb.journal_close(entry)
        self._merge(report)

    def _finish_journal(self, entry: Any) -> None:
        """Complete an upload whose answer never arrived: the server may or may not have it."""
        result = None
        status_url = getattr(entry, "status_url", None)
        if status_url:
            try:
                final = self.client.poll_job(
                    status_url, progress=self._phase(0.05, 0.1), cancel=self.cancel
                )
                result = self.client.result_from_answer(final, status_url, cancel=self.cancel)
            except (NetworkError, BadAnswerError, CancelledError):
                raise
            except ServiceError:
                result = None  # job or result gone: resend below (replays are idempotent)
        snapshot = entry.snapshot
        if result is None:
            # Upload only: acknowledging the edits must not move the download generation; the
            # regular sync that follows downloads from where the geodatabase stands.
            request = self._request(SyncDirection.UPLOAD, entry.edits)
            replica = self.gdb.replica
            if SyncModel(replica.sync_model) == SyncModel.PER_LAYER:
                request["syncLayers"] = [
                    {
                        "id": i,
                        "serverGen": int(replica.layer_gens.get(i, 0) or 0),
                        "syncDirection": "upload",
                    }
                    for i in sorted({int(e["id"]) for e in entry.edits})
                ]
            else:
                request["replicaServerGen"] = int(replica.server_gen or 0)
            result = self._submit(request, entry)
        self._commit(result, snapshot, SyncDirection.UPLOAD, None, entry)

    # -- checks ------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        """Refuse to sync when the service's layers changed incompatibly since the geodatabase
        was made: uploads would be refused edit by edit and downloads would store values of
        the wrong type. New fields are fine (they are not downloaded)."""
        current = self.client.service_layers(self.url)
        changes = []
        for layer in self.gdb.layers:
            for change in schema_changes(layer, current.get(int(layer.id))):
                changes.append(f"{layer.name}: {change}")
        if changes:
            raise SchemaChangedError(
                f"The service {self.url} changed since this geodatabase was made "
                f"({'; '.join(changes)}). Nothing was synchronized and local edits stay "
                "pending. Take the data offline again to get the new structure (upload or copy "
                "pending edits first), or ask the service owner to restore the fields.",
                changes,
            )

    def _oversized_attachments(self, layer_ids: list[int]) -> bool:
        """Report pending attachments too large to upload on their layers; True if any."""
        limit = int(self.params.max_attachment_upload_bytes)
        found = False
        for layer in self.gdb.layers:
            if layer.id not in layer_ids or not layer.attachment_table:
                continue
            table = layer.attachment_table
            rows = self.gdb.conn.execute(
                f'SELECT a."ATT_NAME", a."REL_GLOBALID", length(a."DATA") FROM {quote(table)} a '
                f'WHERE length(a."DATA") > ? AND EXISTS (SELECT 1 FROM oms_changes c WHERE '
                f"c.table_name = ? AND c.fid = a.{quote(ATTACHMENT_FID)} AND c.op <> 'delete')",
                (limit, table),
            ).fetchall()
            if not rows:
                continue
            found = True
            listed = ", ".join(
                f"'{name}' ({_megabytes(size)}) of feature {parent}" for name, parent, size in rows
            )
            self.results[layer.id].error = (
                f"Local edits were not uploaded: the attachment {listed} is larger than the "
                f"{_megabytes(limit)} a sync can upload. Remove it or replace it with a smaller "
                "file; every local edit stays pending until then."
            )
        return found

    # -- helpers -----------------------------------------------------------------------------
    def _phase(self, start: float, end: float) -> ProgressCallback:
        def progress(fraction: float | None, message: str) -> None:
            overall = None if fraction is None else start + (end - start) * fraction
            self.progress(overall, message)

        return progress

    def _keep_deltas(self, snapshot: Any, result: Any) -> None:
        if not self.params.keep_geodatabase_deltas:
            return
        gdb_path = Path(self.gdb.path)
        folder = self.params.deltas_folder or gdb_path.with_name(gdb_path.stem + "_deltas")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        base = f"{gdb_path.stem}_{stamp}"
        if snapshot is not None:
            (folder / f"{base}_upload.json").write_text(
                json.dumps(snapshot.edits, ensure_ascii=False), encoding="utf-8"
            )
        result.copy_to(folder / f"{base}_download.json")

    def _merge(self, report: Any) -> None:
        _merge_report(report, self.results)


def _check_writable(path: Path) -> None:
    """A geodatabase the user cannot write (read-only file or folder, e.g. a map on a DVD or a
    shared drive) can be viewed but not synchronized: say so before anything is sent."""
    folder = path.parent
    if os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK):
        return
    what = "file" if not os.access(path, os.W_OK) else "folder"
    raise GeodatabaseError(
        f"{path.name} is read-only (its {what} cannot be written): it can be viewed but not "
        "synchronized. Copy the offline map to a folder you can write to and sync the copy; "
        "nothing was changed."
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


_TYPE_FAMILIES = {
    "esriFieldTypeSmallInteger": "integer",
    "esriFieldTypeInteger": "integer",
    "esriFieldTypeBigInteger": "integer",
    "esriFieldTypeOID": "integer",
    "esriFieldTypeSingle": "real",
    "esriFieldTypeDouble": "real",
    "esriFieldTypeGlobalID": "guid",
    "esriFieldTypeGUID": "guid",
    "esriFieldTypeDate": "date",
    "esriFieldTypeTimestampOffset": "date",
}
_TYPE_FAMILIES_LOWER = {k.lower(): v for k, v in _TYPE_FAMILIES.items()}


def schema_changes(layer: Any, current: dict | None) -> list[str]:
    """What changed in a layer's service definition (``current``, None = gone) that makes
    syncing the stored ``layer`` unsafe: removed uploadable fields, changed field types,
    another geometry type."""
    if current is None:
        return ["the layer or table no longer exists on the service"]
    changes = []
    fields = {str(f.get("name", "")).lower(): f for f in current.get("fields") or []}
    for stored in layer.fields:
        now = fields.get(stored.name.lower())
        if now is None:
            if stored.uploadable:
                changes.append(f"the field '{stored.name}' was removed")
            continue
        old_type, new_type = stored.esri_type, str(now.get("type") or "")
        if _type_family(old_type) != _type_family(new_type):
            changes.append(f"the field '{stored.name}' changed from {old_type} to {new_type}")
    stored_geometry = layer.geometry_type
    new_geometry = current.get("geometryType")
    if stored_geometry and new_geometry and not _same_geometry_type(stored_geometry, new_geometry):
        changes.append(f"the geometry type changed from {stored_geometry} to {new_geometry}")
    return changes


def _type_family(esri_type: str) -> str:
    # Esri enumerations are case-insensitive (services differ in spelling).
    return _TYPE_FAMILIES_LOWER.get(esri_type.lower(), esri_type.lower())


def _same_geometry_type(stored: str, current: str) -> bool:
    try:
        return normalize_geometry_type(stored) == normalize_geometry_type(current)
    except UnsupportedGeometryError:
        return stored.lower() == current.lower()


def _merge_report(report: Any, results: dict[int, SyncLayerResult]) -> None:
    """Add a geodatabase commit report's per-layer counts and errors to ``results``."""
    for layer_id, counts in report.layers.items():
        result = results.get(int(layer_id))
        if result is None:
            continue
        result.uploaded.add(_counts_from(counts, "uploaded"))
        result.downloaded.add(_counts_from(counts, "downloaded"))
        result.conflicts += int(counts.conflicts or 0)
        for error in counts.edit_errors:
            kind = f"attachment {error.operation}" if error.is_attachment else error.operation
            result.edit_errors.append(
                EditError(
                    global_id=error.global_id,
                    kind=kind,
                    code=error.code,
                    message=error.description or "",
                )
            )


# ---------------------------------------------------------------------------------------------
# The offline map


class OfflineMapSyncTask:
    """Synchronizes an offline map with its services (SDK ``OfflineMapSyncTask``).

    ``offline_map`` is an :class:`OfflineMap` or its folder. Call :meth:`load` (it opens the
    manifest and checks every geodatabase), then :meth:`create_offline_map_sync_job`.
    """

    def __init__(
        self,
        offline_map: Union[OfflineMap, str, Path],
        credentials: CredentialProvider | None = None,
        *,
        client: ArcGISClient | None = None,
    ) -> None:
        self._source = offline_map
        self.offline_map: OfflineMap | None = (
            offline_map if isinstance(offline_map, OfflineMap) else None
        )
        self.credentials = credentials
        self.client = client or ArcGISClient(credentials)
        self.load_status = LoadStatus.NOT_LOADED
        self.load_error: BaseException | None = None
        self._cancel_load = False

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> None:
        """Open the map and validate its geodatabases; raises (and keeps ``load_error``) on
        failure. Loading a loaded task does nothing."""
        if self.load_status == LoadStatus.LOADED:
            return
        self.load_status = LoadStatus.LOADING
        self._cancel_load = False
        try:
            if self.offline_map is None:
                self.offline_map = OfflineMap.open(self._source)
            for entry in self.offline_map.geodatabases:
                if self._cancel_load:
                    raise CancelledError("Loading the offline map was cancelled.")
                self.offline_map.open_geodatabase(entry).close()
        except BaseException as error:
            self.load_status = LoadStatus.FAILED_TO_LOAD
            self.load_error = error
            raise
        self.load_error = None
        self.load_status = LoadStatus.LOADED

    def retry_load(self) -> None:
        """Load again after a failure (e.g. once a missing file is back)."""
        if self.load_status in (LoadStatus.FAILED_TO_LOAD, LoadStatus.NOT_LOADED):
            self.load_status = LoadStatus.NOT_LOADED
            if not isinstance(self._source, OfflineMap):
                self.offline_map = None
            self.load()

    def cancel_load(self) -> None:
        self._cancel_load = True

    def _loaded_map(self) -> OfflineMap:
        self.load()
        assert self.offline_map is not None
        return self.offline_map

    def _map_even_if_damaged(self) -> OfflineMap:
        """The map whose manifest opened, even when one of its geodatabases is damaged: a
        sync reports that one by name and still syncs the others."""
        try:
            return self._loaded_map()
        except GeodatabaseError:
            if self.offline_map is None:
                raise
            return self.offline_map

    # -- what can be done --------------------------------------------------------------------
    @property
    def update_capabilities(self) -> OfflineMapUpdateCapabilities:
        return self._loaded_map().update_capabilities

    def check_for_updates(self) -> OfflineMapUpdatesInfo:
        """Whether there is something to upload and (for scheduled-update maps) to download.

        Download availability is Indeterminate for maps that sync with feature services: only
        a sync can tell (as in the SDK).
        """
        offline_map = self._loaded_map()
        mode = offline_map.update_mode
        uploads_allowed = mode in (
            PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES,
            PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES,
        )
        only_adds = mode == PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES
        upload = OfflineUpdateAvailability.NONE
        download = OfflineUpdateAvailability.NONE
        size = 0
        reopen = False
        for entry in offline_map.geodatabases:
            with offline_map.open_geodatabase(entry) as gdb:
                if uploads_allowed and not entry.download_only:
                    counts = gdb.pending_counts()
                    pending = any(
                        (c.get("adds", 0) if only_adds else sum(c.values())) > 0
                        for c in counts.values()
                    )
                    if pending:
                        upload = OfflineUpdateAvailability.AVAILABLE
                if offline_map.update_capabilities.supports_scheduled_updates_for_features:
                    needed = updates.ScheduledUpdateSource(self.client, self._portal_url()).check(
                        entry.package_item_id,
                        updates.local_generation(gdb),
                        gdb.replica.replica_id,
                    )
                    reopen = reopen or needed.reopen_required
                    size += needed.download_size
                    if needed.available:
                        download = OfflineUpdateAvailability.AVAILABLE
        if mode == PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES and offline_map.geodatabases:
            download = OfflineUpdateAvailability.INDETERMINATE
        return OfflineMapUpdatesInfo(
            download_availability=download,
            upload_availability=upload,
            scheduled_updates_download_size=size,
            is_mobile_map_package_reopen_required=reopen,
        )

    def _portal_url(self) -> str:
        portal = self._loaded_map().source.portal_url
        if not portal:
            raise OfflineMapSyncError(
                "This offline map does not say which portal its scheduled updates come from."
            )
        return portal

    def create_default_offline_map_sync_parameters(self) -> OfflineMapSyncParameters:
        """Defaults reflecting the map: bidirectional for maps that sync with their services
        (download when every geodatabase is download-only), download for scheduled updates."""
        offline_map = self._map_even_if_damaged()
        mode = offline_map.update_mode
        all_download_only = bool(offline_map.geodatabases) and all(
            e.download_only for e in offline_map.geodatabases
        )
        if mode == PreplannedUpdateMode.NO_UPDATES:
            direction = SyncDirection.NONE
        elif mode == PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES or all_download_only:
            direction = SyncDirection.DOWNLOAD
        else:
            direction = SyncDirection.BIDIRECTIONAL
        scheduled = (
            PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
            if offline_map.update_capabilities.supports_scheduled_updates_for_features
            else PreplannedScheduledUpdatesOption.NO_UPDATES
        )
        return OfflineMapSyncParameters(
            sync_direction=direction, preplanned_scheduled_updates_option=scheduled
        )

    def create_offline_map_sync_job(self, params: OfflineMapSyncParameters) -> OfflineMapSyncJob:
        """A job that synchronizes every geodatabase of the map; ``start()`` or ``run()`` it."""
        return OfflineMapSyncJob(self, params)


class OfflineMapSyncJob(Job):
    """Synchronizes an offline map (SDK ``OfflineMapSyncJob``); result:
    :class:`OfflineMapSyncResult`. Safe to ``run()`` from a ``QgsTask``: it touches no Qt."""

    def __init__(self, task: OfflineMapSyncTask, params: OfflineMapSyncParameters) -> None:
        super().__init__()
        self.task = task
        self.parameters = params

    def _execute(self) -> OfflineMapSyncResult:
        offline_map = self.task._map_even_if_damaged()
        params = self.parameters
        mode = offline_map.update_mode
        result = OfflineMapSyncResult()
        entries = offline_map.geodatabases
        scheduled = (
            offline_map.update_capabilities.supports_scheduled_updates_for_features
            and params.preplanned_scheduled_updates_option
            == PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
            and SyncDirection(params.sync_direction).downloads
        )
        deltas_folder = offline_map.folder.with_name(offline_map.folder.name + "_deltas")
        for number, entry in enumerate(entries):
            self._check_cancelled()
            start, end = number / len(entries), (number + 1) / len(entries)
            self._report(start, f"Synchronizing {entry.title or entry.file}")
            layer_results = self._blank_results(entry)
            try:
                with offline_map.open_geodatabase(entry) as gdb:
                    direction = self._feature_service_direction(entry, mode)
                    if direction != SyncDirection.NONE:
                        task = GeodatabaseSyncTask(entry.service_url, client=self.task.client)
                        gdb_params = SyncGeodatabaseParameters(
                            sync_direction=direction,
                            rollback_on_failure=params.rollback_on_failure,
                            upload_only_new_features=(
                                mode
                                == PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES
                            ),
                            keep_geodatabase_deltas=params.keep_geodatabase_deltas,
                            max_attachment_upload_bytes=params.max_attachment_upload_bytes,
                            deltas_folder=deltas_folder,
                            replica_id=entry.upload_replica_id,
                        )
                        middle = end if not scheduled else start + (end - start) / 2
                        for layer_result in task.synchronize(
                            gdb,
                            gdb_params,
                            progress=self._sub_progress(start, middle),
                            cancel=self._cancel_requested,
                        ):
                            layer_results[layer_result.layer_id] = _with_entry_names(
                                layer_result, layer_results.get(layer_result.layer_id)
                            )
                    if _uploads_only_new_features(mode):
                        # Never silently dropped: they stay local and are reported.
                        for layer_id, count in updates.edits_not_uploadable(gdb).items():
                            if layer_id in layer_results:
                                layer_results[layer_id].edit_errors.append(
                                    EditError(
                                        global_id=None,
                                        kind="update",
                                        code=None,
                                        message=f"{count} local change(s) to features that came "
                                        "from the service were not uploaded: this map uploads "
                                        "only new features. They stay in the geodatabase.",
                                    )
                                )
                # Scheduled updates run after the upload of new features (which must come first
                # when the geodatabase has to be downloaded anew), with the file closed here.
                if scheduled:
                    outcome = updates.update_geodatabase(
                        self.task.client,
                        self.task._portal_url(),
                        offline_map,
                        entry,
                        keep_deltas_in=deltas_folder if params.keep_geodatabase_deltas else None,
                        progress=self._sub_progress(start + (end - start) / 2, end),
                        cancel=self._cancel_requested,
                    )
                    for report in outcome.reports:
                        _merge_report(report, layer_results)
                    result.is_mobile_map_package_reopen_required |= outcome.replaced
            except CancelledError:
                raise
            except Exception as error:
                # One geodatabase failing must not stop the others (ARCHITECTURE.md).
                if isinstance(error, OfflineMapSyncError):
                    message = str(error)
                else:
                    log.exception("Unexpected error while synchronizing %s", entry.file)
                    message = f"Unexpected error ({type(error).__name__}): {error}"
                result.geodatabase_errors[entry.file] = message
                self._report(None, f"{entry.title or entry.file}: {message}")
                for layer_result in layer_results.values():
                    layer_result.error = message
            for layer_result in sorted(layer_results.values(), key=lambda r: r.layer_id):
                target = result.table_results if layer_result.is_table else result.layer_results
                target.append(layer_result)
        self._report(1.0, "Sync finished with errors" if result.has_errors else "Sync finished")
        return result

    def _feature_service_direction(
        self, entry: GeodatabaseEntry, mode: PreplannedUpdateMode
    ) -> SyncDirection:
        direction = SyncDirection(self.parameters.sync_direction)
        if mode == PreplannedUpdateMode.NO_UPDATES:
            return SyncDirection.NONE
        if mode == PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES:
            return SyncDirection.NONE  # changes come as update packages, not from the service
        if mode == PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES:
            return SyncDirection.UPLOAD if direction.uploads else SyncDirection.NONE
        if entry.download_only and direction.uploads:
            return SyncDirection.DOWNLOAD if direction.downloads else SyncDirection.NONE
        return direction

    @staticmethod
    def _blank_results(entry: GeodatabaseEntry) -> dict[int, SyncLayerResult]:
        return {
            layer.id: SyncLayerResult(
                layer_id=layer.id,
                name=layer.title,
                is_table=layer.is_table,
                service_url=entry.service_url,
                geodatabase_path=entry.path,
            )
            for layer in entry.layers
        }


def _uploads_only_new_features(mode: PreplannedUpdateMode) -> bool:
    return mode == PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES


def _with_entry_names(result: SyncLayerResult, blank: SyncLayerResult | None) -> SyncLayerResult:
    """Prefer the map's layer title (what the user sees) over the service's layer name."""
    if blank is not None and blank.name:
        result.name = blank.name
    return result


__all__: Iterable[str] = [
    "EditError",
    "GeodatabaseError",
    "GeodatabaseSyncTask",
    "LoadStatus",
    "OfflineMapSyncJob",
    "OfflineMapSyncParameters",
    "OfflineMapSyncResult",
    "OfflineMapSyncTask",
    "OfflineMapUpdatesInfo",
    "SyncCounts",
    "SyncGeodatabaseJob",
    "SyncGeodatabaseParameters",
    "SyncLayerOption",
    "SyncLayerResult",
]
