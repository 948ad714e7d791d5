"""The conflict log: local versions that lost to the server, kept so nothing is lost silently.

A conflict holds the local row as it was (all columns, geometry as the GeoPackage blob).
Restoring it makes that version a pending local edit again (re-inserting the row if the
server deleted it); dismissing forgets it.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

from . import field_values as fv
from .errors import GeodatabaseError
from .geodatabase_model import Conflict, ConflictReason, LayerDef
from .geometry import gpkg_to_esri
from .gpkg_connection import quote, transaction
from .schema import ATTACHMENT_COLUMNS, ATTACHMENT_FID
from .tracking import drop_pending, next_seq, set_tracking


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def table_spec(layer: LayerDef, is_attachment: bool) -> tuple[str, str, str, list[str]]:
    """(table, fid column, GlobalID column, data columns) of a layer or its attachments."""
    if is_attachment:
        return layer.attachment_table, ATTACHMENT_FID, "GLOBALID", list(ATTACHMENT_COLUMNS)
    cols = ([layer.geometry_column] if layer.geometry_column else []) + [
        f.name for f in layer.fields
    ]
    return layer.table_name, layer.object_id_field, layer.global_id_field, cols


def read_local_row(
    conn: sqlite3.Connection, layer: LayerDef, is_attachment: bool, global_id: str
) -> dict | None:
    table, _fid, gid, cols = table_spec(layer, is_attachment)
    sql = f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(table)} WHERE {quote(gid)} = ?"
    row = conn.execute(sql, (global_id,)).fetchone()
    return None if row is None else dict(zip(cols, row))


def record_conflict(
    conn: sqlite3.Connection,
    layer: LayerDef,
    *,
    global_id: str,
    is_attachment: bool,
    local_op: str,
    reason: ConflictReason,
    local_row: dict | None,
    error_code: int | None = None,
    error_message: str = "",
) -> int:
    """Save a local version in the conflict log (inside the caller's transaction)."""
    geometry = None
    attributes = None
    if local_row is not None:
        local_row = dict(local_row)
        if not is_attachment and layer.geometry_column:
            geometry = local_row.pop(layer.geometry_column, None)
        attributes = json.dumps({k: fv.json_safe(v) for k, v in local_row.items()})
    table = layer.attachment_table if is_attachment else layer.table_name
    cur = conn.execute(
        "INSERT INTO oms_conflicts (created_at, layer_id, table_name, global_id, is_attachment,"
        " local_op, reason, error_code, error_message, attributes, geometry)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now_text(),
            layer.id,
            table,
            global_id,
            1 if is_attachment else 0,
            local_op,
            reason.value,
            error_code,
            error_message or "",
            attributes,
            geometry,
        ),
    )
    return int(cur.lastrowid)


def list_conflicts(conn: sqlite3.Connection, layers: dict[int, LayerDef]) -> list[Conflict]:
    rows = conn.execute(
        "SELECT id, layer_id, table_name, global_id, is_attachment, local_op, reason, error_code,"
        " error_message, attributes, geometry, created_at FROM oms_conflicts ORDER BY id"
    ).fetchall()
    out = []
    for r in rows:
        layer = layers.get(r[1])
        attrs = {k: fv.from_json_safe(v) for k, v in json.loads(r[9] or "{}").items()}
        geometry = None
        if r[10] is not None and layer is not None and layer.geometry_type and not r[4]:
            geometry = gpkg_to_esri(r[10], layer.geometry_type, layer.has_z, layer.has_m)
        out.append(
            Conflict(
                id=r[0],
                layer_id=r[1],
                table_name=r[2],
                global_id=r[3],
                is_attachment=bool(r[4]),
                local_operation=r[5],
                reason=ConflictReason(r[6]),
                error_code=r[7],
                error_message=r[8] or "",
                attributes=attrs,
                geometry=geometry,
                created_at=r[11],
            )
        )
    return out


def _load(conn: sqlite3.Connection, conflict_id: int):
    row = conn.execute(
        "SELECT layer_id, global_id, is_attachment, local_op, attributes, geometry"
        " FROM oms_conflicts WHERE id = ?",
        (conflict_id,),
    ).fetchone()
    if row is None:
        raise GeodatabaseError(f"There is no conflict with id {conflict_id} (already resolved?).")
    return row


