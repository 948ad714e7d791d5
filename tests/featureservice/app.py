"""The WSGI application: routing, authentication, fault injection, JSON answers, async jobs.

Everything lives under `/arcgis`: `/rest/services/<name>/FeatureServer/...`, `/tokens`,
`/sharing/rest/...` (portal), `/rest/directories/arcgisoutput/...` (result files) and
`/admin/...` (test switches: faults, expiring tokens and result files)."""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from . import packages, portal, sharing, tilepackage, tiles
from .auth import Auth
from .bulk import bulk_update
from .edits import (
    AttachmentEditor,
    EditContext,
    apply_attachment_edits,
    apply_feature_edits,
    check_attachment_name,
    normalize_guid,
    row_to_feature,
)
from .errors import ApiError, EditError, bad_request
from .faults import Faults
from .jsonwriter import json_text, write_json
from .params import Params
from .query import build_filter, parse_json_param, query_related_records, require, run_query
from .replicas import (
    TRANSPORT_EMBEDDED,
    TRANSPORT_URL,
    Env,
    can_upload,
    create_replica,
    list_replicas,
    replica_info,
    synchronize_replica,
    unregister_replica,
    write_result_file,
)
from .store import Layer, Store, Tx, now_ms

RESULT_TTL_SECONDS = 600
SVC = "/arcgis/rest/services/<service>/FeatureServer"
MAP = "/arcgis/rest/services/<service>/MapServer"
VTS = "/arcgis/rest/services/<service>/VectorTileServer"
TILED = "/arcgis/rest/services/<service>/<any(MapServer, VectorTileServer):server_type>"


class ServiceRequest(Request):
    # Sync uploads carry base64 attachments inside form fields: allow large forms.
    max_form_memory_size = 512 * 1024 * 1024
    max_content_length = 1024 * 1024 * 1024
    max_form_parts = 100000


def _rules() -> Map:
    def r(path: str, endpoint: str) -> Rule:
        return Rule(path, endpoint=endpoint, strict_slashes=False)

    return Map(
        [
            r("/arcgis/rest/info", "info"),
            r("/arcgis/rest/services", "catalog"),
            r(SVC, "service"),
            r(f"{SVC}/layers", "all_layers"),
            r(f"{SVC}/applyEdits", "service_apply_edits"),
            r(f"{SVC}/createReplica", "create_replica"),
            r(f"{SVC}/synchronizeReplica", "synchronize_replica"),
            r(f"{SVC}/unRegisterReplica", "unregister_replica"),
            r(f"{SVC}/replicas", "replicas"),
            r(f"{SVC}/replicas/<replica_id>", "replica"),
            r(f"{SVC}/jobs/<job_id>", "jobs"),
            r(f"{SVC}/<int(signed=True):layer_id>", "layer"),
            r(f"{SVC}/<int(signed=True):layer_id>/query", "query"),
            r(
                f"{SVC}/<int(signed=True):layer_id>/queryRelatedRecords",
                "query_related_records",
            ),
            r(f"{SVC}/<int(signed=True):layer_id>/applyEdits", "layer_apply_edits"),
            r(f"{SVC}/<int(signed=True):layer_id>/queryAttachments", "query_attachments"),
            r(f"{SVC}/<int(signed=True):layer_id>/<int(signed=True):oid>", "feature"),
            r(
                f"{SVC}/<int(signed=True):layer_id>/<int(signed=True):oid>/attachments",
                "attachments",
            ),
            r(
                f"{SVC}/<int(signed=True):layer_id>/<int(signed=True):oid>/attachments/<int(signed=True):aid>",
                "attachment",
            ),
            r(
                f"{SVC}/<int(signed=True):layer_id>/<int(signed=True):oid>/addAttachment",
                "add_attachment",
            ),
            r(
                f"{SVC}/<int(signed=True):layer_id>/<int(signed=True):oid>/updateAttachment",
                "update_attachment",
            ),
            r(
                f"{SVC}/<int(signed=True):layer_id>/<int(signed=True):oid>/deleteAttachments",
                "delete_attachments",
            ),
            r(MAP, "map_service"),
            r(f"{MAP}/tile/<int:level>/<int:row>/<int:col>", "map_tile"),
            r(VTS, "vector_service"),
            r(f"{VTS}/tile/<int:level>/<int:row>/<int:col>.pbf", "vector_tile"),
            r(f"{VTS}/resources/styles", "vector_style"),
            r(f"{VTS}/resources/styles/root.json", "vector_style"),
            r(f"{TILED}/exportTiles", "export_tiles"),
            r(f"{TILED}/estimateExportTilesSize", "estimate_export_tiles_size"),
            r(f"{TILED}/jobs/<job_id>", "tile_job"),
            r(f"{TILED}/jobs/<job_id>/results/<param>", "tile_job_result"),
            # Esri's documentation also shows job URLs under the operation.
            r(f"{TILED}/<any(exportTiles, estimateExportTilesSize):op>/jobs/<job_id>", "tile_job"),
            r(
                f"{TILED}/<any(exportTiles, estimateExportTilesSize):op>/jobs/<job_id>/results/<param>",
                "tile_job_result",
            ),
            r("/arcgis/rest/directories/arcgisoutput/<folder>/<name>", "result"),
            r("/arcgis/tokens/generateToken", "generate_token"),
            r("/arcgis/sharing/rest/generateToken", "generate_token"),
            r("/arcgis/sharing/rest", "portal_info"),
            r("/arcgis/sharing/rest/info", "portal_rest_info"),
            r("/arcgis/sharing/rest/content/items/<item_id>", "item"),
            r("/arcgis/sharing/rest/content/items/<item_id>/data", "item_data"),
            r("/arcgis/sharing/rest/content/items/<item_id>/relatedItems", "related_items"),
            r("/arcgis/sharing/rest/content/items/<item_id>/resources", "item_resources"),
            r("/arcgis/sharing/rest/content/items/<item_id>/resources/<name>", "item_resource"),
            r("/arcgis/admin/faults", "admin_faults"),
            r("/arcgis/admin/clearFaults", "admin_clear_faults"),
            r("/arcgis/admin/expireTokens", "admin_expire_tokens"),
            r("/arcgis/admin/expireResults", "admin_expire_results"),
            r("/arcgis/admin/prepareMapAreas", "admin_prepare_map_areas"),
            r("/arcgis/admin/refreshPackages", "admin_refresh_packages"),
            r("/arcgis/admin/stats", "admin_stats"),
            r("/arcgis/admin/resetStats", "admin_reset_stats"),
            r("/arcgis/admin/bulkUpdate", "admin_bulk_update"),
        ]
        + sharing.rules()  # sign-in and browsing (sharing.py)
    )


