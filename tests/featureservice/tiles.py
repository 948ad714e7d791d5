"""Basemap services: a tiled MapServer and a VectorTileServer over the demo area.

``DemoBasemap`` (and ``DemoBasemapNoExport``, the same tiles with ``exportTilesAllowed:
false``) answers ``tile/{level}/{row}/{col}`` with a 256x256 PNG; ``DemoVectorBasemap``
answers ``tile/{z}/{y}/{x}.pbf`` with a Mapbox Vector Tile (``mvt.py``) and has a Mapbox GL
style under ``resources/styles``. Tiles are generated from their address alone (same bytes on
every run) and exist where they intersect the full extent (the demo area with a margin), up to
the service's maxLOD; elsewhere a tile answers 404. Both grids are Web Mercator with ArcGIS
Online's origin and resolutions; the vector grid's 512-pixel tiles at level z cover what the
256-pixel raster tiles at level z cover (as Esri's vector basemaps do).

``exportTiles`` and ``estimateExportTilesSize`` are jobs run by ``app.py``; this module
parses their parameters (``ExportRequest``) and counts and sizes tiles; ``tilepackage.py``
writes the packages.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

from . import mvt
from .errors import ApiError, bad_request
from .geom import GeometryError, point_projector, wkid_of
from .params import Params
from .seed import (
    BASE_LAT,
    BASE_LON,
    BASEMAP_NO_EXPORT_SERVICE,
    BASEMAP_SERVICE,
    SR,
    VECTOR_BASEMAP_SERVICE,
    mercator,
)

MAX_EXPORT_TILES = 100_000
STORAGE_V2 = "esriMapCacheStorageModeCompactV2"
HALF_WORLD = 20037508.342787
ORIGIN = {"x": -HALF_WORLD, "y": HALF_WORLD}
# ArcGIS Online's Web Mercator levels 0..19 (resolution in metres per pixel at 256 px, scale).
RESOLUTIONS = (
    156543.03392800014,
    78271.51696399994,
    39135.75848200009,
    19567.87924099992,
    9783.93962049996,
    4891.96981024998,
    2445.98490512499,
    1222.992452562495,
    611.4962262813797,
    305.74811314055756,
    152.87405657041106,
    76.43702828507324,
    38.21851414253662,
    19.10925707126831,
    9.554628535634155,
    4.77731426794937,
    2.388657133974685,
    1.1943285668550503,
    0.5971642835598172,
    0.29858214164761665,
)
SCALES = (
    591657527.591555,
    295828763.795777,
    147914381.897889,
    73957190.948944,
    36978595.474472,
    18489297.737236,
    9244648.868618,
    4622324.434309,
    2311162.217155,
    1155581.108577,
    577790.554289,
    288895.277144,
    144447.638572,
    72223.819286,
    36111.909643,
    18055.954822,
    9027.977411,
    4513.988705,
    2256.994353,
    1128.497176,
)


def demo_extent() -> tuple[float, float, float, float]:
    """The basemap's full extent (Web Mercator): the demo area with a margin."""
    xmin, ymin = mercator(BASE_LON - 0.02, BASE_LAT - 0.015)
    xmax, ymax = mercator(BASE_LON + 0.03, BASE_LAT + 0.025)
    return xmin, ymin, xmax, ymax


def envelope_json(box: tuple[float, float, float, float]) -> dict:
    return dict(zip(("xmin", "ymin", "xmax", "ymax"), box), spatialReference=SR)


