"""SQLite persistence of the reference service: services, layers as real tables, attachments,
the change log and tombstones that drive sync, replicas, jobs and portal items.

One `Tx` is one transaction. Writers are serialised by a process lock plus `BEGIN IMMEDIATE`
(so two servers on one data folder also stay safe); readers see a WAL snapshot.

Generations: every service has a counter. A write transaction that changes data takes the next
value once (lazily) and stamps every changed row, change-log entry and tombstone with it; a
transaction that rolls back leaves the counter untouched, so generations advance only on commit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import ApiError

SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
  idx INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  definition TEXT NOT NULL,
  gen INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS layers (
  service TEXT NOT NULL COLLATE NOCASE,
  layer_id INTEGER NOT NULL,
  table_name TEXT NOT NULL,
  definition TEXT NOT NULL,
  PRIMARY KEY (service, layer_id)
);
CREATE TABLE IF NOT EXISTS changes (
  service TEXT NOT NULL COLLATE NOCASE,
  layer_id INTEGER NOT NULL,
  kind TEXT NOT NULL,            -- 'f' feature, 'a' attachment
  globalid TEXT NOT NULL,
  gen INTEGER NOT NULL,
  replica TEXT                   -- the replica whose upload made the change, NULL otherwise
);
-- Covering: the changes since a generation are read from the index alone.
CREATE INDEX IF NOT EXISTS changes_by_gen ON changes (service, layer_id, kind, gen, globalid, replica);
CREATE TABLE IF NOT EXISTS tombstones (
  service TEXT NOT NULL COLLATE NOCASE,
  layer_id INTEGER NOT NULL,
  kind TEXT NOT NULL,
  globalid TEXT NOT NULL,
  objectid INTEGER,
  gen INTEGER NOT NULL,
  replica TEXT
);
CREATE INDEX IF NOT EXISTS tombstones_by_gen ON tombstones (service, layer_id, kind, gen);
CREATE TABLE IF NOT EXISTS attachments (
  service TEXT NOT NULL COLLATE NOCASE,
  layer_id INTEGER NOT NULL,
  attachment_id INTEGER PRIMARY KEY AUTOINCREMENT,
  globalid TEXT NOT NULL,
  parent_globalid TEXT NOT NULL,
  name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  data BLOB NOT NULL,
  keywords TEXT,
  gen INTEGER NOT NULL,
  created_gen INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS attachments_gid ON attachments (service, layer_id, globalid);
CREATE INDEX IF NOT EXISTS attachments_parent ON attachments (service, layer_id, parent_globalid);
CREATE TABLE IF NOT EXISTS replicas (
  id TEXT PRIMARY KEY,
  service TEXT NOT NULL COLLATE NOCASE,
  name TEXT NOT NULL,
  owner TEXT,
  info TEXT NOT NULL             -- JSON: layers, queries, filter, sync model, gens, dates
);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  owner TEXT,
  status TEXT NOT NULL,
  info TEXT NOT NULL             -- JSON: operation, resultUrl, replicaID, error, times
);
CREATE TABLE IF NOT EXISTS results (
  name TEXT PRIMARY KEY,
  created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
  id TEXT PRIMARY KEY,
  item TEXT NOT NULL,
  data TEXT
);
"""

SQL_TYPES = {
    "esriFieldTypeOID": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "esriFieldTypeSmallInteger": "INTEGER",
    "esriFieldTypeInteger": "INTEGER",
    "esriFieldTypeBigInteger": "INTEGER",
    "esriFieldTypeDate": "INTEGER",
    "esriFieldTypeSingle": "REAL",
    "esriFieldTypeDouble": "REAL",
}
SYSTEM_COLUMNS = (
    "_geom",
    "_xmin",
    "_ymin",
    "_xmax",
    "_ymax",
    "_created_gen",
    "_created_by",
    "_gen",
)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_guid() -> str:
    return "{" + str(uuid.uuid4()).upper() + "}"


@dataclass
class Layer:
    """A layer or table of a service, with the SQLite table that holds its rows."""

    service: str
    id: int
    table: str
    info: dict  # the layer JSON as served (without the per-request parts)
    fields: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def is_table(self) -> bool:
        return self.info.get("type") == "Table"

    @property
    def geometry_type(self) -> str | None:
        """The canonical spelling: ArcGIS treats its enumerations case-insensitively."""
        if self.is_table:
            return None
        spelled = self.info.get("geometryType")
        return _GEOMETRY_TYPES.get(str(spelled).lower(), spelled)

    @property
    def oid_field(self) -> str:
        return self.info["objectIdField"]

    @property
    def gid_field(self) -> str:
        return self.info["globalIdField"]

    @property
    def has_attachments(self) -> bool:
        return bool(self.info.get("hasAttachments"))

    def field_names(self) -> list[str]:
        return [f["name"] for f in self.fields]

    def field_by_name(self, name: str) -> dict | None:
        lower = name.lower()
        for f in self.fields:
            if f["name"].lower() == lower:
                return f
        return None


