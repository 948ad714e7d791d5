"""What a feature service can do, read from its JSON description (REST ``FeatureServer``).

Every rule about a service's ``capabilities``, ``syncEnabled`` and ``syncCapabilities`` lives
here, so that taking a map offline, generating a geodatabase and synchronizing agree.
"""

from __future__ import annotations

from .errors import NotSyncEnabledError, UnsupportedGeometryError
from .geodatabase_model import LayerDef
from .geometry import normalize_geometry_type

#: Capabilities that let a client send edits (spec §1). ``Editing`` alone means all three.
_EDIT_CAPABILITIES = frozenset({"create", "update", "delete", "editing"})


def capabilities(info: dict) -> frozenset[str]:
    """The ``capabilities`` of a service or layer description, lower-cased."""
    text = str(info.get("capabilities") or "")
    return frozenset(c.strip().lower() for c in text.split(",") if c.strip())


def accepts_edits(info: dict) -> bool:
    """Whether the service (or layer) takes edits: with Sync but without any of
    Create/Update/Delete/Editing it is download-only."""
    return bool(capabilities(info) & _EDIT_CAPABILITIES)


def check_sync_allowed(info: dict, service_url: str) -> None:
    """Raise NotSyncEnabledError unless the service allows sync (``Sync`` capability and
    ``syncEnabled`` not false)."""
    if "sync" not in capabilities(info):
        raise NotSyncEnabledError(
            f"The service {service_url} does not allow sync: its capabilities are "
            f"{info.get('capabilities') or 'empty'}."
        )
    if info.get("syncEnabled") is False:
        raise NotSyncEnabledError(
            f"The service {service_url} has sync turned off (syncEnabled is false)."
        )


def _sync_capabilities(info: dict) -> dict:
    caps = info.get("syncCapabilities")
    return caps if isinstance(caps, dict) else {}


def supports_per_layer_sync(info: dict) -> bool:
    """``syncCapabilities.supportsPerLayerSync``."""
    return bool(_sync_capabilities(info).get("supportsPerLayerSync", False))


def supports_per_replica_sync(info: dict) -> bool:
    """``syncCapabilities.supportsPerReplicaSync`` (assumed when not said)."""
    return bool(_sync_capabilities(info).get("supportsPerReplicaSync", True))


def supports_async(info: dict) -> bool:
    """Whether the service runs sync operations as jobs (``supportsAsync``, also spelled
    ``supportsASync``)."""
    return any(
        bool(value)
        for key, value in _sync_capabilities(info).items()
        if str(key).lower() == "supportsasync"
    )


def supports_attachments_sync_direction(info: dict) -> bool:
    """``syncCapabilities.supportsAttachmentsSyncDirection``."""
    return bool(_sync_capabilities(info).get("supportsAttachmentsSyncDirection", False))


def supports_rollback_on_failure(info: dict) -> bool:
    """``syncCapabilities.supportsRollbackOnFailure`` (assumed unless it is false)."""
    return _sync_capabilities(info).get("supportsRollbackOnFailure", True) is not False


_TYPE_FAMILIES = {
    "esriFieldTypeSmallInteger": "integer",
    "esriFieldTypeInteger": "integer",
    "esriFieldTypeBigInteger": "integer",
    "esriFieldTypeOID": "integer",
    "esriFieldTypeSingle": "real",
    "esriFieldTypeDouble": "real",
    "esriFieldTypeGlobalID": "guid",
    "esriFieldTypeGUID": "guid",
    "esriFieldTypeDate": "date",
    "esriFieldTypeTimestampOffset": "date",
}
_TYPE_FAMILIES_LOWER = {k.lower(): v for k, v in _TYPE_FAMILIES.items()}


def schema_changes(layer: LayerDef, current: dict | None) -> list[str]:
    """What changed in a layer's service definition (``current``, None = gone) that makes
    syncing the stored ``layer`` unsafe: removed uploadable fields, changed field types,
    another geometry type."""
    if current is None:
        return ["the layer or table no longer exists on the service"]
    changes = []
    fields = {str(f.get("name", "")).lower(): f for f in current.get("fields") or []}
    for stored in layer.fields:
        now = fields.get(stored.name.lower())
        if now is None:
            if stored.uploadable:
                changes.append(f"the field '{stored.name}' was removed")
            continue
        old_type, new_type = stored.esri_type, str(now.get("type") or "")
        if _type_family(old_type) != _type_family(new_type):
            changes.append(f"the field '{stored.name}' changed from {old_type} to {new_type}")
    stored_geometry = layer.geometry_type
    new_geometry = current.get("geometryType")
    if stored_geometry and new_geometry and not _same_geometry_type(stored_geometry, new_geometry):
        changes.append(f"the geometry type changed from {stored_geometry} to {new_geometry}")
    return changes


def _type_family(esri_type: str) -> str:
    # Esri enumerations are case-insensitive (services differ in spelling).
    return _TYPE_FAMILIES_LOWER.get(esri_type.lower(), esri_type.lower())


def _same_geometry_type(stored: str, current: str) -> bool:
    try:
        return normalize_geometry_type(stored) == normalize_geometry_type(current)
    except UnsupportedGeometryError:
        return stored.lower() == current.lower()
