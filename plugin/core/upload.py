"""Snapshots of pending local changes as the ``edits`` of a synchronizeReplica upload."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .geodatabase_model import LayerDef, SkippedAttachment, UploadSnapshot, empty_counts
from .gpkg_connection import quote, select_in
from .row_codec import AttachmentCodec, FeatureCodec
from .schema import ATTACHMENT_COLUMNS, ATTACHMENT_FID
from .tracking import current_seq


def layer_order(layers: Iterable[LayerDef]) -> list[LayerDef]:
    """Layers with relationship origins before their destinations (dependency-safe adds)."""
    layers = sorted(layers, key=lambda lyr: lyr.id)
    ids = {lyr.id for lyr in layers}
    depends: dict[int, set[int]] = {lyr.id: set() for lyr in layers}
    for lyr in layers:
        for rel in lyr.layer_json.get("relationships") or []:
            other = rel.get("relatedTableId")
            if other not in ids or other == lyr.id:
                continue
            if rel.get("role") == "esriRelRoleDestination":
                depends[lyr.id].add(other)
            elif rel.get("role") == "esriRelRoleOrigin":
                depends[other].add(lyr.id)
    ordered: list[LayerDef] = []
    done: set[int] = set()
    remaining = list(layers)
    while remaining:
        ready = [lyr for lyr in remaining if depends[lyr.id] <= done]
        if not ready:  # a cycle: fall back to id order for the rest
            ready = [remaining[0]]
        for lyr in ready:
            ordered.append(lyr)
            done.add(lyr.id)
            remaining.remove(lyr)
    return ordered


def _fetch_rows(
    conn: sqlite3.Connection, table: str, fid_col: str, columns: list[str], fids: list[int]
) -> dict[int, dict]:
    select = ", ".join(quote(c) for c in [fid_col, *columns])
    sql = f"SELECT {select} FROM {quote(table)} WHERE {quote(fid_col)} IN"
    return {row[0]: dict(zip(columns, row[1:])) for row in select_in(conn, sql, fids)}


def _pending(conn: sqlite3.Connection, table: str, seq: int, only_adds: bool):
    sql = "SELECT op, fid, global_id FROM oms_changes WHERE table_name = ? AND seq <= ?"
    if only_adds:
        sql += " AND op = 'add'"
    adds, updates, deletes = [], [], []
    for op, fid, gid in conn.execute(sql + " ORDER BY seq", (table, seq)):
        if op == "add":
            adds.append(fid)
        elif op == "update":
            updates.append(fid)
        elif gid:
            deletes.append(gid)
    return adds, updates, deletes


def _changed_fields(conn: sqlite3.Connection, table: str, seq: int) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for fid, field in conn.execute(
        "SELECT fid, field FROM oms_changed_fields WHERE table_name = ? AND seq <= ?", (table, seq)
    ):
        out.setdefault(fid, set()).add(field.lower())
    return out


def _feature_edits(conn, layer: LayerDef, seq: int, only_adds: bool, counts: dict) -> dict:
    codec = FeatureCodec(layer)
    adds_fids, update_fids, delete_ids = _pending(conn, layer.table_name, seq, only_adds)
    edits: dict = {}
    columns = codec.columns
    geom = layer.geometry_column
    if adds_fids:
        rows = _fetch_rows(conn, layer.table_name, layer.object_id_field, columns, adds_fids)
        adds = []
        for fid in adds_fids:
            row = rows.get(fid)
            if row is None or not row.get(layer.global_id_field):
                continue
            feature = {"attributes": codec.upload_attributes(row)}
            if geom and row.get(geom) is not None:
                feature["geometry"] = codec.esri_geometry(row[geom])
            adds.append(feature)
        if adds:
            edits["adds"] = adds
            counts["adds"] = len(adds)
    if update_fids:
        changed = _changed_fields(conn, layer.table_name, seq)
        rows = _fetch_rows(conn, layer.table_name, layer.object_id_field, columns, update_fids)
        uploadable = {f.name.lower(): f.name for f in layer.uploadable_fields}
        updates = []
        for fid in update_fids:
            row = rows.get(fid)
            fields = changed.get(fid, set())
            if row is None or not row.get(layer.global_id_field):
                continue
            names = [uploadable[f] for f in fields if f in uploadable]
            geometry_changed = bool(geom) and geom.lower() in fields
            if not names and not geometry_changed:
                continue
            feature = {"attributes": codec.upload_attributes(row, names)}
            if geometry_changed and row.get(geom) is not None:
                feature["geometry"] = codec.esri_geometry(row[geom])
            updates.append(feature)
        if updates:
            edits["updates"] = updates
            counts["updates"] = len(updates)
    if delete_ids:
        edits["deleteIds"] = delete_ids
        counts["deletes"] = len(delete_ids)
    return edits


def _attachment_edits(
    conn,
    layer: LayerDef,
    seq: int,
    only_adds: bool,
    counts: dict,
    max_bytes: int | None,
    skipped: list[SkippedAttachment],
) -> dict:
    table = layer.attachment_table
    adds_fids, update_fids, delete_ids = _pending(conn, table, seq, only_adds)
    if max_bytes is not None:
        # Too large to upload: they stay pending (listed in ``skipped``), the rest goes.
        sql = (
            f'SELECT {quote(ATTACHMENT_FID)}, "GLOBALID", "ATT_NAME", "REL_GLOBALID",'
            f' length("DATA") FROM {quote(table)}'
            f' WHERE length("DATA") > {int(max_bytes)} AND {quote(ATTACHMENT_FID)} IN'
        )
        too_large = {row[0]: row[1:] for row in select_in(conn, sql, adds_fids + update_fids)}
        for op, fids in (("add", adds_fids), ("update", update_fids)):
            for fid in fids:
                if fid in too_large:
                    gid, name, parent, size = too_large[fid]
                    skipped.append(SkippedAttachment(layer.id, gid, name, parent, size, op))
        adds_fids = [f for f in adds_fids if f not in too_large]
        update_fids = [f for f in update_fids if f not in too_large]
    edits: dict = {}
    columns = list(ATTACHMENT_COLUMNS)
    for key, fids in (("adds", adds_fids), ("updates", update_fids)):
        if not fids:
            continue
        rows = _fetch_rows(conn, table, ATTACHMENT_FID, columns, fids)
        items = [
            AttachmentCodec.to_esri(rows[fid])
            for fid in fids
            if fid in rows and rows[fid].get("GLOBALID")
        ]
        if items:
            edits[key] = items
            counts["attachment_" + key] = len(items)
    if delete_ids:
        edits["deleteIds"] = delete_ids
        counts["attachment_deletes"] = len(delete_ids)
    return edits


def build_snapshot(
    conn: sqlite3.Connection,
    layers: list[LayerDef],
    *,
    layer_ids: Iterable[int] | None = None,
    only_adds: bool = False,
    max_attachment_bytes: int | None = None,
) -> UploadSnapshot:
    """Freeze the pending changes (all of them, up to the current sequence number); attachments
    larger than ``max_attachment_bytes`` are left out, stay pending and are listed in the
    snapshot's ``skipped_attachments``."""
    wanted = None if layer_ids is None else {int(i) for i in layer_ids}
    selected = [lyr for lyr in layers if wanted is None or lyr.id in wanted]
    conn.execute("BEGIN")  # one read snapshot for the sequence number and the rows
    try:
        seq = current_seq(conn)
        edits: list[dict] = []
        counts: dict[int, dict[str, int]] = {}
        skipped: list[SkippedAttachment] = []
        for layer in layer_order(selected):
            layer_counts = empty_counts()
            entry: dict = {"id": layer.id}
            features = _feature_edits(conn, layer, seq, only_adds, layer_counts)
            if features:
                entry["features"] = features
            if layer.attachment_table:
                attachments = _attachment_edits(
                    conn, layer, seq, only_adds, layer_counts, max_attachment_bytes, skipped
                )
                if attachments:
                    entry["attachments"] = attachments
            if len(entry) > 1:
                edits.append(entry)
                counts[layer.id] = layer_counts
    finally:
        conn.execute("COMMIT")
    return UploadSnapshot(
        seq=seq,
        edits=edits,
        counts=counts,
        only_adds=only_adds,
        layer_ids=None if wanted is None else tuple(sorted(wanted)),
        skipped_attachments=tuple(skipped),
    )


def pending_counts(conn: sqlite3.Connection, layers: list[LayerDef]) -> dict[int, dict[str, int]]:
    """Pending changes per layer id (every layer listed, zeros included)."""
    by_table: dict[tuple[str, str], int] = {}
    for table, op, n in conn.execute(
        "SELECT table_name, op, count(*) FROM oms_changes GROUP BY table_name, op"
    ):
        by_table[(table, op)] = n
    out: dict[int, dict[str, int]] = {}
    for layer in layers:
        c = empty_counts()
        c["adds"] = by_table.get((layer.table_name, "add"), 0)
        c["updates"] = by_table.get((layer.table_name, "update"), 0)
        c["deletes"] = by_table.get((layer.table_name, "delete"), 0)
        if layer.attachment_table:
            c["attachment_adds"] = by_table.get((layer.attachment_table, "add"), 0)
            c["attachment_updates"] = by_table.get((layer.attachment_table, "update"), 0)
            c["attachment_deletes"] = by_table.get((layer.attachment_table, "delete"), 0)
        out[layer.id] = c
    return out
