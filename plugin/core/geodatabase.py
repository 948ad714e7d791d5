"""A geodatabase: one GeoPackage holding one replica of one feature service.

The GeoPackage stays a plain, valid GeoPackage (QGIS and GDAL open it without the plugin):
one table per service layer/table, ``<table>__ATTACH`` tables for attachments, and the sync
bookkeeping in ``oms_`` tables outside ``gpkg_contents``. Local edits by any writer are tracked
by triggers (see :mod:`tracking`); the sync machinery reads them as an :class:`UploadSnapshot`
and commits a sync's results with :meth:`Geodatabase.commit_sync` in one transaction.

This class is the entry point; the work lives in modules named for it:
``schema`` (tables from the layer JSON), ``tracking`` (bookkeeping tables and triggers),
``upload`` (snapshots of local edits), ``commit`` (applying a sync's results),
``conflicts`` (the conflict log), ``sync_lock``, ``row_codec`` and ``field_values``
(rows and values between Esri JSON and GeoPackage), ``gpkg_connection`` (SQLite setup).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import conflicts as _conflicts
from . import field_values as fv
from . import tracking
from .bulk_insert import BulkLoad, envelope_row, rebuild_spatial_index, spatial_index_damage
from .commit import commit_sync as _commit_sync
from .commit import parse_gen, parse_layer_gens
from .conflicts import now_text
from .enums import SyncDirection, SyncModel
from .errors import CancelledError, GeodatabaseError
from .geodatabase_model import (
    COUNT_KEYS,
    CommitReport,
    Conflict,
    ConflictReason,
    FieldDef,
    JournalEntry,
    LayerCommitCounts,
    LayerDef,
    ReplicaInfo,
    UploadSnapshot,
)
from .gpkg_connection import (
    BUSY_TIMEOUT_MS,
    connect,
    private_loading,
    quote,
    rtree_name,
    transaction,
)
from .gpkg_files import remove_geopackage
from .rest import CancelCallback, ProgressCallback
from .row_codec import AttachmentCodec, FeatureCodec
from .schema import (
    ATTACHMENT_COLUMNS,
    ATTACHMENT_FID,
    create_geopackage,
    layer_definition,
    refresh_extent,
)
from .sync_lock import sync_lock as _sync_lock
from .upload import build_snapshot, pending_counts

__all__ = [
    "Geodatabase",
    "LayerDef",
    "FieldDef",
    "ReplicaInfo",
    "UploadSnapshot",
    "JournalEntry",
    "CommitReport",
    "LayerCommitCounts",
    "Conflict",
    "ConflictReason",
    "COUNT_KEYS",
]

_GPKG_APPLICATION_IDS = {0x47504B47, 0x47503130, 0x47503131}  # "GPKG", "GP10", "GP11"
LOAD_BATCH_SIZE = 5000
LOAD_BATCH_BYTES = 32 * 1024 * 1024


class Geodatabase:
    """One local replica. Open with :meth:`open` or make with :meth:`create`; close when done.

    A ``Geodatabase`` wraps one SQLite connection; use it from one thread at a time (open one
    per thread if needed: SQLite and the sync lock coordinate between them).
    """

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._layers: list[LayerDef] = []
        self._reload_layers()

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        service_url: str,
        service_info: dict,
        layer_infos: dict[int, dict],
        replica_name: str,
        sync_model: SyncModel,
    ) -> Geodatabase:
        """Create an empty geodatabase for ``layer_infos`` (layer id -> layer JSON).

        Raises :class:`GeodatabaseError` if the file exists or cannot be made.
        """
        path = os.fspath(path)
        if os.path.exists(path):
            raise GeodatabaseError(f"{path} already exists; choose an empty location.")
        if not layer_infos:
            raise GeodatabaseError("No layers or tables were given for the geodatabase.")
        try:
            layers = create_geopackage(
                path, service_info, {int(k): v for k, v in layer_infos.items()}
            )
            conn = connect(path)
        except GeodatabaseError:
            remove_geopackage(Path(path))
            raise
        try:
            with transaction(conn):
                srs_ids = dict(
                    conn.execute("SELECT table_name, srs_id FROM gpkg_geometry_columns").fetchall()
                )
                layers = [
                    dataclasses.replace(lyr, srs_id=int(srs_ids.get(lyr.table_name, 0)))
                    for lyr in layers
                ]
                tracking.create_bookkeeping(conn)
                meta = {
                    "format_version": str(tracking.FORMAT_VERSION),
                    "service_url": service_url,
                    "service_info": json.dumps(service_info),
                    "replica_name": replica_name,
                    "sync_model": SyncModel(sync_model).value,
                    "created_at": now_text(),
                    "triggers_version": str(tracking.TRIGGERS_VERSION),
                    # Where it was made: a copy (or a move) of the folder is told apart by it.
                    "made_in": os.path.dirname(os.path.abspath(path)),
                }
                conn.executemany("INSERT INTO oms_meta (key, value) VALUES (?, ?)", meta.items())
                for lyr in layers:
                    _install_layer(conn, lyr)
        except BaseException:
            conn.close()
            remove_geopackage(Path(path))
            raise
        return cls(path, conn)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Geodatabase:
        """Open an existing geodatabase; raises :class:`GeodatabaseError` with a clear message
        for a missing file, a file that is not a GeoPackage, or a GeoPackage not made by us."""
        path = os.fspath(path)
        name = os.path.basename(path)
        _refuse_links(path)
        if not os.path.isfile(path):
            raise GeodatabaseError(f"The geodatabase {path} does not exist.")
        # A read-only file (e.g. a map on a DVD) can still be looked at; writes will fail.
        read_only = not os.access(path, os.W_OK)
        # Look before SQLite does: it would turn an empty file into a database on open.
        try:
            with open(path, "rb") as fh:
                header = fh.read(16)
        except OSError as exc:
            raise GeodatabaseError(f"{name} cannot be read ({exc.strerror or exc}).") from exc
        if header != b"SQLite format 3\x00":
            why = "the file is empty" if not header else "it is not an SQLite file"
            raise GeodatabaseError(f"{name} is damaged or not a GeoPackage ({why}).")
        try:
            conn = connect(path, read_only=read_only)
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                raise GeodatabaseError(
                    f"{name} is busy: another program is writing to it. Try again shortly."
                ) from exc
            # I/O trouble (full disk, unwritable folder for the -wal/-shm files), not damage.
            raise GeodatabaseError(
                f"{name} cannot be opened ({exc}). The disk may be full or its folder not "
                "writable; the file itself was not changed."
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise GeodatabaseError(f"{name} is damaged or not a GeoPackage ({exc}).") from exc
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            conn.close()
            text = str(exc).lower()
            if read_only and ("readonly" in text or "unable to open" in text):
                # Its -wal file holds changes SQLite must replay, which it cannot do here.
                raise GeodatabaseError(
                    f"{name} cannot be opened in a folder you cannot write to while it has "
                    f"changes waiting in {name}-wal. Copy the offline map to a writable folder."
                ) from exc
            raise GeodatabaseError(f"{name} is damaged or not a GeoPackage ({exc}).") from exc
        if app_id not in _GPKG_APPLICATION_IDS or "gpkg_contents" not in tables:
            conn.close()
            raise GeodatabaseError(f"{name} is not a GeoPackage.")
        if not {"oms_meta", "oms_layers", "oms_state", "oms_changes"} & tables:
            conn.close()
            raise GeodatabaseError(
                f"{name} is a GeoPackage but not an offline-map geodatabase (no sync information)."
            )
        missing = sorted(set(tracking.BOOKKEEPING_TABLES) - tables)
        if missing:
            # Some but not all: someone dropped tables; syncing would fail half-way.
            conn.close()
            raise GeodatabaseError(
                f"{name} has damaged sync information (the tables {', '.join(missing)} are "
                "missing), so it can no longer be synchronized. Its data is unchanged and still "
                "opens in QGIS; take the map offline again and copy any edits across."
            )
        try:
            row = conn.execute("SELECT value FROM oms_meta WHERE key = 'format_version'").fetchone()
            version = int(row[0]) if row else 0
        except (sqlite3.DatabaseError, ValueError) as exc:
            conn.close()
            raise GeodatabaseError(f"{name} has damaged sync information ({exc}).") from exc
        if version > tracking.FORMAT_VERSION:
            conn.close()
            raise GeodatabaseError(
                f"{name} was written by a newer version of Offline Map Sync; update the plugin."
            )
        try:
            gdb = cls(path, conn)
            if not read_only:
                try:
                    _ensure_tracking(conn, gdb.layers)
                except sqlite3.OperationalError:
                    pass  # busy right now: the next open repairs them
            return gdb
        except (sqlite3.DatabaseError, ValueError, KeyError) as exc:
            conn.close()
            raise GeodatabaseError(f"{name} has damaged sync information ({exc}).") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Geodatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GeodatabaseError(f"The geodatabase {os.path.basename(self.path)} is closed.")
        return self._conn

    def _reload_layers(self) -> None:
        layers = []
        for lid, table, definition in self.conn.execute(
            "SELECT layer_id, table_name, definition FROM oms_layers ORDER BY layer_id"
        ):
            d = json.loads(definition)
            layers.append(
                layer_definition(
                    lid,
                    d["layer_json"],
                    table,
                    int(d.get("srs_id") or 0),
                    d.get("geometry_column"),
                    true_curves=bool(d.get("true_curves")),
                )
            )
        self._layers = layers

    # -- description ------------------------------------------------------------------------

    @property
    def layers(self) -> list[LayerDef]:
        """The service layers and tables in this geodatabase, by id."""
        return list(self._layers)

    def layer(self, layer_id: int) -> LayerDef:
        for lyr in self._layers:
            if lyr.id == int(layer_id):
                return lyr
        raise GeodatabaseError(f"Layer {layer_id} is not in {os.path.basename(self.path)}.")

    @property
    def _layers_by_id(self) -> dict[int, LayerDef]:
        return {lyr.id: lyr for lyr in self._layers}

    def _meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM oms_meta").fetchall())

    @property
    def service_info(self) -> dict:
        return json.loads(self._meta().get("service_info") or "{}")

    @property
    def made_in(self) -> Path | None:
        """The folder the geodatabase was made in (None for one made before it was noted)."""
        folder = self._meta().get("made_in")
        return Path(folder) if folder else None

    @property
    def replica(self) -> ReplicaInfo:
        """The replica and its generation(s); ``replica_id`` is None until data was loaded."""
        meta = self._meta()
        layer_gens = {
            lid: int(gen)
            for lid, gen in self.conn.execute(
                "SELECT layer_id, server_gen FROM oms_layers WHERE server_gen IS NOT NULL"
            )
        }
        return ReplicaInfo(
            service_url=meta.get("service_url", ""),
            replica_id=meta.get("replica_id") or None,
            replica_name=meta.get("replica_name", ""),
            sync_model=SyncModel(meta.get("sync_model", SyncModel.PER_REPLICA.value)),
            server_gen=parse_gen(meta.get("server_gen")),
            layer_gens=layer_gens,
        )

    # -- initial load -----------------------------------------------------------------------

    def load_replica(
        self,
        header: dict,
        events: Iterable[tuple[int, str, object]],
        *,
        fetch_attachment: Callable[[str], bytes] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> dict[int, int]:
        """Fill the empty tables from a createReplica result, untracked.

        ``events`` are jsonstream's ``(layer_id, "features" | "attachments", item)``. Rows are
        written in one transaction with the replica ID and generation(s), so a geodatabase with
        a replica ID is complete. Attachments
        given by URL are fetched with ``fetch_attachment(url) -> bytes`` (without it, only their
        description is stored). Returns rows stored per layer id (attachments not included).
        All of it is one transaction, written without WAL (the file is new and private to the
        caller, who deletes it on failure).
        Raises :class:`CancelledError` when ``cancel()`` turns true (the caller deletes the file).
        """
        with _sqlite_errors(self.path, "storing the downloaded data"):
            return self._load(header, events, fetch_attachment, progress, cancel)

    def _load(self, header, events, fetch_attachment, progress, cancel) -> dict[int, int]:
        conn = self.conn
        layers = self._layers_by_id
        codecs = {lid: FeatureCodec(lyr) for lid, lyr in layers.items()}
        att_codecs = {
            lid: AttachmentCodec(lyr.attachment_table)
            for lid, lyr in layers.items()
            if lyr.attachment_table
        }
        # Reading, converting and storing take turns in this thread. A reading thread was tried:
        # both halves need the GIL for every row (SQLite hands it back per row), and the
        # hand-overs cost more than the overlap gained (100k rows: 0.4 s more CPU, slower).
        batches = _load_batches(events, codecs, att_codecs, fetch_attachment)
        try:
            with private_loading(conn):
                return self._load_rows(conn, batches, header, codecs, att_codecs, progress, cancel)
        finally:
            batches.close()

    def _load_rows(self, conn, batches, header, codecs, att_codecs, progress, cancel):
        stored: dict[int, int] = dict.fromkeys(codecs, 0)
        loads: dict[int, BulkLoad] = {}
        total = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            tracking.set_tracking(conn, False)
            for batch in batches:
                if cancel is not None and cancel():
                    raise CancelledError("Taking the map offline was cancelled.")
                for (lid, is_att), (rows, boxes) in batch.items():
                    if is_att:
                        cols = list(ATTACHMENT_COLUMNS)
                        conn.executemany(
                            f"INSERT INTO {att_codecs[lid].table}"
                            f" ({', '.join(quote(c) for c in cols)})"
                            f" VALUES ({', '.join('?' for _ in cols)})",
                            rows,
                        )
                    else:
                        if lid not in loads:
                            codec = codecs[lid]
                            loads[lid] = BulkLoad(
                                conn,
                                codec.layer.table_name,
                                codec.fid,
                                codec.columns,
                                geometry_column=codec.geom,
                            )
                        loads[lid].insert(rows, boxes)
                        stored[lid] += len(rows)
                    total += len(rows)
                if progress is not None:
                    progress(None, f"Stored {total} rows")
            if cancel is not None and cancel():
                raise CancelledError("Taking the map offline was cancelled.")
            for load in loads.values():
                load.finish()
            self._store_replica_header(header)
            self._update_layer_statistics()
            tracking.set_tracking(conn, True)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if progress is not None:
            progress(1.0, f"Stored {total} rows")
        return stored

    def _store_replica_header(self, header: dict) -> None:
        conn = self.conn
        values = {}
        if header.get("replicaID"):
            values["replica_id"] = str(header["replicaID"])
        if header.get("replicaName"):
            values["replica_name"] = str(header["replicaName"])
        if header.get("syncModel"):
            try:
                values["sync_model"] = SyncModel(header["syncModel"]).value
            except ValueError:
                pass
        gen = parse_gen(header.get("replicaServerGen"))
        if gen is not None:
            values["server_gen"] = str(gen)
        conn.executemany(
            "INSERT OR REPLACE INTO oms_meta (key, value) VALUES (?, ?)", values.items()
        )
        for lid, lgen in parse_layer_gens(header.get("layerServerGens")).items():
            conn.execute("UPDATE oms_layers SET server_gen = ? WHERE layer_id = ?", (lgen, lid))

    def _update_layer_statistics(self) -> None:
        """Extents and feature counts where GDAL and QGIS look for them (no full scans later)."""
        tables = [lyr.table_name for lyr in self._layers]
        tables += [lyr.attachment_table for lyr in self._layers if lyr.attachment_table]
        has_counts = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'gpkg_ogr_contents'"
        ).fetchone()
        for table in tables if has_counts else ():
            self.conn.execute(
                f"UPDATE gpkg_ogr_contents SET feature_count = (SELECT count(*) FROM {quote(table)})"
                " WHERE lower(table_name) = lower(?)",
                (table,),
            )
        for lyr in self._layers:
            refresh_extent(self.conn, lyr, mark_changed=False)

    # -- local edits ------------------------------------------------------------------------

    def pending_counts(self) -> dict[int, dict[str, int]]:
        """Pending local changes per layer id: adds, updates, deletes, attachment_adds,
        attachment_updates, attachment_deletes."""
        return pending_counts(self.conn, self._layers)

    def has_pending_edits(self) -> bool:
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM oms_changes)").fetchone()[0] == 1

    def snapshot_upload(
        self,
        *,
        layer_ids: Iterable[int] | None = None,
        only_adds: bool = False,
        max_attachment_bytes: int | None = None,
    ) -> UploadSnapshot:
        """Freeze the pending changes as the spec §3 ``edits`` (origin tables first).

        ``only_adds``: new features and attachments only (scheduled-updates maps that upload
        new features). Attachments larger than ``max_attachment_bytes`` are left out (they
        stay pending). Nothing is cleared here: :meth:`commit_sync` does that once the server
        has answered.
        """
        with _sqlite_errors(self.path, "reading the local edits"):
            return build_snapshot(
                self.conn,
                self._layers,
                layer_ids=layer_ids,
                only_adds=only_adds,
                max_attachment_bytes=max_attachment_bytes,
            )

    # -- committing a sync ------------------------------------------------------------------

    def commit_sync(
        self,
        snapshot: UploadSnapshot | None,
        header: dict,
        events: Iterable[tuple[int, str, object]],
        *,
        direction: SyncDirection,
        layer_ids: Iterable[int] | None = None,
        fetch_attachment: Callable[[str], bytes] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
        kind: str = "sync",
        started_at: str | None = None,
    ) -> CommitReport:
        """Commit a synchronizeReplica result (or an update package: ``snapshot=None``,
        ``direction=DOWNLOAD``, ``kind="update_package"``) in ONE transaction.

        ``header``/``events`` are jsonstream's; ``header`` is read after ``events`` is
        exhausted. Upload results apply to ``snapshot`` (edits without a result count as
        accepted). The new generation(s) are stored only when ``direction`` downloads. On any
        exception (including :class:`CancelledError`) nothing is changed. ``kind`` and
        ``started_at`` (ISO 8601 UTC text; default: now) go into the history row.
        """
        try:
            with _sqlite_errors(self.path, "the synchronization"):
                return _commit_sync(
                    self.conn,
                    self._layers_by_id,
                    snapshot,
                    header,
                    events,
                    direction=SyncDirection(direction),
                    layer_ids=layer_ids,
                    fetch_attachment=fetch_attachment,
                    progress=progress,
                    cancel=cancel,
                    kind=kind,
                    started_at=started_at,
                )
        except GeodatabaseError as exc:
            if type(exc.__cause__) is not sqlite3.DatabaseError:  # (damage, not busy or full)
                raise
            rebuilt = self._rebuild_damaged_spatial_indexes()
            if not rebuilt:
                raise
            raise GeodatabaseError(
                f"{os.path.basename(self.path)}: the spatial index of {', '.join(rebuilt)} was "
                f"damaged ({exc.__cause__}). It has been rebuilt from the features; nothing "
                "else was changed and no edit was lost. Synchronize again."
            ) from exc

    def _rebuild_damaged_spatial_indexes(self) -> list[str]:
        """Rebuild every layer's spatial index that SQLite finds damaged; their layers' names."""
        rebuilt = []
        for layer in self.layers:
            geom = layer.geometry_column
            if not geom:
                continue
            # (None for a layer without an index too)
            if spatial_index_damage(self.conn, rtree_name(layer.table_name, geom)) is None:
                continue
            action = "rebuilding a damaged spatial index"
            with _sqlite_errors(self.path, action), transaction(self.conn):
                rebuild_spatial_index(self.conn, layer.table_name, layer.object_id_field, geom)
            rebuilt.append(layer.name)
        return rebuilt

    # -- upload journal ---------------------------------------------------------------------

    def journal_begin(self, snapshot: UploadSnapshot) -> int:
        """Record that ``snapshot`` is about to be sent; returns the journal entry id."""
        with transaction(self.conn):
            cur = self.conn.execute(
                "INSERT INTO oms_journal (created_at, seq, snapshot) VALUES (?, ?, ?)",
                (now_text(), snapshot.seq, json.dumps(snapshot.to_json())),
            )
        return int(cur.lastrowid)

    def journal_set_status_url(self, entry: int | JournalEntry, url: str) -> None:
        """Save the job's status URL (before polling, so a crash can resume it)."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE oms_journal SET status_url = ? WHERE id = ?", (url, _entry_id(entry))
            )

    def journal_open_entry(self) -> JournalEntry | None:
        """The newest unfinished upload, if any."""
        row = self.conn.execute(
            "SELECT id, snapshot, status_url, created_at FROM oms_journal"
            " WHERE closed_at IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return JournalEntry(
            id=row[0],
            snapshot=UploadSnapshot.from_json(json.loads(row[1])),
            status_url=row[2],
            created_at=row[3],
        )

    def journal_close(self, entry: int | JournalEntry) -> None:
        """Mark an upload finished (``commit_sync`` also closes it in its transaction)."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE oms_journal SET closed_at = ? WHERE id = ? AND closed_at IS NULL",
                (now_text(), _entry_id(entry)),
            )

    # -- lock, conflicts, history -----------------------------------------------------------

    @contextmanager
    def sync_lock(self, *, timeout: float = 0.0) -> Iterator[None]:
        """Hold this geodatabase's sync lock (threads and processes); raises
        :class:`SyncInProgressError` ("... is already synchronizing ...") if it is taken."""
        with _sync_lock(self.path, timeout=timeout):
            yield

    def conflicts(self) -> list[Conflict]:
        """The conflict log, oldest first."""
        return _conflicts.list_conflicts(self.conn, self._layers_by_id)

    def restore_conflict(self, conflict_id: int) -> None:
        """Make the conflict's local version a pending edit again (uploaded at the next sync)."""
        with _sqlite_errors(self.path, "restoring the conflict"):
            _conflicts.restore_conflict(self.conn, self._layers_by_id, int(conflict_id))

    def dismiss_conflict(self, conflict_id: int) -> None:
        """Forget a conflict; the server's version stands."""
        with transaction(self.conn):
            _conflicts.dismiss_conflict(self.conn, int(conflict_id))

    def history(self) -> list[dict]:
        """Sync history, newest first: id, started_at, finished_at, kind, direction,
        server_gen, counts (per layer id), errors (edit errors), conflicts."""
        out = []
        for row in self.conn.execute(
            "SELECT id, started_at, finished_at, kind, direction, server_gen, counts, errors,"
            " conflicts FROM oms_history ORDER BY id DESC"
        ):
            out.append(
                {
                    "id": row[0],
                    "started_at": row[1],
                    "finished_at": row[2],
                    "kind": row[3],
                    "direction": row[4],
                    "server_gen": row[5],
                    "counts": {int(k): v for k, v in json.loads(row[6]).items()},
                    "errors": json.loads(row[7]),
                    "conflicts": row[8],
                }
            )
        return out


