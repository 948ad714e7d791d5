"""Preplanned map areas, their packages and scheduled update packages (spec §6).

A web map has map areas (portal relationship ``Map2Area``); each area has one package per
feature service of the map (``Area2Package``), and one per basemap layer of the map that is
one of the reference basemaps (tiles.py): a ``Tile Package`` (``.tpkx``) or a ``Vector Tile
Package`` (``.vtpk``) over the area, levels 0..16, whose ``items/<id>/data`` is the file. A package is made by a server-side createReplica
over the area: its data is the createReplica JSON result (``items/<id>/data``) and its item
``properties`` carry the replica (``replicaID``, ``syncModel``, ``replicaServerGen`` /
``layerServerGens`` of the data) and ``lastPurgedGen``.

A refresh (what a schedule would run) does a download sync of each package's replica and
stores the changes, in exactly the shape of a synchronizeReplica download result, as the item
resource ``d_<gen>.json`` where ``<gen>`` is the generation the changes bring a copy to. A
copy at generation G applies every ``d_<gen>`` with gen > G in ascending order.

Purging deletes the oldest deltas beyond a maximum count or age. ``lastPurgedGen`` is then the
generation a copy had to be at to need the newest purged delta (the generation before it): a
copy at G <= lastPurgedGen can no longer catch up and must download the package again. So that
such a download is current, a refresh that purges also rebuilds the package data at the
replica's present generation (same replica).

Storage: two tables in the service database (relationships, resources) and files under
``<data dir>/items/<item id>/`` (``data.json``, ``data.tpkx``, ``data.vtpk``,
``resources/<name>``).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tiles
from .errors import ApiError, bad_request
from .jsonwriter import StreamDict, StreamList, write_json
from .params import Params
from .portal import absolute_urls, existing_item
from .replicas import (
    RESPONSE_DATA,
    Env,
    _data_entries,
    _gens_json,
    create_replica,
    replica_scopes,
    synchronize_replica,
)
from .seed import DEMO_WEBMAP_ID
from .store import Store, Tx, now_ms
from .tilepackage import write_package

MAP2AREA = "Map2Area"
AREA2PACKAGE = "Area2Package"
PACKAGE_TYPE = "SQLite Geodatabase"
TILE_PACKAGE_TYPES = {"raster": "Tile Package", "vector": "Vector Tile Package"}
BASEMAP_PACKAGE_LEVELS = "0-16"
#: The data file of a package item and how it is served, by file name.
DATA_FILES = {
    "data.json": "application/json",
    "data.tpkx": "application/zip",
    "data.vtpk": "application/zip",
}
AREA_TYPE = "Map Area"
_DELTA_PREFIX = "d_"

_TABLES = (
    """CREATE TABLE IF NOT EXISTS item_relationships (
        origin TEXT NOT NULL, destination TEXT NOT NULL, type TEXT NOT NULL,
        idx INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (origin, destination, type))""",
    """CREATE TABLE IF NOT EXISTS item_resources (
        item_id TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
        created INTEGER NOT NULL, gen INTEGER, from_gen INTEGER,
        PRIMARY KEY (item_id, name))""",
)


@dataclass(frozen=True)
class AreaSpec:
    """A map area to prepare: a title and a part of the service's full extent (fractions)."""

    title: str
    fractions: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)


DEFAULT_AREAS = (AreaSpec("Whole demo area"), AreaSpec("West half", (0.0, 0.0, 0.5, 1.0)))


# --- storage helpers ------------------------------------------------------------------------


def _ensure_tables(tx: Tx) -> None:
    for sql in _TABLES:
        tx.conn.execute(sql)


def _has_tables(tx: Tx) -> bool:
    row = tx.conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'item_resources'"
    ).fetchone()
    return bool(row[0])


def item_folder(data_dir: Path, item_id: str) -> Path:
    if not item_id.isalnum():
        raise bad_request(f"Invalid item id '{item_id[:64]}'.")
    return Path(data_dir) / "items" / item_id


