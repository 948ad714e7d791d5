"""The layer `query` operation and the row filters it shares with createReplica.

Spatial filters: rows are pre-selected by bounding-box intersection in SQL, then envelopes and
polygons are tested exactly ("intersects": a vertex inside, the area inside, or crossing
edges). Point and polyline filter geometries use the bounding boxes only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from . import geom
from .edits import feature_writer, row_to_feature
from .errors import ApiError, bad_request
from .params import Params
from .store import Layer, Tx, quote
from .where import WhereError, compile_where


@dataclass
class RowFilter:
    """SQL (with parameters) plus an optional exact test applied to each selected row."""

    sql: str
    params: list
    exact: Callable[[Any], bool] | None = None


def layer_wkid(layer: Layer, service: dict) -> int:
    return geom.wkid_of(service["spatialReference"])


def build_filter(
    layer: Layer,
    service: dict,
    *,
    where: str | None = None,
    object_ids: list[int] | None = None,
    geometry: dict | None = None,
    in_wkid: int | None = None,
) -> RowFilter:
    """Compiles where + objectIds + a spatial filter into a RowFilter (ApiError on bad input)."""
    try:
        sql, params = compile_where(where, layer.fields)
    except WhereError as exc:
        raise bad_request(f"Invalid where clause: {exc}.", f"where: {str(where)[:200]}") from exc
    exact = None
    if object_ids is not None:
        if not object_ids:
            sql = "0"
        else:
            # One JSON parameter, so that long ID lists stay under SQLite's variable limit.
            sql = f"({sql}) AND {quote(layer.oid_field)} IN (SELECT value FROM json_each(?))"
            params = params + [json.dumps(object_ids)]
    if geometry is not None and not layer.is_table:
        try:
            g = geom.project(geometry, in_wkid, layer_wkid(layer, service))
        except geom.GeometryError as exc:
            raise bad_request(f"Invalid geometry filter: {exc}.") from exc
        box = geom.bbox(g)
        if box is not None:
            sql = f"({sql}) AND _xmax >= ? AND _xmin <= ? AND _ymax >= ? AND _ymin <= ?"
            params = params + [box[0], box[2], box[1], box[3]]
            area = g["rings"] if "rings" in g else geom.envelope_rings(box) if "xmin" in g else None
            # Points against an envelope are already exact; everything else against an area is
            # tested geometrically after the bounding-box pre-selection.
            if area is not None and ("rings" in g or layer.geometry_type != "esriGeometryPoint"):

                def exact(row, area=area):
                    return geom.intersects_area(
                        json.loads(row["_geom"]) if row["_geom"] else None, area
                    )

    return RowFilter(sql, params, exact)


def parse_geometry_param(params: Params) -> tuple[dict | None, int | None]:
    raw = params.get("geometry")
    if raw in (None, ""):
        return None, None
    try:
        g = geom.parse_filter_geometry(raw, params.get("geometryType"))
        sr = params.get("inSR")
        if not sr and isinstance(g, dict):
            sr = g.get("spatialReference")
        return g, geom.wkid_of(sr) if sr else None
    except geom.GeometryError as exc:
        raise bad_request(f"Invalid geometry: {exc}.") from exc


def _object_ids(params: Params) -> list[int] | None:
    raw = params.get("objectIds")
    if raw in (None, ""):
        return None
    items = raw if isinstance(raw, list) else str(raw).strip("[]").split(",")
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            out.append(int(text))
        except ValueError as exc:
            raise bad_request(f"Invalid objectIds: '{text[:40]}' is not an object ID.") from exc
    return out


def _out_fields(layer: Layer, raw: str | None) -> list[str]:
    if raw is None or raw.strip() in ("", "*"):
        return layer.field_names()
    names = []
    for part in raw.split(","):
        part = part.strip()
        if part == "*":
            return layer.field_names()
        if not part:
            continue
        f = layer.field_by_name(part)
        if f is None:
            raise bad_request(f"Invalid outFields: field '{part}' does not exist in {layer.name}.")
        if f["name"] not in names:
            names.append(f["name"])
    if layer.oid_field not in names:
        names.insert(0, layer.oid_field)
    return names


def _order_by(layer: Layer, raw: str | None) -> str:
    if not raw or not raw.strip():
        return quote(layer.oid_field)
    parts = []
    for item in raw.split(","):
        words = item.split()
        if not words:
            continue
        f = layer.field_by_name(words[0])
        direction = words[1].upper() if len(words) > 1 else "ASC"
        if f is None or direction not in ("ASC", "DESC") or len(words) > 2:
            raise bad_request(f"Invalid orderByFields: '{item.strip()[:60]}'.")
        parts.append(f"{quote(f['name'])} {direction}")
    parts.append(quote(layer.oid_field))  # stable paging
    return ", ".join(parts)


def _non_negative(params: Params, name: str) -> int | None:
    value = params.get_int(name)
    if value is not None and value < 0:
        raise bad_request(f"'{name}' must not be negative (got {value}).")
    return value


def fields_json(layer: Layer, names: list[str]) -> list[dict]:
    out = []
    for name in names:
        f = layer.field_by_name(name)
        item = {"name": f["name"], "type": f["type"], "alias": f.get("alias", f["name"])}
        if f.get("length"):
            item["length"] = f["length"]
        if f.get("domain"):
            item["domain"] = f["domain"]
        out.append(item)
    return out


def run_query(tx: Tx, service: dict, layer: Layer, params: Params) -> tuple[dict, str]:
    """Answers a query; returns (body, format) with format 'json' or 'geojson'."""
    fmt = (params.get("f") or "json").lower()
    if fmt == "pjson":
        fmt = "json"
    if fmt not in ("json", "geojson"):
        raise bad_request(f"Unsupported format '{fmt}' (use json or geojson).")
    geometry, in_wkid = parse_geometry_param(params)
    spatial_rel = params.get("spatialRel") or "esriSpatialRelIntersects"
    if spatial_rel not in (
        "esriSpatialRelIntersects",
        "esriSpatialRelEnvelopeIntersects",
        "esriSpatialRelContains",
        "esriSpatialRelWithin",
    ):
        raise bad_request(f"Unsupported spatialRel '{spatial_rel}'.")
    row_filter = build_filter(
        layer,
        service,
        where=params.get("where"),
        object_ids=_object_ids(params),
        geometry=geometry,
        in_wkid=in_wkid,
    )
    order = _order_by(layer, params.get("orderByFields"))
    if params.get_bool("returnCountOnly", False):
        if row_filter.exact is None:
            return {"count": tx.count(layer, row_filter.sql, row_filter.params)}, "json"
        rows = tx.select(layer, row_filter.sql, row_filter.params, columns="_geom")
        return {"count": sum(1 for r in rows if row_filter.exact(r))}, "json"
    if params.get_bool("returnIdsOnly", False):
        rows = tx.select(
            layer,
            row_filter.sql,
            row_filter.params,
            order_by=order,
            columns=f"{quote(layer.oid_field)}, _geom",
        )
        ids = [r[0] for r in rows if row_filter.exact is None or row_filter.exact(r)]
        return {"objectIdFieldName": layer.oid_field, "objectIds": ids}, "json"

    max_records = int(layer.info.get("maxRecordCount") or 1000)
    offset = _non_negative(params, "resultOffset") or 0
    count = _non_negative(params, "resultRecordCount")
    page = max_records if not count else min(count, max_records)
    out_fields = _out_fields(layer, params.get("outFields"))
    return_geometry = params.get_bool("returnGeometry", True) and not layer.is_table
    service_wkid = layer_wkid(layer, service)
    out_sr = params.get("outSR")
    try:
        out_wkid = geom.wkid_of(out_sr) if out_sr else (4326 if fmt == "geojson" else service_wkid)
        projector = geom.point_projector(service_wkid, out_wkid)
    except geom.GeometryError as exc:
        raise bad_request(f"Invalid outSR: {exc}.") from exc

    # ArcGIS answers true curves only when asked; otherwise it densifies them.
    true_curves = params.get_bool("returnTrueCurves", False) and fmt != "geojson"

    def project(g):
        g = g if true_curves else geom.densified(g)
        return geom.project(g, service_wkid, out_wkid) if projector else g

    if row_filter.exact is None:
        rows = tx.select(
            layer, row_filter.sql, row_filter.params, order_by=order, limit=page + 1, offset=offset
        ).fetchall()
    else:
        rows = [
            r
            for r in tx.select(layer, row_filter.sql, row_filter.params, order_by=order)
            if row_filter.exact(r)
        ]
        rows = rows[offset : offset + page + 1]
    exceeded = len(rows) > page
    rows = rows[:page]
    if fmt == "geojson":
        features = [row_to_feature(layer, r, out_fields, return_geometry, project) for r in rows]
        body: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": f["attributes"][layer.oid_field],
                    "geometry": geom.to_geojson(f.get("geometry")),
                    "properties": f["attributes"],
                }
                for f in features
            ],
        }
        if exceeded:
            body["properties"] = {"exceededTransferLimit": True}
        return body, "geojson"

    body = {
        "objectIdFieldName": layer.oid_field,
        "uniqueIdField": {"name": layer.oid_field, "isSystemMaintained": True},
        "globalIdFieldName": layer.gid_field,
    }
    if not layer.is_table:
        body["geometryType"] = layer.geometry_type
        body["spatialReference"] = {
            "wkid": out_wkid,
            "latestWkid": 3857 if out_wkid in geom.WEB_MERCATOR_WKIDS else out_wkid,
        }
        if out_wkid in geom.WEB_MERCATOR_WKIDS:
            body["spatialReference"] = {"wkid": 102100, "latestWkid": 3857}
    body["fields"] = fields_json(layer, out_fields)
    # Written from the stored geometry text unless it must change (projected, or its curves
    # densified): answers of many rows come fast, as ArcGIS's do.
    feature = feature_writer(
        layer,
        (lambda g: geom.project(g, service_wkid, out_wkid)) if projector else None,
        names=out_fields,
        with_geometry=return_geometry,
        densify=not true_curves,
    )
    body["features"] = [feature(r) for r in rows]
    if exceeded:
        body["exceededTransferLimit"] = True
    return body, "json"


def parse_json_param(params: Params, name: str, default: Any = None) -> Any:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"Invalid JSON in parameter '{name}': {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from exc
    except RecursionError as exc:
        raise bad_request(f"Invalid JSON in parameter '{name}': nested too deeply.") from exc


def require(value: Any, name: str) -> Any:
    if value is None or value == "":
        raise ApiError(
            400, f"'{name}' must be specified.", [f"Missing required parameter '{name}'."]
        )
    return value


def query_related_records(tx: Tx, service: dict, layer: Layer, params: Params) -> dict:
    """`queryRelatedRecords`: for each of `objectIds`, the rows of the related layer or table
    that relationship `relationshipId` links to it (through the two key fields)."""
    raw_id = require(params.get("relationshipId"), "relationshipId")
    try:
        rel_id = int(raw_id)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"Invalid relationshipId '{str(raw_id)[:40]}'.") from exc
    mine = next((r for r in layer.info.get("relationships") or [] if r.get("id") == rel_id), None)
    if mine is None:
        raise bad_request(f"Relationship {rel_id} does not exist in {layer.name}.")
    other = tx.layer(service["_name"], int(mine["relatedTableId"]))
    theirs = next((r for r in other.info.get("relationships") or [] if r.get("id") == rel_id), None)
    if theirs is None:
        raise bad_request(f"Relationship {rel_id} is not defined on both ends.")
    object_ids = _object_ids(params) or []
    out_fields = _out_fields(other, params.get("outFields"))
    with_geometry = params.get_bool("returnGeometry", True) and not other.is_table
    groups = []
    for oid in object_ids:
        row = tx.row_by_oid(layer, oid)
        if row is None or row[mine["keyField"]] is None:
            continue
        related = tx.select(other, f"{quote(theirs['keyField'])} = ?", (row[mine["keyField"]],))
        records = [row_to_feature(other, r, out_fields, with_geometry) for r in related]
        if records:
            groups.append({"objectId": oid, "relatedRecords": records})
    body: dict[str, Any] = {"fields": fields_json(other, out_fields)}
    if not other.is_table:
        body["geometryType"] = other.geometry_type
        body["spatialReference"] = service["spatialReference"]
    body["relatedRecordGroups"] = groups
    return body
