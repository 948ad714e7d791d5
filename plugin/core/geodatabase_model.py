"""Data classes of the geodatabase API: layer definitions, replica state, upload snapshots,
journal entries, commit reports and conflicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from .enums import SyncModel
from .sync_model import RejectedEdit, SyncCounts

#: Keys of the per-layer pending and snapshot counts.
COUNT_KEYS = (
    "adds",
    "updates",
    "deletes",
    "attachment_adds",
    "attachment_updates",
    "attachment_deletes",
)


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_KEYS, 0)


@dataclass(frozen=True)
class FieldDef:
    """One attribute column: the service field and how it is stored."""

    name: str
    esri_type: str
    editable: bool
    #: Sent to the service in uploads (editable, not the ObjectID/GlobalID/editor-tracking fields).
    uploadable: bool
    json: dict


@dataclass(frozen=True)
class LayerDef:
    """A service layer or table as stored in the geodatabase."""

    id: int
    name: str
    table_name: str
    is_table: bool
    geometry_type: str | None
    has_attachments: bool
    layer_json: dict
    has_z: bool = False
    has_m: bool = False
    object_id_field: str = "OBJECTID"
    global_id_field: str = "GlobalID"
    geometry_column: str | None = None
    srs_id: int = 0
    attachment_table: str | None = None
    fields: tuple[FieldDef, ...] = ()
    #: The geometry column is declared curved (MULTICURVE/MULTISURFACE): circular arcs are
    #: stored as ISO curves instead of being densified.
    true_curves: bool = False

    @property
    def uploadable_fields(self) -> tuple[FieldDef, ...]:
        return tuple(f for f in self.fields if f.uploadable)

    @property
    def display_field(self) -> str | None:
        """The field that names a feature for people: the service's ``displayField``, else the
        first string field that is not a system one (None when there is none)."""
        named = self.field(str(self.layer_json.get("displayField") or ""))
        if named is not None:
            return named.name
        return next(
            (f.name for f in self.fields if f.esri_type == "esriFieldTypeString" and f.uploadable),
            None,
        )

    def feature_label(self, attributes: dict) -> str:
        """A feature's name for people (its display field's value), "" when it has none."""
        name = self.display_field
        value = attributes.get(name) if name else None
        return "" if value in (None, "") else str(value)

    def field(self, name: str) -> FieldDef | None:
        lowered = name.lower()
        for f in self.fields:
            if f.name.lower() == lowered:
                return f
        return None


@dataclass(frozen=True)
class ReplicaInfo:
    """The replica a geodatabase holds and the server generation(s) it is synchronized to."""

    service_url: str
    replica_id: str | None
    replica_name: str
    sync_model: SyncModel
    server_gen: int | None
    layer_gens: dict[int, int]

    @property
    def data_generation(self) -> int:
        """The generation the data is at (the oldest layer's for per-layer replicas)."""
        if SyncModel(self.sync_model) == SyncModel.PER_LAYER and self.layer_gens:
            return min(int(g) for g in self.layer_gens.values())
        return int(self.server_gen or 0)


@dataclass(frozen=True)
class SkippedAttachment:
    """A pending attachment an upload left out because it is larger than the upload limit;
    it stays pending."""

    layer_id: int
    global_id: str
    name: str
    parent_global_id: str
    size: int
    #: The pending change: ``"add"`` or ``"update"``.
    op: str


@dataclass(frozen=True)
class UploadSnapshot:
    """Local changes frozen for one upload.

    ``seq`` is the high-water mark of the change sequence: changes with a higher sequence were
    made after the snapshot (for instance during the sync) and stay pending. ``edits`` is the
    spec §3 ``edits`` list, in dependency-safe layer order.
    """

    seq: int
    edits: list[dict]
    counts: dict[int, dict[str, int]]
    only_adds: bool = False
    #: The layers whose edits were taken (None = all): a per-layer sync's uploading layers.
    layer_ids: tuple[int, ...] | None = None
    #: Attachments of the taken layers that would have gone up but are too large to upload.
    skipped_attachments: tuple[SkippedAttachment, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.edits

    def to_json(self) -> dict:
        return {
            "seq": self.seq,
            "edits": self.edits,
            "counts": {str(k): v for k, v in self.counts.items()},
            "only_adds": self.only_adds,
            "layer_ids": None if self.layer_ids is None else list(self.layer_ids),
            "skipped_attachments": [asdict(a) for a in self.skipped_attachments],
        }

    @classmethod
    def from_json(cls, data: dict) -> UploadSnapshot:
        return cls(
            seq=int(data["seq"]),
            edits=list(data.get("edits") or []),
            counts={int(k): dict(v) for k, v in (data.get("counts") or {}).items()},
            only_adds=bool(data.get("only_adds", False)),
            layer_ids=None if data.get("layer_ids") is None else tuple(data["layer_ids"]),
            skipped_attachments=tuple(
                SkippedAttachment(**a) for a in data.get("skipped_attachments") or []
            ),
        )


@dataclass(frozen=True)
class JournalEntry:
    """An upload that was started: its snapshot and, once known, the job's status URL."""

    id: int
    snapshot: UploadSnapshot
    status_url: str | None
    created_at: str

    @property
    def seq(self) -> int:
        return self.snapshot.seq

    @property
    def edits(self) -> list[dict]:
        return self.snapshot.edits


@dataclass
class LayerCommitCounts:
    """What one commit did to one layer or table."""

    layer_id: int
    uploaded: SyncCounts = field(default_factory=SyncCounts)
    downloaded: SyncCounts = field(default_factory=SyncCounts)
    conflicts: int = 0
    edit_errors: list[RejectedEdit] = field(default_factory=list)

    def history_counts(self) -> dict[str, int]:
        """The counts as a sync history row stores them (``uploaded_adds``...)."""
        flat = {"layer_id": self.layer_id}
        for direction, counts in (("uploaded", self.uploaded), ("downloaded", self.downloaded)):
            for kind, number in asdict(counts).items():
                flat[f"{direction}_{kind}"] = number
        flat["conflicts"] = self.conflicts
        return flat


@dataclass
class CommitReport:
    """Result of :meth:`Geodatabase.commit_sync`, per layer id."""

    layers: dict[int, LayerCommitCounts]
    server_gen: int | None
    layer_gens: dict[int, int]
    history_id: int | None = None

    @property
    def edit_errors(self) -> list[RejectedEdit]:
        return [e for c in self.layers.values() for e in c.edit_errors]

    @property
    def conflicts(self) -> int:
        return sum(c.conflicts for c in self.layers.values())


class ConflictReason(str, Enum):
    """Why a local version lost to the server and went to the conflict log."""

    DELETED_ON_SERVER = "deleted_on_server"
    EDIT_REJECTED = "edit_rejected"
    OVERWRITTEN_BY_DOWNLOAD = "overwritten_by_download"


@dataclass(frozen=True)
class Conflict:
    """A local version saved in the conflict log.

    ``attributes`` holds the local column values as stored in the GeoPackage (dates as text,
    blobs as ``bytes``); ``geometry`` is the local geometry as Esri JSON (``None`` for tables
    or a deleted row). ``local_operation`` is what the local edit was ("add", "update",
    "delete").
    """

    id: int
    layer_id: int
    table_name: str
    global_id: str
    is_attachment: bool
    local_operation: str
    reason: ConflictReason
    error_code: int | None
    error_message: str
    attributes: dict[str, Any]
    geometry: dict | None
    created_at: str


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``… : the first not in ``taken`` (compared without
    case), which is added to ``taken``."""
    candidate, number = base, 2
    while candidate.lower() in taken:
        candidate = f"{base}_{number}"
        number += 1
    taken.add(candidate.lower())
    return candidate