# The name a fault is armed with, per endpoint.
OPERATIONS = {
    "service_apply_edits": "applyEdits",
    "layer_apply_edits": "applyEdits",
    "create_replica": "createReplica",
    "synchronize_replica": "synchronizeReplica",
    "unregister_replica": "unRegisterReplica",
    "replica": "replicas",
    "generate_token": "generateToken",
    "query_related_records": "queryRelatedRecords",
    "query_attachments": "queryAttachments",
    "attachment": "attachments",
    "add_attachment": "addAttachment",
    "update_attachment": "updateAttachment",
    "delete_attachments": "deleteAttachments",
    "item": "items",
    "item_data": "data",
    "related_items": "relatedItems",
    "item_resources": "resources",
    "item_resource": "resource",
    "all_layers": "layers",
    "map_service": "service",
    "vector_service": "service",
    "map_tile": "tile",
    "vector_tile": "vectorTile",
    "vector_style": "styles",
    "export_tiles": "exportTiles",
    "estimate_export_tiles_size": "estimateExportTilesSize",
    "tile_job": "jobs",
    "tile_job_result": "results",
}
TILE_ENDPOINTS = {"map_tile", "vector_tile"}
PUBLIC = {"info", "generate_token", "portal_info", "portal_rest_info", "result"}


