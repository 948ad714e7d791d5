"""Synchronize an offline map with its services (SDK ``OfflineMapSyncTask``).

The offline-map task runs :meth:`GeodatabaseSyncTask.synchronize` for each of its geodatabases,
one after the other (then their scheduled update packages); a failure in one is reported in the
result and does not stop the others.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Union

from . import scheduled_updates
from .enums import (
    OfflineUpdateAvailability,
    PreplannedScheduledUpdatesOption,
    PreplannedUpdateMode,
    SyncDirection,
)
from .errors import (
    CancelledError,
    GeodatabaseError,
    OfflineMapSyncError,
)
from .geodatabase_sync import GeodatabaseSyncTask, merge_report
from .jobs import Job
from .offline_map import GeodatabaseEntry, OfflineMap, OfflineMapUpdateCapabilities
from .rest import (
    ArcGISClient,
    CredentialProvider,
)
from .sync_model import (
    LoadStatus,
    OfflineMapSyncParameters,
    OfflineMapSyncResult,
    OfflineMapUpdatesInfo,
    RejectedEdit,
    SyncGeodatabaseParameters,
    SyncLayerResult,
)
from .tracking import edits_not_uploadable

log = logging.getLogger(__name__)


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
        upload = OfflineUpdateAvailability.NONE
        download = OfflineUpdateAvailability.NONE
        size = 0
        reopen = False
        for entry in offline_map.geodatabases:
            if mode.downloads_from_feature_services:
                # What the server holds is only known by a sync, but an unreachable service
                # must not read as "checked": ask it for its description.
                self.client.service_info(entry.service_url)
            with offline_map.open_geodatabase(entry) as gdb:
                if offline_map.edits_to_upload(entry, gdb.pending_counts()):
                    upload = OfflineUpdateAvailability.AVAILABLE
                if offline_map.update_capabilities.supports_scheduled_updates_for_features:
                    needed = scheduled_updates.ScheduledUpdateSource(
                        self.client, self._portal_url()
                    ).check(
                        entry.package_item_id,
                        gdb.replica.data_generation,
                        gdb.replica.replica_id,
                    )
                    reopen = reopen or needed.reopen_required
                    size += needed.download_size
                    if needed.available:
                        download = OfflineUpdateAvailability.AVAILABLE
        if mode.downloads_from_feature_services and offline_map.geodatabases:
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
        elif not mode.syncs_with_feature_services or all_download_only:
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
                            upload_only_new_features=mode.uploads_only_new_features,
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
                    if mode.uploads_only_new_features:
                        # Never silently dropped: they stay local and are reported.
                        for layer_id, count in edits_not_uploadable(gdb.pending_counts()).items():
                            if layer_id in layer_results:
                                layer_results[layer_id].edit_errors.append(
                                    RejectedEdit(
                                        layer_id=layer_id,
                                        global_id=None,
                                        operation="update",
                                        code=None,
                                        message=f"{count} local change(s) to features that came "
                                        "from the service were not uploaded: this map uploads "
                                        "only new features. They stay in the geodatabase.",
                                    )
                                )
                # Scheduled updates run after the upload of new features (which must come first
                # when the geodatabase has to be downloaded anew), with the file closed here.
                if scheduled:
                    outcome = scheduled_updates.update_geodatabase(
                        self.task.client,
                        self.task._portal_url(),
                        offline_map,
                        entry,
                        keep_deltas_in=deltas_folder if params.keep_geodatabase_deltas else None,
                        progress=self._sub_progress(start + (end - start) / 2, end),
                        cancel=self._cancel_requested,
                    )
                    for report in outcome.reports:
                        merge_report(report, layer_results)
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
        direction = mode.feature_service_direction(SyncDirection(self.parameters.sync_direction))
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


def _with_entry_names(result: SyncLayerResult, blank: SyncLayerResult | None) -> SyncLayerResult:
    """Prefer the map's layer title (what the user sees) over the service's layer name."""
    if blank is not None and blank.name:
        result.name = blank.name
    return result


__all__: Iterable[str] = ["OfflineMapSyncJob", "OfflineMapSyncTask"]
