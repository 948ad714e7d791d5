"""Committing a sync into a geodatabase: one SQLite transaction for everything.

Order inside the transaction: downloaded changes are applied as they stream in (in batches,
never holding all of them), then the upload's edit results are applied to the pending set,
then the new generation(s), the journal closure and the history row are written.

Rules (spec §4, ARCHITECTURE "Synchronizing one geodatabase"):
- Downloaded rows are matched by GlobalID. A pending local edit is never overwritten or
  discarded by a download, whatever the direction and whatever kept it out of this sync's upload
  (a download-only sync, an update package, a layer that does not upload, an attachment too
  large to upload): a downloaded update writes every field it carries except the fields with
  local changes still pending after this sync (those this sync did not upload, and in a row it
  did upload, those edited after the snapshot). Those keep the local value, stay pending and
  win at the next upload; no conflict is logged. A pending local delete, add or attachment
  edit that this sync does not upload keeps the whole local version.
- A downloaded delete of a locally edited row saves the local version in the conflict log.
- Acknowledged uploads leave the pending set only up to the snapshot's sequence number. A
  feature's attachments, kept after a local delete, go once the server acknowledges it.
- An edit is acknowledged by a result carrying its GlobalID, or by the absence of a result when
  the server reports only failures. When the answer for a kind of edit of a layer holds a
  result the client cannot tie to an uploaded edit (an ``objectId`` only, an unknown GlobalID),
  the edits of that kind without a result of their own stay pending and are reported.
- Rejected uploads go to the conflict log with the server's error; error 1019 ("not found":
  the server deleted the row) also removes the row locally; a rejected add is removed locally
  too (the server does not have it; restoring the conflict re-adds it); a rejected update
  puts the fields back to the values the server kept.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing

from . import field_values as fv
from .bulk_insert import MovedRows, update_rows
from .conflicts import now_text, read_local_row, record_conflict, table_spec
from .enums import SyncDirection
from .errors import CancelledError
from .geodatabase_model import (
    CommitReport,
    ConflictReason,
    LayerCommitCounts,
    LayerDef,
    UploadSnapshot,
)
from .geometry import gpkg_envelope
from .gpkg_connection import quote, recreate_schema_objects, select_in, transaction
from .row_codec import AttachmentCodec, FeatureCodec
from .schema import refresh_extent
from .sync_model import RejectedEdit
from .tracking import drop_pending, next_seq, set_tracking, suspend_triggers

BATCH_SIZE = 1000
BATCH_BYTES = 32 * 1024 * 1024
NOT_FOUND_CODE = 1019

_DOWNLOAD_SECTIONS = {
    "features": (False, "adds"),
    "features.adds": (False, "adds"),
    "features.updates": (False, "updates"),
    "features.deleteIds": (False, "deletes"),
    "attachments": (True, "adds"),
    "attachments.adds": (True, "adds"),
    "attachments.updates": (True, "updates"),
    "attachments.deleteIds": (True, "deletes"),
}
_RESULT_SECTIONS = {
    "addResults": (False, "add"),
    "updateResults": (False, "update"),
    "deleteResults": (False, "delete"),
    "attachmentResults.addResults": (True, "add"),
    "attachmentResults.updateResults": (True, "update"),
    "attachmentResults.deleteResults": (True, "delete"),
}


def parse_gen(value) -> int | None:
    """A generation as a 64-bit integer (servers send numbers or strings)."""
    if value is None or value == "":
        return None
    return int(value)


def parse_layer_gens(value) -> dict[int, int]:
    """``layerServerGens`` as ``{layer id: generation}`` from any of the shapes servers send."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        return {int(k): int(v) for k, v in value.items()}
    out = {}
    for item in value:
        gen = item.get("serverGen", item.get("serverSibGen"))
        if item.get("id") is not None and gen is not None:
            out[int(item["id"])] = int(gen)
    return out


class _Pending:
    """The pending local changes of one table, loaded once per commit (they are few)."""

    def __init__(self, conn: sqlite3.Connection, table: str, fid_col: str, gid_col: str) -> None:
        self.table = table
        #: GlobalID -> [op, fid, seq]
        self.by_gid: dict[str, list] = {}
        sql = (
            f"SELECT c.op, c.fid, c.seq, t.{quote(gid_col)}, c.global_id FROM oms_changes c "
            f"LEFT JOIN {quote(table)} t ON c.op <> 'delete' AND t.{quote(fid_col)} = c.fid "
            "WHERE c.table_name = ?"
        )
        for op, fid, seq, live_gid, stored_gid in conn.execute(sql, (table,)):
            gid = fv.normalize_guid(live_gid if op != "delete" else stored_gid)
            if gid:
                self.by_gid[gid] = [op, fid, seq]


