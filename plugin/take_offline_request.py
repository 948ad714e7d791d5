"""A request to take a map offline, as the dialog and the Processing algorithms collect it, and
the job that carries it out with the core ``OfflineMapTask``: on demand (an area of interest) or
ahead of time (a preplanned map area's packages)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.basemap import BasemapEstimate, BasemapOptions
from .core.enums import PreplannedUpdateMode
from .core.errors import OfflineMapSyncError
from .core.jobs import Job
from .core.rest import ArcGISClient, CredentialProvider
from .core.take_offline import (
    DownloadPreplannedOfflineMapResult,
    GenerateOfflineMapResult,
    LayerQuery,
    OfflineMapTask,
    PreplannedMapArea,
)
from .core.webmap import OfflineSettings
from .resources import tr


def basemap_mode_labels() -> list[tuple[str, str]]:
    """The basemap modes (``BasemapOptions.mode``) with their labels, in the order the dialog
    and the Processing algorithms offer them."""
    return [
        ("download", tr("Download for the area")),
        ("online", tr("Keep online")),
        ("local", tr("Use a local tile file")),
        ("none", tr("None")),
    ]


@dataclass
class TakeOfflineRequest:
    """What to take offline: a web map (portal + item) or service URLs, an area, a folder.

    Ahead of time instead of on demand: set ``map_area`` (an area listed by
    :func:`list_map_areas`) or ``map_area_name`` (its item id or title, looked up when the job
    runs) and ``update_mode``; the area of interest, attachments and schema-only layers are then
    the package's and are ignored. ``authcfg`` is the id of a QGIS authentication configuration
    (never a secret itself).
    """

    folder: Path
    portal_url: str | None = None
    webmap_item_id: str | None = None
    service_urls: list[str] = field(default_factory=list)
    area_of_interest: dict[str, Any] | None = None
    #: None = as the web map's offline settings say (services: with attachments).
    include_attachments: bool | None = None
    title: str = ""
    authcfg: str = ""
    #: Layers taken offline without rows (schema only), as (service URL, layer id).
    schema_only_layers: list[tuple[str, int]] = field(default_factory=list)
    map_area: PreplannedMapArea | None = None
    map_area_name: str = ""
    update_mode: PreplannedUpdateMode = PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES
    #: What becomes of the web map's basemap (on demand and preplanned).
    basemap: BasemapOptions = field(default_factory=BasemapOptions)

    @property
    def is_preplanned(self) -> bool:
        """True when a preplanned map area is downloaded instead of taking the map on demand."""
        return self.map_area is not None or bool(self.map_area_name.strip())

    @property
    def auth_url(self) -> str:
        """The URL the credentials are for (the portal, or the first service)."""
        return self.portal_url or (self.service_urls[0] if self.service_urls else "")

    @property
    def credential_urls(self) -> list[str]:
        """Every URL known now that the credentials would be used for (portal and services)."""
        return [self.portal_url, *self.service_urls]

    def offline_task(self, credentials: CredentialProvider | None = None) -> OfflineMapTask:
        """The core task for this request's web map or services (raises for a bad source)."""
        return OfflineMapTask(
            portal_url=self.portal_url,
            webmap_item_id=self.webmap_item_id,
            service_urls=self.service_urls or None,
            client=ArcGISClient(credentials),
        )


class _RequestJob(Job):
    """A job on a take-offline request's web map or services."""

    def __init__(
        self, request: TakeOfflineRequest, credentials: CredentialProvider | None = None
    ) -> None:
        super().__init__()
        self.request = request
        # Built here (main thread) so that a bad request fails before a task starts.
        self.offline_task = request.offline_task(credentials)


