"""Esri JSON geometry on the server side: validation, bounding boxes, projection, GeoJSON."""

from __future__ import annotations

import json
import math
from typing import Any

WEB_MERCATOR_WKIDS = {3857, 102100, 102113, 900913, 3785}
WGS84_WKIDS = {4326}
_R = 6378137.0


class GeometryError(ValueError):
    """A geometry (or a spatial reference) the service cannot use."""


def wkid_of(sr: Any) -> int | None:
    if sr is None or sr == "":
        return None
    if isinstance(sr, dict):
        value = sr.get("latestWkid") or sr.get("wkid")
    elif isinstance(sr, str):
        text = sr.strip()
        if text.startswith("{"):
            try:
                return wkid_of(json.loads(text))
            except json.JSONDecodeError as exc:
                raise GeometryError(f"invalid spatial reference {sr!r}") from exc
        value = text.upper().replace("EPSG:", "")
    else:
        value = sr
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"invalid spatial reference {sr!r}") from exc


def _family(wkid: int) -> str:
    if wkid in WEB_MERCATOR_WKIDS:
        return "mercator"
    if wkid in WGS84_WKIDS:
        return "wgs84"
    raise GeometryError(f"spatial reference {wkid} is not supported (use 4326 or 3857/102100)")


def _to_mercator(x: float, y: float) -> tuple[float, float]:
    y = max(min(y, 85.05112878), -85.05112878)
    return _R * math.radians(x), _R * math.log(math.tan(math.pi / 4 + math.radians(y) / 2))


def _to_wgs84(x: float, y: float) -> tuple[float, float]:
    return math.degrees(x / _R), math.degrees(2 * math.atan(math.exp(y / _R)) - math.pi / 2)


def point_projector(from_wkid: int | None, to_wkid: int | None):
    """A function projecting (x, y) between the two references, or None when they are the same."""
    if from_wkid is None or to_wkid is None:
        return None
    source, target = _family(from_wkid), _family(to_wkid)
    if source == target:
        return None
    return _to_mercator if target == "mercator" else _to_wgs84


def _map_coords(geom: dict, fn) -> dict:
    out = {k: v for k, v in geom.items() if k != "spatialReference"}

    def coord(c):
        x, y = fn(c[0], c[1])
        return [x, y, *c[2:]]

    if "x" in geom:
        if geom["x"] is not None and geom.get("y") is not None:
            out["x"], out["y"] = fn(geom["x"], geom["y"])
    elif "curvePaths" in geom or "curveRings" in geom:
        key = "curvePaths" if "curvePaths" in geom else "curveRings"
        out[key] = [[_map_curve_item(item, coord) for item in part] for part in geom[key]]
        out.pop("paths", None)
        out.pop("rings", None)
    elif "points" in geom:
        out["points"] = [coord(c) for c in geom["points"]]
    elif "paths" in geom:
        out["paths"] = [[coord(c) for c in part] for part in geom["paths"]]
    elif "rings" in geom:
        out["rings"] = [[coord(c) for c in part] for part in geom["rings"]]
    elif "xmin" in geom:
        out["xmin"], out["ymin"] = fn(geom["xmin"], geom["ymin"])
        out["xmax"], out["ymax"] = fn(geom["xmax"], geom["ymax"])
    return out


def _map_curve_item(item, coord):
    if not isinstance(item, dict):
        return coord(item)
    # Every position of a segment moves; the elliptic arc's axis length is kept (approximate).
    ((key, values),) = item.items()
    if key == "a":
        return {"a": [coord(values[0]), coord(values[1])[:2], *values[2:]]}
    return {key: [coord(values[0]), *(coord(v)[:2] for v in values[1:])]}


def project(geom: dict | None, from_wkid: int | None, to_wkid: int | None) -> dict | None:
    """Projects an Esri geometry between WGS84 and Web Mercator (identity otherwise)."""
    if geom is None:
        return None
    fn = point_projector(from_wkid, to_wkid)
    if fn is None:
        return {k: v for k, v in geom.items() if k != "spatialReference"}
    return _map_coords(geom, fn)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_coords(coords: Any, what: str, min_count: int) -> None:
    if not isinstance(coords, list) or len(coords) < min_count:
        raise GeometryError(f"{what} needs at least {min_count} vertices")
    for c in coords:
        if not isinstance(c, list) or len(c) < 2 or not all(_is_number(v) for v in c[:2]):
            raise GeometryError(f"{what} has a vertex that is not [x, y]")


