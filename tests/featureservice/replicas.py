"""Sync semantics: createReplica, synchronizeReplica, unRegisterReplica and replica info.

Rules pinned by the spec and implemented here:
- the GlobalID is the identity of a row; uploads match by GlobalID only;
- uploads are applied first, then the changes made since the client's generation by anyone
  *but this replica* are exported (a replica's own edits are never echoed back);
- updates carry only the attributes to change; the last synchronized edit wins per attribute;
- an update of a deleted feature fails with 1019 and does not resurrect it;
- replayed adds (GlobalID exists) become updates, replayed deletes of missing rows succeed;
- the generation advances only when the request commits (the store rolls it back otherwise).
"""

from __future__ import annotations

import base64
import os
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from . import geom
from .edits import (
    EditContext,
    apply_attachment_edits,
    apply_feature_edits,
    feature_writer,
    normalize_guid,
)
from .errors import ApiError, EditError, bad_request
from .jsonwriter import StreamDict, StreamList, write_json
from .params import Params
from .query import RowFilter, build_filter, parse_geometry_param, parse_json_param, require
from .store import Layer, Tx, now_ms, quote

SYNC_MODELS = ("perReplica", "perLayer", "none")
DIRECTIONS = ("bidirectional", "upload", "download", "snapshot")
ATTACHMENT_DIRECTIONS = ("none", "upload", "bidirectional")
RESPONSE_DATA = "esriReplicaResponseTypeData"
RESPONSE_INFO = "esriReplicaResponseTypeInfo"
RESPONSE_EDITS = "esriReplicaResponseTypeEdits"
RESPONSE_NO_EDITS = "esriReplicaResponseTypeNoEdits"
RESPONSE_REPLACEMENT = "esriReplicaResponseTypeReplacementData"
TRANSPORT_URL = "esriTransportTypeUrl"
TRANSPORT_EMBEDDED = "esriTransportTypeEmbedded"


@dataclass
class Env:
    """What an operation needs to know about the request beyond its parameters."""

    root_url: str  # http://127.0.0.1:<port>/arcgis
    results_dir: Path
    user: str | None = None
    auth_on: bool = False
    #: Observer of committed sync uploads (tests): called with a record after the commit.
    on_sync_commit: Callable[[dict], None] | None = None
    #: Fault injection: edit results name rows by objectId only (no globalId).
    results_by_object_id: bool = False

    def service_url(self, service: str) -> str:
        return f"{self.root_url}/rest/services/{service}/FeatureServer"

    def result_url(self, service: str, name: str, server_type: str = "FeatureServer") -> str:
        return f"{self.root_url}/rest/directories/arcgisoutput/{service}_{server_type}/{name}"

    def attachment_url(self, service: str, layer_id: int, objectid: int, attachment_id: int) -> str:
        return f"{self.service_url(service)}/{layer_id}/{objectid}/attachments/{attachment_id}"


def write_result_file(tx: Tx, env: Env, service: str, doc: Any) -> str:
    """Writes a result document to the results folder; returns its URL."""
    name = f"_ags_{uuid.uuid4().hex}.json"
    path = env.results_dir / name
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as fp:
        write_json(fp, doc)
    os.replace(tmp, path)
    tx.add_result(name)
    return env.result_url(service, name)


def can_upload(service: dict) -> bool:
    caps = {c.strip().lower() for c in service.get("capabilities", "").split(",")}
    # "Editing" alone allows every kind of edit.
    return bool(caps & {"create", "update", "delete", "editing"})


def _choice(params: Params, name: str, allowed: tuple, default: str) -> str:
    value = params.get(name) or default
    for option in allowed:
        if str(value).lower() == option.lower():
            return option
    raise bad_request(f"Invalid {name} '{str(value)[:40]}': use one of {', '.join(allowed)}.")


def parse_layer_ids(tx: Tx, service: str, raw: Any) -> list[int]:
    if raw is None or raw == "":
        raise ApiError(400, "'layers' must be specified.", ["Missing required parameter 'layers'."])
    if isinstance(raw, str):
        text = raw.strip().strip("[]")
        items = [p for p in text.split(",") if p.strip()]
    elif isinstance(raw, list):
        items = raw
    else:
        items = [raw]
    ids = []
    for item in items:
        try:
            layer_id = int(str(item).strip())
        except ValueError as exc:
            raise bad_request(f"Invalid layer id '{str(item)[:20]}' in 'layers'.") from exc
        tx.layer(service, layer_id)  # raises for unknown ids
        if layer_id not in ids:
            ids.append(layer_id)
    if not ids:
        raise bad_request("'layers' must name at least one layer.")
    return ids


