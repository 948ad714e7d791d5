"""Taking a map offline on demand, against the reference feature service."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from plugin.core.enums import PreplannedUpdateMode, SyncModel
from plugin.core.errors import (
    AuthenticationError,
    CancelledError,
    NetworkError,
    NotSyncEnabledError,
    OfflineMapSyncError,
    ServiceError,
    UnsupportedGeometryError,
)
from plugin.core.field_values import datetime_text_to_ms
from plugin.core.geodatabase import Geodatabase
from plugin.core.geometry import gpkg_to_esri
from plugin.core.offline_map import MANIFEST_NAME, OfflineMap
from plugin.core.rest import ArcGISClient, TokenCredentials
from plugin.core.take_offline import (
    LayerQuery,
    OfflineMapTask,
    layer_url,
    parse_area_of_interest,
)
from plugin.take_offline_request import (
    TakeOfflineJob,
    TakeOfflineRequest,
    list_map_areas,
    list_source_layers,
)
from tests.featureservice import seed

DEMO = seed.DEMO_SERVICE
POINTS, LINES, POLYGONS, INSPECTIONS = 0, 1, 2, 3
WGS84 = {"wkid": 4326}


def fast_client(credentials=None) -> ArcGISClient:
    return ArcGISClient(credentials, backoff=0.01, poll_interval=0.02, timeout=30, retries=2)


def webmap_task(server, client=None) -> OfflineMapTask:
    return OfflineMapTask(
        portal_url=server.portal_url,
        webmap_item_id=seed.DEMO_WEBMAP_ID,
        client=client or fast_client(),
    )


def service_task(server, *services: str, client=None) -> OfflineMapTask:
    return OfflineMapTask(
        service_urls=[server.service_url(s) for s in services], client=client or fast_client()
    )


def run(task: OfflineMapTask, folder: Path, area=None, **changes):
    params = task.create_default_generate_offline_map_parameters(area)
    for name, value in changes.items():
        setattr(params, name, value)
    return task.generate_offline_map(params, folder).run()


def replicas_on(server, service: str = DEMO) -> list[dict]:
    return fast_client().replicas(server.service_url(service))


def local_features(path: Path, layer_id: int) -> dict[str, dict]:
    """Rows of one geodatabase table, keyed by GlobalID, in Esri JSON shape (dates as ms)."""
    with Geodatabase.open(path) as gdb:
        layer = next(lay for lay in gdb.layers if lay.id == layer_id)
    fields = list(layer.fields)
    columns = [f'"{f.name}"' for f in fields]
    if layer.geometry_column:
        columns.append(f'"{layer.geometry_column}"')
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(f'SELECT {", ".join(columns)} FROM "{layer.table_name}"').fetchall()
    finally:
        conn.close()
    features = {}
    for row in rows:
        attributes = {}
        for f, value in zip(fields, row):
            if f.esri_type == "esriFieldTypeDate" and value is not None:
                value = datetime_text_to_ms(value)
            attributes[f.name] = value
        feature = {"attributes": attributes}
        if layer.geometry_column:
            feature["geometry"] = gpkg_to_esri(
                row[-1], layer.geometry_type, layer.has_z, layer.has_m
            )
        features[attributes[layer.global_id_field]] = feature
    return features


def local_attachments(path: Path, table: str) -> dict[str, tuple]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            f'SELECT GLOBALID, REL_GLOBALID, ATT_NAME, CONTENT_TYPE, DATA FROM "{table}"'
        ).fetchall()
    finally:
        conn.close()
    return {row[0]: (row[1], row[2], row[3], bytes(row[4])) for row in rows}


def without_sr(geometry: dict | None) -> dict | None:
    if geometry is None:
        return None
    return {k: v for k, v in geometry.items() if k != "spatialReference"}


def server_gids(server, layer_id: int, where: str = "1=1", area: dict | None = None) -> set[str]:
    params = {"where": where, "outFields": "GlobalID", "returnGeometry": "false"}
    if area is not None:
        params.update(
            geometry=json.dumps(area),
            geometryType="esriGeometryEnvelope",
            inSR=json.dumps(area["spatialReference"]),
            spatialRel="esriSpatialRelIntersects",
        )
    body = fast_client().get_json(f"{server.service_url(DEMO)}/{layer_id}/query", params)
    return {f["attributes"]["GlobalID"] for f in body["features"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- area of interest (no server needed) -------------------------------------------------------
@pytest.mark.parametrize(
    "area, message",
    [
        ({"x": 1, "y": 2, "spatialReference": WGS84}, "this is a point"),
        ({"paths": [[[0, 0], [1, 1]]], "spatialReference": WGS84}, "this is a polyline"),
        ({"points": [[0, 0]], "spatialReference": WGS84}, "this is a multipoint"),
        ({"curveRings": [[[0, 0], {"c": [[1, 1], [0, 1]]}]], "spatialReference": WGS84}, "curved"),
        ({"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}, "no spatialReference"),
        ({"xmin": 1, "ymin": 0, "xmax": 1, "ymax": 1, "spatialReference": WGS84}, "is empty"),
        ({"xmin": "a", "ymin": 0, "xmax": 1, "ymax": 1, "spatialReference": WGS84}, "not numbers"),
        ({"rings": [[[0, 0], [1, 1]]], "spatialReference": WGS84}, "no valid rings"),
        ({"rings": [], "spatialReference": WGS84}, "no valid rings"),
        ("0,0,1,1", "envelope or polygon"),
    ],
)
def test_unsupported_area_of_interest_is_refused_with_the_reason(area, message):
    with pytest.raises(UnsupportedGeometryError, match=message):
        parse_area_of_interest(area)


def test_envelope_and_polygon_areas_are_accepted():
    envelope = {"xmin": 8.5, "ymin": 47.3, "xmax": 8.6, "ymax": 47.4, "spatialReference": WGS84}
    polygon = {"rings": [[[0, 0], [0, 1], [1, 1], [0, 0]]], "spatialReference": {"wkid": 3857}}
    assert parse_area_of_interest(envelope) == ("esriGeometryEnvelope", envelope)
    assert parse_area_of_interest(polygon) == ("esriGeometryPolygon", polygon)


def test_task_needs_either_a_web_map_or_service_urls():
    with pytest.raises(ValueError):
        OfflineMapTask(client=fast_client())
    with pytest.raises(ServiceError, match="not a feature service URL"):
        OfflineMapTask(service_urls=["https://example.com/arcgis/rest/services/X/MapServer"])


# -- the seeded web map ------------------------------------------------------------------------
def test_web_map_goes_offline_with_every_layer_table_and_attachment(reference_server, tmp_path):
    server = reference_server
    result = run(webmap_task(server), tmp_path / "map")

    offline_map = result.offline_map
    assert offline_map.title == "Demo offline map"
    assert offline_map.update_mode is PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES
    assert offline_map.update_capabilities.supports_sync_with_feature_services
    assert not offline_map.update_capabilities.supports_scheduled_updates_for_features
    assert offline_map.source.webmap_item_id == seed.DEMO_WEBMAP_ID
    assert offline_map.initial_extent["spatialReference"]["wkid"] == 102100
    [entry] = offline_map.geodatabases
    assert entry.file == "Demo.gpkg" and entry.path.is_file()
    assert entry.service_url == server.service_url(DEMO)
    assert not entry.download_only
    assert entry.layer_ids == [POINTS, LINES, POLYGONS] and entry.table_ids == [INSPECTIONS]
    # Web map order is bottom first: Polygons, Lines, Points.
    titles = [layer.title for _, layer in offline_map.layers_in_draw_order()]
    assert titles == ["Polygons", "Lines", "Points", "Inspections"]
    # The demo web map's basemap (a tiled and a vector tile service) goes offline by default.
    assert result.skipped_layers == ()
    assert [(b.title, b.kind) for b in offline_map.basemaps] == [
        ("Demo topographic", "raster"),
        ("Demo streets", "vector"),
    ]
    assert sorted(p.name for p in offline_map.folder.iterdir()) == [
        "Demo.gpkg",
        "basemap",
        MANIFEST_NAME,
    ]

    for layer_id, count in seed.DEMO_COUNTS.items():
        local = local_features(entry.path, layer_id)
        remote = {f["attributes"]["GlobalID"]: f for f in server.query_all(DEMO, layer_id)}
        assert len(local) == count == len(remote)
        assert local.keys() == remote.keys()
        for gid, feature in remote.items():
            mine = local[gid]
            for name, value in feature["attributes"].items():
                if name == "OBJECTID":
                    continue
                assert mine["attributes"][name] == value, (layer_id, gid, name)
            assert without_sr(mine.get("geometry")) == without_sr(feature.get("geometry"))

    attachments = local_attachments(entry.path, "Points__ATTACH")
    remote_attachments = server.attachments(DEMO, POINTS)
    assert len(attachments) == len(remote_attachments) == 4
    for att in remote_attachments:
        assert attachments[att["globalId"]] == (
            att["parentGlobalId"],
            att["name"],
            att["contentType"],
            att["data"],
        )

    with Geodatabase.open(entry.path) as gdb:
        replica = gdb.replica
        assert not gdb.has_pending_edits()
    assert replica.replica_id in {r["replicaID"] for r in replicas_on(server)}
    assert replica.server_gen is not None or replica.layer_gens


def test_special_characters_arrive_unchanged(reference_server, tmp_path):
    result = run(webmap_task(reference_server), tmp_path / "map")
    points = local_features(result.offline_map.geodatabases[0].path, POINTS)
    names = {f["attributes"]["name"] for f in points.values()}
    assert 'Plus + and & "quoted" back\\slash apos\'trophe 100%' in names
    assert "東京タワー" in names and "Здание почты" in names
    assert "Well; DROP TABLE points;--" in names
    notes = {f["attributes"]["notes"] for f in points.values()}
    assert "Note 0: äöü ß € 100% + & \" \\ '" in notes
    dates = {f["attributes"]["observed"] for f in points.values()}
    assert seed.millis(2024, 1, 1, 8, 30) in dates and None in dates


def test_relations_of_inspections_point_at_offline_points(reference_server, tmp_path):
    result = run(webmap_task(reference_server), tmp_path / "map")
    path = result.offline_map.geodatabases[0].path
    points = local_features(path, POINTS)
    inspections = local_features(path, INSPECTIONS)
    parents = {f["attributes"]["PointGlobalID"] for f in inspections.values()}
    assert parents and parents <= points.keys()


def test_qgis_opens_every_table_as_a_valid_layer(reference_server, tmp_path, qgis_app):
    from qgis.core import QgsVectorLayer, QgsWkbTypes

    result = run(webmap_task(reference_server), tmp_path / "map")
    entry = result.offline_map.geodatabases[0]
    with Geodatabase.open(entry.path) as gdb:
        layers = list(gdb.layers)
    assert {lay.id for lay in layers} == set(seed.DEMO_COUNTS)
    for layer in layers:
        qgs = QgsVectorLayer(f"{entry.path}|layername={layer.table_name}", layer.name, "ogr")
        assert qgs.isValid(), layer.table_name
        assert qgs.featureCount() == seed.DEMO_COUNTS[layer.id]
        assert (qgs.geometryType() == QgsWkbTypes.NullGeometry) == layer.is_table
        if not layer.is_table:
            assert qgs.crs().authid() == "EPSG:3857"
    attachments = QgsVectorLayer(f"{entry.path}|layername=Points__ATTACH", "att", "ogr")
    assert attachments.isValid() and attachments.featureCount() == 4


def test_gdal_opens_the_geodatabase_as_a_geopackage(reference_server, tmp_path):
    from osgeo import gdal

    result = run(webmap_task(reference_server), tmp_path / "map")
    path = result.offline_map.geodatabases[0].path
    dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    assert dataset is not None
    assert dataset.GetDriver().ShortName == "GPKG"
    counts = {
        dataset.GetLayer(i).GetName(): dataset.GetLayer(i).GetFeatureCount()
        for i in range(dataset.GetLayerCount())
    }
    assert counts == {
        "Points": 12,
        "Lines": 5,
        "Polygons": 4,
        "Inspections": 8,
        "Points__ATTACH": 4,
    }
    assert seed.DEMO_COUNTS == {0: 12, 1: 5, 2: 4, 3: 8}
    dataset = None


def test_manifest_holds_no_credentials(secured_reference_server, tmp_path):
    server = secured_reference_server
    client = fast_client(
        TokenCredentials(
            server.token_url, "alice", "alice-secret", plain_http_hosts=server.plain_http_hosts
        )
    )
    result = run(webmap_task(server, client), tmp_path / "map")
    text = (result.offline_map.folder / MANIFEST_NAME).read_text(encoding="utf-8")
    assert "alice" not in text and "token" not in text.lower()
    assert result.offline_map.geodatabases[0].layer_ids == [POINTS, LINES, POLYGONS]


# -- filters -----------------------------------------------------------------------------------
def test_area_of_interest_limits_the_features_taken_offline(reference_server, tmp_path):
    server = reference_server
    xmin, ymin = seed.BASE_LON - 0.001, seed.BASE_LAT - 0.001
    area = {
        "xmin": xmin,
        "ymin": ymin,
        "xmax": seed.BASE_LON + 0.005,
        "ymax": seed.BASE_LAT + 0.001,
    }
    area["spatialReference"] = WGS84
    result = run(webmap_task(server), tmp_path / "map", area)

    path = result.offline_map.geodatabases[0].path
    points = local_features(path, POINTS)
    expected = server_gids(server, POINTS, area=area)
    assert points.keys() == expected
    assert {seed.guid(DEMO, 0, 0), seed.guid(DEMO, 0, 1)} == expected
    assert local_features(path, LINES).keys() == server_gids(server, LINES, area=area)
    assert len(local_features(path, LINES)) < seed.DEMO_COUNTS[LINES]
    # Tables have no geometry: every inspection comes along.
    assert len(local_features(path, INSPECTIONS)) == seed.DEMO_COUNTS[INSPECTIONS]
    # Only the attachments of the points inside the area.
    parents = {att[0] for att in local_attachments(path, "Points__ATTACH").values()}
    assert parents == {seed.guid(DEMO, 0, 0), seed.guid(DEMO, 0, 1)}
    assert result.offline_map.area_of_interest == area
    assert result.offline_map.initial_extent == area


def test_polygon_area_of_interest_is_honoured(reference_server, tmp_path):
    server = reference_server
    x0, y0 = seed.mercator(seed.BASE_LON - 0.001, seed.BASE_LAT - 0.001)
    x1, y1 = seed.mercator(seed.BASE_LON + 0.001, seed.BASE_LAT + 0.001)
    area = {
        "rings": [[[x0, y0], [x0, y1], [x1, y1], [x1, y0], [x0, y0]]],
        "spatialReference": {"wkid": 102100},
    }
    result = run(service_task(server, DEMO), tmp_path / "map", area)
    points = local_features(result.offline_map.geodatabases[0].path, POINTS)
    assert set(points) == {seed.guid(DEMO, 0, 0)}
    assert result.offline_map.initial_extent == {
        "xmin": x0,
        "ymin": y0,
        "xmax": x1,
        "ymax": y1,
        "spatialReference": {"wkid": 102100},
    }


def test_layer_query_where_clause_limits_the_rows(reference_server, tmp_path):
    server = reference_server
    task = webmap_task(server)
    params = task.create_default_generate_offline_map_parameters(None)
    params.set_layer_query(server.service_url(DEMO), POINTS, LayerQuery(where="category = 2"))
    params.layer_queries[layer_url(server.service_url(DEMO), LINES)] = LayerQuery(
        query_option="none"
    )
    result = task.generate_offline_map(params, tmp_path / "map").run()

    path = result.offline_map.geodatabases[0].path
    points = local_features(path, POINTS)
    assert points.keys() == server_gids(server, POINTS, where="category = 2")
    assert len(points) == 3
    assert {f["attributes"]["category"] for f in points.values()} == {2}
    assert local_features(path, LINES) == {}
    assert len(local_features(path, POLYGONS)) == seed.DEMO_COUNTS[POLYGONS]


def test_schema_only_for_editable_layers_gives_empty_tables(reference_server, tmp_path):
    result = run(
        webmap_task(reference_server), tmp_path / "map", return_schema_only_for_editable_layers=True
    )
    path = result.offline_map.geodatabases[0].path
    for layer_id in seed.DEMO_COUNTS:
        assert local_features(path, layer_id) == {}


def test_without_attachments_the_attachment_table_stays_empty(reference_server, tmp_path):
    result = run(webmap_task(reference_server), tmp_path / "map", include_attachments=False)
    path = result.offline_map.geodatabases[0].path
    assert local_attachments(path, "Points__ATTACH") == {}
    assert len(local_features(path, POINTS)) == seed.DEMO_COUNTS[POINTS]


@pytest.mark.parametrize("sync_model", [SyncModel.PER_REPLICA, SyncModel.PER_LAYER])
def test_requested_sync_model_is_used(reference_server, tmp_path, sync_model):
    result = run(service_task(reference_server, DEMO), tmp_path / "map", sync_model=sync_model)
    with Geodatabase.open(result.offline_map.geodatabases[0].path) as gdb:
        assert gdb.replica.sync_model is sync_model


def test_service_urls_take_every_layer_and_table_offline(reference_server, tmp_path):
    server = reference_server
    result = run(service_task(server, DEMO, seed.READONLY_SERVICE), tmp_path / "map")
    demo, readonly = result.offline_map.geodatabases
    assert (demo.file, readonly.file) == ("Demo.gpkg", "ReadOnly.gpkg")
    assert demo.layer_ids == [POINTS, LINES, POLYGONS] and demo.table_ids == [INSPECTIONS]
    assert result.offline_map.title == "Demo, ReadOnly"
    # Without an area or a web map, the map opens where the first service does.
    service_extent = fast_client().service_info(server.service_url(DEMO))["initialExtent"]
    assert result.offline_map.initial_extent == service_extent
    assert result.offline_map.source.service_urls == (
        server.service_url(DEMO),
        server.service_url(seed.READONLY_SERVICE),
    )
    assert len(local_features(readonly.path, 0)) == seed.DEMO_COUNTS[POINTS]


def test_layer_urls_take_only_those_layers_offline(reference_server, tmp_path):
    server = reference_server
    demo = server.service_url(DEMO)
    task = OfflineMapTask(
        service_urls=[f"{demo}/2", f"{demo}/3/", f"{demo}/9"], client=fast_client()
    )
    result = run(task, tmp_path / "map")
    [entry] = result.offline_map.geodatabases
    assert entry.service_url == demo
    assert entry.layer_ids == [POLYGONS] and entry.table_ids == [INSPECTIONS]
    assert [(s.url, s.reason) for s in result.skipped_layers] == [
        (f"{demo}/9", "the service has no such layer")
    ]
    with Geodatabase.open(entry.path) as gdb:
        assert {lay.id for lay in gdb.layers} == {POLYGONS, INSPECTIONS}


def test_download_only_service_is_taken_offline_and_marked(reference_server, tmp_path):
    result = run(service_task(reference_server, seed.READONLY_SERVICE), tmp_path / "map")
    [entry] = result.offline_map.geodatabases
    assert entry.download_only
    assert len(local_features(entry.path, 0)) == seed.DEMO_COUNTS[POINTS]
    assert OfflineMap.open(tmp_path / "map").geodatabases[0].download_only


# -- refusals ----------------------------------------------------------------------------------
def test_service_without_sync_is_refused_and_nothing_is_left(reference_server, tmp_path):
    server = reference_server
    task = service_task(server, DEMO, seed.NOSYNC_SERVICE)
    with pytest.raises(NotSyncEnabledError) as caught:
        run(task, tmp_path / "map")
    assert str(caught.value) == (
        f"The service {server.service_url(seed.NOSYNC_SERVICE)} does not allow sync: its "
        "capabilities are Query,Create,Update,Delete,Editing."
    )
    assert not (tmp_path / "map").exists()
    assert replicas_on(server) == []


def edit_layer_definition(server, layer_id: int, edit) -> None:
    # The reference service has no admin call for this: edit its stored layer definition.
    with server.app.store.write() as tx:
        sql = "SELECT definition FROM layers WHERE service = ? AND layer_id = ?"
        info = json.loads(tx.conn.execute(sql, (DEMO, layer_id)).fetchone()[0])
        edit(info)
        tx.conn.execute(
            "UPDATE layers SET definition = ? WHERE service = ? AND layer_id = ?",
            (json.dumps(info), DEMO, layer_id),
        )


def test_layer_without_global_ids_is_refused(reference_server, tmp_path):
    server = reference_server

    def drop_global_id(info):
        info["fields"] = [f for f in info["fields"] if f["type"] != "esriFieldTypeGlobalID"]
        info["globalIdField"] = ""

    edit_layer_definition(server, LINES, drop_global_id)
    with pytest.raises(NotSyncEnabledError, match="'Lines' .* has no GlobalID field"):
        run(service_task(server, DEMO), tmp_path / "map")
    assert replicas_on(server) == []
    assert not (tmp_path / "map").exists()


def test_layer_with_unsupported_geometry_type_is_refused(reference_server, tmp_path):
    server = reference_server
    edit_layer_definition(
        server, POLYGONS, lambda info: info.update(geometryType="esriGeometryMultiPatch")
    )
    with pytest.raises(UnsupportedGeometryError, match="'Polygons' .* esriGeometryMultiPatch"):
        run(service_task(server, DEMO), tmp_path / "map")
    assert replicas_on(server) == []
    assert not (tmp_path / "map").exists()


def test_unreachable_service_is_refused_as_a_network_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/arcgis/rest/services/Gone/FeatureServer"
    task = OfflineMapTask(service_urls=[url], client=fast_client())
    with pytest.raises(NetworkError):
        run(task, tmp_path / "map")
    assert not (tmp_path / "map").exists()


def test_wrong_password_is_refused(secured_reference_server, tmp_path):
    server = secured_reference_server
    client = fast_client(
        TokenCredentials(
            server.token_url, "alice", "wrong", plain_http_hosts=server.plain_http_hosts
        )
    )
    with pytest.raises(AuthenticationError) as caught:
        run(service_task(server, DEMO, client=client), tmp_path / "map")
    assert "wrong" not in str(caught.value)
    assert not (tmp_path / "map").exists()


def test_missing_credentials_are_refused(secured_reference_server, tmp_path):
    with pytest.raises(AuthenticationError):
        run(webmap_task(secured_reference_server), tmp_path / "map")


def test_non_empty_target_folder_is_refused_and_left_alone(reference_server, tmp_path):
    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OfflineMapSyncError, match="is not empty"):
        run(webmap_task(reference_server), folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert replicas_on(reference_server) == []


def test_empty_existing_folder_is_used_and_kept_on_failure(reference_server, tmp_path):
    folder = tmp_path / "map"
    folder.mkdir()
    reference_server.inject_fault("createReplica", "http500")
    with pytest.raises(ServiceError):
        run(webmap_task(reference_server), folder)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_unsupported_area_is_refused_before_anything_is_made(reference_server, tmp_path):
    task = webmap_task(reference_server)
    point = {"x": 1, "y": 2, "spatialReference": WGS84}
    with pytest.raises(UnsupportedGeometryError):
        task.create_default_generate_offline_map_parameters(point)
    params = task.create_default_generate_offline_map_parameters(None)
    params.area_of_interest = point
    with pytest.raises(UnsupportedGeometryError):
        task.generate_offline_map(params, tmp_path / "map").run()
    assert not (tmp_path / "map").exists()


# -- cancellation and failures -----------------------------------------------------------------
def cancel_when(job, predicate) -> None:
    job.add_progress_listener(lambda percent, message: job.cancel() if predicate(message) else None)


def test_cancel_while_storing_leaves_nothing_and_unregisters_the_replica(
    reference_server, tmp_path
):
    task = webmap_task(reference_server)
    params = task.create_default_generate_offline_map_parameters(None)
    job = task.generate_offline_map(params, tmp_path / "map")
    cancel_when(job, lambda message: message.startswith("Storing"))
    with pytest.raises(CancelledError):
        job.run()
    assert job.error is not None
    assert not (tmp_path / "map").exists()
    assert replicas_on(reference_server) == []


def test_cancel_while_the_server_job_runs_unregisters_the_replica(reference_server, tmp_path):
    server = reference_server
    server.inject_fault("createReplica", "slow_job", polls=50)
    task = service_task(server, DEMO)
    job = task.generate_offline_map(
        task.create_default_generate_offline_map_parameters(None), tmp_path / "map"
    )
    cancel_when(job, lambda message: message.startswith("Server job"))
    with pytest.raises(CancelledError):
        job.run()
    assert not (tmp_path / "map").exists()
    assert replicas_on(server) == []


def test_cancel_from_another_thread_stops_a_started_job(reference_server, tmp_path):
    server = reference_server
    server.inject_fault("createReplica", "slow_job", polls=1000)
    task = service_task(server, DEMO)
    job = task.generate_offline_map(
        task.create_default_generate_offline_map_parameters(None), tmp_path / "map"
    )
    job.start()
    assert not job.wait(0.5)
    job.cancel()
    assert job.wait(30)
    assert isinstance(job.error, CancelledError)
    assert not (tmp_path / "map").exists()
    assert replicas_on(server) == []


def test_failure_of_the_second_service_undoes_the_first(reference_server, tmp_path):
    server = reference_server
    task = service_task(server, DEMO, seed.READONLY_SERVICE)
    job = task.generate_offline_map(
        task.create_default_generate_offline_map_parameters(None), tmp_path / "map"
    )

    def break_second(percent, message):
        if message == "Requesting the data of ReadOnly":
            server.inject_fault("createReplica", "http500")

    job.add_progress_listener(break_second)
    with pytest.raises(ServiceError):
        job.run()
    assert not (tmp_path / "map").exists()
    assert replicas_on(server, DEMO) == []
    assert replicas_on(server, seed.READONLY_SERVICE) == []


def test_replica_created_but_answer_lost_is_unregistered_by_name(reference_server, tmp_path):
    server = reference_server
    server.inject_fault("createReplica", "drop_after_commit")
    with pytest.raises(NetworkError):
        run(service_task(server, DEMO), tmp_path / "map")
    assert not (tmp_path / "map").exists()
    assert replicas_on(server) == []


def test_progress_rises_to_100_with_messages(reference_server, tmp_path):
    task = webmap_task(reference_server)
    job = task.generate_offline_map(
        task.create_default_generate_offline_map_parameters(None), tmp_path / "map"
    )
    seen: list[int] = []
    job.add_progress_listener(lambda percent, message: seen.append(percent))
    job.run()
    assert seen == sorted(seen) and seen[-1] == 100 == job.progress
    assert any(m.startswith("Storing the data of Demo") for m in job.messages)


# -- web maps beyond the seed ------------------------------------------------------------------
FIELD_MAP_ID = "f1e1d0000000000000000000000000aa"


def save_item(server, item_id: str, item: dict, data: dict | None) -> None:
    # The reference portal has no "add item" call: store the item as the seed does.
    with server.app.store.write() as tx:
        tx.save_item(item_id, {"id": item_id, "owner": "seed", **item}, data)


def field_map_data() -> dict:
    return {
        "operationalLayers": [
            {
                "id": "hillshade",
                "title": "Hillshade",
                "url": "{services}/Hillshade/MapServer",
                "layerType": "ArcGISMapServiceLayer",
            },
            {
                "id": "survey",
                "title": "Survey",
                "layerType": "GroupLayer",
                "visibility": False,
                "layers": [
                    {
                        "id": "lines",
                        "title": "Roads & paths",
                        "url": "{services}/Demo/FeatureServer/1",
                        "layerType": "ArcGISFeatureLayer",
                    },
                    {
                        "id": "fountains",
                        "title": "Fountains",
                        "url": "{services}/Demo/FeatureServer/0",
                        "layerType": "ArcGISFeatureLayer",
                        "opacity": 0.5,
                        "layerDefinition": {"definitionExpression": "category = 1"},
                    },
                ],
            },
            {
                "id": "sketch",
                "title": "Sketch",
                "layerType": "ArcGISFeatureLayer",
                "featureCollection": {"layers": []},
            },
            {
                "id": "readonly",
                "title": "Read-only points",
                "url": "{services}/ReadOnly/FeatureServer/0/",
                "layerType": "ArcGISFeatureLayer",
            },
        ],
        "tables": [],
        "baseMap": {
            "baseMapLayers": [{"id": "osm", "title": "OpenStreetMap", "layerType": "OpenStreetMap"}]
        },
        "spatialReference": seed.SR,
    }


def test_web_map_groups_filters_and_other_layer_kinds(reference_server, tmp_path):
    server = reference_server
    save_item(server, FIELD_MAP_ID, {"title": "Field map", "type": "Web Map"}, field_map_data())
    task = OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=FIELD_MAP_ID, client=fast_client()
    )
    result = run(task, tmp_path / "map")

    offline_map = result.offline_map
    assert offline_map.title == "Field map"
    assert [e.file for e in offline_map.geodatabases] == ["Demo.gpkg", "ReadOnly.gpkg"]
    demo, readonly = offline_map.geodatabases
    assert demo.layer_ids == [POINTS, LINES] and demo.table_ids == []
    assert readonly.download_only and not demo.download_only
    by_title = {layer.title: layer for _, layer in offline_map.layers_in_draw_order()}
    assert list(by_title) == ["Roads & paths", "Fountains", "Read-only points"]
    # A hidden group hides its layers; opacity and filters come from the web map.
    assert not by_title["Roads & paths"].visible and not by_title["Fountains"].visible
    assert by_title["Read-only points"].visible
    assert by_title["Fountains"].opacity == 0.5
    assert by_title["Fountains"].definition_expression == "category = 1"
    assert by_title["Fountains"].webmap_layer_id == "fountains"
    assert {(s.title, s.reason.split(" ")[0]) for s in result.skipped_layers} == {
        ("Hillshade", "only"),
        ("Sketch", "it"),
        ("OpenStreetMap", "basemap"),
    }
    assert result.has_errors
    # The definition expression limits the rows taken offline.
    points = local_features(demo.path, POINTS)
    assert points.keys() == server_gids(server, POINTS, where="category = 1")
    assert len(points) == 3
    assert len(local_features(demo.path, LINES)) == seed.DEMO_COUNTS[LINES]


def test_listed_source_layers_are_what_goes_offline(reference_server, tmp_path):
    # The dialog lists layers with the same reading of the web map (groups, duplicates,
    # non-feature layers) and of layer URLs as the job that takes them offline.
    server = reference_server
    save_item(server, FIELD_MAP_ID, {"title": "Field map", "type": "Web Map"}, field_map_data())
    webmap = TakeOfflineRequest(
        tmp_path / "listed", portal_url=server.portal_url, webmap_item_id=FIELD_MAP_ID
    )
    layer_urls = TakeOfflineRequest(
        tmp_path / "listed",
        service_urls=[f"{server.service_url(DEMO)}/{LINES}/", server.service_url(DEMO) + "/0"],
    )
    for number, request in enumerate((webmap, layer_urls)):
        listed = {(s.service_url, s.layer_id) for s in list_source_layers(request)}
        task = OfflineMapTask(
            portal_url=request.portal_url,
            webmap_item_id=request.webmap_item_id,
            service_urls=request.service_urls or None,
            client=fast_client(),
        )
        offline_map = run(task, tmp_path / f"map{number}").offline_map
        taken = {(e.service_url, layer.id) for e in offline_map.geodatabases for layer in e.layers}
        assert listed == taken and listed


def test_a_request_naming_a_web_map_and_services_is_refused_by_the_listing_and_the_job_alike(
    reference_server, tmp_path
):
    # The dialog's layer list once read the web map of such a request while the job refused
    # it: the user would pick layers from a list that could never go offline.
    server = reference_server
    save_item(server, FIELD_MAP_ID, {"title": "Field map", "type": "Web Map"}, field_map_data())
    both = TakeOfflineRequest(
        tmp_path / "both",
        portal_url=server.portal_url,
        webmap_item_id=FIELD_MAP_ID,
        service_urls=[server.service_url(DEMO)],
    )
    with pytest.raises(ValueError, match="Give either") as listing:
        list_source_layers(both)
    with pytest.raises(ValueError, match="Give either") as areas:
        list_map_areas(both)
    with pytest.raises(ValueError, match="Give either") as job:
        TakeOfflineJob(both).run()
    assert str(listing.value) == str(areas.value) == str(job.value)
    assert not (tmp_path / "both").exists() and replicas_on(server) == []


def test_basemap_layers_left_online_are_not_errors(reference_server, tmp_path):
    server = reference_server
    data = field_map_data()
    data["operationalLayers"] = [data["operationalLayers"][-1]]
    save_item(server, FIELD_MAP_ID, {"title": "Field map", "type": "Web Map"}, data)
    task = OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=FIELD_MAP_ID, client=fast_client()
    )
    result = run(task, tmp_path / "map")
    assert [s.title for s in result.skipped_layers] == ["OpenStreetMap"]
    assert not result.has_errors


def test_definition_expression_filter_can_be_turned_off(reference_server, tmp_path):
    server = reference_server
    save_item(server, FIELD_MAP_ID, {"title": "Field map", "type": "Web Map"}, field_map_data())
    task = OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=FIELD_MAP_ID, client=fast_client()
    )
    result = run(task, tmp_path / "map", definition_expression_filter_enabled=False)
    points = local_features(result.offline_map.geodatabases[0].path, POINTS)
    assert len(points) == seed.DEMO_COUNTS[POINTS]


def test_portal_item_that_is_not_a_web_map_is_refused(reference_server, tmp_path):
    server = reference_server
    save_item(server, FIELD_MAP_ID, {"title": "A service", "type": "Feature Service"}, None)
    task = OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=FIELD_MAP_ID, client=fast_client()
    )
    with pytest.raises(ServiceError, match="is a 'Feature Service', not a web map"):
        run(task, tmp_path / "map")


def test_web_map_without_feature_layers_is_refused(reference_server, tmp_path):
    server = reference_server
    data = field_map_data()
    data["operationalLayers"] = data["operationalLayers"][:1]
    save_item(server, FIELD_MAP_ID, {"title": "Just a basemap", "type": "Web Map"}, data)
    task = OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=FIELD_MAP_ID, client=fast_client()
    )
    with pytest.raises(ServiceError, match="no feature service layers"):
        run(task, tmp_path / "map")
    assert not (tmp_path / "map").exists()


# -- the offline map's geodatabases ------------------------------------------------------------
def test_local_edit_counts_report_edits_made_after_taking_offline(reference_server, tmp_path):
    from plugin.core.gpkg_connection import connect

    result = run(webmap_task(reference_server), tmp_path / "map")
    offline_map = OfflineMap.open(result.offline_map.folder)
    assert not offline_map.has_local_edits()
    counts = offline_map.local_edit_counts()
    assert set(counts) == {"Demo.gpkg"}
    assert all(not any(c.values()) for c in counts["Demo.gpkg"].values())

    conn = connect(str(offline_map.geodatabases[0].path))
    try:
        conn.execute(
            'UPDATE "Points" SET name = ? WHERE GlobalID = ?', ("Edited", seed.guid(DEMO, 0, 2))
        )
        conn.execute('DELETE FROM "Lines" WHERE GlobalID = ?', (seed.guid(DEMO, 1, 0),))
    finally:
        conn.close()

    assert offline_map.has_local_edits()
    counts = offline_map.local_edit_counts()["Demo.gpkg"]
    assert counts[POINTS]["updates"] == 1 and counts[POINTS]["adds"] == 0
    assert counts[LINES]["deletes"] == 1
    assert not any(counts[POLYGONS].values())


def test_opened_geodatabase_holds_the_replica_of_its_service(reference_server, tmp_path):
    result = run(webmap_task(reference_server), tmp_path / "map")
    offline_map = result.offline_map
    [entry] = offline_map.geodatabases
    with offline_map.open_geodatabase(entry) as gdb:
        assert gdb.replica.service_url == entry.service_url
        assert {lay.id for lay in gdb.layers} == set(entry.layer_ids + entry.table_ids)


def test_failed_result_download_leaves_nothing_and_unregisters_the_replica(
    reference_server, tmp_path
):
    server = reference_server
    # More faults than the client's retries: every download of the result fails.
    server.inject_fault("result", "http502", count=10)
    with pytest.raises(ServiceError):
        run(webmap_task(server), tmp_path / "map")
    assert not (tmp_path / "map").exists()
    assert replicas_on(server) == []