def _env(data_dir: Path, root_url: str | None = None) -> Env:
    # Attachments are embedded in packages, so the root URL is only a formality here.
    return Env(root_url=root_url or "http://127.0.0.1/arcgis", results_dir=Path(data_dir))


def _write_doc(path: Path, doc: Any) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as fp:
        write_json(fp, doc)
    os.replace(tmp, path)
    return path.stat().st_size


def _service_of(url: str) -> tuple[str, int] | None:
    # "{services}/Demo/FeatureServer/0" -> ("Demo", 0)
    parts = url.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-2].lower() == "featureserver":
        try:
            return parts[-3], int(parts[-1])
        except ValueError:
            return None
    return None


def _lon_lat(x: float, y: float) -> list[float]:
    lon = math.degrees(x / 6378137.0)
    lat = math.degrees(2 * math.atan(math.exp(y / 6378137.0)) - math.pi / 2)
    return [round(lon, 6), round(lat, 6)]


# --- preparing map areas --------------------------------------------------------------------


def prepare_map_areas(
    store: Store,
    data_dir: Path,
    webmap_id: str = DEMO_WEBMAP_ID,
    areas: tuple[AreaSpec, ...] = DEFAULT_AREAS,
    sync_model: str = "perReplica",
) -> list[str]:
    """Create the web map's map areas and their packages (once); return the area item ids.
    ``sync_model`` is that of the packages' replicas (``perReplica`` or ``perLayer``)."""
    with store.write() as tx:
        _ensure_tables(tx)
        existing = related_ids(tx, webmap_id, MAP2AREA)
        if existing:
            return existing
        found = tx.item(webmap_id)
        if found is None:
            raise ValueError(f"no web map item {webmap_id}")
        webmap_item, webmap_data = found
        services: dict[str, list[int]] = {}
        for entry in (webmap_data or {}).get("operationalLayers", []) + (webmap_data or {}).get(
            "tables", []
        ):
            parsed = _service_of(str(entry.get("url") or ""))
            if parsed:
                services.setdefault(parsed[0], []).append(parsed[1])
        area_ids = []
        for index, spec in enumerate(areas):
            area_id = uuid.uuid4().hex
            first = tx.service(next(iter(services)))
            full = first["fullExtent"]
            width, height = full["xmax"] - full["xmin"], full["ymax"] - full["ymin"]
            fx0, fy0, fx1, fy1 = spec.fractions
            geometry = {
                "xmin": full["xmin"] + width * fx0,
                "ymin": full["ymin"] + height * fy0,
                "xmax": full["xmin"] + width * fx1,
                "ymax": full["ymin"] + height * fy1,
                "spatialReference": full["spatialReference"],
            }
            area_item = {
                "id": area_id,
                "owner": "seed",
                "title": spec.title,
                "type": AREA_TYPE,
                "typeKeywords": ["Map", AREA_TYPE, "Offline"],
                "snippet": f"Preplanned map area of '{webmap_item.get('title')}'",
                "extent": [
                    _lon_lat(geometry["xmin"], geometry["ymin"]),
                    _lon_lat(geometry["xmax"], geometry["ymax"]),
                ],
                "created": now_ms(),
                "modified": now_ms(),
                "properties": {"geometry": geometry, "webmapItemId": webmap_id},
                "url": None,
            }
            tx.save_item(area_id, area_item, {"areaGeometry": geometry})
            _relate(tx, webmap_id, area_id, MAP2AREA, index)
            for number, (service, layer_ids) in enumerate(services.items()):
                package_id = _create_package(
                    tx, data_dir, spec, geometry, service, layer_ids, sync_model
                )
                _relate(tx, area_id, package_id, AREA2PACKAGE, number)
            for number, (layer, svc) in enumerate(_basemap_services(webmap_data), len(services)):
                package_id = _create_tile_package(tx, data_dir, spec, geometry, layer, svc)
                _relate(tx, area_id, package_id, AREA2PACKAGE, number)
            area_ids.append(area_id)
        return area_ids


