"""Shared helpers of the ahead-of-time (preplanned map area) tests."""

from __future__ import annotations

from pathlib import Path

from plugin.core.enums import PreplannedUpdateMode
from plugin.core.geodatabase import Geodatabase
from plugin.core.offline_map import OfflineMap
from plugin.core.rest import ArcGISClient
from plugin.core.take_offline import OfflineMapTask, PreplannedMapArea
from tests.featureservice.seed import BASE_LAT, BASE_LON, DEMO_SERVICE, DEMO_WEBMAP_ID, mercator

POINTS, LINES, POLYGONS, INSPECTIONS = 0, 1, 2, 3
WHOLE_AREA = "Whole demo area"


def fast_client(retries: int = 2) -> ArcGISClient:
    return ArcGISClient(backoff=0.01, poll_interval=0.02, timeout=30, retries=retries)


def whole_area(server, client: ArcGISClient) -> tuple[OfflineMapTask, PreplannedMapArea]:
    server.prepare_map_areas()
    task = OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=DEMO_WEBMAP_ID, client=client
    )
    area = next(a for a in task.preplanned_map_areas() if a.title == WHOLE_AREA)
    return task, area


def take_area_offline(
    server, folder: Path, mode: PreplannedUpdateMode, client: ArcGISClient | None = None
) -> OfflineMap:
    """The whole demo area downloaded ahead of time in ``mode``."""
    client = client or fast_client()
    task, area = whole_area(server, client)
    params = task.create_default_download_preplanned_offline_map_parameters(area)
    params.update_mode = mode
    return task.download_preplanned_offline_map(params, folder).run().offline_map


def local_rows(offline_map: OfflineMap, layer_id: int) -> dict[str, dict]:
    """Rows of a layer of the map's (only) geodatabase, by GlobalID."""
    entry = offline_map.geodatabases[0]
    with Geodatabase.open(entry.path) as gdb:
        layer = gdb.layer(layer_id)
        cursor = gdb.conn.execute(f'SELECT * FROM "{layer.table_name}"')
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor]
        return {row[layer.global_id_field]: row for row in rows}


def server_rows(server, layer_id: int) -> dict[str, dict]:
    return {
        f["attributes"]["GlobalID"]: f["attributes"]
        for f in server.query_all(DEMO_SERVICE, layer_id)
    }


def assert_matches_service(server, offline_map: OfflineMap) -> None:
    """Same rows (by GlobalID) and the same names/values as the service, in every layer."""
    for layer_id in (POINTS, LINES, POLYGONS, INSPECTIONS):
        local, remote = local_rows(offline_map, layer_id), server_rows(server, layer_id)
        assert set(local) == set(remote), f"layer {layer_id}"
        for gid, attributes in remote.items():
            for name in ("name", "notes", "visits", "remarks", "inspector"):
                if name in attributes:
                    assert local[gid][name] == attributes[name], (layer_id, gid, name)


def update_history(offline_map: OfflineMap) -> list[int]:
    """Generations of the update packages applied, oldest first."""
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        return [h["server_gen"] for h in reversed(gdb.history()) if h["kind"] == "update_package"]


def generation(offline_map: OfflineMap) -> int:
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        return int(gdb.replica.server_gen)


def first_point(server) -> str:
    return sorted(server_rows(server, POINTS))[0]


def new_point(**attributes) -> dict:
    """A point inside every demo map area (near the first seeded point)."""
    x, y = mercator(BASE_LON + 0.001, BASE_LAT + 0.001)
    return {"attributes": dict(attributes), "geometry": {"x": x, "y": y}}


__all__ = [
    "DEMO_SERVICE",
    "INSPECTIONS",
    "LINES",
    "POINTS",
    "POLYGONS",
    "assert_matches_service",
    "fast_client",
    "first_point",
    "generation",
    "local_rows",
    "new_point",
    "server_rows",
    "take_area_offline",
    "update_history",
    "whole_area",
]


def add_local_point(offline_map: OfflineMap, name: str) -> str:
    """Add a point to the map's geodatabase the way any writer would (plain SQL); its GlobalID."""
    from plugin.core.geometry import esri_to_gpkg

    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        layer = gdb.layer(POINTS)
        blob = esri_to_gpkg(new_point()["geometry"], "esriGeometryPoint", layer.srs_id)
        with gdb.conn:
            cursor = gdb.conn.execute(
                f'INSERT INTO "{layer.table_name}" ("{layer.geometry_column}", name) VALUES (?, ?)',
                (blob, name),
            )
        return gdb.conn.execute(
            f'SELECT "{layer.global_id_field}" FROM "{layer.table_name}" WHERE rowid = ?',
            (cursor.lastrowid,),
        ).fetchone()[0]


def edit_local(offline_map: OfflineMap, sql: str, *args) -> None:
    """Run one SQL edit on the map's geodatabase (``{points}`` is the points table)."""
    with Geodatabase.open(offline_map.geodatabases[0].path) as gdb:
        table = gdb.layer(POINTS).table_name
        with gdb.conn:
            gdb.conn.execute(sql.format(points=f'"{table}"'), args)
