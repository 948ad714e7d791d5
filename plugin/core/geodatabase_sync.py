"""Synchronize one geodatabase with its feature service (SDK ``GeodatabaseSyncTask``), and
generate a new one from the service.

:meth:`GeodatabaseSyncTask.synchronize` is the one place where a geodatabase is synchronized
(ARCHITECTURE.md, "Synchronizing one geodatabase"): lock, finish an interrupted upload, snapshot
the pending edits, journal them, submit, poll, fetch the result, commit in one transaction.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

from .enums import (
    AttachmentSyncDirection,
    SyncDirection,
    SyncModel,
)
from .errors import (
    CancelledError,
    GeodatabaseError,
    NetworkError,
    OfflineMapSyncError,
    SchemaChangedError,
    ServiceError,
)
from .geodatabase import Geodatabase
from .geodatabase_model import CommitReport, JournalEntry, UploadSnapshot
from .jobs import Job, sub_progress
from .replica_download import ReplicaDownloads, check_writable_folder, unique_replica_name
from .rest import (
    ArcGISClient,
    BadAnswerError,
    CancelCallback,
    CredentialProvider,
    ProgressCallback,
    ReplicaResultFile,
    create_replica_request,
)
from .service import (
    accepts_edits,
    check_sync_allowed,
    schema_changes,
    supports_async,
    supports_per_layer_sync,
    supports_rollback_on_failure,
)
from .sync_model import (
    GenerateGeodatabaseParameters,
    GenerateLayerOption,
    LayerQuery,
    RejectedEdit,
    SyncGeodatabaseParameters,
    SyncLayerOption,
    SyncLayerResult,
)

#: A geodatabase, or the path of one to open (and close again) for the call.
GeodatabaseOrPath = Union[Geodatabase, str, Path]

log = logging.getLogger(__name__)

_GUID = re.compile(r"^\{?[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\}?$")

RESYNC_HINT = "Syncing again will resolve it; no local edit is lost."


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
            check_sync_allowed(info, self.feature_service_url)
            self._service_info = info
        return self._service_info

    @property
    def service_info(self) -> dict | None:
        return self._service_info

    # -- parameters --------------------------------------------------------------------------
    def create_default_sync_geodatabase_parameters(
        self,
        geodatabase: GeodatabaseOrPath,
        sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL,
    ) -> SyncGeodatabaseParameters:
        """Defaults for ``geodatabase``: bidirectional (download only when the service takes
        no edits), with one option per layer when the replica is per-layer."""
        with _opened(geodatabase) as gdb:
            info = self.load()
            direction = sync_direction
            if direction.uploads and not accepts_edits(info):
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
        ids = sorted(int(e["id"]) for e in (info.get("layers") or []) + (info.get("tables") or []))
        return GenerateGeodatabaseParameters(
            extent=extent,
            layer_options=[
                GenerateLayerOption(i, LayerQuery(use_geometry=extent is not None)) for i in ids
            ],
            sync_model=(
                SyncModel.PER_LAYER if supports_per_layer_sync(info) else SyncModel.PER_REPLICA
            ),
            sync_direction=(
                SyncDirection.BIDIRECTIONAL if accepts_edits(info) else SyncDirection.DOWNLOAD
            ),
        )

    def generate_geodatabase(
        self, params: GenerateGeodatabaseParameters, path: str | Path
    ) -> GenerateGeodatabaseJob:
        """A job that creates a replica and stores it in a new GeoPackage at ``path``."""
        return GenerateGeodatabaseJob(self, params, Path(path))

    # -- jobs --------------------------------------------------------------------------------
    def sync_geodatabase(
        self, params: SyncGeodatabaseParameters, geodatabase: GeodatabaseOrPath
    ) -> SyncGeodatabaseJob:
        """A job that synchronizes ``geodatabase`` (a Geodatabase or a path); start or run it."""
        return SyncGeodatabaseJob(self, params, geodatabase)

    def unregister_geodatabase(self, geodatabase_or_replica_id: GeodatabaseOrPath) -> None:
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
        geodatabase: GeodatabaseOrPath,
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

    def __init__(self, geodatabase: GeodatabaseOrPath) -> None:
        self._given = geodatabase
        self._owned: Geodatabase | None = None

    def __enter__(self) -> Geodatabase:
        if isinstance(self._given, (str, Path)):
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
        self,
        task: GeodatabaseSyncTask,
        params: SyncGeodatabaseParameters,
        geodatabase: GeodatabaseOrPath,
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
        if self.path.exists():
            raise GeodatabaseError(f"{self.path} already exists; choose a new file name.")
        task, params = self.task, self.parameters
        client = task.client
        self._report(0.0, f"Reading {task.feature_service_url}")
        info = task.load()
        layer_infos = client.all_layer_infos(task.feature_service_url, info)
        wanted = {o.layer_id for o in params.layer_options} or set(layer_infos)
        layer_infos = {k: v for k, v in layer_infos.items() if k in wanted}
        replica_name = params.replica_name or unique_replica_name(self.path.stem)
        request = self._request(info, sorted(layer_infos), replica_name)
        check_writable_folder(self.path)
        made = ReplicaDownloads(client, self._cancel_requested)
        try:
            made.download_geodatabase(
                task.feature_service_url,
                request,
                self.path,
                service_info=info,
                layer_infos=layer_infos,
                title=self.path.stem,
                progress=self._sub_progress(0.05, 0.98),
            )
        except BaseException:
            made.undo()
            raise
        self._report(1.0, f"Created {self.path.name}")
        return self.path

    def _request(self, info: dict, layer_ids: list[int], replica_name: str) -> dict:
        params = self.parameters
        options = {o.layer_id: o for o in params.layer_options}
        queries = {}
        for layer_id in layer_ids:
            option = options.get(layer_id) or GenerateLayerOption(layer_id)
            queries[str(layer_id)] = option.query.request(has_area=params.extent is not None)
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

    def execute(self, gdb: Geodatabase) -> list[SyncLayerResult]:
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
            if not accepts_edits(self.info):
                self.progress(
                    None,
                    "The service is download-only: local edits stay in the geodatabase and "
                    "are not uploaded.",
                )
            else:
                candidate = gdb.snapshot_upload(
                    layer_ids=upload_ids if per_layer else None,
                    only_adds=self.params.upload_only_new_features,
                    max_attachment_bytes=int(self.params.max_attachment_upload_bytes),
                )
                # Attachments too large to upload stay pending and are reported; the limit
                # costs the other edits nothing.
                self._report_skipped_attachments(candidate)
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
        request: dict[str, Any] = {
            "replicaID": self.params.replica_id or self.gdb.replica.replica_id,
            "syncDirection": direction.wire,
            "async": supports_async(self.info),
            "transportType": "esriTransportTypeUrl",
            "dataFormat": "json",
            "returnIdsForAdds": False,
            "returnAttachmentsDatabyURL": False,
        }
        if supports_rollback_on_failure(self.info):
            request["rollbackOnFailure"] = bool(self.params.rollback_on_failure)
        if edits is not None:
            request["edits"] = edits
            if any(layer.true_curves for layer in self.gdb.layers):
                # Circular arcs are kept exactly, so the service may accept our updates of
                # curved features (onlyAllowTrueCurveUpdatesByTrueCurveClients).
                request["trueCurveClient"] = True
        return request

    def _submit(self, request: dict, entry: JournalEntry | None) -> ReplicaResultFile:
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
        result: ReplicaResultFile,
        snapshot: UploadSnapshot | None,
        direction: SyncDirection,
        layer_ids: list[int] | None,
        entry: JournalEntry | None,
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

    def _finish_journal(self, entry: JournalEntry) -> None:
        """Complete an upload whose answer never arrived: the server may or may not have it."""
        result = None
        status_url = entry.status_url
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
        current = self.client.all_layer_infos(self.url, self.info)
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

    def _report_skipped_attachments(self, snapshot: UploadSnapshot) -> None:
        """Report, on their layers, the attachments the snapshot left out as too large."""
        limit = int(self.params.max_attachment_upload_bytes)
        for item in snapshot.skipped_attachments:
            self.results[item.layer_id].edit_errors.append(
                RejectedEdit(
                    item.layer_id,
                    item.global_id,
                    item.op,
                    None,
                    f"The attachment '{item.name}' ({_megabytes(item.size)}) of feature "
                    f"{item.parent_global_id} was not uploaded: it is larger than the "
                    f"{_megabytes(limit)} a sync can upload. It stays pending; remove it or "
                    "replace it with a smaller file. The other edits were synchronized.",
                    True,
                )
            )

    # -- helpers -----------------------------------------------------------------------------
    def _phase(self, start: float, end: float) -> ProgressCallback:
        return sub_progress(self.progress, start, end)

    def _keep_deltas(self, snapshot: UploadSnapshot | None, result: ReplicaResultFile) -> None:
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

    def _merge(self, report: CommitReport) -> None:
        merge_report(report, self.results)


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


def merge_report(report: CommitReport, results: dict[int, SyncLayerResult]) -> None:
    """Add a geodatabase commit report's per-layer counts and errors to ``results``."""
    for layer_id, counts in report.layers.items():
        result = results.get(int(layer_id))
        if result is None:
            continue
        result.uploaded.add(counts.uploaded)
        result.downloaded.add(counts.downloaded)
        result.conflicts += int(counts.conflicts or 0)
        result.edit_errors.extend(counts.edit_errors)