@dataclass(frozen=True)
class TileService:
    """One basemap service: its name, kind ("raster" or "vector") and export permission."""

    name: str
    kind: str
    export_allowed: bool = True

    @property
    def size(self) -> int:
        return 256 if self.kind == "raster" else 512

    @property
    def max_level(self) -> int:
        return 19 if self.kind == "raster" else 16

    @property
    def server_type(self) -> str:
        return "MapServer" if self.kind == "raster" else "VectorTileServer"

    @property
    def package_suffix(self) -> str:
        return ".tpkx" if self.kind == "raster" else ".vtpk"

    def lods(self) -> list[dict]:
        # 512-px tiles at level z have the resolution of 256-px tiles at level z + 1.
        shift = 0 if self.kind == "raster" else 1
        return [
            {"level": z, "resolution": RESOLUTIONS[z + shift], "scale": SCALES[z + shift]}
            for z in range(self.max_level + 1)
        ]

    def tile_info(self) -> dict:
        return {
            "rows": self.size,
            "cols": self.size,
            "dpi": 96,
            "format": "PNG32" if self.kind == "raster" else "pbf",
            "compressionQuality": 0,
            "origin": dict(ORIGIN),
            "spatialReference": dict(SR),
            "lods": self.lods(),
        }

    def tile_exists(self, level: int, row: int, col: int) -> bool:
        if not 0 <= level <= self.max_level or not (0 <= row < 2**level and 0 <= col < 2**level):
            return False
        return _intersects(tile_envelope(level, row, col), demo_extent())

    def tile(self, level: int, row: int, col: int) -> bytes:
        """The tile as served (PNG, or a not gzipped vector tile)."""
        if self.kind == "raster":
            return png_tile(level, row, col)
        return mvt.vector_tile(tile_envelope(level, row, col))

    def stored_tile(self, level: int, row: int, col: int) -> bytes:
        """The tile as a package stores it (vector tiles gzipped, as in a .vtpk)."""
        data = self.tile(level, row, col)
        return data if self.kind == "raster" else gzip.compress(data, 6, mtime=0)


SERVICES = {
    s.name.lower(): s
    for s in (
        TileService(BASEMAP_SERVICE, "raster"),
        TileService(BASEMAP_NO_EXPORT_SERVICE, "raster", export_allowed=False),
        TileService(VECTOR_BASEMAP_SERVICE, "vector"),
    )
}


def service(name: str, server_type: str) -> TileService:
    found = SERVICES.get(name.lower())
    if found is None or found.server_type.lower() != server_type.lower():
        raise ApiError(
            404,
            f"Service '{name[:64]}' not found.",
            [f"There is no {server_type} named '{name[:64]}'."],
            http_status=404,
        )
    return found


def catalog_entries() -> list[dict]:
    return [{"name": s.name, "type": s.server_type} for s in SERVICES.values()]


# --- the grid --------------------------------------------------------------------------------


def tile_span(level: int) -> float:
    """The width of a tile at `level`, in metres (the same for 256-px and 512-px grids here)."""
    return 2 * HALF_WORLD / 2**level


def tile_envelope(level: int, row: int, col: int) -> tuple[float, float, float, float]:
    span = tile_span(level)
    xmin = -HALF_WORLD + col * span
    ymax = HALF_WORLD - row * span
    return xmin, ymax - span, xmin + span, ymax


