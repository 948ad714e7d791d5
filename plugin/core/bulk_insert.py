"""Bulk inserts for the initial load of a geodatabase.

Per-row insert triggers (GDAL's spatial index and feature count, our change tracking) cost
more than the inserts themselves. For a batch of rows with known ids, they are dropped, their
work is done set-wise, and they are re-created, all inside the caller's transaction: a crash
or an error rolls the whole batch back, triggers included.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .geometry import gpkg_envelope
from .gpkg_connection import quote
from .tracking import trigger_names


def _triggers(conn: sqlite3.Connection, names: list[str]) -> list[tuple[str, str]]:
    marks = ", ".join("?" for _ in names)
    return conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})", names
    ).fetchall()


def bulk_insert(
    conn: sqlite3.Connection,
    table: str,
    fid_column: str,
    columns: Sequence[str],
    rows: list[list],
    *,
    geometry_column: str | None = None,
) -> None:
    """Insert ``rows`` (``[fid, *values of columns]``) into ``table``, untracked.

    Must run inside a transaction that the caller rolls back on error.
    """
    names = [quote(c) for c in [fid_column, *columns]]
    insert = (
        f"INSERT INTO {quote(table)} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    )
    if not rows or any(row[0] is None for row in rows):
        conn.executemany(insert, rows)  # ids unknown: let the triggers do their work
        return
    rtree_trigger = f"rtree_{table}_{geometry_column}_insert" if geometry_column else None
    count_trigger = f"trigger_insert_feature_count_{table}"
    suspended = _triggers(
        conn, [n for n in (rtree_trigger, count_trigger, trigger_names(table)[0]) if n]
    )
    for name, _sql in suspended:
        conn.execute(f"DROP TRIGGER {quote(name)}")
    conn.executemany(insert, rows)
    dropped = {name for name, _sql in suspended}
    if rtree_trigger in dropped:
        geom_index = 1 + list(columns).index(geometry_column)
        boxes = []
        for row in rows:
            env = gpkg_envelope(row[geom_index])
            if env is not None:
                boxes.append((row[0], env[0], env[1], env[2], env[3]))
        conn.executemany(
            f"INSERT OR REPLACE INTO {quote(f'rtree_{table}_{geometry_column}')} VALUES (?, ?, ?, ?, ?)",
            boxes,
        )
    if count_trigger in dropped:
        conn.execute(
            "UPDATE gpkg_ogr_contents SET feature_count = feature_count + ?"
            " WHERE lower(table_name) = lower(?)",
            (len(rows), table),
        )
    for _name, sql in suspended:
        conn.execute(sql)
