"""Bulk loading of empty tables: the initial load of a geodatabase.

Per-row work (GDAL's spatial-index and feature-count triggers, our tracking triggers, the
GlobalID index keyed on random GUIDs) costs more than the inserts themselves. A
:class:`BulkLoad` suspends all of it for one table while rows are appended in ObjectID order,
then does it set-wise once: the spatial index from the envelopes gathered on the way (in one
``INSERT ... SELECT``), the indexes rebuilt, the triggers re-created. Everything runs inside
the caller's transaction: an error rolls the whole load back, triggers and indexes included.
"""

from __future__ import annotations

import math
import re
import sqlite3
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from functools import cache
from itertools import chain, compress, repeat
from operator import add, itemgetter, mul, sub

from .geometry import gpkg_envelope
from .gpkg_connection import drop_schema_objects, quote, recreate_schema_objects, rtree_name


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
        rtree = rtree_name(table, geometry_column) if geometry_column else None
        self._rtree = rtree if rtree and self._exists("table", rtree) else None
        self._boxes = f"temp.{quote('oms_load_' + table)}"
        if self._rtree:
            conn.execute(
                f"CREATE TEMP TABLE {quote('oms_load_' + table)}"
                " (id INTEGER PRIMARY KEY, minx, maxx, miny, maxy)"
            )
        self._suspended = drop_schema_objects(conn, table, kinds=("trigger", "index"))

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
            if not pack_rtree(conn, self._rtree, self._boxes):
                conn.execute(f"INSERT INTO {quote(self._rtree)} SELECT * FROM {self._boxes}")
            conn.execute(f"DROP TABLE {self._boxes}")
        recreate_schema_objects(conn, self._suspended)


def update_rows(
    conn: sqlite3.Connection,
    table: str,
    fid_column: str,
    columns: Sequence[str],
    rows: list[list],
    *,
    geometry_column: str | None = None,
    unchanged: Sequence[str] = (),
    moved: MovedRows | None = None,
    envelopes: list[tuple | None] | None = None,
    same: Sequence[str] = (),
) -> int:
    """``UPDATE`` many rows (``[*values of columns, fid]``) in row-id order; the number of rows
    written.

    Columns in ``unchanged`` (e.g. the GlobalID the rows were matched on) are left out of the
    ``SET``: writing an indexed column rewrites its index entry even if the value is the same.
    A row whose stored value of a column in ``same`` differs from the given one is not written;
    if that leaves any row unwritten, the spatial index is not told about the others either:
    the caller writes them all again another way.
    When the geometry changes, GDAL's spatial-index update triggers (which call back into
    Python several times per row) are suspended; the index entries of the rows are replaced
    in one step, or later by ``moved`` (:class:`MovedRows`, which notes them). ``envelopes``
    (``(minx, maxx, miny, maxy)`` or None per row, from :func:`gpkg_envelope`) saves working
    them out again from the geometries. Must run inside the caller's transaction.
    """
    # Numbered parameters: the values of unchanged columns are bound but not used.
    assignments = [f"{quote(c)} = ?{i}" for i, c in enumerate(columns, 1) if c not in unchanged]
    if not assignments:
        return 0 if same else len(rows)
    checks = "".join(f" AND {quote(c)} = ?{list(columns).index(c) + 1}" for c in same)
    update = (
        f"UPDATE {quote(table)} SET {', '.join(assignments)}"
        f" WHERE {quote(fid_column)} = ?{len(columns) + 1}{checks}"
    )
    rtree = rtree_name(table, geometry_column) if geometry_column else None
    triggers = []
    if rtree and geometry_column in columns:
        triggers = drop_schema_objects(conn, table, prefix=f"{rtree}_update")
    boxes: list[tuple | None] = []
    if triggers:
        if envelopes is None:
            geom_index = list(columns).index(geometry_column)
            boxes = [envelope_row(row[-1], row[geom_index]) for row in rows]
        else:
            boxes = [None if e is None else (row[-1], *e) for row, e in zip(rows, envelopes)]
    written = conn.executemany(update, sorted(rows, key=itemgetter(-1))).rowcount
    if triggers:
        if written < len(rows):
            pass  # the caller writes them again
        elif moved is not None:
            moved.note(boxes, rows)
        else:
            _replace_boxes(conn, rtree, boxes, [row[-1] for row in rows])
        recreate_schema_objects(conn, triggers)
    return written