def _basemap_services(webmap_data: dict | None) -> list[tuple[dict, tiles.TileService]]:
    """The web map's basemap layers served by this server's exportable basemaps."""
    found = []
    for layer in ((webmap_data or {}).get("baseMap") or {}).get("baseMapLayers") or ():
        url = str(layer.get("url") or layer.get("styleUrl") or "")
        parts = url.split("/")
        for i, part in enumerate(parts[1:], 1):
            svc = tiles.SERVICES.get(parts[i - 1].lower())
            if svc is not None and part.lower() == svc.server_type.lower():
                if svc.export_allowed:
                    found.append((layer, svc))
                break
    return found


def _create_tile_package(
    tx: Tx, data_dir: Path, spec: AreaSpec, geometry: dict, layer: dict, svc: tiles.TileService
) -> str:
    """A Tile Package / Vector Tile Package item of `svc` over the area, levels 0..16."""
    package_id = uuid.uuid4().hex
    export = tiles.ExportRequest(
        tiles.parse_levels(BASEMAP_PACKAGE_LEVELS, svc.max_level), tiles.parse_extent(geometry)
    )
    path = item_folder(data_dir, package_id) / f"data{svc.package_suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_package(path, svc, export)
    kind = TILE_PACKAGE_TYPES[svc.kind]
    title = str(layer.get("title") or svc.name)
    item = {
        "id": package_id,
        "owner": "seed",
        "title": f"{spec.title} - {title}",
        "type": kind,
        "typeKeywords": ["Map", "Map Area", "Offline", kind, svc.package_suffix[1:]],
        "url": None,
        "size": path.stat().st_size,
        "created": now_ms(),
        "modified": now_ms(),
        "properties": {
            "serviceUrl": "{services}/" + svc.name + "/" + svc.server_type,
            "basemapLayerId": layer.get("id"),
            "basemapLayerTitle": title,
            "levels": BASEMAP_PACKAGE_LEVELS,
            "geometry": geometry,
        },
    }
    tx.save_item(package_id, item, None)
    return package_id


def _relate(tx: Tx, origin: str, destination: str, kind: str, idx: int) -> None:
    tx.conn.execute(
        "INSERT OR REPLACE INTO item_relationships (origin, destination, type, idx) "
        "VALUES (?, ?, ?, ?)",
        (origin, destination, kind, idx),
    )


def _create_package(
    tx: Tx,
    data_dir: Path,
    spec: AreaSpec,
    geometry: dict,
    service: str,
    layer_ids: list[int],
    sync_model: str,
) -> str:
    package_id = uuid.uuid4().hex
    replica, size = _package_replica(
        tx, data_dir, package_id, geometry, service, layer_ids, sync_model
    )
    item = {
        "id": package_id,
        "owner": "seed",
        "title": f"{spec.title} - {service}",
        "type": PACKAGE_TYPE,
        "typeKeywords": ["Data", "Map Area", "Offline", "Sync", "Feature Service"],
        "url": "{services}/" + service + "/FeatureServer",
        "size": size,
        "created": now_ms(),
        "modified": now_ms(),
        "properties": {
            "serviceUrl": "{services}/" + service + "/FeatureServer",
            "layers": sorted(layer_ids),
            "geometry": geometry,
            **_package_gens(replica),
            "lastPurgedGen": None,
        },
    }
    tx.save_item(package_id, item, None)
    return package_id


def _package_replica(
    tx: Tx,
    data_dir: Path,
    package_id: str,
    geometry: dict,
    service: str,
    layer_ids: list[int],
    sync_model: str,
) -> tuple[dict, int]:
    """A server-side createReplica over the area, written as the package data."""
    definition = tx.service(service)
    queries = {}
    for layer_id in layer_ids:
        is_table = tx.layer(service, layer_id).is_table
        queries[str(layer_id)] = {
            "queryOption": "useFilter",
            "where": "1=1",
            "useGeometry": not is_table,
            "includeRelated": True,
        }
    params = Params(
        {
            "replicaName": f"MapArea_{package_id[:12]}",
            "layers": ",".join(str(i) for i in sorted(layer_ids)),
            "layerQueries": json.dumps(queries),
            "geometry": json.dumps(geometry),
            "geometryType": "esriGeometryEnvelope",
            "inSR": json.dumps(geometry["spatialReference"]),
            "returnAttachments": "true",
            "returnAttachmentsDataByUrl": "false",
            "syncModel": sync_model,
            "syncDirection": "download",
            "dataFormat": "json",
        }
    )
    env = _env(data_dir)
    doc, replica = create_replica(tx, env, definition, params)
    assert replica is not None
    size = _write_doc(item_folder(data_dir, package_id) / "data.json", doc)
    return replica, size


