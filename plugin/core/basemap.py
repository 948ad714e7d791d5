"""A web map's basemap taken offline with the map: options, estimate, download, and the
manifest entries.

Tiled map services become GeoPackage tile sets (``basemap/<name>.gpkg``), vector tile services
MBTiles files (``basemap/<name>.mbtiles``) with their style beside them
(``basemap/<name>.style.json``). Where the service allows it the tiles come as one tile package
from an ``exportTiles`` job; otherwise (or when the job is refused) tile by tile from
``/tile/{level}/{row}/{col}``. A tile set is built in a ``.partial`` file that a later run
continues: the tiles it holds are not fetched again. Ahead-of-time map areas bring their
basemap as "Tile Package" / "Vector Tile Package" items, converted the same way.

Estimates count the tiles of the area with the service's tiling scheme, and take the size from
``estimateExportTilesSize`` where the service offers it, else from a few sample tiles.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urljoin, urlsplit

from .errors import CancelledError, NetworkError, OfflineMapSyncError, ServiceError
from .gpkg_files import SQLITE_SIDE_SUFFIXES, remove_geopackage
from .jobs import sub_progress
from .offline_map import BasemapEntry, unique_file_stem
from .rest import CancelCallback, ProgressCallback
from .sites import same_site
from .tile_package import TilePackage, TilePackageError
from .tile_scheme import TileRange, TileScheme, mercator_extent
from .tile_store import GeoPackageTiles, MBTiles, TileStore, partial_tiles_path

log = logging.getLogger(__name__)


MODES = ("download", "online", "local", "none")
#: The folder of downloaded basemaps inside an offline map folder.
BASEMAP_FOLDER = "basemap"
#: ArcGIS caps one export job at this many tiles.
ARCGIS_EXPORT_LIMIT = 100_000
#: Largest tile accepted from a service.
MAX_TILE_BYTES = 8 * 1024 * 1024
#: Most tiles written per transaction.
BATCH = 256
#: Tiles fetched at the same time (GDAL's tile drivers fetch a few at a time too).
FETCH_THREADS = 4
#: Tiles fetched to estimate the size of a service that cannot estimate itself.
SAMPLE_TILES = 4
LOCAL_SUFFIXES = (".gpkg", ".mbtiles", ".tpkx", ".vtpk")
PACKAGE_ITEM_TYPES = {"Tile Package": "raster", "Vector Tile Package": "vector"}

_MAP_SERVER = re.compile(r"^(?P<service>.+?/MapServer)/?$", re.IGNORECASE)
_VECTOR_SERVER = re.compile(r"^(?P<service>.+?/VectorTileServer)(?:/.*)?$", re.IGNORECASE)


# -- options and estimates -------------------------------------------------------------------------
@dataclass(frozen=True)
class BasemapOptions:
    """What to do with the web map's basemap when taking it offline.

    ``mode``: ``download`` (the tiles of the area at ``min_level..max_level``, refused above
    ``tile_limit`` tiles before anything is downloaded), ``online`` (the basemap layers stay
    on their services), ``local`` (``local_path``: a ``.gpkg``/``.mbtiles`` the map refers to,
    or a ``.tpkx``/``.vtpk`` converted into the map) or ``none``.
    """

    mode: str = "download"
    min_level: int = 0
    max_level: int = 16
    tile_limit: int = ARCGIS_EXPORT_LIMIT
    local_path: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"The basemap mode must be one of {', '.join(MODES)}, not {self.mode!r}."
            )
        if not 0 <= self.min_level <= self.max_level <= 30:
            raise ValueError(
                f"The basemap levels {self.min_level}–{self.max_level} are not a range within 0–30."
            )
        if self.tile_limit < 1:
            raise ValueError("The basemap tile limit must be at least 1.")
        if self.mode == "local" and not self.local_path:
            raise ValueError("Choose the local basemap file.")


@dataclass(frozen=True)
class BasemapLayerEstimate:
    """What one basemap layer would download."""

    title: str
    kind: str
    tiles: int
    bytes: int
    export_allowed: bool
    levels: tuple[int, int] | None = None


@dataclass(frozen=True)
class BasemapEstimate:
    """What downloading the basemap would take: per layer, and in all."""

    layers: tuple[BasemapLayerEstimate, ...]
    tiles: int
    bytes: int

    def over_limit(self, limit: int) -> bool:
        return self.tiles > limit


class TileLimitError(OfflineMapSyncError):
    """The basemap has more tiles for the area than the limit allows."""


# -- the web map's basemap layers ------------------------------------------------------------------
@dataclass(frozen=True)
class BasemapLayer:
    """One layer of a web map's ``baseMap``: a tiled map service (``raster``), a vector tile
    service (``vector``), or another kind that can only stay online (``online``)."""

    title: str
    kind: str
    layer_type: str
    service_url: str = ""
    style_url: str = ""
    visible: bool = True
    opacity: float = 1.0

    @property
    def downloadable(self) -> bool:
        return self.kind in ("raster", "vector")

    def online_entry(self) -> BasemapEntry:
        return BasemapEntry(
            title=self.title,
            kind="online",
            source_url=self.service_url or None,
            layer_type=self.layer_type,
            style_url=self.style_url or None,
            visible=self.visible,
            opacity=self.opacity,
        )


def basemap_layers(webmap_data: Any) -> list[BasemapLayer]:
    """The basemap layers of a web map's data, bottom to top."""
    base = webmap_data.get("baseMap") if isinstance(webmap_data, dict) else None
    layers = base.get("baseMapLayers") if isinstance(base, dict) else None
    found = []
    for layer in layers if isinstance(layers, list) else ():
        if not isinstance(layer, dict) or layer.get("isReference"):
            continue
        layer_type = str(layer.get("layerType") or "")
        url = str(layer.get("url") or "").strip()
        style_url = str(layer.get("styleUrl") or "").strip()
        kind, service = "online", url
        if layer_type == "ArcGISTiledMapServiceLayer" and _MAP_SERVER.match(url):
            kind, service = "raster", _MAP_SERVER.match(url)["service"]
        elif layer_type == "VectorTileLayer":
            match = _VECTOR_SERVER.match(url) or _VECTOR_SERVER.match(style_url)
            if match:
                kind, service = "vector", match["service"]
        found.append(
            BasemapLayer(
                title=str(layer.get("title") or layer.get("id") or layer_type or "Basemap"),
                kind=kind,
                layer_type=layer_type,
                service_url=service,
                style_url=style_url,
                visible=layer.get("visibility", True) is not False,
                opacity=_opacity(layer.get("opacity")),
            )
        )
    return found


