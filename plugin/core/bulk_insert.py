"""Bulk loading of empty tables: the initial load of a geodatabase.

Per-row work (GDAL's spatial-index and feature-count triggers, our tracking triggers, the
GlobalID index keyed on random GUIDs) costs more than the inserts themselves. A
:class:`BulkLoad` suspends all of it for one table while rows are appended in ObjectID order,
then does it set-wise once: the spatial index from the envelopes gathered on the way (in one
``INSERT ... SELECT``), the indexes rebuilt, the triggers re-created. Everything runs inside
the caller's transaction: an error rolls the whole load back, triggers and indexes included.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from .geometry import gpkg_envelope
from .gpkg_connection import quote

T = TypeVar("T")
_DONE = object()


class in_background(Iterator[T]):  # noqa: N801 - used like a function
    """Iterate ``items`` in a thread of its own, at most ``depth`` items ahead of the consumer.

    The producer's exception is raised in the consumer; :meth:`close` (also called at the end
    of the items) stops the producer at its next item and waits for it.
    """

    def __init__(self, items: Iterable[T], depth: int = 3) -> None:
        self._items = items
        self._ahead: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="oms-load-reader", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer
            self._put((_DONE, error))
            return
        self._put((_DONE, None))

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item, error = self._ahead.get()
        if item is _DONE:
            self.close()
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def envelope_row(fid, blob) -> tuple | None:
    """``(fid, minx, maxx, miny, maxy)`` of a geometry blob for the spatial index, or None."""
    env = gpkg_envelope(blob) if blob is not None else None
    return None if env is None else (fid, env[0], env[1], env[2], env[3])


class BulkLoad:
    """Appends rows to one empty table with its triggers and secondary indexes suspended.

    Call :meth:`insert` for each batch and :meth:`finish` once, all in one transaction.
    Feature counts are not maintained: the caller recounts at the end.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        table: str,
        fid_column: str,
        columns: Sequence[str],
        *,
        geometry_column: str | None = None,
    ) -> None:
        self.conn = conn
        self.table = table
        self.geometry_column = geometry_column
        self._geom_index = 1 + list(columns).index(geometry_column) if geometry_column else None
        names = [quote(c) for c in [fid_column, *columns]]
        self._insert = (
            f"INSERT INTO {quote(table)} ({', '.join(names)})"
            f" VALUES ({', '.join('?' for _ in names)})"
        )
        rtree = f"rtree_{table}_{geometry_column}" if geometry_column else None
        self._rtree = rtree if rtree and self._exists("table", rtree) else None
        self._boxes = f"temp.{quote('oms_load_' + table)}"
        if self._rtree:
            conn.execute(
                f"CREATE TEMP TABLE {quote('oms_load_' + table)}"
                " (id INTEGER PRIMARY KEY, minx, maxx, miny, maxy)"
            )
        self._suspended = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
            " AND type IN ('trigger', 'index')",
            (table,),
        ).fetchall()
        for kind, name, _sql in self._suspended:
            conn.execute(f"DROP {kind.upper()} {quote(name)}")

    def _exists(self, kind: str, name: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?", (kind, name)
            ).fetchone()
            is not None
        )

    def insert(self, rows: list[list], boxes: list[tuple] | None = None) -> None:
        """Insert ``rows`` (``[fid, *values of columns]``); ``boxes`` are their
        :func:`envelope_row` s if already computed (rows without a known fid get theirs here)."""
        conn = self.conn
        known = [row for row in rows if row[0] is not None]
        conn.executemany(self._insert, known)
        if self._rtree is None:
            boxes = []
        elif boxes is None:
            boxes = [envelope_row(row[0], row[self._geom_index]) for row in known]
        for row in rows:
            if row[0] is None:  # the table picks the id
                fid = conn.execute(self._insert, row).lastrowid
                if self._rtree is not None:
                    boxes.append(envelope_row(fid, row[self._geom_index]))
        if boxes:
            conn.executemany(
                f"INSERT INTO {self._boxes} VALUES (?, ?, ?, ?, ?)",
                [box for box in boxes if box is not None],
            )

    def finish(self) -> None:
        """Fill the spatial index in one step, rebuild the indexes, re-create the triggers."""
        conn = self.conn
        if self._rtree is not None:
            conn.execute(f"INSERT INTO {quote(self._rtree)} SELECT * FROM {self._boxes}")
            conn.execute(f"DROP TABLE {self._boxes}")
        for _kind, _name, sql in self._suspended:
            conn.execute(sql)


def update_rows(
    conn: sqlite3.Connection,
    table: str,
    fid_column: str,
    columns: Sequence[str],
    rows: list[list],
    *,
    geometry_column: str | None = None,
    unchanged: Sequence[str] = (),
) -> None:
    """``UPDATE`` many rows (``[*values of columns, fid]``) in row-id order.

    Columns in ``unchanged`` (e.g. the GlobalID the rows were matched on) are left out of the
    ``SET``: writing an indexed column rewrites its index entry even if the value is the same.
    When the geometry changes, GDAL's spatial-index update triggers (which call back into
    Python several times per row) are suspended and the index entries of the rows are
    replaced in one step. Must run inside the caller's transaction.
    """
    keep = [i for i, c in enumerate(columns) if c not in unchanged]
    if len(keep) < len(columns):
        columns = [columns[i] for i in keep]
        rows = [[row[i] for i in keep] + [row[-1]] for row in rows]
    if not columns:
        return
    rows = sorted(rows, key=lambda row: row[-1])
    update = (
        f"UPDATE {quote(table)} SET {', '.join(f'{quote(c)} = ?' for c in columns)}"
        f" WHERE {quote(fid_column)} = ?"
    )
    rtree = f"rtree_{table}_{geometry_column}" if geometry_column else None
    triggers = []
    if rtree and geometry_column in columns:
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?"
            " AND substr(name, 1, ?) = ?",
            (table, len(rtree) + 7, f"{rtree}_update"),
        ).fetchall()
    for name, _sql in triggers:
        conn.execute(f"DROP TRIGGER {quote(name)}")
    conn.executemany(update, rows)
    if triggers:
        geom_index = list(columns).index(geometry_column)
        boxes = [envelope_row(row[-1], row[geom_index]) for row in rows]
        conn.executemany(
            f"INSERT OR REPLACE INTO {quote(rtree)} VALUES (?, ?, ?, ?, ?)",
            [box for box in boxes if box is not None],
        )
        conn.executemany(
            f"DELETE FROM {quote(rtree)} WHERE id = ?",
            [(row[-1],) for row, box in zip(rows, boxes) if box is None],
        )
        for _name, sql in triggers:
            conn.execute(sql)