class Scope:
    """Which rows of a layer belong to a replica: its layer query, its geometry, related rows."""

    def __init__(
        self,
        layer: Layer,
        base: RowFilter | None,
        related_key: str | None = None,
        related: set | None = None,
    ):
        self.layer = layer
        self.base = base
        self.related_key = related_key
        self.related = related

    def rows(
        self, tx: Tx, extra_sql: str = "1=1", extra_params: list | tuple = (), columns: str = "*"
    ) -> Iterator:
        seen = set()
        oid = self.layer.oid_field
        if self.base is not None:
            for row in tx.select(
                self.layer,
                f"({self.base.sql}) AND ({extra_sql})",
                [*self.base.params, *extra_params],
                columns=columns,
            ):
                if self.base.exact is None or self.base.exact(row):
                    seen.add(row[oid])
                    yield row
        if self.related:
            for row in tx.select(self.layer, extra_sql, list(extra_params), columns=columns):
                if row[oid] not in seen and row[self.related_key] in self.related:
                    yield row

    def rows_by_gid(self, tx: Tx, gids: list[str], columns: str = "*") -> Iterator:
        gid = quote(self.layer.gid_field)
        for start in range(0, len(gids), 500):
            chunk = gids[start : start + 500]
            yield from self.rows(tx, f"{gid} IN ({', '.join('?' * len(chunk))})", chunk, columns)

    def columns_for(self, *names: str) -> str:
        """``names`` plus what deciding membership needs (all columns for an exact test)."""
        if self.base is not None and self.base.exact is not None:
            return "*"
        wanted = [self.layer.oid_field, *names]
        if self.related_key:
            wanted.append(self.related_key)
        return ", ".join(quote(n) for n in dict.fromkeys(wanted))


def replica_scopes(tx: Tx, service: dict, replica: dict) -> dict[int, Scope]:
    """The scope of each of the replica's layers, origins before related destinations."""
    name = service["_name"]
    queries = replica.get("layerQueries") or {}
    geometry = replica.get("geometry")
    scopes: dict[int, Scope] = {}
    pending_related = []
    for layer_id in replica["layers"]:
        layer = tx.layer(name, layer_id)
        query = queries.get(str(layer_id)) or {}
        option = query.get("queryOption", "useFilter")
        base = None
        if option == "all":
            base = RowFilter("1=1", [])
        elif option == "useFilter":
            use_geometry = query.get("useGeometry", True)
            base = build_filter(
                layer,
                service,
                where=query.get("where"),
                geometry=geometry if use_geometry else None,
            )
        scopes[layer_id] = Scope(layer, base)
        if query.get("includeRelated"):
            pending_related.append(layer)
    for layer in pending_related:
        for rel in layer.info.get("relationships") or []:
            origin_id = rel.get("relatedTableId")
            if rel.get("role") != "esriRelRoleDestination" or origin_id not in scopes:
                continue
            origin = scopes[origin_id]
            origin_rel = next(
                (r for r in origin.layer.info.get("relationships") or [] if r["id"] == rel["id"]),
                None,
            )
            origin_key = origin_rel["keyField"] if origin_rel else origin.layer.gid_field
            keys = {row[origin_key] for row in origin.rows(tx)}
            scopes[layer.id] = Scope(layer, scopes[layer.id].base, rel["keyField"], keys)
    return scopes


def _attachment_json(env: Env, layer: Layer, att, parent_oid: int | None, by_url: bool) -> dict:
    item = {
        "globalId": att["globalid"],
        "parentGlobalId": att["parent_globalid"],
        "name": att["name"],
        "contentType": att["content_type"],
        "size": att["size"],
    }
    if by_url and parent_oid is not None:
        item["url"] = env.attachment_url(layer.service, layer.id, parent_oid, att["attachment_id"])
    else:
        item["data"] = base64.b64encode(att["data"]).decode("ascii")
    return item


