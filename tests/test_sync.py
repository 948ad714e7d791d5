"""Synchronizing offline maps and geodatabases against the reference feature service.

Every test takes real offline copies of the seeded "Demo" service (real GeoPackages), edits them
the way any writer would (GDAL/OGR for geometries, plain sqlite3 for attributes), edits the
service as "another user", syncs over loopback HTTP and checks both sides.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from osgeo import ogr as osgeo_ogr
from werkzeug.wrappers import Response

from plugin.core.enums import (
    OfflineUpdateAvailability,
    PreplannedScheduledUpdatesOption,
    PreplannedUpdateMode,
    SyncDirection,
    SyncModel,
)
from plugin.core.errors import (
    CancelledError,
    GeodatabaseError,
    ServiceError,
    SyncInProgressError,
)
from plugin.core.geodatabase import Geodatabase
from plugin.core.geodatabase_model import ConflictReason
from plugin.core.geodatabase_sync import GeodatabaseSyncTask
from plugin.core.gpkg_connection import register_functions
from plugin.core.jobs import JobStatus
from plugin.core.offline_map import (
    GeodatabaseEntry,
    LayerEntry,
    MapSource,
    OfflineMap,
    OfflineMapManifest,
)
from plugin.core.rest import ArcGISClient, ReplicaResultFile, TokenCredentials
from plugin.core.sync import OfflineMapSyncTask
from plugin.core.sync_model import (
    LoadStatus,
    OfflineMapSyncParameters,
    OfflineMapSyncResult,
    SyncCounts,
    SyncGeodatabaseParameters,
    SyncLayerOption,
    SyncLayerResult,
)
from plugin.core.take_offline import OfflineMapTask
from tests.featureservice import seed
from tests.test_rest import ScriptedServer

# -- pure behaviour (no server) -------------------------------------------------------------


def test_layer_options_override_the_overall_direction():
    params = SyncGeodatabaseParameters(
        sync_direction=SyncDirection.BIDIRECTIONAL,
        layer_options=[SyncLayerOption(1, SyncDirection.DOWNLOAD)],
    )
    assert params.direction_of(1) == SyncDirection.DOWNLOAD
    assert params.direction_of(0) == SyncDirection.BIDIRECTIONAL


def test_result_has_errors_for_layer_errors_edit_errors_or_failed_geodatabases():
    ok = OfflineMapSyncResult(layer_results=[SyncLayerResult(0, "Points")])
    assert not ok.has_errors
    failed = OfflineMapSyncResult(table_results=[SyncLayerResult(3, "T", is_table=True, error="x")])
    assert failed.has_errors
    assert OfflineMapSyncResult(geodatabase_errors={"a.gpkg": "down"}).has_errors


def test_counts_add_up():
    counts = SyncCounts(adds=1, attachments=2)
    counts.add(SyncCounts(adds=2, updates=1, deletes=4))
    assert (counts.adds, counts.updates, counts.deletes, counts.attachments) == (3, 1, 4, 2)
    assert counts.total == 10


# -- integration with the reference service -------------------------------------------------


DEMO = seed.DEMO_SERVICE
POINTS, LINES, POLYGONS, INSPECTIONS = 0, 1, 2, 3


def fast_client(credentials=None) -> ArcGISClient:
    return ArcGISClient(credentials, backoff=0.01, poll_interval=0.02, timeout=30, retries=2)


def take_offline(
    server,
    folder: Path,
    sync_model: SyncModel = SyncModel.PER_REPLICA,
    service: str = DEMO,
    client=None,
) -> OfflineMap:
    task = OfflineMapTask(
        service_urls=[server.service_url(service)], client=client or fast_client()
    )
    params = task.create_default_generate_offline_map_parameters(None)
    params.sync_model = sync_model
    params.include_attachments = True
    return task.generate_offline_map(params, folder).run().offline_map


def sync_job(
    offline_map: OfflineMap,
    direction: SyncDirection = SyncDirection.BIDIRECTIONAL,
    *,
    rollback: bool = False,
    keep_deltas: bool = False,
    client=None,
):
    task = OfflineMapSyncTask(offline_map, client=client or fast_client())
    params = task.create_default_offline_map_sync_parameters()
    params.sync_direction = direction
    params.rollback_on_failure = rollback
    params.keep_geodatabase_deltas = keep_deltas
    return task.create_offline_map_sync_job(params)


def sync_map(offline_map: OfflineMap, *args, **kwargs) -> OfflineMapSyncResult:
    return sync_job(offline_map, *args, **kwargs).run()


def result_for(result: OfflineMapSyncResult, layer_id: int) -> SyncLayerResult:
    return next(r for r in result.all_results() if r.layer_id == layer_id)


def new_guid() -> str:
    return "{" + str(uuid.uuid4()).upper() + "}"


class Local:
    """Edits one geodatabase file the way other writers would."""

    def __init__(self, offline_map: OfflineMap) -> None:
        self.path = offline_map.geodatabases[0].path
        with Geodatabase.open(self.path) as gdb:
            self.layers = {layer.id: layer for layer in gdb.layers}

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        # the GeoPackage's spatial-index triggers name ST_* functions, as for any sqlite writer
        register_functions(con)
        return con

    def rows(self, layer_id: int) -> dict[str, dict]:
        layer = self.layers[layer_id]
        con = self._connect()
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute(f'SELECT * FROM "{layer.table_name}"').fetchall()
        finally:
            con.close()
        return {str(r[layer.global_id_field]).upper(): dict(r) for r in rows}

    def update(self, layer_id: int, global_id: str, **values) -> None:
        layer = self.layers[layer_id]
        sets = ", ".join(f'"{k}" = ?' for k in values)
        con = self._connect()
        try:
            cur = con.execute(
                f'UPDATE "{layer.table_name}" SET {sets} WHERE "{layer.global_id_field}" = ?',
                [*values.values(), global_id],
            )
            assert cur.rowcount == 1, f"no row {global_id} in layer {layer_id}"
        finally:
            con.close()

    def delete(self, layer_id: int, global_id: str) -> None:
        layer = self.layers[layer_id]
        con = self._connect()
        try:
            con.execute(
                f'DELETE FROM "{layer.table_name}" WHERE "{layer.global_id_field}" = ?', [global_id]
            )
        finally:
            con.close()

    def add(self, layer_id: int, wkt: str | None = None, **values) -> str:
        """Add a row through OGR (it maintains the spatial index); returns its GlobalID."""
        layer = self.layers[layer_id]
        values.setdefault(layer.global_id_field, new_guid())
        ds = osgeo_ogr.Open(str(self.path), update=1)
        try:
            ogr_layer = ds.GetLayerByName(layer.table_name)
            feature = osgeo_ogr.Feature(ogr_layer.GetLayerDefn())
            for key, value in values.items():
                feature.SetField(key, value)
            if wkt:
                feature.SetGeometry(osgeo_ogr.CreateGeometryFromWkt(wkt))
            assert ogr_layer.CreateFeature(feature) == 0
        finally:
            ds = None
        return values[layer.global_id_field]

    def set_geometry(self, layer_id: int, global_id: str, wkt: str) -> None:
        layer = self.layers[layer_id]
        ds = osgeo_ogr.Open(str(self.path), update=1)
        try:
            ogr_layer = ds.GetLayerByName(layer.table_name)
            ogr_layer.SetAttributeFilter(f"\"{layer.global_id_field}\" = '{global_id}'")
            feature = ogr_layer.GetNextFeature()
            feature.SetGeometry(osgeo_ogr.CreateGeometryFromWkt(wkt))
            assert ogr_layer.SetFeature(feature) == 0
        finally:
            ds = None

    def geometry_wkt(self, layer_id: int, global_id: str) -> str | None:
        layer = self.layers[layer_id]
        ds = osgeo_ogr.Open(str(self.path))
        try:
            ogr_layer = ds.GetLayerByName(layer.table_name)
            ogr_layer.SetAttributeFilter(f"\"{layer.global_id_field}\" = '{global_id}'")
            feature = ogr_layer.GetNextFeature()
            geometry = feature.GetGeometryRef() if feature else None
            return geometry.ExportToWkt() if geometry else None
        finally:
            ds = None

    def pending(self) -> dict[int, dict[str, int]]:
        with Geodatabase.open(self.path) as gdb:
            return gdb.pending_counts()

    def has_pending(self) -> bool:
        with Geodatabase.open(self.path) as gdb:
            return gdb.has_pending_edits()

    def conflicts(self):
        with Geodatabase.open(self.path) as gdb:
            return gdb.conflicts()


def server_rows(server, layer_id: int, service: str = DEMO) -> dict[str, dict]:
    rows = {}
    for feature in server.query_all(service, layer_id):
        attributes = feature["attributes"]
        rows[str(attributes["GlobalID"]).upper()] = feature
    return rows


def point_gid(i: int) -> str:
    return seed.guid(DEMO, POINTS, i)


def assert_no_errors(result: OfflineMapSyncResult) -> None:
    problems = {
        r.name: (r.error, [e.message for e in r.edit_errors])
        for r in result.all_results()
        if r.has_errors
    }
    assert not result.has_errors, (result.geodatabase_errors, problems)


@pytest.fixture
def server(reference_server):
    return reference_server


@pytest.fixture(params=[SyncModel.PER_REPLICA, SyncModel.PER_LAYER], ids=["perReplica", "perLayer"])
def sync_model(request):
    return request.param


# -- round trips ---------------------------------------------------------------------------


def test_local_point_add_update_delete_reach_the_service(server, tmp_path, sync_model):
    offline_map = take_offline(server, tmp_path / "map", sync_model)
    local = Local(offline_map)
    added = local.add(POINTS, "POINT (950000 6003000)", name="New café + & ü", visits=3)
    local.update(POINTS, point_gid(1), name="Renamed ✓")
    local.delete(POINTS, point_gid(2))
    assert local.has_pending()

    result = sync_map(offline_map)

    assert_no_errors(result)
    points = result_for(result, POINTS)
    assert (points.uploaded.adds, points.uploaded.updates, points.uploaded.deletes) == (1, 1, 1)
    rows = server_rows(server, POINTS)
    assert rows[added]["attributes"]["name"] == "New café + & ü"
    assert rows[added]["attributes"]["visits"] == 3
    assert rows[added]["geometry"]["x"] == pytest.approx(950000)
    assert rows[point_gid(1)]["attributes"]["name"] == "Renamed ✓"
    # only the changed field was sent: the other values are untouched
    assert rows[point_gid(1)]["attributes"]["visits"] == 7
    assert point_gid(2) not in rows
    assert len(rows) == seed.DEMO_COUNTS[POINTS]
    assert not local.has_pending()


def test_line_polygon_and_table_edits_round_trip(server, tmp_path, sync_model):
    offline_map = take_offline(server, tmp_path / "map", sync_model)
    local = Local(offline_map)
    line = local.add(LINES, "LINESTRING (950000 6003000, 950100 6003100)", name="New path")
    local.set_geometry(
        POLYGONS,
        seed.guid(DEMO, POLYGONS, 3),
        "POLYGON ((950000 6003000, 950000 6003100, 950100 6003100, 950000 6003000))",
    )
    inspection = local.add(
        INSPECTIONS, None, PointGlobalID=point_gid(0), inspector="Zoë", remarks="ok & fine"
    )
    local.delete(LINES, seed.guid(DEMO, LINES, 0))

    result = sync_map(offline_map)

    assert_no_errors(result)
    assert server_rows(server, LINES)[line]["geometry"]["paths"] == [
        [[950000, 6003000], [950100, 6003100]]
    ]
    assert seed.guid(DEMO, LINES, 0) not in server_rows(server, LINES)
    polygon = server_rows(server, POLYGONS)[seed.guid(DEMO, POLYGONS, 3)]
    assert len(polygon["geometry"]["rings"]) == 1
    assert polygon["attributes"]["name"] == seed.POLYGON_NAMES[3]
    table_row = server_rows(server, INSPECTIONS)[inspection]["attributes"]
    assert table_row["inspector"] == "Zoë"
    assert table_row["PointGlobalID"].upper() == point_gid(0)
    assert result_for(result, INSPECTIONS).uploaded.adds == 1
    assert result_for(result, INSPECTIONS).is_table


def test_new_feature_and_its_new_related_row_arrive_together(server, tmp_path, sync_model):
    map_a = take_offline(server, tmp_path / "a", sync_model)
    map_b = take_offline(server, tmp_path / "b", sync_model)
    a = Local(map_a)
    point = a.add(POINTS, "POINT (950200 6003200)", name="Hydrant")
    inspection = a.add(INSPECTIONS, None, PointGlobalID=point, inspector="Kai", result="pass")

    assert_no_errors(sync_map(map_a))
    assert_no_errors(sync_map(map_b))

    on_server = server_rows(server, INSPECTIONS)[inspection]["attributes"]
    assert on_server["PointGlobalID"].upper() == point
    assert point in server_rows(server, POINTS)
    b_row = Local(map_b).rows(INSPECTIONS)[inspection]
    assert str(b_row["PointGlobalID"]).upper() == point
    assert Local(map_b).rows(POINTS)[point]["name"] == "Hydrant"


def test_server_changes_of_every_kind_are_downloaded(server, tmp_path, sync_model):
    offline_map = take_offline(server, tmp_path / "map", sync_model)
    local = Local(offline_map)
    new_point = new_guid()
    server.apply_edits(
        DEMO,
        POINTS,
        adds=[
            {
                "attributes": {"GlobalID": new_point, "name": "From the office"},
                "geometry": {"x": 951000, "y": 6004000},
            }
        ],
        updates=[{"attributes": {"GlobalID": point_gid(4), "name": "Edited in the office"}}],
        deletes=[point_gid(5)],
    )
    server.apply_edits(DEMO, POLYGONS, deletes=[seed.guid(DEMO, POLYGONS, 0)])
    new_inspection = new_guid()
    server.apply_edits(
        DEMO, INSPECTIONS, adds=[{"attributes": {"GlobalID": new_inspection, "inspector": "Ana"}}]
    )

    result = sync_map(offline_map)

    assert_no_errors(result)
    points = local.rows(POINTS)
    assert points[new_point]["name"] == "From the office"
    assert local.geometry_wkt(POINTS, new_point) == "POINT (951000 6004000)"
    assert points[point_gid(4)]["name"] == "Edited in the office"
    assert point_gid(5) not in points
    assert seed.guid(DEMO, POLYGONS, 0) not in local.rows(POLYGONS)
    assert local.rows(INSPECTIONS)[new_inspection]["inspector"] == "Ana"
    downloaded = result_for(result, POINTS).downloaded
    assert (downloaded.adds, downloaded.updates, downloaded.deletes) == (1, 1, 1)
    # applying downloaded changes is not a local edit
    assert not local.has_pending()


def test_attachment_adds_updates_and_deletes_travel_both_ways(server, tmp_path, sync_model):
    map_a = take_offline(server, tmp_path / "a", sync_model)
    map_b = take_offline(server, tmp_path / "b", sync_model)
    a, b = Local(map_a), Local(map_b)
    table = a.layers[POINTS].attachment_table
    seeded = server.attachments(DEMO, POINTS)
    assert table and len(seeded) >= 2, "the seed has attachments on Points"
    changed, removed = seeded[0]["globalId"].upper(), seeded[1]["globalId"].upper()
    new_attachment = new_guid()
    con = a._connect()
    try:
        con.execute(
            f'INSERT INTO "{table}" (GLOBALID, REL_GLOBALID, CONTENT_TYPE, ATT_NAME, DATA_SIZE, DATA)'
            " VALUES (?, ?, 'image/png', 'photo é.png', 4, ?)",
            [new_attachment, point_gid(0), b"\x89PNG"],
        )
        con.execute(
            f'UPDATE "{table}" SET DATA = ?, DATA_SIZE = 3 WHERE upper(GLOBALID) = ?',
            [b"new", changed],
        )
        con.execute(f'DELETE FROM "{table}" WHERE upper(GLOBALID) = ?', [removed])
    finally:
        con.close()

    result_a = sync_map(map_a)
    assert_no_errors(result_a)
    assert result_for(result_a, POINTS).uploaded.attachments == 3
    on_server = {att["globalId"].upper(): att for att in server.attachments(DEMO, POINTS)}
    assert on_server[new_attachment]["data"] == b"\x89PNG"
    assert on_server[new_attachment]["name"] == "photo é.png"
    assert on_server[new_attachment]["parentGlobalId"].upper() == point_gid(0)
    assert on_server[changed]["data"] == b"new"
    assert removed not in on_server

    result_b = sync_map(map_b)
    assert_no_errors(result_b)
    assert result_for(result_b, POINTS).downloaded.attachments == 3
    con = b._connect()
    try:
        in_b = {
            str(gid).upper(): bytes(data)
            for gid, data in con.execute(f'SELECT GLOBALID, DATA FROM "{table}"')
        }
    finally:
        con.close()
    assert in_b[new_attachment] == b"\x89PNG"
    assert in_b[changed] == b"new"
    assert removed not in in_b
    assert len(in_b) == len(seeded)


def test_upload_only_leaves_server_changes_for_a_later_sync(server, tmp_path, sync_model):
    offline_map = take_offline(server, tmp_path / "map", sync_model)
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Local")
    server.apply_edits(
        DEMO, POINTS, updates=[{"attributes": {"GlobalID": point_gid(6), "name": "Server"}}]
    )

    result = sync_map(offline_map, SyncDirection.UPLOAD)

    assert_no_errors(result)
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == "Local"
    assert local.rows(POINTS)[point_gid(6)]["name"] != "Server"

    assert_no_errors(sync_map(offline_map, SyncDirection.DOWNLOAD))
    assert local.rows(POINTS)[point_gid(6)]["name"] == "Server"


def test_per_layer_directions_are_honoured(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map", SyncModel.PER_LAYER)
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Up")
    local.update(LINES, seed.guid(DEMO, LINES, 0), name="Not uploaded")
    server.apply_edits(
        DEMO, POINTS, updates=[{"attributes": {"GlobalID": point_gid(1), "name": "Not downloaded"}}]
    )
    server.apply_edits(
        DEMO,
        LINES,
        updates=[{"attributes": {"GlobalID": seed.guid(DEMO, LINES, 1), "name": "Down"}}],
    )

    task = GeodatabaseSyncTask(server.service_url(DEMO), client=fast_client())
    params = task.create_default_sync_geodatabase_parameters(local.path)
    assert {o.layer_id for o in params.layer_options} == {0, 1, 2, 3}
    params.layer_options = [
        SyncLayerOption(POINTS, SyncDirection.UPLOAD),
        SyncLayerOption(LINES, SyncDirection.DOWNLOAD),
        SyncLayerOption(POLYGONS, SyncDirection.NONE),
        SyncLayerOption(INSPECTIONS, SyncDirection.BIDIRECTIONAL),
    ]
    job = task.sync_geodatabase(params, local.path)
    results = {r.layer_id: r for r in job.run()}

    assert not any(r.has_errors for r in results.values())
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == "Up"
    assert (
        server_rows(server, LINES)[seed.guid(DEMO, LINES, 0)]["attributes"]["name"]
        != "Not uploaded"
    )
    assert local.rows(LINES)[seed.guid(DEMO, LINES, 1)]["name"] == "Down"
    assert local.rows(POINTS)[point_gid(1)]["name"] != "Not downloaded"
    # the line edit is still waiting for a sync that uploads lines
    assert local.pending()[LINES]["updates"] == 1

    # a later bidirectional sync brings what was held back, nothing is lost
    params = task.create_default_sync_geodatabase_parameters(local.path)
    task.sync_geodatabase(params, local.path).run()
    assert (
        server_rows(server, LINES)[seed.guid(DEMO, LINES, 0)]["attributes"]["name"]
        == "Not uploaded"
    )
    assert local.rows(POINTS)[point_gid(1)]["name"] == "Not downloaded"


# -- conflicts -------------------------------------------------------------------------------


def test_users_a_and_b_edit_the_same_feature_later_sync_wins_different_fields_survive(
    server, tmp_path, sync_model
):
    map_a = take_offline(server, tmp_path / "a", sync_model)
    map_b = take_offline(server, tmp_path / "b", sync_model)
    a, b = Local(map_a), Local(map_b)
    gid = point_gid(3)
    a.update(POINTS, gid, name="A's name", visits=111)
    b.update(POINTS, gid, name="B's name", height=999.5)

    assert_no_errors(sync_map(map_a))
    assert_no_errors(sync_map(map_b))
    assert_no_errors(sync_map(map_a))

    on_server = server_rows(server, POINTS)[gid]["attributes"]
    assert on_server["name"] == "B's name"  # same field: the later sync wins
    assert on_server["visits"] == 111  # A's other field survives
    assert on_server["height"] == 999.5  # B's other field survives
    for local in (a, b):
        row = local.rows(POINTS)[gid]
        assert (row["name"], row["visits"], row["height"]) == ("B's name", 111, 999.5)
        assert not local.has_pending()


def test_update_of_server_deleted_feature_goes_to_conflicts(server, tmp_path, sync_model):
    offline_map = take_offline(server, tmp_path / "map", sync_model)
    local = Local(offline_map)
    gid = point_gid(7)
    local.update(POINTS, gid, name="Edited offline")
    server.apply_edits(DEMO, POINTS, deletes=[gid])

    result = sync_map(offline_map)

    points = result_for(result, POINTS)
    # the server's delete arrives in the same sync, which settles the rejected update (1019)
    assert all(e.code == 1019 for e in points.edit_errors)
    assert points.conflicts == 1
    assert gid not in server_rows(server, POINTS)  # not resurrected
    assert gid not in local.rows(POINTS)  # the server's delete is applied
    conflicts = local.conflicts()
    assert [c.global_id.upper() for c in conflicts] == [gid]
    assert conflicts[0].attributes["name"] == "Edited offline"
    assert conflicts[0].reason == ConflictReason.DELETED_ON_SERVER
    assert not local.has_pending()


def test_local_delete_of_server_updated_feature_deletes_it(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    gid = point_gid(8)
    local.delete(POINTS, gid)
    server.apply_edits(DEMO, POINTS, updates=[{"attributes": {"GlobalID": gid, "name": "Office"}}])

    assert_no_errors(sync_map(offline_map))

    assert gid not in server_rows(server, POINTS)
    assert gid not in local.rows(POINTS)


def _attributes(server, gid: str) -> dict:
    return server_rows(server, POINTS)[gid]["attributes"]


@pytest.mark.parametrize("same_field", [False, True], ids=["other field", "same field"])
def test_download_only_keeps_a_pending_edit_that_then_wins_everywhere(
    server, tmp_path, sync_model, same_field
):
    # Replica B edits visits; the server changes height (or visits too) of the same row.
    map_a = take_offline(server, tmp_path / "a", sync_model)
    map_b = take_offline(server, tmp_path / "b", sync_model)
    local_a, local_b = Local(map_a), Local(map_b)
    gid = point_gid(9)
    local_b.update(POINTS, gid, visits=4242)
    server_change = {"visits": 1} if same_field else {"height": 9.5}
    server.apply_edits(DEMO, POINTS, updates=[{"attributes": {"GlobalID": gid, **server_change}}])

    result = sync_map(map_b, SyncDirection.DOWNLOAD)

    assert_no_errors(result)
    assert result_for(result, POINTS).conflicts == 0 and local_b.conflicts() == []
    row = local_b.rows(POINTS)[gid]
    assert row["visits"] == 4242  # the local value is kept...
    assert local_b.pending()[POINTS]["updates"] == 1  # ...and stays pending
    if not same_field:
        assert row["height"] == 9.5  # the server's value landed in the other field
    assert _attributes(server, gid)["visits"] == (1 if same_field else 63)

    assert_no_errors(sync_map(map_b))  # two-way: uploaded, and it wins
    assert_no_errors(sync_map(map_a))
    assert not local_b.has_pending() and local_b.conflicts() == []
    expected_height = 9.5 if not same_field else _attributes(server, gid)["height"]
    for where in (_attributes(server, gid), local_a.rows(POINTS)[gid], local_b.rows(POINTS)[gid]):
        assert where["visits"] == 4242 and where["height"] == expected_height


def test_download_only_keeps_a_pending_delete_and_a_new_feature(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    gone = point_gid(3)
    local.delete(POINTS, gone)
    added = local.add(POINTS, "POINT (950000 6003000)", name="Added offline")
    server.apply_edits(DEMO, POINTS, updates=[{"attributes": {"GlobalID": gone, "visits": 8}}])

    assert_no_errors(sync_map(offline_map, SyncDirection.DOWNLOAD))

    assert gone not in local.rows(POINTS) and added in local.rows(POINTS)
    assert local.pending()[POINTS]["deletes"] == 1 and local.pending()[POINTS]["adds"] == 1
    assert local.conflicts() == []
    assert_no_errors(sync_map(offline_map))
    remote = server_rows(server, POINTS)
    assert gone not in remote and remote[added]["attributes"]["name"] == "Added offline"
    assert not local.has_pending()


def test_edits_made_during_a_sync_stay_pending_for_the_next(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Before")
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())
    edited = []

    def edit_while_uploading(percent, message):
        # once the upload is on its way, another writer edits the geodatabase
        if not edited and "Upload" in message:
            edited.append(True)
            local.update(POINTS, point_gid(1), name="During")

    job.add_progress_listener(edit_while_uploading)
    assert_no_errors(job.run())
    assert edited
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == "Before"
    assert local.pending()[POINTS]["updates"] == 1
    assert_no_errors(sync_map(offline_map))
    assert server_rows(server, POINTS)[point_gid(1)]["attributes"]["name"] == "During"


# -- rollback on failure ------------------------------------------------------------------


@pytest.mark.parametrize("rollback", [True, False])
def test_rollback_on_failure_with_one_bad_edit(server, tmp_path, rollback):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(10), name="Good edit")
    local.update(POINTS, point_gid(11), name="Bad edit: feature deleted on the server")
    # the server deletes the second one without the client downloading it: its update fails
    server.apply_edits(DEMO, POINTS, deletes=[point_gid(11)])

    result = sync_map(offline_map, SyncDirection.UPLOAD, rollback=rollback)

    assert result.has_errors
    if rollback:
        # nothing is applied and nothing is lost: both edits stay pending
        assert server_rows(server, POINTS)[point_gid(10)]["attributes"]["name"] != "Good edit"
        assert local.pending()[POINTS]["updates"] == 2
        assert result.geodatabase_errors or result_for(result, POINTS).error
    else:
        assert server_rows(server, POINTS)[point_gid(10)]["attributes"]["name"] == "Good edit"
        errors = result_for(result, POINTS).edit_errors
        assert [e.global_id.upper() for e in errors] == [point_gid(11)]
        assert [c.global_id.upper() for c in local.conflicts()] == [point_gid(11)]


# -- faults and recovery ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["drop_before_commit", "drop_after_commit", "http502", "html_error", "truncated_json"]
)
def test_fault_during_sync_then_plain_resync_equals_a_fault_free_run(
    server, tmp_path, fault, sync_model
):
    offline_map = take_offline(server, tmp_path / "map", sync_model)
    local = Local(offline_map)
    added = local.add(POINTS, "POINT (950500 6003500)", name="Added once")
    local.update(POINTS, point_gid(0), name="Updated once")
    local.delete(POINTS, point_gid(1))
    server.apply_edits(
        DEMO,
        LINES,
        updates=[{"attributes": {"GlobalID": seed.guid(DEMO, LINES, 2), "name": "Server line"}}],
    )

    server.inject_fault("synchronizeReplica", fault)
    failed = sync_map(offline_map)
    assert failed.has_errors
    message = failed.geodatabase_errors[Local(offline_map).path.name]
    assert "Syncing again will resolve it" in message

    job = sync_job(offline_map)
    resynced = job.run()

    assert_no_errors(resynced)
    assert any("interrupted during the last sync" in m for m in job.messages)
    rows = server_rows(server, POINTS)
    assert [g for g in rows if g == added] == [added]
    assert len(rows) == seed.DEMO_COUNTS[POINTS]  # one added, one deleted, no duplicates
    assert rows[point_gid(0)]["attributes"]["name"] == "Updated once"
    assert point_gid(1) not in rows
    assert local.rows(LINES)[seed.guid(DEMO, LINES, 2)]["name"] == "Server line"
    assert not local.has_pending()
    local_points = local.rows(POINTS)
    assert len(local_points) == seed.DEMO_COUNTS[POINTS]
    assert local_points[added]["name"] == "Added once"


@pytest.mark.parametrize("operation", ["jobs", "result"])
def test_transient_faults_while_polling_or_downloading_are_retried_within_the_sync(
    server, tmp_path, operation
):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Despite a hiccup")
    server.inject_fault(operation, "http502")

    assert_no_errors(sync_map(offline_map))
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == "Despite a hiccup"
    assert not local.has_pending()


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        ("jobs", "drop_before_commit"),
        ("result", "drop_before_commit"),
        ("result", "truncated_json"),
    ],
)
def test_lasting_faults_while_polling_or_downloading_are_finished_by_the_next_sync(
    server, tmp_path, operation, kind
):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    added = local.add(POINTS, "POINT (950500 6003500)", name="Exactly once")
    server.inject_fault(operation, kind, count=10)

    failed = sync_map(offline_map)
    assert "Syncing again will resolve it" in next(iter(failed.geodatabase_errors.values()))
    server.clear_faults()

    assert_no_errors(sync_map(offline_map))
    rows = server_rows(server, POINTS)
    assert rows[added]["attributes"]["name"] == "Exactly once"
    assert len(rows) == seed.DEMO_COUNTS[POINTS] + 1
    assert not local.has_pending()
    assert len(local.rows(POINTS)) == seed.DEMO_COUNTS[POINTS] + 1


def test_sync_cancelled_while_applying_downloads_leaves_the_old_state_and_resyncs(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Uploaded, then cancelled")
    server.apply_edits(
        DEMO, POINTS, updates=[{"attributes": {"GlobalID": point_gid(2), "name": "Server"}}]
    )
    job = sync_job(offline_map)
    job.add_progress_listener(lambda p, m: job.cancel() if m.startswith("Applying") else None)
    with pytest.raises(CancelledError):
        job.run()
    # the server has the upload; locally nothing of the commit happened
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == (
        "Uploaded, then cancelled"
    )
    assert local.rows(POINTS)[point_gid(2)]["name"] != "Server"
    assert local.pending()[POINTS]["updates"] == 1

    assert_no_errors(sync_map(offline_map))
    assert local.rows(POINTS)[point_gid(2)]["name"] == "Server"
    assert not local.has_pending()
    assert len(server_rows(server, POINTS)) == seed.DEMO_COUNTS[POINTS]


KILL_DURING_APPLY = """
import os, sys
sys.path.insert(0, sys.argv[1])
from plugin.core.rest import ArcGISClient
from plugin.core.sync import OfflineMapSyncTask

