"""A tiny Compact Cache V2 tile package writer, to build packages for the reader's tests."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

_HEADER = 64
_PACKET = 128
_INDEX_BYTES = _PACKET * _PACKET * 8


def write_tile_package(
    path: str | Path,
    root: dict,
    tiles: dict[tuple[int, int, int], bytes],
    *,
    vector: bool = False,
    style: dict | None = None,
) -> Path:
    """Write a small Compact Cache V2 tile package (tests and demos build packages with it)."""
    prefix = "p12/" if vector else ""
    bundles: dict[tuple[int, int, int], dict[int, bytes]] = {}
    for (level, row, col), data in tiles.items():
        key = (level, row - row % _PACKET, col - col % _PACKET)
        bundles.setdefault(key, {})[(row % _PACKET) * _PACKET + col % _PACKET] = data
    path = Path(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}root.json", json.dumps(root))
        if style is not None:
            archive.writestr(f"{prefix}resources/styles/root.json", json.dumps(style))
        for (level, row, col), entries in sorted(bundles.items()):
            index = bytearray(_INDEX_BYTES)
            body = bytearray()
            for position, data in sorted(entries.items()):
                offset = _HEADER + _INDEX_BYTES + len(body) + 4
                body += struct.pack("<I", len(data)) + data
                struct.pack_into("<Q", index, position * 8, offset | (len(data) << 40))
            header = bytearray(_HEADER)
            struct.pack_into("<IIIQQ", header, 0, 3, _PACKET * _PACKET, 16, 0, 0)
            archive.writestr(
                f"{prefix}tile/L{level:02d}/R{row:04x}C{col:04x}.bundle",
                bytes(header) + bytes(index) + bytes(body),
            )
    return path