def replica_projector(replica: dict):
    """Projects stored geometries to the replica's replicaSR (None when it is the service's)."""
    target = replica.get("replicaSR")
    if target is None:
        return None
    source = replica["serviceWkid"]
    return lambda g: geom.project(g, source, target)


def _data_entries(
    tx: Tx, env: Env, replica: dict, scopes: dict[int, Scope], with_attachments: bool, by_url: bool
) -> Iterator[StreamDict]:
    """The `layers` of a createReplica or snapshot result: every row in scope, plus attachments."""
    project = replica_projector(replica)
    for layer_id, scope in scopes.items():
        layer = scope.layer
        entry = StreamDict(id=layer_id)
        if with_attachments and layer.has_attachments:
            parents: dict[str, int] = {}

            def features(scope=scope, layer=layer, parents=parents):
                feature = feature_writer(layer, project)
                for row in scope.rows(tx):
                    parents[row[layer.gid_field]] = row[layer.oid_field]
                    yield feature(row)

            def attachments(layer=layer, parents=parents):
                for att in tx.attachments_of(layer):
                    if att["parent_globalid"] in parents:
                        yield _attachment_json(
                            env, layer, att, parents[att["parent_globalid"]], by_url
                        )

            entry["features"] = StreamList(features())
            entry["attachments"] = StreamList(attachments())
        else:
            entry["features"] = StreamList(map(feature_writer(layer, project), scope.rows(tx)))
            if with_attachments:
                entry["attachments"] = []
        yield entry


def _gens_json(replica: dict) -> dict:
    if replica["syncModel"] == "perLayer":
        return {
            "layerServerGens": [
                {"id": int(k), "serverGen": v} for k, v in replica["layerServerGens"].items()
            ]
        }
    return {"replicaServerGen": replica["replicaServerGen"]}


def create_replica(
    tx: Tx, env: Env, service: dict, params: Params
) -> tuple[StreamDict, dict | None]:
    """Registers the replica (unless syncModel=none) and builds its data document."""
    name = service["_name"]
    if not service.get("syncEnabled"):
        raise ApiError(
            400,
            f"The service '{name}' does not support sync (capabilities: {service.get('capabilities')}); it cannot be taken offline.",
            ["Sync is not enabled for this service."],
        )
    replica_name = require(params.get("replicaName"), "replicaName")
    layer_ids = parse_layer_ids(tx, name, params.get("layers"))
    raw_queries = parse_json_param(params, "layerQueries", {}) or {}
    if not isinstance(raw_queries, dict):
        raise bad_request("'layerQueries' must be a JSON object keyed by layer id.")
    queries = {}
    for key, query in raw_queries.items():
        if not isinstance(query, dict):
            raise bad_request(f"layerQueries entry '{key}' must be a JSON object.")
        try:
            layer_id = int(key)
        except ValueError as exc:
            raise bad_request(f"Invalid layer id '{key}' in layerQueries.") from exc
        option = query.get("queryOption", "useFilter")
        if option not in ("all", "useFilter", "none"):
            raise bad_request(
                f"Invalid queryOption '{option}' for layer {layer_id}: use all, useFilter or none."
            )
        queries[str(layer_id)] = {
            "queryOption": option,
            "where": query.get("where"),
            "useGeometry": bool(query.get("useGeometry", True)),
            "includeRelated": bool(query.get("includeRelated", False)),
        }
    geometry, in_wkid = parse_geometry_param(params)
    service_wkid = geom.wkid_of(service["spatialReference"])
    if geometry is not None:
        try:
            geometry = geom.project(geometry, in_wkid, service_wkid)
        except geom.GeometryError as exc:
            raise bad_request(f"Invalid geometry: {exc}.") from exc
    replica_sr = None
    if params.get("replicaSR"):
        try:
            replica_sr = geom.wkid_of(params.get("replicaSR"))
            if geom.point_projector(service_wkid, replica_sr) is None:
                replica_sr = None  # the service's own reference
        except geom.GeometryError as exc:
            raise bad_request(f"Invalid replicaSR: {exc}.") from exc
    sync_model = _choice(params, "syncModel", SYNC_MODELS, "perReplica")
    direction = _choice(
        params, "syncDirection", ("bidirectional", "upload", "download"), "bidirectional"
    )
    if not can_upload(service):
        direction = "download"  # Query+Sync services give download-only replicas
    att_direction = _choice(
        params, "attachmentsSyncDirection", ATTACHMENT_DIRECTIONS, "bidirectional"
    )
    data_format = (params.get("dataFormat") or "json").lower()
    if data_format != "json":
        raise bad_request(
            f"dataFormat '{data_format}' is not supported by this service: use dataFormat=json."
        )
    with_attachments = params.get_bool("returnAttachments", False)
    by_url = params.get_bool("returnAttachmentsDataByUrl", True)

    gen = tx.current_gen(name)
    existing = _existing_data_gens(params, layer_ids, sync_model, gen)
    replica = {
        "replicaID": "{" + str(uuid.uuid4()).upper() + "}",
        "replicaName": str(replica_name),
        "service": name,
        "owner": env.user,
        "layers": layer_ids,
        "layerQueries": queries,
        "geometry": geometry,
        "syncModel": sync_model,
        "syncDirection": direction,
        "attachmentsSyncDirection": att_direction,
        "replicaServerGen": gen,
        "layerServerGens": {str(i): gen for i in layer_ids},
        "creationDate": now_ms(),
        "lastSyncDate": None,
        "targetType": "client",
        "serviceWkid": service_wkid,
        "replicaSR": replica_sr,
        # Extra content (contingent values, annotation...) this service has none of: kept to
        # be reported, like the other creation parameters.
        "syncDataOptions": params.get_int("syncDataOptions", 0),
    }
    if existing is not None:
        # The client has the data already (a package made at these generations): register the
        # replica there, so its first sync downloads every change made since; no data.
        replica["layerServerGens"] = {str(i): existing[i] for i in layer_ids}
        replica["replicaServerGen"] = min(existing.values())
        tx.save_replica(replica)
        doc = StreamDict(replicaName=replica["replicaName"], replicaID=replica["replicaID"])
        doc["responseType"] = RESPONSE_INFO
        doc["syncModel"] = sync_model
        doc.update(_gens_json(replica))
        return doc, replica
    scopes = replica_scopes(tx, service, replica)
    doc = StreamDict(replicaName=replica["replicaName"])
    if sync_model != "none":
        doc["replicaID"] = replica["replicaID"]
    doc["responseType"] = RESPONSE_DATA
    doc["syncModel"] = sync_model
    if sync_model != "none":
        doc.update(_gens_json(replica))
        tx.save_replica(replica)
    doc["layers"] = StreamList(_data_entries(tx, env, replica, scopes, with_attachments, by_url))
    return doc, (replica if sync_model != "none" else None)


