"""Fast server-side bulk changes for benchmarks: many features changed by "another user" in one
transaction at one new generation, with plain SQL (no per-edit validation or savepoints)."""

from __future__ import annotations

import json
from typing import Any

from . import geom
from .edits import EditContext, _editor_values
from .store import Layer, Tx, quote

# Field types the bulk change knows how to alter (the first editable one is used by default).
_CHANGEABLE = (
    "esriFieldTypeInteger",
    "esriFieldTypeSmallInteger",
    "esriFieldTypeDouble",
    "esriFieldTypeSingle",
    "esriFieldTypeString",
)
SHIFT = 1.0  # geometries move this far in x (layer units) per bulk change
_CHUNK = 10_000  # rows changed per statement batch


def _changeable(f: dict) -> bool:
    return (
        f["type"] in _CHANGEABLE
        and f.get("editable", True)
        and not f.get("domain")  # a new value must stay valid
    )


def pick_field(layer: Layer, name: str | None) -> dict:
    """The field a bulk change alters: `name`, or the layer's first changeable field."""
    if name:
        f = layer.field_by_name(name)
        if f is None or not _changeable(f):
            raise ValueError(
                f"Field {name!r} of {layer.name} cannot be bulk-changed "
                "(use an editable number or string field without a domain)."
            )
        return f
    for f in layer.fields:
        if _changeable(f):
            return f
    raise ValueError(f"{layer.name} has no field a bulk change can alter.")


def _new_value(f: dict, old: Any, gen: int, oid: int) -> Any:
    if f["type"] in ("esriFieldTypeInteger", "esriFieldTypeSmallInteger"):
        limit = 2**15 - 1 if f["type"] == "esriFieldTypeSmallInteger" else 2**31 - 1
        return ((old or 0) + 1) % limit
    if f["type"] in ("esriFieldTypeDouble", "esriFieldTypeSingle"):
        return float(old or 0) + 1.0
    text = f"bulk {gen} #{oid}"
    length = f.get("length")
    return text[:length] if length else text


def bulk_update(
    tx: Tx, layer: Layer, count: int, field: str | None = None, user: str = "bulk_editor"
) -> dict:
    """Changes the first `count` features (by ObjectID) of `layer`: one attribute and, for
    spatial layers, the geometry (shifted by SHIFT in x). Returns {"updated", "gen", "field"}."""
    if count < 0:
        raise ValueError("count must not be negative")
    target = pick_field(layer, field)
    name = target["name"]
    gen = tx.next_gen(layer.service)
    tracking = _editor_values(layer, EditContext(user=user), adding=False)
    oid_col, gid_col = quote(layer.oid_field), quote(layer.gid_field)
    sets = [f"{quote(name)} = ?"] + [f"{quote(k)} = ?" for k in tracking]
    spatial = not layer.is_table
    if spatial:
        sets += ["_geom = ?", "_xmin = ?", "_ymin = ?", "_xmax = ?", "_ymax = ?"]
    sets.append("_gen = ?")
    sql = f"UPDATE {layer.table} SET {', '.join(sets)} WHERE {oid_col} = ?"
    updated, last = 0, None
    while updated < count:  # in chunks, so a million changes fit in little memory
        rows = tx.conn.execute(
            f"SELECT {oid_col}, {gid_col}, {quote(name)}, _geom FROM {layer.table} "
            f"WHERE ? IS NULL OR {oid_col} > ? ORDER BY {oid_col} LIMIT ?",
            (last, last, min(_CHUNK, count - updated)),
        ).fetchall()
        if not rows:
            break
        args = []
        for oid, _gid, old, raw_geom in rows:
            values = [_new_value(target, old, gen, oid), *tracking.values()]
            if spatial:
                shape = json.loads(raw_geom) if raw_geom else None
                if shape is not None:
                    shape = geom._map_coords(shape, lambda x, y: (x + SHIFT, y))
                box = geom.bbox(shape) or (None, None, None, None)
                values += [json.dumps(shape) if shape else None, *box]
            args.append((*values, gen, oid))
        tx.conn.executemany(sql, args)
        tx.conn.executemany(
            "INSERT INTO changes (service, layer_id, kind, globalid, gen, replica) "
            "VALUES (?, ?, 'f', ?, ?, NULL)",
            [(layer.service, layer.id, gid, gen) for _oid, gid, _old, _geom in rows],
        )
        updated += len(rows)
        last = rows[-1][0]
    return {"updated": updated, "gen": gen, "field": name}