class TakeOfflineJob(_RequestJob):
    """Reads the web map or services and makes the offline map, all in the job's thread
    (reading a web map already goes to the network). The result is a
    ``GenerateOfflineMapResult``, or a ``DownloadPreplannedOfflineMapResult`` for a map area;
    both have ``offline_map`` and ``skipped_layers``."""

    def __init__(
        self, request: TakeOfflineRequest, credentials: CredentialProvider | None = None
    ) -> None:
        super().__init__(request, credentials)
        self._inner: Job | None = None
        self._inner_lock = threading.Lock()

    def cancel(self) -> None:
        super().cancel()
        with self._inner_lock:
            if self._inner is not None:
                self._inner.cancel()

    def _execute(self) -> GenerateOfflineMapResult | DownloadPreplannedOfflineMapResult:
        request = self.request
        if request.is_preplanned:
            return self._download_map_area()
        self._report(0.0, "Reading the map")
        parameters = self.offline_task.create_default_generate_offline_map_parameters(
            request.area_of_interest
        )
        if request.include_attachments is not None:
            parameters.include_attachments = request.include_attachments
        if request.title:
            parameters.title = request.title
        parameters.basemap = request.basemap
        for service_url, layer_id in request.schema_only_layers:
            parameters.set_layer_query(service_url, layer_id, LayerQuery(query_option="none"))
        self._check_cancelled()
        return self._run_inner(self.offline_task.generate_offline_map(parameters, request.folder))

    def _download_map_area(self) -> DownloadPreplannedOfflineMapResult:
        request = self.request
        area = request.map_area
        if area is None:
            self._report(0.0, "Reading the map areas")
            area = find_map_area(self.offline_task.preplanned_map_areas(), request.map_area_name)
        self._check_cancelled()
        task = self.offline_task
        parameters = task.create_default_download_preplanned_offline_map_parameters(area)
        parameters.update_mode = PreplannedUpdateMode(request.update_mode)
        parameters.basemap = request.basemap
        if request.title:
            parameters.title = request.title
        return self._run_inner(task.download_preplanned_offline_map(parameters, request.folder))

    def _run_inner(self, inner: Job):
        inner.add_progress_listener(lambda percent, message: self._report(percent / 100.0, message))
        with self._inner_lock:
            self._inner = inner
        if self.is_cancelled:
            inner.cancel()
        return inner.run()


class EstimateBasemapJob(_RequestJob):
    """Estimates the tiles and bytes of the request's basemap download (network), for the
    extent the download would use; a cancel stops it at the next request. The result is a
    ``BasemapEstimate`` (empty for services: they have no basemap)."""

    def _execute(self) -> BasemapEstimate:
        self._report(0.0, "Estimating the basemap")
        return self.offline_task.estimate_basemap(
            self.request.area_of_interest,
            self.request.basemap,
            cancelled=lambda: self.is_cancelled,
        )


@dataclass(frozen=True)
class SourceLayer:
    """A layer or table that a take-offline request would take (for choosing what gets rows)."""

    title: str
    service_url: str
    layer_id: int
    is_table: bool = False


def list_source_layers(
    request: TakeOfflineRequest, credentials: CredentialProvider | None = None
) -> list[SourceLayer]:
    """The feature-service layers and tables that the request takes offline (network): the
    core's own reading of the web map or services, so the list matches what goes offline."""
    return list_source(request, credentials)[0]


def list_source(
    request: TakeOfflineRequest, credentials: CredentialProvider | None = None
) -> tuple[list[SourceLayer], OfflineSettings]:
    """:func:`list_source_layers`, and the web map's offline settings (the defaults of the
    request's choices), from one reading of the web map. A request the job would refuse (no
    source, or both a web map and services) is refused alike, with ValueError."""
    task = request.offline_task(credentials)
    layers = [
        SourceLayer(layer.title, plan.service_url, layer.id, layer.is_table)
        for plan, layer in task.source_layers()
    ]
    return layers, task.offline_settings()


def list_map_areas(
    request: TakeOfflineRequest, credentials: CredentialProvider | None = None
) -> list[PreplannedMapArea]:
    """The preplanned map areas of the request's web map, with their package sizes (network).

    Raises ValueError when the request names no web map (services have no map areas).
    """
    if not (request.portal_url and request.webmap_item_id):
        raise ValueError("Preplanned map areas belong to a web map: give a portal and an item ID.")
    return request.offline_task(credentials).preplanned_map_areas()


def find_map_area(areas: list[PreplannedMapArea], name: str) -> PreplannedMapArea:
    """The area whose item id or title is ``name`` (ids first; titles ignore case).

    Raises OfflineMapSyncError naming the areas there are when none (or several) match.
    """
    wanted = name.strip()
    by_id = [area for area in areas if area.item_id == wanted]
    if by_id:
        return by_id[0]
    by_title = [area for area in areas if area.title.strip().lower() == wanted.lower()]
    if len(by_title) == 1:
        return by_title[0]
    if not areas:
        raise OfflineMapSyncError("The web map has no preplanned map areas.")
    choices = "; ".join(f"'{area.title}' ({area.item_id})" for area in areas)
    if by_title:
        raise OfflineMapSyncError(
            f"Several map areas are titled '{wanted}': give the item ID of one of {choices}."
        )
    raise OfflineMapSyncError(f"The web map has no map area '{wanted}'. Its map areas: {choices}.")


def update_mode_labels() -> list[tuple[PreplannedUpdateMode, str]]:
    """The update modes of a preplanned map area, in the order the dialog offers them."""
    return [
        (
            PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES,
            tr("Synchronize with the feature services (edit and sync)"),
        ),
        (
            PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES,
            tr("Download the portal's scheduled updates (read-only)"),
        ),
        (
            PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES,
            tr("Scheduled updates, and upload new features"),
        ),
        (PreplannedUpdateMode.NO_UPDATES, tr("No updates (a read-only copy)")),
    ]
