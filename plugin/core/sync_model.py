"""Parameters and results of synchronizing (SDK ``SyncGeodatabaseParameters``,
``OfflineMapSyncResult``...), and the one change-count type that commits, sync results and
reports share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .enums import (
    AttachmentSyncDirection,
    OfflineUpdateAvailability,
    PreplannedScheduledUpdatesOption,
    SyncDirection,
    SyncModel,
)

#: Largest attachment a sync uploads. Uploads carry attachments inline as base64 (spec §3), so
#: one attachment costs several times its size in memory; larger ones stay pending, reported.
MAX_ATTACHMENT_UPLOAD_BYTES = 50 * 1024 * 1024


# Parameters


@dataclass
class SyncLayerOption:
    """Direction of one layer or table in a per-layer sync (SDK ``SyncLayerOption``)."""

    layer_id: int
    sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL


@dataclass
class SyncGeodatabaseParameters:
    """How to synchronize one geodatabase (SDK ``SyncGeodatabaseParameters``).

    ``layer_options`` gives per-layer directions; they are honoured when the geodatabase is a
    per-layer replica (for a per-replica one every layer moves in ``sync_direction``).
    ``upload_only_new_features`` restricts the upload to added rows (maps in mode
    DownloadScheduledUpdatesAndUploadNewFeatures). With ``keep_geodatabase_deltas`` the uploaded
    edits and the downloaded result file are copied into ``deltas_folder`` (default: a folder
    ``<geodatabase name>_deltas`` next to the geodatabase).
    """

    sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL
    rollback_on_failure: bool = False
    layer_options: list[SyncLayerOption] = field(default_factory=list)
    upload_only_new_features: bool = False
    keep_geodatabase_deltas: bool = False
    deltas_folder: Path | None = None
    #: Sync as this replica instead of the geodatabase's own (the upload-only replica of an
    #: ahead-of-time map that uploads new features; its package replica never uploads).
    replica_id: str | None = None
    #: Attachments larger than this are not uploaded (they stay pending and are reported).
    max_attachment_upload_bytes: int = MAX_ATTACHMENT_UPLOAD_BYTES

    def direction_of(self, layer_id: int) -> SyncDirection:
        for option in self.layer_options:
            if int(option.layer_id) == int(layer_id):
                return SyncDirection(option.sync_direction)
        return SyncDirection(self.sync_direction)


@dataclass
class LayerQuery:
    """Which rows of one layer or table go offline (one entry of REST ``layerQueries``).

    ``query_option``: ``"useFilter"`` (``where`` and, when ``use_geometry``, the area of
    interest), ``"all"`` (every row) or ``"none"`` (schema only, no rows).
    """

    where: str = "1=1"
    use_geometry: bool = True
    query_option: str = "useFilter"
    include_related: bool = True

    def request(
        self, *, has_area: bool, where: str | None = None, query_option: str | None = None
    ) -> dict[str, Any]:
        """The REST ``layerQueries`` entry (``has_area``: an area limits the rows of this
        layer); ``where`` and ``query_option`` replace the query's own when given."""
        text = (self.where if where is None else where) or ""
        option = query_option or self.query_option
        return {
            "queryOption": option,
            "where": text.strip() or "1=1",
            "useGeometry": bool(self.use_geometry and has_area),
            # Schema only means no rows, not even those related to other layers' rows.
            "includeRelated": bool(self.include_related) and option != "none",
        }


@dataclass
class GenerateLayerOption:
    """Which rows of one layer or table a new geodatabase gets (SDK ``GenerateLayerOption``)."""

    layer_id: int
    query: LayerQuery = field(default_factory=LayerQuery)


@dataclass
class GenerateGeodatabaseParameters:
    """What a new geodatabase holds (SDK ``GenerateGeodatabaseParameters``).

    ``extent`` is an Esri JSON envelope or polygon with its ``spatialReference`` (None = the
    whole service). ``sync_model`` per layer needs ``supportsPerLayerSync``.
    """

    extent: dict | None = None
    layer_options: list[GenerateLayerOption] = field(default_factory=list)
    return_attachments: bool = True
    sync_model: SyncModel = SyncModel.PER_REPLICA
    attachment_sync_direction: AttachmentSyncDirection = AttachmentSyncDirection.BIDIRECTIONAL
    sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL
    replica_name: str = ""


@dataclass
class OfflineMapSyncParameters:
    """How to synchronize an offline map (SDK ``OfflineMapSyncParameters``)."""

    sync_direction: SyncDirection = SyncDirection.BIDIRECTIONAL
    rollback_on_failure: bool = False
    preplanned_scheduled_updates_option: PreplannedScheduledUpdatesOption = (
        PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
    )
    keep_geodatabase_deltas: bool = False
    #: Attachments larger than this are not uploaded (they stay pending and are reported).
    max_attachment_upload_bytes: int = MAX_ATTACHMENT_UPLOAD_BYTES


# Results