def json_response(body: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(json_text(body), status=status, mimetype=mimetype)


def _drop_connection(environ) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    # The dev server treats ConnectionError as "client went away" and stays quiet.
    raise ConnectionAbortedError("fault injection: connection dropped")


class ReferenceApp:
    """The reference feature service and portal over one data folder."""

    def __init__(self, data_dir: Path, users: dict[str, str] | None = None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.results_dir = self.data_dir / "results"
        self.results_dir.mkdir(exist_ok=True)
        self.store = Store(self.data_dir / "service.sqlite")
        self.auth = Auth(users)
        self.sharing = sharing.Sharing(self.store, self.auth)
        self.faults = Faults()
        self.url_map = _rules()
        #: Answer like a server federated with its portal (and like ArcGIS Online hosted
        #: services): /rest/info names the portal's token service and owningSystemUrl, and the
        #: server's own /tokens/generateToken does not exist.
        self.federated = False
        #: The portal a federated server names (default: this server's own portal).
        self.owning_system_url: str | None = None
        self._jobs: list[threading.Thread] = []
        self._jobs_lock = threading.Lock()
        #: Polls each slow job still answers "InProgress" to (the slow_job fault), by job id.
        self._held_polls: dict[str, int] = {}
        self._stats = {"requests": 0, "bytesOut": 0, "tiles": 0}
        self._stats_lock = threading.Lock()
        #: Percent done of running jobs that report progress (tile exports), by job id.
        self._job_progress: dict[str, int] = {}
        #: Called with a record of every committed synchronizeReplica upload, in commit order:
        #: {"service", "replicaID", "gen", "edits" (as uploaded), "results" (per layer id)}.
        self.sync_listeners: list[Callable[[dict], None]] = []

    # --- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = ServiceRequest(environ)
        if request.path.startswith("/arcgis/admin/"):  # test switches are not traffic
            return self.handle(request, environ)(environ, start_response)
        self._count(requests=1)
        response = self.handle(request, environ)
        return _CountingBody(response(environ, start_response), self._count)

    def _count(self, requests: int = 0, bytes_out: int = 0, tiles: int = 0) -> None:
        with self._stats_lock:
            self._stats["requests"] += requests
            self._stats["bytesOut"] += bytes_out
            self._stats["tiles"] += tiles

    def _sync_committed(self, record: dict) -> None:
        for listener in list(self.sync_listeners):
            try:
                listener(record)
            except Exception:  # an observer's bug must not fail the request
                traceback.print_exc(file=sys.stderr)

    def stats(self) -> dict:
        """Requests served, response bytes sent and tile requests (raster and vector) since the
        last reset (admin calls excluded)."""
        with self._stats_lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats = {"requests": 0, "bytesOut": 0, "tiles": 0}

    def handle(self, request: Request, environ) -> Response:
        adapter = self.url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return json_response(
                {"error": {"code": 404, "message": f"Not found: {request.path}", "details": []}},
                404,
            )
        except HTTPException as exc:
            return json_response(
                {"error": {"code": exc.code, "message": exc.description, "details": []}},
                exc.code or 400,
            )
        if endpoint in TILE_ENDPOINTS:
            self._count(tiles=1)
        operation = OPERATIONS.get(endpoint, endpoint)
        fault = None if endpoint.startswith("admin_") else self.faults.take(operation)
        if fault is not None:
            if fault.kind not in (
                "delay",
                "hold",
                "drop_after_commit",
                "truncated_json",
                "results_by_object_id",
            ):
                # Read the request body first: left in the connection's buffer, the server
                # would parse it as a next request ("Bad request syntax" on stderr).
                request.get_data(parse_form_data=True)
            early = self._fault_before(fault, environ)
            if early is not None:
                return early
        try:
            response = self.dispatch(request, endpoint, args, fault)
        except ApiError as exc:
            response = json_response(exc.body(), exc.http_status)
        except HTTPException as exc:
            response = json_response(
                {"error": {"code": exc.code, "message": exc.description, "details": []}},
                exc.code or 400,
            )
        except ConnectionError:
            raise
        except Exception as exc:  # a bug in the reference service: say so loudly, answer in shape
            traceback.print_exc(file=sys.stderr)
            response = json_response(
                {
                    "error": {
                        "code": 500,
                        "message": f"Internal error in the reference service: {exc}",
                        "details": [],
                    }
                }
            )
        if fault is not None:
            if fault.kind == "drop_after_commit":
                _drop_connection(environ)
            if fault.kind == "truncated_json":
                response.direct_passthrough = False  # result files are streamed; read them here
                body = response.get_data()
                response.close()  # closes the streamed result file
                response = Response(
                    body[: len(body) // 2], status=response.status_code, mimetype=response.mimetype
                )
        return response

    def _fault_before(self, fault, environ) -> Response | None:
        kind = fault.kind
        if kind.startswith("http5"):
            status = int(kind[4:])
            text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}[
                status
            ]
            return Response(
                f"<html><body><h1>{status} {text}</h1></body></html>",
                status=status,
                mimetype="text/html",
            )
        if kind == "http403":
            # A gateway or the server refusing the account, with a message but no error code.
            body = {
                "error": {"message": "This account has no access to the resource.", "details": []}
            }
            return json_response(body, 403)
        if kind == "html_error":
            page = "<html><head><title>Error</title></head><body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>"
            return Response(page, status=int(fault.opts.get("status", 200)), mimetype="text/html")
        if kind == "json_error":
            code = int(fault.opts.get("code", 400))
            message = str(fault.opts.get("message", "Error"))
            return json_response({"error": {"code": code, "message": message, "details": []}})
        if kind == "drop_before_commit":
            _drop_connection(environ)
        if kind == "delay":
            time.sleep(float(fault.opts.get("seconds", 1.0)))
        if kind == "hold":
            fault.opts["release"].wait(float(fault.opts.get("seconds", 60.0)))
        if kind == "expire_tokens":
            self.auth.expire_all()
        return None

    # --- dispatch ------------------------------------------------------------------------------

    def dispatch(self, request: Request, endpoint: str, args: dict, fault=None) -> Response:
        params = Params.from_request(request)
        root_url = request.host_url.rstrip("/") + "/arcgis"
        if endpoint in sharing.ENDPOINTS:
            return self.sharing.handle(request, params, endpoint, args, root_url)
        user = None
        if endpoint not in PUBLIC and not endpoint.startswith("admin_"):
            user = self.auth.user_for(request, params)
        env = Env(
            root_url=root_url,
            results_dir=self.results_dir,
            user=user,
            auth_on=self.auth.enabled,
            on_sync_commit=self._sync_committed if self.sync_listeners else None,
            results_by_object_id=fault is not None and fault.kind == "results_by_object_id",
        )
        handler: Callable[..., Response] = getattr(self, f"ep_{endpoint}")
        return handler(request, params, env, **args)

    # --- catalog, tokens, portal, admin -----------------------------------------------------------

    def ep_info(self, request, params, env):
        body = {
            "currentVersion": 10.91,
            "fullVersion": "10.9.1",
            "authInfo": {
                "isTokenBasedSecurity": self.auth.enabled,
                "tokenServicesUrl": f"{env.root_url}/tokens/generateToken",
            },
        }
        if self.federated:
            portal_url = self.owning_system_url or env.root_url
            body["owningSystemUrl"] = portal_url
            body["authInfo"]["tokenServicesUrl"] = f"{portal_url}/sharing/rest/generateToken"
        return json_response(body)

    def ep_portal_rest_info(self, request, params, env):
        return json_response(portal.portal_rest_info(env.root_url, self.auth.enabled))

    def ep_catalog(self, request, params, env):
        with self.store.read() as tx:
            names = tx.service_names()
        return json_response(
            {
                "currentVersion": 10.91,
                "folders": [],
                "services": [{"name": n, "type": "FeatureServer"} for n in names]
                + tiles.catalog_entries(),
            }
        )

    def ep_generate_token(self, request, params, env):
        if self.federated and "/sharing/" not in request.path:
            raise ApiError(404, "Not found: the server signs in at its portal.", [], 404)
        return json_response(self.auth.generate_token(params))

    def ep_portal_info(self, request, params, env):
        return json_response({"currentVersion": "10.3"})

    def ep_item(self, request, params, env, item_id):
        with self.store.read() as tx:
            self.sharing.check_item(tx, portal.existing_item(tx, item_id)[0], env.user)
            return json_response(portal.item(tx, item_id, env.root_url))

    def ep_item_data(self, request, params, env, item_id):
        package = packages.package_data_file(self.data_dir, item_id)
        if package is not None:
            path, mimetype = package
            return send_file(path, request.environ, mimetype=mimetype, max_age=0)
        with self.store.read() as tx:
            self.sharing.check_item(tx, portal.existing_item(tx, item_id)[0], env.user)
            return json_response(portal.item_data(tx, item_id, env.root_url))

    # Preplanned map areas and scheduled update packages live in packages.py.
    def ep_related_items(self, request, params, env, item_id):
        with self.store.read() as tx:
            return json_response(
                packages.related_items(tx, item_id, params, f"{env.root_url}/rest/services")
            )

    def ep_item_resources(self, request, params, env, item_id):
        with self.store.read() as tx:
            return json_response(packages.resources(tx, item_id))

    def ep_item_resource(self, request, params, env, item_id, name):
        with self.store.read() as tx:
            path = packages.resource_file(tx, self.data_dir, item_id, name)
        return send_file(path, request.environ, mimetype="application/json", max_age=0)

    def ep_admin_prepare_map_areas(self, request, params, env):
        return json_response({"mapAreas": packages.prepare_map_areas(self.store, self.data_dir)})

    def ep_admin_refresh_packages(self, request, params, env):
        reports = packages.refresh_packages(
            self.store,
            self.data_dir,
            max_count=params.get_int("maxCount"),
            max_age=float(params.get("maxAge")) if params.get("maxAge") else None,
        )
        return json_response({"packages": [r.to_json() for r in reports]})

    def ep_admin_faults(self, request, params, env):
        if params.get("kind"):
            opts = parse_json_param(params, "opts", {}) or {}
            try:
                self.faults.inject(
                    require(params.get("operation"), "operation"),
                    params.get("kind"),
                    params.get_int("count", 1),
                    **opts,
                )
            except ValueError as exc:
                raise bad_request(str(exc)) from exc
        return json_response({"faults": self.faults.pending()})

    def ep_admin_clear_faults(self, request, params, env):
        self.faults.clear()
        return json_response({"success": True})

    def ep_admin_expire_tokens(self, request, params, env):
        self.auth.expire_all()
        return json_response({"success": True})

    def ep_admin_stats(self, request, params, env):
        return json_response(self.stats())

    def ep_admin_reset_stats(self, request, params, env):
        self.reset_stats()
        return json_response({"success": True})

    def ep_admin_bulk_update(self, request, params, env):
        service = require(params.get("service"), "service")
        layer_id = params.get_int("layer", 0)
        count = params.get_int("count", 0)
        with self.store.write() as tx:
            layer = tx.layer(service, layer_id)
            try:
                result = bulk_update(tx, layer, count, params.get("field") or None)
            except ValueError as exc:
                raise bad_request(str(exc)) from exc
        return json_response({"success": True, **result})

    def ep_admin_expire_results(self, request, params, env):
        return json_response({"success": True, "expired": self.expire_results()})

    def expire_results(self, older_than: float | None = None) -> int:
        with self.store.write() as tx:
            names = tx.result_names(older_than)
            for name in names:
                tx.remove_result(name)
                (self.results_dir / name).unlink(missing_ok=True)
        return len(names)

    # --- service and layer descriptions -----------------------------------------------------------

    def ep_service(self, request, params, env, service):
        with self.store.read() as tx:
            definition = tx.service(service)
            definition.pop("_name")
        return json_response(definition)

    def ep_all_layers(self, request, params, env, service):
        with self.store.read() as tx:
            layers = tx.layers(tx.service(service)["_name"])
        return json_response(
            {
                "layers": [lay.info for lay in layers if not lay.is_table],
                "tables": [lay.info for lay in layers if lay.is_table],
            }
        )

    def ep_layer(self, request, params, env, service, layer_id):
        with self.store.read() as tx:
            layer = tx.layer(service, layer_id)
        return json_response(layer.info)

    def ep_feature(self, request, params, env, service, layer_id, oid):
        with self.store.read() as tx:
            layer = tx.layer(service, layer_id)
            row = tx.row_by_oid(layer, oid)
            if row is None:
                raise ApiError(404, f"Feature {oid} not found in {layer.name}.")
            return json_response({"feature": row_to_feature(layer, row)})

    def ep_query(self, request, params, env, service, layer_id):
        with self.store.read() as tx:
            definition = tx.service(service)
            layer = tx.layer(service, layer_id)
            body, fmt = run_query(tx, definition, layer, params)
        return json_response(
            body, mimetype="application/geo+json" if fmt == "geojson" else "application/json"
        )

    def ep_query_related_records(self, request, params, env, service, layer_id):
        with self.store.read() as tx:
            definition = tx.service(service)
            layer = tx.layer(service, layer_id)
            body = query_related_records(tx, definition, layer, params)
        return json_response(body)

    # --- applyEdits -------------------------------------------------------------------------------

    def _check_editable(self, definition: dict) -> None:
        if not can_upload(definition):
            raise ApiError(
                400,
                f"The service '{definition['_name']}' does not allow editing (capabilities: {definition.get('capabilities')}).",
                ["Editing is not enabled for this service."],
            )

    def ep_service_apply_edits(self, request, params, env, service):
        edits = parse_json_param(params, "edits", None)
        if not isinstance(edits, list):
            raise bad_request("'edits' must be a JSON list of {id, adds, updates, deletes}.")
        use_gids = params.get_bool("useGlobalIds", False)
        rollback = params.get_bool("rollbackOnFailure", True)
        with self.store.write() as tx:
            definition = tx.service(service)
            self._check_editable(definition)
            ctx = EditContext(
                user=env.user, true_curve_client=params.get_bool("trueCurveClient", False)
            )
            out = []
            failures = 0
            for entry in edits:
                if not isinstance(entry, dict) or "id" not in entry:
                    raise bad_request("Each entry of 'edits' needs the layer 'id'.")
                try:
                    layer = tx.layer(service, int(entry["id"]))
                except (TypeError, ValueError) as exc:
                    raise bad_request(
                        f"Invalid layer id '{str(entry['id'])[:20]}' in edits."
                    ) from exc
                result = self._apply_layer(
                    tx,
                    layer,
                    ctx,
                    entry.get("adds"),
                    entry.get("updates"),
                    entry.get("deletes"),
                    use_gids,
                )
                item = {"id": layer.id, **result}
                if entry.get("attachments") and use_gids:
                    try:
                        item["attachments"] = apply_attachment_edits(
                            tx, layer, ctx, entry["attachments"]
                        )
                    except EditError as exc:
                        raise bad_request(exc.description) from exc
                    failures += sum(
                        1 for v in item["attachments"].values() for r in v if not r["success"]
                    )
                failures += sum(
                    1
                    for key in ("addResults", "updateResults", "deleteResults")
                    for r in result[key]
                    if not r["success"]
                )
                out.append(item)
            if failures and rollback:
                raise ApiError(
                    400,
                    f"Unable to complete operation: {failures} edit(s) failed, all edits were rolled back.",
                    _failure_details(out),
                )
        return json_response(out)

    def ep_layer_apply_edits(self, request, params, env, service, layer_id):
        adds = parse_json_param(params, "adds", [])
        updates = parse_json_param(params, "updates", [])
        raw_deletes = params.get("deletes")
        if raw_deletes in (None, ""):
            deletes = []
        elif str(raw_deletes).strip().startswith("["):
            deletes = parse_json_param(params, "deletes", [])
        else:
            deletes = [d.strip() for d in str(raw_deletes).split(",") if d.strip()]
        use_gids = params.get_bool("useGlobalIds", False)
        rollback = params.get_bool("rollbackOnFailure", True)
        with self.store.write() as tx:
            definition = tx.service(service)
            self._check_editable(definition)
            layer = tx.layer(service, layer_id)
            ctx = EditContext(
                user=env.user, true_curve_client=params.get_bool("trueCurveClient", False)
            )
            result = self._apply_layer(tx, layer, ctx, adds, updates, deletes, use_gids)
            failures = sum(1 for key in result for r in result[key] if not r["success"])
            if failures and rollback:
                raise ApiError(
                    400,
                    f"Unable to complete operation: {failures} edit(s) failed, all edits were rolled back.",
                    _failure_details([result]),
                )
        return json_response(result)

    def _apply_layer(
        self, tx: Tx, layer: Layer, ctx: EditContext, adds, updates, deletes, use_gids: bool
    ) -> dict:
        for name, value in (("adds", adds), ("updates", updates), ("deletes", deletes)):
            if value is not None and not isinstance(value, list):
                raise bad_request(f"'{name}' must be a JSON list.")
        res = apply_feature_edits(
            tx,
            layer,
            ctx,
            adds=adds or [],
            updates=updates or [],
            deletes=deletes or [],
            use_global_ids=use_gids,
        )
        return {
            "addResults": res.add_results,
            "updateResults": res.update_results,
            "deleteResults": res.delete_results,
        }

    # --- attachments ------------------------------------------------------------------------------

    def _parent(self, tx: Tx, service: str, layer_id: int, oid: int):
        layer = tx.layer(service, layer_id)
        if not layer.has_attachments:
            raise bad_request(f"{layer.name} does not support attachments.")
        row = tx.row_by_oid(layer, oid)
        if row is None:
            raise ApiError(404, f"Feature {oid} not found in {layer.name}.", ["Feature not found."])
        return layer, row

    @staticmethod
    def _attachment_info(att) -> dict:
        return {
            "id": att["attachment_id"],
            "globalId": att["globalid"],
            "parentGlobalId": att["parent_globalid"],
            "name": att["name"],
            "contentType": att["content_type"],
            "size": att["size"],
            "keywords": att["keywords"] or "",
        }

    def ep_attachments(self, request, params, env, service, layer_id, oid):
        with self.store.read() as tx:
            layer, row = self._parent(tx, service, layer_id, oid)
            atts = tx.attachments_of(layer, [row[layer.gid_field]])
            return json_response({"attachmentInfos": [self._attachment_info(a) for a in atts]})

    def ep_attachment(self, request, params, env, service, layer_id, oid, aid):
        with self.store.read() as tx:
            layer, row = self._parent(tx, service, layer_id, oid)
            att = tx.attachment_by_id(layer, aid)
            if att is None or att["parent_globalid"] != row[layer.gid_field]:
                raise ApiError(
                    404,
                    f"Attachment {aid} not found for feature {oid}.",
                    ["Attachment not found."],
                    http_status=404,
                )
            response = Response(bytes(att["data"]), mimetype=att["content_type"])
            response.headers["Content-Disposition"] = (
                f"inline; filename*=UTF-8''{_quote_filename(att['name'])}"
            )
            return response

    def ep_query_attachments(self, request, params, env, service, layer_id):
        raw = params.get("objectIds")
        with self.store.read() as tx:
            layer = tx.layer(service, layer_id)
            if not layer.has_attachments:
                raise bad_request(f"{layer.name} does not support attachments.")
            definition = tx.service(service)
            ids = None
            if raw not in (None, ""):
                try:
                    ids = [int(x) for x in str(raw).strip("[]").split(",") if x.strip()]
                except ValueError as exc:
                    raise bad_request("Invalid objectIds.") from exc
            row_filter = build_filter(
                layer, definition, where=params.get("definitionExpression"), object_ids=ids
            )
            parents = {
                r[layer.gid_field]: r[layer.oid_field]
                for r in tx.select(layer, row_filter.sql, row_filter.params)
            }
            groups: dict[str, list] = {}
            for att in tx.attachments_of(layer, list(parents)):
                groups.setdefault(att["parent_globalid"], []).append(self._attachment_info(att))
            return json_response(
                {
                    "fields": [],
                    "attachmentGroups": [
                        {
                            "parentObjectId": parents[gid],
                            "parentGlobalId": gid,
                            "attachmentInfos": infos,
                        }
                        for gid, infos in groups.items()
                    ],
                }
            )

    def _upload(self, request: Request, params: Params) -> tuple[str, str, bytes]:
        upload = request.files.get("attachment")
        if upload is not None:
            data = upload.read()
            return (
                upload.filename or "attachment",
                upload.mimetype or "application/octet-stream",
                data,
            )
        raise bad_request("'attachment' must be sent as a multipart file.")

    def ep_add_attachment(self, request, params, env, service, layer_id, oid):
        name, content_type, data = self._upload(request, params)
        with self.store.write() as tx:
            self._check_editable(tx.service(service))
            layer, row = self._parent(tx, service, layer_id, oid)
            gid = (
                normalize_guid(params.get("attachmentGlobalId"))
                if params.get("attachmentGlobalId")
                else None
            )
            try:
                check_attachment_name(name)
                result = AttachmentEditor(tx, layer, EditContext(user=env.user)).add(
                    row[layer.gid_field], name, content_type, data, gid, params.get("keywords")
                )
            except EditError as exc:
                return json_response(
                    {"addAttachmentResult": {"success": False, "error": exc.body()}}
                )
        return json_response({"addAttachmentResult": result})

    def ep_update_attachment(self, request, params, env, service, layer_id, oid):
        aid = params.get_int("attachmentId")
        if aid is None:
            raise bad_request("'attachmentId' must be specified.")
        name, content_type, data = self._upload(request, params)
        with self.store.write() as tx:
            self._check_editable(tx.service(service))
            layer, row = self._parent(tx, service, layer_id, oid)
            att = tx.attachment_by_id(layer, aid)
            try:
                if att is None or att["parent_globalid"] != row[layer.gid_field]:
                    raise EditError(1019, f"Attachment {aid} not found for feature {oid}.")
                result = AttachmentEditor(tx, layer, EditContext(user=env.user)).update(
                    att["globalid"], name, content_type, data
                )
            except EditError as exc:
                return json_response(
                    {
                        "updateAttachmentResult": {
                            "objectId": aid,
                            "success": False,
                            "error": exc.body(),
                        }
                    }
                )
        return json_response({"updateAttachmentResult": result})

    def ep_delete_attachments(self, request, params, env, service, layer_id, oid):
        raw = require(params.get("attachmentIds"), "attachmentIds")
        try:
            ids = [int(x) for x in str(raw).strip("[]").split(",") if x.strip()]
        except ValueError as exc:
            raise bad_request("Invalid attachmentIds: use comma-separated attachment ids.") from exc
        results = []
        with self.store.write() as tx:
            self._check_editable(tx.service(service))
            layer, row = self._parent(tx, service, layer_id, oid)
            editor = AttachmentEditor(tx, layer, EditContext(user=env.user))
            for aid in ids:
                att = tx.attachment_by_id(layer, aid)
                if att is None or att["parent_globalid"] != row[layer.gid_field]:
                    results.append(
                        {
                            "objectId": aid,
                            "success": False,
                            "error": {"code": 1019, "description": f"Attachment {aid} not found."},
                        }
                    )
                    continue
                editor.delete(att["globalid"], missing_ok=False)
                results.append({"objectId": aid, "globalId": att["globalid"], "success": True})
        return json_response({"deleteAttachmentResults": results})

    # --- sync -----------------------------------------------------------------------------------

    def _transport(self, params: Params) -> str:
        value = params.get("transportType") or TRANSPORT_URL
        for option in (TRANSPORT_URL, TRANSPORT_EMBEDDED):
            if str(value).lower() == option.lower():
                return option
        raise bad_request(
            f"Invalid transportType '{str(value)[:40]}': use esriTransportTypeUrl or esriTransportTypeEmbedded."
        )

    def _answer(self, tx: Tx, env: Env, service: str, doc, transport: str) -> Response:
        if transport == TRANSPORT_EMBEDDED:
            buffer = io.StringIO()
            write_json(buffer, doc)
            return Response(buffer.getvalue(), mimetype="application/json")
        url = write_result_file(tx, env, service, doc)
        answer = {
            "transportType": TRANSPORT_URL,
            "responseType": doc["responseType"],
            "replicaName": doc.get("replicaName"),
        }
        if doc.get("replicaID"):
            answer["replicaID"] = doc["replicaID"]
        answer["URL"] = url
        return json_response(answer)

    def ep_create_replica(self, request, params, env, service):
        transport = self._transport(params)
        self.expire_old_results()
        if params.get_bool("async", False):
            return self._start_replica_job(env, service, "createReplica", params)
        with self.store.write() as tx:
            definition = tx.service(service)
            doc, _ = create_replica(tx, env, definition, params)
            return self._answer(tx, env, definition["_name"], doc, transport)

    def ep_synchronize_replica(self, request, params, env, service):
        transport = self._transport(params)
        if params.get_bool("async", False):
            return self._start_replica_job(env, service, "synchronizeReplica", params)
        with self.store.write() as tx:
            definition = tx.service(service)
            doc = synchronize_replica(tx, env, definition, params)
            return self._answer(tx, env, definition["_name"], doc, transport)

    def ep_unregister_replica(self, request, params, env, service):
        with self.store.write() as tx:
            return json_response(unregister_replica(tx, env, tx.service(service), params))

    def ep_replicas(self, request, params, env, service):
        with self.store.read() as tx:
            return json_response(list_replicas(tx, env, tx.service(service)))

    def ep_replica(self, request, params, env, service, replica_id):
        with self.store.read() as tx:
            return json_response(replica_info(tx, env, tx.service(service), replica_id))

    # --- async jobs ----------------------------------------------------------------------------

    def _start_replica_job(self, env: Env, service: str, operation: str, params: Params):
        with self.store.read() as tx:
            name = tx.service(service)["_name"]

        def work(progress: Callable[[int], None]) -> dict:
            with self.store.write() as tx:
                definition = tx.service(name)
                if operation == "createReplica":
                    doc, _ = create_replica(tx, env, definition, params)
                else:
                    doc = synchronize_replica(tx, env, definition, params)
                return {
                    "resultUrl": write_result_file(tx, env, name, doc),
                    "replicaID": doc.get("replicaID"),
                    "replicaName": doc.get("replicaName"),
                    "responseType": doc.get("responseType"),
                    "transportType": TRANSPORT_URL,
                }

        job_id = self._start_job(env, name, operation, work)
        return json_response({"statusUrl": f"{env.service_url(name)}/jobs/{job_id}"})

    def _start_job(
        self, env: Env, service: str, operation: str, work: Callable[..., dict], kind: str = ""
    ) -> str:
        """Runs `work(progress)` in a thread as a job of `service`; returns the job id. The
        job ends "Completed" with the fields `work` returns, or "Failed" with its error.
        `kind` names the server type of a non-feature service ("MapServer", ...)."""
        job_id = uuid.uuid4().hex
        now = now_ms()
        slow = self.faults.take(operation, kinds=("slow_job",))
        job = {
            "id": job_id,
            "service": service,
            "kind": kind,
            "owner": env.user,
            "operation": operation,
            "status": "Pending",
            "submissionTime": now,
            "lastUpdatedTime": now,
        }
        with self.store.write() as tx:
            tx.save_job(job)
        if slow:
            with self._jobs_lock:
                self._held_polls[job_id] = int(slow.opts.get("polls", 3))
        thread = threading.Thread(target=self._run_job, args=(job_id, work), daemon=True)
        with self._jobs_lock:
            self._jobs = [t for t in self._jobs if t.is_alive()] + [thread]
        thread.start()
        return job_id

    def _run_job(self, job_id: str, work: Callable[..., dict]) -> None:
        def progress(percent: int) -> None:
            with self._jobs_lock:
                self._job_progress[job_id] = int(percent)

        try:
            fields = work(progress)
            with self.store.write() as tx:
                job = tx.job(job_id)
                job.update(status="Completed", lastUpdatedTime=now_ms(), **fields)
                tx.save_job(job)
        except Exception as exc:
            if isinstance(exc, ApiError):
                error = exc.body()["error"]
            else:
                traceback.print_exc(file=sys.stderr)
                error = {
                    "code": 500,
                    "message": f"Internal error in the reference service: {exc}",
                    "details": [],
                }
            with self.store.write() as tx:
                job = tx.job(job_id)
                job.update(status="Failed", lastUpdatedTime=now_ms(), error=error)
                tx.save_job(job)
        finally:
            with self._jobs_lock:
                self._job_progress.pop(job_id, None)

    def _job(self, env: Env, service: str, job_id: str, kind: str = "") -> tuple[dict, str]:
        """A job of `service` visible to the caller and its status, with a slow_job fault's
        held polls answered as "InProgress"."""
        # A read snapshot, not the writer lock: the status answers at once while the job's own
        # (long) write transaction runs, as ArcGIS does; the job's end shows once committed.
        with self.store.read() as tx:
            job = tx.job(job_id)
        if (
            job is None
            or job["service"].lower() != service.lower()
            or job.get("kind", "").lower() != kind.lower()
        ):
            raise ApiError(400, f"Job {job_id[:64]} does not exist.", ["Job not found."])
        if env.auth_on and job.get("owner") != env.user:
            raise ApiError(403, "You do not have permissions to access this job.")
        with self._jobs_lock:
            held = self._held_polls.get(job_id, 0)
            if held > 0:
                self._held_polls[job_id] = held - 1
        status = "InProgress" if held > 0 or job["status"] == "Pending" else job["status"]
        return job, status

    def ep_jobs(self, request, params, env, service, job_id):
        job, status = self._job(env, service, job_id)
        answer = {k: job[k] for k in ("submissionTime", "lastUpdatedTime")}
        answer["status"] = status
        if status == "InProgress":
            return json_response(answer)
        for key in (
            "replicaName",
            "replicaID",
            "responseType",
            "transportType",
            "resultUrl",
            "error",
        ):
            if job.get(key) is not None:
                answer[key] = job[key]
        return json_response(answer)

    # --- basemap services (tiles.py, tilepackage.py) ----------------------------------------------

    def ep_map_service(self, request, params, env, service):
        return json_response(tiles.service_json(tiles.service(service, "MapServer")))

    def ep_vector_service(self, request, params, env, service):
        return json_response(tiles.service_json(tiles.service(service, "VectorTileServer")))

    def ep_vector_style(self, request, params, env, service):
        return json_response(tiles.style_json(tiles.service(service, "VectorTileServer")))

    def _tile(self, svc: tiles.TileService, level: int, row: int, col: int, mimetype: str):
        if not svc.tile_exists(level, row, col):
            raise ApiError(404, "Tile not found.", [f"No tile at {level}/{row}/{col}."], 404)
        return Response(svc.tile(level, row, col), mimetype=mimetype)

    def ep_map_tile(self, request, params, env, service, level, row, col):
        return self._tile(tiles.service(service, "MapServer"), level, row, col, "image/png")

    def ep_vector_tile(self, request, params, env, service, level, row, col):
        svc = tiles.service(service, "VectorTileServer")
        return self._tile(svc, level, row, col, "application/x-protobuf")

    def ep_export_tiles(self, request, params, env, service, server_type):
        svc = tiles.service(service, server_type)
        export = tiles.parse_export(svc, params)
        self.expire_old_results()

        def work(progress: Callable[[int], None]) -> dict:
            name = f"_ags_{uuid.uuid4().hex}{svc.package_suffix}"
            tilepackage.write_package(self.results_dir / name, svc, export, progress)
            with self.store.write() as tx:
                tx.add_result(name)
            return {"resultUrl": env.result_url(svc.name, name, svc.server_type)}

        job_id = self._start_job(env, svc.name, "exportTiles", work, kind=svc.server_type)
        return json_response({"jobId": job_id, "jobStatus": "esriJobSubmitted"})

    def ep_estimate_export_tiles_size(self, request, params, env, service, server_type):
        svc = tiles.service(service, server_type)
        export = tiles.parse_export(svc, params)

        def work(progress: Callable[[int], None]) -> dict:
            return {"estimate": tiles.estimate(svc, export)}

        job_id = self._start_job(
            env, svc.name, "estimateExportTilesSize", work, kind=svc.server_type
        )
        return json_response({"jobId": job_id, "jobStatus": "esriJobSubmitted"})

    def ep_tile_job(self, request, params, env, service, server_type, job_id, op=None):
        svc = tiles.service(service, server_type)
        job, status = self._job(env, svc.name, job_id, svc.server_type)
        with self._jobs_lock:
            percent = self._job_progress.get(job_id, 0)
        answer = tiles.job_status(job, status, percent)
        return json_response(answer)

    def ep_tile_job_result(
        self, request, params, env, service, server_type, job_id, param, op=None
    ):
        svc = tiles.service(service, server_type)
        job, status = self._job(env, svc.name, job_id, svc.server_type)
        return json_response(tiles.job_result(job, status, param))

    # --- result files ---------------------------------------------------------------------------

    def ep_result(self, request, params, env, folder, name):
        path = self.results_dir / name
        with self.store.read() as tx:
            known = tx.has_result(name)
        if not known or "/" in name or "\\" in name or not path.is_file():
            raise ApiError(
                404,
                "The result file does not exist (result files expire after a few minutes).",
                http_status=404,
            )
        mimetype = "application/json" if path.suffix == ".json" else "application/zip"
        return send_file(path, request.environ, mimetype=mimetype, max_age=0)

    def wait_for_jobs(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._jobs_lock:
            jobs = list(self._jobs)
        for thread in jobs:
            thread.join(max(0.0, deadline - time.monotonic()))

    def expire_old_results(self) -> None:
        self.expire_results(older_than=time.time() - RESULT_TTL_SECONDS)


class _CountingBody:
    """A WSGI body that reports the bytes it hands to the server."""

    def __init__(self, body, count: Callable[..., None]):
        self._body = body
        self._count = count

    def __iter__(self):
        for chunk in self._body:
            self._count(bytes_out=len(chunk))
            yield chunk

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


def _failure_details(entries: list[dict]) -> list[str]:
    details = []
    for entry in entries:
        for key in ("addResults", "updateResults", "deleteResults"):
            for r in entry.get(key, []):
                if not r["success"]:
                    ident = r.get("globalId") or r.get("objectId")
                    details.append(
                        f"{key[:-7]} {ident}: {r['error']['description']} (code {r['error']['code']})"
                    )
    return details[:100]


def _quote_filename(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