def _intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def tile_range(level: int, box) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1), inclusive, of the tiles of `level` intersecting `box`."""
    span = tile_span(level)
    last = 2**level - 1
    xmin, ymin = max(box[0], -HALF_WORLD), max(box[1], -HALF_WORLD)
    xmax, ymax = min(box[2], HALF_WORLD), min(box[3], HALF_WORLD)
    if xmin >= xmax or ymin >= ymax:
        return None
    col0 = max(0, math.floor((xmin + HALF_WORLD) / span))
    col1 = min(last, math.ceil((xmax + HALF_WORLD) / span) - 1)
    row0 = max(0, math.floor((HALF_WORLD - ymax) / span))
    row1 = min(last, math.ceil((HALF_WORLD - ymin) / span) - 1)
    return row0, row1, col0, col1


def count_tiles(levels: tuple[int, ...], box) -> int:
    total = 0
    for level in levels:
        found = tile_range(level, box)
        if found:
            total += (found[1] - found[0] + 1) * (found[3] - found[2] + 1)
    return total


def clipped(box) -> tuple[float, float, float, float]:
    """`box` cut to the full extent (empty when xmin >= xmax or ymin >= ymax)."""
    full = demo_extent()
    return max(box[0], full[0]), max(box[1], full[1]), min(box[2], full[2]), min(box[3], full[3])


def existing_tiles(svc: TileService, levels, box) -> Iterator[tuple[int, int, int]]:
    """(level, row, col) of every tile of `levels` that exists and intersects `box`, by bundle
    (128x128 blocks) so that a writer fills one bundle after another."""
    area = clipped(box)
    for level in levels:
        found = tile_range(level, area)
        if not found:
            continue
        row0, row1, col0, col1 = found
        for brow in range(row0 - row0 % 128, row1 + 1, 128):
            for bcol in range(col0 - col0 % 128, col1 + 1, 128):
                for row in range(max(row0, brow), min(row1, brow + 127) + 1):
                    for col in range(max(col0, bcol), min(col1, bcol + 127) + 1):
                        if svc.tile_exists(level, row, col):
                            yield level, row, col


# --- service descriptions --------------------------------------------------------------------


def service_json(svc: TileService) -> dict:
    full = envelope_json(demo_extent())
    common = {
        "currentVersion": 10.91,
        "tileInfo": svc.tile_info(),
        "initialExtent": full,
        "fullExtent": full,
        "spatialReference": dict(SR),
        "exportTilesAllowed": svc.export_allowed,
        "maxExportTilesCount": MAX_EXPORT_TILES,
        "minLOD": 0,
        "maxLOD": svc.max_level,
    }
    if svc.kind == "raster":
        return {
            "currentVersion": 10.91,
            "serviceDescription": "Demo basemap (generated tiles) for Offline Map Sync",
            "mapName": "Layers",
            "description": "",
            "copyrightText": "Offline Map Sync reference service",
            "supportsDynamicLayers": False,
            "layers": [],
            "tables": [],
            "singleFusedMapCache": True,
            **common,
            "units": "esriMeters",
            "supportedImageFormatTypes": "PNG32,PNG24,PNG,JPG",
            "capabilities": "Map,Tilemap,Query,Data",
            "minScale": SCALES[0],
            "maxScale": SCALES[svc.max_level],
            "tileServers": [],
        }
    return {
        "name": svc.name,
        "capabilities": "TilesOnly,Tilemap",
        "type": "indexedVector",
        "defaultStyles": "resources/styles",
        "tiles": ["tile/{z}/{y}/{x}.pbf"],
        **common,
        "maxzoom": svc.max_level,
        "minScale": svc.lods()[0]["scale"],
        "maxScale": svc.lods()[-1]["scale"],
        "resourceInfo": {
            "styleVersion": 8,
            "tileCompression": "gzip",
            "cacheInfo": {"storageInfo": {"packetSize": 128, "storageFormat": "compactV2"}},
        },
    }


def _style_layer(layer_id: str, kind: str, paint: dict, cls: str | None = None, **more) -> dict:
    """A style layer drawing the source layer named before the "/" of `layer_id`."""
    layer = {"id": layer_id, "type": kind, "source": "esri", "source-layer": layer_id.split("/")[0]}
    if cls is not None:
        layer["filter"] = ["==", "class", cls]
    return {**layer, **more, "paint": paint}


def style_json(svc: TileService) -> dict:
    """The Mapbox GL style v8 of the vector basemap (no sprite, no glyphs).

    URLs are relative to the style file (``resources/styles/root.json``) so that the same
    style works on the service and inside a .vtpk (``p12/resources/styles/root.json``)."""
    round_line = {"line-cap": "round", "line-join": "round"}
    return {
        "version": 8,
        "name": "Demo streets",
        "sources": {
            "esri": {"type": "vector", "url": "../../", "tiles": ["../../tile/{z}/{y}/{x}.pbf"]}
        },
        "layers": [
            {"id": "background", "type": "background", "paint": {"background-color": "#f4f1ea"}},
            _style_layer("land", "fill", {"fill-color": "#ece6da"}, "land"),
            _style_layer(
                "land/park",
                "fill",
                {"fill-color": "#c5e1a5", "fill-outline-color": "#8bb36b"},
                "park",
            ),
            _style_layer("land/water", "fill", {"fill-color": "#a9cfe9"}, "water"),
            _style_layer(
                "roads/minor",
                "line",
                {"line-color": "#ffffff", "line-width": 2},
                "minor",
                layout=round_line,
            ),
            _style_layer(
                "roads/major",
                "line",
                {"line-color": "#f5c26b", "line-width": 4},
                "major",
                layout=round_line,
            ),
            _style_layer("places", "circle", {"circle-radius": 4, "circle-color": "#8a3b2b"}),
            _style_layer(
                "places/label",
                "symbol",
                {"text-color": "#3b3b3b", "text-halo-color": "#ffffff"},
                layout={"text-field": "{name}", "text-size": 12, "text-offset": [0, 1.2]},
            ),
        ],
    }


# --- raster tiles ----------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=512)
def png_tile(level: int, row: int, col: int) -> bytes:
    """A 256x256 RGBA PNG: a pastel ground whose tint follows the tile's address, a grid of
    streets every 64 pixels and a diagonal river continuous across tiles."""
    size = 256
    mix = (row * 73856093) ^ (col * 19349663) ^ (level * 83492791)
    ground = bytes((222 + mix % 24, 226 + (mix >> 5) % 22, 204 + (mix >> 11) % 28, 255))
    street = bytes((255, 255, 255, 255))
    major = bytes((246, 196, 110, 255))
    river = bytes((150, 196, 232, 255))
    base = bytearray(ground * size)
    for x in range(0, size, 64):
        base[x * 4 : x * 4 + 8] = street * 2
    plain = bytes(base)
    street_row = street * size
    major_row = major * size
    raw = bytearray()
    for y in range(size):
        if y % 128 == 0 or y % 128 == 1:
            line = major_row
        elif y % 64 == 0 or y % 64 == 1:
            line = street_row
        else:
            line = plain
        # The river: world pixels where (wx + wy) mod 1024 < 10 at this level.
        wy = row * size + y
        start = (-(col * size) - wy) % 1024
        if start < size or start > 1024 - 10:
            mutable = bytearray(line)
            for x in (start + k + shift for k in range(10) for shift in (0, -1024)):
                if 0 <= x < size:
                    mutable[x * 4 : x * 4 + 4] = river
            line = bytes(mutable)
        raw += b"\x00" + line
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _png_chunk(b"IEND", b"")
    )


# --- export parameters ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRequest:
    levels: tuple[int, ...]
    box: tuple[float, float, float, float]  # Web Mercator

    def requested_tiles(self) -> int:
        """Every tile of the levels over the export extent (what maxExportTilesCount limits)."""
        return count_tiles(self.levels, self.box)


def export_area(export: ExportRequest) -> tuple[float, float, float, float]:
    """The part of the full extent an export covers (the export extent when it misses it)."""
    area = clipped(export.box)
    return area if area[0] < area[2] and area[1] < area[3] else export.box


def parse_levels(raw, max_level: int) -> tuple[int, ...]:
    """``"0-16"``, ``"0,1,2"`` or both mixed (``"0-3,5"``); all levels when missing."""
    if raw in (None, ""):
        return tuple(range(max_level + 1))
    levels: set[int] = set()
    try:
        for part in str(raw).strip("[] ").split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                levels.update(range(low, high + 1))
            else:
                levels.add(int(part))
    except ValueError as exc:
        raise bad_request(
            f"Invalid levels '{str(raw)[:40]}': use a range like 0-16 or a list like 0,1,2."
        ) from exc
    if not levels or min(levels) < 0 or max(levels) > max_level:
        raise bad_request(
            f"Invalid levels '{str(raw)[:40]}': this service has levels 0-{max_level}."
        )
    return tuple(sorted(levels))


def parse_extent(raw) -> tuple[float, float, float, float]:
    """An Esri JSON envelope (Web Mercator or WGS84) as a Web Mercator box; the full extent
    when missing or ``DEFAULT``."""
    if raw in (None, "") or str(raw).strip().upper() == "DEFAULT":
        return demo_extent()
    try:
        value = raw if isinstance(raw, dict) else json.loads(str(raw))
        box = tuple(float(value[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        project = point_projector(wkid_of(value.get("spatialReference")) or 3857, 3857)
    except (ValueError, KeyError, TypeError, GeometryError) as exc:
        raise bad_request(
            "Invalid exportExtent: use an envelope {xmin, ymin, xmax, ymax, spatialReference}."
        ) from exc
    if project is not None:
        box = (*project(box[0], box[1]), *project(box[2], box[3]))
    if not (box[0] < box[2] and box[1] < box[3]):
        raise bad_request("Invalid exportExtent: xmin must be below xmax and ymin below ymax.")
    return box  # type: ignore[return-value]


def parse_export(svc: TileService, params: Params) -> ExportRequest:
    """The parameters of exportTiles / estimateExportTilesSize, checked as ArcGIS does."""
    if not svc.export_allowed:
        raise ApiError(400, "Export tiles is not allowed on this service", http_status=400)
    export_by = str(params.get("exportBy") or "LevelID")
    if export_by.lower() != "levelid":
        raise bad_request(f"Invalid exportBy '{export_by[:40]}': this service supports LevelID.")
    storage = str(params.get("storageFormatOption") or STORAGE_V2)
    if storage.lower() != STORAGE_V2.lower():
        raise bad_request(
            f"Invalid storageFormatOption '{storage[:60]}': this service exports {STORAGE_V2}."
        )
    request = ExportRequest(
        parse_levels(params.get("levels"), svc.max_level), parse_extent(params.get("exportExtent"))
    )
    requested = request.requested_tiles()
    if requested > MAX_EXPORT_TILES:
        raise ApiError(
            400,
            f"The requested number of tiles ({requested}) exceeds the maximum number of tiles "
            f"that can be exported ({MAX_EXPORT_TILES}).",
            ["Choose a smaller extent or fewer levels."],
            http_status=400,
        )
    return request


def estimate(svc: TileService, request: ExportRequest) -> dict:
    """``out_service_tile_estimate``: the tiles a package of this request holds and their bytes."""
    tiles = size = 0
    for level, row, col in existing_tiles(svc, request.levels, request.box):
        tiles += 1
        size += len(svc.stored_tile(level, row, col))
    return {"totalSize": size, "totalTilesToExport": tiles}


# --- job answers (the geoprocessing job shape of exportTiles) -----------------------------------

RESULT_PARAMS = {
    "exportTiles": "out_service_url",
    "estimateExportTilesSize": "out_service_tile_estimate",
}
_JOB_STATUS = {
    "InProgress": "esriJobExecuting",
    "Completed": "esriJobSucceeded",
    "Failed": "esriJobFailed",
}


def job_status(job: dict, status: str, percent: int) -> dict:
    """``jobs/<jobId>``: jobId, jobStatus, results (when succeeded), messages, progress."""
    answer: dict = {"jobId": job["id"], "jobStatus": _JOB_STATUS.get(status, "esriJobExecuting")}
    param = RESULT_PARAMS[job["operation"]]
    messages = [{"type": "esriJobMessageTypeInformative", "description": "Submitted."}]
    if status == "Completed":
        answer["results"] = {param: {"paramUrl": f"results/{param}"}}
        messages.append({"type": "esriJobMessageTypeInformative", "description": "Succeeded."})
        percent = 100
    elif status == "Failed":
        answer["results"] = {}
        messages.append({"type": "esriJobMessageTypeError", "description": job["error"]["message"]})
    else:
        answer["results"] = {}
        messages.append({"type": "esriJobMessageTypeInformative", "description": "Executing..."})
    answer["inputs"] = {}
    answer["messages"] = messages
    answer["progress"] = {"type": "default", "message": "", "percent": percent}
    return answer


def job_result(job: dict, status: str, param: str) -> dict:
    """``jobs/<jobId>/results/<param>``: the package URL or the size estimate. An estimate
    also answers as ``out_service_url``, the name Esri's documentation examples use."""
    expected = RESULT_PARAMS[job["operation"]]
    if param == "out_service_url" and job["operation"] == "estimateExportTilesSize":
        param = "out_service_tile_estimate"
    if param != expected:
        raise bad_request(f"Invalid result parameter '{param[:40]}': this job has '{expected}'.")
    if status != "Completed":
        raise bad_request(f"Job {job['id']} has not succeeded (status: {_JOB_STATUS.get(status)}).")
    value = job["resultUrl"] if param == "out_service_url" else job["estimate"]
    return {"paramName": param, "dataType": "GPString", "value": value}
