"""Enumerations with the values of the ArcGIS Maps SDKs (see the protocol spec, section 6)."""

from __future__ import annotations

from enum import Enum, IntEnum


class SyncDirection(IntEnum):
    """Which way a sync moves changes (SDK ``SyncDirection``)."""

    NONE = 0
    DOWNLOAD = 1
    UPLOAD = 2
    BIDIRECTIONAL = 3

    @property
    def wire(self) -> str:
        """The value of the REST ``syncDirection`` parameter."""
        return {
            SyncDirection.NONE: "none",
            SyncDirection.DOWNLOAD: "download",
            SyncDirection.UPLOAD: "upload",
            SyncDirection.BIDIRECTIONAL: "bidirectional",
        }[self]

    @property
    def uploads(self) -> bool:
        return self in (SyncDirection.UPLOAD, SyncDirection.BIDIRECTIONAL)

    @property
    def downloads(self) -> bool:
        return self in (SyncDirection.DOWNLOAD, SyncDirection.BIDIRECTIONAL)


class SyncModel(str, Enum):
    """How a replica tracks server generations."""

    PER_REPLICA = "perReplica"
    PER_LAYER = "perLayer"
    NONE = "none"


class OfflineUpdateAvailability(IntEnum):
    """SDK ``OfflineUpdateAvailability``."""

    INDETERMINATE = -1
    AVAILABLE = 0
    NONE = 1


class PreplannedUpdateMode(IntEnum):
    """SDK ``PreplannedUpdateMode``: how an ahead-of-time map is kept current."""

    NO_UPDATES = 0
    SYNC_WITH_FEATURE_SERVICES = 1
    DOWNLOAD_SCHEDULED_UPDATES = 2
    DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES = 3

    @property
    def syncs_with_feature_services(self) -> bool:
        """Local edits go up to the feature services (all of them, or only new features)."""
        return self in (
            PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES,
            PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES,
        )

    @property
    def downloads_from_feature_services(self) -> bool:
        """Server changes come from the feature services, through replicas of the map's own
        (otherwise the geodatabases hold their package's replica)."""
        return self is PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES

    @property
    def uploads_only_new_features(self) -> bool:
        """Only added features go up; downloaded features cannot be changed."""
        return self is PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES

    @property
    def takes_scheduled_updates(self) -> bool:
        """Server changes come as the portal's scheduled update packages."""
        return self in (
            PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES,
            PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES,
        )

    def feature_service_direction(self, requested: SyncDirection) -> SyncDirection:
        """What a sync asked for ``requested`` exchanges with the feature services."""
        if not self.syncs_with_feature_services:
            return SyncDirection.NONE
        if self.uploads_only_new_features:
            return SyncDirection.UPLOAD if requested.uploads else SyncDirection.NONE
        return requested


class PreplannedScheduledUpdatesOption(IntEnum):
    """SDK ``PreplannedScheduledUpdatesOption``."""

    NO_UPDATES = 0
    DOWNLOAD_ALL_UPDATES = 1


class AttachmentSyncDirection(str, Enum):
    """Fixed when a replica is created (REST ``attachmentsSyncDirection``)."""

    NONE = "none"
    UPLOAD = "upload"
    BIDIRECTIONAL = "bidirectional"


class ReturnLayerAttachmentOption(IntEnum):
    """Which layers bring their attachments offline (SDK ``ReturnLayerAttachmentOption``)."""

    NONE = 0
    ALL_LAYERS = 1
    READ_ONLY_LAYERS = 2
    EDITABLE_LAYERS = 3

    def includes(self, *, editable: bool) -> bool:
        """True when a layer (editable or read-only) brings its attachments."""
        if self is ReturnLayerAttachmentOption.ALL_LAYERS:
            return True
        if self is ReturnLayerAttachmentOption.EDITABLE_LAYERS:
            return editable
        return self is ReturnLayerAttachmentOption.READ_ONLY_LAYERS and not editable

    @classmethod
    def of(cls, *, editable: bool, read_only: bool) -> ReturnLayerAttachmentOption:
        """The option under which editable and/or read-only layers bring attachments."""
        if editable and read_only:
            return cls.ALL_LAYERS
        if editable:
            return cls.EDITABLE_LAYERS
        return cls.READ_ONLY_LAYERS if read_only else cls.NONE
