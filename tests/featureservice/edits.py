"""Applying feature and attachment edits, shared by applyEdits, synchronizeReplica and the
server-side helpers. Every edit is checked completely before it touches the database and runs
inside its own savepoint, so a failing edit never leaves half a row behind."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

from . import geom
from .errors import EditError
from .jsonwriter import RawJSON
from .store import Layer, Tx, new_guid, now_ms, quote

GUID_RE = re.compile(
    r"^\{?([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\}?$"
)
INT_RANGES = {
    "esriFieldTypeSmallInteger": (-(2**15), 2**15 - 1),
    "esriFieldTypeInteger": (-(2**31), 2**31 - 1),
    "esriFieldTypeBigInteger": (-(2**63), 2**63 - 1),
}
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024

FEATURE_NOT_FOUND = 1019
INVALID_EDIT = 1000


@dataclass
class EditContext:
    """Who is editing: the token's user (editor tracking) and the replica whose upload this is."""

    user: str | None = None
    replica_id: str | None = None
    now: int = field(default_factory=now_ms)
    geometry_wkid: int | None = None  # reference of geometries without one (a replica's replicaSR)
    #: The request said trueCurveClient=true: the client keeps curve segments intact.
    true_curve_client: bool = False


def normalize_guid(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = GUID_RE.match(value.strip())
    return "{" + match.group(1).upper() + "}" if match else None


def coerce_value(f: dict, value: Any) -> Any:
    """Checks one attribute value against its field; returns the value to store."""
    name, ftype = f["name"], f["type"]
    if value is None:
        if not f.get("nullable", True):
            raise EditError(INVALID_EDIT, f"Field '{name}' cannot be null.")
        return None
    if ftype in INT_RANGES or ftype == "esriFieldTypeDate":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            kind = "a date in epoch milliseconds" if ftype == "esriFieldTypeDate" else "an integer"
            raise EditError(
                INVALID_EDIT, f"Field '{name}' needs {kind}, got {json.dumps(value)[:60]}."
            )
        low, high = INT_RANGES.get(ftype, (-(2**63), 2**63 - 1))
        if not low <= value <= high:
            raise EditError(INVALID_EDIT, f"Value {value} is out of range for field '{name}'.")
        return value
    if ftype in ("esriFieldTypeSingle", "esriFieldTypeDouble"):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise EditError(
                INVALID_EDIT, f"Field '{name}' needs a number, got {json.dumps(value)[:60]}."
            )
        return float(value)
    if ftype in ("esriFieldTypeGUID", "esriFieldTypeGlobalID"):
        guid = normalize_guid(value)
        if guid is None:
            raise EditError(
                INVALID_EDIT,
                f"Field '{name}' needs a GUID like {{8C4B...}}, got {json.dumps(value)[:60]}.",
            )
        return guid
    if not isinstance(value, str):
        raise EditError(
            INVALID_EDIT, f"Field '{name}' needs a string, got {json.dumps(value)[:60]}."
        )
    length = f.get("length")
    if length and len(value) > length:
        raise EditError(
            INVALID_EDIT, f"Value for field '{name}' is longer than {length} characters."
        )
    return value


def coerce_attributes(layer: Layer, attributes: Any) -> dict[str, Any]:
    """Editable attributes of an edit, by canonical field name. Non-editable fields (ObjectID,
    GlobalID, editor tracking) are skipped; unknown fields are an error."""
    if not isinstance(attributes, dict):
        raise EditError(INVALID_EDIT, "'attributes' must be a JSON object.")
    out = {}
    for key, value in attributes.items():
        f = layer.field_by_name(str(key))
        if f is None:
            raise EditError(INVALID_EDIT, f"Field '{key}' does not exist in {layer.name}.")
        if not f.get("editable", True) or f["type"] in (
            "esriFieldTypeOID",
            "esriFieldTypeGlobalID",
        ):
            continue
        out[f["name"]] = coerce_value(f, value)
    return out


def attribute_of(attributes: dict, name: str) -> Any:
    lower = name.lower()
    for key, value in attributes.items():
        if str(key).lower() == lower:
            return value
    return None


def row_to_feature(
    layer: Layer,
    row: sqlite3.Row,
    out_fields: list[str] | None = None,
    with_geometry: bool = True,
    project=None,
) -> dict:
    """A stored row as an Esri JSON feature; `project` maps the geometry to the output reference.
    (:func:`feature_writer`'s text, read back: one rendering of a row.)"""
    write = feature_writer(layer, project, names=out_fields, with_geometry=with_geometry)
    return json.loads(write(row))


_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def feature_writer(
    layer: Layer,
    project: Callable[[dict], dict] | None = None,
    *,
    names: list[str] | None = None,
    with_geometry: bool = True,
    densify: bool = False,
) -> Callable[[sqlite3.Row], RawJSON]:
    """``row -> JSON text`` of a stored row as an Esri JSON feature, fast for answers of many
    rows: field names looked up once, the stored geometry text copied as it is unless it
    changes: projected by ``project``, or (``densify``) its true curves made chords."""
    names = layer.field_names() if names is None else names
    with_geometry = with_geometry and not layer.is_table
    # Columns by position (a look-up by name searches the row's names): the rows are all of
    # one query, so the positions found in the first row hold for the others.
    shape: list = []

    def write(row: sqlite3.Row) -> RawJSON:
        if not shape:  # (names match as sqlite3.Row matches them: ignoring case)
            at = {key.lower(): i for i, key in reversed(list(enumerate(row.keys())))}
            shape.extend([[at[n.lower()] for n in names], at.get("_geom")])
        columns, geometry_at = shape
        attributes = _compact(dict(zip(names, [row[i] for i in columns])))
        if not with_geometry:
            return RawJSON('{"attributes":' + attributes + "}")
        text = row[geometry_at]
        if not text:
            text = "null"
        elif project is not None or (densify and "curve" in text):
            geometry = json.loads(text)
            if densify:
                geometry = geom.densified(geometry)
            text = _compact(project(geometry) if project is not None else geometry)
        return RawJSON('{"attributes":' + attributes + ',"geometry":' + text + "}")

    return write


def _editor_values(layer: Layer, ctx: EditContext, adding: bool) -> dict[str, Any]:
    info = layer.info.get("editFieldsInfo") or {}
    values = {}
    if adding:
        if info.get("creatorField"):
            values[info["creatorField"]] = ctx.user
        if info.get("creationDateField"):
            values[info["creationDateField"]] = ctx.now
    if info.get("editorField"):
        values[info["editorField"]] = ctx.user
    if info.get("editDateField"):
        values[info["editDateField"]] = ctx.now
    return values


def _geometry_of(
    layer: Layer, feature: dict, default_wkid: int | None = None
) -> tuple[bool, dict | None]:
    """(carried, geometry in the layer's reference) of an edit."""
    if layer.is_table or "geometry" not in feature:
        return False, None
    raw = feature["geometry"]
    try:
        value = geom.validate(raw, layer.geometry_type)
        source = geom.wkid_of(raw.get("spatialReference")) if isinstance(raw, dict) else None
        source = source or default_wkid
        if value is not None and source is not None:
            layer_wkid = geom.wkid_of(layer.info["extent"]["spatialReference"])
            value = geom.project(value, source, layer_wkid)
    except geom.GeometryError as exc:
        raise EditError(INVALID_EDIT, f"Invalid geometry: {exc}") from exc
    if value is not None:
        value = {k: v for k, v in value.items() if k != "spatialReference"}
    return True, value


class FeatureEditor:
    """Applies adds/updates/deletes to one layer inside a write transaction."""

    def __init__(self, tx: Tx, layer: Layer, ctx: EditContext, *, sync: bool = False):
        self.tx = tx
        self.layer = layer
        self.ctx = ctx
        self.sync = sync  # replica uploads: identity by GlobalID, replays are idempotent

    def _gen(self) -> int:
        return self.tx.next_gen(self.layer.service)

    def _savepoint(self, fn, *args):
        self.tx.conn.execute("SAVEPOINT edit")
        try:
            result = fn(*args)
        except EditError:
            self.tx.conn.execute("ROLLBACK TO edit")
            self.tx.conn.execute("RELEASE edit")
            raise
        except sqlite3.Error as exc:
            self.tx.conn.execute("ROLLBACK TO edit")
            self.tx.conn.execute("RELEASE edit")
            raise EditError(INVALID_EDIT, f"The edit could not be stored: {exc}") from exc
        self.tx.conn.execute("RELEASE edit")
        return result

    def add(self, feature: Any, use_global_ids: bool) -> dict:
        if not isinstance(feature, dict):
            raise EditError(INVALID_EDIT, "Each add must be a feature object.")
        attributes = feature.get("attributes") or {}
        gid = None
        if use_global_ids or self.sync:
            raw = (
                attribute_of(attributes, self.layer.gid_field)
                if isinstance(attributes, dict)
                else None
            )
            gid = normalize_guid(raw)
            if gid is None:
                raise EditError(
                    INVALID_EDIT,
                    f"The add needs a valid '{self.layer.gid_field}' (got {json.dumps(raw)[:60]}).",
                )
            existing = self.tx.row_by_gid(self.layer, gid)
            if existing is not None:
                # A replayed add: apply it as an update of the row it created the first time.
                return self.update(feature, True, replayed_add=True)
        values = coerce_attributes(self.layer, attributes)
        _, geometry = _geometry_of(self.layer, feature, self.ctx.geometry_wkid)
        return self._savepoint(self._insert, values, geometry, gid or new_guid())

    def _insert(self, values: dict, geometry: dict | None, gid: str) -> dict:
        gen = self._gen()
        values = {**values, **_editor_values(self.layer, self.ctx, True), self.layer.gid_field: gid}
        oid = self.tx.insert_row(
            self.layer, values, geometry, geom.bbox(geometry), gen, self.ctx.replica_id
        )
        self.tx.log_change(self.layer, "f", gid, gen, self.ctx.replica_id)
        return {"objectId": oid, "globalId": gid, "success": True}

    def _find(self, attributes: Any, by_gid: bool) -> sqlite3.Row:
        if not isinstance(attributes, dict):
            raise EditError(INVALID_EDIT, "'attributes' must be a JSON object.")
        if by_gid:
            raw = attribute_of(attributes, self.layer.gid_field)
            gid = normalize_guid(raw)
            if gid is None:
                raise EditError(INVALID_EDIT, f"The edit needs a valid '{self.layer.gid_field}'.")
            row = self.tx.row_by_gid(self.layer, gid)
            if row is None:
                raise EditError(
                    FEATURE_NOT_FOUND, f"Feature {gid} not found: it does not exist or was deleted."
                )
            return row
        raw = attribute_of(attributes, self.layer.oid_field)
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise EditError(INVALID_EDIT, f"The edit needs an integer '{self.layer.oid_field}'.")
        row = self.tx.row_by_oid(self.layer, raw)
        if row is None:
            raise EditError(
                FEATURE_NOT_FOUND, f"Feature with {self.layer.oid_field} {raw} not found."
            )
        return row

    def update(self, feature: Any, use_global_ids: bool, replayed_add: bool = False) -> dict:
        if not isinstance(feature, dict):
            raise EditError(INVALID_EDIT, "Each update must be a feature object.")
        row = self._find(feature.get("attributes"), use_global_ids or self.sync)
        values = coerce_attributes(self.layer, feature.get("attributes") or {})
        carried, geometry = _geometry_of(self.layer, feature, self.ctx.geometry_wkid)
        if carried:
            self._check_true_curve_update(row)
        return self._savepoint(self._update, row, values, carried, geometry)

    def _check_true_curve_update(self, row: sqlite3.Row) -> None:
        """A stored geometry with true curves may only be replaced as the layer allows."""
        stored = json.loads(row["_geom"]) if row["_geom"] else None
        if not geom.has_curves(stored):
            return
        info = self.layer.info
        if not info.get("allowTrueCurvesUpdates", True):
            raise EditError(
                INVALID_EDIT, "Geometries with true curves cannot be updated in this layer."
            )
        if info.get("onlyAllowTrueCurveUpdatesByTrueCurveClients") and not (
            self.ctx.true_curve_client
        ):
            raise EditError(
                INVALID_EDIT,
                "Geometries with true curves can only be updated by true curve clients.",
            )

    def _update(self, row: sqlite3.Row, values: dict, carried: bool, geometry) -> dict:
        gen = self._gen()
        values = {**values, **_editor_values(self.layer, self.ctx, False)}
        oid, gid = row[self.layer.oid_field], row[self.layer.gid_field]
        self.tx.update_row(self.layer, oid, values, geometry, geom.bbox(geometry), gen, carried)
        self.tx.log_change(self.layer, "f", gid, gen, self.ctx.replica_id)
        return {"objectId": oid, "globalId": gid, "success": True}

    def delete(self, ident: Any, use_global_ids: bool) -> dict:
        if use_global_ids or self.sync:
            gid = normalize_guid(ident)
            if gid is None:
                raise EditError(
                    INVALID_EDIT, f"Deletes need GlobalIDs, got {json.dumps(ident)[:60]}."
                )
            row = self.tx.row_by_gid(self.layer, gid)
            if row is None:
                if self.sync:
                    # Deleting what is already gone is a replay (or a race): a no-op success.
                    return {"objectId": None, "globalId": gid, "success": True}
                raise EditError(FEATURE_NOT_FOUND, f"Feature {gid} not found.")
        else:
            try:
                oid = int(ident)
            except (TypeError, ValueError) as exc:
                raise EditError(
                    INVALID_EDIT, f"Deletes need object IDs, got {json.dumps(ident)[:60]}."
                ) from exc
            row = self.tx.row_by_oid(self.layer, oid)
            if row is None:
                raise EditError(
                    FEATURE_NOT_FOUND, f"Feature with {self.layer.oid_field} {oid} not found."
                )
        return self._savepoint(self._delete, row)

    def _delete(self, row: sqlite3.Row) -> dict:
        gen = self._gen()
        oid, gid = row[self.layer.oid_field], row[self.layer.gid_field]
        for att in self.tx.attachments_of(self.layer, [gid]):
            self.tx.delete_attachment(att["attachment_id"])
            self.tx.tombstone(
                self.layer, "a", att["globalid"], att["attachment_id"], gen, self.ctx.replica_id
            )
        self.tx.delete_row(self.layer, oid)
        self.tx.tombstone(self.layer, "f", gid, oid, gen, self.ctx.replica_id)
        return {"objectId": oid, "globalId": gid, "success": True}


def failed(error: EditError, *, globalid=None, objectid=None) -> dict:
    result: dict[str, Any] = {}
    if objectid is not None:
        result["objectId"] = objectid
    if globalid is not None:
        result["globalId"] = globalid
    result["success"] = False
    result["error"] = error.body()
    return result


def _ident_of(layer: Layer, feature: Any, by_gid: bool) -> dict:
    attrs = feature.get("attributes") if isinstance(feature, dict) else None
    if not isinstance(attrs, dict):
        return {}
    if by_gid:
        return {
            "globalid": normalize_guid(attribute_of(attrs, layer.gid_field))
            or attribute_of(attrs, layer.gid_field)
        }
    return {"objectid": attribute_of(attrs, layer.oid_field)}


@dataclass
class LayerResults:
    add_results: list = field(default_factory=list)
    update_results: list = field(default_factory=list)
    delete_results: list = field(default_factory=list)

    @property
    def failures(self) -> list[dict]:
        return [
            r
            for r in self.add_results + self.update_results + self.delete_results
            if not r["success"]
        ]


def _as_list(value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EditError(INVALID_EDIT, f"'{what}' must be a list.")
    return value


def apply_feature_edits(
    tx: Tx,
    layer: Layer,
    ctx: EditContext,
    *,
    adds=(),
    updates=(),
    deletes=(),
    use_global_ids=False,
    sync=False,
) -> LayerResults:
    """Applies a layer's adds, updates and deletes; failing edits are reported, not raised."""
    editor = FeatureEditor(tx, layer, ctx, sync=sync)
    by_gid = use_global_ids or sync
    results = LayerResults()
    for feature in adds or ():
        try:
            results.add_results.append(editor.add(feature, by_gid))
        except EditError as exc:
            results.add_results.append(failed(exc, **_ident_of(layer, feature, True)))
    for feature in updates or ():
        try:
            results.update_results.append(editor.update(feature, by_gid))
        except EditError as exc:
            results.update_results.append(failed(exc, **_ident_of(layer, feature, by_gid)))
    for ident in deletes or ():
        try:
            results.delete_results.append(editor.delete(ident, by_gid))
        except EditError as exc:
            key = "globalid" if by_gid else "objectid"
            results.delete_results.append(
                failed(exc, **{key: ident if isinstance(ident, (str, int)) else None})
            )
    return results


# --- attachments ------------------------------------------------------------------------------

_BAD_NAME = re.compile(r"[\\/\x00-\x1f]")


def check_attachment_name(name: Any) -> str:
    """Attachment names are plain file names: no folders, no control characters."""
    if not isinstance(name, str) or not name.strip():
        raise EditError(INVALID_EDIT, "The attachment needs a file name.")
    if _BAD_NAME.search(name) or name.strip() in (".", "..") or len(name) > 255:
        raise EditError(
            INVALID_EDIT,
            f"Invalid attachment name {name[:80]!r}: use a plain file name without folders.",
        )
    return name


def decode_data(value: Any) -> bytes:
    if not isinstance(value, str):
        raise EditError(INVALID_EDIT, "Attachment 'data' must be base64 text.")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EditError(INVALID_EDIT, "Attachment 'data' is not valid base64.") from exc
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise EditError(INVALID_EDIT, "The attachment is too large.")
    return data


class AttachmentEditor:
    """Adds, updates and deletes attachments of one layer, identified by GlobalID."""

    def __init__(self, tx: Tx, layer: Layer, ctx: EditContext):
        self.tx = tx
        self.layer = layer
        self.ctx = ctx

    def add(
        self,
        parent_gid: str,
        name: str,
        content_type: str,
        data: bytes,
        globalid: str | None = None,
        keywords=None,
    ) -> dict:
        check_attachment_name(name)
        if self.tx.row_by_gid(self.layer, parent_gid) is None:
            raise EditError(FEATURE_NOT_FOUND, f"Parent feature {parent_gid} not found.")
        gid = globalid or new_guid()
        if self.tx.attachment_by_gid(self.layer, gid) is not None:
            return self.update(gid, name, content_type, data)
        gen = self.tx.next_gen(self.layer.service)
        aid = self.tx.insert_attachment(
            self.layer,
            gid,
            parent_gid,
            name,
            content_type or "application/octet-stream",
            data,
            gen,
            keywords,
        )
        self.tx.log_change(self.layer, "a", gid, gen, self.ctx.replica_id)
        return {"objectId": aid, "globalId": gid, "success": True}

    def update(
        self, globalid: str, name: str | None, content_type: str | None, data: bytes | None
    ) -> dict:
        row = self.tx.attachment_by_gid(self.layer, globalid)
        if row is None:
            raise EditError(FEATURE_NOT_FOUND, f"Attachment {globalid} not found.")
        name = check_attachment_name(name) if name is not None else row["name"]
        gen = self.tx.next_gen(self.layer.service)
        self.tx.update_attachment(
            row["attachment_id"], name, content_type or row["content_type"], data, gen
        )
        self.tx.log_change(self.layer, "a", globalid, gen, self.ctx.replica_id)
        return {"objectId": row["attachment_id"], "globalId": globalid, "success": True}

    def delete(self, globalid: str, missing_ok: bool) -> dict:
        row = self.tx.attachment_by_gid(self.layer, globalid)
        if row is None:
            if missing_ok:
                return {"globalId": globalid, "success": True}
            raise EditError(FEATURE_NOT_FOUND, f"Attachment {globalid} not found.")
        gen = self.tx.next_gen(self.layer.service)
        self.tx.delete_attachment(row["attachment_id"])
        self.tx.tombstone(self.layer, "a", globalid, row["attachment_id"], gen, self.ctx.replica_id)
        return {"objectId": row["attachment_id"], "globalId": globalid, "success": True}


def apply_attachment_edits(tx: Tx, layer: Layer, ctx: EditContext, edits: Any) -> dict:
    """The `attachments` part of a sync upload -> attachmentResults."""
    if not isinstance(edits, dict):
        raise EditError(INVALID_EDIT, "'attachments' must be a JSON object.")
    editor = AttachmentEditor(tx, layer, ctx)
    results: dict[str, list] = {"addResults": [], "updateResults": [], "deleteResults": []}
    for key, out in (("adds", "addResults"), ("updates", "updateResults")):
        for item in _as_list(edits.get(key), key):
            gid = normalize_guid(item.get("globalId")) if isinstance(item, dict) else None
            try:
                if gid is None:
                    raise EditError(INVALID_EDIT, "Each attachment needs a valid 'globalId'.")
                data = decode_data(item["data"]) if item.get("data") is not None else None
                tx.conn.execute("SAVEPOINT att")
                try:
                    if key == "adds":
                        parent = normalize_guid(item.get("parentGlobalId"))
                        if parent is None:
                            raise EditError(
                                INVALID_EDIT, "Each attachment add needs a valid 'parentGlobalId'."
                            )
                        if data is None:
                            raise EditError(INVALID_EDIT, "Each attachment add needs 'data'.")
                        result = editor.add(
                            parent, item.get("name"), item.get("contentType"), data, gid
                        )
                    else:
                        result = editor.update(gid, item.get("name"), item.get("contentType"), data)
                except EditError:
                    tx.conn.execute("ROLLBACK TO att")
                    raise
                finally:
                    tx.conn.execute("RELEASE att")
                results[out].append({"globalId": result["globalId"], "success": True})
            except EditError as exc:
                results[out].append(
                    failed(
                        exc,
                        globalid=gid or (item.get("globalId") if isinstance(item, dict) else None),
                    )
                )
    for ident in _as_list(edits.get("deleteIds"), "deleteIds"):
        gid = normalize_guid(ident)
        try:
            if gid is None:
                raise EditError(
                    INVALID_EDIT,
                    f"Attachment deletes need GlobalIDs, got {json.dumps(ident)[:60]}.",
                )
            results["deleteResults"].append(
                {"globalId": editor.delete(gid, missing_ok=True)["globalId"], "success": True}
            )
        except EditError as exc:
            results["deleteResults"].append(
                failed(exc, globalid=ident if isinstance(ident, str) else None)
            )
    return results


def feature_columns(layer: Layer) -> str:
    return ", ".join(quote(n) for n in layer.field_names())
