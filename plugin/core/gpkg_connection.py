"""SQLite connections to GeoPackages: the SQL functions GDAL's triggers need, WAL, transactions."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .geometry import gpkg_envelope, gpkg_is_empty

log = logging.getLogger(__name__)

#: Milliseconds a writer waits for another connection's lock before failing.
BUSY_TIMEOUT_MS = 60_000
#: SQLite page cache of a connection, in KiB. Large downloads touch big tables and indexes in
#: one transaction: keep them cached.
CACHE_KIB = 65_536
#: The same while filling a new file: rows are only appended, and index builds at the end sort
#: in as much memory again, so half keeps a million rows well within the memory budget.
LOADING_CACHE_KIB = 32_768

# (blob, envelope) of the last call, replaced in one assignment so threads cannot mix them.
_last: tuple = (None, None)


def _envelope(blob):
    # The rtree triggers call ST_MinX/MaxX/MinY/MaxY on the same blob in a row: parse it once.
    global _last
    if blob is None:
        return None
    last = _last
    if blob is last[0] or blob == last[0]:
        return last[1]
    env = gpkg_envelope(blob)
    _last = (blob, env)
    return env


def _st_is_empty(blob):
    empty = gpkg_is_empty(blob)
    if empty is None:
        return None
    return 1 if empty or _envelope(blob) is None else 0


def _coord(index: int):
    def fn(blob):
        env = _envelope(blob)
        return None if env is None else env[index]

    return fn


def register_functions(conn: sqlite3.Connection) -> None:
    """Register the GeoPackage SQL functions used by GDAL's spatial-index triggers."""
    kwargs = {"deterministic": True}
    conn.create_function("ST_IsEmpty", 1, _st_is_empty, **kwargs)
    conn.create_function("ST_MinX", 1, _coord(0), **kwargs)
    conn.create_function("ST_MaxX", 1, _coord(1), **kwargs)
    conn.create_function("ST_MinY", 1, _coord(2), **kwargs)
    conn.create_function("ST_MaxY", 1, _coord(3), **kwargs)


def connect(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    """Open a GeoPackage for reading and writing next to QGIS/GDAL.

    Autocommit mode (transactions are explicit, see :func:`transaction`), WAL journal so that
    QGIS can read while sync writes, and a busy timeout instead of immediate "database is locked".
    ``read_only`` opens a file that cannot be written (no journal change, writes fail).
    """
    target = path
    if read_only:
        target = Path(os.path.abspath(path)).as_uri() + "?mode=ro"
        wal = os.fspath(path) + "-wal"
        if not os.path.exists(wal) or os.path.getsize(wal) == 0:
            # Nothing to replay: without "immutable" SQLite refuses a WAL-mode file it cannot
            # write ("attempt to write a readonly database"), wanting to create -wal/-shm.
            target += "&immutable=1"
    conn = sqlite3.connect(
        target,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        uri=read_only,
    )
    try:
        register_functions(conn)
        # GDAL's spatial-index triggers call the ST_ functions above; Python cannot mark them
        # "innocuous", so SQLite builds with trusted_schema off would refuse them in triggers.
        conn.execute("PRAGMA trusted_schema = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if read_only:
            return conn
        shared_writing(conn)
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    except Exception:
        conn.close()
        raise
    return conn


def shared_writing(conn: sqlite3.Connection) -> None:
    """WAL journal (with a warning when the file system refuses it) and a sync per
    checkpoint, not per commit: readers go on while ``conn`` writes, and a commit lost to a
    power cut leaves the file consistent, only older."""
    # At every open: QGIS puts a GeoPackage back into the rollback journal when it closes
    # it, and a sync relies on WAL for QGIS to go on reading while it writes.
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            path = conn.execute("PRAGMA database_list").fetchone()[2]
            log.warning(
                "%s cannot use the WAL journal here (it stays in %s mode): QGIS may have "
                "to wait while a sync writes to it.",
                os.path.basename(path or ""),
                mode,
            )
    conn.execute("PRAGMA synchronous = NORMAL")


@contextmanager
def private_loading(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """For filling a new file nobody else has open and that is deleted if filling fails: no
    WAL (pages are written once, not to the WAL and again at the checkpoint), no syncing.
    WAL and normal syncing are back afterwards (the file is then made durable). The page cache
    is smaller meanwhile (see :data:`LOADING_CACHE_KIB`)."""
    try:
        conn.execute("PRAGMA journal_mode = MEMORY")  # refused if another connection is open
        conn.execute("PRAGMA synchronous = OFF")
    except sqlite3.OperationalError:
        pass  # then it stays WAL: slower, as safe
    conn.execute(f"PRAGMA cache_size = -{LOADING_CACHE_KIB}")
    try:
        yield conn
    finally:
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        if not conn.in_transaction:
            shared_writing(conn)


@contextmanager
def transaction(
    conn: sqlite3.Connection, *, immediate: bool = True
) -> Iterator[sqlite3.Connection]:
    """One SQLite transaction: committed on success, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def quote(name: str) -> str:
    """An SQL identifier in double quotes."""
    return '"' + name.replace('"', '""') + '"'


def rtree_name(table: str, geometry_column: str) -> str:
    """The GeoPackage spatial index (an R*Tree virtual table) of a table's geometry column."""
    return f"rtree_{table}_{geometry_column}"


def literal(text: str) -> str:
    """An SQL string literal in single quotes."""
    return "'" + text.replace("'", "''") + "'"


def drop_schema_objects(
    conn: sqlite3.Connection,
    table: str,
    *,
    kinds: tuple[str, ...] = ("trigger",),
    names: Sequence[str] | None = None,
    prefix: str | None = None,
) -> list[tuple[str, str]]:
    """Drop ``table``'s triggers (or other ``kinds``: ``index``) - all of them, those in
    ``names``, or those whose name starts with ``prefix`` - and return their ``(name, sql)``
    for :func:`recreate_schema_objects`. For bulk writes inside one transaction (a rollback
    brings them back too): a trigger runs for every row written, an index is cheaper to build
    once at the end than to keep up row by row."""
    sql = (
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
        f" AND type IN ({', '.join('?' for _ in kinds)})"
    )
    args: list = [table, *kinds]
    if names is not None:
        sql += f" AND name IN ({', '.join('?' for _ in names)})"
        args += names
    if prefix is not None:
        sql += " AND substr(name, 1, ?) = ?"
        args += [len(prefix), prefix]
    found = conn.execute(sql, args).fetchall()
    for kind, name, _sql in found:
        conn.execute(f"DROP {kind.upper()} {quote(name)}")
    return [(name, sql) for _kind, name, sql in found]


def recreate_schema_objects(conn: sqlite3.Connection, dropped: list[tuple[str, str]]) -> None:
    """Create again what :func:`drop_schema_objects` dropped."""
    for _name, sql in dropped:
        conn.execute(sql)


# Stay far below SQLite's host-parameter limit of old versions (999).
IN_CHUNK = 500


def select_in(conn: sqlite3.Connection, sql: str, values: list) -> list[tuple]:
    """All rows of ``sql`` (which ends in ``IN``) for ``values``, queried in chunks of
    :data:`IN_CHUNK` so any number of values fits SQLite's parameter limit."""
    rows: list[tuple] = []
    for start in range(0, len(values), IN_CHUNK):
        part = values[start : start + IN_CHUNK]
        rows.extend(conn.execute(f"{sql} ({', '.join('?' for _ in part)})", part))
    return rows
