"""Bookkeeping tables and the change-tracking triggers of a geodatabase.

Tracking is plain SQL (only SQLite built-ins), so every writer is tracked: QGIS, QField,
GDAL/OGR, the sqlite3 shell. Each tracked change bumps a sequence number kept in
``oms_state``; a sync snapshots pending changes up to a sequence number, so edits made while
it runs (higher numbers) stay pending. Sync itself writes with tracking switched off (a flag in
``oms_state``, flipped inside its own write transaction, so no other connection ever sees it
off).

Pending changes:
- ``oms_changes``: one row per changed row: ``add`` / ``update`` keyed by (table, fid), or a
  ``delete`` tombstone carrying the GlobalID (the row itself is gone).
- ``oms_changed_fields``: for updates (and edits of pending adds), which columns changed and
  at which sequence number; the geometry column is one of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .geodatabase_model import LayerDef
from .gpkg_connection import drop_schema_objects, literal, quote, transaction
from .schema import ATTACHMENT_FID

#: Version of the bookkeeping schema written by this code (``oms_meta.format_version``).
FORMAT_VERSION = 1
#: Version of the trigger SQL; geodatabases with another one get their triggers re-created.
TRIGGERS_VERSION = 4

BOOKKEEPING_DDL = (
    "CREATE TABLE oms_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT)",
    """CREATE TABLE oms_layers (
        layer_id INTEGER PRIMARY KEY,
        table_name TEXT NOT NULL UNIQUE,
        attachment_table TEXT,
        server_gen INTEGER,
        definition TEXT NOT NULL)""",
    """CREATE TABLE oms_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        tracking INTEGER NOT NULL DEFAULT 1,
        seq INTEGER NOT NULL DEFAULT 0)""",
    "INSERT INTO oms_state (id, tracking, seq) VALUES (1, 1, 0)",
    """CREATE TABLE oms_changes (
        id INTEGER PRIMARY KEY,
        table_name TEXT NOT NULL,
        fid INTEGER NOT NULL,
        global_id TEXT,
        op TEXT NOT NULL CHECK (op IN ('add', 'update', 'delete')),
        seq INTEGER NOT NULL)""",
    "CREATE INDEX oms_changes_row ON oms_changes (table_name, fid)",
    "CREATE INDEX oms_changes_global_id ON oms_changes (table_name, global_id)",
    """CREATE TABLE oms_changed_fields (
        table_name TEXT NOT NULL,
        fid INTEGER NOT NULL,
        field TEXT NOT NULL,
        seq INTEGER NOT NULL,
        old_value,
        has_old INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (table_name, fid, field)) WITHOUT ROWID""",
    """CREATE TABLE oms_journal (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        seq INTEGER NOT NULL,
        snapshot TEXT NOT NULL,
        status_url TEXT,
        closed_at TEXT)""",
    """CREATE TABLE oms_conflicts (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        layer_id INTEGER NOT NULL,
        table_name TEXT NOT NULL,
        global_id TEXT NOT NULL,
        is_attachment INTEGER NOT NULL DEFAULT 0,
        local_op TEXT NOT NULL,
        reason TEXT NOT NULL,
        error_code INTEGER,
        error_message TEXT,
        attributes TEXT,
        geometry BLOB)""",
    """CREATE TABLE oms_history (
        id INTEGER PRIMARY KEY,
        started_at TEXT,
        finished_at TEXT NOT NULL,
        kind TEXT NOT NULL,
        direction TEXT NOT NULL,
        server_gen INTEGER,
        counts TEXT NOT NULL,
        errors TEXT NOT NULL,
        conflicts INTEGER NOT NULL DEFAULT 0)""",
)

#: Every bookkeeping table; a geodatabase lacking some of them is damaged.
BOOKKEEPING_TABLES = (
    "oms_meta",
    "oms_layers",
    "oms_state",
    "oms_changes",
    "oms_changed_fields",
    "oms_journal",
    "oms_conflicts",
    "oms_history",
)

#: A braced upper-case version-4 GUID from SQLite built-ins (what ArcGIS mints).
MINT_GUID_SQL = (
    "'{' || hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
    "substr(hex(randomblob(2)), 2) || '-' || substr('89AB', 1 + (abs(random()) % 4), 1) || "
    "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)) || '}'"
)

_TRACKING_ON = "(SELECT tracking FROM oms_state) = 1"
_SEQ = "(SELECT seq FROM oms_state)"


def create_bookkeeping(conn: sqlite3.Connection) -> None:
    """Create the ``oms_`` tables (kept out of ``gpkg_contents``: they are not data)."""
    for sql in BOOKKEEPING_DDL:
        conn.execute(sql)


def _norm_guid(expr: str) -> str:
    return f"('{{' || upper(trim({expr}, '{{}} ')) || '}}')"


def _wkb_part(expr: str) -> str:
    """The WKB of a GeoPackage blob (header and envelope skipped), in SQL."""
    return (
        f"substr({expr}, 1 + CASE hex(substr({expr}, 4, 1)) "
        "WHEN '03' THEN 40 WHEN '02' THEN 40 WHEN '05' THEN 56 WHEN '04' THEN 56 "
        "WHEN '07' THEN 56 WHEN '06' THEN 56 WHEN '09' THEN 72 WHEN '08' THEN 72 ELSE 8 END)"
    )


def changed_sql(column: str, kind: str = "") -> str:
    """SQL that is true when ``column`` really changed between OLD and NEW.

    Writers such as QGIS rewrite whole rows; other GDAL versions may format an unchanged date
    or geometry header differently. Those rewrites must not count as edits (they would upload
    stale values over other people's changes), so dates compare as instants and geometries by
    their WKB.
    """
    old, new = f"OLD.{quote(column)}", f"NEW.{quote(column)}"
    if kind == "date":
        return (
            f"({old} IS NOT {new} AND (julianday({old}) IS NULL "
            f"OR julianday({old}) IS NOT julianday({new})))"
        )
    if kind == "geometry":
        return f"({old} IS NOT {new} AND {_wkb_part(old)} IS NOT {_wkb_part(new)})"
    return f"{old} IS NOT {new}"


def trigger_names(table: str) -> list[str]:
    return [f"oms_{table}_{suffix}" for suffix in ("insert", "guard", "repair", "update", "delete")]


def suspend_triggers(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    """Drop the tracking triggers of ``table`` (those it has); returns their ``(name, sql)``
    to re-create them with. They do nothing while tracking is off, yet their ``WHEN`` clause
    runs for every row written: a bulk write that runs untracked (a sync's download) is faster
    without them. Call inside the untracked write transaction and re-create them before it
    ends (a rollback re-creates them too)."""
    return drop_schema_objects(conn, table, names=[*trigger_names(table), *_guard_names(table)])


def create_triggers(
    conn: sqlite3.Connection,
    table: str,
    *,
    fid: str,
    global_id: str,
    tracked_columns: Sequence[str],
    attachment_table: str | None = None,
    parent: tuple[str, str] | None = None,
    column_kinds: dict[str, str] | None = None,
) -> None:
    """Install the tracking triggers on ``table``.

    ``tracked_columns``: the columns whose changes are uploaded (editable fields and the
    geometry). ``attachment_table``: for a layer with attachments, its ``__ATTACH`` table
    (deleting a row deletes its attachments). ``parent``: for an ``__ATTACH`` table, the
    parent (table, GlobalID column): deleting an attachment together with its parent is not
    a separate edit. ``column_kinds``: "date" or "geometry" for columns compared by value
    rather than by their stored bytes (see :func:`changed_sql`).
    """
    kinds = column_kinds or {}
    t, tl = quote(table), literal(table)
    f, g = quote(fid), quote(global_id)
    names = [quote(n) for n in trigger_names(table)]
    mint_needed = (
        f"NEW.{g} IS NULL OR trim(NEW.{g}) = '' "
        f"OR EXISTS (SELECT 1 FROM {t} WHERE {g} = {_norm_guid('NEW.' + g)} AND {f} <> NEW.{f}) "
        f"OR EXISTS (SELECT 1 FROM oms_changes WHERE table_name = {tl} AND op = 'delete' "
        f"AND global_id = {_norm_guid('NEW.' + g)})"
    )
    conn.execute(
        f"""CREATE TRIGGER {names[0]} AFTER INSERT ON {t} WHEN {_TRACKING_ON}
        BEGIN
          UPDATE oms_state SET seq = seq + 1;
          DELETE FROM oms_changed_fields WHERE table_name = {tl} AND fid = NEW.{f};
          DELETE FROM oms_changes WHERE table_name = {tl} AND fid = NEW.{f} AND op <> 'delete';
          INSERT INTO oms_changes (table_name, fid, global_id, op, seq)
            VALUES ({tl}, NEW.{f}, NEW.{g}, 'add', {_SEQ});
          UPDATE {t} SET {g} = CASE WHEN {mint_needed} THEN {MINT_GUID_SQL}
                                    ELSE {_norm_guid("NEW." + g)} END
            WHERE {f} = NEW.{f} AND (NEW.{g} IS NULL OR NEW.{g} IS NOT {_norm_guid("NEW." + g)}
                                      OR {mint_needed});
        END"""
    )
    # The GlobalID is the identity of a row across replicas: once synchronized it is fixed.
    conn.execute(
        f"""CREATE TRIGGER {names[1]} BEFORE UPDATE OF {g}, {f} ON {t}
        WHEN {_TRACKING_ON} AND (OLD.{f} IS NOT NEW.{f} OR (
            OLD.{g} IS NOT NEW.{g} AND NEW.{g} IS NOT NULL AND trim(NEW.{g}) <> ''
            AND OLD.{g} IS NOT NULL AND trim(OLD.{g}) <> ''
            AND NOT EXISTS (SELECT 1 FROM oms_changes
                            WHERE table_name = {tl} AND fid = OLD.{f} AND op = 'add')))
        BEGIN
          SELECT RAISE(ABORT, 'The GlobalID and the id of a synchronized row cannot be changed.');
        END"""
    )
    # Writers holding a stale copy (e.g. QGIS right after adding a feature) may write the
    # GlobalID back as NULL: keep the minted one.
    conn.execute(
        f"""CREATE TRIGGER {names[2]} AFTER UPDATE OF {g} ON {t}
        WHEN {_TRACKING_ON} AND (NEW.{g} IS NULL OR trim(NEW.{g}) = '')
             AND OLD.{g} IS NOT NULL AND trim(OLD.{g}) <> ''
        BEGIN
          UPDATE {t} SET {g} = OLD.{g} WHERE {f} = NEW.{f};
        END"""
    )
    if tracked_columns:
        changed = " OR ".join(changed_sql(c, kinds.get(c, "")) for c in tracked_columns)
        # Per field: the sequence number of its last change, and the value it had before its
        # first pending change (what the server still has if the upload is rejected).
        field_rows = "\n".join(
            f"UPDATE oms_changed_fields SET seq = {_SEQ} WHERE table_name = {tl} "
            f"AND fid = NEW.{f} AND field = {literal(c)} AND {changed_sql(c, kinds.get(c, ''))};\n"
            f"INSERT OR IGNORE INTO oms_changed_fields "
            f"(table_name, fid, field, seq, old_value, has_old) "
            f"SELECT {tl}, NEW.{f}, {literal(c)}, {_SEQ}, OLD.{quote(c)}, 1 "
            f"WHERE {changed_sql(c, kinds.get(c, ''))};"
            for c in tracked_columns
        )
        conn.execute(
            f"""CREATE TRIGGER {names[3]} AFTER UPDATE ON {t}
            WHEN {_TRACKING_ON} AND ({changed})
            BEGIN
              UPDATE oms_state SET seq = seq + 1;
              INSERT INTO oms_changes (table_name, fid, global_id, op, seq)
                SELECT {tl}, NEW.{f}, NEW.{g}, 'update', 0
                WHERE NOT EXISTS (SELECT 1 FROM oms_changes
                                  WHERE table_name = {tl} AND fid = NEW.{f} AND op <> 'delete');
              UPDATE oms_changes SET seq = {_SEQ}
                WHERE table_name = {tl} AND fid = NEW.{f} AND op <> 'delete';
              {field_rows}
            END"""
        )
    parent_exists = ""
    if parent is not None:
        parent_table, parent_gid = parent
        parent_exists = (
            f"AND EXISTS (SELECT 1 FROM {quote(parent_table)} "
            f"WHERE {quote(parent_gid)} = OLD.{quote('REL_GLOBALID')})"
        )
    cascade = ""
    if attachment_table is not None:
        # The row's attachments stay until the server has acknowledged the delete (a sync
        # where the server's version wins brings the row back, and they belong to it); only
        # attachments never uploaded go now, and pending edits of the others are dropped.
        a, al = quote(attachment_table), literal(attachment_table)
        own = f"SELECT ATTACHMENTID FROM {a} WHERE REL_GLOBALID = OLD.{g}"
        cascade = (
            f"DELETE FROM {a} WHERE REL_GLOBALID = OLD.{g} AND ATTACHMENTID IN "
            f"(SELECT fid FROM oms_changes WHERE table_name = {al} AND op = 'add');\n"
            f"DELETE FROM oms_changed_fields WHERE table_name = {al} AND fid IN ({own});\n"
            f"DELETE FROM oms_changes WHERE table_name = {al} AND op = 'update' AND fid IN ({own});"
        )
    conn.execute(
        f"""CREATE TRIGGER {names[4]} AFTER DELETE ON {t} WHEN {_TRACKING_ON}
        BEGIN
          UPDATE oms_state SET seq = seq + 1;
          DELETE FROM oms_changed_fields WHERE table_name = {tl} AND fid = OLD.{f};
          INSERT INTO oms_changes (table_name, fid, global_id, op, seq)
            SELECT {tl}, OLD.{f}, OLD.{g}, 'delete', {_SEQ}
            WHERE OLD.{g} IS NOT NULL AND trim(OLD.{g}) <> ''
              AND NOT EXISTS (SELECT 1 FROM oms_changes
                              WHERE table_name = {tl} AND fid = OLD.{f} AND op = 'add')
              {parent_exists};
          DELETE FROM oms_changes WHERE table_name = {tl} AND fid = OLD.{f} AND op <> 'delete';
          {cascade}
        END"""
    )


def upgrade_bookkeeping(conn: sqlite3.Connection) -> None:
    """Add bookkeeping columns that geodatabases made by earlier versions lack."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(oms_changed_fields)")}
    if "old_value" not in columns:
        conn.execute("ALTER TABLE oms_changed_fields ADD COLUMN old_value")
    if "has_old" not in columns:
        conn.execute("ALTER TABLE oms_changed_fields ADD COLUMN has_old INTEGER NOT NULL DEFAULT 0")