def _replace_boxes(conn, rtree: str, boxes: list, fids: list) -> None:
    """Index entries of rows ``fids`` replaced by ``boxes`` (None: the row has no extent)."""
    conn.executemany(
        f"INSERT OR REPLACE INTO {quote(rtree)} VALUES (?, ?, ?, ?, ?)",
        [box for box in boxes if box is not None],
    )
    conn.executemany(
        f"DELETE FROM {quote(rtree)} WHERE id = ?",
        [(fid,) for fid, box in zip(fids, boxes) if box is None],
    )


class MovedRows:
    """Rows of one table whose geometry :func:`update_rows` changed, with their new extents;
    :meth:`finish` brings their spatial-index entries up to date, one of three ways:

    - a few rows moved (under ``REBUILD_SHARE`` of the index's entries): their entries are
      replaced through SQLite's R*Tree module, which finds each a place;
    - many moved, and the tree's shape still suits them (features moved a little, or a whole
      area shifted): their entries are changed where they are and the bounds above them
      worked out again (a refit). Nothing is sorted, and which node holds which row stays;
    - many moved, far enough to stretch the tree's leaves: the index is written anew, packed.

    The extents are kept as the index stores them (32-bit floats rounded outwards): 24 bytes a
    row. A noted row deleted later in the same transaction is forgotten (a temporary trigger
    lists the deleted rows): GDAL's own triggers keep the index right for the rows written
    other ways. Until :meth:`finish` the index misses the noted moves; everything runs in the
    caller's transaction.
    """

    #: Refitted or written anew when at least this share of the index's entries moved.
    REBUILD_SHARE = 0.25
    #: A refit is given up (the index is written anew) if the leaves then overlap: their areas,
    #: summed, above this share of the areas of the nodes right above them (a packed index:
    #: about 0.75; one built by SQLite's inserts: about 0.8). It does not depend on earlier
    #: refits: features moving a little at every sync do not wear the index down. Or ...
    REFIT_OVERLAP = 1.0
    #: ... if it stretches more than this share of the changed leaves to over twice their size
    #: (half-perimeter): a few features moved far.
    STRETCHED_LEAVES = 0.01

    def __init__(
        self, conn: sqlite3.Connection, table: str, fid_column: str, geometry_column: str
    ) -> None:
        self.conn = conn
        self.table = table
        self.fid_column = fid_column
        self.rtree = rtree_name(table, geometry_column)
        self._gone = "oms_gone_" + table  # rows deleted since they were noted
        self._noted_name = "oms_moved_" + table  # the extents that count, when a table is needed
        self._noted = f"temp.{quote(self._noted_name)}"
        self._ids = array("q")
        # minx, maxx, miny, maxy of each noted row (NaN: no extent), as the index stores them
        self._coords = tuple(array("f") for _ in range(4))
        self._shapeless = bytearray()  # 1 for each noted row without an extent
        self._created = False

    def note(self, boxes: list[tuple | None], rows: list[list]) -> None:
        """``rows`` (``[..., fid]``) now have the extents ``boxes`` (:func:`envelope_row`;
        None: no extent)."""
        if not rows:
            return
        conn = self.conn
        gone = quote(self._gone)
        if not self._created:
            conn.execute(f"CREATE TEMP TABLE {gone} (id INTEGER PRIMARY KEY)")
            conn.execute(
                f"CREATE TEMP TRIGGER {quote(self._gone + '_deleted')}"
                f" AFTER DELETE ON main.{quote(self.table)}"
                # (no schema names inside a trigger; a temporary table is found first)
                f" BEGIN INSERT OR IGNORE INTO {gone} VALUES (OLD.{quote(self.fid_column)}); END"
            )
            self._created = True
        fids = [row[-1] for row in rows]
        if conn.execute(f"SELECT EXISTS (SELECT 1 FROM {gone})").fetchone()[0]:
            # A row deleted and added again under its fid counts from its latest note.
            conn.executemany(f"DELETE FROM {gone} WHERE id = ?", [(fid,) for fid in fids])
        if None in boxes:
            nan = (None, math.nan, math.nan, math.nan, math.nan)
            boxes = [nan if box is None else box for box in boxes]
            self._shapeless.extend(box is nan for box in boxes)
        else:
            self._shapeless.extend(bytes(len(boxes)))
        _ids, minx, maxx, miny, maxy = zip(*boxes)
        self._ids.extend(fids)
        for coords, rounded in zip(
            self._coords, (_f32_down(minx), _f32_up(maxx), _f32_down(miny), _f32_up(maxy))
        ):
            coords.extend(rounded)

    def finish(self) -> None:
        if not self._created:
            return
        try:
            self._update_index()
        finally:
            self.conn.execute(f"DROP TRIGGER {quote(self._gone + '_deleted')}")
            self.conn.execute(f"DROP TABLE temp.{quote(self._gone)}")
            self.conn.execute(f"DROP TABLE IF EXISTS {self._noted}")
            self._ids, self._shapeless = array("q"), bytearray()
            self._coords = tuple(array("f") for _ in range(4))
            self._created = False

    def _latest(self) -> tuple[int, array] | None:
        """``(low, at)``: ``at[fid - low]`` is where the extent of row ``fid`` that counts is
        in the noted arrays (its latest note), -1 where none counts (never noted, or deleted
        since). None when the fids are too far apart for an array."""
        ids = self._ids
        low, high = min(ids), max(ids)
        if high - low >= 4 * len(ids):
            return None
        at = array("i", [-1]) * (high - low + 1)
        for position, fid in enumerate(ids):
            at[fid - low] = position
        for (fid,) in self.conn.execute(f"SELECT id FROM temp.{quote(self._gone)}"):
            if low <= fid <= high:
                at[fid - low] = -1
        return low, at

    def _fill_noted(self, entries) -> None:
        """The extents that count, in a temporary table (NaN is stored as NULL: no extent)."""
        self.conn.execute(
            f"CREATE TEMP TABLE {quote(self._noted_name)}"
            " (id INTEGER PRIMARY KEY, minx, maxx, miny, maxy)"
        )
        self.conn.executemany(
            f"INSERT OR REPLACE INTO {self._noted} VALUES (?, ?, ?, ?, ?)", entries
        )

    def _update_index(self) -> None:
        conn = self.conn
        box = self._box
        rtree = quote(self.rtree)
        total = conn.execute(f"SELECT count(*) FROM {quote(self.rtree + '_rowid')}").fetchone()[0]
        node_size = _packable(conn, self.rtree)
        latest = self._latest()
        if latest is None:  # every note, in order (the latest stays), less the deleted rows
            self._fill_noted((fid, *box(i)) for i, fid in enumerate(self._ids))
            conn.execute(
                f"DELETE FROM {self._noted} WHERE id IN (SELECT id FROM temp.{quote(self._gone)})"
            )
            moved = conn.execute(f"SELECT count(*) FROM {self._noted}").fetchone()[0]
            many = node_size is not None and moved >= self.REBUILD_SHARE * total
        else:
            low, at = latest
            moved = len(at) - at.count(-1)
            many = node_size is not None and moved >= self.REBUILD_SHARE * total
            if many and self._refit(low, at, moved):
                return
            self._fill_noted((low + k, *box(i)) for k, i in enumerate(at) if i >= 0)
        if many:
            # The entries of the rows that did not move join the noted ones, and the index is
            # written anew from all of them.
            conn.execute(
                f"INSERT INTO {self._noted} SELECT * FROM {rtree}"
                f" WHERE id NOT IN (SELECT id FROM {self._noted})"
            )
            boxes = f"(SELECT * FROM {self._noted} WHERE minx IS NOT NULL)"
            _write_anew(conn, self.rtree, boxes, node_size)
        else:
            conn.execute(
                f"DELETE FROM {rtree} WHERE id IN (SELECT id FROM {self._noted} WHERE minx IS NULL)"
            )
            conn.execute(
                f"INSERT OR REPLACE INTO {rtree} SELECT * FROM {self._noted} WHERE minx IS NOT NULL"
            )

    def _box(self, i: int) -> tuple[float, float, float, float]:
        """The extent noted ``i``-th (NaNs: none)."""
        minx, maxx, miny, maxy = self._coords
        return minx[i], maxx[i], miny[i], maxy[i]

    def _refit(self, low: int, at: array, moved: int) -> bool:
        """Change the moved rows' entries where they are in the index and work out the bounds
        above them again, in one pass down the tree; False (nothing changed) if that would
        stretch the leaves (see ``REFIT_OVERLAP``)."""
        conn = self.conn
        node_table = quote(self.rtree + "_node")
        root = conn.execute(f"SELECT data FROM {node_table} WHERE nodeno = 1").fetchone()[0]
        if _cell_count(root) is None:
            return False
        depth = _HEADER.unpack_from(root)[0]
        if depth > _MAX_DEPTH:
            return False
        # The extents in the index's byte order, 16 bytes a noted row.
        stored = array("f", bytes(16 * len(self._ids)))
        for k, coords in enumerate(self._coords):
            stored[k::4] = coords
        if sys.byteorder == "little":
            stored.byteswap()
        seen = self._refit_nodes(low, at, root, depth, memoryview(stored).cast("B"))
        del stored
        if seen is None:
            return False
        # Rows left without a shape leave the index; rows that had no entry join it.
        lost, new = [], []
        if seen.count(1) < moved or any(self._shapeless):
            for k, i in enumerate(at):
                if i < 0:
                    continue
                if self._shapeless[i]:
                    lost.append((low + k,))
                elif not seen[i]:
                    new.append((low + k, *self._box(i)))
        rtree = quote(self.rtree)
        conn.executemany(f"DELETE FROM {rtree} WHERE id = ?", lost)
        conn.executemany(f"INSERT INTO {rtree} VALUES (?, ?, ?, ?, ?)", new)
        return True

    def _refit_nodes(
        self, low: int, at: array, root: bytes, depth: int, stored
    ) -> bytearray | None:
        """:meth:`_refit` with the noted extents as the index stores them (``stored``: 16
        bytes a noted row): which noted rows the index had entries for (1 each), or None when
        the refit was given up."""
        conn = self.conn
        node_table = quote(self.rtree + "_node")
        read = f"SELECT data FROM {node_table} WHERE nodeno = ?"
        write = f"UPDATE {node_table} SET data = ? WHERE nodeno = ?"
        visited = {1}

        def child_node(nodeno: int) -> bytes:
            """A node below another: its blob, if it is one (a damaged or hostile file may
            name a missing node, or one twice, or a node too short for its cells)."""
            found = None if nodeno in visited else conn.execute(read, (nodeno,)).fetchone()
            visited.add(nodeno)
            blob = found[0] if found else None
            if _cell_count(blob) is None:
                raise _Unusable
            return blob

        high = low + len(at) - 1
        shapeless = self._shapeless
        seen = bytearray(len(self._ids))
        changed: list[tuple[bytes, int]] = []
        # changed leaves; areas of all leaves and of the nodes right above them; stretched leaves
        sums = [0, 0.0, 0.0, 0]
        slack = _half_perimeter(_node_bounds(root)) * 1e-6  # (points and lines have no area)

        def area(bounds: tuple) -> float:
            return (bounds[1] - bounds[0] + slack) * (bounds[3] - bounds[2] + slack)

        def visit(nodeno: int, blob: bytes, level: int) -> tuple[tuple, bool]:
            """The node's bounds, and whether they changed (the node is written again then)."""
            count = _HEADER.unpack_from(blob)[1]
            end = 4 + count * _CELL.size
            if level == 0:
                ids = _cell_ids(count).unpack_from(blob, 4)
                where = [at[fid - low] if low <= fid <= high else -1 for fid in ids]
                if max(where) < 0:
                    bounds = _node_bounds(blob)
                    sums[1] += area(bounds)
                    return bounds, False
                parts = []
                start = 4
                for i in where:
                    if i >= 0:
                        seen[i] = 1
                        if not shapeless[i]:  # (one without keeps its cell: deleted below)
                            parts += (blob[start : start + 8], stored[16 * i : 16 * i + 16])
                            start += 24
                            continue
                    parts.append(blob[start : start + 24])
                    start += 24
                new = blob[:4] + b"".join(parts) + blob[end:]
                bounds, old = _node_bounds(new), _node_bounds(blob)
                sums[0] += 1
                sums[1] += area(bounds)
                if _half_perimeter(bounds) > 2 * _half_perimeter(old) + slack:
                    sums[3] += 1
            else:
                cells = bytearray(blob[4:end])
                moved = False
                for j in range(count):
                    child = _CELL_ID.unpack_from(cells, 24 * j)[0]
                    child_bounds, child_moved = visit(child, child_node(child), level - 1)
                    if child_moved:
                        _BOUNDS.pack_into(cells, 24 * j + 8, *child_bounds)
                        moved = True
                new = blob[:4] + cells + blob[end:] if moved else blob
                bounds = _node_bounds(new)
                if level == 1:
                    sums[2] += area(bounds)
                if not moved:
                    return bounds, False
            changed.append((new, nodeno))
            if len(changed) >= 256:
                conn.executemany(write, changed)
                changed.clear()
            return bounds, True

        conn.execute("SAVEPOINT oms_refit")
        kept = False
        try:
            try:
                visit(1, root, depth)
            except _Unusable:
                return None  # rolled back below; the index is written anew then
            conn.executemany(write, changed)
            moved_leaves, leaf_area, parent_area, stretched = sums
            kept = stretched <= self.STRETCHED_LEAVES * moved_leaves and (
                depth == 0 or leaf_area <= self.REFIT_OVERLAP * parent_area
            )
        finally:
            if not kept:
                conn.execute("ROLLBACK TO oms_refit")
            conn.execute("RELEASE oms_refit")
        return seen if kept else None


