"""Model-based convergence under faults (issue 8): several offline replicas of one map edit,
sync in random order and directions while the service fails and clients are killed; after a
final fault-free round everything must agree and no edit may be lost or duplicated.

Run it with `run_stress(StressConfig(...), workdir)` (tests/test_convergence.py does a short
run, tests/tools/stress.py is the command line for long ones).

What happens
------------
- A reference service (seed "demo", service "Demo": Points with attachments, Lines, Polygons,
  the related table Inspections) runs in this process; `replicas` offline maps are taken from
  it with the plugin's `OfflineMapTask` (sync models mixed per replica by default).
- Every round, one or two replicas make random offline edits "as a user would" — attributes
  with plain sqlite3 (the tracking triggers see them), geometries and new features with
  GDAL/OGR, attachments as rows of the `__ATTACH` tables, related Inspections rows — with a bias
  towards a small "hot" set of features so that replicas edit the same features on purpose.
  New rows get a GlobalID from the harness or (sometimes) from the database's own trigger.
  Users also restore (or dismiss) entries of their conflict log. Now and then another user
  edits the service directly (updates, adds, deletes).
- Then one or two replicas synchronize (the plugin's `OfflineMapSyncTask`) in a random
  direction, in a separate worker process. Before a sync the service may be armed with faults
  (HTTP 500/502/503, HTML pages, cut-off JSON, connections dropped before or after the commit
  of the request), result files may be expired, and the worker may be killed with SIGKILL at a
  random progress point of the sync (the worker stops at every new progress message until told
  to go on, so the kill lands exactly there: before the upload, after the job started, while
  the downloaded changes are being applied inside the geodatabase transaction, ...), or, with
  `timed_kills`, after a random delay (anywhere, but not exactly reproducible). At a paused
  progress point the user may also edit the replica being synchronized, and (with `auth`) the
  service may expire every token, so the worker's cached sign-in dies mid-sync.
- Per-layer replicas sometimes sync each layer in its own direction (GeodatabaseSyncTask with
  SyncLayerOption: bidirectional, upload, download or none per layer).
- The random syncs upload attachments up to a small limit only; now and then a user adds an
  attachment above it, which must stay pending (the other edits of that sync go up) until the
  final round, which has no such limit.
- With `preplanned`, the last replica is a preplanned map area in "sync with feature services"
  mode, downloaded after the service changed since its package was built: its first sync
  must bring those changes (and nothing twice).
- Final round: faults off, every replica syncs bidirectionally, pass after pass, until a whole
  pass commits no upload (at least two passes).

The model ("the last synchronized edit wins, per attribute and geometry", spec §4)
---------------------------------------------------------------------------------
The service's state is a fold of the seed data over every upload the service committed (and
every direct edit of the other user), in commit order. The order comes from the service
itself (a listener called under its writer lock after each committed synchronizeReplica
upload): with killed clients and dropped connections the harness cannot know when (or
whether) an upload committed — a job started by a killed worker may commit during somebody
else's sync; an upload whose answer was lost is resent by the client's journal and then simply
counts again, at the resend's place in the order. Fold
rules, per layer, features before attachments, adds then updates then deletes (the spec's
order):
- add: creates the row with the values it carries; an add whose GlobalID exists (a replay)
  overwrites the fields it carries;
- update: overwrites only the fields it carries, and the geometry if it carries one; an update
  of a row that does not exist is rejected with 1019 — deletes win, rows are not resurrected
  by updates;
- delete: removes the row and its attachments; deleting a missing row is a successful no-op;
- attachments: add needs the parent row (else 1019) and overwrites an existing attachment of
  the same GlobalID; update of a missing attachment is 1019; delete removes it (or no-op).
The model predicts each edit's success; the service's reported results must agree.

Checks after the final round
----------------------------
1. The service equals the model (same GlobalIDs; every editable attribute, normalised by field
   type; geometry compared as the multiset of its vertices; attachments by GlobalID, parent,
   name and content hash).
2. Every replica equals the service, with no pending edit and no unfinished upload left.
3. Nothing is lost: every value a user wrote (each field of each edit, each geometry, each add,
   delete and attachment change) is accounted for by (a) a later committed upload from the same
   replica that carried exactly that value and that the model applied, or (b) the replica's
   conflict log holding the row with that value (a local version that lost: rejected, or
   deleted on the service), or (c) a later local edit of the
   same field (or a local delete of the row / of the attachment's parent) by the same replica,
   which replaced the value before it was uploaded. A restored conflict is a new edit of
   every value it holds; a dismissed one still accounts for its values (the user chose). A
   local delete is also accounted for when the row was already gone from the service, or the
   service removed it later (by anyone). Values are unique per edit (strings,
   numbers, dates, coordinates) so (a) and (b) cannot match by accident, except for
   coded-value fields, which are few.
   A pending local edit is never overwritten or discarded by a download, in any direction
   (download-only syncs and layers, an upload skipped for any reason): its fields keep the
   local value and stay pending until an upload carries them. So no conflict-log entry may
   say "overwritten by download", and such values are accounted for by (a).
4. Nothing is duplicated: no GlobalID twice in any table (service or replica, features or
   attachments), and no row on the service whose GlobalID neither the seed nor a user minted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "Demo"
POINTS, LINES, POLYGONS, INSPECTIONS = 0, 1, 2, 3
USER, PASSWORD = "stress", "stress-secret"
GEOM = "__geom__"
ADD = "__add__"
DELETE = "__delete__"
ATT = "__att__"
ATT_DELETE = "__attdel__"
X0, Y0 = 948000.0, 6001000.0  # new geometries go around the Demo data (Web Mercator)
DATE_BASE = 1_700_000_000_000  # epoch ms
SYNC_TIMEOUT = 90.0  # seconds one sync attempt may take before it counts as hung
UPLOAD_LIMIT = 2048  # bytes: the largest attachment the random syncs upload
AREA = "Everywhere"  # the preplanned map area (covers every geometry the harness draws)

FAULT_OPERATIONS = ("synchronizeReplica", "jobs", "result", "service", "layers", "*")
POST_KINDS = (
    "http500",
    "http502",
    "http503",
    "drop_before_commit",
    "drop_after_commit",
    "html_error",
    "truncated_json",
)
GET_KINDS = ("http500", "http502", "http503", "drop_before_commit", "html_error", "truncated_json")


# ---------------------------------------------------------------------------------------------
# Configuration and report


@dataclass
class StressConfig:
    """One stress run. Everything random derives from `seed`."""

    seed: int = 1
    rounds: int = 20
    replicas: int = 3
    auth: bool = False
    fault_rate: float = 0.5  # chance that a sync attempt gets faults armed
    kill_rate: float = 0.25  # chance that a sync attempt's worker is killed at a progress point
    concurrent_rate: float = 0.15  # chance that the user edits while a sync is running
    timed_kills: bool = False  # kill after a random delay instead (not exactly reproducible)
    office_rate: float = 0.2  # chance per round that another user edits the service directly
    per_layer_rate: float = 0.25  # chance that a per-layer replica syncs each layer its own way
    max_edits: int = 4  # edits per editing replica and round: 1..max_edits
    hot_rate: float = 0.5  # chance that an edit targets the shared "hot" features
    sync_model: str = "mixed"  # "perReplica", "perLayer" or "mixed" (alternating)
    directions: str = "bidirectional,upload,download"  # directions the random syncs use
    oversize_rate: float = 0.1  # chance that a new attachment is above the random syncs' limit
    preplanned: bool = True  # the last replica is a preplanned map area (with 2+ replicas)
    verbose: bool = False

    def reproducer(self) -> str:
        """The command line that repeats this run."""
        parts = [
            "python tests/tools/stress.py",
            f"--seed {self.seed}",
            f"--rounds {self.rounds}",
            f"--replicas {self.replicas}",
        ]
        defaults = StressConfig()
        if self.auth:
            parts.append("--auth")
        if self.timed_kills:
            parts.append("--timed-kills")
        if not self.preplanned:
            parts.append("--no-preplanned")
        for name, flag in (
            ("fault_rate", "--fault-rate"),
            ("kill_rate", "--kill-rate"),
            ("concurrent_rate", "--concurrent-rate"),
            ("office_rate", "--office-rate"),
            ("per_layer_rate", "--per-layer-rate"),
            ("max_edits", "--max-edits"),
            ("hot_rate", "--hot-rate"),
            ("sync_model", "--sync-model"),
            ("directions", "--directions"),
            ("oversize_rate", "--oversize-rate"),
        ):
            if getattr(self, name) != getattr(defaults, name):
                parts.append(f"{flag} {getattr(self, name)}")
        return " ".join(parts)


@dataclass
class StressReport:
    """Figures of a run; `ok` when nothing was lost, duplicated or left diverging."""

    config: StressConfig
    rounds: int = 0
    sync_attempts: int = 0
    syncs_failed: int = 0  # attempts that ended with an error (expected under faults)
    kills: int = 0
    faults_armed: int = 0
    faults_fired: int = 0
    token_expiries: int = 0
    result_expiries: int = 0
    edits: int = 0  # edit operations made by users
    office_edits: int = 0  # edits made directly on the service by another user
    edit_values: int = 0  # values written (fields, geometries, adds, deletes, attachments)
    uploads_committed: int = 0
    replayed_adds: int = 0  # adds the service received again (resent after a lost answer)
    lost: int = 0
    duplicates: int = 0
    divergences: int = 0
    conflicts: int = 0  # conflict-log entries made (still logged + restored + dismissed)
    conflicts_restored: int = 0
    conflicts_dismissed: int = 0
    final_passes: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0 and self.duplicates == 0 and self.divergences == 0 and not self.problems
        )

    def lines(self) -> list[str]:
        return [
            f"rounds:            {self.rounds}",
            f"replicas:          {self.config.replicas}",
            f"sync attempts:     {self.sync_attempts} ({self.syncs_failed} failed, "
            f"{self.kills} killed, {self.final_passes} final passes)",
            f"faults injected:   {self.faults_fired} fired of {self.faults_armed} armed, "
            f"{self.result_expiries} result expiries, {self.token_expiries} token expiries",
            f"edits made:        {self.edits} offline ({self.edit_values} values), "
            f"{self.office_edits} on the service",
            f"uploads committed: {self.uploads_committed} ({self.replayed_adds} replayed adds)",
            f"conflicts logged:  {self.conflicts} ({self.conflicts_restored} restored, "
            f"{self.conflicts_dismissed} dismissed by users)",
            f"edits lost:        {self.lost}",
            f"duplicates:        {self.duplicates}",
            f"divergences:       {self.divergences}",
            f"time:              {self.seconds:.1f} s",
        ]


# ---------------------------------------------------------------------------------------------
# Normalisation: one comparable form for values from uploads, the service and GeoPackages


def parse_date(value: Any) -> int | None:
    """Epoch milliseconds from ms numbers or ISO text (as GeoPackages store dates)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = (
        datetime.fromisoformat(text) if "T" in text else datetime.fromisoformat(text + "T00:00:00")
    )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return round(parsed.timestamp() * 1000)