def _opacity(value: Any) -> float:
    try:
        return min(1.0, max(0.0, float(value)))
    except (TypeError, ValueError):
        return 1.0


@dataclass(frozen=True)
class BasemapPackage:
    """A map area's basemap package item: a "Tile Package" (``raster``) or a "Vector Tile
    Package" (``vector``)."""

    item_id: str
    title: str
    kind: str
    size: int = 0

    @staticmethod
    def is_one(item: Any) -> bool:
        return (
            isinstance(item, dict)
            and item.get("type") in PACKAGE_ITEM_TYPES
            and bool(item.get("id"))
        )

    @classmethod
    def of(cls, item: dict) -> BasemapPackage:
        return cls(
            item_id=str(item["id"]),
            title=str(item.get("title") or item["id"]),
            kind=PACKAGE_ITEM_TYPES[str(item["type"])],
            size=_int(item.get("size"), 0),
        )

    def matching_layer(self, layers: Sequence[BasemapLayer]) -> BasemapLayer:
        """The web map's basemap layer this package stands for (the first of its kind), or a
        layer named after the package."""
        for layer in layers:
            if layer.kind == self.kind:
                return layer
        return BasemapLayer(self.title, self.kind, "")


# -- one basemap service ----------------------------------------------------------------------------
@dataclass
class _Service:
    """A basemap service as its description tells: tiling scheme, levels, export rights."""

    layer: BasemapLayer
    info: dict
    scheme: TileScheme
    ranges: list[TileRange]

    @property
    def url(self) -> str:
        return self.layer.service_url

    @property
    def is_vector(self) -> bool:
        return self.layer.kind == "vector"

    @property
    def tiles(self) -> int:
        return sum(r.count for r in self.ranges)

    @property
    def levels(self) -> tuple[int, int] | None:
        if not self.ranges:
            return None
        return self.ranges[0].level, self.ranges[-1].level

    @property
    def export_allowed(self) -> bool:
        limit = _int(self.info.get("maxExportTilesCount"), ARCGIS_EXPORT_LIMIT)
        return self.info.get("exportTilesAllowed") is True and self.tiles <= limit

    def tile_url(self, level: int, row: int, col: int) -> str:
        template = "tile/{z}/{y}/{x}"
        if self.is_vector:
            tiles = self.info.get("tiles")
            template = (
                str(tiles[0]) if isinstance(tiles, list) and tiles else "tile/{z}/{y}/{x}.pbf"
            )
        path = template.replace("{z}", str(level)).replace("{y}", str(row)).replace("{x}", str(col))
        url = urljoin(self.url.rstrip("/") + "/", path)
        # A service description is server text: its template may not send us elsewhere, nor
        # from https to plain http on the same host.
        if not same_site(self.url, url):
            raise ServiceError(
                f"The basemap service {self.url} names tiles on another server; it cannot be "
                "taken offline.",
                url=self.url,
            )
        return url


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _describe_service(
    client: Any,
    layer: BasemapLayer,
    extent: tuple[float, float, float, float],
    options: BasemapOptions,
    cancel: CancelCallback | None = None,
) -> _Service:
    info = client.get_json(layer.service_url, cancel=cancel)
    if layer.kind == "raster" and not info.get("tileInfo"):
        raise ServiceError(
            f"The basemap service {layer.service_url} is not cached (it draws maps on request), "
            "so its tiles cannot be taken offline. Keep the basemap online instead.",
            url=layer.service_url,
        )
    scheme = TileScheme.from_tile_info(info.get("tileInfo"), layer.service_url)
    low = max(options.min_level, _int(info.get("minLOD"), 0), _int(info.get("minzoom"), 0))
    high = min(options.max_level, _int(info.get("maxLOD"), 30), _int(info.get("maxzoom"), 30))
    return _Service(layer, info, scheme, scheme.tile_ranges(extent, low, high))