task = OfflineMapSyncTask(sys.argv[2], client=ArcGISClient(poll_interval=0.02, timeout=30))
job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())
# die abruptly inside the commit transaction, after downloaded rows were written
job.add_progress_listener(lambda p, m: os._exit(3) if m.startswith("Applied") else None)
job.run()
os._exit(0)
"""


def test_process_killed_while_applying_leaves_the_old_state_and_the_next_sync_completes(
    server, tmp_path
):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Uploaded by a dying process")
    server.apply_edits(
        DEMO, POINTS, updates=[{"attributes": {"GlobalID": point_gid(2), "name": "Server"}}]
    )
    root = Path(__file__).resolve().parent.parent
    died = subprocess.run(
        [sys.executable, "-c", KILL_DURING_APPLY, str(root), str(offline_map.folder)],
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert died.returncode == 3, died.stderr

    assert local.rows(POINTS)[point_gid(2)]["name"] != "Server"
    assert local.pending()[POINTS]["updates"] == 1
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == (
        "Uploaded by a dying process"
    )

    assert_no_errors(sync_map(offline_map))
    assert local.rows(POINTS)[point_gid(2)]["name"] == "Server"
    assert not local.has_pending()
    assert len(server_rows(server, POINTS)) == seed.DEMO_COUNTS[POINTS]


def test_expired_result_file_is_requested_again_by_the_next_sync(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Uploaded before the result expired")
    # the job completes on the server, but the client is cancelled before fetching the result
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())
    job.add_progress_listener(lambda p, m: job.cancel() if "Server job" in m else None)
    with pytest.raises(Exception):  # noqa: B017 - CancelledError, asserted below
        job.run()
    assert job.status == JobStatus.FAILED
    server.expire_results()

    result = sync_map(offline_map)

    assert_no_errors(result)
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == (
        "Uploaded before the result expired"
    )
    assert not local.has_pending()
    assert len(server_rows(server, POINTS)) == seed.DEMO_COUNTS[POINTS]


def test_expired_token_is_renewed_during_sync(secured_reference_server, tmp_path):
    server = secured_reference_server
    credentials = TokenCredentials(
        server.token_url, "alice", "alice-secret", plain_http_hosts=server.plain_http_hosts
    )
    client = fast_client(credentials)
    offline_map = take_offline(server, tmp_path / "map", client=client)
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="With a renewed token")
    server.expire_tokens()

    result = sync_map(offline_map, client=client)

    assert_no_errors(result)
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == "With a renewed token"


def test_sync_without_credentials_on_a_secured_service_fails_clearly_and_keeps_edits(
    secured_reference_server, tmp_path
):
    server = secured_reference_server
    client = fast_client(
        TokenCredentials(
            server.token_url, "alice", "alice-secret", plain_http_hosts=server.plain_http_hosts
        )
    )
    offline_map = take_offline(server, tmp_path / "map", client=client)
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Kept")

    result = sync_map(offline_map, client=fast_client())

    assert result.has_errors
    assert "sign in" in next(iter(result.geodatabase_errors.values()))
    assert local.pending()[POINTS]["updates"] == 1


def test_unreachable_service_fails_with_a_resync_hint(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    Local(offline_map).update(POINTS, point_gid(0), name="Waiting")
    server.stop()

    result = sync_map(offline_map)

    message = next(iter(result.geodatabase_errors.values()))
    assert "Syncing again will resolve it" in message
    assert all(r.error == message for r in result.all_results())
    assert Local(offline_map).pending()[POINTS]["updates"] == 1


def test_unregistered_replica_fails_clearly_and_loses_no_edit(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Still here")
    task = GeodatabaseSyncTask(server.service_url(DEMO), client=fast_client())
    with Geodatabase.open(local.path) as gdb:
        replica_id = gdb.replica.replica_id
    task.unregister_geodatabase(replica_id)
    assert replica_id not in [
        r["replicaID"] for r in fast_client().replicas(server.service_url(DEMO))
    ]

    with pytest.raises(ServiceError):
        task.sync_geodatabase(
            task.create_default_sync_geodatabase_parameters(local.path), local.path
        ).run()
    assert local.pending()[POINTS]["updates"] == 1
    assert local.rows(POINTS)[point_gid(0)]["name"] == "Still here"


def test_a_second_sync_of_the_same_geodatabase_is_refused_while_one_runs(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    task = GeodatabaseSyncTask(server.service_url(DEMO), client=fast_client())
    params = SyncGeodatabaseParameters()
    with (
        Geodatabase.open(local.path) as holder,
        holder.sync_lock(),
        pytest.raises(SyncInProgressError),
    ):
        task.sync_geodatabase(params, local.path).run()
    task.sync_geodatabase(params, local.path).run()


HOLD_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from plugin.core.geodatabase import Geodatabase

with Geodatabase.open(sys.argv[2]) as gdb, gdb.sync_lock():
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_sync_running_in_another_process_is_reported_and_nothing_changes(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Waits for the other process")
    root = Path(__file__).resolve().parent.parent
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root), str(local.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = sync_map(offline_map)
    finally:
        holder.communicate("go\n", timeout=60)
    message = result.geodatabase_errors[local.path.name]
    assert "already" in message.lower()
    assert local.pending()[POINTS]["updates"] == 1
    assert_no_errors(sync_map(offline_map))
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == (
        "Waits for the other process"
    )


# -- the offline map task ------------------------------------------------------------------


def test_task_loads_and_reports_update_capabilities_and_availability(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    task = OfflineMapSyncTask(offline_map.folder, client=fast_client())
    assert task.load_status == LoadStatus.NOT_LOADED
    task.load()
    assert task.load_status == LoadStatus.LOADED
    assert task.update_capabilities.supports_sync_with_feature_services
    info = task.check_for_updates()
    assert info.upload_availability == OfflineUpdateAvailability.NONE
    assert info.download_availability == OfflineUpdateAvailability.INDETERMINATE
    assert not info.is_mobile_map_package_reopen_required

    Local(offline_map).update(POINTS, point_gid(0), name="Pending")
    assert task.check_for_updates().upload_availability == OfflineUpdateAvailability.AVAILABLE

    params = task.create_default_offline_map_sync_parameters()
    assert params.sync_direction == SyncDirection.BIDIRECTIONAL
    assert not params.rollback_on_failure


def test_load_fails_for_a_missing_geodatabase_and_retry_succeeds_once_it_is_back(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    path = offline_map.geodatabases[0].path
    moved = path.with_name("elsewhere.bin")
    path.rename(moved)
    task = OfflineMapSyncTask(offline_map.folder, client=fast_client())
    with pytest.raises(Exception, match="missing"):
        task.load()
    assert task.load_status == LoadStatus.FAILED_TO_LOAD
    moved.rename(path)
    task.retry_load()
    assert task.load_status == LoadStatus.LOADED


def test_default_parameters_follow_a_download_only_service(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map", service=seed.READONLY_SERVICE)
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    assert (
        task.create_default_offline_map_sync_parameters().sync_direction == SyncDirection.DOWNLOAD
    )


def test_service_advertising_only_editing_is_taken_offline_two_way_and_edits_upload(
    server, tmp_path
):
    # "Editing" without Create/Update/Delete still means the service takes edits.
    server.set_capabilities(seed.READONLY_SERVICE, "Query,Editing,Sync")
    offline_map = take_offline(server, tmp_path / "map", service=seed.READONLY_SERVICE)
    assert not offline_map.geodatabases[0].download_only
    service_url = server.service_url(seed.READONLY_SERVICE)
    gdb_task = GeodatabaseSyncTask(service_url, client=fast_client())
    path = offline_map.geodatabases[0].path
    defaults = gdb_task.create_default_sync_geodatabase_parameters(path)
    assert defaults.sync_direction == SyncDirection.BIDIRECTIONAL
    generate = gdb_task.create_default_generate_geodatabase_parameters()
    assert generate.sync_direction == SyncDirection.BIDIRECTIONAL
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    assert (
        task.create_default_offline_map_sync_parameters().sync_direction
        == SyncDirection.BIDIRECTIONAL
    )
    gid = seed.guid(seed.READONLY_SERVICE, POINTS, 0)
    Local(offline_map).update(POINTS, gid, name="Edited offline")

    result = sync_map(offline_map)

    assert_no_errors(result)
    assert result_for(result, POINTS).uploaded.updates == 1
    assert server_rows(server, POINTS, seed.READONLY_SERVICE)[gid]["attributes"]["name"] == (
        "Edited offline"
    )
    assert not Local(offline_map).has_pending()


def test_job_in_a_thread_reports_progress_messages_and_result(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    Local(offline_map).update(POINTS, point_gid(0), name="Threaded")
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    job = task.create_offline_map_sync_job(OfflineMapSyncParameters())
    seen = []
    job.add_progress_listener(lambda percent, message: seen.append((percent, message)))
    job.start()
    assert job.wait(120)
    assert job.status == JobStatus.SUCCEEDED
    assert job.progress == 100
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and all(0 <= p <= 100 for p in percents)
    assert any("Upload" in m for m in job.messages)
    assert isinstance(job.result, OfflineMapSyncResult)
    names = {r.name for r in job.result.layer_results}
    assert {"Points", "Lines", "Polygons"} <= names
    assert [r.name for r in job.result.table_results] == ["Inspections"]
    assert not job.result.is_mobile_map_package_reopen_required


def test_cancelled_job_leaves_edits_pending_and_the_next_sync_completes(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Cancelled once")
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())
    job.cancel()
    with pytest.raises(Exception, match="cancelled"):
        job.run()
    assert local.pending()[POINTS]["updates"] == 1
    assert_no_errors(sync_map(offline_map))
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == "Cancelled once"


def test_keep_geodatabase_deltas_keeps_upload_and_download_files(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    Local(offline_map).update(POINTS, point_gid(0), name="Kept delta")
    assert_no_errors(sync_map(offline_map, keep_deltas=True))
    deltas = tmp_path / "map_deltas"
    uploads = sorted(deltas.glob("*_upload.json"))
    downloads = sorted(deltas.glob("*_download.json"))
    assert len(uploads) == 1 and len(downloads) == 1
    edits = json.loads(uploads[0].read_text(encoding="utf-8"))
    assert edits[0]["id"] == POINTS
    assert edits[0]["features"]["updates"][0]["attributes"]["name"] == "Kept delta"
    assert "replicaID" in json.loads(downloads[0].read_text(encoding="utf-8"))


def test_two_maps_sync_concurrently_without_interference(server, tmp_path):
    maps = [take_offline(server, tmp_path / f"m{i}") for i in range(2)]
    for i, offline_map in enumerate(maps):
        Local(offline_map).update(POINTS, point_gid(i), name=f"Concurrent {i}")
    results: list = [None, None]

    def run(i):
        results[i] = sync_map(maps[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for result in results:
        assert_no_errors(result)
    rows = server_rows(server, POINTS)
    assert rows[point_gid(0)]["attributes"]["name"] == "Concurrent 0"
    assert rows[point_gid(1)]["attributes"]["name"] == "Concurrent 1"


# -- ahead-of-time maps: scheduled update packages --------------------------------------------


class ScheduledUpdatesPortal:
    """A portal serving one package item's ``d_<gen>.json`` update packages (spec §6)."""

    def __init__(self, scripted, item_id: str = "0123456789abcdef0123456789abcdef") -> None:
        self.scripted = scripted
        self.item_id = item_id
        self.portal_url = scripted.url + "/sharing/rest"
        self.last_purged: int | None = None
        self.deltas: dict[str, bytes] = {}
        base = f"/sharing/rest/content/items/{item_id}"
        scripted.routes[base] = lambda request, params: {
            "id": item_id,
            "type": "SQLite Geodatabase",
            "properties": {} if self.last_purged is None else {"lastPurgedGen": self.last_purged},
        }
        scripted.routes[base + "/resources"] = lambda request, params: {
            "resources": [{"resource": n, "size": len(b)} for n, b in self.deltas.items()]
        }

    def add_delta(self, gen: int, edits: list[dict]) -> None:
        name = f"d_{gen}.json"
        body = json.dumps({"replicaServerGen": gen, "edits": edits}).encode()
        self.deltas[name] = body
        self.scripted.routes[f"/sharing/rest/content/items/{self.item_id}/resources/{name}"] = (
            Response(body, mimetype="application/json")
        )


