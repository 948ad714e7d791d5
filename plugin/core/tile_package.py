"""Reading ArcGIS tile packages: ``.tpkx`` (raster tiles) and ``.vtpk`` (vector tiles).

Both are zip files holding a ``root.json`` (the cache's ``tileInfo``) and the tiles in
Compact Cache V2 bundles, ``tile/L<level>/R<row>C<col>.bundle``: a 64-byte header, then an
index of 128 x 128 entries of 8 bytes (little-endian; the low 40 bits are the tile's offset in
the bundle, the high 24 bits its size, 0 = no tile), then the tiles. A vector tile package
keeps all of it under ``p12/`` with its style in ``p12/resources/styles/root.json``.

A package is a file from elsewhere: entry sizes, bundle offsets and tile sizes are checked
against the file before anything is read, JSON entries are read with a size limit, and tiles
are read one at a time straight from the file (never the whole package in memory).
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Collection, Iterator

from .errors import CancelledError, OfflineMapSyncError

_BUNDLE = re.compile(
    r"^(?P<prefix>(?:p12/)?)tile/L(?P<level>\d{1,2})/R(?P<row>[0-9a-f]{4,8})C(?P<col>[0-9a-f]{4,8})\.bundle$",
    re.IGNORECASE,
)
_HEADER = 64
_PACKET = 128
_INDEX_BYTES = _PACKET * _PACKET * 8
#: Largest JSON entry read (root.json, style).
MAX_JSON_BYTES = 16 * 1024 * 1024
#: Largest single tile accepted (the index's size field allows up to 16 MiB).
MAX_TILE_BYTES = 16 * 1024 * 1024 - 1
#: Largest bundle unpacked from a compressed entry (stored entries are read in place).
MAX_BUNDLE_BYTES = 4 * 1024**3
#: Most entries a package may list.
MAX_ENTRIES = 1_000_000
#: Largest list of entries (zip central directory) read: Python's zip reader holds all of it,
#: and an object per entry, in memory before anything can be counted.
MAX_CENTRAL_DIRECTORY_BYTES = 64 * 1024 * 1024

Tile = tuple[int, int, int, bytes]


class TilePackageError(OfflineMapSyncError):
    """A tile package that cannot be read (not a zip, damaged, not a tile package)."""


@dataclass(frozen=True)
class _Bundle:
    name: str
    level: int
    row: int
    col: int


class TilePackage:
    """An opened ``.tpkx`` or ``.vtpk``; use as a context manager."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, prefix: str, root: dict) -> None:
        self.path = path
        self._zip = archive
        self._prefix = prefix
        #: The package's root.json (``tileInfo``, ``fullExtent``, ...).
        self.root = root
        self._bundles = [
            _Bundle(info.filename, int(m["level"]), int(m["row"], 16), int(m["col"], 16))
            for info in archive.infolist()
            if (m := _BUNDLE.match(info.filename)) and m["prefix"] == prefix
        ]

    @classmethod
    def open(cls, path: str | Path) -> TilePackage:
        """Open a tile package; raises TilePackageError saying what is wrong with it."""
        path = Path(path)
        try:
            _check_directory(path)
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise TilePackageError(
                f"{path.name} is not a tile package (.tpkx or .vtpk): {error}."
            ) from None
        try:
            names = archive.namelist()
            if len(names) > MAX_ENTRIES:
                raise TilePackageError(f"{path.name} lists too many files to be a tile package.")
            prefix = "p12/" if "p12/root.json" in names else ""
            if f"{prefix}root.json" not in names:
                raise TilePackageError(
                    f"{path.name} is not a tile package: it has no root.json (only Compact "
                    "Cache V2 packages, .tpkx and .vtpk, can be read)."
                )
            root = _read_json(archive, f"{prefix}root.json", path)
            if not isinstance(root, dict) or not isinstance(root.get("tileInfo"), dict):
                raise TilePackageError(f"{path.name} has no tiling scheme (tileInfo) in root.json.")
            storage = (root.get("storageInfo") or {}).get("storageFormat")
            if storage and storage != "esriMapCacheStorageModeCompactV2":
                raise TilePackageError(
                    f"{path.name} stores its tiles as {storage}; only Compact Cache V2 can be read."
                )
        except BaseException:
            archive.close()
            raise
        return cls(path, archive, prefix, root)

    @property
    def is_vector(self) -> bool:
        return self._prefix == "p12/"

    @property
    def tile_info(self) -> dict:
        return self.root["tileInfo"]

    def style(self) -> dict | None:
        """The vector tile style (``resources/styles/root.json``), None when absent."""
        name = f"{self._prefix}resources/styles/root.json"
        if name not in self._zip.namelist():
            return None
        style = _read_json(self._zip, name, self.path)
        return style if isinstance(style, dict) else None

    def levels(self) -> list[int]:
        return sorted({bundle.level for bundle in self._bundles})

    def tiles(
        self, levels: Collection[int] | None = None, cancel: Callable[[], bool] | None = None
    ) -> Iterator[Tile]:
        """Every tile ``(level, row, col, bytes)``, bundle by bundle; ``levels`` keeps only
        those levels (the bundles of the others are not read)."""
        # One handle on the package for all its stored bundles, not one per bundle.
        with open(self.path, "rb") as package_file:
            package_size = package_file.seek(0, 2)
            for bundle in sorted(self._bundles, key=lambda b: (b.level, b.row, b.col)):
                if levels is not None and bundle.level not in levels:
                    continue
                if cancel is not None and cancel():
                    raise CancelledError("The operation was cancelled.")
                yield from self._bundle_tiles(bundle, package_file, package_size)

    def _bundle_tiles(
        self, bundle: _Bundle, package_file: IO[bytes], package_size: int
    ) -> Iterator[Tile]:
        info = self._zip.getinfo(bundle.name)
        entry = _entry_file(self._zip, info, self.path, package_file, package_size)
        with entry as (stream, start, size):
            if size < _HEADER + _INDEX_BYTES:
                raise TilePackageError(f"{self.path.name}: the bundle {bundle.name} is damaged.")
            stream.seek(start + _HEADER)
            index = stream.read(_INDEX_BYTES)
            if len(index) != _INDEX_BYTES:
                raise TilePackageError(f"{self.path.name}: the bundle {bundle.name} is cut off.")
            for position, (entry,) in enumerate(struct.iter_unpack("<Q", index)):
                length = entry >> 40
                if length == 0:
                    continue
                offset = entry & ((1 << 40) - 1)
                if (
                    offset < _HEADER + _INDEX_BYTES
                    or offset + length > size
                    or length > MAX_TILE_BYTES
                ):
                    raise TilePackageError(
                        f"{self.path.name}: the bundle {bundle.name} points outside itself; the "
                        "package is damaged."
                    )
                stream.seek(start + offset)
                data = stream.read(length)
                if len(data) != length:
                    raise TilePackageError(
                        f"{self.path.name}: the bundle {bundle.name} is cut off."
                    )
                row, col = divmod(position, _PACKET)
                yield bundle.level, bundle.row + row, bundle.col + col, data

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> TilePackage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_directory(path: Path) -> None:
    """Refuse a zip whose end record announces more entries, or a longer list of them, than
    a tile package has, before the zip reader loads that list."""
    with open(path, "rb") as stream:
        size = stream.seek(0, 2)
        tail_size = min(size, 22 + 0xFFFF)
        stream.seek(size - tail_size)
        tail = stream.read(tail_size)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return  # not a zip: the zip reader says so
        entries, directory_size = struct.unpack("<HI", tail[at + 10 : at + 16])
        locator = tail[at - 20 : at] if at >= 20 else b""
        if locator[:4] == b"PK\x06\x07":
            # Zip64: the counts are in the Zip64 end record the locator points at.
            (record_at,) = struct.unpack("<Q", locator[8:16])
            stream.seek(min(record_at, size))
            record = stream.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, directory_size = struct.unpack("<QQ", record[32:48])
    if entries > MAX_ENTRIES or directory_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise TilePackageError(f"{path.name} lists too many files to be a tile package.")