@dataclass
class SyncCounts:
    """Rows and attachments moved in one direction for one layer or table."""

    adds: int = 0
    updates: int = 0
    deletes: int = 0
    attachments: int = 0

    @property
    def total(self) -> int:
        return self.adds + self.updates + self.deletes + self.attachments

    def add(self, other: SyncCounts) -> None:
        self.adds += other.adds
        self.updates += other.updates
        self.deletes += other.deletes
        self.attachments += other.attachments

    def count(self, operation: str, *, is_attachment: bool = False, number: int = 1) -> None:
        """Count ``number`` rows of ``operation`` (``add``/``update``/``delete``); every
        attachment operation counts as an attachment."""
        if is_attachment:
            self.attachments += number
        elif operation == "add":
            self.adds += number
        elif operation == "update":
            self.updates += number
        elif operation == "delete":
            self.deletes += number
        else:
            raise ValueError(f"Unknown edit operation {operation!r}")


@dataclass(frozen=True)
class RejectedEdit:
    """One local edit that did not reach the service (SDK ``FeatureEditResult`` with an
    error): the server rejected it, or the map may not upload it (``code`` None).

    The local version of a rejected row is kept in the geodatabase's conflict log.
    """

    layer_id: int
    global_id: str | None
    operation: str  # "add" | "update" | "delete"
    code: int | None
    message: str
    is_attachment: bool = False

    @property
    def kind(self) -> str:
        """``add``, ``update``, ``delete`` or ``attachment add``/``update``/``delete``."""
        return f"attachment {self.operation}" if self.is_attachment else self.operation

    def describe(self, name: str = "") -> str:
        """``<kind> <name or GlobalID>: <message>``, for lists of errors."""
        return f"{self.kind} {name or self.global_id or ''}: {self.message}".strip()

    def as_dict(self) -> dict[str, Any]:
        """The edit as plain JSON-ready values."""
        return {
            "global_id": self.global_id,
            "kind": self.kind,
            "code": self.code,
            "message": self.message,
        }


@dataclass
class SyncLayerResult:
    """The outcome for one layer or table (SDK ``SyncLayerResult``).

    ``error`` is set when the whole layer (or its whole geodatabase) failed to sync;
    ``edit_errors`` lists rejected edits; ``conflicts`` counts local versions that lost and were
    saved to the conflict log during this sync.
    """

    layer_id: int
    name: str
    is_table: bool = False
    service_url: str = ""
    geodatabase_path: Path | None = None
    error: str | None = None
    edit_errors: list[RejectedEdit] = field(default_factory=list)
    uploaded: SyncCounts = field(default_factory=SyncCounts)
    downloaded: SyncCounts = field(default_factory=SyncCounts)
    conflicts: int = 0

    @property
    def has_errors(self) -> bool:
        return self.error is not None or bool(self.edit_errors)

    @property
    def error_text(self) -> str:
        """The layer's error, or its rejected edits described one after the other."""
        return self.describe_errors()

    def describe_errors(self, names: dict[str, str] | None = None) -> str:
        """``error_text`` with the rejected features named by ``names`` (GlobalID -> name)."""
        names = names or {}
        return self.error or "; ".join(
            e.describe(names.get(e.global_id or "", "")) for e in self.edit_errors
        )

    def as_row(self) -> dict[str, Any]:
        """The result as one row of plain JSON-ready values (the dock's table and the
        Processing reports are made from it)."""
        return {
            "geodatabase": self.geodatabase_path.name if self.geodatabase_path else "",
            "layer_id": self.layer_id,
            "name": self.name,
            "is_table": self.is_table,
            "uploaded": self.uploaded.total,
            "downloaded": self.downloaded.total,
            "uploaded_counts": asdict(self.uploaded),
            "downloaded_counts": asdict(self.downloaded),
            "edit_errors": [e.as_dict() for e in self.edit_errors],
            "conflicts": self.conflicts,
            "error": self.error,
        }


@dataclass
class OfflineMapSyncResult:
    """The outcome of an offline map sync (SDK ``OfflineMapSyncResult``)."""

    layer_results: list[SyncLayerResult] = field(default_factory=list)
    table_results: list[SyncLayerResult] = field(default_factory=list)
    is_mobile_map_package_reopen_required: bool = False
    #: Whole-geodatabase failures: geodatabase file name -> message.
    geodatabase_errors: dict[str, str] = field(default_factory=dict)

    @property
    def has_errors(self) -> bool:
        return bool(self.geodatabase_errors) or any(
            r.has_errors for r in self.layer_results + self.table_results
        )

    def all_results(self) -> list[SyncLayerResult]:
        return self.layer_results + self.table_results

    @property
    def failed(self) -> bool:
        """True when nothing synchronized: every geodatabase failed as a whole."""
        return bool(self.geodatabase_errors) and all(r.error for r in self.all_results())


@dataclass(frozen=True)
class OfflineMapUpdatesInfo:
    """What a sync would bring (SDK ``OfflineMapUpdatesInfo``)."""

    download_availability: OfflineUpdateAvailability
    upload_availability: OfflineUpdateAvailability
    scheduled_updates_download_size: int = 0
    is_mobile_map_package_reopen_required: bool = False


class LoadStatus(str, Enum):
    """SDK ``LoadStatus``."""

    NOT_LOADED = "notLoaded"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED_TO_LOAD = "failedToLoad"
