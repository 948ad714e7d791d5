"""Offline tile sets on disk: GeoPackage tiles (raster basemaps) and MBTiles (vector basemaps),
written with ``sqlite3`` so that GDAL and QGIS open them without the plugin.

A tile set is built in a partial file (``<final>.partial``) that a later run opens again: the
tiles it holds, and the tiles the service said it does not have, are not fetched again. Tiles
are written in batches, one transaction each, so an interruption loses at most one batch.
:meth:`TileStore.finish` writes the set's extent and moves the complete file into place.
"""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
import zlib
from pathlib import Path
from typing import Iterable

from .errors import GeodatabaseError
from .gpkg_connection import shared_writing
from .gpkg_files import move_geopackage, remove_geopackage
from .tile_scheme import TileRange, TileScheme, mercator_to_lonlat

log = logging.getLogger(__name__)

#: GeoPackage 1.3: application_id "GPKG" and user_version 10300.
_GPKG_APPLICATION_ID = 0x47504B47
_GPKG_USER_VERSION = 10300
#: The raster tile table of a basemap GeoPackage.
GPKG_TILE_TABLE = "basemap"
#: Tiles the service does not have (404), so that a resumed download does not ask again;
#: dropped when the set is finished.
_MISSING = "oms_missing_tiles"

Tile = tuple[int, int, int, bytes]


def partial_tiles_path(final: Path) -> Path:
    """Where the tile set meant for ``final`` is built until it is complete."""
    return final.with_name(final.name + ".partial")


class TileStore:
    """An open tile set being built; use :meth:`GeoPackageTiles.open` or
    :meth:`MBTiles.open`."""

    def __init__(self, final: Path, conn: sqlite3.Connection, scheme: TileScheme) -> None:
        self.final = final
        self.partial = partial_tiles_path(final)
        self.conn = conn
        self.scheme = scheme

    # -- what is there -----------------------------------------------------------------------
    def known(self, level: int) -> set[tuple[int, int]]:
        """``(row, col)`` of the tiles of ``level`` already stored or known to be missing."""
        found = {
            (self._row_from_stored(level, row), col)
            for row, col in self.conn.execute(
                f"SELECT tile_row, tile_column FROM {self._table} WHERE zoom_level = ?", (level,)
            )
        }
        found.update(
            self.conn.execute(
                f"SELECT tile_row, tile_column FROM {_MISSING} WHERE zoom_level = ?", (level,)
            ).fetchall()
        )
        return found

    def tile_count(self) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {self._table}").fetchone()[0])

    def has_tiles(self) -> bool:
        """Whether the set holds a tile at all (stops at the first, unlike counting them)."""
        return bool(self.conn.execute(f"SELECT EXISTS (SELECT 1 FROM {self._table})").fetchone()[0])

    def levels(self) -> list[int]:
        return [
            int(row[0])
            for row in self.conn.execute(
                f"SELECT DISTINCT zoom_level FROM {self._table} ORDER BY zoom_level"
            )
        ]

    # -- writing -----------------------------------------------------------------------------
    def write(self, tiles: Iterable[Tile], missing: Iterable[tuple[int, int, int]] = ()) -> None:
        """Store a batch of ``(level, row, col, bytes)`` tiles and note missing ones, in one
        transaction."""
        rows = [
            (level, col, self._stored_row(level, row), self._encode(data))
            for level, row, col, data in tiles
        ]
        with self.conn:
            self.conn.executemany(
                f"INSERT OR REPLACE INTO {self._table} "
                "(zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)",
                rows,
            )
            self.conn.executemany(
                f"INSERT OR IGNORE INTO {_MISSING} (zoom_level, tile_row, tile_column) "
                "VALUES (?, ?, ?)",
                list(missing),
            )

    def finish(self) -> Path:
        """Write the set's extent and levels, close it and move it into place."""
        with self.conn:
            self._finish_metadata()
            self.conn.execute(f"DROP TABLE IF EXISTS {_MISSING}")
        self.conn.execute("VACUUM")
        # The finished file is one self-contained file, as readers expect.
        self.conn.execute("PRAGMA journal_mode = DELETE")
        self.conn.close()
        move_geopackage(self.partial, self.final)
        return self.final

    def close(self) -> None:
        self.conn.close()

    def discard(self) -> None:
        """Close and delete the partial file."""
        self.conn.close()
        remove_geopackage(self.partial)

    # -- for subclasses ----------------------------------------------------------------------
    _table = "tiles"

    def _stored_row(self, level: int, row: int) -> int:
        return row

    def _row_from_stored(self, level: int, row: int) -> int:
        return row

    def _encode(self, data: bytes) -> bytes:
        return data

    def _finish_metadata(self) -> None:
        raise NotImplementedError