class _Commit:
    def __init__(
        self,
        conn: sqlite3.Connection,
        layers: dict[int, LayerDef],
        snapshot: UploadSnapshot | None,
        direction: SyncDirection,
        fetch_attachment: Callable[[str], bytes] | None,
    ) -> None:
        self.conn = conn
        self.layers = layers
        self.snapshot = snapshot
        self.direction = direction
        # In a row this sync uploads, fields changed after this threshold are local edits it did
        # not upload; every pending change of the other rows stays local (threshold 0).
        self.threshold = snapshot.seq if snapshot is not None else 0
        #: (layer id, is attachment, GlobalID) of the rows whose edits this sync uploads.
        self.uploading: set[tuple[int, bool, str]] = set()
        if snapshot is not None and direction.uploads:
            for layer, is_att, _kind, gid, _edit in _snapshot_edits(snapshot, layers):
                self.uploading.add((layer.id, is_att, gid))
        self.fetch_attachment = fetch_attachment
        self.counts: dict[int, LayerCommitCounts] = {}
        self._pending: dict[tuple[int, bool], _Pending] = {}
        self._codecs: dict[int, FeatureCodec] = {}
        self._att_codecs: dict[int, AttachmentCodec] = {}
        #: (layer id, is attachment, GlobalID) already settled as conflicts during download.
        self.conflicted: set[tuple[int, bool, str]] = set()
        #: Local versions overwritten by the download while their upload result is unknown.
        self.preimages: dict[tuple[int, bool, str], dict] = {}
        self.results: dict[tuple[int, bool, str], dict[str, dict]] = {}
        #: Results that name no uploaded edit, by (layer id, is attachment, kind).
        self.unmatched: dict[tuple[int, bool, str], list[dict]] = {}
        self.touched_layers: set[int] = set()
        #: Rows whose geometry the download changed, per layer id: their spatial-index
        #: entries are brought up to date once, at the end (:meth:`update_spatial_indexes`).
        self.moved: dict[int, MovedRows] = {}
        #: Tracking triggers suspended while the download is applied, per table.
        self.suspended: dict[str, list[tuple[str, str]]] = {}

    # -- helpers ----------------------------------------------------------------------------

    def count(self, layer_id: int) -> LayerCommitCounts:
        c = self.counts.get(layer_id)
        if c is None:
            c = self.counts[layer_id] = LayerCommitCounts(layer_id)
        return c

    def pending(self, layer: LayerDef, is_att: bool) -> _Pending:
        key = (layer.id, is_att)
        p = self._pending.get(key)
        if p is None:
            table, fid_col, gid_col, _cols = table_spec(layer, is_att)
            p = self._pending[key] = _Pending(self.conn, table, fid_col, gid_col)
        return p

    def codec(self, layer: LayerDef) -> FeatureCodec:
        c = self._codecs.get(layer.id)
        if c is None:
            c = self._codecs[layer.id] = FeatureCodec(layer)
        return c

    def att_codec(self, layer: LayerDef) -> AttachmentCodec:
        c = self._att_codecs.get(layer.id)
        if c is None:
            c = self._att_codecs[layer.id] = AttachmentCodec(layer.attachment_table)
        return c

    def lookup_fids(self, table: str, gid_col: str, fid_col: str, gids: list[str]) -> dict:
        sql = f"SELECT {quote(gid_col)}, {quote(fid_col)} FROM {quote(table)} WHERE {quote(gid_col)} IN"
        return dict(select_in(self.conn, sql, gids))

    def match_rows(self, table: str, gid_col: str, fid_col: str, upserts: list) -> dict:
        """GlobalID -> fid of the local rows of downloaded ``upserts`` (from
        :meth:`upsert_converter`). Rows keep the server's ObjectID as fid where it was free, so
        the rows with those fids are looked at first (row-id look-ups, in order), and kept
        where their GlobalID is the one downloaded; the others are looked up by GlobalID."""
        by_oid = {row[3]: row[0] for row in upserts if row[3] is not None}
        sql = f"SELECT {quote(fid_col)}, {quote(gid_col)} FROM {quote(table)} WHERE {quote(fid_col)} IN"
        found = {}
        for fid, gid in select_in(self.conn, sql, list(by_oid)):
            if gid is not None and by_oid[fid] == fv.normalize_guid(gid):
                found[by_oid[fid]] = fid
        rest = [row[0] for row in upserts if row[0] not in found]
        if rest:
            found.update(self.lookup_fids(table, gid_col, fid_col, rest))
        return found

    def clear_pending(self, table: str, fid: int | None, gid: str, *, upto: int | None = None):
        """Drop pending changes of a row (all, or only those up to sequence ``upto``)."""
        conn = self.conn
        if upto is None:
            drop_pending(conn, table, fid, gid)
            return
        if fid is not None:
            rec = conn.execute(
                "SELECT op, seq FROM oms_changes WHERE table_name = ? AND fid = ?"
                " AND op <> 'delete'",
                (table, fid),
            ).fetchone()
            if rec is not None and rec[1] <= upto:
                drop_pending(conn, table, fid, gid)
                return
            if rec is not None:
                conn.execute(
                    "DELETE FROM oms_changed_fields WHERE table_name = ? AND fid = ? AND seq <= ?",
                    (table, fid, upto),
                )
                if rec[0] == "add":  # the server has the row now: later edits are updates
                    conn.execute(
                        "UPDATE oms_changes SET op = 'update' WHERE table_name = ?"
                        " AND fid = ? AND op = 'add'",
                        (table, fid),
                    )
        conn.execute(
            "DELETE FROM oms_changes WHERE table_name = ? AND op = 'delete' AND global_id = ?"
            " AND seq <= ?",
            (table, gid, upto),
        )

    def conflict(self, layer, is_att, gid, local_op, reason, local_row, code=None, message=""):
        record_conflict(
            self.conn,
            layer,
            global_id=gid,
            is_attachment=is_att,
            local_op=local_op,
            reason=reason,
            local_row=local_row,
            error_code=code,
            error_message=message,
        )
        self.count(layer.id).conflicts += 1

    def delete_attachments_of(self, layer: LayerDef, parent_gids: list[str]) -> None:
        """Remove the attachments of deleted rows; pending local ones go to the conflict log."""
        if not layer.attachment_table or not parent_gids:
            return
        att = self.pending(layer, True)
        table = quote(layer.attachment_table)
        if att.by_gid:
            sql = f"SELECT GLOBALID FROM {table} WHERE REL_GLOBALID IN"
            for (agid,) in select_in(self.conn, sql, parent_gids):
                agid = fv.normalize_guid(agid)
                p = att.by_gid.pop(agid, None) if agid else None
                if p is None:
                    continue
                local = read_local_row(self.conn, layer, True, agid)
                self.conflict(layer, True, agid, p[0], ConflictReason.DELETED_ON_SERVER, local)
                self.clear_pending(layer.attachment_table, p[1], agid)
                self.conflicted.add((layer.id, True, agid))
        # Look first: most deleted rows have no attachments, and a lookup is cheaper than a delete.
        sql = f"SELECT DISTINCT REL_GLOBALID FROM {table} WHERE REL_GLOBALID IN"
        with_attachments = [r[0] for r in select_in(self.conn, sql, parent_gids)]
        self.conn.executemany(
            f"DELETE FROM {quote(layer.attachment_table)} WHERE REL_GLOBALID = ?",
            [(g,) for g in with_attachments],
        )

    # -- downloaded changes -----------------------------------------------------------------

    def batch_layer(self, layer_id: int, section: str) -> LayerDef | None:
        """The layer a batch of downloaded changes applies to (None: nothing to apply)."""
        layer = self.layers.get(layer_id)
        if layer is None or (_DOWNLOAD_SECTIONS[section][0] and not layer.attachment_table):
            return None
        return layer

    def upsert_converter(self, layer_id: int, section: str) -> Callable[[dict], tuple] | None:
        """A function converting one downloaded add or update to ``(GlobalID, columns, values,
        server ObjectID, extent of the geometry if it is among the columns)`` (None for an item
        without a GlobalID); None for the other sections. It touches no database."""
        layer = self.batch_layer(layer_id, section)
        is_att, kind = _DOWNLOAD_SECTIONS[section]
        if layer is None or kind == "deletes":
            return None
        _table, _fid_col, gid_col, all_cols = table_spec(layer, is_att)
        if is_att:
            att_codec = self.att_codec(layer)
            att_cols = tuple(all_cols)

            def attachment(item: dict) -> tuple | None:
                gid = att_codec.global_id(item)
                if not gid:
                    return None
                return gid, att_cols, att_codec.row(item, self.fetch_attachment), None, None

            return attachment
        codec = self.codec(layer)
        geom = layer.geometry_column
        oid_field = layer.object_id_field

        def feature(item: dict) -> tuple | None:
            cols, values = codec.present_row(item)
            try:
                gid = fv.normalize_guid(values[cols.index(gid_col)])
            except ValueError:  # not among the columns
                gid = codec.global_id(item)
                cols, values = (*cols, gid_col), [*values, gid]
            if not gid:
                return None
            oid = (item.get("attributes") or {}).get(oid_field)
            # The new extent for the spatial index (the geometry comes first when present).
            extent = gpkg_envelope(values[0]) if geom and cols[0] == geom else None
            return gid, cols, values, oid if isinstance(oid, int) else None, extent

        return feature

    def apply_batch(self, layer_id: int, section: str, items: list) -> None:
        """Apply one batch of downloaded changes: deleted GlobalIDs (or ObjectIDs), or adds or
        updates converted by :meth:`upsert_converter`."""
        layer = self.batch_layer(layer_id, section)
        if layer is None or not items:
            return
        is_att, kind = _DOWNLOAD_SECTIONS[section]
        self.touched_layers.add(layer.id)
        table = layer.attachment_table if is_att else layer.table_name
        if table not in self.suspended:  # they do nothing now (untracked), at a cost per row
            self.suspended[table] = suspend_triggers(self.conn, table)
        if kind == "deletes":
            self.apply_deletes(layer, is_att, items)
        else:
            self.apply_upserts(layer, is_att, kind, items)

    def apply_upserts(self, layer: LayerDef, is_att: bool, kind: str, upserts: list) -> None:
        if kind == "updates" and self.update_in_place(layer, is_att, upserts):
            self.count(layer.id).downloaded.count(
                "update", is_attachment=is_att, number=len(upserts)
            )
            return
        conn = self.conn
        table, fid_col, gid_col, _all_cols = table_spec(layer, is_att)
        existing = self.match_rows(table, gid_col, fid_col, upserts)
        pend = self.pending(layer, is_att)
        updates: dict[tuple, tuple[list, list]] = {}  # columns -> (rows, their extents)
        new_rows: list[tuple] = []  # (cols, values, server ObjectID or None)
        n = 0
        for gid, cols, values, oid, extent in upserts:
            p = pend.by_gid.get(gid)
            if p is not None:
                if self.apply_pending_row(layer, is_att, gid, p, cols, values, existing.get(gid)):
                    n += 1
                continue
            fid = existing.get(gid)
            if fid is not None:
                rows, extents = updates.setdefault(cols, ([], []))
                rows.append([*values, fid])
                extents.append(extent)
            else:
                new_rows.append((cols, values, oid))
            n += 1
        # New rows keep the server's ObjectID as fid where it is free: one look-up for the
        # batch, after the pending rows above were written and before any insert runs.
        sql = f"SELECT {quote(fid_col)} FROM {quote(table)} WHERE {quote(fid_col)} IN"
        wanted = [oid for _c, _v, oid in new_rows if oid is not None]
        taken = {fid for (fid,) in select_in(conn, sql, wanted)}
        inserts: dict[tuple, list] = {}
        for cols, values, oid in new_rows:
            if oid is not None and oid not in taken:
                cols, values = (*cols, fid_col), [*values, oid]
            inserts.setdefault(cols, []).append(values)
        self.write_updates(layer, is_att, updates)
        # Rows keeping the server's ObjectID first: an automatic fid taken earlier in the same
        # batch could be one of those ObjectIDs (checked free before any insert ran).
        for cols, rows in sorted(inserts.items(), key=lambda group: fid_col not in group[0]):
            conn.executemany(
                f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})",
                rows,
            )
        operation = "add" if kind == "adds" else "update"
        self.count(layer.id).downloaded.count(operation, is_attachment=is_att, number=n)

    def update_in_place(self, layer: LayerDef, is_att: bool, upserts: list) -> bool:
        """Write downloaded updates to the rows kept under the server's ObjectIDs, without
        looking them up first: the usual case. False (the caller goes the general way, writing
        the rows again) when a row has pending local changes, no ObjectID, or another GlobalID
        under that ObjectID locally."""
        pending = self.pending(layer, is_att).by_gid
        if is_att:
            return False
        updates: dict[tuple, tuple[list, list]] = {}
        for gid, cols, values, oid, extent in upserts:
            if oid is None or (pending and gid in pending):
                return False
            rows, extents = updates.setdefault(cols, ([], []))
            rows.append([*values, oid])
            extents.append(extent)
        return self.write_updates(layer, is_att, updates, check_global_id=True)

    def write_updates(
        self,
        layer: LayerDef,
        is_att: bool,
        updates: dict[tuple, tuple[list, list]],
        *,
        check_global_id: bool = False,
    ) -> bool:
        """Write ``{columns: ([*values, fid] rows, their extents)}`` (the GlobalID, which the
        rows were matched on, stays as it is). With ``check_global_id``, a row is written only
        where its fid holds the same GlobalID; False if any row was not."""
        table, fid_col, gid_col, _all_cols = table_spec(layer, is_att)
        geom = None if is_att else layer.geometry_column
        moved = None
        if geom:
            moved = self.moved.get(layer.id)
            if moved is None:
                moved = self.moved[layer.id] = MovedRows(self.conn, table, fid_col, geom)
        for cols, (rows, extents) in updates.items():
            written = update_rows(
                self.conn,
                table,
                fid_col,
                cols,
                rows,
                geometry_column=geom,
                unchanged=[gid_col],
                moved=moved,
                envelopes=None if is_att else extents,
                same=[gid_col] if check_global_id else (),
            )
            if written < len(rows):
                return False
        return True

    def write_row(self, table, fid_col, fid, cols, values) -> None:
        if fid is None:
            self.conn.execute(
                f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})",
                values,
            )
        elif cols:
            assignments = ", ".join(f"{quote(c)} = ?" for c in cols)
            self.conn.execute(
                f"UPDATE {quote(table)} SET {assignments} WHERE {quote(fid_col)} = ?",
                [*values, fid],
            )

    def apply_pending_row(self, layer, is_att, gid, p, cols, values, fid) -> bool:
        """A downloaded add/update of a row with pending local changes. True if written.

        The fields with local changes this sync does not upload keep the local value and stay
        pending (they win at the next upload); the server's values land in the other fields.
        """
        table, fid_col, _gid_col, _all = table_spec(layer, is_att)
        op, pfid, seq = p
        key = (layer.id, is_att, gid)
        threshold = self.threshold if key in self.uploading else 0
        if op == "delete":
            return False  # the local delete is pending (uploaded now or later) and wins
        if seq > threshold and (op == "add" or is_att):
            return False  # a whole row (or attachment) not uploaded by this sync: local wins
        protected = set()
        if not is_att:
            for field, fseq in self.conn.execute(
                "SELECT field, seq FROM oms_changed_fields WHERE table_name = ? AND fid = ?",
                (table, pfid),
            ):
                if fseq > threshold:
                    protected.add(field.lower())
        if seq <= threshold and key not in self.preimages:
            # Its upload result comes later in the stream; keep the local version in case the
            # upload was rejected and this overwrite must be logged as a conflict.
            local = read_local_row(self.conn, layer, is_att, gid)
            if local is not None:
                self.preimages[key] = local
        keep = [(c, v) for c, v in zip(cols, values) if c.lower() not in protected]
        self.write_row(table, fid_col, pfid, [c for c, _ in keep], [v for _, v in keep])
        # The server holds these values now: a rejected upload of the kept fields falls back
        # to them (not to older ones).
        self.conn.executemany(
            "UPDATE oms_changed_fields SET old_value = ?, has_old = 1"
            " WHERE table_name = ? AND fid = ? AND lower(field) = ? AND seq > ?",
            [
                (v, table, pfid, c.lower(), threshold)
                for c, v in zip(cols, values)
                if c.lower() in protected
            ],
        )
        return True

    def apply_deletes(self, layer: LayerDef, is_att: bool, items: list) -> None:
        table, fid_col, gid_col, _cols = table_spec(layer, is_att)
        pend = self.pending(layer, is_att)
        plain: list[str] = []
        by_oid: list[int] = []
        deleted_parents: list[str] = []
        n = 0
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool):
                by_oid.append(item)  # [tolerate] objectIds instead of GlobalIDs
                continue
            gid = fv.normalize_guid(item)
            if not gid:
                continue
            p = pend.by_gid.pop(gid, None)
            if p is None:
                plain.append(gid)
                continue
            op, pfid, _seq = p
            if op == "delete":
                self.clear_pending(table, None, gid)  # deleted on both sides
                deleted_parents.append(gid)  # its attachments waited for this
                continue
            local = read_local_row(self.conn, layer, is_att, gid)
            self.conflict(layer, is_att, gid, op, ConflictReason.DELETED_ON_SERVER, local)
            self.conflicted.add((layer.id, is_att, gid))
            self.clear_pending(table, pfid, gid)
            self.conn.execute(f"DELETE FROM {quote(table)} WHERE {quote(fid_col)} = ?", (pfid,))
            deleted_parents.append(gid)
            n += 1
        if by_oid:
            local_adds = {p[1] for p in pend.by_gid.values() if p[0] == "add"}
            oids = [oid for oid in by_oid if oid not in local_adds]
            sql = f"SELECT {quote(fid_col)}, {quote(gid_col)} FROM {quote(table)} WHERE {quote(fid_col)} IN"
            gids = dict(select_in(self.conn, sql, oids))
            plain.extend(fv.normalize_guid(gids[oid]) for oid in oids if gids.get(oid))
        if plain:
            existing = self.lookup_fids(table, gid_col, fid_col, plain)
            self.conn.executemany(
                f"DELETE FROM {quote(table)} WHERE {quote(fid_col)} = ?",
                [(fid,) for fid in existing.values()],
            )
            n += len(existing)
            deleted_parents.extend(existing)
        if not is_att:
            self.delete_attachments_of(layer, deleted_parents)
        self.count(layer.id).downloaded.count("delete", is_attachment=is_att, number=n)

    # -- upload results ---------------------------------------------------------------------

    def add_result(self, layer_id: int, section: str, item: dict) -> None:
        is_att, kind = _RESULT_SECTIONS[section]
        gid = fv.normalize_guid(item.get("globalId") or item.get("globalID"))
        if gid and (layer_id, is_att, gid) in self.uploading:
            self.results.setdefault((layer_id, is_att, kind), {})[gid] = item
        else:  # an objectId only, or an edit this sync did not upload
            self.unmatched.setdefault((layer_id, is_att, kind), []).append(item)

    def apply_results(self, snapshot: UploadSnapshot) -> None:
        for layer, is_att, kind, gid, edit in _snapshot_edits(snapshot, self.layers):
            self.apply_result(layer, is_att, kind, gid, snapshot.seq, edit)
        for (layer_id, is_att, kind), items in self.unmatched.items():
            layer = self.layers.get(layer_id)
            if layer is None:
                continue
            for item in items:
                if item.get("success") is False:
                    # A failure the client cannot tie to an edit: shown as the server said it.
                    error = _edit_error(layer, kind, "", item, is_att)
                    self.count(layer_id).edit_errors.append(error)

    def apply_result(
        self, layer: LayerDef, is_att: bool, kind: str, gid: str, upto: int, edit=None
    ) -> None:
        key = (layer.id, is_att, gid)
        table, fid_col, gid_col, _cols = table_spec(layer, is_att)
        result = self.results.get((layer.id, is_att, kind), {}).get(gid)
        # Servers may report only failures: no result means success, unless the answer holds
        # results the client cannot tie to its edits (one of them may be this edit's failure).
        failed = result is not None and result.get("success") is False
        if key in self.conflicted:
            # Settled by the download (deleted on the server); still report the server's error.
            if failed:
                self.count(layer.id).edit_errors.append(
                    _edit_error(layer, kind, gid, result, is_att)
                )
            return
        if result is None and (layer.id, is_att, kind) in self.unmatched:
            self.unconfirmed(layer, is_att, kind, gid, upto)
            return
        row = self.conn.execute(
            f"SELECT {quote(fid_col)} FROM {quote(table)} WHERE {quote(gid_col)} = ?", (gid,)
        ).fetchone()
        fid = row[0] if row else None
        c = self.count(layer.id)
        if not failed:
            c.uploaded.count(kind, is_attachment=is_att)
            self.clear_pending(table, fid, gid, upto=upto)
            if kind in ("add", "update") and not is_att and fid is not None and edit:
                self.rebase_old_values(layer, fid, edit)
            if kind == "delete" and not is_att and fid is None:
                self.delete_attachments_of(layer, [gid])  # kept until the server agreed
            if kind == "add" and fid is None and not self._tombstone(table, gid):
                # Deleted locally while its add was in flight: the delete trigger dropped the
                # pending add, but the server has the row now, so delete it at the next upload.
                self.conn.execute(
                    "INSERT INTO oms_changes (table_name, fid, global_id, op, seq)"
                    " VALUES (?, -1, ?, 'delete', ?)",
                    (table, gid, next_seq(self.conn)),
                )
            return
        edit_error = _edit_error(layer, kind, gid, result, is_att)
        code, message = edit_error.code, edit_error.message
        c.edit_errors.append(edit_error)
        gone_here = kind == "delete" or (fid is None and self.preimages.get(key) is None)
        if code == NOT_FOUND_CODE and gone_here:
            # Gone on both sides (a delete, or an edit of a row deleted here too since the
            # upload was prepared): nothing is lost, and a local delete still pending goes up
            # next.
            self.clear_pending(table, None, gid, upto=upto)
            if kind == "delete" and not is_att and fid is None:
                self.delete_attachments_of(layer, [gid])
            return
        local = self.preimages.get(key)
        if local is None and fid is not None:
            local = read_local_row(self.conn, layer, is_att, gid)
        reason = (
            ConflictReason.DELETED_ON_SERVER
            if code == NOT_FOUND_CODE
            else ConflictReason.EDIT_REJECTED
        )
        self.conflict(layer, is_att, gid, kind, reason, local, code, message)
        if kind == "delete":
            self.clear_pending(table, None, gid, upto=upto)
            if not is_att and fid is None:
                self.delete_attachments_of(layer, [gid])  # the local copy stays as deleted
            return
        if code == NOT_FOUND_CODE or kind == "add":
            # The server does not have the row: neither should this copy (the conflict log has it).
            self.clear_pending(table, fid, gid)
            if fid is not None:
                self.conn.execute(f"DELETE FROM {quote(table)} WHERE {quote(fid_col)} = ?", (fid,))
                if not is_att:
                    self.delete_attachments_of(layer, [gid])
            return
        if not is_att and fid is not None and key not in self.preimages:
            # The server keeps its version and this download did not bring it: put the
            # rejected fields back to what they were before the edit (the server's values).
            self.revert_fields(layer, fid, upto)
        self.clear_pending(table, fid, gid, upto=upto)

    def unconfirmed(self, layer: LayerDef, is_att: bool, kind: str, gid: str, upto: int) -> None:
        """An uploaded edit the server's answer does not acknowledge: it stays pending (sent
        again at the next sync; replays are idempotent) and is reported."""
        key = (layer.id, is_att, gid)
        table, fid_col, gid_col, _cols = table_spec(layer, is_att)
        local = self.preimages.get(key)
        if local is not None and not is_att:
            # The download wrote over the row believing the upload done: put the pending
            # fields back to the local values.
            fields = {
                f.lower()
                for (f,) in self.conn.execute(
                    "SELECT c.field FROM oms_changed_fields c JOIN "
                    f"{quote(table)} t ON t.{quote(fid_col)} = c.fid "
                    f"WHERE c.table_name = ? AND t.{quote(gid_col)} = ? AND c.seq <= ?",
                    (table, gid, upto),
                )
            }
            cols = [c for c in local if c.lower() in fields]
            if cols:
                self.conn.execute(
                    f"UPDATE {quote(table)} SET {', '.join(f'{quote(c)} = ?' for c in cols)}"
                    f" WHERE {quote(gid_col)} = ?",
                    [local[c] for c in cols] + [gid],
                )
        if kind == "add" and not self._tombstone(table, gid):
            exists = self.conn.execute(
                f"SELECT 1 FROM {quote(table)} WHERE {quote(gid_col)} = ?", (gid,)
            ).fetchone()
            if exists is None:
                # Deleted locally while its add was in flight, and the server may have it:
                # delete it at the next upload (deleting a missing row succeeds).
                self.conn.execute(
                    "INSERT INTO oms_changes (table_name, fid, global_id, op, seq)"
                    " VALUES (?, -1, ?, 'delete', ?)",
                    (table, gid, next_seq(self.conn)),
                )
        self.count(layer.id).edit_errors.append(
            RejectedEdit(
                layer.id,
                gid,
                kind,
                None,
                "The server's answer did not confirm this edit (it named no edit the client "
                "could match). It stays pending and is sent again at the next sync.",
                is_att,
            )
        )

    def rebase_old_values(self, layer: LayerDef, fid: int, edit: dict) -> None:
        """After an accepted upload, the server holds the uploaded values: fields edited again
        since then must fall back to those, not to older ones, if their next upload fails."""
        cols, values = self.codec(layer).present_row(edit)
        self.conn.executemany(
            "UPDATE oms_changed_fields SET old_value = ?, has_old = 1"
            " WHERE table_name = ? AND fid = ? AND field = ?",
            [(v, layer.table_name, fid, c) for c, v in zip(cols, values)],
        )

    def revert_fields(self, layer: LayerDef, fid: int, upto: int) -> None:
        rows = self.conn.execute(
            "SELECT field, old_value FROM oms_changed_fields WHERE table_name = ? AND fid = ?"
            " AND seq <= ? AND has_old = 1",
            (layer.table_name, fid, upto),
        ).fetchall()
        if rows:
            assignments = ", ".join(f"{quote(field)} = ?" for field, _old in rows)
            self.conn.execute(
                f"UPDATE {quote(layer.table_name)} SET {assignments}"
                f" WHERE {quote(layer.object_id_field)} = ?",
                [old for _field, old in rows] + [fid],
            )

    def _tombstone(self, table: str, gid: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM oms_changes WHERE table_name = ? AND op = 'delete'"
                " AND global_id = ?",
                (table, gid),
            ).fetchone()
            is not None
        )

    # -- bookkeeping ------------------------------------------------------------------------

    def update_spatial_indexes(self) -> None:
        for moved in self.moved.values():
            moved.finish()

    def restore_triggers(self) -> None:
        for triggers in self.suspended.values():
            recreate_schema_objects(self.conn, triggers)
        self.suspended.clear()

    def update_extents(self) -> None:
        for lid in self.touched_layers:
            refresh_extent(self.conn, self.layers[lid], mark_changed=True)