def set_tracking(conn: sqlite3.Connection, enabled: bool) -> None:
    """Switch tracking on/off. Call inside the write transaction that must not be tracked."""
    conn.execute("UPDATE oms_state SET tracking = ?", (1 if enabled else 0,))


def current_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT seq FROM oms_state").fetchone()[0])


def next_seq(conn: sqlite3.Connection) -> int:
    """Allocate a sequence number (for changes recorded by the code itself, e.g. restores)."""
    conn.execute("UPDATE oms_state SET seq = seq + 1")
    return current_seq(conn)


def drop_pending(conn: sqlite3.Connection, table: str, fid: int | None, global_id: str) -> None:
    """Forget every pending change of one row: its changed fields and pending add/update (by
    ``fid``, when the row exists locally) and a pending delete (by ``global_id``)."""
    if fid is not None:
        conn.execute(
            "DELETE FROM oms_changed_fields WHERE table_name = ? AND fid = ?", (table, fid)
        )
        conn.execute(
            "DELETE FROM oms_changes WHERE table_name = ? AND fid = ? AND op <> 'delete'",
            (table, fid),
        )
    conn.execute(
        "DELETE FROM oms_changes WHERE table_name = ? AND op = 'delete' AND global_id = ?",
        (table, global_id),
    )


# -- maps that upload only new features ---------------------------------------------------
ADDS_ONLY_MESSAGE = (
    "This offline map uploads only new features: features that came from the service cannot "
    "be changed or deleted in it."
)


