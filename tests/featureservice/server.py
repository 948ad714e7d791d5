"""`ReferenceServer`: the reference service on a loopback port, in a background thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterable

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import ReferenceApp
from .community import seed_browsing
from .edits import EditContext, FeatureEditor, attribute_of, normalize_guid, row_to_feature
from .errors import EditError
from .seed import (
    DEMO_WEBMAP_ID,
    LARGE_SERVICE,
    PARCELS_SERVICE,
    seed_demo,
    seed_large,
    seed_parcels,
)
from .store import new_guid


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass


class ReferenceServer:
    """A sync-enabled ArcGIS feature service and portal over `data_dir` (SQLite + result files).

    Seeds the data folder on first start (`seed="demo"`, or `""` for none; `large=N` adds the
    "Large" service). With `users`, token authentication is on. Use as a context manager or call
    `start()` / `stop()`.
    """

    def __init__(
        self,
        data_dir: Path,
        seed: str = "demo",
        users: dict[str, str] | None = None,
        port: int = 0,
        large: int = 0,
        host: str = "127.0.0.1",
    ):
        self.data_dir = Path(data_dir)
        self.seed = seed
        self.users = dict(users or {})
        self.host = host
        self.port = port
        self.large = large
        self.app = ReferenceApp(self.data_dir, self.users)
        self._seed()
        self._server = None
        self._thread: threading.Thread | None = None

    def _seed(self) -> None:
        with self.app.store.write() as tx:
            names = {n.lower() for n in tx.service_names()}
            if self.seed == "demo" and "demo" not in names:
                seed_demo(tx)
                seed_browsing(tx, DEMO_WEBMAP_ID, tx.item(DEMO_WEBMAP_ID)[1])
            if self.seed == "demo" and PARCELS_SERVICE.lower() not in names:
                seed_parcels(tx)
            elif self.seed not in ("demo", "", "none", None):
                raise ValueError(f"unknown seed {self.seed!r} (use 'demo' or '')")
            if self.large and LARGE_SERVICE.lower() not in names:
                seed_large(tx, self.large)

    # --- lifecycle -----------------------------------------------------------------------------

    def _bind(self) -> None:
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port  # the port picked when 0 was asked for

    def start(self) -> ReferenceServer:
        if self._server is not None:
            return self
        self._bind()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Runs in the calling thread until interrupted (for the command line)."""
        self._bind()
        print(self.root_url, flush=True)
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.server_close()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.app.wait_for_jobs(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- addresses -----------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}/arcgis"

    def service_url(self, name: str) -> str:
        return f"{self.root_url}/rest/services/{name}/FeatureServer"

    @property
    def portal_url(self) -> str:
        return f"{self.root_url}/sharing/rest"

    @property
    def oauth(self):
        """The portal's OAuth 2.0 (oauth.py): `access_seconds`, `refresh_seconds`,
        `enabled`, `grants`, `expire_refresh_tokens()`."""
        return self.app.sharing.oauth

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/tokens/generateToken"

    @property
    def plain_http_hosts(self) -> tuple[str, ...]:
        """This service speaks plain http on loopback: a client may only send it credentials
        after allowing its host for plain http explicitly (never a default)."""
        return (self.host,)

    # --- test switches -------------------------------------------------------------------------

    def inject_fault(self, operation: str, kind: str, count: int = 1, **opts) -> None:
        """Makes the next `count` requests of `operation` fail with `kind` (see faults.py)."""
        self.app.faults.inject(operation, kind, count, **opts)

    def clear_faults(self) -> None:
        self.app.faults.clear()

    def expire_tokens(self) -> None:
        self.app.auth.expire_all()

    def expire_results(self) -> None:
        self.app.expire_results()

    def generate_token(self, username: str) -> str:
        """A valid token for a configured user (for tests that need one without HTTP)."""
        from .params import Params

        return self.app.auth.generate_token(
            Params({"username": username, "password": self.users[username]})
        )["token"]

    def add_sync_listener(self, listener) -> None:
        """`listener(record)` is called after every committed synchronizeReplica upload, in
        commit order (under the writer lock): record = {"service", "replicaID", "gen",
        "edits" (the layers' uploaded edits as sent), "results" (per layer id: addResults,
        updateResults, deleteResults, attachmentResults)}. For model-based tests."""
        self.app.sync_listeners.append(listener)

    def stats(self) -> dict:
        """{"requests": n, "bytesOut": n, "tiles": n} since the last reset (admin calls excluded;
        "tiles" counts tile requests to the basemap services)."""
        return self.app.stats()

    def reset_stats(self) -> None:
        self.app.reset_stats()

    # --- preplanned map areas (packages.py) -----------------------------------------------------

    def prepare_map_areas(self) -> list[str]:
        """Create the demo web map's preplanned map areas and their packages (once); returns
        the area item ids."""
        from .packages import prepare_map_areas

        return prepare_map_areas(self.app.store, self.data_dir)

    def refresh_packages(
        self, max_count: int | None = None, max_age: float | None = None, now: float | None = None
    ) -> list:
        """Run the scheduled-update job on every package (see packages.refresh_packages)."""
        from .packages import refresh_packages

        return refresh_packages(self.app.store, self.data_dir, max_count, max_age, now)

    def recreate_packages(self) -> list[str]:
        """Build every package again on a new replica (see packages.recreate_packages)."""
        from .packages import recreate_packages

        return recreate_packages(self.app.store, self.data_dir)

    # --- direct data access --------------------------------------------------------------------

    def apply_edits(
        self,
        service: str,
        layer_id: int,
        adds: Iterable[dict] = (),
        updates: Iterable[dict] = (),
        deletes: Iterable[Any] = (),
        *,
        user: str = "server_editor",
        strict: bool = True,
    ) -> dict:
        """Edits made on the server by "another user" (not by any replica).

        `adds`/`updates` are features (`{"attributes", "geometry"}`) or plain attribute dicts;
        updates and deletes find rows by GlobalID when given (else by OBJECTID). Returns
        `{"addResults", "updateResults", "deleteResults"}`; with `strict`, a failed edit raises
        ValueError (and nothing is committed)."""
        results: dict[str, list] = {"addResults": [], "updateResults": [], "deleteResults": []}
        with self.app.store.write() as tx:
            layer = tx.layer(service, layer_id)
            editor = FeatureEditor(tx, layer, EditContext(user=user))

            def run(key, fn, *args):
                try:
                    results[key].append(fn(*args))
                except EditError as exc:
                    results[key].append({"success": False, "error": exc.body()})

            for item in adds:
                feature = item if "attributes" in item else {"attributes": item}
                feature = {**feature, "attributes": dict(feature["attributes"])}
                if not normalize_guid(attribute_of(feature["attributes"], layer.gid_field)):
                    feature["attributes"][layer.gid_field] = new_guid()
                run("addResults", editor.add, feature, True)
            for item in updates:
                feature = item if "attributes" in item else {"attributes": item}
                by_gid = (
                    normalize_guid(attribute_of(feature["attributes"], layer.gid_field)) is not None
                )
                run("updateResults", editor.update, feature, by_gid)
            for ident in deletes:
                run("deleteResults", editor.delete, ident, isinstance(ident, str))
            failed = [r for v in results.values() for r in v if not r["success"]]
            if failed and strict:
                raise ValueError(f"server-side edits failed: {failed}")
        return results

    def bulk_update(
        self, service: str, layer_id: int, count: int, field: str | None = None
    ) -> dict:
        """Changes `count` features (the first by OBJECTID) in ONE transaction at one new
        generation as another user: one attribute (`field`, or the first editable number/string
        field without a domain) and the geometry (shifted in x). Returns {"updated", "gen",
        "field"}. For benchmarks: much faster than `apply_edits`."""
        from .bulk import bulk_update

        with self.app.store.write() as tx:
            return bulk_update(tx, tx.layer(service, layer_id), count, field)

    def set_capabilities(self, service: str, capabilities: str) -> None:
        """Advertise ``capabilities`` (e.g. ``"Query,Editing,Sync"``) for the service and its
        layers from now on."""
        with self.app.store.write() as tx:
            tx.set_capabilities(service, capabilities)

    def query_all(self, service: str, layer_id: int) -> list[dict]:
        """Every feature of a layer (attributes + geometry), in OBJECTID order."""
        with self.app.store.read() as tx:
            layer = tx.layer(service, layer_id)
            return [row_to_feature(layer, row) for row in tx.select(layer)]

    def attachments(self, service: str, layer_id: int) -> list[dict]:
        """Every attachment of a layer: globalId, parentGlobalId, name, contentType, data (bytes)."""
        with self.app.store.read() as tx:
            layer = tx.layer(service, layer_id)
            return [
                {
                    "id": a["attachment_id"],
                    "globalId": a["globalid"],
                    "parentGlobalId": a["parent_globalid"],
                    "name": a["name"],
                    "contentType": a["content_type"],
                    "data": bytes(a["data"]),
                }
                for a in tx.attachments_of(layer)
            ]

    def server_gen(self, service: str) -> int:
        """The service's current generation."""
        with self.app.store.read() as tx:
            return tx.current_gen(service)

    def replica(self, replica_id: str) -> dict | None:
        """The stored replica record (or None once unregistered)."""
        with self.app.store.read() as tx:
            return tx.replica(replica_id)