def _snapshot_edits(
    snapshot: UploadSnapshot, layers: dict[int, LayerDef]
) -> Iterator[tuple[LayerDef, bool, str, str, object]]:
    """(layer, is attachment, kind, GlobalID, edit) of every edit a snapshot uploads."""
    for entry in snapshot.edits:
        layer = layers.get(int(entry["id"]))
        if layer is None:
            continue
        features = entry.get("features") or {}
        attachments = entry.get("attachments") or {}
        for is_att, group in ((False, features), (True, attachments)):
            for kind, key in (("add", "adds"), ("update", "updates"), ("delete", "deleteIds")):
                for edit in group.get(key) or []:
                    if kind == "delete":
                        gid = fv.normalize_guid(edit)
                    elif is_att:
                        gid = fv.normalize_guid(edit.get("globalId"))
                    else:
                        gid = fv.normalize_guid(
                            (edit.get("attributes") or {}).get(layer.global_id_field)
                        )
                    if gid:
                        yield layer, is_att, kind, gid, edit


def _edit_error(layer: LayerDef, kind: str, gid: str, result: dict, is_att: bool) -> RejectedEdit:
    error = result.get("error") or {}
    code = error.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    message = str(error.get("description") or error.get("message") or "The edit was rejected.")
    return RejectedEdit(layer.id, gid, kind, code, message, is_att)