# -- estimate -------------------------------------------------------------------------------------
def estimate_basemap(
    client: Any,
    webmap_data_or_layers: dict | Sequence[BasemapLayer],
    area_extent: tuple[float, float, float, float] | dict,
    options: BasemapOptions,
    cancelled: CancelCallback | None = None,
) -> BasemapEstimate:
    """The tiles and bytes downloading the basemap for ``area_extent`` would take: (xmin,
    ymin, xmax, ymax) in Web Mercator metres, or an Esri JSON envelope/polygon with its
    ``spatialReference``.

    Sizes come from the service's ``estimateExportTilesSize`` job where export is allowed,
    else from the mean size of a few sample tiles. Modes other than ``download`` download
    nothing: the estimate is empty.
    """
    layers = _layers_of(webmap_data_or_layers)
    if options.mode != "download":
        return BasemapEstimate((), 0, 0)
    if isinstance(area_extent, dict):
        area_extent = mercator_extent(area_extent)
    estimates = []
    for layer in layers:
        if not layer.downloadable:
            continue
        service = _describe_service(client, layer, area_extent, options, cancelled)
        size = None
        if service.export_allowed and not service.is_vector and service.tiles:
            size = _server_estimate(client, service, area_extent, cancelled)
        if size is None:
            size = _sampled_size(client, service, cancelled)
        estimates.append(
            BasemapLayerEstimate(
                title=layer.title,
                kind=layer.kind,
                tiles=service.tiles,
                bytes=size,
                export_allowed=service.info.get("exportTilesAllowed") is True,
                levels=service.levels,
            )
        )
    return BasemapEstimate(
        tuple(estimates), sum(e.tiles for e in estimates), sum(e.bytes for e in estimates)
    )