def spatial_index_damage(conn: sqlite3.Connection, rtree: str) -> str | None:
    """What is wrong with the spatial index ``rtree`` (SQLite's ``rtreecheck``), None if
    nothing is."""
    try:
        found = conn.execute("SELECT rtreecheck(?)", (rtree,)).fetchone()[0]
    except sqlite3.OperationalError:
        return None  # (busy, or no such index: nothing to tell)
    except (sqlite3.DatabaseError, MemoryError) as exc:  # (SQLite's check gives up on some)
        return str(exc) or "its nodes cannot be read"
    return None if found == "ok" else str(found)


def rebuild_spatial_index(
    conn: sqlite3.Connection, table: str, fid_column: str, geometry_column: str
) -> None:
    """Write the spatial index of ``table`` anew from its geometries (one that was damaged),
    packed; in the caller's transaction. The index's own nodes are not read."""
    rtree = rtree_name(table, geometry_column)
    try:  # the node size SQLite reads back from the root, if that is sane
        root = conn.execute(
            f"SELECT length(data) FROM {quote(rtree + '_node')} WHERE nodeno = 1"
        ).fetchone()
    except sqlite3.DatabaseError:
        root = None
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    node_size = root[0] if root and isinstance(root[0], int) else None
    if node_size is None or not _HEADER.size + 2 * _CELL.size <= node_size <= page:
        # As SQLite sizes a new index's nodes: a page less 64 bytes, at most 51 cells.
        node_size = min(page - 64, _HEADER.size + 51 * _CELL.size)
    boxes = quote("oms_rebuild_" + table)
    conn.execute(f"CREATE TEMP TABLE {boxes} (id INTEGER PRIMARY KEY, minx, maxx, miny, maxy)")
    rows = conn.execute(f"SELECT {quote(fid_column)}, {quote(geometry_column)} FROM {quote(table)}")
    while True:
        chunk = rows.fetchmany(10_000)
        if not chunk:
            break
        found = (envelope_row(fid, blob) for fid, blob in chunk)
        conn.executemany(
            f"INSERT INTO temp.{boxes} VALUES (?, ?, ?, ?, ?)", [b for b in found if b is not None]
        )
    _write_anew(conn, rtree, f"temp.{boxes}", node_size)
    conn.execute(f"DROP TABLE temp.{boxes}")