def _batches(
    events: Iterable[tuple[int, str, object]], commit: _Commit
) -> Iterator[tuple[int, str, int, list]]:
    """Group consecutive download events of one layer and section; results go to ``commit``.
    Yields ``(layer id, section, number of events, items)``: adds and updates converted
    (:meth:`_Commit.upsert_converter`) as they are read, the last version of a row in a batch
    winning; deletes as they came."""
    key = None
    count = size = 0
    convert = None
    items: list = []
    upserts: dict[str, tuple] = {}

    def batch() -> tuple[int, str, int, list]:
        return key[0], key[1], count, list(upserts.values()) if convert else items

    for layer_id, section, item in events:
        if section in _RESULT_SECTIONS:
            if isinstance(item, dict):
                commit.add_result(int(layer_id), section, item)
            continue
        if section not in _DOWNLOAD_SECTIONS:
            continue
        new_key = (int(layer_id), section)
        # Batches are bounded by count and by attachment bytes (photos are large).
        if new_key != key or count >= BATCH_SIZE or size >= BATCH_BYTES:
            if count:
                yield batch()
            key, count, size, items, upserts = new_key, 0, 0, [], {}
            convert = commit.upsert_converter(*new_key)
        count += 1
        if isinstance(item, dict) and isinstance(item.get("data"), str):
            size += len(item["data"])
        if convert is None:
            items.append(item)
            continue
        # Converted while the item is fresh in memory (faster than a batch at a time).
        row = convert(item)
        if row is not None:
            upserts.pop(row[0], None)
            upserts[row[0]] = row
    if count:
        yield batch()