def _guard_names(table: str) -> tuple[str, str]:
    return f"oms_{table}_addsonly_update", f"oms_{table}_addsonly_delete"


def install_adds_only_guards(conn: sqlite3.Connection, layers: Sequence[LayerDef]) -> None:
    """Make the geodatabase refuse (SQL error, whatever the writer) updates and deletes of
    rows that are not pending local adds (maps that upload only new features). Sync itself
    writes untracked and is not affected."""
    tables = []
    for layer in layers:
        tables.append((layer.table_name, layer.object_id_field))
        if layer.attachment_table:
            tables.append((layer.attachment_table, ATTACHMENT_FID))
    with transaction(conn):
        for table, fid in tables:
            t, tl, f = quote(table), literal(table), quote(fid)
            not_new = (
                "(SELECT tracking FROM oms_state) = 1 AND NOT EXISTS (SELECT 1 FROM oms_changes "
                f"WHERE table_name = {tl} AND fid = OLD.{f} AND op = 'add')"
            )
            update_name, delete_name = _guard_names(table)
            for name, event in ((update_name, "UPDATE"), (delete_name, "DELETE")):
                conn.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
                conn.execute(
                    f"CREATE TRIGGER {quote(name)} BEFORE {event} ON {t} WHEN {not_new} "
                    f"BEGIN SELECT RAISE(ABORT, {literal(ADDS_ONLY_MESSAGE)}); END"
                )


def edits_not_uploadable(pending_counts: dict[int, dict[str, int]]) -> dict[int, int]:
    """Of a geodatabase's pending counts, the changes of downloaded features (updates and
    deletes of rows and attachments) per layer id: what a map that uploads only new features
    cannot send. They stay in the geodatabase; the sync reports them."""
    counts = {}
    for layer_id, pending in pending_counts.items():
        total = sum(n for key, n in pending.items() if not key.endswith("adds"))
        if total:
            counts[layer_id] = total
    return counts


def has_adds_only_guards(conn: sqlite3.Connection, layers: Sequence[LayerDef]) -> bool:
    """Whether every table carries the guards of :func:`install_adds_only_guards` (tools that
    rebuild a table, like QGIS deleting a field, drop its triggers)."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    tables = [layer.table_name for layer in layers]
    tables += [layer.attachment_table for layer in layers if layer.attachment_table]
    return all(name in names for table in tables for name in _guard_names(table))