@contextmanager
def _sqlite_errors(path: str, action: str) -> Iterator[None]:
    """SQLite failures as GeodatabaseError with a message a GIS user can act on."""
    name = os.path.basename(path)
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            raise GeodatabaseError(
                f"{name} is busy: another program is writing to it. Save or stop the edits "
                f"there, then try {action} again."
            ) from exc
        raise GeodatabaseError(f"{action.capitalize()} failed in {name}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise GeodatabaseError(f"{action.capitalize()} failed in {name}: {exc}") from exc


def _entry_id(entry: int | JournalEntry) -> int:
    return entry.id if isinstance(entry, JournalEntry) else int(entry)


def _load_batches(events, codecs, att_codecs, fetch_attachment) -> Iterator[dict]:
    """Rows of a createReplica result, converted, in batches ``{(layer id, is attachment):
    (rows, spatial-index boxes)}`` bounded by rows and by attachment bytes (photos are large)."""
    batch: dict[tuple[int, bool], tuple[list, list]] = {}
    count = size = 0
    for layer_id, section, item in events:
        lid = int(layer_id)
        if section == "features" and lid in codecs:
            codec = codecs[lid]
            oid, values = codec.full_row(item)
            if not isinstance(oid, int) or isinstance(oid, bool):
                oid = None
            rows, boxes = batch.setdefault((lid, False), ([], []))
            rows.append([oid, *values])
            if codec.geom and oid is not None:
                boxes.append(envelope_row(oid, values[0]))
        elif section == "attachments" and lid in att_codecs:
            row = att_codecs[lid].row(item, fetch_attachment)
            size += len(row[-1] or b"")
            batch.setdefault((lid, True), ([], []))[0].append(row)
        else:
            continue
        count += 1
        if count >= LOAD_BATCH_SIZE or size >= LOAD_BATCH_BYTES:
            yield batch
            batch, count, size = {}, 0, 0
    if batch:
        yield batch


def _install_layer(conn: sqlite3.Connection, lyr: LayerDef) -> None:
    """Bookkeeping row, GlobalID indexes and tracking triggers of one layer."""
    definition = {
        "name": lyr.name,
        "geometry_column": lyr.geometry_column,
        "srs_id": lyr.srs_id,
        "layer_json": lyr.layer_json,
        "true_curves": lyr.true_curves,
    }
    conn.execute(
        "INSERT INTO oms_layers (layer_id, table_name, attachment_table, definition)"
        " VALUES (?, ?, ?, ?)",
        (lyr.id, lyr.table_name, lyr.attachment_table, json.dumps(definition)),
    )
    t = lyr.table_name
    conn.execute(
        f"CREATE INDEX {quote('oms_' + t + '_globalid')} ON {quote(t)} ({quote(lyr.global_id_field)})"
    )
    if lyr.attachment_table:
        a = lyr.attachment_table
        conn.execute(f"CREATE INDEX {quote('oms_' + a + '_globalid')} ON {quote(a)} (GLOBALID)")
        conn.execute(f"CREATE INDEX {quote('oms_' + a + '_rel')} ON {quote(a)} (REL_GLOBALID)")
    _install_triggers(conn, lyr)


def _install_triggers(conn: sqlite3.Connection, lyr: LayerDef) -> None:
    """(Re)create the tracking triggers of a layer and its attachments table."""
    t = lyr.table_name

    def columns(table: str) -> set[str]:
        return {r[1].lower() for r in conn.execute(f"PRAGMA table_info({quote(table)})")}

    present = columns(t)
    tracked = [f.name for f in lyr.uploadable_fields if f.name.lower() in present]
    kinds = {f.name: "date" for f in lyr.uploadable_fields if f.esri_type == fv.DATE}
    if lyr.geometry_column:
        tracked.append(lyr.geometry_column)
        kinds[lyr.geometry_column] = "geometry"
    for name in tracking.trigger_names(t):
        conn.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
    tracking.create_triggers(
        conn,
        t,
        fid=lyr.object_id_field,
        global_id=lyr.global_id_field,
        tracked_columns=tracked,
        attachment_table=lyr.attachment_table,
        column_kinds=kinds,
    )
    if lyr.attachment_table:
        a = lyr.attachment_table
        for name in tracking.trigger_names(a):
            conn.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
        tracking.create_triggers(
            conn,
            a,
            fid=ATTACHMENT_FID,
            global_id="GLOBALID",
            tracked_columns=list(ATTACHMENT_COLUMNS[1:]),
            parent=(t, lyr.global_id_field),
        )


def _ensure_tracking(conn: sqlite3.Connection, layers: list[LayerDef]) -> None:
    """Re-create tracking triggers that are missing or from an older version of this code.

    Tools that rebuild a table (e.g. deleting a field in QGIS) drop its triggers; without them
    edits would go unnoticed.
    """
    row = conn.execute("SELECT value FROM oms_meta WHERE key = 'triggers_version'").fetchone()
    current = row is not None and row[0] == str(tracking.TRIGGERS_VERSION)
    existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    stale = []
    for lyr in layers:
        wanted = {tracking.trigger_names(lyr.table_name)[i] for i in (0, 1, 2, 4)}
        if lyr.attachment_table:
            wanted |= {tracking.trigger_names(lyr.attachment_table)[i] for i in (0, 1, 2, 4)}
        if not current or not wanted <= existing:
            stale.append(lyr)
    if not stale:
        return
    # Opening must not hang behind a running sync: wait briefly, else repair at a later open.
    conn.execute("PRAGMA busy_timeout = 2000")
    try:
        with transaction(conn):
            tracking.upgrade_bookkeeping(conn)
            for lyr in stale:
                _install_triggers(conn, lyr)
            conn.execute(
                "INSERT OR REPLACE INTO oms_meta (key, value) VALUES ('triggers_version', ?)",
                (str(tracking.TRIGGERS_VERSION),),
            )
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _refuse_links(path: str) -> None:
    """Refuse a geodatabase, or its -wal/-shm file, that is a symbolic link.

    Offline maps are copied and shared: a link could point at another map's geodatabase (whose
    replica a removal would then unregister) or make SQLite write into some other file.
    """
    name = os.path.basename(path)
    if os.path.islink(path):
        raise GeodatabaseError(
            f"{name} is a link to another file, not a geodatabase of its own, so it is not "
            "opened: a link in a copied offline map could change or unregister another map's "
            "data. Replace the link with the geodatabase file itself."
        )
    for suffix in ("-wal", "-shm"):
        if os.path.islink(path + suffix):
            raise GeodatabaseError(
                f"{name} is not opened: its {name}{suffix} file is a link to another file, "
                "which SQLite would write into. Delete the link (the geodatabase itself was not "
                "changed), then try again."
            )