def make_ahead_of_time(offline_map: OfflineMap, portal, mode) -> tuple[OfflineMap, int]:
    entry = offline_map.geodatabases[0]
    with Geodatabase.open(entry.path) as gdb:
        generation = gdb.replica.server_gen
    manifest = offline_map.manifest
    offline_map.save(
        replace(
            manifest,
            update_mode=mode,
            source=replace(
                manifest.source, portal_url=portal.portal_url, map_area_item_id="A" * 32
            ),
            geodatabases=tuple(
                replace(e, package_item_id=portal.item_id, generation=generation, path=None)
                for e in manifest.geodatabases
            ),
        )
    )
    return OfflineMap.open(offline_map.folder), generation


@pytest.fixture
def scripted():
    server = ScriptedServer()
    yield server
    server.stop()


def test_scheduled_updates_are_listed_sized_and_applied_in_generation_order(
    server, scripted, tmp_path
):
    portal = ScheduledUpdatesPortal(scripted)
    offline_map, gen = make_ahead_of_time(
        take_offline(server, tmp_path / "map"),
        portal,
        PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES,
    )
    local = Local(offline_map)
    update = {"attributes": {"GlobalID": point_gid(0), "name": "First package"}}
    portal.add_delta(gen, [{"id": 0, "features": {"updates": [update]}}])  # already applied
    portal.add_delta(gen + 2, [{"id": 0, "features": {"deleteIds": [point_gid(1)]}}])
    second = {"attributes": {"GlobalID": point_gid(0), "name": "Second package"}}
    portal.add_delta(gen + 3, [{"id": 0, "features": {"updates": [second]}}])
    portal.add_delta(gen + 1, [{"id": 0, "features": {"updates": [update]}}])

    task = OfflineMapSyncTask(offline_map, client=fast_client())
    assert task.update_capabilities.supports_scheduled_updates_for_features
    info = task.check_for_updates()
    assert info.download_availability == OfflineUpdateAvailability.AVAILABLE
    assert info.upload_availability == OfflineUpdateAvailability.NONE
    assert info.scheduled_updates_download_size == sum(
        len(portal.deltas[f"d_{g}.json"]) for g in (gen + 1, gen + 2, gen + 3)
    )
    params = task.create_default_offline_map_sync_parameters()
    assert params.sync_direction == SyncDirection.DOWNLOAD
    assert params.preplanned_scheduled_updates_option == (
        PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
    )

    result = task.create_offline_map_sync_job(params).run()

    assert_no_errors(result)
    assert not result.is_mobile_map_package_reopen_required
    rows = local.rows(POINTS)
    assert rows[point_gid(0)]["name"] == "Second package"  # the newest package applied last
    assert point_gid(1) not in rows
    assert OfflineMap.open(offline_map.folder).geodatabases[0].generation == gen + 3
    assert (
        scripted.hits[f"/sharing/rest/content/items/{portal.item_id}/resources/d_{gen}.json"] == []
    )
    again = OfflineMapSyncTask(offline_map.folder, client=fast_client()).check_for_updates()
    assert again.download_availability == OfflineUpdateAvailability.NONE
    assert again.scheduled_updates_download_size == 0