def recreate_packages(store: Store, data_dir: Path) -> list[str]:
    """Build every package again on a NEW replica (as re-creating a map area's packages does):
    new data and replica ID, the old replica unregistered and its deltas deleted. Copies of
    the old package must download the new one. Returns the package item ids."""
    with store.read() as tx:
        ids = package_ids(tx)
    for package_id in ids:
        with store.write() as tx:
            item, _ = tx.item(package_id)
            props = item["properties"]
            old = tx.replica(props["replicaID"])
            replica, size = _package_replica(
                tx,
                data_dir,
                package_id,
                props["geometry"],
                old["service"],
                props["layers"],
                old["syncModel"],
            )
            tx.delete_replica(old["replicaID"])
            folder = item_folder(data_dir, package_id) / "resources"
            for (name,) in tx.conn.execute(
                "SELECT name FROM item_resources WHERE item_id = ?", (package_id,)
            ).fetchall():
                (folder / name).unlink(missing_ok=True)
            tx.conn.execute("DELETE FROM item_resources WHERE item_id = ?", (package_id,))
            for key in ("replicaServerGen", "layerServerGens", "latestGen"):
                props.pop(key, None)
            props.update(_package_gens(replica))
            props["lastPurgedGen"] = None
            item["size"] = size
            item["modified"] = now_ms()
            tx.save_item(package_id, item, None)
    return ids


def _package_gens(replica: dict) -> dict:
    gens = _gens_json(replica)
    return {
        "replicaID": replica["replicaID"],
        "replicaName": replica["replicaName"],
        "syncModel": replica["syncModel"],
        **gens,
    }


# --- refresh and purge ----------------------------------------------------------------------


@dataclass
class RefreshReport:
    """What one refresh did to one package."""

    package_item_id: str
    stored: str | None = None  # the new d_<gen>.json, if there were changes
    purged: tuple[str, ...] = ()
    rebuilt: bool = False
    last_purged_gen: int | None = None

    def to_json(self) -> dict:
        return {
            "packageItemId": self.package_item_id,
            "stored": self.stored,
            "purged": list(self.purged),
            "rebuilt": self.rebuilt,
            "lastPurgedGen": self.last_purged_gen,
        }


def package_ids(tx: Tx) -> list[str]:
    """Every feature service package item (SQLite Geodatabase) of every map area."""
    if not _has_tables(tx):
        return []
    rows = tx.conn.execute(
        "SELECT destination FROM item_relationships WHERE type = ? ORDER BY origin, idx",
        (AREA2PACKAGE,),
    )
    ids = []
    for (item_id,) in rows:
        found = tx.item(item_id)
        if found is not None and found[0].get("type") == PACKAGE_TYPE:
            ids.append(item_id)
    return ids


def refresh_packages(
    store: Store,
    data_dir: Path,
    max_count: int | None = None,
    max_age: float | None = None,
    now: float | None = None,
) -> list[RefreshReport]:
    """Run the scheduled-update job: for each package, a download sync stored as ``d_<gen>.json``,
    then purge deltas beyond ``max_count`` (newest kept) or older than ``max_age`` seconds."""
    reports = []
    with store.read() as tx:
        ids = package_ids(tx)
    for package_id in ids:
        with store.write() as tx:
            reports.append(_refresh_one(tx, data_dir, package_id, max_count, max_age, now))
    return reports