def _entry_layer_id(item: Any, what: str) -> int:
    """The layer id of one ``{"id": ..., "serverGen": ...}`` entry of ``what``."""
    if not isinstance(item, dict) or "id" not in item:
        raise bad_request(f"Each {what} entry needs an 'id'.")
    try:
        return int(item["id"])
    except (TypeError, ValueError) as exc:
        raise bad_request(f"Invalid layer id '{item['id']}' in {what}.") from exc


def _existing_data_gens(
    params: Params, layer_ids: list[int], sync_model: str, current: int
) -> dict[int, int] | None:
    """``replicaOptions`` registering existing data: the generation of each layer's data
    (``replicaServerGen`` for all, or ``layerServerGens`` per layer); None when not asked."""
    options = parse_json_param(params, "replicaOptions", {}) or {}
    if not isinstance(options, dict):
        raise bad_request("'replicaOptions' must be a JSON object.")
    if not options.get("registerExistingData"):
        return None
    if sync_model == "none":
        raise bad_request("Existing data can only be registered for a replica that syncs.")
    gens: dict[int, int] = {}
    if options.get("replicaServerGen") not in (None, ""):
        gen = _parse_gen(options["replicaServerGen"], "replicaServerGen")
        gens = dict.fromkeys(layer_ids, gen)
    for item in options.get("layerServerGens") or []:
        layer_id = _entry_layer_id(item, "layerServerGens")
        if layer_id in layer_ids:
            gens[layer_id] = _parse_gen(item.get("serverGen"), "serverGen")
    missing = [i for i in layer_ids if i not in gens]
    if missing:
        raise bad_request(
            "replicaOptions registering existing data needs the generation of the data: "
            f"replicaServerGen, or layerServerGens for layers {missing}."
        )
    newer = {i: g for i, g in gens.items() if g > current}
    if newer:
        raise bad_request(
            f"The generation of the existing data {newer} is newer than the service's "
            f"({current}); the data does not belong to this service."
        )
    return gens