def test_upload_new_features_mode_uploads_only_adds_and_downloads_packages(
    server, scripted, tmp_path
):
    portal = ScheduledUpdatesPortal(scripted)
    offline_map, gen = make_ahead_of_time(
        take_offline(server, tmp_path / "map"),
        portal,
        PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES_AND_UPLOAD_NEW_FEATURES,
    )
    local = Local(offline_map)
    added = local.add(POINTS, "POINT (950000 6003000)", name="New in the field")
    local.update(POINTS, point_gid(3), name="Not uploaded in this mode")
    delta = {"attributes": {"GlobalID": point_gid(6), "name": "From a package"}}
    portal.add_delta(gen + 1, [{"id": 0, "features": {"updates": [delta]}}])
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    assert task.check_for_updates().upload_availability == OfflineUpdateAvailability.AVAILABLE
    params = task.create_default_offline_map_sync_parameters()
    assert params.sync_direction == SyncDirection.BIDIRECTIONAL

    result = task.create_offline_map_sync_job(params).run()

    assert not result.geodatabase_errors
    # The update of a downloaded feature is reported (it bypassed the edit guards), not lost.
    reported = result_for(result, POINTS)
    assert [e.message for e in reported.edit_errors if "only new features" in e.message]
    on_server = server_rows(server, POINTS)
    assert on_server[added]["attributes"]["name"] == "New in the field"
    assert on_server[point_gid(3)]["attributes"]["name"] != "Not uploaded in this mode"
    assert local.rows(POINTS)[point_gid(6)]["name"] == "From a package"
    assert local.pending()[POINTS]["adds"] == 0
    assert local.pending()[POINTS]["updates"] == 1  # kept for when the mode allows it