def _layers_of(value: dict | Sequence[BasemapLayer]) -> list[BasemapLayer]:
    if isinstance(value, dict):
        return basemap_layers(value)
    return list(value)


def _export_params(service: _Service, extent: tuple[float, float, float, float]) -> dict:
    low, high = service.levels or (0, 0)
    xmin, ymin, xmax, ymax = extent
    return {
        "exportBy": "LevelID",
        "levels": f"{low}-{high}",
        "exportExtent": json.dumps(
            {
                "xmin": xmin,
                "ymin": ymin,
                "xmax": xmax,
                "ymax": ymax,
                "spatialReference": {"wkid": 102100, "latestWkid": 3857},
            }
        ),
        "f": "json",
    }


def _run_job(
    client: Any,
    service: _Service,
    operation: str,
    params: dict,
    result_name: str,
    progress: ProgressCallback | None,
    cancel: CancelCallback | None,
) -> Any:
    """Submit a geoprocessing-style job of the service, poll it, and return its result value."""
    url = f"{service.url.rstrip('/')}/{operation}"
    answer = client.get_json(url, params, cancel=cancel)
    job_id = str(answer.get("jobId") or "")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", job_id):
        raise ServiceError(f"The service {service.url} started no {operation} job.", url=url)
    status_url = f"{service.url.rstrip('/')}/jobs/{job_id}"
    client.poll_job(status_url, progress=progress, cancel=cancel)
    result = client.get_json(f"{status_url}/results/{result_name}", cancel=cancel)
    return result.get("value")


def _server_estimate(
    client: Any,
    service: _Service,
    extent: tuple[float, float, float, float],
    cancel: CancelCallback | None,
) -> int | None:
    try:
        value = _run_job(
            client,
            service,
            "estimateExportTilesSize",
            _export_params(service, extent),
            "out_service_tile_estimate",
            None,
            cancel,
        )
    except ServiceError as error:
        log.info("The service %s could not estimate its export: %s", service.url, error)
        return None
    size = value.get("totalSize") if isinstance(value, dict) else None
    # Server text: only a real, finite, non-negative number of bytes is taken.
    usable = isinstance(size, (int, float)) and not isinstance(size, bool)
    if usable and math.isfinite(size) and size >= 0:
        return int(size)
    return None