def restore_conflict(
    conn: sqlite3.Connection, layers: dict[int, LayerDef], conflict_id: int
) -> None:
    """Make the conflict's local version a pending edit again, then drop the conflict.

    Runs in its own transaction. A local delete becomes a pending delete; a local add or
    update is written back (re-inserted if the row is gone) and marked as a pending add or as
    an update of all its uploadable fields and geometry, so the next upload sends it whole.
    """
    with transaction(conn):
        layer_id, gid, is_att, local_op, attributes, geometry = _load(conn, conflict_id)
        if local_op != "delete" and attributes is None and geometry is None:
            # Logged by an earlier version for a row already gone here: restoring would make
            # an empty feature without geometry.
            raise GeodatabaseError(
                "This conflict holds no local version to restore (the feature had been deleted "
                "here too). Dismiss it."
            )
        layer = layers.get(layer_id)
        if layer is None:
            raise GeodatabaseError(f"The conflict refers to an unknown layer ({layer_id}).")
        table, fid_col, gid_col, cols = table_spec(layer, bool(is_att))
        t = quote(table)
        existing = conn.execute(
            f"SELECT {quote(fid_col)} FROM {t} WHERE {quote(gid_col)} = ?", (gid,)
        ).fetchone()
        set_tracking(conn, False)
        # Whatever was pending for this row before is replaced by the restored version.
        drop_pending(conn, table, existing[0] if existing is not None else None, gid)
        seq = next_seq(conn)
        if local_op == "delete":
            if existing is not None:
                # Its attachments stay until the server acknowledges the delete (see tracking).
                conn.execute(f"DELETE FROM {t} WHERE {quote(fid_col)} = ?", (existing[0],))
            conn.execute(
                "INSERT INTO oms_changes (table_name, fid, global_id, op, seq)"
                " VALUES (?, ?, ?, 'delete', ?)",
                (table, existing[0] if existing else -1, gid, seq),
            )
        else:
            values = {k: fv.from_json_safe(v) for k, v in json.loads(attributes or "{}").items()}
            if not is_att and layer.geometry_column:
                values[layer.geometry_column] = geometry
            values = {c: values.get(c) for c in cols if c in values}
            values[gid_col] = gid
            names = list(values)
            if existing is not None:
                fid = existing[0]
                assignments = ", ".join(f"{quote(c)} = ?" for c in names)
                conn.execute(
                    f"UPDATE {t} SET {assignments} WHERE {quote(fid_col)} = ?",
                    [values[c] for c in names] + [fid],
                )
                tracked = (
                    list(ATTACHMENT_COLUMNS)
                    if is_att
                    else [f.name for f in layer.uploadable_fields]
                    + ([layer.geometry_column] if layer.geometry_column else [])
                )
                conn.execute(
                    "INSERT INTO oms_changes (table_name, fid, global_id, op, seq)"
                    " VALUES (?, ?, ?, 'update', ?)",
                    (table, fid, gid, seq),
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO oms_changed_fields (table_name, fid, field, seq)"
                    " VALUES (?, ?, ?, ?)",
                    [(table, fid, c, seq) for c in tracked],
                )
            else:
                cur = conn.execute(
                    f"INSERT INTO {t} ({', '.join(quote(c) for c in names)})"
                    f" VALUES ({', '.join('?' for _ in names)})",
                    [values[c] for c in names],
                )
                conn.execute(
                    "INSERT INTO oms_changes (table_name, fid, global_id, op, seq)"
                    " VALUES (?, ?, ?, 'add', ?)",
                    (table, cur.lastrowid, gid, seq),
                )
        conn.execute("DELETE FROM oms_conflicts WHERE id = ?", (conflict_id,))
        set_tracking(conn, True)


def dismiss_conflict(conn: sqlite3.Connection, conflict_id: int) -> None:
    """Forget a conflict: the server's version stands."""
    cur = conn.execute("DELETE FROM oms_conflicts WHERE id = ?", (conflict_id,))
    if cur.rowcount == 0:
        raise GeodatabaseError(f"There is no conflict with id {conflict_id} (already resolved?).")
