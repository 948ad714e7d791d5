"""Taking a web map's basemap offline with the map, against the reference services: exported
tile packages and tiles fetched one by one, into GeoPackage tiles and MBTiles that GDAL opens;
the tile limit, resume, cancel, the online/local/none choices, and removal."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from osgeo import gdal, ogr

from plugin.core.basemap import BasemapOptions, TileLimitError, estimate_basemap
from plugin.core.errors import CancelledError, NetworkError
from plugin.core.offline_map import MANIFEST_NAME, OfflineMap
from plugin.core.removal import RemovalParameters, remove_offline_map
from plugin.core.rest import TokenCredentials
from plugin.core.take_offline import OfflineMapTask
from plugin.core.tile_scheme import mercator_extent
from tests.featureservice import seed
from tests.preplanned_helpers import whole_area
from tests.test_basemap_files import TILE_INFO, png
from tests.test_take_offline import fast_client, run
from tests.tile_package_writer import write_tile_package

DEMO = seed.DEMO_SERVICE


def service_task(server) -> OfflineMapTask:
    return OfflineMapTask(service_urls=[server.service_url(DEMO)], client=fast_client())


def gdalinfo(path: Path) -> dict:
    out = subprocess.run(
        ["gdalinfo", "-json", str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_a_local_tile_package_is_converted_into_the_map_and_removed_with_it(
    reference_server, tmp_path
):
    tiles = {(z, 0, 0): png(z, 0, 0) for z in range(3)} | {(3, 2, 4): png(3, 2, 4)}
    package = write_tile_package(tmp_path / "mine.tpkx", {"tileInfo": TILE_INFO}, tiles)
    options = BasemapOptions(mode="local", local_path=str(package))
    offline_map = run(service_task(reference_server), tmp_path / "map", basemap=options).offline_map

    (entry,) = OfflineMap.open(offline_map.folder).basemaps
    assert (entry.kind, entry.format, entry.path) == ("raster", "gpkg", "basemap/mine.gpkg")
    path = offline_map.basemap_path(entry)
    info = gdalinfo(path)
    assert info["driverShortName"] == "GPKG"
    assert info["geoTransform"][1] == pytest.approx(TILE_INFO["lods"][3]["resolution"])

    result = remove_offline_map(offline_map.folder, RemovalParameters())
    assert not offline_map.folder.exists() and path in result.removed
    assert package.is_file()  # the user's own file stays


def test_removal_takes_the_statistics_gdal_wrote_beside_the_basemap(reference_server, tmp_path):
    # QGIS 3.40's GDAL keeps statistics of a drawn GeoPackage tile set in ".aux.xml" files
    # beside it; removing the map must not leave the folder behind for them.
    tiles = {(z, 0, 0): png(z, 0, 0) for z in range(3)}
    package = write_tile_package(tmp_path / "mine.tpkx", {"tileInfo": TILE_INFO}, tiles)
    options = BasemapOptions(mode="local", local_path=str(package))
    offline_map = run(service_task(reference_server), tmp_path / "map", basemap=options).offline_map
    path = offline_map.basemap_path(offline_map.basemaps[0])
    sidecars = [Path(f"{path}.aux.xml"), Path(f"{path} - zoom_level=2.aux.xml")]
    for sidecar in sidecars:
        sidecar.write_text("<PAMDataset/>")
    stranger = path.parent / "notes.txt"
    stranger.write_text("the user's own file")

    result = remove_offline_map(offline_map.folder, RemovalParameters())

    assert set(sidecars) <= set(result.removed)
    assert not any(s.exists() for s in sidecars) and not path.exists()
    assert stranger.is_file()  # not the map's: kept, and the folder with it


@pytest.mark.parametrize("level", [None, 25])
def test_a_local_tile_package_without_usable_tiles_is_refused(reference_server, tmp_path, level):
    from plugin.core.tile_package import TilePackageError

    # No bundle at all, or tiles only at a level its tiling scheme does not have.
    tiles = {} if level is None else {(level, 0, 0): png(level, 0, 0)}
    package = write_tile_package(tmp_path / "empty.tpkx", {"tileInfo": TILE_INFO}, tiles)
    options = BasemapOptions(mode="local", local_path=str(package))
    with pytest.raises(TilePackageError, match="holds no tiles"):
        run(service_task(reference_server), tmp_path / "map", basemap=options)
    assert not (tmp_path / "map").exists()
    assert package.is_file()


def test_levels_of_a_local_tile_package_the_map_cannot_use_are_not_read(reference_server, tmp_path):
    import struct
    import zipfile

    tiles = {(z, 0, 0): png(z, 0, 0) for z in range(3)}
    package = write_tile_package(tmp_path / "mine.tpkx", {"tileInfo": TILE_INFO}, tiles)
    # A level beyond the package's own tiling scheme, whose bundle is damaged: read, it would
    # refuse the whole package.
    with zipfile.ZipFile(package, "a") as archive:
        index = bytearray(128 * 128 * 8)
        struct.pack_into("<Q", index, 0, (64 + len(index) + 10) | (5000 << 40))
        archive.writestr("tile/L25/R0000C0000.bundle", bytes(64) + bytes(index) + b"0123456789")
    options = BasemapOptions(mode="local", local_path=str(package))

    offline_map = run(service_task(reference_server), tmp_path / "map", basemap=options).offline_map

    (entry,) = offline_map.basemaps
    info = gdalinfo(offline_map.basemap_path(entry))
    assert info["geoTransform"][1] == pytest.approx(TILE_INFO["lods"][2]["resolution"])


def test_a_local_geopackage_is_referred_to_and_never_deleted(reference_server, tmp_path):
    mine = tmp_path / "own basemap.gpkg"
    gdal.GetDriverByName("GPKG").Create(str(mine), 256, 256, 3).FlushCache()
    options = BasemapOptions(mode="local", local_path=str(mine))
    offline_map = run(service_task(reference_server), tmp_path / "map", basemap=options).offline_map
    (entry,) = offline_map.basemaps
    assert (entry.kind, entry.path, entry.title) == ("local", str(mine), "own basemap")
    assert not (offline_map.folder / "basemap").exists()
    remove_offline_map(offline_map.folder, RemovalParameters())
    assert mine.is_file() and not offline_map.folder.exists()


def test_a_missing_local_basemap_file_is_refused_before_anything_is_made(
    reference_server, tmp_path
):
    options = BasemapOptions(mode="local", local_path=str(tmp_path / "gone.mbtiles"))
    with pytest.raises(Exception, match="does not exist"):
        run(service_task(reference_server), tmp_path / "map", basemap=options)
    assert not (tmp_path / "map").exists()
    assert fast_client().replicas(reference_server.service_url(DEMO)) == []


def test_manifest_written_by_take_offline_lists_no_basemap_for_services(reference_server, tmp_path):
    offline_map = run(service_task(reference_server), tmp_path / "map").offline_map
    assert offline_map.basemaps == []
    assert "basemaps" not in json.loads((offline_map.folder / MANIFEST_NAME).read_text())


# -- from the reference basemap services ------------------------------------------------------------
BASEMAP_MAP_ID = "b45e0a1c2d3e4f5a6b7c8d9e0f1a2b3c"


def webmap_task(server, webmap_id: str = seed.DEMO_WEBMAP_ID) -> OfflineMapTask:
    return OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=webmap_id, client=fast_client()
    )


def save_webmap_with_basemap(server, layers: list[dict], client=None) -> str:
    """The demo web map with another basemap; its item id."""
    data = demo_webmap_data(server, client)
    data["baseMap"] = {"title": "Basemap", "baseMapLayers": layers}
    with server.app.store.write() as tx:
        tx.save_item(
            BASEMAP_MAP_ID,
            {"id": BASEMAP_MAP_ID, "owner": "seed", "title": "Basemap map", "type": "Web Map"},
            data,
        )
    return BASEMAP_MAP_ID


def demo_webmap_data(server, client=None) -> dict:
    client = client or fast_client()
    return json.loads(json.dumps(client.portal_item_data(server.portal_url, seed.DEMO_WEBMAP_ID)))


def topo_layer(service: str = seed.BASEMAP_NO_EXPORT_SERVICE) -> dict:
    return {
        "id": "topo",
        "title": "Demo topographic",
        "layerType": "ArcGISTiledMapServiceLayer",
        "url": "{services}/" + service + "/MapServer",
    }


def tile_count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def area_of(task: OfflineMapTask) -> dict:
    _, data = task.webmap()
    return data["initialState"]["viewpoint"]["targetGeometry"]


def test_web_map_basemap_is_exported_into_files_gdal_and_ogr_open(reference_server, tmp_path):
    server = reference_server
    task = webmap_task(server)
    estimate = estimate_basemap(task.client, task.webmap()[1], area_of(task), BasemapOptions())
    assert [(e.title, e.kind, e.export_allowed) for e in estimate.layers] == [
        ("Demo topographic", "raster", True),
        ("Demo streets", "vector", True),
    ]
    assert estimate.bytes > 0 and not estimate.over_limit(100_000) and estimate.over_limit(10)
    server.reset_stats()

    result = run(task, tmp_path / "map")
    offline_map = OfflineMap.open(result.offline_map.folder)
    topo, streets = offline_map.basemaps
    assert (topo.kind, topo.format, topo.path, topo.style) == (
        "raster",
        "gpkg",
        "basemap/Demo_topographic.gpkg",
        None,
    )
    assert (streets.kind, streets.format, streets.path, streets.style) == (
        "vector",
        "mbtiles",
        "basemap/Demo_streets.mbtiles",
        "basemap/Demo_streets.style.json",
    )
    assert (topo.min_level, topo.max_level) == (0, 16)
    assert topo.source_url.endswith("/DemoBasemap/MapServer")
    # Exported as packages: no tile was fetched one by one.
    assert server.stats()["tiles"] == 0
    # As many tiles as estimated.
    topo_path, streets_path = (offline_map.basemap_path(b) for b in (topo, streets))
    assert tile_count(topo_path, "basemap") == estimate.layers[0].tiles
    assert tile_count(streets_path, "tiles") == estimate.layers[1].tiles

    info = gdalinfo(topo_path)
    assert info["driverShortName"] == "GPKG"
    assert info["geoTransform"][1] == pytest.approx(156543.03392800014 / 2**16, rel=1e-6)
    xmin, ymin, xmax, ymax = mercator_extent(area_of(task))
    corners = info["cornerCoordinates"]
    assert corners["upperLeft"][0] <= xmin and corners["upperLeft"][1] >= ymax
    assert corners["lowerRight"][0] >= xmax and corners["lowerRight"][1] <= ymin
    world = gdal.OpenEx(str(topo_path), open_options=["ZOOM_LEVEL=0"])
    assert world.GetGeoTransform()[1] == pytest.approx(156543.03392800014, rel=1e-6)
    world = None

    vector = ogr.Open(str(streets_path))
    assert {vector.GetLayer(i).GetName() for i in range(vector.GetLayerCount())} >= {
        "land",
        "roads",
        "places",
    }
    places = vector.GetLayerByName("places")
    assert any(feature.GetField("name") for feature in places)
    vector = None
    style = json.loads((offline_map.folder / streets.style).read_text())
    assert list(style["sources"].values()) == [
        {"type": "vector", "url": "mbtiles://Demo_streets.mbtiles"}
    ]
    assert "http" not in json.dumps(style) and style["layers"]

    removed = remove_offline_map(offline_map.folder, RemovalParameters())
    assert not offline_map.folder.exists() and topo_path in removed.removed


def test_a_service_that_does_not_allow_export_is_fetched_tile_by_tile(reference_server, tmp_path):
    server = reference_server
    task = webmap_task(server, save_webmap_with_basemap(server, [topo_layer()]))
    estimate = estimate_basemap(task.client, task.webmap()[1], area_of(task), BasemapOptions())
    assert [(e.kind, e.export_allowed) for e in estimate.layers] == [("raster", False)]
    server.reset_stats()
    offline_map = run(task, tmp_path / "map").offline_map
    (topo,) = offline_map.basemaps
    path = offline_map.basemap_path(topo)
    assert tile_count(path, "basemap") == estimate.tiles == server.stats()["tiles"]
    assert gdalinfo(path)["driverShortName"] == "GPKG"


def test_vector_tiles_are_fetched_when_the_export_job_is_refused(reference_server, tmp_path):
    server = reference_server
    streets = seed.DEMO_BASEMAP["baseMapLayers"][1]
    task = webmap_task(server, save_webmap_with_basemap(server, [streets]))
    estimate = estimate_basemap(task.client, task.webmap()[1], area_of(task), BasemapOptions())
    server.inject_fault("exportTiles", "json_error", message="Export is switched off here")
    server.reset_stats()
    offline_map = run(task, tmp_path / "map").offline_map
    (entry,) = offline_map.basemaps
    path = offline_map.basemap_path(entry)
    assert tile_count(path, "tiles") == estimate.tiles == server.stats()["tiles"]
    assert ogr.Open(str(path)).GetLayerByName("roads") is not None
    assert (offline_map.folder / entry.style).is_file()


def test_more_tiles_than_the_limit_are_refused_before_anything_is_downloaded(
    reference_server, tmp_path
):
    server = reference_server
    server.reset_stats()
    with pytest.raises(TileLimitError, match="more than the limit of 10") as raised:
        run(webmap_task(server), tmp_path / "map", basemap=BasemapOptions(tile_limit=10))
    assert "Demo topographic" in str(raised.value) and "keep the basemap online" in str(
        raised.value
    )
    assert not (tmp_path / "map").exists()
    assert fast_client().replicas(server.service_url(DEMO)) == []
    assert server.stats()["tiles"] == 0


def test_an_interrupted_download_continues_without_fetching_stored_tiles(
    reference_server, tmp_path
):
    server = reference_server
    task = webmap_task(server, save_webmap_with_basemap(server, [topo_layer()]))
    total = estimate_basemap(task.client, task.webmap()[1], area_of(task), BasemapOptions()).tiles
    folder = tmp_path / "map"

    def drop_later(percent: int, message: str) -> None:
        # After some levels are stored the connection drops for good (more than the retries).
        if " of " in message and int(message.split(": ")[1].split(" of ")[0].replace(",", "")) > 5:
            server.inject_fault("tile", "drop_before_commit", count=50)

    params = task.create_default_generate_offline_map_parameters(None)
    job = task.generate_offline_map(params, folder)
    job.add_progress_listener(drop_later)
    with pytest.raises(NetworkError, match="into the same folder to continue"):
        job.run()
    partial = folder / "basemap" / "Demo_topographic.gpkg.partial"
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [partial.name]
    stored = tile_count(partial, "basemap")
    assert 5 < stored < total
    assert fast_client().replicas(server.service_url(DEMO)) == []

    server.clear_faults()
    server.reset_stats()
    offline_map = run(webmap_task(server, BASEMAP_MAP_ID), folder).offline_map
    path = offline_map.basemap_path(offline_map.basemaps[0])
    assert server.stats()["tiles"] == total - stored
    assert tile_count(path, "basemap") == total and not partial.exists()


@pytest.mark.parametrize(
    ("service", "moment"),
    [
        (seed.BASEMAP_NO_EXPORT_SERVICE, " of "),  # while fetching tiles
        (seed.BASEMAP_SERVICE, "Server job"),  # while the export job runs
        (seed.BASEMAP_SERVICE, "Stored"),  # once the package is converted
    ],
)
def test_cancel_during_the_basemap_download_leaves_nothing(
    reference_server, tmp_path, service, moment
):
    server = reference_server
    task = webmap_task(server, save_webmap_with_basemap(server, [topo_layer(service)]))
    params = task.create_default_generate_offline_map_parameters(None)
    job = task.generate_offline_map(params, tmp_path / "map")
    job.add_progress_listener(lambda percent, message: moment in message and job.cancel())
    with pytest.raises(CancelledError):
        job.run()
    assert not (tmp_path / "map").exists()
    assert fast_client().replicas(server.service_url(DEMO)) == []


def test_kept_online_or_left_out_as_chosen(reference_server, tmp_path):
    server = reference_server
    server.reset_stats()
    result = run(webmap_task(server), tmp_path / "online", basemap=BasemapOptions(mode="online"))
    topo, streets = result.offline_map.basemaps
    assert (topo.kind, topo.layer_type) == ("online", "ArcGISTiledMapServiceLayer")
    assert topo.source_url.endswith("/DemoBasemap/MapServer")
    assert streets.style_url.endswith("/VectorTileServer/resources/styles/root.json")
    assert [s.basemap for s in result.skipped_layers] == [True, True] and not result.has_errors
    assert not (result.offline_map.folder / "basemap").exists()

    result = run(webmap_task(server), tmp_path / "none", basemap=BasemapOptions(mode="none"))
    assert result.offline_map.basemaps == [] and not result.has_errors
    assert server.stats()["tiles"] == 0


# -- preplanned map areas -------------------------------------------------------------------------
def test_a_map_area_brings_the_basemap_packages_the_portal_prepared(reference_server, tmp_path):
    server = reference_server
    task, area = whole_area(server, fast_client())
    assert [p.kind for p in area.basemap_packages] == ["raster", "vector"]
    server.reset_stats()
    params = task.create_default_download_preplanned_offline_map_parameters(area)
    result = task.download_preplanned_offline_map(params, tmp_path / "map").run()

    offline_map = OfflineMap.open(result.offline_map.folder)
    topo, streets = offline_map.basemaps
    assert (topo.kind, topo.path, topo.min_level, topo.max_level) == (
        "raster",
        "basemap/Demo_topographic.gpkg",
        0,
        16,
    )
    assert (streets.kind, streets.style) == ("vector", "basemap/Demo_streets.style.json")
    assert server.stats()["tiles"] == 0  # packages, not tiles one by one
    info = gdalinfo(offline_map.basemap_path(topo))
    xmin, ymin, xmax, ymax = mercator_extent(area.area_of_interest)
    corners = info["cornerCoordinates"]
    assert corners["upperLeft"][0] <= xmin and corners["lowerRight"][0] >= xmax
    assert corners["lowerRight"][1] <= ymin and corners["upperLeft"][1] >= ymax
    vector = ogr.Open(str(offline_map.basemap_path(streets)))
    assert vector.GetLayerByName("places") is not None
    vector = None
    remove_offline_map(offline_map.folder, RemovalParameters(discard_pending_edits=True))
    assert not offline_map.folder.exists()


def test_a_map_area_without_a_basemap_download_keeps_it_online(reference_server, tmp_path):
    server = reference_server
    task, area = whole_area(server, fast_client())
    for mode, kinds in (("online", ["online", "online"]), ("none", [])):
        params = task.create_default_download_preplanned_offline_map_parameters(area)
        params.basemap = BasemapOptions(mode=mode)
        result = task.download_preplanned_offline_map(params, tmp_path / mode).run()
        assert [b.kind for b in result.offline_map.basemaps] == kinds
        assert not (result.offline_map.folder / "basemap").exists()


def test_tiles_the_service_does_not_have_are_left_out(reference_server, tmp_path):
    server = reference_server
    task = webmap_task(server, save_webmap_with_basemap(server, [topo_layer()]))
    # An area reaching far beyond the basemap's extent: the service answers 404 there.
    xmin, ymin, xmax, ymax = mercator_extent(area_of(task))
    width = xmax - xmin
    area = {
        "xmin": xmin - 3 * width,
        "ymin": ymin,
        "xmax": xmax,
        "ymax": ymax,
        "spatialReference": {"wkid": 102100},
    }
    options = BasemapOptions(max_level=15)
    total = estimate_basemap(task.client, task.webmap()[1], area, options).tiles
    server.reset_stats()
    offline_map = run(task, tmp_path / "map", area, basemap=options).offline_map
    path = offline_map.basemap_path(offline_map.basemaps[0])
    assert server.stats()["tiles"] == total  # each asked once
    assert 0 < tile_count(path, "basemap") < total
    assert gdalinfo(path)["driverShortName"] == "GPKG"


def test_tiles_of_a_secured_service_are_fetched_with_the_sign_in_and_keep_no_token(
    secured_reference_server, tmp_path
):
    server = secured_reference_server
    credentials = TokenCredentials(
        server.token_url, "alice", "alice-secret", plain_http_hosts=server.plain_http_hosts
    )
    layers = [topo_layer(), seed.DEMO_BASEMAP["baseMapLayers"][1]]
    webmap_id = save_webmap_with_basemap(server, layers, fast_client(credentials))
    task = OfflineMapTask(
        portal_url=server.portal_url, webmap_item_id=webmap_id, client=fast_client(credentials)
    )
    total = estimate_basemap(task.client, task.webmap()[1], area_of(task), BasemapOptions())
    offline_map = run(task, tmp_path / "map").offline_map
    topo, streets = offline_map.basemaps
    assert tile_count(offline_map.basemap_path(topo), "basemap") == total.layers[0].tiles
    assert tile_count(offline_map.basemap_path(streets), "tiles") == total.layers[1].tiles
    for name in (MANIFEST_NAME, streets.style):
        assert "token" not in (offline_map.folder / name).read_text().lower()


def test_an_area_where_the_service_has_no_tiles_keeps_the_basemap_online(
    reference_server, tmp_path
):
    server = reference_server
    task = webmap_task(server, save_webmap_with_basemap(server, [topo_layer()]))
    # Far from the basemap's extent: the service answers 404 for every tile there.
    xmin, ymin, xmax, ymax = mercator_extent(area_of(task))
    shift = 40 * (xmax - xmin)
    area = {
        "xmin": xmin + shift,
        "ymin": ymin,
        "xmax": xmax + shift,
        "ymax": ymax,
        "spatialReference": {"wkid": 102100},
    }
    options = BasemapOptions(min_level=12, max_level=14)
    offline_map = run(task, tmp_path / "map", area, basemap=options).offline_map
    (topo,) = offline_map.basemaps
    # No tile set GDAL cannot open: the basemap stays on its service.
    assert topo.kind == "online" and topo.source_url.endswith("/MapServer")
    assert not (offline_map.folder / "basemap").exists()


@pytest.mark.parametrize("size", [float("inf"), float("nan"), -5, True, "12"])
def test_a_nonsense_server_estimate_falls_back_to_sample_tiles(
    reference_server, tmp_path, monkeypatch, size
):
    from tests.featureservice import tiles as service_tiles

    server = reference_server
    task = webmap_task(server, save_webmap_with_basemap(server, [topo_layer(seed.BASEMAP_SERVICE)]))
    sane = estimate_basemap(task.client, task.webmap()[1], area_of(task), BasemapOptions())
    monkeypatch.setattr(
        service_tiles, "estimate", lambda svc, request: {"totalSize": size, "totalTilesToExport": 1}
    )

    estimate = estimate_basemap(task.client, task.webmap()[1], area_of(task), BasemapOptions())

    (layer,) = estimate.layers
    assert layer.export_allowed and layer.tiles == sane.tiles
    assert estimate.bytes > 0  # from sample tiles
