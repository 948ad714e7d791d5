"""Tile math of cached basemap services: the tiling scheme from a service's ``tileInfo``, which
tiles of which levels cover an area, and where a tile lies.

Rows count down from the scheme's origin (top left), as ArcGIS caches, the ``/tile/{z}/{y}/{x}``
resource and GeoPackage tile matrices do; MBTiles counts them up (see
:class:`~plugin.core.tile_store.MBTiles`).
Only Web Mercator schemes are taken offline: it is what basemap services and QGIS's tile
readers share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import ServiceError, UnsupportedGeometryError

#: Spatial reference ids that mean Web Mercator.
WEB_MERCATOR_WKIDS = {102100, 102113, 900913, 3857, 3785}
#: Half the width of the Web Mercator world, in metres.
WORLD_HALF = 20037508.342789244
_EARTH_RADIUS = 6378137.0
_MAX_LATITUDE = 85.0511287798066


@dataclass(frozen=True)
class Lod:
    """One level of detail: its level number and the size of a pixel in metres."""

    level: int
    resolution: float
    scale: float = 0.0


@dataclass(frozen=True)
class TileRange:
    """The tiles of one level between two rows and two columns (both inclusive)."""

    level: int
    min_row: int
    max_row: int
    min_col: int
    max_col: int

    @property
    def count(self) -> int:
        return (self.max_row - self.min_row + 1) * (self.max_col - self.min_col + 1)

    def tiles(self) -> Iterator[tuple[int, int, int]]:
        """``(level, row, col)`` of every tile, row by row."""
        for row in range(self.min_row, self.max_row + 1):
            for col in range(self.min_col, self.max_col + 1):
                yield self.level, row, col

    def contains(self, row: int, col: int) -> bool:
        return self.min_row <= row <= self.max_row and self.min_col <= col <= self.max_col


@dataclass(frozen=True)
class TileScheme:
    """A Web Mercator tiling scheme (``tileInfo`` of a MapServer or VectorTileServer)."""

    origin_x: float
    origin_y: float
    rows: int
    cols: int
    lods: tuple[Lod, ...]
    format: str = ""

    @classmethod
    def from_tile_info(cls, tile_info: Any, url: str = "") -> TileScheme:
        """Read a ``tileInfo``; raises ServiceError naming what is missing or unsupported."""
        where = f"The basemap service {url}" if url else "The basemap"
        if not isinstance(tile_info, dict):
            raise ServiceError(f"{where} has no tiling scheme (tileInfo); it is not cached.")
        sr = tile_info.get("spatialReference") or {}
        wkid = sr.get("latestWkid") or sr.get("wkid") if isinstance(sr, dict) else None
        if wkid not in WEB_MERCATOR_WKIDS:
            raise ServiceError(
                f"{where} is cached in the spatial reference {wkid or 'unknown'}; only Web "
                "Mercator (3857) basemaps can be taken offline. Keep it online instead."
            )
        try:
            origin = tile_info["origin"]
            lods = tuple(
                Lod(int(lod["level"]), float(lod["resolution"]), float(lod.get("scale") or 0))
                for lod in tile_info["lods"]
            )
            scheme = cls(
                origin_x=float(origin["x"]),
                origin_y=float(origin["y"]),
                rows=int(tile_info.get("rows") or 256),
                cols=int(tile_info.get("cols") or 256),
                lods=tuple(sorted(lods, key=lambda lod: lod.level)),
                format=str(tile_info.get("format") or ""),
            )
        except (KeyError, TypeError, ValueError):
            raise ServiceError(f"{where} has a damaged tiling scheme (tileInfo).") from None
        usable = (
            scheme.lods
            and all(math.isfinite(v) for v in (scheme.origin_x, scheme.origin_y))
            and all(lod.resolution > 0 and math.isfinite(lod.resolution) for lod in scheme.lods)
            and 0 < scheme.rows <= 4096
            and 0 < scheme.cols <= 4096
            and all(0 <= lod.level <= 30 for lod in scheme.lods)
        )
        if not usable:
            raise ServiceError(f"{where} has a damaged tiling scheme (tileInfo).")
        return scheme

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(lod.level for lod in self.lods)

    def lod(self, level: int) -> Lod:
        for lod in self.lods:
            if lod.level == level:
                return lod
        raise KeyError(level)

    def matrix_size(self, level: int) -> tuple[int, int]:
        """``(columns, rows)`` of tiles covering the world at ``level``."""
        lod = self.lod(level)
        width = 2 * abs(self.origin_x)
        height = 2 * abs(self.origin_y)
        return (
            max(1, round(width / (self.cols * lod.resolution))),
            max(1, round(height / (self.rows * lod.resolution))),
        )

    def tile_range(self, level: int, extent: tuple[float, float, float, float]) -> TileRange:
        """The tiles of ``level`` that cover ``extent`` (xmin, ymin, xmax, ymax in metres)."""
        xmin, ymin, xmax, ymax = extent
        lod = self.lod(level)
        span_x, span_y = self.cols * lod.resolution, self.rows * lod.resolution
        width, height = self.matrix_size(level)
        # A hair inside the edges: an extent ending exactly on a tile border does not need the
        # tile beyond it.
        eps = 1e-7 * span_x
        min_col = math.floor((xmin - self.origin_x + eps) / span_x)
        max_col = math.floor((xmax - self.origin_x - eps) / span_x)
        min_row = math.floor((self.origin_y - ymax + eps) / span_y)
        max_row = math.floor((self.origin_y - ymin - eps) / span_y)
        return TileRange(
            level,
            _clamp(min_row, height),
            _clamp(max(min_row, max_row), height),
            _clamp(min_col, width),
            _clamp(max(min_col, max_col), width),
        )

    def tile_ranges(
        self, extent: tuple[float, float, float, float], min_level: int, max_level: int
    ) -> list[TileRange]:
        """The tile ranges covering ``extent`` at each of the scheme's levels in
        ``min_level..max_level``."""
        return [
            self.tile_range(level, extent)
            for level in self.levels
            if min_level <= level <= max_level
        ]

    def tile_bounds(self, level: int, row: int, col: int) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of one tile, in metres."""
        lod = self.lod(level)
        span_x, span_y = self.cols * lod.resolution, self.rows * lod.resolution
        xmin = self.origin_x + col * span_x
        ymax = self.origin_y - row * span_y
        return xmin, ymax - span_y, xmin + span_x, ymax

    def range_bounds(self, tile_range: TileRange) -> tuple[float, float, float, float]:
        xmin, _, _, ymax = self.tile_bounds(
            tile_range.level, tile_range.min_row, tile_range.min_col
        )
        _, ymin, xmax, _ = self.tile_bounds(
            tile_range.level, tile_range.max_row, tile_range.max_col
        )
        return xmin, ymin, xmax, ymax