def _refresh_one(
    tx: Tx,
    data_dir: Path,
    package_id: str,
    max_count: int | None,
    max_age: float | None,
    now: float | None,
) -> RefreshReport:
    item, _ = tx.item(package_id)
    props = item["properties"]
    replica = tx.replica(props["replicaID"])
    if replica is None:
        raise ApiError(400, f"The replica of package {package_id} is no longer registered.")
    service = tx.service(replica["service"])
    env = _env(data_dir)
    report = RefreshReport(package_id, last_purged_gen=props.get("lastPurgedGen"))
    old_gen = _gen_of(replica)
    doc = synchronize_replica(
        tx,
        env,
        service,
        Params(
            {
                "replicaID": replica["replicaID"],
                "syncDirection": "download",
                "dataFormat": "json",
                "returnAttachmentsDataByUrl": "false",
            }
        ),
    )
    changes = sum(
        len((entry.get(part) or {}).get(key) or [])
        for entry in doc.get("edits") or []
        for part in ("features", "attachments")
        for key in ("adds", "updates", "deleteIds")
    )
    replica = tx.replica(props["replicaID"])
    new_gen = _gen_of(replica)
    folder = item_folder(data_dir, package_id) / "resources"
    if changes and new_gen > old_gen:
        name = f"{_DELTA_PREFIX}{new_gen}.json"
        size = _write_doc(folder / name, doc)
        created = now_ms() if now is None else int(now * 1000)
        tx.conn.execute(
            "INSERT OR REPLACE INTO item_resources (item_id, name, size, created, gen, from_gen)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (package_id, name, size, created, new_gen, old_gen),
        )
        report.stored = name
    purged = _purge(tx, package_id, max_count, max_age, now)
    if purged:
        # A copy still at the generation the newest purged delta started from cannot catch up.
        last_purged = max(from_gen for _, _, from_gen in purged)
        last_purged = max(last_purged, int(props.get("lastPurgedGen") or 0))
        for name, _, _ in purged:
            (folder / name).unlink(missing_ok=True)
        props["lastPurgedGen"] = last_purged
        report.last_purged_gen = last_purged
        report.purged = tuple(name for name, _, _ in purged)
        _rebuild_data(tx, data_dir, item, replica, service, env)
        report.rebuilt = True
    if report.stored or purged:
        props["latestGen"] = new_gen
        item["modified"] = now_ms()
        tx.save_item(package_id, item, None)
    return report


def _gen_of(replica: dict) -> int:
    if replica["syncModel"] == "perLayer":
        return min(int(g) for g in replica["layerServerGens"].values())
    return int(replica["replicaServerGen"])


def _purge(
    tx: Tx, package_id: str, max_count: int | None, max_age: float | None, now: float | None
) -> list[tuple[str, int, int]]:
    rows = tx.conn.execute(
        "SELECT name, gen, created, from_gen FROM item_resources WHERE item_id = ? "
        "AND name LIKE 'd\\_%' ESCAPE '\\' ORDER BY gen",
        (package_id,),
    ).fetchall()
    doomed: set[str] = set()
    if max_count is not None and len(rows) > max_count:
        doomed.update(r[0] for r in rows[: len(rows) - max(0, int(max_count))])
    if max_age is not None:
        limit = ((time.time() if now is None else now) - float(max_age)) * 1000
        doomed.update(r[0] for r in rows if r[2] < limit)
    # Deltas only make sense as an unbroken series: purging one purges all older ones too.
    if doomed:
        newest = max(int(r[1]) for r in rows if r[0] in doomed)
        doomed.update(r[0] for r in rows if int(r[1]) <= newest)
    purged = [(r[0], int(r[1]), int(r[3])) for r in rows if r[0] in doomed]
    for name, _, _ in purged:
        tx.conn.execute(
            "DELETE FROM item_resources WHERE item_id = ? AND name = ?", (package_id, name)
        )
    return purged


def _rebuild_data(tx: Tx, data_dir: Path, item: dict, replica: dict, service: dict, env: Env):
    """The package data at the replica's present generation (a createReplica-shaped result)."""
    doc = StreamDict(replicaName=replica["replicaName"], replicaID=replica["replicaID"])
    doc["responseType"] = RESPONSE_DATA
    doc["syncModel"] = replica["syncModel"]
    doc.update(_gens_json(replica))
    scopes = replica_scopes(tx, service, replica)
    doc["layers"] = StreamList(_data_entries(tx, env, replica, scopes, True, False))
    item["size"] = _write_doc(item_folder(data_dir, item["id"]) / "data.json", doc)
    item["properties"].update(_package_gens(replica))