# -- one service, one geodatabase ------------------------------------------------------------


def test_generated_geodatabase_syncs_per_layer_on_its_own(server, tmp_path):
    url = server.service_url(DEMO)
    task = GeodatabaseSyncTask(url, client=fast_client())
    params = task.create_default_generate_geodatabase_parameters()
    assert params.sync_model == SyncModel.PER_LAYER
    assert [o.layer_id for o in params.layer_options] == [0, 1, 2, 3]
    params.layer_options = [o for o in params.layer_options if o.layer_id in (POINTS, INSPECTIONS)]
    path = task.generate_geodatabase(params, tmp_path / "field.gpkg").run()

    with Geodatabase.open(path) as gdb:
        assert sorted(layer.id for layer in gdb.layers) == [POINTS, INSPECTIONS]
        assert gdb.replica.sync_model == SyncModel.PER_LAYER
    assert not list(tmp_path.glob(".*partial*"))
    con = sqlite3.connect(path)
    register_functions(con)
    con.execute("UPDATE Points SET name = 'Solo' WHERE GlobalID = ?", [point_gid(0)])
    con.commit()
    con.close()

    sync_params = task.create_default_sync_geodatabase_parameters(path)
    results = task.sync_geodatabase(sync_params, path).run()

    assert [r.layer_id for r in results] == [POINTS, INSPECTIONS]
    assert not any(r.has_errors for r in results)
    assert results[0].uploaded.updates == 1
    assert server_rows(server, POINTS)[point_gid(0)]["attributes"]["name"] == "Solo"
    with Geodatabase.open(path) as gdb:
        replica_id = gdb.replica.replica_id
    task.unregister_geodatabase(path)
    assert replica_id not in [r["replicaID"] for r in fast_client().replicas(url)]