def commit_sync(
    conn: sqlite3.Connection,
    layers: dict[int, LayerDef],
    snapshot: UploadSnapshot | None,
    header: dict,
    events: Iterable[tuple[int, str, object]],
    *,
    direction: SyncDirection,
    layer_ids: Iterable[int] | None = None,
    fetch_attachment: Callable[[str], bytes] | None = None,
    progress: Callable[[float | None, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    kind: str = "sync",
    started_at: str | None = None,
) -> CommitReport:
    """Apply a sync's results in ONE transaction (see the module docstring for the rules)."""
    # layer_ids (per-layer sync) limits which generations move; results and downloads apply to
    # whichever layers the server answered for.
    wanted = None if layer_ids is None else {int(i) for i in layer_ids}
    active = layers
    started_at = started_at or now_text()
    with ExitStack() as stack, transaction(conn):
        set_tracking(conn, False)
        commit = _Commit(conn, active, snapshot, direction, fetch_attachment)
        applied = 0
        # Reading, converting and storing take turns in this thread (see Geodatabase._load).
        batches = stack.enter_context(closing(_batches(events, commit)))
        for layer_id, section, count, items in batches:
            if cancel is not None and cancel():
                raise CancelledError("Synchronization cancelled; nothing was applied.")
            commit.apply_batch(layer_id, section, items)
            applied += count
            if progress is not None:
                progress(None, f"Applied {applied} downloaded changes")
        if snapshot is not None and direction.uploads:
            commit.apply_results(snapshot)
        server_gen = parse_gen(header.get("replicaServerGen"))
        layer_gens = parse_layer_gens(header.get("layerServerGens"))
        if wanted is not None:
            layer_gens = {k: v for k, v in layer_gens.items() if k in wanted}
        if direction.downloads:
            # The generation only moves when changes were downloaded up to it (an upload-only
            # answer's generation would skip other users' changes).
            if server_gen is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO oms_meta (key, value) VALUES ('server_gen', ?)",
                    (str(server_gen),),
                )
            for lid, gen in layer_gens.items():
                conn.execute("UPDATE oms_layers SET server_gen = ? WHERE layer_id = ?", (gen, lid))
        if snapshot is not None:
            conn.execute(
                "UPDATE oms_journal SET closed_at = ? WHERE closed_at IS NULL AND seq = ?",
                (now_text(), snapshot.seq),
            )
        commit.update_spatial_indexes()
        commit.restore_triggers()
        commit.update_extents()
        for lid in active:
            if wanted is None or lid in wanted or lid in commit.counts:
                commit.count(lid)
        report = CommitReport(
            layers=dict(sorted(commit.counts.items())),
            server_gen=server_gen,
            layer_gens=layer_gens,
        )
        cur = conn.execute(
            "INSERT INTO oms_history (started_at, finished_at, kind, direction, server_gen,"
            " counts, errors, conflicts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                started_at,
                now_text(),
                kind,
                direction.wire,
                server_gen,
                json.dumps({str(lid): c.history_counts() for lid, c in report.layers.items()}),
                json.dumps([e.__dict__ for e in report.edit_errors]),
                report.conflicts,
            ),
        )
        report.history_id = int(cur.lastrowid)
        set_tracking(conn, True)
    return report