def load_replica(tx: Tx, env: Env, service: dict, replica_id: Any) -> dict:
    replica_id = require(replica_id, "replicaID")
    key = normalize_guid(replica_id) or str(replica_id)
    replica = tx.replica(key)
    if replica is None or replica["service"].lower() != service["_name"].lower():
        raise ApiError(
            400,
            f"Replica {str(replica_id)[:60]} does not exist on service '{service['_name']}'; it may have been unregistered.",
            ["Replica not found."],
        )
    if env.auth_on and replica.get("owner") != env.user:
        raise ApiError(
            403, "You do not have permissions to access this replica: it belongs to another user."
        )
    return replica


def _parse_gen(value: Any, what: str) -> int:
    try:
        gen = int(str(value).strip())
    except (TypeError, ValueError) as exc:
        raise bad_request(f"Invalid {what} '{str(value)[:40]}': it must be an integer.") from exc
    if gen < 0:
        raise bad_request(f"Invalid {what} {gen}: it must not be negative.")
    return gen


def _sync_plan(
    tx: Tx, service: dict, replica: dict, params: Params, direction: str
) -> dict[int, tuple[int, str]]:
    """layer id -> (generation the client has, direction) for this sync."""
    current = tx.current_gen(service["_name"])
    plan: dict[int, tuple[int, str]] = {}
    if replica["syncModel"] == "perLayer":
        sync_layers = parse_json_param(params, "syncLayers")
        if sync_layers is None:
            for key, gen in replica["layerServerGens"].items():
                plan[int(key)] = (gen, direction)
        else:
            if not isinstance(sync_layers, list):
                raise bad_request(
                    "'syncLayers' must be a JSON list of {id, serverGen, syncDirection}."
                )
            for item in sync_layers:
                layer_id = _entry_layer_id(item, "syncLayers")
                if layer_id not in replica["layers"]:
                    raise bad_request(f"Layer {layer_id} is not part of this replica.")
                gen_value = item.get("serverGen", replica["layerServerGens"].get(str(layer_id)))
                layer_dir = str(item.get("syncDirection") or direction)
                if layer_dir not in DIRECTIONS:
                    raise bad_request(f"Invalid syncDirection '{layer_dir}' for layer {layer_id}.")
                plan[layer_id] = (_parse_gen(gen_value, "serverGen"), layer_dir)
    else:
        raw = params.get("replicaServerGen")
        gen = (
            replica["replicaServerGen"]
            if raw in (None, "")
            else _parse_gen(raw, "replicaServerGen")
        )
        for layer_id in replica["layers"]:
            plan[layer_id] = (gen, direction)
    if replica["syncDirection"] == "upload":
        # An upload-only replica never receives server changes.
        plan = {
            lid: (g, "upload" if d in ("bidirectional", "download") else d)
            for lid, (g, d) in plan.items()
        }
    for layer_id, (gen, _) in plan.items():
        if gen > current:
            raise bad_request(
                f"The generation {gen} sent for layer {layer_id} is newer than the service's ({current}); "
                "the local copy does not belong to this service's data."
            )
    return plan


def _parse_edits(params: Params, replica: dict) -> list[dict]:
    edits = parse_json_param(params, "edits", []) or []
    if not isinstance(edits, list):
        raise bad_request("'edits' must be a JSON list with one entry per layer.")
    seen = set()
    for entry in edits:
        if not isinstance(entry, dict) or "id" not in entry:
            raise bad_request("Each entry of 'edits' must be an object with the layer 'id'.")
        try:
            entry["id"] = int(entry["id"])
        except (TypeError, ValueError) as exc:
            raise bad_request(f"Invalid layer id '{str(entry['id'])[:20]}' in edits.") from exc
        if entry["id"] not in replica["layers"]:
            raise bad_request(f"Layer {entry['id']} in edits is not part of this replica.")
        if entry["id"] in seen:
            raise bad_request(f"Layer {entry['id']} appears twice in edits.")
        seen.add(entry["id"])
        for part in ("features", "attachments"):
            value = entry.get(part)
            if value is not None and not isinstance(value, dict):
                raise bad_request(
                    f"edits[{entry['id']}].{part} must be an object with adds, updates and deleteIds."
                )
            for key in ("adds", "updates", "deleteIds"):
                if value and value.get(key) is not None and not isinstance(value.get(key), list):
                    raise bad_request(f"edits[{entry['id']}].{part}.{key} must be a list.")
    return edits