def _clamp(value: int, size: int) -> int:
    return min(max(value, 0), size - 1)


def mercator_extent(area: Any) -> tuple[float, float, float, float]:
    """The extent of an Esri JSON envelope or polygon in Web Mercator metres.

    Accepts geometries in Web Mercator or in WGS 84 (4326); others raise
    UnsupportedGeometryError.
    """
    if not isinstance(area, dict):
        raise UnsupportedGeometryError("The area must be an Esri JSON envelope or polygon.")
    sr = area.get("spatialReference") or {}
    wkid = (sr.get("latestWkid") or sr.get("wkid")) if isinstance(sr, dict) else None
    if all(key in area for key in ("xmin", "ymin", "xmax", "ymax")):
        xs = [float(area["xmin"]), float(area["xmax"])]
        ys = [float(area["ymin"]), float(area["ymax"])]
    elif isinstance(area.get("rings"), list):
        points = [p for ring in area["rings"] for p in ring]
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
    else:
        raise UnsupportedGeometryError("The area must be an Esri JSON envelope or polygon.")
    if not xs or not all(math.isfinite(v) for v in xs + ys):
        raise UnsupportedGeometryError("The area has no valid coordinates.")
    if wkid in WEB_MERCATOR_WKIDS:
        return min(xs), min(ys), max(xs), max(ys)
    if wkid == 4326:
        (x0, y0), (x1, y1) = (
            lonlat_to_mercator(min(xs), min(ys)),
            lonlat_to_mercator(max(xs), max(ys)),
        )
        return x0, y0, x1, y1
    return _transformed_extent(wkid, min(xs), min(ys), max(xs), max(ys))


def _transformed_extent(
    wkid: Any, xmin: float, ymin: float, xmax: float, ymax: float
) -> tuple[float, float, float, float]:
    from osgeo import osr

    source, target = osr.SpatialReference(), osr.SpatialReference()
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if not isinstance(wkid, int) or source.ImportFromEPSG(wkid) != 0:
        raise UnsupportedGeometryError(
            f"The area is in the spatial reference {wkid or 'unknown'}, which is not known; give "
            "it in Web Mercator (3857) or WGS 84 (4326) to take a basemap offline."
        )
    target.ImportFromEPSG(3857)
    transform = osr.CoordinateTransformation(source, target)
    x0, y0, x1, y1 = transform.TransformBounds(xmin, ymin, xmax, ymax, 21)
    return x0, y0, x1, y1


def lonlat_to_mercator(lon: float, lat: float) -> tuple[float, float]:
    lat = max(-_MAX_LATITUDE, min(_MAX_LATITUDE, lat))
    x = math.radians(lon) * _EARTH_RADIUS
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * _EARTH_RADIUS
    return x, y


def mercator_to_lonlat(x: float, y: float) -> tuple[float, float]:
    lon = math.degrees(x / _EARTH_RADIUS)
    lat = math.degrees(2 * math.atan(math.exp(y / _EARTH_RADIUS)) - math.pi / 2)
    return lon, lat