def _write_anew(conn: sqlite3.Connection, rtree: str, boxes: str, node_size: int) -> None:
    """Empty the spatial index ``rtree`` (nodes of ``node_size`` bytes) and fill it with the
    rows of ``boxes`` (as :func:`pack_rtree` takes them), packed; by SQLite's inserts if it
    cannot be packed."""
    for part in ("node", "rowid", "parent"):
        conn.execute(f"DELETE FROM {quote(f'{rtree}_{part}')}")
    conn.execute(f"INSERT INTO {quote(rtree + '_node')} VALUES (1, zeroblob(?))", (node_size,))
    if not pack_rtree(conn, rtree, boxes):
        conn.execute(f"INSERT INTO {quote(rtree)} SELECT * FROM {boxes}")


# -- a packed spatial index ----------------------------------------------------------------------
# SQLite's R*Tree module inserts one entry at a time (choosing a leaf, splitting, re-inserting):
# about 10-25 µs per row. An empty index can instead be written whole, like GDAL's own bulk
# loader does: sort-tile-recursive packing, nodes written straight into the index's shadow
# tables (``<rtree>_node``, ``_rowid``, ``_parent``) in SQLite's node format, with coordinates
# rounded outwards to 32-bit floats exactly as the module rounds them.

_SORT_CACHE_KIB = 8192
_F32 = struct.Struct("f")
_CELL = struct.Struct(">q4f")  # a 2-D cell: id (or child node), minx, maxx, miny, maxy
_HEADER = struct.Struct(">HH")  # depth of the tree (root node only), number of cells
_RND_STEP = 1.0 / 8388608.0  # SQLite's RNDTOWARDS / RNDAWAY are 1 -/+ this (rtree.c)
_PLAIN_RTREE = re.compile(
    r"^CREATE VIRTUAL TABLE \S+ USING rtree\(\s*\w+\s*,\s*\w+\s*,\s*\w+\s*,\s*\w+\s*,"
    r"\s*\w+\s*\)$",
    re.IGNORECASE,
)