_GEOMETRY_TYPES = {
    t.lower(): t
    for t in (
        "esriGeometryPoint",
        "esriGeometryMultipoint",
        "esriGeometryPolyline",
        "esriGeometryPolygon",
    )
}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Store:
    """The data folder's database. Use `read()` / `write()` to get a transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._write_lock = threading.RLock()
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def read(self) -> Iterator[Tx]:
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            yield Tx(conn, write=False)
        finally:
            conn.rollback()
            conn.close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._write_lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                tx = Tx(conn, write=True)
                try:
                    yield tx
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
                # Still under the writer lock: observers see commits in commit order.
                for callback in tx.after_commit:
                    callback()
            finally:
                conn.close()


class Tx:
    """One transaction over the store."""

    def __init__(self, conn: sqlite3.Connection, write: bool):
        self.conn = conn
        self.write = write
        self._gens: dict[str, int] = {}
        #: Called (in order) once this transaction has committed (test observers).
        self.after_commit: list = []
        self._layer_cache: dict[tuple[str, int], Layer] = {}

    # --- services and layers -------------------------------------------------------------

    def service_names(self) -> list[str]:
        return [r["name"] for r in self.conn.execute("SELECT name FROM services ORDER BY idx")]

    def service(self, name: str) -> dict:
        row = self.conn.execute(
            "SELECT name, definition FROM services WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise ApiError(
                404,
                f"Service '{name}' not found.",
                [f"There is no feature service named '{name}'."],
            )
        definition = json.loads(row["definition"])
        definition["_name"] = row["name"]
        return definition

    def create_service(self, name: str, definition: dict, layers: list[dict]) -> None:
        cur = self.conn.execute(
            "INSERT INTO services (name, definition, gen) VALUES (?, ?, 1)",
            (name, json.dumps(definition)),
        )
        idx = cur.lastrowid
        for layer in layers:
            table = f"fs_{idx}_{layer['id']}"
            columns = []
            for f in layer["fields"]:
                sql_type = SQL_TYPES.get(f["type"], "TEXT")
                columns.append(f"{quote(f['name'])} {sql_type}")
            columns += [
                "_geom TEXT",
                "_xmin REAL",
                "_ymin REAL",
                "_xmax REAL",
                "_ymax REAL",
                "_created_gen INTEGER NOT NULL",
                "_created_by TEXT",
                "_gen INTEGER NOT NULL",
            ]
            self.conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
            gid = quote(layer["globalIdField"])
            self.conn.execute(f"CREATE UNIQUE INDEX {table}_gid ON {table} ({gid})")
            self.conn.execute(f"CREATE INDEX {table}_bbox ON {table} (_xmin, _ymin)")
            self.conn.execute(
                "INSERT INTO layers (service, layer_id, table_name, definition) VALUES (?, ?, ?, ?)",
                (name, layer["id"], table, json.dumps(layer)),
            )

    def set_capabilities(self, name: str, capabilities: str) -> None:
        """Advertise ``capabilities`` for the service and each of its layers."""
        definition = self.service(name)
        definition.pop("_name", None)
        definition["capabilities"] = capabilities
        self.conn.execute(
            "UPDATE services SET definition = ? WHERE name = ?", (json.dumps(definition), name)
        )
        rows = self.conn.execute(
            "SELECT layer_id, definition FROM layers WHERE service = ?", (name,)
        ).fetchall()
        for row in rows:
            layer = dict(json.loads(row["definition"]), capabilities=capabilities)
            self.conn.execute(
                "UPDATE layers SET definition = ? WHERE service = ? AND layer_id = ?",
                (json.dumps(layer), name, row["layer_id"]),
            )
        self._layer_cache.clear()

    def layers(self, service: str) -> list[Layer]:
        rows = self.conn.execute(
            "SELECT service, layer_id, table_name, definition FROM layers WHERE service = ? "
            "ORDER BY layer_id",
            (service,),
        ).fetchall()
        return [self._cached_layer(service, row["layer_id"], row) for row in rows]

    def layer(self, service: str, layer_id: int) -> Layer:
        key = (service.lower(), layer_id)
        if key in self._layer_cache:
            return self._layer_cache[key]
        row = self.conn.execute(
            "SELECT service, table_name, definition FROM layers WHERE service = ? AND layer_id = ?",
            (service, layer_id),
        ).fetchone()
        if row is None:
            self.service(service)  # unknown service -> its own error
            raise ApiError(
                400,
                f"Layer {layer_id} does not exist in service '{service}'.",
                [f"Invalid layer id: {layer_id}"],
            )
        return self._cached_layer(service, layer_id, row)

    def _cached_layer(self, service: str, layer_id: int, row: sqlite3.Row) -> Layer:
        key = (service.lower(), layer_id)
        if key not in self._layer_cache:
            info = json.loads(row["definition"])
            self._layer_cache[key] = Layer(
                row["service"], layer_id, row["table_name"], info, info["fields"]
            )
        return self._layer_cache[key]

    # --- generations ---------------------------------------------------------------------

    def current_gen(self, service: str) -> int:
        return self.conn.execute("SELECT gen FROM services WHERE name = ?", (service,)).fetchone()[
            0
        ]

    def next_gen(self, service: str) -> int:
        """The generation of this transaction's changes (taken once, rolled back with the rest)."""
        key = service.lower()
        if key not in self._gens:
            assert self.write, "changes need a write transaction"
            self.conn.execute("UPDATE services SET gen = gen + 1 WHERE name = ?", (service,))
            self._gens[key] = self.current_gen(service)
        return self._gens[key]

    def log_change(
        self, layer: Layer, kind: str, globalid: str, gen: int, replica: str | None
    ) -> None:
        self.conn.execute(
            "INSERT INTO changes (service, layer_id, kind, globalid, gen, replica) VALUES (?, ?, ?, ?, ?, ?)",
            (layer.service, layer.id, kind, globalid, gen, replica),
        )

    def tombstone(
        self, layer: Layer, kind: str, globalid: str, objectid: int, gen: int, replica
    ) -> None:
        self.conn.execute(
            "INSERT INTO tombstones (service, layer_id, kind, globalid, objectid, gen, replica) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (layer.service, layer.id, kind, globalid, objectid, gen, replica),
        )

    def changed_since(
        self, layer: Layer, kind: str, gen: int, exclude_replica: str | None
    ) -> set[str]:
        """GlobalIDs changed after `gen` by anyone but `exclude_replica`."""
        rows = self.conn.execute(
            "SELECT DISTINCT globalid FROM changes WHERE service = ? AND layer_id = ? AND kind = ? "
            "AND gen > ? AND replica IS NOT ?",
            (layer.service, layer.id, kind, gen, exclude_replica),
        )
        return {r[0] for r in rows}

    def changed_since_where(
        self, layer: Layer, kind: str, gen: int, exclude_replica: str | None
    ) -> tuple[str, list]:
        """SQL condition (and its parameters) on `layer`'s rows: changed after `gen` by anyone
        but `exclude_replica`, like :meth:`changed_since`, for a query of the rows.

        When the changes are a large share of the rows, SQLite reads the table in row order
        (one pass, no sort) instead of looking the changed rows up by GlobalID. Then, if
        `exclude_replica` changed nothing since `gen`, the rows' own last-change generation
        tells (every logged change of a row sets its `_gen`); otherwise each row is checked
        against the changed GlobalIDs."""
        changes = (
            "FROM changes WHERE service = ? AND layer_id = ? AND kind = ? AND gen > ? "
            "AND replica IS NOT ?"
        )
        args = [layer.service, layer.id, kind, gen, exclude_replica]
        gid = quote(layer.gid_field)
        changed = self.conn.execute(f"SELECT count(*) {changes}", args).fetchone()[0]
        rows = self.conn.execute(f"SELECT count(*) FROM {layer.table}").fetchone()[0]
        if changed * 10 <= rows:
            return f"{gid} IN (SELECT globalid {changes})", args
        own = (
            exclude_replica is not None
            and self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM changes WHERE service = ? AND layer_id = ? "
                "AND kind = ? AND gen > ? AND replica = ?)",
                [layer.service, layer.id, kind, gen, exclude_replica],
            ).fetchone()[0]
        )
        if kind == "f" and not own:
            return "_gen > ?", [gen]
        return f"+{gid} IN (SELECT globalid {changes})", args  # + keeps SQLite off the index

    def deleted_since(
        self, layer: Layer, kind: str, gen: int, exclude_replica: str | None
    ) -> list[str]:
        """GlobalIDs deleted after `gen` by anyone but `exclude_replica` and not present now.

        A row deleted and later re-created with the same GlobalID (a replayed add) is not gone;
        one query checks that for all of them instead of a look-up per GlobalID.
        """
        if kind == "f":
            present = f"SELECT 1 FROM {layer.table} WHERE {quote(layer.gid_field)} = t.globalid"
        else:
            present = (
                "SELECT 1 FROM attachments a WHERE a.service = t.service "
                "AND a.layer_id = t.layer_id AND a.globalid = t.globalid"
            )
        rows = self.conn.execute(
            "SELECT DISTINCT t.globalid FROM tombstones t WHERE t.service = ? AND t.layer_id = ? "
            f"AND t.kind = ? AND t.gen > ? AND t.replica IS NOT ? AND NOT EXISTS ({present}) "
            "ORDER BY t.globalid",
            (layer.service, layer.id, kind, gen, exclude_replica),
        )
        return [r[0] for r in rows]

    # --- features --------------------------------------------------------------------------

    def select(
        self,
        layer: Layer,
        where_sql: str = "1=1",
        params: list | tuple = (),
        *,
        order_by: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        columns: str = "*",
    ) -> sqlite3.Cursor:
        sql = f"SELECT {columns} FROM {layer.table} WHERE {where_sql}"
        sql += f" ORDER BY {order_by or quote(layer.oid_field)}"
        args = list(params)
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return self.conn.execute(sql, args)

    def count(self, layer: Layer, where_sql: str = "1=1", params=()) -> int:
        return self.conn.execute(
            f"SELECT COUNT(*) FROM {layer.table} WHERE {where_sql}", list(params)
        ).fetchone()[0]

    def row_by_gid(self, layer: Layer, globalid: str) -> sqlite3.Row | None:
        return self.conn.execute(
            f"SELECT * FROM {layer.table} WHERE {quote(layer.gid_field)} = ?", (globalid,)
        ).fetchone()

    def row_by_oid(self, layer: Layer, objectid: int) -> sqlite3.Row | None:
        return self.conn.execute(
            f"SELECT * FROM {layer.table} WHERE {quote(layer.oid_field)} = ?", (objectid,)
        ).fetchone()

    def insert_row(
        self, layer: Layer, values: dict[str, Any], geometry: dict | None, bbox, gen: int, by
    ) -> int:
        cols = [quote(k) for k in values] + list(SYSTEM_COLUMNS)
        box = bbox or (None, None, None, None)
        args = [*values.values(), json.dumps(geometry) if geometry else None, *box, gen, by, gen]
        cur = self.conn.execute(
            f"INSERT INTO {layer.table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            args,
        )
        return cur.lastrowid

    def bulk_insert(self, layer: Layer, names: list[str], rows: list[tuple], gen: int = 1) -> None:
        """Seeds rows fast: each row is the field values in `names` order followed by geometry JSON
        (or None) and the four bbox values."""
        cols = [quote(n) for n in names] + list(SYSTEM_COLUMNS)
        placeholders = ", ".join("?" * (len(names) + 5)) + f", {int(gen)}, NULL, {int(gen)}"
        self.conn.executemany(
            f"INSERT INTO {layer.table} ({', '.join(cols)}) VALUES ({placeholders})", rows
        )

    def update_row(
        self,
        layer: Layer,
        objectid: int,
        values: dict[str, Any],
        geometry,
        bbox,
        gen: int,
        set_geometry: bool,
    ):
        sets = [f"{quote(k)} = ?" for k in values]
        args = list(values.values())
        if set_geometry:
            box = bbox or (None, None, None, None)
            sets += ["_geom = ?", "_xmin = ?", "_ymin = ?", "_xmax = ?", "_ymax = ?"]
            args += [json.dumps(geometry) if geometry else None, *box]
        sets.append("_gen = ?")
        args += [gen, objectid]
        self.conn.execute(
            f"UPDATE {layer.table} SET {', '.join(sets)} WHERE {quote(layer.oid_field)} = ?", args
        )

    def delete_row(self, layer: Layer, objectid: int) -> None:
        self.conn.execute(
            f"DELETE FROM {layer.table} WHERE {quote(layer.oid_field)} = ?", (objectid,)
        )

    # --- attachments -----------------------------------------------------------------------

    def attachments_of(
        self, layer: Layer, parent_gids: list[str] | None = None
    ) -> list[sqlite3.Row]:
        if parent_gids is None:
            return self.conn.execute(
                "SELECT * FROM attachments WHERE service = ? AND layer_id = ? ORDER BY attachment_id",
                (layer.service, layer.id),
            ).fetchall()
        out = []
        for start in range(0, len(parent_gids), 500):
            chunk = parent_gids[start : start + 500]
            out += self.conn.execute(
                f"SELECT * FROM attachments WHERE service = ? AND layer_id = ? AND parent_globalid IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY attachment_id",
                (layer.service, layer.id, *chunk),
            ).fetchall()
        return out

    def attachments_by_gid(self, layer: Layer, globalids: list[str]) -> list[sqlite3.Row]:
        """The attachments with these GlobalIDs, in attachment id order."""
        out: list[sqlite3.Row] = []
        for start in range(0, len(globalids), 500):
            chunk = globalids[start : start + 500]
            out += self.conn.execute(
                f"SELECT * FROM attachments WHERE service = ? AND layer_id = ? AND globalid IN "
                f"({', '.join('?' * len(chunk))})",
                (layer.service, layer.id, *chunk),
            ).fetchall()
        return sorted(out, key=lambda a: a["attachment_id"])

    def attachment_by_gid(self, layer: Layer, globalid: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM attachments WHERE service = ? AND layer_id = ? AND globalid = ?",
            (layer.service, layer.id, globalid),
        ).fetchone()

    def attachment_by_id(self, layer: Layer, attachment_id: int) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM attachments WHERE service = ? AND layer_id = ? AND attachment_id = ?",
            (layer.service, layer.id, attachment_id),
        ).fetchone()

    def insert_attachment(
        self,
        layer: Layer,
        globalid,
        parent_gid,
        name,
        content_type,
        data: bytes,
        gen,
        keywords=None,
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO attachments (service, layer_id, globalid, parent_globalid, name, content_type, size, "
            "data, keywords, gen, created_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                layer.service,
                layer.id,
                globalid,
                parent_gid,
                name,
                content_type,
                len(data),
                data,
                keywords,
                gen,
                gen,
            ),
        )
        return cur.lastrowid

    def update_attachment(
        self, attachment_id: int, name, content_type, data: bytes | None, gen
    ) -> None:
        if data is None:
            self.conn.execute(
                "UPDATE attachments SET name = ?, content_type = ?, gen = ? WHERE attachment_id = ?",
                (name, content_type, gen, attachment_id),
            )
        else:
            self.conn.execute(
                "UPDATE attachments SET name = ?, content_type = ?, data = ?, size = ?, gen = ? "
                "WHERE attachment_id = ?",
                (name, content_type, data, len(data), gen, attachment_id),
            )

    def delete_attachment(self, attachment_id: int) -> None:
        self.conn.execute("DELETE FROM attachments WHERE attachment_id = ?", (attachment_id,))

    # --- replicas, jobs, results, items --------------------------------------------------------

    def save_replica(self, replica: dict) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO replicas (id, service, name, owner, info) VALUES (?, ?, ?, ?, ?)",
            (
                replica["replicaID"],
                replica["service"],
                replica["replicaName"],
                replica.get("owner"),
                json.dumps(replica),
            ),
        )

    def replica(self, replica_id: str) -> dict | None:
        row = self.conn.execute("SELECT info FROM replicas WHERE id = ?", (replica_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def replicas(self, service: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT info FROM replicas WHERE service = ? ORDER BY rowid", (service,)
        )
        return [json.loads(r[0]) for r in rows]

    def delete_replica(self, replica_id: str) -> None:
        self.conn.execute("DELETE FROM replicas WHERE id = ?", (replica_id,))

    def save_job(self, job: dict) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO jobs (id, service, owner, status, info) VALUES (?, ?, ?, ?, ?)",
            (job["id"], job["service"], job.get("owner"), job["status"], json.dumps(job)),
        )

    def job(self, job_id: str) -> dict | None:
        row = self.conn.execute("SELECT info FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def add_result(self, name: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO results (name, created) VALUES (?, ?)", (name, time.time())
        )

    def result_names(self, older_than: float | None = None) -> list[str]:
        if older_than is None:
            return [r[0] for r in self.conn.execute("SELECT name FROM results")]
        return [
            r[0]
            for r in self.conn.execute("SELECT name FROM results WHERE created < ?", (older_than,))
        ]

    def remove_result(self, name: str) -> None:
        self.conn.execute("DELETE FROM results WHERE name = ?", (name,))

    def has_result(self, name: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM results WHERE name = ?", (name,)).fetchone()
            is not None
        )

    def save_item(self, item_id: str, item: dict, data: dict | None) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO items (id, item, data) VALUES (?, ?, ?)",
            (item_id, json.dumps(item), json.dumps(data) if data is not None else None),
        )

    def item(self, item_id: str) -> tuple[dict, dict | None] | None:
        row = self.conn.execute("SELECT item, data FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), (json.loads(row[1]) if row[1] else None)