def _has_edits(edits: list[dict]) -> bool:
    return any(
        (entry.get(part) or {}).get(key)
        for entry in edits
        for part in ("features", "attachments")
        for key in ("adds", "updates", "deleteIds")
    )


def _download(
    tx: Tx, env: Env, replica: dict, scope: Scope, since: int, att_direction: str, by_url: bool
) -> tuple[dict, dict | None, int]:
    """Changes of one layer since `since` made by anyone but this replica."""
    layer = scope.layer
    rid = replica["replicaID"]
    # The rows changed since `since` by anyone but this replica. Their JSON is made while the
    # result file is written (still in this transaction), so a million changes stream.
    changed, changed_args = tx.changed_since_where(layer, "f", since, rid)
    feature = feature_writer(layer, replica_projector(replica))
    delete_ids = tx.deleted_since(layer, "f", since, rid)
    if scope.base is not None and scope.base.exact is None and not scope.related:
        # The usual scope (a query, no related rows): adds and updates counted in SQL, then
        # each streamed by one query in row order (what the client stores fastest).
        added = "(_created_gen > ? AND _created_by IS NOT ?)"
        total, adds = tx.conn.execute(
            f"SELECT count(*), total({added}) FROM {layer.table}"
            f" WHERE ({scope.base.sql}) AND ({changed})",
            [since, rid, *scope.base.params, *changed_args],
        ).fetchone()
        adds = int(adds)
        updates = total - adds

        def kind(condition: str, number: int):
            where = f"({changed}) AND {condition}"
            if not number:
                return StreamList([], 0)
            return StreamList(
                map(feature, scope.rows(tx, where, [*changed_args, since, rid])), number
            )

        features = StreamDict(
            adds=kind(added, adds), updates=kind(f"NOT {added}", updates), deleteIds=delete_ids
        )
    else:
        # Which are adds and which updates is kept by ObjectID, in one light query.
        oid = layer.oid_field

        def features_of(oids):
            for start in range(0, len(oids), 500):
                chunk = list(oids[start : start + 500])
                where = f"{quote(oid)} IN ({', '.join('?' * len(chunk))})"
                yield from map(feature, tx.select(layer, where, chunk))

        add_oids, update_oids = array("q"), array("q")
        columns = scope.columns_for("_created_gen", "_created_by")
        for row in scope.rows(tx, changed, changed_args, columns):
            is_add = row["_created_gen"] > since and row["_created_by"] != rid
            (add_oids if is_add else update_oids).append(row[oid])
        adds, updates = len(add_oids), len(update_oids)
        features = StreamDict(
            adds=StreamList(features_of(add_oids), adds),
            updates=StreamList(features_of(update_oids), updates),
            deleteIds=delete_ids,
        )

    count = adds + updates + len(delete_ids)
    attachments = None
    if layer.has_attachments and att_direction == "bidirectional":
        att_changed = tx.changed_since(layer, "a", since, rid)
        att_adds, att_updates = [], []
        if att_changed:
            rows = tx.attachments_by_gid(layer, sorted(att_changed))
            parents = {
                r[layer.gid_field]: r[layer.oid_field]
                for r in scope.rows_by_gid(tx, sorted({a["parent_globalid"] for a in rows}))
            }
            for att in rows:
                if att["parent_globalid"] not in parents:
                    continue
                item = _attachment_json(env, layer, att, parents[att["parent_globalid"]], by_url)
                (att_adds if att["created_gen"] > since else att_updates).append(item)
        att_deletes = tx.deleted_since(layer, "a", since, rid)
        attachments = {"adds": att_adds, "updates": att_updates, "deleteIds": att_deletes}
        count += len(att_adds) + len(att_updates) + len(att_deletes)
    return features, attachments, count