def _read_json(archive: zipfile.ZipFile, name: str, path: Path) -> object:
    info = archive.getinfo(name)
    if info.file_size > MAX_JSON_BYTES:
        raise TilePackageError(f"{path.name}: {name} is far too large to be a tile package's.")
    try:
        with archive.open(info) as stream:
            text = stream.read(MAX_JSON_BYTES + 1)
        if len(text) > MAX_JSON_BYTES:
            raise TilePackageError(f"{path.name}: {name} is far too large to be a tile package's.")
        return json.loads(text.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError, RecursionError) as error:
        raise TilePackageError(f"{path.name}: {name} cannot be read ({error}).") from None


@contextmanager
def _entry_file(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    path: Path,
    package_file: IO[bytes],
    package_size: int,
) -> Iterator[tuple[IO[bytes], int, int]]:
    """``(stream, start, size)`` of a zip entry's bytes: ``package_file`` (the package, opened
    by the caller) for stored entries (how packages are written), a temporary copy for
    compressed ones."""
    if info.compress_type == zipfile.ZIP_STORED:
        package_file.seek(info.header_offset)
        header = package_file.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise TilePackageError(f"{path.name}: the entry {info.filename} is damaged.")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_length + extra_length
        if start + info.file_size > package_size:
            raise TilePackageError(f"{path.name}: the entry {info.filename} is cut off.")
        yield package_file, start, info.file_size
        return
    limit = min(info.file_size, MAX_BUNDLE_BYTES)
    with tempfile.TemporaryFile(prefix="oms-bundle-") as temp:
        try:
            with archive.open(info) as source:
                # A compressed entry may unpack to far more than it says (a zip bomb).
                while chunk := source.read(1 << 20):
                    if temp.tell() + len(chunk) > limit:
                        raise TilePackageError(
                            f"{path.name}: {info.filename} is larger than it says or than any "
                            "bundle; the package is damaged."
                        )
                    temp.write(chunk)
        except (zipfile.BadZipFile, OSError) as error:
            raise TilePackageError(
                f"{path.name}: {info.filename} cannot be read ({error})."
            ) from None
        yield temp, 0, temp.tell()