def _f32(value: float) -> float:
    try:
        return _F32.unpack(_F32.pack(value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _as_f32(values: list[float]) -> array:
    try:
        return array("f", values)  # C's (float) conversion: to the nearest
    except OverflowError:
        return array("f", [_f32(v) for v in values])


def _f32_down(values: Sequence[float]) -> list[float]:
    """Each value as the largest 32-bit float not above it (SQLite's rtreeValueDown: the
    nearest, else the nearest to ``d * (d < 0 ? RNDAWAY : RNDTOWARDS)``, which is
    ``d - |d| * 2**-23`` with the same single rounding)."""
    lower = _as_f32(list(map(sub, values, map(mul, map(abs, values), repeat(_RND_STEP)))))
    return [f if f <= d else g for f, g, d in zip(_as_f32(values), lower, values)]


def _f32_up(values: Sequence[float]) -> list[float]:
    """Each value as the smallest 32-bit float not below it (SQLite's rtreeValueUp)."""
    higher = _as_f32(list(map(add, values, map(mul, map(abs, values), repeat(_RND_STEP)))))
    return [f if f >= d else g for f, g, d in zip(_as_f32(values), higher, values)]


@cache
def _node_struct(cells: int) -> struct.Struct:
    """A node's header and ``cells`` cells (the rest of the node is zeros)."""
    return struct.Struct(">HH" + "q4f" * cells)


_CELL_ID = struct.Struct(">q")
_BOUNDS = struct.Struct(">4f")
_MAX_DEPTH = 40  # as SQLite's module allows (RTREE_MAX_DEPTH)


class _Unusable(Exception):
    """A spatial index's nodes are not a tree (a damaged or hostile file)."""


@cache
def _cell_ids(cells: int) -> struct.Struct:
    """The ids of a node's ``cells`` cells (after its header)."""
    return struct.Struct(">" + "q16x" * cells)


@cache
def _cell_boxes(cells: int) -> struct.Struct:
    """The coordinates of a node's ``cells`` cells (after its header)."""
    return struct.Struct(">" + "8x4f" * cells)


def _half_perimeter(bounds: tuple[float, float, float, float]) -> float:
    """Width plus height of ``(minx, maxx, miny, maxy)``."""
    return bounds[1] - bounds[0] + bounds[3] - bounds[2]


def _cell_count(blob: object) -> int | None:
    """The number of cells of a node's blob, None unless it is a node holding one at least
    (a damaged or hostile file may hold anything there)."""
    if not isinstance(blob, bytes) or len(blob) < _HEADER.size + _CELL.size:
        return None
    count = _HEADER.unpack_from(blob)[1]
    return count if 0 < count <= (len(blob) - _HEADER.size) // _CELL.size else None


def _node_bounds(blob: bytes) -> tuple[float, float, float, float]:
    """``(minx, maxx, miny, maxy)`` of a node's cells (a node has one at least)."""
    coords = _cell_boxes(_HEADER.unpack_from(blob)[1]).unpack_from(blob, _HEADER.size)
    return min(coords[0::4]), max(coords[1::4]), min(coords[2::4]), max(coords[3::4])


def _even_chunks(items: list, count: int) -> Iterator[list]:
    """``items`` cut into ``count`` consecutive chunks whose sizes differ by one at most."""
    size, extra = divmod(len(items), count)
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        yield items[start:end]
        start = end


def _tiles(entries: list[tuple], per_node: int) -> Iterator[list[tuple]]:
    """Sort-tile-recursive grouping of ``entries`` (sorted by x) into nodes of at most
    ``per_node``: vertical slices, each sorted by y and cut into nodes."""
    nodes = -(-len(entries) // per_node)
    slices = math.ceil(math.sqrt(nodes))
    for part in _even_chunks(entries, slices):
        part.sort(key=lambda e: e[3] + e[4])
        yield from _even_chunks(part, -(-len(part) // per_node))


def _packable(conn: sqlite3.Connection, rtree: str) -> int | None:
    """The node size of ``rtree`` if it is a 2-D float R*Tree of the usual shape, else None."""
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (rtree,)
    ).fetchone()
    if found is None or not _PLAIN_RTREE.match(" ".join(str(found[0]).split())):
        return None
    root = conn.execute(
        f"SELECT length(data) FROM {quote(rtree + '_node')} WHERE nodeno = 1"
    ).fetchone()
    if root is None or root[0] is None or root[0] < _HEADER.size + _CELL.size:
        return None
    return int(root[0])


def pack_rtree(conn: sqlite3.Connection, rtree: str, boxes: str) -> bool:
    """Fill the empty 2-D spatial index ``rtree`` with the rows of ``boxes`` (a table or a
    parenthesised query: ``id, minx, maxx, miny, maxy``) as a packed tree. False (nothing
    written) when ``rtree`` is not an empty 2-D float R*Tree of the usual shape: the caller
    inserts the rows then."""
    node_size = _packable(conn, rtree)
    node_table, rowid_table, parent_table = (
        quote(f"{rtree}_{s}") for s in ("node", "rowid", "parent")
    )
    if (
        node_size is None
        or conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {rowid_table})"
            f" OR (SELECT substr(data, 3, 2) <> x'0000' FROM {node_table} WHERE nodeno = 1)"
        ).fetchone()[0]
    ):
        return False
    per_node = (node_size - _HEADER.size) // _CELL.size
    count = conn.execute(f"SELECT count(*) FROM {boxes}").fetchone()[0]
    if count == 0:
        return True

    nodes: list[tuple[int, bytes]] = []
    parents: list[tuple[int, int]] = []
    next_node = 2

    def write(level_entries: list[tuple], depth: int, is_root: bool) -> tuple:
        """One node of ``level_entries``; returns its entry in the level above."""
        nonlocal next_node
        number = 1 if is_root else next_node
        if not is_root:
            next_node += 1
        cells = _node_struct(len(level_entries))
        blob = cells.pack(
            depth if is_root else 0, len(level_entries), *chain.from_iterable(level_entries)
        )
        nodes.append((number, blob + bytes(node_size - cells.size)))
        _ids, minx, maxx, miny, maxy = zip(*level_entries)
        return number, min(minx), max(maxx), min(miny), max(maxy)

    # Leaves, streamed from the rows sorted by x (one vertical slice in memory at a time).
    leaf_nodes = -(-count // per_node)
    if leaf_nodes == 1:
        rows = conn.execute(f"SELECT * FROM {boxes}").fetchall()
        entry_rows = _rounded(rows)
        write(entry_rows, 0, True)
        conn.executemany(f"INSERT INTO {rowid_table} VALUES (?, 1)", [(e[0],) for e in entry_rows])
        conn.execute(f"REPLACE INTO {node_table} VALUES (?, ?)", nodes[0])
        return True
    slices = math.ceil(math.sqrt(leaf_nodes))
    size, extra = divmod(count, slices)
    # The sort runs within this call and keeps up to the page cache's size in memory: a
    # smaller one for it (spilling to temporary files) keeps a million rows' peak down.
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size = -{_SORT_CACHE_KIB}")
    try:
        cursor = conn.execute(f"SELECT * FROM {boxes} ORDER BY minx + maxx")
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache)}")
    # Which leaf holds each entry goes to the index's rowid table in id order (appending is
    # much faster than inserting at random places): kept meanwhile in an array by id when the
    # ids are dense enough (ObjectIDs usually are), else written slice by slice.
    low, high = conn.execute(f"SELECT min(id), max(id) FROM {boxes}").fetchone()
    leaf_of = array("i", bytes(4 * (high - low + 1))) if high - low < 4 * count else None
    level: list[tuple] = []
    for i in range(slices):
        part = _rounded(cursor.fetchmany(size + (1 if i < extra else 0)))
        part.sort(key=lambda e: e[3] + e[4])
        rowids = []
        for leaf in _even_chunks(part, -(-len(part) // per_node)):
            level.append(write(leaf, 0, False))
            number = level[-1][0]
            if leaf_of is None:
                rowids.extend((e[0], number) for e in leaf)
            else:
                for e in leaf:
                    leaf_of[e[0] - low] = number
        conn.executemany(f"INSERT INTO {rowid_table} VALUES (?, ?)", rowids)
        conn.executemany(f"INSERT INTO {node_table} VALUES (?, ?)", nodes)
        nodes.clear()
    if leaf_of is not None:
        # (pairs made and filtered in C: a million rows of Python would be slower)
        conn.executemany(
            f"INSERT INTO {rowid_table} VALUES (?, ?)",
            compress(zip(range(low, high + 1), leaf_of), leaf_of),
        )
        del leaf_of
    # Inner levels, in memory (one entry per node of the level below).
    depth = 0
    while True:
        depth += 1
        level.sort(key=lambda e: e[1] + e[2])
        is_root = len(level) <= per_node
        upper = []
        for group in [level] if is_root else _tiles(level, per_node):
            upper.append(write(group, depth, is_root))
            parents.extend((e[0], upper[-1][0]) for e in group)
        if is_root:
            break
        level = upper
    conn.execute(f"DELETE FROM {node_table} WHERE nodeno = 1")
    conn.executemany(f"INSERT INTO {node_table} VALUES (?, ?)", nodes)
    conn.executemany(f"INSERT INTO {parent_table} VALUES (?, ?)", parents)
    return True


def _rounded(rows: list[tuple]) -> list[tuple]:
    """``(id, minx, maxx, miny, maxy)`` rows with the coordinates rounded outwards to 32 bits."""
    if not rows:
        return []
    ids, minx, maxx, miny, maxy = zip(*rows)
    return list(zip(ids, _f32_down(minx), _f32_up(maxx), _f32_down(miny), _f32_up(maxy)))