def validate(geom: Any, geometry_type: str) -> dict | None:
    """Checks that `geom` is an Esri JSON geometry of the layer's type; returns it (or None)."""
    if geom is None:
        return None
    if not isinstance(geom, dict):
        raise GeometryError("the geometry must be a JSON object")
    if geometry_type == "esriGeometryPoint":
        if "x" not in geom or "y" not in geom:
            raise GeometryError("a point needs x and y")
        if geom["x"] is None:
            return None
        if not (_is_number(geom["x"]) and _is_number(geom["y"])):
            raise GeometryError("point coordinates must be numbers")
    elif geometry_type == "esriGeometryMultipoint":
        _check_coords(geom.get("points"), "a multipoint", 1)
    elif geometry_type in CURVE_KEY and CURVE_KEY[geometry_type] in geom:
        _check_curve_parts(geom[CURVE_KEY[geometry_type]], geometry_type)
    elif geometry_type == "esriGeometryPolyline":
        paths = geom.get("paths")
        if not isinstance(paths, list) or not paths:
            raise GeometryError("a polyline needs paths")
        for path in paths:
            _check_coords(path, "a polyline path", 2)
    elif geometry_type == "esriGeometryPolygon":
        rings = geom.get("rings")
        if not isinstance(rings, list) or not rings:
            raise GeometryError("a polygon needs rings")
        for ring in rings:
            _check_coords(ring, "a polygon ring", 4)
    else:
        raise GeometryError(f"unsupported geometry type {geometry_type}")
    return geom


def bbox(geom: dict | None) -> tuple[float, float, float, float] | None:
    if not geom:
        return None
    geom = densified(geom)
    if "x" in geom:
        if geom["x"] is None:
            return None
        return geom["x"], geom["y"], geom["x"], geom["y"]
    if "xmin" in geom:
        return geom["xmin"], geom["ymin"], geom["xmax"], geom["ymax"]
    if "points" in geom:
        coords = geom["points"]
    elif "paths" in geom:
        coords = [c for part in geom["paths"] for c in part]
    elif "rings" in geom:
        coords = [c for part in geom["rings"] for c in part]
    else:
        return None
    if not coords:
        return None
    xs = [c[0] for c in coords]
    ys = [c[1] for c in coords]
    return min(xs), min(ys), max(xs), max(ys)