def synchronize_replica(tx: Tx, env: Env, service: dict, params: Params) -> StreamDict:
    """Applies uploads and exports downloads in the caller's transaction; raises ApiError to roll
    everything back (failed edits with rollbackOnFailure, bad input)."""
    name = service["_name"]
    replica = load_replica(tx, env, service, params.get("replicaID"))
    direction = _choice(params, "syncDirection", DIRECTIONS, "bidirectional")
    data_format = (params.get("dataFormat") or "json").lower()
    if data_format != "json":
        raise bad_request(
            f"dataFormat '{data_format}' is not supported by this service: use dataFormat=json."
        )
    plan = _sync_plan(tx, service, replica, params, direction)
    edits = _parse_edits(params, replica)
    by_url = params.get_bool("returnAttachmentsDataByUrl", True)
    rollback = params.get_bool("rollbackOnFailure", replica["syncModel"] != "perLayer")
    close = params.get_bool("closeReplica", False)
    att_direction = replica.get("attachmentsSyncDirection", "bidirectional")

    uploading = {lid for lid, (_, d) in plan.items() if d in ("bidirectional", "upload")}
    upload_edits = [e for e in edits if e["id"] in uploading]
    if _has_edits(upload_edits) and (
        replica["syncDirection"] == "download" or not can_upload(service)
    ):
        raise ApiError(
            400,
            f"This replica is download-only: the service '{name}' does not allow edits "
            f"(capabilities: {service.get('capabilities')}). Local edits cannot be uploaded.",
            ["Uploads are not allowed for download-only replicas."],
        )

    ctx = EditContext(
        user=env.user,
        replica_id=replica["replicaID"],
        geometry_wkid=replica.get("replicaSR"),
        true_curve_client=params.get_bool("trueCurveClient", False),
    )
    results: dict[int, dict] = {}
    failures: list[str] = []
    for entry in upload_edits:
        layer = tx.layer(name, entry["id"])
        part = entry.get("features") or {}
        try:
            res = apply_feature_edits(
                tx,
                layer,
                ctx,
                adds=part.get("adds"),
                updates=part.get("updates"),
                deletes=part.get("deleteIds"),
                sync=True,
            )
        except EditError as exc:
            raise bad_request(f"Invalid edits for layer {layer.id}: {exc.description}") from exc
        results[entry["id"]] = {
            "addResults": res.add_results,
            "updateResults": res.update_results,
            "deleteResults": res.delete_results,
        }
        for kind, items in (
            ("add", res.add_results),
            ("update", res.update_results),
            ("delete", res.delete_results),
        ):
            for item in items:
                if not item["success"]:
                    failures.append(
                        f"Layer {layer.id} {kind} {item.get('globalId')}: {item['error']['description']} (code {item['error']['code']})"
                    )
    for entry in upload_edits:
        att_edits = entry.get("attachments")
        if not att_edits or not any(att_edits.get(k) for k in ("adds", "updates", "deleteIds")):
            continue
        layer = tx.layer(name, entry["id"])
        if att_direction == "none" or not layer.has_attachments:
            reason = (
                "this replica does not synchronize attachments"
                if att_direction == "none"
                else f"{layer.name} has no attachments"
            )
            att_results = {
                key: [
                    {
                        "globalId": (i.get("globalId") if isinstance(i, dict) else i),
                        "success": False,
                        "error": {
                            "code": 1000,
                            "description": f"Attachment edit refused: {reason}.",
                        },
                    }
                    for i in att_edits.get(src) or []
                ]
                for key, src in (
                    ("addResults", "adds"),
                    ("updateResults", "updates"),
                    ("deleteResults", "deleteIds"),
                )
            }
        else:
            try:
                att_results = apply_attachment_edits(tx, layer, ctx, att_edits)
            except EditError as exc:
                raise bad_request(
                    f"Invalid attachment edits for layer {layer.id}: {exc.description}"
                ) from exc
        results.setdefault(
            entry["id"], {"addResults": [], "updateResults": [], "deleteResults": []}
        )["attachmentResults"] = att_results
        for items in att_results.values():
            for item in items:
                if not item["success"]:
                    failures.append(
                        f"Layer {layer.id} attachment {item.get('globalId')}: {item['error']['description']} (code {item['error']['code']})"
                    )
    if env.results_by_object_id:
        for layer_results in results.values():
            for key in ("addResults", "updateResults", "deleteResults"):
                for item in layer_results.get(key) or []:
                    item.pop("globalId", None)
    if failures and rollback:
        raise ApiError(
            400,
            f"Synchronization failed and was rolled back: {len(failures)} edit(s) could not be applied.",
            failures[:100],
        )

    new_gen = tx.current_gen(name)
    if env.on_sync_commit is not None and _has_edits(upload_edits):
        record = {
            "service": name,
            "replicaID": replica["replicaID"],
            "gen": new_gen,
            "edits": upload_edits,
            "results": results,
        }
        tx.after_commit.append(lambda: env.on_sync_commit(record))
    scopes = replica_scopes(tx, service, replica)
    doc = StreamDict(replicaName=replica["replicaName"], replicaID=replica["replicaID"])
    layer_entries = []
    downloaded = 0
    snapshot_scopes = {}
    for layer_id, (since, layer_dir) in plan.items():
        if layer_dir == "snapshot":
            snapshot_scopes[layer_id] = scopes[layer_id]
            continue
        entry = StreamDict(id=layer_id)
        if layer_dir in ("bidirectional", "download"):
            features, attachments, count = _download(
                tx, env, replica, scopes[layer_id], since, att_direction, by_url
            )
            downloaded += count
            entry["features"] = features
            if attachments is not None:
                entry["attachments"] = attachments
        entry.update(results.get(layer_id, {}))
        if len(entry) > 1:
            layer_entries.append(entry)
        if replica["syncModel"] == "perLayer" and layer_dir != "upload":
            replica["layerServerGens"][str(layer_id)] = new_gen
    if replica["syncModel"] != "perLayer" and direction != "upload":
        replica["replicaServerGen"] = new_gen
        replica["layerServerGens"] = {str(i): new_gen for i in replica["layers"]}
    elif replica["syncModel"] != "perLayer":
        replica["replicaServerGen"] = plan[replica["layers"][0]][0]

    if snapshot_scopes:
        doc["responseType"] = RESPONSE_REPLACEMENT
    elif downloaded or results:
        doc["responseType"] = RESPONSE_EDITS
    else:
        doc["responseType"] = RESPONSE_NO_EDITS
    doc["syncModel"] = replica["syncModel"]
    doc.update(_gens_json(replica))
    if snapshot_scopes:
        doc["layers"] = StreamList(
            _data_entries(
                tx, env, replica, snapshot_scopes, att_direction == "bidirectional", by_url
            )
        )
    doc["edits"] = StreamList(layer_entries, len(layer_entries))
    replica["lastSyncDate"] = now_ms()
    if close:
        tx.delete_replica(replica["replicaID"])
    else:
        tx.save_replica(replica)
    return doc


