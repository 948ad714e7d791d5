"""Mapbox Vector Tiles (specification 2.1) for the vector basemap, with a small protobuf encoder.

A tile has up to three layers, extent 4096: ``land`` (polygons with ``class`` land / park /
water), ``roads`` (lines with ``class`` major / minor and ``name``) and ``places`` (points
with ``name`` and ``rank``). The features are fixed shapes around the demo area (seed.py's
BASE_LON/BASE_LAT), clipped to the tile plus a buffer of 64 units, so neighbouring tiles
join up. Shapes are axis-aligned in Web Mercator, so clipping stays exact and simple.
"""

from __future__ import annotations

from .seed import BASE_LAT, BASE_LON, mercator

EXTENT = 4096
BUFFER = 64
_POINT, _LINESTRING, _POLYGON = 1, 2, 3


# --- protobuf wire format ---------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def uint_field(field: int, value: int) -> bytes:
    return _key(field, 0) + varint(value)


def bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + varint(len(data)) + data


def packed_field(field: int, values: list[int]) -> bytes:
    return bytes_field(field, b"".join(varint(v) for v in values))


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _command(command: int, count: int) -> int:
    return (command & 0x7) | (count << 3)


def encode_geometry(kind: int, parts: list[list[tuple[int, int]]]) -> list[int]:
    """Command integers for points (each part one point), lines, or polygon rings (closed by
    ClosePath; the ring given without its closing point)."""
    out: list[int] = []
    cx = cy = 0
    for part in parts:
        x, y = part[0]
        out += [_command(1, 1), zigzag(x - cx), zigzag(y - cy)]
        cx, cy = x, y
        rest = part[1:]
        if rest:
            out.append(_command(2, len(rest)))
            for x, y in rest:
                out += [zigzag(x - cx), zigzag(y - cy)]
                cx, cy = x, y
        if kind == _POLYGON:
            out.append(_command(7, 1))
    return out


def encode_layer(name: str, features: list[tuple[int, list, dict]]) -> bytes:
    """A Layer message: version 2, name, features (type, parts, properties), keys, values."""
    keys: dict[str, int] = {}
    values: dict[tuple[str, object], int] = {}
    encoded = []
    for number, (kind, parts, props) in enumerate(features, start=1):
        tags: list[int] = []
        for key, value in props.items():
            tags.append(keys.setdefault(key, len(keys)))
            tags.append(values.setdefault((type(value).__name__, value), len(values)))
        body = (
            uint_field(1, number)
            + packed_field(2, tags)
            + uint_field(3, kind)
            + packed_field(4, encode_geometry(kind, parts))
        )
        encoded.append(bytes_field(2, body))
    out = uint_field(15, 2) + bytes_field(1, name.encode("utf-8")) + b"".join(encoded)
    for key in keys:
        out += bytes_field(3, key.encode("utf-8"))
    for kind_name, value in values:
        if kind_name == "str":
            out += bytes_field(4, bytes_field(1, str(value).encode("utf-8")))
        else:  # non-negative integers
            out += bytes_field(4, uint_field(5, int(value)))  # type: ignore[arg-type]
    return out + uint_field(5, EXTENT)


# --- the demo area's shapes (Web Mercator) ---------------------------------------------------


def _box(lon0: float, lat0: float, lon1: float, lat1: float) -> tuple[float, ...]:
    return (*mercator(lon0, lat0), *mercator(lon1, lat1))


def _shapes():
    land = [
        ("land", _box(BASE_LON - 0.02, BASE_LAT - 0.015, BASE_LON + 0.03, BASE_LAT + 0.025)),
        ("water", _box(BASE_LON + 0.004, BASE_LAT - 0.015, BASE_LON + 0.03, BASE_LAT - 0.006)),
        ("park", _box(BASE_LON + 0.005, BASE_LAT + 0.003, BASE_LON + 0.009, BASE_LAT + 0.006)),
        ("park", _box(BASE_LON - 0.015, BASE_LAT + 0.012, BASE_LON - 0.008, BASE_LAT + 0.02)),
    ]
    roads = []
    for i in range(11):  # north-south streets
        x, y0 = mercator(BASE_LON - 0.02 + 0.005 * i, BASE_LAT - 0.006)
        _, y1 = mercator(0, BASE_LAT + 0.025)
        roads.append(("major" if i % 3 == 0 else "minor", f"Gasse {i + 1}", "ns", x, y0, y1))
    for j in range(9):  # east-west streets
        x0, y = mercator(BASE_LON - 0.02, BASE_LAT - 0.005 + 0.0035 * j)
        x1, _ = mercator(BASE_LON + 0.03, 0)
        roads.append(("major" if j % 4 == 0 else "minor", f"Strasse {j + 1}", "ew", y, x0, x1))
    places = [
        ("Hauptbahnhof", 1, 0.0, 0.008),
        ("Paradeplatz", 2, -0.001, 0.0),
        ("Bellevue", 2, 0.005, -0.003),
        ("Central", 3, 0.004, 0.007),
        ("Stadelhofen", 3, 0.009, -0.001),
        ("Limmatplatz", 3, -0.006, 0.012),
        ("Enge", 4, -0.012, -0.004),
        ("Hottingen", 4, 0.02, 0.006),
    ]
    points = [
        (name, rank, *mercator(BASE_LON + dx, BASE_LAT + dy)) for name, rank, dx, dy in places
    ]
    return land, roads, points


_SHAPES = _shapes()


def vector_tile(box: tuple[float, float, float, float]) -> bytes:
    """The tile covering the Web Mercator `box` (xmin, ymin, xmax, ymax), not compressed."""
    xmin, ymin, xmax, ymax = box
    sx = EXTENT / (xmax - xmin)
    sy = EXTENT / (ymax - ymin)

    def tx(x: float) -> int:
        return max(-BUFFER, min(EXTENT + BUFFER, round((x - xmin) * sx)))

    def ty(y: float) -> int:
        return max(-BUFFER, min(EXTENT + BUFFER, round((ymax - y) * sy)))

    land, roads, points = _SHAPES
    land_features = []
    for cls, (x0, y0, x1, y1) in land:
        left, right, top, bottom = tx(x0), tx(x1), ty(y1), ty(y0)
        if left < right and top < bottom:
            # Clockwise on screen (y down): positive area, an exterior ring in MVT 2.
            ring = [(left, top), (right, top), (right, bottom), (left, bottom)]
            land_features.append((_POLYGON, [ring], {"class": cls}))
    road_features = []
    for cls, name, direction, fixed, a, b in roads:
        if direction == "ns":
            x = round((fixed - xmin) * sx)
            top, bottom = ty(b), ty(a)
            if -BUFFER <= x <= EXTENT + BUFFER and top < bottom:
                road_features.append(
                    (_LINESTRING, [[(x, top), (x, bottom)]], {"class": cls, "name": name})
                )
        else:
            y = round((ymax - fixed) * sy)
            left, right = tx(a), tx(b)
            if -BUFFER <= y <= EXTENT + BUFFER and left < right:
                road_features.append(
                    (_LINESTRING, [[(left, y), (right, y)]], {"class": cls, "name": name})
                )
    place_features = []
    for name, rank, x, y in points:
        px, py = (x - xmin) * sx, (ymax - y) * sy
        if 0 <= px < EXTENT and 0 <= py < EXTENT:
            place_features.append((_POINT, [[(int(px), int(py))]], {"name": name, "rank": rank}))
    out = b""
    for name, features in (
        ("land", land_features),
        ("roads", road_features),
        ("places", place_features),
    ):
        if features:
            out += bytes_field(3, encode_layer(name, features))
    return out