def _connect(path: Path) -> sqlite3.Connection:
    # Not gpkg_connection.connect: its connections are autocommit with explicit transactions,
    # while a tile set's batches are committed by ``with conn`` (Python's transaction mode).
    # Each batch commits atomically; without a sync per commit (WAL), a lost batch after a
    # power cut is only fetched again.
    conn = sqlite3.connect(path)
    try:
        shared_writing(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _open(partial: Path, create_sql: list[str], check_sql: str) -> tuple[sqlite3.Connection, bool]:
    """Open the partial file (resume) or create it; True when it was created. A partial file
    that is not one of ours is started over."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    if partial.exists():
        conn = None
        try:
            conn = _connect(partial)
            conn.execute(check_sql).fetchall()
            conn.execute(f"SELECT zoom_level, tile_row, tile_column FROM {_MISSING} LIMIT 1")
            # A file damaged half-way (a crash, a bad copy) is started over, not continued.
            if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise sqlite3.DatabaseError("damaged")
            return conn, False
        except sqlite3.Error:
            if conn is not None:
                conn.close()
            log.info("The partial basemap file %s is damaged; it is started over.", partial)
            remove_geopackage(partial)
    conn = None
    try:
        conn = _connect(partial)
        with conn:
            for statement in create_sql:
                conn.execute(statement)
            conn.execute(
                f"CREATE TABLE {_MISSING} (zoom_level INTEGER NOT NULL, tile_row INTEGER NOT NULL, "
                "tile_column INTEGER NOT NULL, PRIMARY KEY (zoom_level, tile_row, tile_column))"
            )
    except (sqlite3.Error, OSError) as error:
        if conn is not None:
            conn.close()
        remove_geopackage(partial)
        reason = getattr(error, "strerror", None) or error
        raise GeodatabaseError(f"The basemap file {partial} cannot be created: {reason}.") from None
    return conn, True


# -- GeoPackage tiles ------------------------------------------------------------------------------
class GeoPackageTiles(TileStore):
    """A GeoPackage with one tile pyramid (table ``basemap``) in EPSG:3857, whose tile matrix
    set is the service's: matrix (0, 0) at the scheme's origin, one tile matrix per level."""

    _table = GPKG_TILE_TABLE

    @classmethod
    def open(
        cls, final: Path, scheme: TileScheme, levels: Iterable[int], *, title: str
    ) -> GeoPackageTiles:
        """Create (or resume) the partial GeoPackage for ``final`` with the given levels."""
        partial = partial_tiles_path(final)
        table = GPKG_TILE_TABLE
        x0, y0 = scheme.origin_x, scheme.origin_y
        world_x, world_y = 2 * abs(x0), 2 * abs(y0)
        statements = [
            f"PRAGMA application_id = {_GPKG_APPLICATION_ID}",
            f"PRAGMA user_version = {_GPKG_USER_VERSION}",
            "CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL "
            "PRIMARY KEY, organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, "
            "definition TEXT NOT NULL, description TEXT)",
            "CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT "
            "NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '', last_change DATETIME "
            "NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, min_y DOUBLE, "
            "max_x DOUBLE, max_y DOUBLE, srs_id INTEGER, CONSTRAINT fk_gc_r_srs_id FOREIGN KEY "
            "(srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))",
            "CREATE TABLE gpkg_tile_matrix_set (table_name TEXT NOT NULL PRIMARY KEY, srs_id "
            "INTEGER NOT NULL, min_x DOUBLE NOT NULL, min_y DOUBLE NOT NULL, max_x DOUBLE NOT "
            "NULL, max_y DOUBLE NOT NULL, CONSTRAINT fk_gtms_table_name FOREIGN KEY (table_name) "
            "REFERENCES gpkg_contents(table_name), CONSTRAINT fk_gtms_srs FOREIGN KEY (srs_id) "
            "REFERENCES gpkg_spatial_ref_sys (srs_id))",
            "CREATE TABLE gpkg_tile_matrix (table_name TEXT NOT NULL, zoom_level INTEGER NOT "
            "NULL, matrix_width INTEGER NOT NULL, matrix_height INTEGER NOT NULL, tile_width "
            "INTEGER NOT NULL, tile_height INTEGER NOT NULL, pixel_x_size DOUBLE NOT NULL, "
            "pixel_y_size DOUBLE NOT NULL, CONSTRAINT pk_ttm PRIMARY KEY (table_name, "
            "zoom_level), CONSTRAINT fk_tmm_table_name FOREIGN KEY (table_name) REFERENCES "
            "gpkg_contents(table_name))",
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, zoom_level INTEGER NOT "
            "NULL, tile_column INTEGER NOT NULL, tile_row INTEGER NOT NULL, tile_data BLOB NOT "
            "NULL, UNIQUE (zoom_level, tile_column, tile_row))",
        ]
        conn, created = _open(partial, statements, f"SELECT tile_data FROM {table} LIMIT 1")
        if created:
            with conn:
                conn.executemany(
                    "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", _srs_rows()
                )
                conn.execute(
                    "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, "
                    "srs_id) VALUES (?, 'tiles', ?, '', 3857)",
                    (table, title),
                )
                conn.execute(
                    "INSERT INTO gpkg_tile_matrix_set VALUES (?, 3857, ?, ?, ?, ?)",
                    (table, x0, y0 - world_y, x0 + world_x, y0),
                )
        # Resumed with other levels chosen: the new ones get their tile matrices too.
        with conn:
            for level in sorted(set(levels)):
                width, height = scheme.matrix_size(level)
                conn.execute(
                    "INSERT OR IGNORE INTO gpkg_tile_matrix VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        table,
                        level,
                        width,
                        height,
                        scheme.cols,
                        scheme.rows,
                        world_x / (width * scheme.cols),
                        world_y / (height * scheme.rows),
                    ),
                )
        return cls(final, conn, scheme)

    def _finish_metadata(self) -> None:
        # The data's extent: the tiles of the most detailed level stored (GDAL shows it).
        row = self.conn.execute(
            f"SELECT zoom_level, min(tile_row), max(tile_row), min(tile_column), "
            f"max(tile_column) FROM {self._table} WHERE zoom_level = "
            f"(SELECT max(zoom_level) FROM {self._table})"
        ).fetchone()
        if row is None or row[0] is None:
            return
        xmin, ymin, xmax, ymax = self.scheme.range_bounds(TileRange(*row))
        self.conn.execute(
            "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, "
            "last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name = ?",
            (xmin, ymin, xmax, ymax, self._table),
        )
        # Levels without a single tile would only make readers ask for nothing.
        self.conn.execute(
            f"DELETE FROM gpkg_tile_matrix WHERE table_name = ? AND zoom_level NOT IN "
            f"(SELECT DISTINCT zoom_level FROM {self._table})",
            (self._table,),
        )


def _srs_rows() -> list[tuple]:
    from osgeo import osr

    def wkt(epsg: int) -> str:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        return srs.ExportToWkt()

    return [
        (
            "Undefined cartesian SRS",
            -1,
            "NONE",
            -1,
            "undefined",
            "undefined cartesian coordinate reference system",
        ),
        (
            "Undefined geographic SRS",
            0,
            "NONE",
            0,
            "undefined",
            "undefined geographic coordinate reference system",
        ),
        (
            "WGS 84 geodetic",
            4326,
            "EPSG",
            4326,
            wkt(4326),
            "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid",
        ),
        ("WGS 84 / Pseudo-Mercator", 3857, "EPSG", 3857, wkt(3857), "Web Mercator"),
    ]


# -- MBTiles ------------------------------------------------------------------------------------
class MBTiles(TileStore):
    """An MBTiles 1.3 file of vector tiles (gzipped Mapbox Vector Tiles, rows counted from the
    bottom as TMS does)."""

    def __init__(self, final: Path, conn: sqlite3.Connection, scheme: TileScheme) -> None:
        super().__init__(final, conn, scheme)
        self._style_layers: list[str] = []

    @classmethod
    def open(cls, final: Path, scheme: TileScheme, *, title: str) -> MBTiles:
        """Create (or resume) the partial MBTiles file for ``final``."""
        statements = [
            "CREATE TABLE metadata (name TEXT NOT NULL PRIMARY KEY, value TEXT)",
            "CREATE TABLE tiles (zoom_level INTEGER NOT NULL, tile_column INTEGER NOT NULL, "
            "tile_row INTEGER NOT NULL, tile_data BLOB NOT NULL, "
            "PRIMARY KEY (zoom_level, tile_column, tile_row))",
        ]
        conn, created = _open(
            partial_tiles_path(final), statements, "SELECT name, value FROM metadata LIMIT 1"
        )
        if created:
            with conn:
                conn.executemany(
                    "INSERT INTO metadata VALUES (?, ?)",
                    [("name", title), ("format", "pbf"), ("type", "baselayer"), ("version", "1")],
                )
        return cls(final, conn, scheme)

    def _stored_row(self, level: int, row: int) -> int:
        return self.scheme.matrix_size(level)[1] - 1 - row

    _row_from_stored = _stored_row

    def _encode(self, data: bytes) -> bytes:
        # MBTiles holds gzipped pbf; services send either.
        return data if data[:2] == b"\x1f\x8b" else gzip.compress(data, 6)

    def set_vector_layers(self, names: Iterable[str]) -> None:
        """Layers the style draws, listed in the ``json`` metadata even when no sampled tile
        has them."""
        self._style_layers = sorted(set(names))

    def _vector_layers(self) -> list[dict]:
        """``vector_layers`` of the ``json`` metadata: layer names and attribute types read
        from a sample of the tiles (GDAL and QGIS list layers and fields from it)."""
        fields: dict[str, dict[str, str]] = {name: {} for name in self._style_layers}
        rows = self.conn.execute(
            "SELECT tile_data FROM tiles ORDER BY zoom_level DESC, random() LIMIT ?",
            (_SAMPLED_TILES,),
        )
        for (data,) in rows:
            for name, columns in _tile_layers(data).items():
                fields.setdefault(name, {}).update(columns)
        return [{"id": name, "fields": columns} for name, columns in sorted(fields.items())]

    def _finish_metadata(self) -> None:
        row = self.conn.execute("SELECT min(zoom_level), max(zoom_level) FROM tiles").fetchone()
        if row is None or row[0] is None:
            return
        min_zoom, max_zoom = int(row[0]), int(row[1])
        level_row = self.conn.execute(
            "SELECT min(tile_row), max(tile_row), min(tile_column), max(tile_column) "
            "FROM tiles WHERE zoom_level = ?",
            (max_zoom,),
        ).fetchone()
        min_tms, max_tms, min_col, max_col = level_row
        top = self._row_from_stored(max_zoom, max_tms)
        bottom = self._row_from_stored(max_zoom, min_tms)
        xmin, ymin, xmax, ymax = self.scheme.range_bounds(
            TileRange(max_zoom, top, bottom, min_col, max_col)
        )
        west, south = mercator_to_lonlat(xmin, ymin)
        east, north = mercator_to_lonlat(xmax, ymax)
        values = {
            "minzoom": str(min_zoom),
            "maxzoom": str(max_zoom),
            "bounds": f"{west:.6f},{south:.6f},{east:.6f},{north:.6f}",
            "center": f"{(west + east) / 2:.6f},{(south + north) / 2:.6f},{min_zoom}",
        }
        values["json"] = json.dumps({"vector_layers": self._vector_layers()})
        self.conn.executemany("INSERT OR REPLACE INTO metadata VALUES (?, ?)", list(values.items()))


#: Vector tiles read to list the layers and their attributes.
_SAMPLED_TILES = 64
#: Largest vector tile unpacked to read its layers; a tile that unpacks to more (a gzip bomb
#: from a package or service) is not sampled.
MAX_UNPACKED_TILE_BYTES = 16 * 1024 * 1024
_MVT_FIELD_TYPES = {
    "String": "String",
    "Integer": "Number",
    "Integer64": "Number",
    "Real": "Number",
}


def _tile_layers(data: bytes) -> dict[str, dict[str, str]]:
    """The layers of one Mapbox vector tile and their attributes' types, read by GDAL."""
    from osgeo import gdal, ogr

    from .gdal_mode import gdal_exceptions

    name = f"/vsimem/oms-sample-{id(data)}.pbf"
    raw = _gunzip_bounded(data, MAX_UNPACKED_TILE_BYTES) if data[:2] == b"\x1f\x8b" else data
    if raw is None:
        return {}
    gdal.FileFromMemBuffer(name, raw)
    found: dict[str, dict[str, str]] = {}
    try:
        with gdal_exceptions(False):
            dataset = gdal.OpenEx(name, gdal.OF_VECTOR, allowed_drivers=["MVT"])
        if dataset is None:
            return {}
        for index in range(dataset.GetLayerCount()):
            layer = dataset.GetLayer(index)
            definition = layer.GetLayerDefn()
            columns = {}
            for f in range(definition.GetFieldCount()):
                field = definition.GetFieldDefn(f)
                if field.GetName() == "mvt_id":
                    continue
                kind = ogr.GetFieldTypeName(field.GetType())
                columns[field.GetName()] = _MVT_FIELD_TYPES.get(kind, "String")
            found[layer.GetName()] = columns
        dataset = None
    finally:
        gdal.Unlink(name)
    return found


def _gunzip_bounded(data: bytes, limit: int) -> bytes | None:
    """The unpacked bytes of gzipped ``data``, or None when damaged or larger than ``limit``
    (never more than ``limit`` + 1 bytes in memory)."""
    unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = unpacker.decompress(data, limit + 1)
    except zlib.error:
        return None
    return None if len(raw) > limit else raw