def test_generate_refuses_an_existing_file_and_a_failed_run_leaves_nothing(server, tmp_path):
    url = server.service_url(DEMO)
    task = GeodatabaseSyncTask(url, client=fast_client())
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "there.gpkg"
    existing.write_bytes(b"x")
    with pytest.raises(GeodatabaseError, match="already exists"):
        task.generate_geodatabase(
            task.create_default_generate_geodatabase_parameters(), existing
        ).run()
    replicas_before = fast_client().replicas(url)
    server.inject_fault("result", "http500", count=10)
    with pytest.raises(Exception, match="HTTP 500"):
        task.generate_geodatabase(
            task.create_default_generate_geodatabase_parameters(), out / "new.gpkg"
        ).run()
    server.clear_faults()
    assert sorted(p.name for p in out.iterdir()) == ["there.gpkg"]
    assert fast_client().replicas(url) == replicas_before


def take_package_offline(server, folder: Path, client) -> tuple[OfflineMap, str]:
    """An ahead-of-time map of the reference portal's first map area (Demo package), made the
    way a preplanned download does: the package's createReplica data into a geodatabase."""
    portal = server.portal_url
    area = server.prepare_map_areas()[0]
    packages = client.portal_related_items(portal, area, "Area2Package")
    package = next(p for p in packages if f"/{DEMO}/FeatureServer" in p["url"])
    service_url = package["properties"]["serviceUrl"]
    info = client.service_info(service_url)
    layer_ids = package["properties"]["layers"]
    layer_infos = {
        k: v for k, v in client.all_layer_infos(service_url, info).items() if k in layer_ids
    }
    folder.mkdir()
    path = folder / "Demo.gpkg"
    with ReplicaResultFile(folder.parent / "package-data" / "data.json") as data:
        data.path.parent.mkdir()
        client.download(f"{portal}/content/items/{package['id']}/data", data.path)
        header, events = data.read()
        gdb = Geodatabase.create(
            path,
            service_url=service_url,
            service_info=info,
            layer_infos=layer_infos,
            replica_name=header["replicaName"],
            sync_model=SyncModel.PER_REPLICA,
        )
        try:
            gdb.load_replica(header, events)
            generation = gdb.replica.server_gen
        finally:
            gdb.close()
    manifest = OfflineMapManifest(
        title="Area",
        source=MapSource(
            portal_url=portal, webmap_item_id=seed.DEMO_WEBMAP_ID, map_area_item_id=area
        ),
        update_mode=PreplannedUpdateMode.DOWNLOAD_SCHEDULED_UPDATES,
        geodatabases=(
            GeodatabaseEntry(
                file=path.name,
                service_url=service_url,
                title=DEMO,
                layers=tuple(
                    LayerEntry(
                        id=i,
                        title=layer_infos[i]["name"],
                        is_table=layer_infos[i]["type"] == "Table",
                    )
                    for i in sorted(layer_infos)
                ),
                download_only=True,
                package_item_id=package["id"],
                generation=generation,
            ),
        ),
    )
    OfflineMap.write_manifest(folder, manifest)
    return OfflineMap.open(folder), package["id"]