# --- what the portal answers ----------------------------------------------------------------


def related_ids(tx: Tx, item_id: str, kind: str, direction: str = "forward") -> list[str]:
    if not _has_tables(tx):
        return []
    if str(direction or "forward").lower() == "reverse":
        sql = "SELECT origin FROM item_relationships WHERE destination = ? AND lower(type) = lower(?) ORDER BY idx"
    else:
        sql = "SELECT destination FROM item_relationships WHERE origin = ? AND lower(type) = lower(?) ORDER BY idx"
    return [r[0] for r in tx.conn.execute(sql, (item_id, kind))]


def related_items(tx: Tx, item_id: str, params: Params, services_url: str) -> dict:
    """``items/<id>/relatedItems?relationshipType=...&direction=forward|reverse``."""
    kind = params.get("relationshipType") or params.get("relationshipTypes")
    if not kind:
        raise bad_request("'relationshipType' must be specified.")
    existing_item(tx, item_id)
    items = []
    for other in related_ids(tx, item_id, str(kind), params.get("direction") or "forward"):
        found = tx.item(other)
        if found is not None:
            items.append(absolute_urls(found[0], services_url))
    return {"total": len(items), "relatedItems": items}


def resources(tx: Tx, item_id: str) -> dict:
    """``items/<id>/resources?f=json``: every resource with its size and creation time."""
    existing_item(tx, item_id)
    rows = (
        tx.conn.execute(
            "SELECT name, size, created FROM item_resources WHERE item_id = ? ORDER BY gen, name",
            (item_id,),
        ).fetchall()
        if _has_tables(tx)
        else []
    )
    listed = [
        {"resource": r[0], "size": int(r[1]), "created": int(r[2]), "access": "inherit"}
        for r in rows
    ]
    return {
        "total": len(listed),
        "start": 1,
        "num": len(listed),
        "nextStart": -1,
        "resources": listed,
    }


def resource_file(tx: Tx, data_dir: Path, item_id: str, name: str) -> Path:
    """The file of ``items/<id>/resources/<name>``; ApiError 404 when it does not exist."""
    known = (
        _has_tables(tx)
        and tx.conn.execute(
            "SELECT 1 FROM item_resources WHERE item_id = ? AND name = ?", (item_id, name)
        ).fetchone()
        is not None
    )
    path = item_folder(data_dir, item_id) / "resources" / name
    if not known or "/" in name or "\\" in name or not path.is_file():
        raise ApiError(404, f"Resource '{name[:80]}' does not exist.", http_status=404)
    return path


def package_data_file(data_dir: Path, item_id: str) -> tuple[Path, str] | None:
    """The data file of a package item (the createReplica result, or the .tpkx / .vtpk) and
    its MIME type, or None for other items."""
    if not item_id.isalnum():
        return None
    for name, mimetype in DATA_FILES.items():
        path = item_folder(data_dir, item_id) / name
        if path.is_file():
            return path, mimetype
    return None


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.featureservice.packages prepare|refresh|recreate --data DIR [...]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.featureservice.packages")
    parser.add_argument("command", choices=("prepare", "refresh", "recreate"))
    parser.add_argument("--data", required=True, type=Path, help="the server's data folder")
    parser.add_argument("--max-count", type=int, default=None, help="keep at most N deltas")
    parser.add_argument(
        "--max-age", type=float, default=None, help="purge deltas older than this (seconds)"
    )
    args = parser.parse_args(argv)
    store = Store(args.data / "service.sqlite")
    if args.command == "prepare":
        print(json.dumps({"mapAreas": prepare_map_areas(store, args.data)}))
    elif args.command == "recreate":
        print(json.dumps({"packages": recreate_packages(store, args.data)}))
    else:
        reports = refresh_packages(store, args.data, args.max_count, args.max_age)
        print(json.dumps({"packages": [r.to_json() for r in reports]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