def date_text(ms: int) -> str:
    """How a GeoPackage (and the plugin) stores a date."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def norm_guid(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip().upper()
    return text if text.startswith("{") else "{" + text + "}"


def norm_value(esri_type: str, value: Any) -> Any:
    if value is None:
        return None
    if esri_type == "esriFieldTypeDate":
        return parse_date(value)
    if esri_type in ("esriFieldTypeGUID", "esriFieldTypeGlobalID"):
        return norm_guid(value)
    if esri_type == "esriFieldTypeSingle":
        return round(float(value), 3)
    if esri_type == "esriFieldTypeDouble":
        return round(float(value), 6)
    if esri_type in (
        "esriFieldTypeInteger",
        "esriFieldTypeSmallInteger",
        "esriFieldTypeBigInteger",
    ):
        return int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def geometry_print(geometry: dict | None) -> tuple | None:
    """A geometry as the sorted multiset of its vertices (ring orientation and part order do
    not matter; the harness's coordinates are unique per edit)."""
    if not geometry:
        return None
    points: list = []
    if "x" in geometry:
        if geometry.get("x") is None:
            return None
        points.append((geometry["x"], geometry["y"]))
    for key in ("points",):
        points.extend(geometry.get(key) or [])
    for key in ("paths", "rings"):
        for part in geometry.get(key) or []:
            points.extend(part)
    if not points:
        return None
    return tuple(sorted((round(float(p[0]), 3), round(float(p[1]), 3)) for p in points))


def data_print(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha1(bytes(data)).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Schema knowledge (from the replica's layer definitions)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    esri_type: str
    length: int | None
    codes: tuple  # coded values ("" for none)


@dataclass
class LayerInfo:
    id: int
    table: str
    geometry_type: str | None
    has_z: bool
    has_m: bool
    geometry_column: str | None
    gid_field: str
    attachment_table: str | None
    fields: dict[str, FieldInfo]  # lower-case name -> editable field
    fid_field: str = "OBJECTID"

    def field(self, name: str) -> FieldInfo | None:
        return self.fields.get(name.lower())


def layer_infos(layer_defs) -> dict[int, LayerInfo]:
    out = {}
    for layer in layer_defs:
        fields = {}
        for f in layer.uploadable_fields:
            domain = f.json.get("domain") or {}
            codes = tuple(c["code"] for c in domain.get("codedValues") or [])
            fields[f.name.lower()] = FieldInfo(f.name, f.esri_type, f.json.get("length"), codes)
        out[layer.id] = LayerInfo(
            id=layer.id,
            table=layer.table_name,
            geometry_type=layer.geometry_type,
            has_z=layer.has_z,
            has_m=layer.has_m,
            geometry_column=layer.geometry_column,
            gid_field=layer.global_id_field,
            attachment_table=layer.attachment_table,
            fields=fields,
            fid_field=layer.object_id_field,
        )
    return out


# ---------------------------------------------------------------------------------------------
# Rows in comparable form


@dataclass
class Row:
    attrs: dict[str, Any]  # lower-case field name -> normalised value
    geom: tuple | None

    def differences(self, other: Row, names) -> list[str]:
        out = [
            f"{n}: {self.attrs.get(n)!r} != {other.attrs.get(n)!r}"
            for n in names
            if self.attrs.get(n) != other.attrs.get(n)
        ]
        if self.geom != other.geom:
            out.append(f"geometry: {str(self.geom)[:80]} != {str(other.geom)[:80]}")
        return out


@dataclass
class AttRow:
    parent: str | None
    name: str | None
    content_type: str | None
    data: str | None  # hash

    def key(self) -> tuple:
        return (self.parent, self.name, self.content_type, self.data)


@dataclass
class State:
    """Features and attachments of one copy (service, model or replica), by GlobalID."""

    features: dict[int, dict[str, Row]]
    attachments: dict[int, dict[str, AttRow]]
    duplicates: list[str] = field(default_factory=list)


def attributes_row(info: LayerInfo, attributes: dict, geometry: dict | None) -> Row:
    attrs = {}
    for key, value in attributes.items():
        f = info.field(str(key))
        if f is not None:
            attrs[f.name.lower()] = norm_value(f.esri_type, value)
    return Row(attrs, geometry_print(geometry))


def service_state(server, infos: dict[int, LayerInfo]) -> State:
    state = State({}, {})
    for lid, info in infos.items():
        rows: dict[str, Row] = {}
        for feature in server.query_all(SERVICE, lid):
            gid = norm_guid(feature["attributes"].get(info.gid_field))
            if gid in rows:
                state.duplicates.append(f"service layer {lid}: GlobalID {gid} twice")
            row = attributes_row(info, feature["attributes"], feature.get("geometry"))
            for name in info.fields:  # absent fields are null
                row.attrs.setdefault(name, None)
            rows[gid] = row
        state.features[lid] = rows
        if info.attachment_table:
            atts: dict[str, AttRow] = {}
            for att in server.attachments(SERVICE, lid):
                agid = norm_guid(att["globalId"])
                if agid in atts:
                    state.duplicates.append(f"service layer {lid}: attachment {agid} twice")
                atts[agid] = AttRow(
                    norm_guid(att["parentGlobalId"]),
                    att["name"],
                    att["contentType"],
                    data_print(att["data"]),
                )
            state.attachments[lid] = atts
    return state


# ---------------------------------------------------------------------------------------------
# The model


class ServiceModel:
    """The service as the model sees it: the seed folded over committed uploads (see module
    docstring)."""

    def __init__(self, infos: dict[int, LayerInfo], initial: State):
        self.infos = infos
        self.features = {lid: dict(rows) for lid, rows in initial.features.items()}
        self.attachments = {lid: dict(rows) for lid, rows in initial.attachments.items()}
        self.replayed_adds = 0  # adds whose row already existed: resent uploads
        self.initial_features = {lid: set(rows) for lid, rows in initial.features.items()}
        self.initial_attachments = {lid: set(rows) for lid, rows in initial.attachments.items()}
        #: (layer, is attachment, GlobalID) -> [(commit tick, exists afterwards)]
        self.timeline: dict[tuple, list[tuple[int, bool]]] = defaultdict(list)

    def state(self) -> State:
        return State(self.features, self.attachments)

    def exists(self, lid: int, is_att: bool, gid: str, tick: int) -> bool:
        """Whether the row (or attachment) existed on the service just before `tick`."""
        present = gid in (self.initial_attachments if is_att else self.initial_features).get(
            lid, ()
        )
        for when, now in self.timeline.get((lid, is_att, gid), []):
            if when >= tick:
                break
            present = now
        return present

    def removed_since(self, lid: int, is_att: bool, gid: str, tick: int) -> bool:
        """Whether the service removed the row (or attachment) at or after `tick`."""
        return any(
            when >= tick and not now for when, now in self.timeline.get((lid, is_att, gid), [])
        )

    def apply(self, edits: list[dict], tick: int = 0) -> list[tuple]:
        """Apply one committed upload (committed at `tick`); returns the predicted outcome of
        every edit as (layer id, is attachment, kind, GlobalID, success, values or None)."""
        out: list[tuple] = []
        cascaded: list[tuple[int, str]] = []
        for entry in edits:
            lid = int(entry["id"])
            info = self.infos[lid]
            rows = self.features.setdefault(lid, {})
            part = entry.get("features") or {}
            for feature in part.get("adds") or []:
                attributes = feature.get("attributes") or {}
                gid = norm_guid(_attribute(attributes, info.gid_field))
                row = attributes_row(info, attributes, feature.get("geometry"))
                if gid in rows:
                    self.replayed_adds += 1
                    self._overwrite(rows[gid], row, "geometry" in feature)
                else:
                    stored = Row(dict.fromkeys(info.fields), row.geom)
                    stored.attrs.update(row.attrs)
                    rows[gid] = stored
                out.append((lid, False, "add", gid, True, (row, "geometry" in feature)))
            for feature in part.get("updates") or []:
                attributes = feature.get("attributes") or {}
                gid = norm_guid(_attribute(attributes, info.gid_field))
                row = attributes_row(info, attributes, feature.get("geometry"))
                if gid not in rows:
                    out.append((lid, False, "update", gid, False, None))
                    continue
                self._overwrite(rows[gid], row, "geometry" in feature)
                out.append((lid, False, "update", gid, True, (row, "geometry" in feature)))
            for ident in part.get("deleteIds") or []:
                gid = norm_guid(ident)
                if rows.pop(gid, None) is not None:
                    atts = self.attachments.get(lid, {})
                    for agid in [a for a, r in atts.items() if r.parent == gid]:
                        del atts[agid]
                        cascaded.append((lid, agid))
                out.append((lid, False, "delete", gid, True, None))
        for entry in edits:
            lid = int(entry["id"])
            part = entry.get("attachments") or {}
            atts = self.attachments.setdefault(lid, {})
            rows = self.features.get(lid, {})
            for kind in ("adds", "updates"):
                for item in part.get(kind) or []:
                    agid = norm_guid(item.get("globalId"))
                    data = base64.b64decode(item["data"]) if item.get("data") is not None else None
                    if kind == "adds":
                        parent = norm_guid(item.get("parentGlobalId"))
                        if parent not in rows:
                            out.append((lid, True, "add", agid, False, None))
                            continue
                        if agid not in atts:
                            atts[agid] = AttRow(
                                parent,
                                item.get("name"),
                                item.get("contentType") or "application/octet-stream",
                                data_print(data),
                            )
                            out.append((lid, True, "add", agid, True, replace(atts[agid])))
                            continue
                    if agid not in atts:
                        out.append((lid, True, "update", agid, False, None))
                        continue
                    current = atts[agid]
                    if item.get("name") is not None:
                        current.name = item["name"]
                    if item.get("contentType"):
                        current.content_type = item["contentType"]
                    if data is not None:
                        current.data = data_print(data)
                    out.append((lid, True, kind[:-1], agid, True, replace(current)))
            for ident in part.get("deleteIds") or []:
                agid = norm_guid(ident)
                atts.pop(agid, None)
                out.append((lid, True, "delete", agid, True, None))
        touched = {(o[0], o[1], o[3]) for o in out} | {(lid, True, a) for lid, a in cascaded}
        for lid, is_att, gid in sorted(touched, key=str):
            now = gid in (self.attachments if is_att else self.features).get(lid, {})
            self.timeline[(lid, is_att, gid)].append((tick, now))
        return out

    @staticmethod
    def _overwrite(target: Row, carried: Row, with_geometry: bool) -> None:
        target.attrs.update(carried.attrs)
        if with_geometry:
            target.geom = carried.geom


def _attribute(attributes: dict, name: str) -> Any:
    lower = name.lower()
    for key, value in attributes.items():
        if str(key).lower() == lower:
            return value
    return None


def _result_success(results: dict, lid: int, is_att: bool, kind: str, gid: str) -> bool | None:
    """What the service reported for one edit (None: not reported, which means success)."""
    entry = results.get(lid) or results.get(str(lid)) or {}
    if is_att:
        entry = entry.get("attachmentResults") or {}
    for item in entry.get(f"{kind}Results") or []:
        if norm_guid(item.get("globalId")) == gid:
            return bool(item.get("success"))
    return None


# ---------------------------------------------------------------------------------------------
# What users wrote


@dataclass
class Value:
    """One value a user wrote: a field, a geometry, an add, a delete, an attachment change."""

    replica: int
    tick: int
    layer: int
    gid: str
    key: str  # field name (lower case), GEOM, ADD, DELETE, ATT, ATT_DELETE
    value: Any
    is_att: bool = False
    parent: str | None = None  # for attachments
    edit: int = 0  # the edit operation it belongs to


@dataclass
class Carried:
    """One edit of a committed upload, as far as the no-loss check needs it."""

    tick: int
    kind: str
    applied: bool
    row: Row | None = None
    with_geometry: bool = False
    att: AttRow | None = None


# ---------------------------------------------------------------------------------------------
# A replica, edited the way other writers would


class Replica:
    """One offline map (one GeoPackage) and the edits a user makes in it."""

    def __init__(self, index: int, folder: Path, gpkg: Path, infos: dict[int, LayerInfo]):
        self.index = index
        self.folder = folder
        self.path = gpkg
        self.infos = infos
        self.replica_id: str | None = None
        self.sync_model = "perReplica"
        self.service_url = ""

    def connect(self) -> sqlite3.Connection:
        from plugin.core.gpkg_connection import register_functions

        con = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        # The spatial-index triggers GDAL writes call ST_* functions, as for any sqlite writer.
        register_functions(con)
        return con

    def gids(self, lid: int) -> list[str]:
        info = self.infos[lid]
        con = self.connect()
        try:
            rows = con.execute(
                f'SELECT "{info.gid_field}" FROM "{info.table}" ORDER BY "{info.gid_field}"'
            ).fetchall()
        finally:
            con.close()
        return [norm_guid(r[0]) for r in rows if r[0]]

    def attachment_rows(self, lid: int) -> list[tuple[str, str]]:
        info = self.infos[lid]
        con = self.connect()
        try:
            rows = con.execute(
                f'SELECT GLOBALID, REL_GLOBALID FROM "{info.attachment_table}" ORDER BY GLOBALID'
            ).fetchall()
        finally:
            con.close()
        return [(norm_guid(a), norm_guid(p)) for a, p in rows if a]

    def state(self) -> State:
        from plugin.core.geometry import gpkg_to_esri

        state = State({}, {})
        con = self.connect()
        con.row_factory = sqlite3.Row
        try:
            for lid, info in self.infos.items():
                rows: dict[str, Row] = {}
                for r in con.execute(f'SELECT * FROM "{info.table}"'):
                    gid = norm_guid(r[info.gid_field])
                    if gid in rows:
                        state.duplicates.append(f"replica {self.index} layer {lid}: {gid} twice")
                    attrs = {
                        name: norm_value(f.esri_type, r[f.name]) for name, f in info.fields.items()
                    }
                    geometry = None
                    if info.geometry_column and r[info.geometry_column] is not None:
                        geometry = gpkg_to_esri(
                            r[info.geometry_column], info.geometry_type, info.has_z, info.has_m
                        )
                    rows[gid] = Row(attrs, geometry_print(geometry))
                state.features[lid] = rows
                if info.attachment_table:
                    atts: dict[str, AttRow] = {}
                    for r in con.execute(f'SELECT * FROM "{info.attachment_table}"'):
                        agid = norm_guid(r["GLOBALID"])
                        if agid in atts:
                            state.duplicates.append(
                                f"replica {self.index} layer {lid}: attachment {agid} twice"
                            )
                        atts[agid] = AttRow(
                            norm_guid(r["REL_GLOBALID"]),
                            r["ATT_NAME"],
                            r["CONTENT_TYPE"],
                            data_print(r["DATA"]),
                        )
                    state.attachments[lid] = atts
        finally:
            con.close()
        return state

    def index_problems(self) -> list[str]:
        """How each layer's spatial index differs from its rows' extents (SQLite's
        ``rtreecheck``, and every entry against the extent of its row's geometry)."""
        from plugin.core.bulk_insert import envelope_row

        problems = []
        con = self.connect()
        try:
            for lid, info in self.infos.items():
                if not info.geometry_column:
                    continue
                rtree = f"rtree_{info.table}_{info.geometry_column}"
                check = con.execute(f'SELECT rtreecheck("{rtree}")').fetchone()[0]
                if check != "ok":
                    problems.append(f"replica {self.index} layer {lid}: index: {check[:200]}")
                # What SQLite's module holds for the rows' extents (rounded as it rounds).
                con.execute("CREATE VIRTUAL TABLE temp.expected USING rtree(id, a, b, c, d)")
                boxes = (
                    envelope_row(fid, blob)
                    for fid, blob in con.execute(
                        f'SELECT "{info.fid_field}", "{info.geometry_column}" FROM "{info.table}"'
                    )
                )
                con.executemany(
                    "INSERT INTO temp.expected VALUES (?, ?, ?, ?, ?)",
                    [box for box in boxes if box is not None],
                )
                wrong = con.execute(
                    f'SELECT count(*) FROM (SELECT * FROM "{rtree}" EXCEPT SELECT * FROM'
                    f" temp.expected UNION ALL SELECT * FROM temp.expected EXCEPT"
                    f' SELECT * FROM "{rtree}")'
                ).fetchone()[0]
                con.execute("DROP TABLE temp.expected")
                if wrong:
                    problems.append(
                        f"replica {self.index} layer {lid}: {wrong} index entries wrong"
                    )
        finally:
            con.close()
        return problems

    def bookkeeping(self) -> tuple[bool, bool, list]:
        """(has pending edits, has an unfinished upload, conflicts)."""
        from plugin.core.geodatabase import Geodatabase

        with Geodatabase.open(self.path) as gdb:
            return gdb.has_pending_edits(), gdb.journal_open_entry() is not None, gdb.conflicts()

    # -- edits ---------------------------------------------------------------------------
    @staticmethod
    def local_value(f: FieldInfo, value: Any) -> Any:
        if value is None:
            return None
        if f.esri_type == "esriFieldTypeDate":
            return date_text(value)
        return value

    def update(self, lid: int, gid: str, values: dict[str, Any]) -> dict[str, Any]:
        """Writes `values` (lower-case field names); returns the normalised values that
        differ from what the row held (writing an unchanged value is no edit)."""
        info = self.infos[lid]
        names = list(values)
        sets = ", ".join(f'"{info.field(n).name}" = ?' for n in names)
        con = self.connect()
        try:
            quoted = ", ".join(f'"{info.field(n).name}"' for n in names)
            before = con.execute(
                f'SELECT {quoted} FROM "{info.table}" WHERE upper("{info.gid_field}") = ?', [gid]
            ).fetchone()
            changed = {}
            for name, old in zip(names, before or ()):
                f = info.field(name)
                if norm_value(f.esri_type, old) != norm_value(f.esri_type, values[name]):
                    changed[name] = norm_value(f.esri_type, values[name])
            cur = con.execute(
                f'UPDATE "{info.table}" SET {sets} WHERE upper("{info.gid_field}") = ?',
                [self.local_value(info.field(n), values[n]) for n in names] + [gid],
            )
            if cur.rowcount != 1:
                raise AssertionError(f"harness: no row {gid} in {info.table}")
        finally:
            con.close()
        return changed

    def delete(self, lid: int, gid: str) -> None:
        info = self.infos[lid]
        con = self.connect()
        try:
            con.execute(f'DELETE FROM "{info.table}" WHERE upper("{info.gid_field}") = ?', [gid])
        finally:
            con.close()

    def add(self, lid: int, values: dict[str, Any], wkt: str | None, gid: str | None) -> str:
        """A new row (through OGR for layers, sqlite for tables); `gid` None lets the database
        mint the GlobalID. Returns the GlobalID."""
        info = self.infos[lid]
        if info.geometry_column is None:
            con = self.connect()
            try:
                cols = [info.field(n).name for n in values]
                args = [self.local_value(info.field(n), values[n]) for n in values]
                if gid is not None:
                    cols.append(info.gid_field)
                    args.append(gid)
                quoted = ", ".join(f'"{c}"' for c in cols)
                cur = con.execute(
                    f'INSERT INTO "{info.table}" ({quoted}) VALUES ({", ".join("?" * len(cols))})',
                    args,
                )
                fid = cur.lastrowid
            finally:
                con.close()
        else:
            from osgeo import ogr

            ds = ogr.Open(str(self.path), update=1)
            try:
                layer = ds.GetLayerByName(info.table)
                feature = ogr.Feature(layer.GetLayerDefn())
                for name, value in values.items():
                    f = info.field(name)
                    local = self.local_value(f, value)
                    if local is None:
                        feature.SetFieldNull(f.name)
                    else:
                        feature.SetField(f.name, local)
                if gid is not None:
                    feature.SetField(info.gid_field, gid)
                feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
                if layer.CreateFeature(feature) != 0:
                    raise AssertionError(f"harness: OGR could not add to {info.table}")
                fid = feature.GetFID()
            finally:
                ds = None
        con = self.connect()
        try:
            row = con.execute(
                f'SELECT "{info.gid_field}" FROM "{info.table}" WHERE rowid = ?', (fid,)
            ).fetchone()
        finally:
            con.close()
        minted = norm_guid(row[0]) if row else None
        if not minted:
            raise AssertionError(f"harness: the new row of {info.table} has no GlobalID")
        return minted

    def set_geometry(self, lid: int, gid: str, wkt: str) -> None:
        from osgeo import ogr

        info = self.infos[lid]
        ds = ogr.Open(str(self.path), update=1)
        try:
            layer = ds.GetLayerByName(info.table)
            layer.SetAttributeFilter(f"upper(\"{info.gid_field}\") = '{gid}'")
            feature = layer.GetNextFeature()
            if feature is None:
                raise AssertionError(f"harness: no row {gid} in {info.table}")
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
            if layer.SetFeature(feature) != 0:
                raise AssertionError("harness: OGR could not write the geometry")
        finally:
            ds = None

    def add_attachment(
        self, lid: int, parent: str, name: str, content_type: str, data: bytes, gid: str | None
    ) -> str:
        info = self.infos[lid]
        con = self.connect()
        try:
            cols = ["REL_GLOBALID", "CONTENT_TYPE", "ATT_NAME", "DATA_SIZE", "DATA"]
            args: list = [parent, content_type, name, len(data), data]
            if gid is not None:
                cols.append("GLOBALID")
                args.append(gid)
            cur = con.execute(
                f'INSERT INTO "{info.attachment_table}" ({", ".join(cols)}) '
                f"VALUES ({', '.join('?' * len(cols))})",
                args,
            )
            row = con.execute(
                f'SELECT GLOBALID FROM "{info.attachment_table}" WHERE rowid = ?',
                (cur.lastrowid,),
            ).fetchone()
        finally:
            con.close()
        if not row or not row[0]:
            raise AssertionError("harness: the new attachment has no GlobalID")
        return norm_guid(row[0])

    def update_attachment(self, lid: int, agid: str, name: str, data: bytes) -> None:
        info = self.infos[lid]
        con = self.connect()
        try:
            cur = con.execute(
                f'UPDATE "{info.attachment_table}" SET ATT_NAME = ?, DATA = ?, DATA_SIZE = ? '
                "WHERE upper(GLOBALID) = ?",
                (name, data, len(data), agid),
            )
            if cur.rowcount != 1:
                raise AssertionError(f"harness: no attachment {agid}")
        finally:
            con.close()

    def delete_attachment(self, lid: int, agid: str) -> None:
        info = self.infos[lid]
        con = self.connect()
        try:
            con.execute(f'DELETE FROM "{info.attachment_table}" WHERE upper(GLOBALID) = ?', (agid,))
        finally:
            con.close()


# ---------------------------------------------------------------------------------------------
# The sync worker (a separate process that can be killed)


def _emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


_CREDENTIALS: dict = {}


def _worker_sync(command: dict) -> dict:
    """One sync of the worker; returns the final report line."""
    from plugin.core.enums import SyncDirection
    from plugin.core.geodatabase_sync import GeodatabaseSyncTask
    from plugin.core.rest import ArcGISClient, TokenCredentials
    from plugin.core.sync import OfflineMapSyncTask
    from plugin.core.sync_model import SyncGeodatabaseParameters, SyncLayerOption

    credentials = None
    if command.get("token_url"):
        # One sign-in per worker, as in a QGIS session: the cached token may expire meanwhile.
        credentials = _CREDENTIALS.get(command["token_url"])
        if credentials is None:
            credentials = TokenCredentials(
                command["token_url"], USER, PASSWORD, plain_http_hosts=["127.0.0.1"]
            )
            _CREDENTIALS[command["token_url"]] = credentials
    client = ArcGISClient(
        credentials, backoff=0.01, poll_interval=0.02, timeout=15, retries=2, job_timeout=60
    )
    handshake = bool(command.get("handshake"))
    last: list[str] = []

    def listener(percent: int, message: str) -> None:
        if last and last[-1] == message:
            return
        last.append(message)
        _emit({"progress": percent, "message": message})
        if handshake:
            sys.stdin.readline()  # the parent answers "go" (or kills this process)

    try:
        if command.get("layer_directions"):
            # One geodatabase, per-layer directions (SDK GeodatabaseSyncTask + SyncLayerOption).
            gdb_task = GeodatabaseSyncTask(command["service_url"], client=client)
            gdb_params = SyncGeodatabaseParameters(
                layer_options=[
                    SyncLayerOption(int(lid), SyncDirection[name])
                    for lid, name in command["layer_directions"].items()
                ]
            )
            if command.get("upload_limit"):
                gdb_params.max_attachment_upload_bytes = int(command["upload_limit"])
            job = gdb_task.sync_geodatabase(gdb_params, command["gpkg"])
            job.add_progress_listener(listener)
            results = job.run()
            error = None
        else:
            task = OfflineMapSyncTask(command["folder"], client=client)
            params = task.create_default_offline_map_sync_parameters()
            params.sync_direction = SyncDirection[command["direction"]]
            if command.get("upload_limit"):
                params.max_attachment_upload_bytes = int(command["upload_limit"])
            job = task.create_offline_map_sync_job(params)
            job.add_progress_listener(listener)
            result = job.run()
            results = result.all_results()
            error = "; ".join(result.geodatabase_errors.values()) or None
    except Exception as failure:  # reported, not raised: the parent decides
        return {"done": True, "error": f"{type(failure).__name__}: {failure}"}
    return {
        "done": True,
        "error": error,
        "edit_errors": [
            [r.layer_id, e.kind, e.code, e.global_id] for r in results for e in r.edit_errors
        ],
        "conflicts": sum(r.conflicts for r in results),
    }


def _worker_main() -> int:
    """`python -m tests.convergence worker`: runs syncs given as JSON lines on stdin; reports
    progress and results as JSON lines on stdout. With "handshake", it waits for a line from
    stdin after every new progress message (so the parent can kill it exactly there)."""
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("quit"):
            break
        _emit(_worker_sync(command))
    return 0


class Worker:
    """A sync worker process; restarted after it is killed."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.log_path = log_path

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        stderr = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.convergence", "worker"],
            cwd=str(ROOT),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            encoding="utf-8",
        )
        if self.log_path:
            stderr.close()  # the child has its own handle
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line)
        proc.stdout.close()
        lines.put(None)

    def sync(
        self,
        command: dict,
        kill_at: int | None,
        on_pause=None,
        kill_after: float | None = None,
    ) -> tuple[str, dict]:
        """Run one sync. `kill_at`: kill the worker (SIGKILL) at that progress message;
        `kill_after`: kill it after that many seconds (wherever it is: not reproducible);
        `on_pause(number, message)` runs while the worker waits at each progress message.
        Returns ("done", result), ("killed", {"at": message}), ("hung" | "crashed", {...})."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        handshake = kill_at is not None or on_pause is not None
        command = dict(command, handshake=handshake)
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        started = time.monotonic()
        deadline = started + SYNC_TIMEOUT
        kill_time = None if kill_after is None else started + kill_after
        seen = 0
        last = ""
        while True:
            until = deadline if kill_time is None else min(deadline, kill_time)
            try:
                line = self.lines.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                self.kill()
                if kill_time is not None and time.monotonic() < deadline:
                    return "killed", {"at": f"{kill_after:.3f} s, after {last!r}"}
                return "hung", {"after": seen}
            if line is None:
                self._forget()
                return "crashed", {"after": seen}
            message = json.loads(line)
            if message.get("done"):
                return "done", message
            seen += 1
            last = message.get("message") or ""
            if kill_at is not None and seen >= kill_at:
                self.kill()
                return "killed", {"at": message.get("message")}
            if handshake:
                if on_pause is not None:
                    on_pause(seen, message.get("message") or "")
                self.proc.stdin.write("go\n")
                self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self._forget()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._forget()

    def _forget(self) -> None:
        # The reader thread closes stdout at its end; stdin is ours to close.
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass  # the worker is gone: its pipe is broken


# ---------------------------------------------------------------------------------------------
# The run


class Stress:
    def __init__(self, config: StressConfig, workdir: Path):
        self.config = config
        self.workdir = Path(workdir)
        self.rng = random.Random(config.seed)
        self.report = StressReport(config)
        self.tick = 0
        self.counter = 0  # makes every written value unique
        self.values: list[Value] = []
        self.commits: list[tuple[int, dict]] = []  # (tick, record) in commit order
        self.minted: set[str] = set()
        self.replicas: list[Replica] = []
        self.worker = Worker(self.workdir / "worker-stderr.log")
        self.server = None
        self.hot: dict[int, list[str]] = {}
        self.dismissed: dict[int, list] = defaultdict(list)  # conflicts users dismissed
        self.log_lines: list[str] = []
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Every edit, fault and sync, kept with the working folder (for failed runs).
        self._log_file = open(self.workdir / "stress.log", "w", encoding="utf-8")  # noqa: SIM115

    def log(self, text: str) -> None:
        self.log_lines.append(text)
        if self.config.verbose:
            print(text, flush=True)
        if self._log_file is not None:
            self._log_file.write(text + "\n")

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        from tests.featureservice.server import ReferenceServer

        users = {USER: PASSWORD} if self.config.auth else None
        self.server = ReferenceServer(self.workdir / "service", seed="demo", users=users).start()
        self.server.add_sync_listener(self._committed)
        count = self.config.replicas
        preplanned = self.config.preplanned and count >= 2
        for index in range(count - 1 if preplanned else count):
            self.replicas.append(self._take_offline(index))
        if preplanned:
            self.replicas.append(self._take_area_offline(count - 1))
        self.infos = self.replicas[0].infos
        self.initial = service_state(self.server, self.infos)
        self.model = ServiceModel(self.infos, self.initial)
        for lid, rows in self.initial.features.items():
            self.minted.update(rows)
            self.hot[lid] = sorted(rows)[:3]
        for atts in self.initial.attachments.values():
            self.minted.update(atts)

    def _client(self):
        from plugin.core.rest import ArcGISClient, TokenCredentials

        credentials = None
        if self.config.auth:
            credentials = TokenCredentials(
                self.server.token_url, USER, PASSWORD, plain_http_hosts=self.server.plain_http_hosts
            )
        return ArcGISClient(credentials, backoff=0.01, poll_interval=0.02, timeout=15, retries=2)

    def _take_offline(self, index: int) -> Replica:
        from plugin.core.enums import SyncModel
        from plugin.core.take_offline import OfflineMapTask

        model = self.config.sync_model
        if model == "mixed":
            model = "perReplica" if index % 2 == 0 else "perLayer"
        task = OfflineMapTask(
            service_urls=[self.server.service_url(SERVICE)], client=self._client()
        )
        params = task.create_default_generate_offline_map_parameters(None)
        params.sync_model = SyncModel(model)
        params.include_attachments = True
        folder = self.workdir / f"replica{index}"
        offline_map = task.generate_offline_map(params, folder).run().offline_map
        return self._replica(index, folder, offline_map, "on demand")

    def _replica(self, index: int, folder: Path, offline_map: Any, how: str) -> Replica:
        from plugin.core.geodatabase import Geodatabase

        gpkg = offline_map.geodatabases[0].path
        with Geodatabase.open(gpkg) as gdb:
            infos = layer_infos(gdb.layers)
            replica_id = norm_guid(gdb.replica.replica_id)
            model = gdb.replica.sync_model.value
        replica = Replica(index, folder, Path(gpkg), infos)
        replica.replica_id = replica_id
        replica.sync_model = model
        replica.service_url = self.server.service_url(SERVICE)
        self.log(f"replica {index}: {how}, {model}, {replica_id}")
        return replica

    def _take_area_offline(self, index: int) -> Replica:
        """A preplanned map area in SyncWithFeatureServices mode, downloaded after the service
        changed since its package was built (part of the initial state of the model)."""
        from plugin.core.enums import PreplannedUpdateMode
        from plugin.core.take_offline import OfflineMapTask
        from tests.featureservice.packages import AreaSpec, prepare_map_areas
        from tests.featureservice.seed import DEMO_WEBMAP_ID

        prepare_map_areas(
            self.server.app.store,
            self.server.data_dir,
            areas=(AreaSpec(AREA, (-1000.0, -1000.0, 1000.0, 1000.0)),),
        )
        first = sorted(f["attributes"]["GlobalID"] for f in self.server.query_all(SERVICE, POINTS))
        self.server.apply_edits(
            SERVICE, POINTS, updates=[{"GlobalID": first[0], "name": "after the package"}]
        )
        self.server.apply_edits(
            SERVICE,
            POINTS,
            adds=[
                {"attributes": {"name": "added after the package"}, "geometry": {"x": X0, "y": Y0}}
            ],
        )
        task = OfflineMapTask(
            portal_url=self.server.portal_url, webmap_item_id=DEMO_WEBMAP_ID, client=self._client()
        )
        area = next(a for a in task.preplanned_map_areas() if a.title == AREA)
        params = task.create_default_download_preplanned_offline_map_parameters(area)
        params.update_mode = PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES
        folder = self.workdir / f"replica{index}"
        offline_map = task.download_preplanned_offline_map(params, folder).run().offline_map
        return self._replica(index, folder, offline_map, "preplanned area")

    def _committed(self, record: dict) -> None:
        # Called by the service's writer thread right after an upload committed.
        self.commits.append((self.tick, record))

    # -- edits ---------------------------------------------------------------------------
    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _record(self, replica: Replica, lid: int, gid: str, key: str, value: Any, **kw) -> None:
        self.values.append(
            Value(replica.index, self.tick, lid, gid, key, value, edit=self.report.edits, **kw)
        )

    def _value(self, replica: Replica | None, f: FieldInfo) -> Any:
        """A new value for `f`, unique where the type allows (`replica` None: the office)."""
        n = self._next()
        who = "office" if replica is None else f"r{replica.index}"
        t = f.esri_type
        if f.codes:
            return self.rng.choice(f.codes)
        if t == "esriFieldTypeString":
            text = f"{who}.{n} äé+&'\"%"
            return text[: f.length] if f.length else text
        if t == "esriFieldTypeSmallInteger":
            return n % 32000
        if t in ("esriFieldTypeInteger", "esriFieldTypeBigInteger"):
            return n
        if t in ("esriFieldTypeDouble",):
            return n + 0.25
        if t == "esriFieldTypeSingle":
            return float(n % 1000) + 0.5
        if t == "esriFieldTypeDate":
            return DATE_BASE + n * 60_000
        if t == "esriFieldTypeGUID":
            points = sorted(self.model_points()) if replica is None else replica.gids(POINTS)
            if f.name.lower() == "pointglobalid" and points:
                return self.rng.choice(points)
            return norm_guid(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
        return None

    def _editable(self, info: LayerInfo) -> list[FieldInfo]:
        return [f for f in info.fields.values() if f.esri_type != "esriFieldTypeSingle"]

    def model_points(self) -> list[str]:
        return [f["attributes"]["GlobalID"] for f in self.server.query_all(SERVICE, POINTS)]

    def _geometry(self, replica: Replica | None, lid: int) -> tuple[str, dict]:
        n = self._next()
        row = -1 if replica is None else replica.index
        x, y = X0 + n * 7.0, Y0 + row * 11.0 + (n % 13)
        if lid == POINTS:
            return f"POINT ({x} {y})", {"x": x, "y": y}
        if lid == LINES:
            path = [[x, y], [x + 10, y + 7], [x + 20, y + 1]]
            text = ", ".join(f"{a} {b}" for a, b in path)
            return f"MULTILINESTRING (({text}))", {"paths": [path]}
        ring = [[x, y], [x + 10, y], [x + 10, y + 10], [x, y + 10], [x, y]]
        text = ", ".join(f"{a} {b}" for a, b in ring)
        return f"MULTIPOLYGON ((({text})))", {"rings": [ring]}

    def _target(self, replica: Replica, lid: int) -> str | None:
        gids = replica.gids(lid)
        if not gids:
            return None
        hot = [g for g in self.hot.get(lid, []) if g in gids]
        if hot and self.rng.random() < self.config.hot_rate:
            return self.rng.choice(hot)
        return self.rng.choice(gids)

    def edit(self, replica: Replica) -> None:
        operations = [
            ("update", 30),
            ("geometry", 12),
            ("add", 10),
            ("delete", 5),
            ("related_add", 8),
            ("related_update", 8),
            ("attachment_add", 8),
            ("attachment_update", 5),
            ("attachment_delete", 4),
            ("conflict", 4),
        ]
        op = self.rng.choices([o for o, _ in operations], [w for _, w in operations])[0]
        spatial = [POINTS, LINES, POLYGONS]
        if op in ("update", "geometry", "add", "delete"):
            lid = self.rng.choice(spatial + ([INSPECTIONS] if op != "geometry" else []))
        elif op.startswith("related"):
            lid = INSPECTIONS
            op = op.split("_")[1]
        else:
            lid = POINTS
        info = self.infos[lid]
        self.tick += 1
        if op == "conflict":
            self.resolve_conflict(replica)
        elif op == "update":
            gid = self._target(replica, lid)
            if gid is None:
                return
            fields = self.rng.sample(self._editable(info), k=self.rng.randint(1, 3))
            values = {f.name.lower(): self._value(replica, f) for f in fields}
            changed = replica.update(lid, gid, values)
            self.report.edits += 1
            for name, value in changed.items():
                self._record(replica, lid, gid, name, value)
            self.log(f"  r{replica.index} update {lid} {gid[:9]} {sorted(values)}")
        elif op == "geometry":
            gid = self._target(replica, lid)
            if gid is None:
                return
            wkt, geometry = self._geometry(replica, lid)
            replica.set_geometry(lid, gid, wkt)
            self.report.edits += 1
            self._record(replica, lid, gid, GEOM, geometry_print(geometry))
            self.log(f"  r{replica.index} geometry {lid} {gid[:9]}")
        elif op == "add":
            values = {f.name.lower(): self._value(replica, f) for f in self._editable(info)}
            wkt, geometry = (None, None)
            if info.geometry_column:
                wkt, geometry = self._geometry(replica, lid)
            gid = None
            if self.rng.random() < 0.7:
                gid = norm_guid(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
            gid = replica.add(lid, values, wkt, gid)
            self.minted.add(gid)
            self.report.edits += 1
            self._record(replica, lid, gid, ADD, True)
            for name, value in values.items():
                self._record(replica, lid, gid, name, norm_value(info.field(name).esri_type, value))
            if geometry is not None:
                self._record(replica, lid, gid, GEOM, geometry_print(geometry))
            if self.rng.random() < 0.3:  # new features become hot too
                self.hot.setdefault(lid, []).append(gid)
            self.log(f"  r{replica.index} add {lid} {gid[:9]}")
        elif op == "delete":
            gid = self._target(replica, lid)
            if gid is None or len(replica.gids(lid)) <= 2:
                return
            replica.delete(lid, gid)
            self.report.edits += 1
            self._record(replica, lid, gid, DELETE, True)
            self.log(f"  r{replica.index} delete {lid} {gid[:9]}")
        elif op == "attachment_add":
            parent = self._target(replica, POINTS)
            if parent is None:
                return
            n = self._next()
            size = self.rng.randint(1, 64)
            if self.rng.random() < self.config.oversize_rate:
                size = UPLOAD_LIMIT + self.rng.randint(1, 512)  # stays pending until the end
            data = f"attachment {n} of r{replica.index}: ".encode() + bytes(
                self.rng.getrandbits(8) for _ in range(size)
            )
            name = f"file_{n}.bin"
            gid = None
            if self.rng.random() < 0.7:
                gid = norm_guid(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
            agid = replica.add_attachment(
                POINTS, parent, name, "application/octet-stream", data, gid
            )
            self.minted.add(agid)
            self.report.edits += 1
            self._record(
                replica, POINTS, agid, ATT, (name, data_print(data)), is_att=True, parent=parent
            )
            self.log(f"  r{replica.index} attachment add {agid[:9]} on {parent[:9]}")
        elif op in ("attachment_update", "attachment_delete"):
            rows = replica.attachment_rows(POINTS)
            if not rows:
                return
            agid, parent = self.rng.choice(rows)
            if op == "attachment_update":
                n = self._next()
                data = f"updated {n} by r{replica.index}".encode()
                name = f"file_{n}.bin"
                replica.update_attachment(POINTS, agid, name, data)
                value = (name, data_print(data))
                self._record(replica, POINTS, agid, ATT, value, is_att=True, parent=parent)
            else:
                replica.delete_attachment(POINTS, agid)
                self._record(replica, POINTS, agid, ATT_DELETE, True, is_att=True, parent=parent)
            self.report.edits += 1
            self.log(f"  r{replica.index} {op} {agid[:9]}")

    def resolve_conflict(self, replica: Replica) -> None:
        """The user restores (mostly) or dismisses a logged conflict. A restored local version
        is a new edit of every value it holds; a dismissed one stays accounted for."""
        from plugin.core.geodatabase import Geodatabase

        with Geodatabase.open(replica.path) as gdb:
            conflicts = gdb.conflicts()
            if not conflicts:
                return
            c = self.rng.choice(conflicts)
            gid = norm_guid(c.global_id)
            restore = self.rng.random() < 0.7
            if restore:
                info = self.infos[c.layer_id]
                exists = gid in (
                    [a for a, _p in replica.attachment_rows(c.layer_id)]
                    if c.is_attachment
                    else replica.gids(c.layer_id)
                )
                gdb.restore_conflict(c.id)
            else:
                gdb.dismiss_conflict(c.id)
        self.report.edits += 1
        if restore:
            self.report.conflicts_restored += 1
        else:
            self.report.conflicts_dismissed += 1
            self.dismissed[replica.index].append(c)
            self.log(f"  r{replica.index} dismisses conflict {c.local_operation} {gid[:9]}")
            return
        self.log(f"  r{replica.index} restores conflict {c.local_operation} {gid[:9]}")
        attrs = {str(k).lower(): v for k, v in (c.attributes or {}).items()}
        if c.is_attachment:
            parent = norm_guid(attrs.get("rel_globalid"))
            if c.local_operation == "delete":
                self._record(replica, c.layer_id, gid, ATT_DELETE, True, is_att=True, parent=parent)
            else:
                data = attrs.get("data")
                data = data if isinstance(data, (bytes, bytearray)) else None
                value = (attrs.get("att_name"), data_print(data))
                self._record(replica, c.layer_id, gid, ATT, value, is_att=True, parent=parent)
            return
        if c.local_operation == "delete":
            self._record(replica, c.layer_id, gid, DELETE, True)
            return
        if not exists:
            self._record(replica, c.layer_id, gid, ADD, True)
        for name, f in info.fields.items():
            if name in attrs:
                self._record(replica, c.layer_id, gid, name, norm_value(f.esri_type, attrs[name]))
        if info.geometry_column and c.geometry is not None:
            self._record(replica, c.layer_id, gid, GEOM, geometry_print(c.geometry))

    def office_edit(self) -> None:
        """Another user edits the service directly (not through a replica): an update of
        attributes or geometry, an add, or a delete. Recorded in the commit order like an
        upload (nothing else commits meanwhile: jobs of killed workers were waited for)."""
        lid = self.rng.choice([POINTS, LINES, POLYGONS, INSPECTIONS])
        info = self.infos[lid]
        gids = sorted(
            norm_guid(f["attributes"][info.gid_field]) for f in self.server.query_all(SERVICE, lid)
        )
        op = self.rng.choices(["update", "add", "delete"], [8, 2, 1])[0]
        if op != "add" and len(gids) <= 2:
            return
        self.server.app.wait_for_jobs(timeout=30)
        edits: dict[str, list] = {}
        feature: dict[str, Any] = {"attributes": {}}
        if op == "update":
            hot = [g for g in self.hot.get(lid, []) if g in gids]
            gid = self.rng.choice(hot if hot and self.rng.random() < 0.5 else gids)
            feature["attributes"][info.gid_field] = gid
            if info.geometry_column and self.rng.random() < 0.4:
                feature["geometry"] = self._geometry(None, lid)[1]
            else:
                for f in self.rng.sample(self._editable(info), k=self.rng.randint(1, 2)):
                    feature["attributes"][f.name] = self._value(None, f)
            edits["updates"] = [feature]
        elif op == "add":
            gid = norm_guid(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
            self.minted.add(gid)
            feature["attributes"][info.gid_field] = gid
            for f in self._editable(info):
                feature["attributes"][f.name] = self._value(None, f)
            if info.geometry_column:
                feature["geometry"] = self._geometry(None, lid)[1]
            edits["adds"] = [feature]
        else:
            gid = self.rng.choice(gids)
            edits["deleteIds"] = [gid]
        results = self.server.apply_edits(
            SERVICE,
            lid,
            adds=edits.get("adds", ()),
            updates=edits.get("updates", ()),
            deletes=edits.get("deleteIds", ()),
        )
        self.commits.append(
            (
                self.tick,
                {
                    "replicaID": None,
                    "edits": [{"id": lid, "features": edits}],
                    "results": {lid: results},
                },
            )
        )
        self.report.office_edits += 1
        self.log(f"  office {op} {lid} {gid[:9]}")

    # -- syncs ---------------------------------------------------------------------------
    def _arm_faults(self) -> int:
        armed = 0
        if self.rng.random() >= self.config.fault_rate:
            return 0
        for _ in range(self.rng.randint(1, 2)):
            operation = self.rng.choice(FAULT_OPERATIONS)
            kinds = POST_KINDS if operation == "synchronizeReplica" else GET_KINDS
            kind = self.rng.choice(kinds)
            count = self.rng.randint(1, 3)
            self.server.inject_fault(operation, kind, count)
            armed += count
            self.log(f"  fault {operation} {kind} x{count}")
        return armed

    def sync(self, replica: Replica, direction: str, *, faults: bool = True) -> str:
        self.tick += 1
        self.report.sync_attempts += 1
        armed = 0
        kill_at = kill_after = None
        if faults:
            armed = self._arm_faults()
            if self.rng.random() < 0.1:
                self.report.result_expiries += 1
                self.server.expire_results()
                self.log("  results expired")
            if self.config.auth and self.rng.random() < 0.15:
                self.report.token_expiries += 1
                self.server.expire_tokens()
                self.log("  tokens expired")
            if self.rng.random() < self.config.kill_rate:
                kill_at = self.rng.randint(1, 8)
                if self.config.timed_kills:
                    kill_at, kill_after = None, self.rng.uniform(0.0, 0.25)
        edit_at = expire_at = None
        edits = 0
        if faults and self.rng.random() < self.config.concurrent_rate:
            edit_at = self.rng.randint(1, 6)
            edits = self.rng.randint(1, 2)
        if faults and self.config.auth and self.rng.random() < 0.15:
            expire_at = self.rng.randint(1, 6)  # the worker's cached token dies mid-sync
        on_pause = None
        if edit_at is not None or expire_at is not None:

            def on_pause(number: int, message: str) -> None:
                if number == expire_at:
                    self.report.token_expiries += 1
                    self.server.expire_tokens()
                    self.log(f"  tokens expired during the sync, at {message!r}")
                # Not while the worker is inside its commit transaction ("Applied ..."): the
                # user's writer would wait for it, and it waits for us.
                if number == edit_at and not message.startswith("Applied"):
                    self.log(f"  r{replica.index} edits during the sync, at {message!r}")
                    for _ in range(edits):
                        self.edit(replica)

        command = {
            "folder": str(replica.folder),
            "direction": direction,
            "token_url": self.server.token_url if self.config.auth else None,
            # The random syncs leave large attachments pending; the final round takes them.
            "upload_limit": UPLOAD_LIMIT if faults else None,
        }
        if (
            faults
            and replica.sync_model == "perLayer"
            and self.rng.random() < self.config.per_layer_rate
        ):
            # Each layer its own way (download-only layers keep their pending edits).
            names = ["BIDIRECTIONAL", "UPLOAD", "DOWNLOAD", "NONE"]
            command["layer_directions"] = {
                str(lid): self.rng.choices(names, [4, 2, 2, 1])[0] for lid in sorted(self.infos)
            }
            command["gpkg"] = str(replica.path)
            command["service_url"] = replica.service_url
            direction = "layers " + ",".join(
                f"{lid}:{d[:2]}" for lid, d in command["layer_directions"].items()
            )
        outcome, details = self.worker.sync(command, kill_at, on_pause, kill_after)
        if armed:
            left = sum(f["remaining"] for f in self.server.app.faults.pending())
            self.report.faults_armed += armed
            self.report.faults_fired += armed - left
            self.server.clear_faults()
        if outcome == "killed":
            self.report.kills += 1
            # A killed client's server job may still be running: let it finish, as it would.
            self.server.app.wait_for_jobs(timeout=30)
        elif outcome in ("hung", "crashed"):
            self.report.problems.append(
                f"sync of replica {replica.index} ({direction}) {outcome} {details} "
                f"(worker errors: {self.worker.log_path})"
            )
        elif details.get("error"):
            self.report.syncs_failed += 1
        text = details.get("error") or details.get("at") or ""
        kill = kill_at if kill_after is None else f"{kill_after:.3f}s"
        self.log(f"  sync r{replica.index} {direction} kill={kill}: {outcome} {text[:150]}")
        return outcome if outcome != "done" or not details.get("error") else "failed"

    # -- rounds --------------------------------------------------------------------------
    def round(self, number: int) -> None:
        self.log(f"round {number}")
        editors = self.rng.sample(self.replicas, k=self.rng.randint(1, min(2, len(self.replicas))))
        for replica in editors:
            for _ in range(self.rng.randint(1, self.config.max_edits)):
                self.edit(replica)
        if self.rng.random() < self.config.office_rate:
            self.office_edit()
        for _ in range(self.rng.randint(1, 2)):
            replica = self.rng.choice(self.replicas)
            allowed = [d.strip().upper() for d in self.config.directions.split(",")]
            weights = {"BIDIRECTIONAL": 6, "UPLOAD": 2, "DOWNLOAD": 2}
            choices = [d for d in ("BIDIRECTIONAL", "UPLOAD", "DOWNLOAD") if d in allowed]
            direction = self.rng.choices(choices, [weights[d] for d in choices])[0]
            self.sync(replica, direction)
        self.report.rounds = number

    def final_round(self) -> None:
        self.log("final round")
        self.server.clear_faults()
        self.server.app.wait_for_jobs(timeout=30)
        for number in range(1, 7):
            before = len(self.commits)
            failures = 0
            for replica in self.replicas:
                outcome = self.sync(replica, "BIDIRECTIONAL", faults=False)
                failures += outcome != "done"
            self.report.final_passes = number
            if number >= 2 and len(self.commits) == before and not failures:
                return
        self.report.problems.append("no quiescence after 6 fault-free passes")

    # -- checks --------------------------------------------------------------------------
    def check(self) -> None:
        report = self.report
        report.uploads_committed = sum(1 for _t, r in self.commits if r["replicaID"])
        carried: dict[tuple, list[Carried]] = defaultdict(list)
        by_replica = {r.replica_id: r.index for r in self.replicas}
        for tick, record in self.commits:
            index = by_replica.get(norm_guid(record["replicaID"] or ""))
            for lid, is_att, kind, gid, applied, payload in self.model.apply(record["edits"], tick):
                reported = _result_success(record["results"], lid, is_att, kind, gid)
                if reported is not None and reported != applied:
                    report.problems.append(
                        f"service result for {kind} {gid} (layer {lid}) was "
                        f"{'success' if reported else 'failure'}, the model says "
                        f"{'success' if applied else 'failure'}"
                    )
                item = Carried(tick, kind, applied)
                if is_att:
                    item.att = payload
                elif payload is not None:
                    item.row, item.with_geometry = payload
                carried[(index, lid, is_att, gid)].append(item)

        report.replayed_adds = self.model.replayed_adds
        service = service_state(self.server, self.infos)
        dups = list(service.duplicates)
        for lid, rows in service.features.items():
            dups += [
                f"service layer {lid}: {g} minted by nobody" for g in rows if g not in self.minted
            ]
        for lid, atts in service.attachments.items():
            dups += [
                f"service layer {lid}: attachment {g} minted by nobody"
                for g in atts
                if g not in self.minted
            ]
        divergences = self._compare("model", self.model.state(), "service", service)
        conflicts = {}
        for replica in self.replicas:
            state = replica.state()
            dups += state.duplicates
            divergences += self._compare("service", service, f"replica {replica.index}", state)
            divergences += replica.index_problems()
            pending, unfinished, replica_conflicts = replica.bookkeeping()
            if pending:
                divergences.append(f"replica {replica.index} still has pending edits")
            if unfinished:
                divergences.append(f"replica {replica.index} still has an unfinished upload")
            conflicts[replica.index] = replica_conflicts
            report.conflicts += len(replica_conflicts)
            for c in replica_conflicts + self.dismissed[replica.index]:
                if str(getattr(c.reason, "value", c.reason)) == "overwritten_by_download":
                    report.problems.append(
                        f"replica {replica.index}: a pending edit of {c.global_id} was "
                        "overwritten by a download (conflict log)"
                    )
        report.conflicts += report.conflicts_restored + report.conflicts_dismissed
        lost = self._lost(carried, conflicts, service)
        report.edit_values = len(self.values)
        report.duplicates = len(dups)
        report.divergences = len(divergences)
        report.lost = len(lost)
        for text in dups[:10] + divergences[:20] + lost[:20]:
            report.problems.append(text)

    def _compare(self, a_name: str, a: State, b_name: str, b: State) -> list[str]:
        out = []
        for lid, info in self.infos.items():
            rows_a, rows_b = a.features.get(lid, {}), b.features.get(lid, {})
            for gid in sorted(set(rows_a) | set(rows_b)):
                if gid not in rows_b:
                    out.append(f"layer {lid} {gid}: in the {a_name}, not in the {b_name}")
                elif gid not in rows_a:
                    out.append(f"layer {lid} {gid}: in the {b_name}, not in the {a_name}")
                else:
                    diff = rows_a[gid].differences(rows_b[gid], sorted(info.fields))
                    if diff:
                        out.append(f"layer {lid} {gid}: {a_name} vs {b_name}: {'; '.join(diff)}")
            atts_a, atts_b = a.attachments.get(lid, {}), b.attachments.get(lid, {})
            for agid in sorted(set(atts_a) | set(atts_b)):
                if agid not in atts_b:
                    out.append(f"attachment {agid}: in the {a_name}, not in the {b_name}")
                elif agid not in atts_a:
                    out.append(f"attachment {agid}: in the {b_name}, not in the {a_name}")
                elif atts_a[agid].key() != atts_b[agid].key():
                    out.append(
                        f"attachment {agid}: {a_name} {atts_a[agid].key()} vs "
                        f"{b_name} {atts_b[agid].key()}"
                    )
        return out

    def _lost(self, carried: dict, conflicts: dict, service: State) -> list[str]:
        """Values accounted for by neither an upload, nor the conflict log, nor a later local
        edit (module docstring, check 3)."""
        later: dict[tuple, list[Value]] = defaultdict(list)
        for v in self.values:
            later[(v.replica, v.layer, v.is_att, v.gid)].append(v)
        parents: dict[tuple, list[Value]] = defaultdict(list)
        for v in self.values:
            if v.key == DELETE:
                parents[(v.replica, v.layer, v.gid)].append(v)
        logged: dict[tuple, list] = defaultdict(list)
        for index, items in conflicts.items():
            for c in items + self.dismissed[index]:
                logged[(index, c.layer_id, c.is_attachment, norm_guid(c.global_id))].append(c)
        lost = []
        for v in self.values:
            key = (v.replica, v.layer, v.is_att, v.gid)
            if v.key in (DELETE, ATT_DELETE) and (
                not self.model.exists(v.layer, v.is_att, v.gid, v.tick)
                or self.model.removed_since(v.layer, v.is_att, v.gid, v.tick)
            ):
                # Gone from the service when this user deleted it, or removed since (by anyone;
                # a later add or restore may have brought it back: a later edit).
                continue
            if any(self._carries(c, v) for c in carried.get(key, []) if c.tick >= v.tick):
                continue
            if any(self._logs(c, v) for c in logged.get(key, [])):
                continue
            if self._superseded(v, later[key], parents):
                continue
            lost.append(
                f"lost: replica {v.replica} edit #{v.edit} layer {v.layer} "
                f"{'attachment ' if v.is_att else ''}{v.gid} {v.key} = {str(v.value)[:60]}"
            )
        return lost

    def _carries(self, c: Carried, v: Value) -> bool:
        if not c.applied:
            return False
        if v.key == DELETE:
            return c.kind == "delete"
        if v.key == ATT_DELETE:
            return c.kind == "delete"
        if v.key == ATT:
            return c.att is not None and (c.att.name, c.att.data) == v.value
        if c.row is None:
            return False
        if v.key == ADD:
            return c.kind == "add"
        if v.key == GEOM:
            return c.with_geometry and c.row.geom == v.value
        return v.key in c.row.attrs and c.row.attrs[v.key] == v.value

    def _logs(self, c, v: Value) -> bool:
        if v.key in (DELETE, ATT_DELETE):
            return c.local_operation == "delete"
        if v.key == ADD:
            return True
        if v.is_att:
            attrs = c.attributes or {}
            data = attrs.get("DATA")
            data = data if isinstance(data, (bytes, bytearray)) else None
            return (attrs.get("ATT_NAME"), data_print(data)) == v.value
        if v.key == GEOM:
            return geometry_print(c.geometry) == v.value
        info = self.infos[v.layer]
        f = info.field(v.key)
        attrs = {str(k).lower(): value for k, value in (c.attributes or {}).items()}
        return v.key in attrs and norm_value(f.esri_type, attrs[v.key]) == v.value

    def _superseded(self, v: Value, same_row: list[Value], parents: dict) -> bool:
        for w in same_row:
            if w.tick <= v.tick or w is v:
                continue
            if w.key == v.key or w.key in (DELETE, ATT_DELETE):
                return True
        if v.is_att and v.parent:
            for w in parents.get((v.replica, POINTS, v.parent), []):
                if w.tick > v.tick:
                    return True
        return False

    # -- all together --------------------------------------------------------------------
    def run(self) -> StressReport:
        started = time.monotonic()
        try:
            self.setup()
            for number in range(1, self.config.rounds + 1):
                self.round(number)
            self.final_round()
            self.server.app.wait_for_jobs(timeout=30)
            self.check()
            for line in self.report.lines() + self.report.problems:
                self.log(line)
        finally:
            self._log_file.close()
            self._log_file = None
            self.worker.close()
            if self.server is not None:
                self.server.stop()
            self.report.seconds = time.monotonic() - started
        return self.report


def run_stress(config: StressConfig, workdir: Path) -> StressReport:
    """Run a stress session in `workdir` (must be empty or new) and return its report."""
    return Stress(config, workdir).run()


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        sys.exit(_worker_main())
    sys.exit("usage: python -m tests.convergence worker  (see tests/tools/stress.py)")