def parse_filter_geometry(value: Any, geometry_type: str | None) -> dict:
    """Reads a `geometry` parameter: "xmin,ymin,xmax,ymax", "x,y" or Esri JSON."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            try:
                numbers = [float(v) for v in text.split(",")]
            except ValueError as exc:
                raise GeometryError(f"invalid geometry {text[:80]!r}") from exc
            if len(numbers) == 4:
                return {
                    "xmin": numbers[0],
                    "ymin": numbers[1],
                    "xmax": numbers[2],
                    "ymax": numbers[3],
                }
            if len(numbers) == 2:
                return {"x": numbers[0], "y": numbers[1]}
            raise GeometryError("a geometry given as numbers needs 'xmin,ymin,xmax,ymax' or 'x,y'")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GeometryError(f"the geometry is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise GeometryError("the geometry must be a JSON object")
    if "xmin" in value:
        if not all(_is_number(value.get(k)) for k in ("xmin", "ymin", "xmax", "ymax")):
            raise GeometryError("an envelope needs numeric xmin, ymin, xmax, ymax")
        return value
    kind = {
        "x": "esriGeometryPoint",
        "points": "esriGeometryMultipoint",
        "paths": "esriGeometryPolyline",
        "rings": "esriGeometryPolygon",
    }
    for key, gtype in kind.items():
        if key in value:
            validate(value, gtype)
            return value
    raise GeometryError(
        "unrecognised geometry (expected an envelope, point, multipoint, polyline or polygon)"
    )


def bboxes_intersect(a, b) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _signed_area(ring: list) -> float:
    return (
        sum(ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1] for i in range(len(ring) - 1))
        / 2
    )


def point_in_ring(x: float, y: float, ring: list) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def point_in_polygon(x: float, y: float, rings: list) -> bool:
    """Even-odd rule over all rings: holes and multiple parts come out right."""
    return sum(point_in_ring(x, y, ring) for ring in rings) % 2 == 1


def envelope_rings(box) -> list:
    xmin, ymin, xmax, ymax = box
    return [[[xmin, ymin], [xmin, ymax], [xmax, ymax], [xmax, ymin], [xmin, ymin]]]


def _orientation(a, b, c) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a, b, c) -> bool:
    return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])


def segments_intersect(p1, p2, q1, q2) -> bool:
    d1, d2 = _orientation(q1, q2, p1), _orientation(q1, q2, p2)
    d3, d4 = _orientation(p1, p2, q1), _orientation(p1, p2, q2)
    if (
        ((d1 > 0) != (d2 > 0))
        and d1 != 0
        and d2 != 0
        and ((d3 > 0) != (d4 > 0))
        and d3 != 0
        and d4 != 0
    ):
        return True
    return (
        (d1 == 0 and _on_segment(q1, q2, p1))
        or (d2 == 0 and _on_segment(q1, q2, p2))
        or (d3 == 0 and _on_segment(p1, p2, q1))
        or (d4 == 0 and _on_segment(p1, p2, q2))
    )


def _edges(parts: list):
    for part in parts:
        for i in range(len(part) - 1):
            yield part[i], part[i + 1]


def intersects_area(geometry: dict | None, rings: list) -> bool:
    """Exact "intersects" of any Esri geometry with an area given as rings (even-odd rule)."""
    if not geometry:
        return False
    geometry = densified(geometry)
    if "x" in geometry:
        return geometry["x"] is not None and point_in_polygon(geometry["x"], geometry["y"], rings)
    if "points" in geometry:
        return any(point_in_polygon(p[0], p[1], rings) for p in geometry["points"])
    parts = geometry.get("paths") or geometry.get("rings") or []
    if any(point_in_polygon(c[0], c[1], rings) for part in parts for c in part):
        return True
    if "rings" in geometry and any(
        point_in_polygon(c[0], c[1], parts) for ring in rings for c in ring
    ):
        return True  # the area lies inside the feature
    area_edges = list(_edges(rings))
    return any(segments_intersect(a, b, c, d) for a, b in _edges(parts) for c, d in area_edges)


def to_geojson(geom: dict | None) -> dict | None:
    """Esri JSON -> GeoJSON geometry (Esri outer rings are clockwise, holes anticlockwise)."""
    if not geom:
        return None
    geom = densified(geom)
    if "x" in geom:
        if geom["x"] is None:
            return None
        return {"type": "Point", "coordinates": [geom["x"], geom["y"]]}
    if "points" in geom:
        return {"type": "MultiPoint", "coordinates": geom["points"]}
    if "paths" in geom:
        paths = geom["paths"]
        if len(paths) == 1:
            return {"type": "LineString", "coordinates": paths[0]}
        return {"type": "MultiLineString", "coordinates": paths}
    if "rings" in geom:
        polygons: list[list] = []
        holes = []
        for ring in geom["rings"]:
            if _signed_area(ring) < 0:
                polygons.append([list(reversed(ring))])
            else:
                holes.append(ring)
        for hole in holes:
            x, y = hole[0][0], hole[0][1]
            owner = next((p for p in polygons if point_in_ring(x, y, p[0])), None)
            if owner is None:
                polygons.append([hole])
            else:
                owner.append(list(reversed(hole)))
        if len(polygons) == 1:
            return {"type": "Polygon", "coordinates": polygons[0]}
        return {"type": "MultiPolygon", "coordinates": polygons}
    return None


# --- true curves ------------------------------------------------------------------------------
# Stored as the client sent them (curvePaths/curveRings with "c", "a" and "b" segments); a query
# without returnTrueCurves gets them densified, as ArcGIS does.

CURVE_KEY = {"esriGeometryPolyline": "curvePaths", "esriGeometryPolygon": "curveRings"}
_DENSE_KEY = {"curvePaths": "paths", "curveRings": "rings"}
_STEPS = 32  # chords per curve segment in densified answers


def has_curves(geom: dict | None) -> bool:
    return isinstance(geom, dict) and ("curvePaths" in geom or "curveRings" in geom)


def _is_position(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 2 and all(_is_number(x) for x in v[:2])


def _check_curve_parts(parts: Any, geometry_type: str) -> None:
    what = "a curved polyline path" if geometry_type == "esriGeometryPolyline" else "a curved ring"
    if not isinstance(parts, list) or not parts:
        raise GeometryError(f"{what} list must not be empty")
    for part in parts:
        if not isinstance(part, list) or len(part) < 2 or not _is_position(part[0]):
            raise GeometryError(f"{what} must start with a vertex [x, y]")
        for item in part[1:]:
            if isinstance(item, dict):
                if len(item) != 1 or next(iter(item)) not in ("c", "a", "b"):
                    raise GeometryError(f"{what} has an unknown segment {list(item)[:3]}")
                ((key, values),) = item.items()
                wanted = {"c": 2, "a": 4, "b": 3}[key]
                if not isinstance(values, list) or len(values) < wanted:
                    raise GeometryError(f"{what} has a malformed '{key}' segment")
                if not all(_is_position(v) for v in values[: 2 if key == "a" else wanted]):
                    raise GeometryError(f"{what} has a '{key}' segment without positions")
            elif not _is_position(item):
                raise GeometryError(f"{what} has a vertex that is not [x, y]")


def densified(geom: dict) -> dict:
    """The geometry with curve segments replaced by chords (``paths``/``rings``)."""
    if not has_curves(geom):
        return geom
    key = "curvePaths" if "curvePaths" in geom else "curveRings"
    out = {k: v for k, v in geom.items() if k not in ("curvePaths", "curveRings")}
    out[_DENSE_KEY[key]] = [_densify_part(part) for part in geom[key]]
    return out


def _densify_part(part: list) -> list:
    out: list = []
    for item in part:
        if not isinstance(item, dict):
            out.append(list(item))
            continue
        ((key, values),) = item.items()
        start, end = out[-1], list(values[0])
        out.extend(_chords(key, start, end, values))
        out.append(end)
    return out


def _chords(key: str, start: list, end: list, values: list) -> list:
    """Interior points of one curve segment (plain x, y)."""
    if key == "b":
        (x1, y1), (x2, y2) = values[1][:2], values[2][:2]
        pts = []
        for i in range(1, _STEPS):
            t = i / _STEPS
            u = 1 - t
            pts.append(
                [
                    u**3 * start[0] + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * end[0],
                    u**3 * start[1] + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t**3 * end[1],
                ]
            )
        return pts
    if key == "c":
        center = _circumcenter(start, values[1], end)
        if center is None:
            return []
        clockwise = _turn(start, values[1], end) < 0
    else:
        center = values[1][:2]
        clockwise = bool(values[3])
    ratio = float(values[6]) if key == "a" and len(values) >= 7 else 1.0
    rotation = float(values[4]) if key == "a" and len(values) >= 7 else 0.0
    cx, cy = center
    cos_r, sin_r = math.cos(rotation), math.sin(rotation)

    def param(p):  # the point's angle on the unrotated, unit-ratio ellipse
        dx, dy = p[0] - cx, p[1] - cy
        return math.atan2((-dx * sin_r + dy * cos_r) / ratio, dx * cos_r + dy * sin_r)

    dx, dy = start[0] - cx, start[1] - cy
    lx, ly = dx * cos_r + dy * sin_r, -dx * sin_r + dy * cos_r
    major = math.hypot(lx, ly / ratio)
    t0, t1 = param(start), param(end)
    sweep = (t1 - t0) % (2 * math.pi) or 2 * math.pi
    if clockwise:
        sweep -= 2 * math.pi
    pts = []
    for i in range(1, _STEPS):
        t = t0 + sweep * i / _STEPS
        ex, ey = major * math.cos(t), major * ratio * math.sin(t)
        pts.append([cx + ex * cos_r - ey * sin_r, cy + ex * sin_r + ey * cos_r])
    return pts


def _turn(a, b, c) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _circumcenter(a, b, c):
    if a[0] == c[0] and a[1] == c[1]:
        return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2]
    d = 2 * _turn(a, b, c)
    if d == 0:
        return None
    la, lb, lc = a[0] ** 2 + a[1] ** 2, b[0] ** 2 + b[1] ** 2, c[0] ** 2 + c[1] ** 2
    # Circumcentre, written relative to the orientation determinant.
    ux = (la * (c[1] - b[1]) + lb * (a[1] - c[1]) + lc * (b[1] - a[1])) / -d
    uy = (la * (b[0] - c[0]) + lb * (c[0] - a[0]) + lc * (a[0] - b[0])) / -d
    return [ux, uy]