def _sampled_size(client: Any, service: _Service, cancel: CancelCallback | None) -> int:
    """Tile count times the mean size of a few tiles of the most detailed level."""
    if not service.tiles:
        return 0
    last = service.ranges[-1]
    picks = {
        (last.min_row, last.min_col),
        (last.max_row, last.max_col),
        ((last.min_row + last.max_row) // 2, (last.min_col + last.max_col) // 2),
        (last.min_row, last.max_col),
    }
    sizes = []
    for row, col in sorted(picks)[:SAMPLE_TILES]:
        data = client.get_tile(
            service.tile_url(last.level, row, col), limit=MAX_TILE_BYTES, cancel=cancel
        )
        if data:
            sizes.append(len(data))
    if not sizes:
        return 0
    return int(sum(sizes) / len(sizes) * service.tiles)


# -- downloading -----------------------------------------------------------------------------------
def safe_file_stem(title: str, taken: set[str]) -> str:
    """A basemap file stem made from a layer title, unique among ``taken``: the map folder's
    rule, and no blanks either (the style names the file in an ``mbtiles://`` URL)."""
    return unique_file_stem(re.sub(r"\s+", "_", title.strip()), taken, "basemap")


@dataclass
class BasemapDownloads:
    """The basemap files one take-offline run makes; :meth:`undo` removes them, except the
    partial tile sets holding tiles when asked to keep them (a failure other than cancelling):
    the next run into the same folder continues those."""

    folder: Path
    client: Any
    cancel: CancelCallback

    def __post_init__(self) -> None:
        self.files: list[Path] = []
        self.taken: set[str] = set()

    @property
    def basemap_folder(self) -> Path:
        return self.folder / BASEMAP_FOLDER

    def check_limit(
        self,
        layers: Sequence[BasemapLayer],
        extent: tuple[float, float, float, float],
        options: BasemapOptions,
    ) -> list[_Service]:
        """Describe the downloadable layers' services and refuse (TileLimitError) when the
        tiles of the area exceed ``options.tile_limit``; nothing is downloaded yet."""
        services = [
            _describe_service(self.client, layer, extent, options, self.cancel)
            for layer in layers
            if layer.downloadable
        ]
        total = sum(service.tiles for service in services)
        if total > options.tile_limit:
            detail = ", ".join(f"{s.layer.title}: {s.tiles:,}" for s in services)
            raise TileLimitError(
                f"The basemap has {total:,} tiles for this area at levels "
                f"{options.min_level}–{options.max_level} ({detail}), more than the limit of "
                f"{options.tile_limit:,}. Choose fewer levels or a smaller area, raise the "
                "limit, or keep the basemap online."
            )
        return services

    def download(
        self,
        service: _Service,
        extent: tuple[float, float, float, float],
        progress: ProgressCallback,
    ) -> BasemapEntry:
        """Take one basemap service offline into the map folder; its manifest entry."""
        layer = service.layer
        final = self._final_path(layer.title, ".mbtiles" if service.is_vector else ".gpkg")
        store = self._open_store(
            final, service.scheme, service.ranges, layer.title, service.is_vector
        )
        try:
            resuming = store.has_tiles()
            exported, style = False, None
            if service.export_allowed and not resuming and service.tiles:
                exported, style = self._from_export(service, extent, store, progress)
            if not exported:
                self._fetch_tiles(service, store, sub_progress(progress, 0.0, 0.95))
            if not store.has_tiles():
                # GDAL and QGIS cannot open a tile set without tiles: no file, the layer stays
                # online.
                store.discard()
                _remove_if_empty(self.basemap_folder)
                message = (
                    f"The basemap service of {layer.title} has no tiles for this area at the "
                    "chosen levels; the basemap stays online."
                )
                log.warning("%s", message)
                progress(1.0, message)
                return layer.online_entry()
            saved = None
            if service.is_vector:
                saved = self._write_style(style or self._service_style(service), store, final)
            progress(0.97, f"Finishing the basemap {layer.title}")
            store.finish()
        except NetworkError as error:
            if not self._close(store):
                raise
            raise NetworkError(
                f"{error} The basemap tiles downloaded so far are kept: take the map offline "
                "again into the same folder to continue where it stopped."
            ) from None
        except BaseException:
            self._close(store)
            raise
        return self._entry(layer, final, saved, service.levels)

    @staticmethod
    def _close(store: TileStore) -> bool:
        """Close an unfinished tile set; it is kept to be continued when it holds tiles
        (True), else deleted."""
        if store.has_tiles():
            store.close()
            return True
        store.discard()
        return False

    def _final_path(self, title: str, suffix: str) -> Path:
        stem = safe_file_stem(title, self.taken)
        final = self.basemap_folder / f"{stem}{suffix}"
        self.files.extend([final, partial_tiles_path(final)])
        return final

    def _open_store(
        self,
        final: Path,
        scheme: TileScheme,
        ranges: Iterable[TileRange],
        title: str,
        vector: bool,
    ) -> TileStore:
        self.basemap_folder.mkdir(parents=True, exist_ok=True)
        if vector:
            return MBTiles.open(final, scheme, title=title)
        return GeoPackageTiles.open(final, scheme, [r.level for r in ranges], title=title)

    def _entry(
        self, layer: BasemapLayer, final: Path, style: Path | None, levels: tuple[int, int] | None
    ) -> BasemapEntry:
        return BasemapEntry(
            title=layer.title,
            kind=layer.kind,
            format="mbtiles" if final.suffix == ".mbtiles" else "gpkg",
            path=f"{BASEMAP_FOLDER}/{final.name}",
            style=f"{BASEMAP_FOLDER}/{style.name}" if style else None,
            source_url=layer.service_url or None,
            min_level=levels[0] if levels else None,
            max_level=levels[1] if levels else None,
            visible=layer.visible,
            opacity=layer.opacity,
        )

    # -- tile by tile --------------------------------------------------------------------------
    def _fetch_tiles(self, service: _Service, store: TileStore, progress: ProgressCallback) -> None:
        """Fetch the tiles the store does not know yet, a few at a time, and store them batch
        by batch (what is stored survives an interruption)."""
        total = service.tiles
        title = service.layer.title

        def fetch(tile: tuple[int, int, int]) -> bytes | None:
            return self.client.get_tile(
                service.tile_url(*tile), limit=MAX_TILE_BYTES, cancel=self.cancel
            )

        wanted = []
        for tile_range in service.ranges:
            known = store.known(tile_range.level)
            wanted += [t for t in tile_range.tiles() if (t[1], t[2]) not in known]
        done = total - len(wanted)
        # Stored (and reported) every 5 % or so: what an interruption loses is fetched again.
        size = min(BATCH, max(8, total // 20))
        with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="basemap-tiles") as pool:
            for start in range(0, len(wanted), size):
                batch = wanted[start : start + size]
                tiles, missing = [], []
                # map() hands the results back in order and raises the first error.
                for tile, data in zip(batch, pool.map(fetch, batch)):
                    if data is None:
                        missing.append(tile)
                    else:
                        tiles.append((*tile, data))
                store.write(tiles, missing)
                done += len(batch)
                progress(done / total, f"Basemap {title}: {done:,} of {total:,} tiles")

    # -- tile packages -------------------------------------------------------------------------
    def _from_export(
        self,
        service: _Service,
        extent: tuple[float, float, float, float],
        store: TileStore,
        progress: ProgressCallback,
    ) -> tuple[bool, dict | None]:
        """Export a tile package and convert it; (False, None) when the service refused the
        export (the caller then fetches the tiles), else (True, the package's style)."""
        params = _export_params(service, extent)
        if not service.is_vector:
            params.update(
                tilePackage="true", storageFormatOption="esriMapCacheStorageModeCompactV2"
            )
        progress(0.0, f"Exporting the basemap {service.layer.title}")
        try:
            url = _run_job(
                self.client,
                service,
                "exportTiles",
                params,
                "out_service_url",
                sub_progress(progress, 0.0, 0.3),
                self.cancel,
            )
        except CancelledError:
            raise
        except ServiceError as error:
            log.info("Export refused by %s, fetching tiles instead: %s", service.url, error)
            progress(None, f"The service refused the export ({error}); fetching the tiles")
            return False, None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ServiceError(
                f"The basemap service {service.url} exported no tile package.", url=service.url
            )
        with self._package_file(".vtpk" if service.is_vector else ".tpkx") as path:
            self.client.download(
                url, path, progress=sub_progress(progress, 0.3, 0.7), cancel=self.cancel
            )
            style = self._convert(path, store, service.ranges, sub_progress(progress, 0.7, 1.0))
        return True, style

    def _package_file(self, suffix: str) -> _TempPackage:
        return _TempPackage(self.basemap_folder, suffix)

    def _convert(
        self,
        path: Path,
        store: TileStore,
        ranges: Sequence[TileRange],
        progress: ProgressCallback,
    ) -> dict | None:
        """Copy a package's tiles inside ``ranges`` into ``store``; the package's style
        (vector tile packages)."""
        wanted = {r.level: r for r in ranges}
        with TilePackage.open(path) as package:
            batch = []
            count = 0
            # The bundles of other levels are skipped unread: a package from elsewhere may
            # hold far more levels than the map keeps.
            for level, row, col, data in package.tiles(levels=wanted.keys(), cancel=self.cancel):
                if not wanted[level].contains(row, col):
                    continue
                batch.append((level, row, col, data))
                count += 1
                if len(batch) >= BATCH:
                    store.write(batch)
                    batch = []
                    progress(None, f"Stored {count:,} basemap tiles")
            store.write(batch)
            progress(1.0, f"Stored {count:,} basemap tiles")
            return package.style() if package.is_vector else None

    # -- styles -------------------------------------------------------------------------------
    def _service_style(self, service: _Service) -> dict:
        url = service.layer.style_url or ""
        if not _VECTOR_SERVER.match(url) or not same_site(service.url, url):
            default = str(service.info.get("defaultStyles") or "resources/styles")
            url = urljoin(service.url.rstrip("/") + "/", default.strip("/") + "/root.json")
        return self.client.get_json(url, cancel=self.cancel)

    def _write_style(self, style: dict, store: TileStore, final: Path) -> Path:
        local = offline_style(style, final.name)
        if isinstance(store, MBTiles):
            store.set_vector_layers(source_layers(local))
        path = final.with_name(final.stem + ".style.json")
        self.files.append(path)
        path.write_text(json.dumps(local, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    # -- ahead of time -------------------------------------------------------------------------
    def from_package_item(
        self,
        portal_url: str,
        package: BasemapPackage,
        layer: BasemapLayer,
        progress: ProgressCallback,
    ) -> BasemapEntry:
        """Download a map area's Tile Package / Vector Tile Package item and convert it."""
        vector = package.kind == "vector"
        url = f"{portal_url.rstrip('/')}/content/items/{package.item_id}/data"
        with self._package_file(".vtpk" if vector else ".tpkx") as path:
            progress(0.0, f"Downloading the basemap {layer.title}")
            self.client.download(
                url, path, progress=sub_progress(progress, 0.0, 0.6), cancel=self.cancel
            )
            return self.from_package_file(path, layer, sub_progress(progress, 0.6, 1.0))

    def from_package_file(
        self, path: Path, layer: BasemapLayer, progress: ProgressCallback
    ) -> BasemapEntry:
        """Convert a ``.tpkx``/``.vtpk`` into the map's basemap folder."""
        with TilePackage.open(path) as package:
            scheme = TileScheme.from_tile_info(package.tile_info)
            vector = package.is_vector
            levels = [level for level in package.levels() if level in scheme.levels]
        # Only tiles of the scheme's levels and inside its matrices: the package is a file
        # from elsewhere.
        ranges = []
        for level in levels:
            width, height = scheme.matrix_size(level)
            ranges.append(TileRange(level, 0, height - 1, 0, width - 1))
        layer = replace(layer, kind="vector" if vector else "raster")
        final = self._final_path(layer.title, ".mbtiles" if vector else ".gpkg")
        if vector:
            store: TileStore = MBTiles.open(final, scheme, title=layer.title)
        else:
            self.basemap_folder.mkdir(parents=True, exist_ok=True)
            store = GeoPackageTiles.open(final, scheme, levels, title=layer.title)
        try:
            package_style = self._convert(path, store, ranges, progress)
            if not store.has_tiles():
                # GDAL and QGIS cannot open a tile set without tiles.
                raise TilePackageError(
                    f"The tile package of the basemap {layer.title} holds no tiles of its own "
                    "tiling scheme; it cannot be used as a basemap."
                )
            style = None
            if vector:
                empty = {"version": 8, "sources": {}, "layers": []}
                style = self._write_style(package_style or empty, store, final)
            store.finish()
        except BaseException:
            # A package is converted whole or not at all: nothing to continue.
            store.discard()
            raise
        return self._entry(layer, final, style, (levels[0], levels[-1]) if levels else None)

    # -- undoing ---------------------------------------------------------------------------------
    def has_partial(self) -> bool:
        """True when a partial tile set of this run is on disk."""
        return any(p.name.endswith(".partial") and p.exists() for p in self.files)

    @staticmethod
    def only_partial(folder: Path) -> bool:
        """True when ``folder`` holds nothing but partial tile sets an interrupted run left
        (``basemap/*.partial``): a run into it continues them."""
        basemap = folder / BASEMAP_FOLDER
        if [p.name for p in folder.iterdir()] != [BASEMAP_FOLDER] or basemap.is_symlink():
            return False
        if not basemap.is_dir():
            return False
        names = list(basemap.iterdir())
        return bool(names) and all(
            p.is_file() and not p.is_symlink() and p.name.endswith(_PARTIAL_NAMES) for p in names
        )

    def undo(self, *, keep_partial: bool) -> None:
        """Remove the files of the run; partial tile sets stay when ``keep_partial``."""
        for path in self.files:
            if keep_partial and path.name.endswith(".partial"):
                continue
            # A tile set and its partial file are SQLite files with side files.
            remove_geopackage(path)
        _remove_if_empty(self.basemap_folder)  # partial tile sets stay


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


#: A partial tile set and the SQLite side files a crash may leave next to it.
_PARTIAL_NAMES = tuple(".partial" + suffix for suffix in ("", *SQLITE_SIDE_SUFFIXES))


class _TempPackage:
    """A temporary package file inside the basemap folder, removed afterwards."""

    def __init__(self, folder: Path, suffix: str) -> None:
        self.folder = folder
        self.suffix = suffix

    def __enter__(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".package-", suffix=self.suffix, dir=self.folder)
        os.close(handle)
        self.path = Path(name)
        return self.path

    def __exit__(self, *exc: object) -> None:
        _unlink(self.path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("Could not remove %s: %s", path, error)


# -- styles -----------------------------------------------------------------------------------------
def offline_style(style: Any, mbtiles_name: str) -> dict:
    """A Mapbox GL style whose vector sources point at the MBTiles file beside it, without
    sprite and glyph URLs: nothing in it needs the network."""
    if not isinstance(style, dict):
        raise TilePackageError("The vector basemap's style is not a Mapbox GL style.")
    local = {k: v for k, v in style.items() if k not in ("sprite", "glyphs")}
    sources = style.get("sources") if isinstance(style.get("sources"), dict) else {}
    local["sources"] = {
        name: (
            {"type": "vector", "url": f"mbtiles://{mbtiles_name}"}
            if isinstance(source, dict) and source.get("type") == "vector"
            else source
        )
        for name, source in sources.items()
        if isinstance(source, dict) and source.get("type") == "vector"
    }
    local["version"] = style.get("version", 8)
    layers = style.get("layers")
    local["layers"] = (
        [layer for layer in layers if isinstance(layer, dict)] if isinstance(layers, list) else []
    )
    return local


def source_layers(style: dict) -> list[str]:
    """The vector tile layers a style draws."""
    return sorted(
        {
            str(layer["source-layer"])
            for layer in style.get("layers") or ()
            if isinstance(layer, dict) and layer.get("source-layer")
        }
    )


# -- the take-offline jobs' entry points -----------------------------------------------------------
def recorded_entries(layers: Sequence[BasemapLayer], options: BasemapOptions) -> list[BasemapEntry]:
    """Manifest entries of the modes that download nothing: ``online`` records every layer as
    online, ``local`` the user's ``.gpkg``/``.mbtiles`` file, ``none`` nothing."""
    if options.mode == "online":
        return [layer.online_entry() for layer in layers]
    if options.mode == "local":
        path = check_local_file(options.local_path or "")
        if path.suffix.lower() in (".gpkg", ".mbtiles"):
            return [
                BasemapEntry(
                    title=path.stem, kind="local", path=str(path), format=path.suffix[1:].lower()
                )
            ]
    return []


def check_local_file(local_path: str) -> Path:
    """The user's local basemap file, absolute; raises when missing or of another kind."""
    path = Path(local_path).expanduser().absolute()
    if path.suffix.lower() not in LOCAL_SUFFIXES:
        raise OfflineMapSyncError(
            f"The basemap file {path.name} is not a GeoPackage, MBTiles, tile package or vector "
            "tile package (.gpkg, .mbtiles, .tpkx, .vtpk)."
        )
    if not path.is_file():
        raise OfflineMapSyncError(f"The basemap file {path} does not exist.")
    return path