def test_reference_portal_scheduled_updates_are_found_and_applied(server, tmp_path):
    client = fast_client()
    offline_map, _ = take_package_offline(server, tmp_path / "area", client)
    local = Local(offline_map)
    gid = sorted(local.rows(POINTS))[0]
    server.apply_edits(
        DEMO, POINTS, updates=[{"attributes": {"GlobalID": gid, "name": "Refreshed"}}]
    )
    server.refresh_packages()

    task = OfflineMapSyncTask(offline_map, client=client)
    info = task.check_for_updates()
    assert info.download_availability == OfflineUpdateAvailability.AVAILABLE
    assert info.scheduled_updates_download_size > 0
    result = task.create_offline_map_sync_job(
        task.create_default_offline_map_sync_parameters()
    ).run()

    assert_no_errors(result)
    assert result_for(result, POINTS).downloaded.updates == 1
    assert local.rows(POINTS)[gid]["name"] == "Refreshed"
    again = OfflineMapSyncTask(offline_map.folder, client=client).check_for_updates()
    assert again.download_availability == OfflineUpdateAvailability.NONE


# -- edit results the client cannot match --------------------------------------------------------


def test_results_naming_only_object_ids_keep_the_edits_pending_and_say_so(server, tmp_path):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    gid = point_gid(4)
    local.update(POINTS, gid, name="Edited offline")
    added = local.add(POINTS, "POINT (950000 6003000)", name="Added offline")
    server.inject_fault("synchronizeReplica", "results_by_object_id")

    result = sync_map(offline_map)

    points = result_for(result, POINTS)
    unconfirmed = {e.global_id.upper(): e for e in points.edit_errors}
    assert set(unconfirmed) == {gid, added}
    assert all("did not confirm" in e.message for e in unconfirmed.values())
    assert points.uploaded.total == 0
    # Nothing left the pending set, nothing went to the conflict log, the values are local.
    assert local.pending()[POINTS]["updates"] == 1 and local.pending()[POINTS]["adds"] == 1
    assert local.conflicts() == []
    assert local.rows(POINTS)[gid]["name"] == "Edited offline"

    # The next sync sends them again (replays are idempotent) and they are acknowledged.
    assert_no_errors(sync_map(offline_map))
    assert not local.has_pending()
    remote = server_rows(server, POINTS)
    assert remote[gid]["attributes"]["name"] == "Edited offline"
    assert remote[added]["attributes"]["name"] == "Added offline"
    assert (
        sum(1 for f in server.query_all(DEMO, POINTS) if f["attributes"]["name"] == "Added offline")
        == 1
    )


def test_a_failure_the_client_cannot_tie_to_an_edit_is_reported_and_keeps_edits_pending(
    server, tmp_path
):
    offline_map = take_offline(server, tmp_path / "map")
    local = Local(offline_map)
    gid = point_gid(4)
    local.update(POINTS, gid, name="Edited offline")
    with Geodatabase.open(local.path) as gdb:
        snapshot = gdb.snapshot_upload()
        header = {"replicaServerGen": gdb.replica.server_gen}
        events = [
            (
                POINTS,
                "updateResults",
                {
                    "objectId": 99,
                    "success": False,
                    "error": {"code": 1000, "description": "Bad value."},
                },
            ),
        ]
        report = gdb.commit_sync(
            snapshot, header, iter(events), direction=SyncDirection.BIDIRECTIONAL
        )
    errors = report.layers[POINTS].edit_errors
    assert {e.message for e in errors} >= {"Bad value."}
    assert any(e.global_id == gid and "did not confirm" in e.message for e in errors)
    assert local.pending()[POINTS]["updates"] == 1 and local.conflicts() == []