def unregister_replica(tx: Tx, env: Env, service: dict, params: Params) -> dict:
    raw = require(params.get("replicaID"), "replicaID")
    if str(raw).strip() == "*":
        for replica in tx.replicas(service["_name"]):
            if not env.auth_on or replica.get("owner") == env.user:
                tx.delete_replica(replica["replicaID"])
        return {"success": True}
    replica = load_replica(tx, env, service, raw)
    tx.delete_replica(replica["replicaID"])
    return {"success": True}


def list_replicas(tx: Tx, env: Env, service: dict) -> list[dict]:
    return [
        {"replicaName": r["replicaName"], "replicaID": r["replicaID"]}
        for r in tx.replicas(service["_name"])
        if not env.auth_on or r.get("owner") == env.user
    ]


def replica_info(tx: Tx, env: Env, service: dict, replica_id: str) -> dict:
    replica = load_replica(tx, env, service, replica_id)
    info = {
        "replicaName": replica["replicaName"],
        "replicaID": replica["replicaID"],
        "replicaOwner": replica.get("owner"),
        "layers": replica["layers"],
        "syncModel": replica["syncModel"],
        "syncDirection": replica["syncDirection"],
        "attachmentsSyncDirection": replica["attachmentsSyncDirection"],
        "creationDate": replica["creationDate"],
        "lastSyncDate": replica["lastSyncDate"],
        "targetType": replica.get("targetType", "client"),
        "spatialReference": {"wkid": replica["replicaSR"]}
        if replica.get("replicaSR")
        else service["spatialReference"],
        "layerQueries": replica.get("layerQueries") or {},
    }
    if replica.get("syncDataOptions"):
        info["syncDataOptions"] = replica["syncDataOptions"]
    if replica.get("geometry"):
        info["geometry"] = replica["geometry"]
    info.update(_gens_json(replica))
    return info
