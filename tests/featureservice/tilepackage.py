"""Tile packages (.tpkx) and vector tile packages (.vtpk), written by streaming to disk.

Both are zip files with stored (not deflated) entries. A .tpkx holds ``root.json`` (the
service's tiling scheme with ``storageInfo``), ``iteminfo.json`` and
``tile/L{zz}/R{rrrr}C{cccc}.bundle``; a .vtpk holds ``p12/root.json`` (the VectorTileServer
JSON), ``p12/resources/styles/root.json`` and ``p12/tile/L{zz}/R....C.....bundle`` whose
tiles are gzipped protobuf.

A bundle is Esri's Compact Cache V2 format: a 64-byte header, an index of 128x128 entries of
8 bytes little-endian (entry (row % 128) * 128 + col % 128 = offset | size << 40, size 0 for
no tile), then each tile as a 4-byte little-endian size followed by its bytes; the index
offset points at the bytes, after the size. ``L`` is the level in two decimal digits, ``R``/
``C`` the row and column of the bundle's first tile in four (or more) lowercase hex digits.

Each bundle is written to its own file first (index rewritten at the end), then copied into
the zip in chunks: only one bundle index and one tile are ever in memory.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Callable, Iterable

from .geom import point_projector
from .tiles import (
    ExportRequest,
    TileService,
    envelope_json,
    existing_tiles,
    export_area,
    service_json,
    style_json,
)

to_wgs84 = point_projector(3857, 4326)

PACKET = 128
RECORDS = PACKET * PACKET
INDEX_SIZE = RECORDS * 8
HEADER_SIZE = 64


def bundle_name(level: int, row: int, col: int) -> str:
    """``L{zz}/R{rrrr}C{cccc}.bundle`` of the bundle holding tile (level, row, col)."""
    return f"L{level:02d}/R{row - row % PACKET:04x}C{col - col % PACKET:04x}.bundle"


def write_bundle(path: Path, tiles: Iterable[tuple[int, int, bytes]]) -> int:
    """Writes the (row, col, data) tiles of one bundle to `path`; returns the tile count."""
    index = [0] * RECORDS
    largest = count = 0
    offset = HEADER_SIZE + INDEX_SIZE
    with open(path, "wb") as fp:
        fp.seek(offset)
        for row, col, data in tiles:
            fp.write(struct.pack("<I", len(data)))
            offset += 4
            index[(row % PACKET) * PACKET + col % PACKET] = offset | len(data) << 40
            fp.write(data)
            offset += len(data)
            largest = max(largest, len(data))
            count += 1
        fp.seek(0)
        fp.write(
            struct.pack(
                "<4I3Q6I",
                3,  # version
                RECORDS,
                largest,  # the largest tile
                5,  # bytes of an offset
                0,  # slack space
                offset,  # file size
                40,  # user header offset
                20 + INDEX_SIZE,  # user header size
                3,
                16,
                RECORDS,
                5,
                INDEX_SIZE,
            )
        )
        fp.write(struct.pack(f"<{RECORDS}Q", *index))
    return count


def _root_json(svc: TileService, export: ExportRequest) -> dict:
    """The service JSON cut to the export: its levels, scales and extent (the exported part of
    the full extent), with the storage and image information of a tile package."""
    doc = service_json(svc)
    top = max(export.levels)
    lods = doc["tileInfo"]["lods"] = doc["tileInfo"]["lods"][: top + 1]
    doc["minLOD"], doc["maxLOD"] = min(export.levels), top
    doc["minScale"], doc["maxScale"] = lods[min(export.levels)]["scale"], lods[top]["scale"]
    doc["initialExtent"] = doc["fullExtent"] = envelope_json(export_area(export))
    doc["exportTilesAllowed"] = False
    doc["storageInfo"] = {"storageFormat": "esriMapCacheStorageModeCompactV2", "packetSize": PACKET}
    if svc.kind == "raster":
        doc["name"] = svc.name
        doc["version"] = 1.0
        doc["tileBundlesPath"] = "./tile"
        doc["tileImageInfo"] = {"format": "PNG32", "compressionQuality": 0, "antialiasing": False}
        doc["resampling"] = False
    else:
        doc["maxzoom"] = top
    return doc


def _item_info(svc: TileService, export: ExportRequest) -> dict:
    xmin, ymin, xmax, ymax = export_area(export)
    (lon0, lat0), (lon1, lat1) = to_wgs84(xmin, ymin), to_wgs84(xmax, ymax)
    return {
        "creator": "tests.featureservice",
        "name": svc.name,
        "version": 1.0,
        "title": svc.name,
        "type": "Compact Tile Package",
        "typeKeywords": ["Compact Tile Package", "Tile Package", "tpkx"],
        "extent": {
            "xmin": lon0,
            "ymin": lat0,
            "xmax": lon1,
            "ymax": lat1,
            "spatialReference": {"wkid": 4326, "latestWkid": 4326},
        },
    }


def write_package(
    path: Path,
    svc: TileService,
    export: ExportRequest,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Writes the .tpkx / .vtpk of `export` to `path` (via a ``.part`` file); returns the number
    of tiles. `progress` is called with the percent done after each bundle."""
    prefix = "" if svc.kind == "raster" else "p12/"
    total = sum(1 for _ in existing_tiles(svc, export.levels, export.box))
    tmp = path.with_name(path.name + ".part")
    scratch = path.with_name(path.name + ".bundle.part")
    done = 0
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(f"{prefix}root.json", json.dumps(_root_json(svc, export)))
            if svc.kind == "raster":
                zf.writestr("iteminfo.json", json.dumps(_item_info(svc, export)))
            else:
                zf.writestr(f"{prefix}resources/styles/root.json", json.dumps(style_json(svc)))
            tiles = existing_tiles(svc, export.levels, export.box)
            for name, group in itertools.groupby(tiles, key=lambda t: bundle_name(*t)):
                done += write_bundle(
                    scratch, ((r, c, svc.stored_tile(z, r, c)) for z, r, c in group)
                )
                zf.write(scratch, f"{prefix}tile/{name}")
                if progress is not None:
                    progress(done * 100 // max(total, 1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        scratch.unlink(missing_ok=True)
    return done
