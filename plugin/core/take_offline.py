"""Take a map offline: on demand (one createReplica per feature service) or ahead of time
(download a preplanned map area's packages), into GeoPackages.

On demand mirrors the SDK's ``OfflineMapTask.generateOfflineMap``: read the web map (or take the
given service URLs), check that every service can sync, create a replica of each service for
the area of interest, stream each result file into its own geodatabase, and write the offline
map's manifest last. Ahead of time mirrors ``downloadPreplannedOfflineMap``: list the web map's
map areas, download the chosen area's package per service, and record the update mode. A run
that fails or is cancelled removes every file it made and unregisters the replicas it created,
so there is never a half-made map.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .basemap import (
    BasemapDownloads,
    BasemapEstimate,
    BasemapLayer,
    BasemapOptions,
    BasemapPackage,
    basemap_layers,
    check_local_file,
    estimate_basemap,
    recorded_entries,
)
from .enums import (
    AttachmentSyncDirection,
    PreplannedUpdateMode,
    ReturnLayerAttachmentOption,
    SyncModel,
)
from .errors import (
    CancelledError,
    NotSyncEnabledError,
    OfflineMapSyncError,
    ServiceError,
    UnsupportedGeometryError,
)
from .geodatabase import Geodatabase
from .geometry import normalize_geometry_type
from .gpkg_files import move_geopackage
from .jobs import Job
from .offline_map import (
    BasemapEntry,
    GeodatabaseEntry,
    LayerEntry,
    MapSource,
    OfflineMap,
    OfflineMapManifest,
    unique_file_stem,
)
from .replica_download import ReplicaDownloads, unique_replica_name
from .rest import ArcGISClient, create_replica_request
from .scheduled_updates import (
    PackageInfo,
    ScheduledUpdateSource,
    adopt_replica,
    geodatabase_from_package,
)
from .service import (
    accepts_edits,
    check_sync_allowed,
    supports_per_layer_sync,
    supports_per_replica_sync,
)
from .sync_model import LayerQuery
from .tile_scheme import mercator_extent
from .tracking import install_adds_only_guards
from .webmap import (
    FEATURE_SERVER,
    OfflineSettings,
    ServicePlan,
    SkippedLayer,
    clean_service_url,
    fill_layers_from_service,
    layer_url,
    offline_settings,
    plans_from_service_urls,
    plans_from_webmap,
    service_name,
)

log = logging.getLogger(__name__)


#: Why a basemap cannot be downloaded (or estimated) without any extent.
NO_BASEMAP_EXTENT = (
    "The basemap cannot be downloaded: the map has no area or extent to take it for. Give an "
    "area of interest, or keep the basemap online."
)


# -- parameters and results ------------------------------------------------------------------
@dataclass
class GenerateOfflineMapParameters:
    """What to take offline (SDK ``GenerateOfflineMapParameters``).

    ``area_of_interest``: an Esri JSON envelope or polygon with its ``spatialReference``
    (None = the whole services). ``layer_queries`` is keyed by layer URL
    (``<service url>/<layer id>``, see :func:`layer_url`). ``sync_model`` None means per-layer
    where the service supports it, else per-replica. With
    ``definition_expression_filter_enabled`` a web map layer's definition expression also
    limits the rows taken offline.

    :meth:`OfflineMapTask.create_default_generate_offline_map_parameters` fills the attachment
    option and direction, the schema-only switches and ``sync_data_options`` from the web
    map's offline settings; what is set here afterwards wins. A layer query set with
    :meth:`set_layer_query` wins over ``return_schema_only_for_tables``.
    """

    area_of_interest: dict[str, Any] | None
    title: str = ""
    return_layer_attachment_option: ReturnLayerAttachmentOption = (
        ReturnLayerAttachmentOption.ALL_LAYERS
    )
    attachment_sync_direction: AttachmentSyncDirection = AttachmentSyncDirection.BIDIRECTIONAL
    layer_queries: dict[str, LayerQuery] = field(default_factory=dict)
    sync_model: SyncModel | None = None
    return_schema_only_for_editable_layers: bool = False
    #: Standalone tables go offline with their schema and no rows.
    return_schema_only_for_tables: bool = False
    definition_expression_filter_enabled: bool = True
    #: createReplica's ``syncDataOptions`` bitmask (None = not sent).
    sync_data_options: int | None = None
    #: The web map's basemap: downloaded for the area (levels 0-16) unless said otherwise.
    basemap: BasemapOptions = field(default_factory=BasemapOptions)

    @property
    def include_attachments(self) -> bool:
        """True when some layers bring their attachments."""
        return self.return_layer_attachment_option is not ReturnLayerAttachmentOption.NONE

    @include_attachments.setter
    def include_attachments(self, value: bool) -> None:
        self.return_layer_attachment_option = (
            ReturnLayerAttachmentOption.ALL_LAYERS if value else ReturnLayerAttachmentOption.NONE
        )

    def apply(self, settings: OfflineSettings) -> None:
        """Take a web map's offline settings as these parameters' values."""
        self.return_layer_attachment_option = settings.return_layer_attachment_option
        self.attachment_sync_direction = settings.attachment_sync_direction
        self.return_schema_only_for_editable_layers = (
            settings.return_schema_only_for_editable_layers
        )
        self.return_schema_only_for_tables = settings.return_schema_only_for_tables
        self.sync_data_options = settings.sync_data_options

    def set_layer_query(self, service_url: str, layer_id: int, query: LayerQuery) -> None:
        """Set the query of one layer or table."""
        self.layer_queries[layer_url(service_url, layer_id)] = query


@dataclass(frozen=True)
class _TakeOfflineResult:
    offline_map: OfflineMap
    skipped_layers: tuple[SkippedLayer, ...] = ()

    @property
    def has_errors(self) -> bool:
        """True when an operational layer or table of the map could not be taken offline."""
        return any(not layer.basemap for layer in self.skipped_layers)


@dataclass(frozen=True)
class GenerateOfflineMapResult(_TakeOfflineResult):
    """The offline map made, and the web map layers left out (basemaps, non-feature layers)."""


@dataclass(frozen=True)
class PreplannedMapArea:
    """A preplanned map area of a web map (SDK ``PreplannedMapArea``).

    ``area_of_interest`` is the area's Esri JSON geometry (with ``spatialReference``);
    ``extent`` the portal item's ``[[xmin, ymin], [xmax, ymax]]`` in degrees; ``packages`` one
    per feature service, with their sizes.
    """

    item_id: str
    title: str
    area_of_interest: dict[str, Any] | None
    extent: list | None
    packages: tuple[PackageInfo, ...]
    snippet: str = ""
    #: The area's basemap: Tile Package and Vector Tile Package items the portal prepared.
    basemap_packages: tuple[BasemapPackage, ...] = ()

    @property
    def package_count(self) -> int:
        """Packages to download: one per feature service, and the basemap packages."""
        return len(self.packages) + len(self.basemap_packages)

    @property
    def size(self) -> int:
        """Bytes to download: the sum of the package sizes (basemap packages included)."""
        return sum(package.size for package in self.packages) + sum(
            package.size for package in self.basemap_packages
        )

    @property
    def outline(self) -> dict[str, Any] | None:
        """The area as Esri JSON: its area of interest, else its item's extent (degrees, as
        an envelope in WGS 84); None when the portal gave neither."""
        if self.area_of_interest:
            return self.area_of_interest
        try:
            (xmin, ymin), (xmax, ymax) = self.extent or ()
        except (TypeError, ValueError):
            return None
        return {
            "xmin": xmin,
            "ymin": ymin,
            "xmax": xmax,
            "ymax": ymax,
            "spatialReference": {"wkid": 4326},
        }


@dataclass
class DownloadPreplannedOfflineMapParameters:
    """What to download for a map area (SDK ``DownloadPreplannedOfflineMapParameters``).

    ``update_mode`` decides how the map is kept current: NoUpdates, SyncWithFeatureServices
    (the geodatabases get replicas of their own and sync like on-demand ones),
    DownloadScheduledUpdates (read-only updates from the portal's update packages) or
    DownloadScheduledUpdatesAndUploadNewFeatures (those, plus uploading new features only).
    """

    map_area: PreplannedMapArea
    update_mode: PreplannedUpdateMode = PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES
    title: str = ""
    #: The basemap: the area's basemap packages are downloaded unless said otherwise.
    basemap: BasemapOptions = field(default_factory=BasemapOptions)


@dataclass(frozen=True)
class DownloadPreplannedOfflineMapResult(_TakeOfflineResult):
    """The offline map made from a map area, and the web map layers left out."""


# -- the task ------------------------------------------------------------------------------------
class OfflineMapTask:
    """Takes a web map (portal item) or a list of feature services offline on demand.

    Give either ``portal_url`` + ``webmap_item_id`` or ``service_urls``. ``client`` is an
    :class:`~plugin.core.rest.ArcGISClient` carrying the credentials; a default client without
    credentials is made when none is given.
    """

    def __init__(
        self,
        *,
        portal_url: str | None = None,
        webmap_item_id: str | None = None,
        service_urls: Iterable[str] | None = None,
        client: Any = None,
    ) -> None:
        urls = tuple(clean_service_url(url) for url in service_urls or ())
        if bool(portal_url and webmap_item_id) == bool(urls):
            raise ValueError(
                "Give either a portal URL and web map item id, or feature service URLs."
            )
        for url in urls:
            if not FEATURE_SERVER.match(url):
                raise ServiceError(
                    f"{url} is not a feature service URL (…/FeatureServer).", url=url
                )
        if client is None:
            client = ArcGISClient()
        self.client = client
        self.portal_url = portal_url.rstrip("/") if portal_url else None
        self.webmap_item_id = webmap_item_id
        self.service_urls = urls
        self._webmap: tuple[dict, dict] | None = None

    def webmap(self) -> tuple[dict, dict]:
        """The web map's portal item and its data (``operationalLayers``, ``tables``); cached."""
        if self._webmap is None:
            item = self.client.portal_item(self.portal_url, self.webmap_item_id)
            if item.get("type") and item.get("type") != "Web Map":
                raise ServiceError(
                    f"The portal item {self.webmap_item_id} is a '{item.get('type')}', not a web map.",
                    url=self.portal_url,
                )
            data = self.client.portal_item_data(self.portal_url, self.webmap_item_id)
            self._webmap = (item, data)
        return self._webmap

    def webmap_extent(self) -> dict | None:
        """Where the web map opens (its initial viewpoint's geometry); None without one."""
        if not self.webmap_item_id:
            return None
        _, data = self.webmap()
        target = ((data.get("initialState") or {}).get("viewpoint") or {}).get("targetGeometry")
        return target if isinstance(target, dict) else None

    def estimate_basemap(
        self,
        area_of_interest: dict[str, Any] | None,
        options: BasemapOptions,
        cancelled: Callable[[], bool] | None = None,
    ) -> BasemapEstimate:
        """What downloading the web map's basemap would take, for the same extent as
        :meth:`generate_offline_map` takes it: the area of interest, else where the web map
        opens, else where its first service does. Services have no basemap (empty estimate)."""
        if not self.webmap_item_id:
            return BasemapEstimate((), 0, 0)
        area = parse_area_of_interest(area_of_interest) if area_of_interest else None
        plans: list[ServicePlan] = []
        if area is None and self.webmap_extent() is None:
            plans = self.plan_services([])
            for plan in plans[:1]:
                plan.service_info = self.client.service_info(plan.service_url)
        extent = _initial_extent(area, self.webmap_extent(), plans)
        layers = basemap_layers(self.webmap()[1])
        if extent is None:
            if any(layer.downloadable for layer in layers) and options.mode == "download":
                raise ServiceError(NO_BASEMAP_EXTENT)
            return BasemapEstimate((), 0, 0)
        return estimate_basemap(self.client, layers, mercator_extent(extent), options, cancelled)

    def plan_services(self, skipped: list[SkippedLayer]) -> list[ServicePlan]:
        """The feature services that go offline, each with the layers and tables the web map
        lists (plans from service URLs get theirs from the service, see
        :meth:`source_layers`); web map layers left out go to ``skipped``."""
        if self.webmap_item_id:
            _, data = self.webmap()
            return plans_from_webmap(data, skipped)
        return plans_from_service_urls(self.service_urls)

    def source_layers(self) -> list[tuple[ServicePlan, LayerEntry]]:
        """Every layer and table that goes offline, with its service (reads the web map, or
        each service's description)."""
        skipped: list[SkippedLayer] = []
        plans = self.plan_services(skipped)
        for plan in plans:
            if not plan.layers:
                fill_layers_from_service(plan, self.client.service_info(plan.service_url), skipped)
        return [(plan, layer) for plan in plans for layer in plan.layers]

    def create_default_generate_offline_map_parameters(
        self, area_of_interest: dict[str, Any] | None
    ) -> GenerateOfflineMapParameters:
        """Parameters taking every layer and table of the map offline for ``area_of_interest``,
        titled like the web map (or the services), as the web map's offline settings say
        (without settings, and for services: everything, with attachments)."""
        if area_of_interest is not None:
            parse_area_of_interest(area_of_interest)
        parameters = GenerateOfflineMapParameters(
            area_of_interest=area_of_interest, title=self.default_title()
        )
        parameters.apply(self.offline_settings())
        return parameters

    def offline_settings(self) -> OfflineSettings:
        """The web map's offline settings (the defaults for services)."""
        if self.webmap_item_id:
            _, data = self.webmap()
            return offline_settings(data)
        return OfflineSettings()

    def default_title(self) -> str:
        """The web map's title, or the names of the services."""
        if self.webmap_item_id:
            item, _ = self.webmap()
            return str(item.get("title") or self.webmap_item_id)
        return ", ".join(service_name(url) for url in self.service_urls)

    def generate_offline_map(
        self, parameters: GenerateOfflineMapParameters, folder: str | os.PathLike[str]
    ) -> GenerateOfflineMapJob:
        """A job that makes the offline map in ``folder`` (new or empty). Call ``run()`` or
        ``start()`` on it."""
        return GenerateOfflineMapJob(self, parameters, Path(folder))

    # -- ahead of time ---------------------------------------------------------------------------
    def preplanned_map_areas(self) -> list[PreplannedMapArea]:
        """The web map's preplanned map areas (portal ``Map2Area``), each with its packages
        (``Area2Package``) and their sizes. Empty for a web map without areas."""
        if not self.webmap_item_id:
            raise ValueError("Preplanned map areas belong to a web map; this task has none.")
        client, portal = self.client, self.portal_url
        areas = []
        for item in client.portal_related_items(portal, self.webmap_item_id, "Map2Area", "forward"):
            packages = client.portal_related_items(portal, item["id"], "Area2Package", "forward")
            geometry = (item.get("properties") or {}).get("geometry")
            basemap = tuple(BasemapPackage.of(p) for p in packages if BasemapPackage.is_one(p))
            areas.append(
                PreplannedMapArea(
                    item_id=str(item["id"]),
                    title=str(item.get("title") or item["id"]),
                    area_of_interest=geometry if isinstance(geometry, dict) else None,
                    extent=item.get("extent"),
                    packages=tuple(
                        PackageInfo.from_item(p) for p in packages if not BasemapPackage.is_one(p)
                    ),
                    snippet=str(item.get("snippet") or ""),
                    basemap_packages=basemap,
                )
            )
        return areas

    def create_default_download_preplanned_offline_map_parameters(
        self, map_area: PreplannedMapArea
    ) -> DownloadPreplannedOfflineMapParameters:
        """Download ``map_area`` and keep it current by syncing with its feature services."""
        return DownloadPreplannedOfflineMapParameters(map_area=map_area, title=map_area.title)

    def download_preplanned_offline_map(
        self, parameters: DownloadPreplannedOfflineMapParameters, folder: str | os.PathLike[str]
    ) -> DownloadPreplannedOfflineMapJob:
        """A job that downloads a map area into ``folder`` (new or empty)."""
        return DownloadPreplannedOfflineMapJob(self, parameters, Path(folder))


# -- the job ---------------------------------------------------------------------------------
class GenerateOfflineMapJob(Job[GenerateOfflineMapResult]):
    """Makes an on-demand offline map (SDK ``GenerateOfflineMapJob``).

    ``run()`` returns a :class:`GenerateOfflineMapResult` or raises: NotSyncEnabledError,
    ServiceError/AuthenticationError, NetworkError, UnsupportedGeometryError,
    OfflineMapSyncError (target folder not empty), CancelledError.
    """

    def __init__(
        self, task: OfflineMapTask, parameters: GenerateOfflineMapParameters, folder: Path
    ) -> None:
        super().__init__()
        self.task = task
        self.parameters = parameters
        self.builder = _MapBuilder(self, task, parameters, folder)

    def _execute(self) -> GenerateOfflineMapResult:
        area = (
            parse_area_of_interest(self.parameters.area_of_interest)
            if self.parameters.area_of_interest
            else None
        )
        with self.builder.undone_on_failure() as made:
            self._report(0.0, "Reading the map")
            plans, skipped, initial_extent = self.builder.plan()
            self._check_cancelled()
            extent = _initial_extent(area, initial_extent, plans)
            basemaps = self.builder.take_basemap_offline(extent, None, skipped, 0.05, 0.35)
            share = 0.6 / len(plans)
            entries = []
            for index, plan in enumerate(plans):
                start = 0.35 + index * share
                entries.append(self._take_service_offline(plan, area, made, start, start + share))
            self._check_cancelled()
            self._report(0.97, "Writing the offline map")
            offline_map = self.builder.write_map(
                OfflineMapManifest(
                    title=self.parameters.title or self.task.default_title(),
                    source=self.builder.source(),
                    update_mode=PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES,
                    geodatabases=tuple(entries),
                    area_of_interest=self.parameters.area_of_interest,
                    initial_extent=extent,
                    basemaps=basemaps,
                )
            )
        self._report(1.0, f"The map '{offline_map.title}' is offline")
        return GenerateOfflineMapResult(offline_map, tuple(skipped))

    def _take_service_offline(
        self,
        plan: ServicePlan,
        area: tuple[str, dict] | None,
        made: ReplicaDownloads,
        start: float,
        end: float,
    ) -> GeodatabaseEntry:
        request = self.builder.replica_parameters(
            plan, area, unique_replica_name(self.parameters.title or plan.title)
        )
        self._report(start, f"Requesting the data of {plan.title}")
        made.download_geodatabase(
            plan.service_url,
            request,
            self.builder.folder / plan.file,
            service_info=plan.service_info,
            layer_infos=plan.layer_infos,
            title=plan.title,
            progress=self._sub_progress(start, end),
        )
        return GeodatabaseEntry(
            file=plan.file,
            service_url=plan.service_url,
            title=plan.title,
            layers=tuple(plan.layers),
            download_only=plan.download_only,
        )


class _MapBuilder:
    """The steps both take-offline jobs share: the map's folder, planning and checking the
    services, replica requests and the manifest (composed into each job, so that either can
    change without the other)."""

    def __init__(
        self,
        job: Job,
        task: OfflineMapTask,
        parameters: GenerateOfflineMapParameters,
        folder: Path,
    ) -> None:
        self.job = job
        self.task = task
        self.parameters = parameters
        self.folder = folder.absolute()

    @contextmanager
    def undone_on_failure(self) -> Iterator[ReplicaDownloads]:
        """Prepare the map's folder and yield the record of what the run makes; if the run
        fails (or is cancelled) all of it is undone."""
        made = ReplicaDownloads(self.task.client, self.job._cancel_requested)
        self.basemap_downloads = BasemapDownloads(
            self.folder, self.task.client, self.job._cancel_requested
        )
        folder_created = self._prepare_folder()
        try:
            yield made
        except BaseException as error:
            made.undo()
            # An interrupted basemap download is continued by the next run into this folder;
            # a cancelled run leaves nothing.
            keep = not isinstance(error, CancelledError)
            self.basemap_downloads.undo(keep_partial=keep)
            if folder_created and not (keep and self.basemap_downloads.has_partial()):
                shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def write_map(self, manifest: OfflineMapManifest) -> OfflineMap:
        """Write the manifest into the folder and open the finished map (which checks it)."""
        OfflineMap.write_manifest(self.folder, manifest)
        return OfflineMap.open(self.folder)

    def _prepare_folder(self) -> bool:
        """Check the map's folder (new or empty); True when this run created it."""
        folder = self.folder
        if folder.exists():
            if not folder.is_dir():
                raise OfflineMapSyncError(
                    f"{folder} is a file; choose a new or empty folder for the offline map."
                )
            if any(folder.iterdir()) and not BasemapDownloads.only_partial(folder):
                raise OfflineMapSyncError(
                    f"The folder {folder} is not empty; choose a new or empty folder for the offline map."
                )
        else:
            try:
                folder.mkdir(parents=True)
            except OSError as error:
                raise OfflineMapSyncError(
                    f"The folder {folder} cannot be created: {error.strerror}."
                ) from None
            return True
        return False

    def take_basemap_offline(
        self,
        extent: dict | None,
        packages: tuple[BasemapPackage, ...] | None,
        skipped: list[SkippedLayer],
        start: float,
        end: float,
    ) -> tuple[BasemapEntry, ...]:
        """The web map's basemap, as the parameters' basemap options say: downloaded (a map
        area's ``packages``; on demand, None: from the services for ``extent``), recorded as
        online or local, or left out. Layers not downloaded go to ``skipped``."""
        preplanned = packages is not None
        packages = packages or ()
        options = self.parameters.basemap
        layers: list[BasemapLayer] = []
        if self.task.webmap_item_id:
            layers = basemap_layers(self.task.webmap()[1])
        job, downloads = self.job, self.basemap_downloads
        if options.mode != "download":
            reason = {
                "online": "basemap layer kept online, as chosen",
                "local": "basemap layer replaced by the chosen local basemap file",
                "none": "basemap layer left out, as chosen (no basemap)",
            }[options.mode]
            for layer in layers:
                skipped.append(SkippedLayer(layer.title, layer.service_url, reason, basemap=True))
            entries = list(recorded_entries(layers, options))
            if options.mode == "local" and not entries:
                path = check_local_file(options.local_path or "")
                title = BasemapLayer(path.stem, "raster", "")
                job._report(start, f"Converting the basemap {path.name}")
                entries.append(
                    downloads.from_package_file(path, title, job._sub_progress(start, end))
                )
            return tuple(entries)
        entries = []
        for layer in layers:
            if not layer.downloadable:
                skipped.append(
                    SkippedLayer(
                        layer.title,
                        layer.service_url,
                        f"basemap layers of this kind ({layer.layer_type or 'unknown'}) cannot "
                        "be downloaded; it stays online",
                        basemap=True,
                    )
                )
        if preplanned:
            # The map area's packages stand for the web map's layers of their kind; the other
            # layers stay online (the portal prepared no basemap for them: the area may be far
            # too large to fetch it here). Listed bottom to top, as the web map orders them.
            share = (end - start) / max(1, len(packages))
            made: dict[int, BasemapEntry] = {}
            for index, package in enumerate(packages):
                layer = package.matching_layer([lay for lay in layers if id(lay) not in made])
                at = start + index * share
                job._report(at, f"Downloading the basemap {layer.title}")
                made[id(layer)] = downloads.from_package_item(
                    self.task.portal_url or "", package, layer, job._sub_progress(at, at + share)
                )
            for layer in layers:
                if layer.downloadable and id(layer) not in made:
                    skipped.append(
                        SkippedLayer(
                            layer.title,
                            layer.service_url,
                            "the map area has no basemap package for this layer; it stays online",
                            basemap=True,
                        )
                    )
            in_order = [made.pop(id(lay), None) or lay.online_entry() for lay in layers]
            return tuple(in_order + list(made.values()))
        wanted = [layer for layer in layers if layer.downloadable]
        if wanted and extent is None:
            raise ServiceError(NO_BASEMAP_EXTENT)
        area = mercator_extent(extent) if wanted else (0.0, 0.0, 0.0, 0.0)
        services = downloads.check_limit(wanted, area, options) if wanted else []
        by_layer = {id(service.layer): service for service in services}
        share = (end - start) / max(1, len(services))
        index = 0
        for layer in layers:
            service = by_layer.get(id(layer))
            if service is None:
                entries.append(layer.online_entry())
                continue
            at = start + index * share
            index += 1
            job._check_cancelled()
            job._report(at, f"Downloading the basemap {layer.title}")
            entries.append(downloads.download(service, area, job._sub_progress(at, at + share)))
        return tuple(entries)

    def plan(self) -> tuple[list[ServicePlan], list[SkippedLayer], dict | None]:
        task = self.task
        skipped: list[SkippedLayer] = []
        plans = task.plan_services(skipped)
        initial_extent = task.webmap_extent()
        if not plans:
            raise ServiceError("The map has no feature service layers that can be taken offline.")
        # Check every service before creating any replica: a refusal leaves nothing behind.
        for index, plan in enumerate(plans):
            self.job._report(0.05 * index / len(plans), f"Checking {plan.title}")
            self.job._check_cancelled()
            self._check_service(plan, skipped)
        names: set[str] = set()
        for plan in plans:
            plan.file = _unique_file_name(plan.title, names)
        return plans, skipped, initial_extent

    def _check_service(self, plan: ServicePlan, skipped: list[SkippedLayer]) -> None:
        client = self.task.client
        info = client.service_info(plan.service_url)
        check_sync_allowed(info, plan.service_url)
        infos = client.all_layer_infos(plan.service_url, info)
        fill_layers_from_service(plan, info, skipped)
        kept = []
        for layer in plan.layers:
            if layer.id not in infos:
                skipped.append(
                    SkippedLayer(
                        layer.title,
                        layer_url(plan.service_url, layer.id),
                        "the service has no such layer",
                    )
                )
                continue
            kept.append(layer)
        if not kept:
            raise ServiceError(
                f"The service {plan.service_url} has none of the map's layers.",
                url=plan.service_url,
            )
        for layer in kept:
            layer_info = infos[layer.id]
            name = layer_info.get("name", layer.id)
            if not _global_id_field(layer_info):
                raise NotSyncEnabledError(
                    f"The layer '{name}' of the service {plan.service_url} has no "
                    "GlobalID field, which sync requires."
                )
            geometry_type = layer_info.get("geometryType")
            if geometry_type and layer_info.get("type") != "Table":
                try:
                    normalize_geometry_type(geometry_type)
                except UnsupportedGeometryError:
                    raise UnsupportedGeometryError(
                        f"The layer '{name}' of the service {plan.service_url} has {geometry_type} "
                        "geometries; only points, multipoints, lines and polygons can be taken offline."
                    ) from None
        plan.layers = kept
        plan.service_info = info
        plan.layer_infos = {layer.id: infos[layer.id] for layer in kept}
        plan.download_only = not accepts_edits(info)

    def replica_parameters(
        self, plan: ServicePlan, area: tuple[str, dict] | None, replica_name: str
    ) -> dict:
        parameters = self.parameters
        per_layer = supports_per_layer_sync(plan.service_info)
        per_replica = supports_per_replica_sync(plan.service_info)
        if parameters.sync_model is SyncModel.PER_REPLICA and per_replica:
            sync_model = SyncModel.PER_REPLICA
        elif parameters.sync_model is SyncModel.PER_LAYER and per_layer:
            sync_model = SyncModel.PER_LAYER
        else:
            sync_model = SyncModel.PER_LAYER if per_layer else SyncModel.PER_REPLICA
        # A replica brings attachments for all its layers or none: a service's layers are
        # editable or read-only together here (download-only services are read-only).
        return_attachments = parameters.return_layer_attachment_option.includes(
            editable=not plan.download_only
        )
        direction = AttachmentSyncDirection(parameters.attachment_sync_direction)
        if not return_attachments and direction is AttachmentSyncDirection.BIDIRECTIONAL:
            # Without downloaded attachments, new ones taken in the field can still go up.
            direction = AttachmentSyncDirection.UPLOAD
        return create_replica_request(
            plan.service_info,
            replica_name=replica_name,
            layer_queries=self._layer_queries(plan, area is not None),
            sync_model=sync_model.value,
            sync_direction="bidirectional",
            return_attachments=return_attachments,
            attachments_sync_direction=direction.value,
            area=area,
            sync_data_options=parameters.sync_data_options,
        )

    def _layer_queries(self, plan: ServicePlan, has_area: bool) -> dict[str, dict]:
        parameters = self.parameters
        queries = {}
        for layer in plan.layers:
            chosen = parameters.layer_queries.get(layer_url(plan.service_url, layer.id))
            if chosen is None and layer.is_table and parameters.return_schema_only_for_tables:
                chosen = LayerQuery(query_option="none")
            query = chosen or LayerQuery()
            where = (query.where or "").strip()
            definition = (layer.definition_expression or "").strip()
            if parameters.definition_expression_filter_enabled and definition:
                where = definition if where in ("", "1=1") else f"({where}) AND ({definition})"
            option = query.query_option
            if parameters.return_schema_only_for_editable_layers and _is_editable(plan, layer.id):
                option = "none"
            queries[str(layer.id)] = query.request(
                has_area=has_area and not layer.is_table, where=where, query_option=option
            )
        return queries

    def source(self) -> MapSource:
        task = self.task
        if task.webmap_item_id:
            item, _ = task.webmap()
            return MapSource(
                portal_url=task.portal_url,
                webmap_item_id=task.webmap_item_id,
                webmap_title=item.get("title"),
            )
        return MapSource(service_urls=task.service_urls)


class DownloadPreplannedOfflineMapJob(Job[DownloadPreplannedOfflineMapResult]):
    """Downloads a preplanned map area (SDK ``DownloadPreplannedOfflineMapJob``); result:
    :class:`DownloadPreplannedOfflineMapResult`.

    Each package becomes a geodatabase at the package's generation. With
    SyncWithFeatureServices each geodatabase is registered as a replica of its own (the
    package's replica belongs to the portal's refresh job); with
    DownloadScheduledUpdatesAndUploadNewFeatures an upload-only replica is registered for new
    features and edits of downloaded features are refused by the geodatabase.
    """

    def __init__(
        self,
        task: OfflineMapTask,
        parameters: DownloadPreplannedOfflineMapParameters,
        folder: Path,
    ) -> None:
        super().__init__()
        area = parameters.map_area
        self.task = task
        self.preplanned = parameters
        self.builder = _MapBuilder(
            self,
            task,
            GenerateOfflineMapParameters(
                area_of_interest=area.area_of_interest,
                title=parameters.title or area.title,
                basemap=parameters.basemap,
            ),
            folder,
        )

    def _execute(self) -> DownloadPreplannedOfflineMapResult:
        area_params = self.preplanned
        map_area = area_params.map_area
        mode = PreplannedUpdateMode(area_params.update_mode)
        if not map_area.packages:
            raise ServiceError(f"The map area '{map_area.title}' has no packages to download.")
        area = (
            parse_area_of_interest(map_area.area_of_interest) if map_area.area_of_interest else None
        )
        with self.builder.undone_on_failure() as made:
            self._report(0.0, f"Reading the map area '{map_area.title}'")
            plans, skipped, initial_extent = self.builder.plan()
            extent = _initial_extent(area, initial_extent, plans)
            basemaps = self.builder.take_basemap_offline(
                extent, map_area.basemap_packages, skipped, 0.05, 0.35
            )
            by_url = {plan.service_url.lower(): plan for plan in plans}
            entries = []
            share = 0.6 / len(map_area.packages)
            for index, package in enumerate(map_area.packages):
                plan = by_url.pop(clean_service_url(package.service_url).lower(), None)
                if plan is None:
                    skipped.append(
                        SkippedLayer(
                            package.title,
                            package.service_url,
                            "the package's service is not in the web map",
                        )
                    )
                    continue
                start = 0.35 + index * share
                entries.append(
                    self._download_package(plan, package, area, mode, made, start, start + share)
                )
            for plan in by_url.values():
                for layer in plan.layers:
                    skipped.append(
                        SkippedLayer(
                            layer.title,
                            layer_url(plan.service_url, layer.id),
                            "the map area has no package for this layer's service",
                        )
                    )
            if not entries:
                raise ServiceError(
                    f"None of the packages of the map area '{map_area.title}' belongs to the web map."
                )
            self._check_cancelled()
            self._report(0.97, "Writing the offline map")
            source = self.builder.source()
            offline_map = self.builder.write_map(
                OfflineMapManifest(
                    title=self.builder.parameters.title or map_area.title,
                    source=MapSource(
                        portal_url=source.portal_url,
                        webmap_item_id=source.webmap_item_id,
                        webmap_title=source.webmap_title,
                        map_area_item_id=map_area.item_id,
                    ),
                    update_mode=mode,
                    geodatabases=tuple(entries),
                    area_of_interest=map_area.area_of_interest,
                    initial_extent=extent,
                    basemaps=basemaps,
                )
            )
        self._report(1.0, f"The map area '{offline_map.title}' is offline")
        return DownloadPreplannedOfflineMapResult(offline_map, tuple(skipped))

    def _download_package(
        self,
        plan: ServicePlan,
        package: PackageInfo,
        area: tuple[str, dict] | None,
        mode: PreplannedUpdateMode,
        made: ReplicaDownloads,
        start: float,
        end: float,
    ) -> GeodatabaseEntry:
        source = ScheduledUpdateSource(self.task.client, self.task.portal_url or "")
        final = self.builder.folder / plan.file
        partial = made.note_files(final)
        middle = start + (end - start) * 0.8
        self._report(start, f"Downloading the package of {plan.title}")
        wanted = set(package.layer_ids) or set(plan.layer_infos)
        layer_infos = {k: v for k, v in plan.layer_infos.items() if k in wanted}
        geodatabase_from_package(
            source,
            package,
            partial,
            service_info=plan.service_info,
            layer_infos=layer_infos,
            progress=self._sub_progress(start, middle),
            cancel=self._cancel_requested,
        )
        upload_replica_id = None
        with Geodatabase.open(partial) as geodatabase:
            generation = geodatabase.replica.data_generation
            if mode.downloads_from_feature_services:
                self._report(middle, f"Registering {plan.title} for sync")
                replica_id, name = self._register(
                    plan, area, made, upload_only=False, existing=geodatabase
                )
                # Same data and generation, our own replica: syncs download from the package's
                # generation on, and the portal's package replica stays the refresh job's.
                adopt_replica(geodatabase, replica_id, name)
            elif mode.uploads_only_new_features:
                if plan.download_only:
                    raise NotSyncEnabledError(
                        f"The service {plan.service_url} takes no edits, so new features cannot "
                        "be uploaded to it; choose DownloadScheduledUpdates."
                    )
                self._report(middle, f"Registering {plan.title} for uploading new features")
                upload_replica_id, _ = self._register(plan, area, made, upload_only=True)
                install_adds_only_guards(geodatabase.conn, geodatabase.layers)
        self._check_cancelled()
        move_geopackage(partial, final)
        return GeodatabaseEntry(
            file=plan.file,
            service_url=plan.service_url,
            title=plan.title,
            layers=tuple(layer for layer in plan.layers if layer.id in layer_infos),
            download_only=plan.download_only,
            package_item_id=package.item_id,
            generation=generation,
            upload_replica_id=upload_replica_id,
        )

    def _register(
        self,
        plan: ServicePlan,
        area: tuple[str, dict] | None,
        made: ReplicaDownloads,
        *,
        upload_only: bool,
        existing: Any = None,
    ) -> tuple[str, str]:
        """Register a replica of the service for the area; its data is not needed.

        With ``existing`` (the geodatabase of a package) the replica is registered for that
        data at the package's generation(s) (``replicaOptions`` registering existing data, SDK
        ``registerSyncEnabledGeodatabase``): its first sync brings every change made since the
        package was built, and nothing twice. The answer is an info response without data.
        """
        name = unique_replica_name(self.builder.parameters.title or plan.title)
        params = self.builder.replica_parameters(plan, area, name)
        params["returnAttachments"] = False
        if upload_only:
            # An upload-only replica receives nothing, so it needs no rows either.
            params["syncDirection"] = "upload"
            params["layerQueries"] = {
                str(layer_id): {"queryOption": "none", "useGeometry": False}
                for layer_id in sorted(plan.layer_infos)
            }
        if existing is not None:
            replica = existing.replica
            gens = {
                layer.id: int(replica.layer_gens.get(layer.id, replica.server_gen or 0) or 0)
                for layer in existing.layers
            }
            params["layers"] = sorted(gens)
            params["layerQueries"] = {
                k: v for k, v in params["layerQueries"].items() if int(k) in gens
            }
            params["syncModel"] = SyncModel(replica.sync_model).value
            options: dict[str, Any] = {"registerExistingData": True}
            if SyncModel(replica.sync_model) == SyncModel.PER_LAYER:
                options["layerServerGens"] = [
                    {"id": i, "serverGen": g} for i, g in sorted(gens.items())
                ]
            else:
                options["replicaServerGen"] = int(replica.server_gen or 0)
            params["replicaOptions"] = options
        return made.register(plan.service_url, params), name


# -- area of interest ------------------------------------------------------------------------
def parse_area_of_interest(geometry: Any) -> tuple[str, dict]:
    """Validate an area of interest; return its REST ``geometryType`` and the geometry.

    Accepts an Esri JSON envelope or polygon with a ``spatialReference``; anything else raises
    UnsupportedGeometryError saying what was wrong.
    """
    if not isinstance(geometry, dict):
        raise UnsupportedGeometryError(
            "The area of interest must be an Esri JSON envelope or polygon."
        )
    sr = geometry.get("spatialReference")
    if not isinstance(sr, dict) or not (sr.get("wkid") or sr.get("latestWkid") or sr.get("wkt")):
        raise UnsupportedGeometryError(
            "The area of interest has no spatialReference; add one (e.g. {'wkid': 4326})."
        )
    if all(key in geometry for key in ("xmin", "ymin", "xmax", "ymax")):
        values = [geometry[key] for key in ("xmin", "ymin", "xmax", "ymax")]
        if not all(_is_number(v) for v in values):
            raise UnsupportedGeometryError(
                "The area of interest envelope has coordinates that are not numbers."
            )
        xmin, ymin, xmax, ymax = values
        if not (xmin < xmax and ymin < ymax):
            raise UnsupportedGeometryError(
                "The area of interest envelope is empty (xmin ≥ xmax or ymin ≥ ymax)."
            )
        return "esriGeometryEnvelope", geometry
    if "curveRings" in geometry:
        raise UnsupportedGeometryError(
            "The area of interest has curved edges; use a polygon with straight edges."
        )
    if "rings" in geometry:
        rings = geometry["rings"]
        valid = (
            isinstance(rings, list)
            and rings
            and all(
                isinstance(ring, list)
                and len(ring) >= 4
                and all(
                    isinstance(p, list) and len(p) >= 2 and _is_number(p[0]) and _is_number(p[1])
                    for p in ring
                )
                for ring in rings
            )
        )
        if not valid:
            raise UnsupportedGeometryError(
                "The area of interest polygon has no valid rings (each needs 4 or more points)."
            )
        return "esriGeometryPolygon", geometry
    kind = (
        "a point"
        if "x" in geometry
        else "a polyline"
        if "paths" in geometry
        else "a multipoint"
        if "points" in geometry
        else "not a geometry"
    )
    raise UnsupportedGeometryError(
        f"The area of interest must be an envelope or a polygon; this is {kind}."
    )


def _initial_extent(
    area: tuple[str, dict] | None, webmap_extent: dict | None, plans: list[ServicePlan]
) -> dict | None:
    # The data exists only inside the area of interest, so the map opens there; without one,
    # where the web map opens, else where the first service does.
    if area is not None:
        return _envelope_of(area)
    if webmap_extent is not None:
        return webmap_extent
    for plan in plans:
        extent = plan.service_info.get("initialExtent") or plan.service_info.get("fullExtent")
        if isinstance(extent, dict):
            return extent
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _envelope_of(area: tuple[str, dict]) -> dict:
    geometry_type, geometry = area
    if geometry_type == "esriGeometryEnvelope":
        keys = ("xmin", "ymin", "xmax", "ymax", "spatialReference")
        return {key: geometry[key] for key in keys}
    xs = [p[0] for ring in geometry["rings"] for p in ring]
    ys = [p[1] for ring in geometry["rings"] for p in ring]
    return {
        "xmin": min(xs),
        "ymin": min(ys),
        "xmax": max(xs),
        "ymax": max(ys),
        "spatialReference": geometry["spatialReference"],
    }


def _global_id_field(layer_info: dict) -> str | None:
    name = layer_info.get("globalIdField")
    fields = layer_info.get("fields") or []
    if name and any(f.get("name", "").lower() == str(name).lower() for f in fields):
        return str(name)
    for item in fields:
        if item.get("type") == "esriFieldTypeGlobalID":
            return str(item.get("name"))
    return None


def _is_editable(plan: ServicePlan, layer_id: int) -> bool:
    if plan.download_only:
        return False
    # A layer that does not say is as editable as its service.
    layer_info = plan.layer_infos.get(layer_id, {})
    return not layer_info.get("capabilities") or accepts_edits(layer_info)


def _unique_file_name(title: str, taken: set[str]) -> str:
    return f"{unique_file_stem(title, taken, 'service')}.gpkg"
