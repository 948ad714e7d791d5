"""The reference service's basemaps: tiled MapServer, VectorTileServer, exportTiles packages.

Everything is checked from the outside, over HTTP, with decoders written here (PNG header,
protobuf, Compact Cache V2 bundle index) and with GDAL's MVT driver, so that a test does not
trust the server's own writer to read what it wrote."""

from __future__ import annotations

import gzip
import io
import json
import math
import struct
import time
import zipfile
import zlib
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from osgeo import gdal, ogr

from tests.featureservice.client import get, post
from tests.featureservice.seed import (
    BASE_LAT,
    BASE_LON,
    BASEMAP_NO_EXPORT_SERVICE,
    BASEMAP_SERVICE,
    DEMO_WEBMAP_ID,
    SR,
    VECTOR_BASEMAP_SERVICE,
)

TIMEOUT = 30
HALF_WORLD = 20037508.342787
# ArcGIS Online's level 0 (256-px tiles): every level halves it.
LEVEL0_RESOLUTION = 156543.03392800014
# A part of the demo area (Web Mercator), for exports of less than the full extent.
PART_OF_THE_AREA = {
    "xmin": 950_000.0,
    "ymin": 6_001_000.0,
    "xmax": 952_500.0,
    "ymax": 6_003_000.0,
    "spatialReference": {"wkid": 102100},
}


def _services(server) -> str:
    return f"{server.root_url}/rest/services"


def _map(server, name: str = BASEMAP_SERVICE) -> str:
    return f"{_services(server)}/{name}/MapServer"


def _vector(server) -> str:
    return f"{_services(server)}/{VECTOR_BASEMAP_SERVICE}/VectorTileServer"


def _tile_range(extent: dict, level: int) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the tiles of `level` inside a Web Mercator extent."""
    span = 2 * HALF_WORLD / 2**level
    col0 = int((extent["xmin"] + HALF_WORLD) // span)
    col1 = int((extent["xmax"] + HALF_WORLD) // span)
    row0 = int((HALF_WORLD - extent["ymax"]) // span)
    row1 = int((HALF_WORLD - extent["ymin"]) // span)
    return row0, row1, col0, col1


def _png_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) after checking signature, chunks and pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    channels = {2: 3, 6: 4}[colour]
    assert len(zlib.decompress(idat)) == height * (1 + width * channels * depth // 8)
    return width, height, depth, colour


# --- a tiny protobuf / Mapbox Vector Tile reader -----------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes):
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        yield field, value


def _packed(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        out.append(value)
    return out


def _decode_tile(data: bytes) -> dict[str, dict]:
    """{layer name: {"version", "extent", "features": [(type, {props}, [commands])]}}."""
    layers = {}
    for field, layer_bytes in _fields(data):
        assert field == 3
        layer = {"features": [], "keys": [], "values": [], "extent": 4096, "version": 1}
        raw_features = []
        for lf, value in _fields(layer_bytes):
            if lf == 1:
                layer["name"] = value.decode()
            elif lf == 2:
                raw_features.append(value)
            elif lf == 3:
                layer["keys"].append(value.decode())
            elif lf == 4:
                ((vf, v),) = list(_fields(value))
                layer["values"].append(v.decode() if vf == 1 else v)
            elif lf == 5:
                layer["extent"] = value
            elif lf == 15:
                layer["version"] = value
        for raw in raw_features:
            parts = dict(_fields(raw))
            tags = _packed(parts.get(2, b""))
            props = {
                layer["keys"][tags[i]]: layer["values"][tags[i + 1]] for i in range(0, len(tags), 2)
            }
            layer["features"].append((parts[3], props, _packed(parts[4])))
        layers[layer["name"]] = layer
    return layers


def _read_bundle_tile(bundle: bytes, row: int, col: int) -> bytes | None:
    """The tile (row, col) of a Compact Cache V2 bundle, or None where the index has none."""
    version, records = struct.unpack("<II", bundle[:8])
    assert (version, records) == (3, 128 * 128)
    (entry,) = struct.unpack("<Q", bundle[64 + 8 * ((row % 128) * 128 + col % 128) :][:8])
    offset, size = entry & (2**40 - 1), entry >> 40
    if size == 0:
        return None
    assert struct.unpack("<I", bundle[offset - 4 : offset]) == (size,)
    return bundle[offset : offset + size]


def _bundle_entries(bundle: bytes) -> list[int]:
    """The sizes of the tiles a bundle's index lists."""
    index = struct.unpack(f"<{128 * 128}Q", bundle[64 : 64 + 8 * 128 * 128])
    return [entry >> 40 for entry in index if entry >> 40]


def _bundle_path(level: int, row: int, col: int) -> str:
    return f"L{level:02d}/R{row - row % 128:04x}C{col - col % 128:04x}.bundle"


def _run_job(url: str, **params) -> dict:
    """Submits a tile job and polls it to its end; returns the final status."""
    submitted = post(url, **params)
    assert submitted["jobStatus"] == "esriJobSubmitted", submitted
    status_url = f"{url.rsplit('/', 1)[0]}/jobs/{submitted['jobId']}"
    for _ in range(600):
        status = get(status_url)
        assert status["jobId"] == submitted["jobId"]
        if status["jobStatus"] in ("esriJobSucceeded", "esriJobFailed"):
            status["url"] = status_url
            return status
        assert status["jobStatus"] == "esriJobExecuting"
        time.sleep(0.05)
    raise AssertionError("the job did not end")


def _result(status: dict, param: str):
    assert status["jobStatus"] == "esriJobSucceeded", status
    assert status["results"][param] == {"paramUrl": f"results/{param}"}
    answer = get(f"{status['url']}/{status['results'][param]['paramUrl']}")
    assert answer["paramName"] == param
    return answer["value"]


def _download(url: str, target: Path) -> Path:
    with requests.get(url, stream=True, timeout=TIMEOUT) as response:
        response.raise_for_status()
        assert response.headers["Content-Type"] == "application/zip"
        with open(target, "wb") as fp:
            for chunk in response.iter_content(65536):
                fp.write(chunk)
    return target


# --- MapServer --------------------------------------------------------------------------------


def test_map_server_describes_its_tiling_scheme_extent_and_export_limits(reference_server):
    info = get(_map(reference_server))
    assert info["singleFusedMapCache"] is True
    assert info["capabilities"] == "Map,Tilemap,Query,Data"
    assert info["exportTilesAllowed"] is True
    assert info["maxExportTilesCount"] == 100000
    assert (info["minLOD"], info["maxLOD"]) == (0, 19)
    assert info["mapName"] and info["currentVersion"]
    tile_info = info["tileInfo"]
    assert {k: tile_info[k] for k in ("rows", "cols", "dpi", "format")} == {
        "rows": 256,
        "cols": 256,
        "dpi": 96,
        "format": "PNG32",
    }
    assert tile_info["origin"] == {"x": -HALF_WORLD, "y": HALF_WORLD}
    assert tile_info["spatialReference"]["latestWkid"] == 3857
    assert [lod["level"] for lod in tile_info["lods"]] == list(range(20))
    for lod in tile_info["lods"]:
        assert lod["resolution"] == pytest.approx(LEVEL0_RESOLUTION / 2 ** lod["level"])
        assert lod["scale"] == pytest.approx(591657527.591555 / 2 ** lod["level"], rel=1e-6)
    full = info["fullExtent"]
    assert info["spatialReference"]["wkid"] == 102100 == full["spatialReference"]["wkid"]
    # The demo area (seed.py's Zürich) lies inside, with a margin.
    x, y = _base_xy()
    assert full["xmin"] < x < full["xmax"] and full["ymin"] < y < full["ymax"]
    assert full["xmax"] - full["xmin"] > 2000

    no_export = get(_map(reference_server, BASEMAP_NO_EXPORT_SERVICE))
    assert no_export["exportTilesAllowed"] is False
    assert no_export["tileInfo"] == tile_info
    catalog = get(_services(reference_server))["services"]
    assert {"name": BASEMAP_SERVICE, "type": "MapServer"} in catalog
    assert {"name": VECTOR_BASEMAP_SERVICE, "type": "VectorTileServer"} in catalog


def test_a_tile_is_a_256_pixel_png_with_the_same_bytes_every_time(reference_server):
    info = get(_map(reference_server))
    row0, row1, col0, col1 = _tile_range(info["fullExtent"], 16)
    url = f"{_map(reference_server)}/tile/16/{row0}/{col0}"
    first = requests.get(url, timeout=TIMEOUT)
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "image/png"
    assert _png_header(first.content) == (256, 256, 8, 6)  # RGBA, as PNG32 says
    assert requests.get(url, timeout=TIMEOUT).content == first.content
    neighbour = requests.get(f"{_map(reference_server)}/tile/16/{row0}/{col0 + 1}", timeout=30)
    assert _png_header(neighbour.content)[:2] == (256, 256)
    assert neighbour.content != first.content
    # Level 0 covers the world, and the same tiles answer on the no-export service.
    world = requests.get(f"{_map(reference_server)}/tile/0/0/0", timeout=TIMEOUT)
    assert _png_header(world.content)[:2] == (256, 256)
    alias = f"{_map(reference_server, BASEMAP_NO_EXPORT_SERVICE)}/tile/16/{row0}/{col0}"
    assert requests.get(alias, timeout=TIMEOUT).content == first.content


@pytest.mark.parametrize(
    "path",
    [
        "tile/16/0/0",  # far outside the demo area
        "tile/20/0/0",  # above maxLOD
        "tile/3/8/0",  # no such row at level 3
    ],
)
def test_tiles_outside_the_extent_or_levels_answer_404_with_a_json_error(reference_server, path):
    response = requests.get(f"{_map(reference_server)}/{path}", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404


def test_tiles_outside_the_demo_area_at_high_levels_are_404_but_inside_exist(reference_server):
    full = get(_map(reference_server))["fullExtent"]
    row0, row1, col0, col1 = _tile_range(full, 19)
    url = _map(reference_server)
    assert requests.get(f"{url}/tile/19/{row0}/{col0}", timeout=TIMEOUT).status_code == 200
    assert requests.get(f"{url}/tile/19/{row1}/{col1}", timeout=TIMEOUT).status_code == 200
    assert requests.get(f"{url}/tile/19/{row1 + 1}/{col1}", timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{url}/tile/19/{row0}/{col0 - 1}", timeout=TIMEOUT).status_code == 404


# --- VectorTileServer -------------------------------------------------------------------------


def test_vector_tile_server_describes_its_tiles_and_default_style(reference_server):
    info = get(_vector(reference_server))
    assert info["capabilities"] == "TilesOnly,Tilemap"
    assert info["type"] == "indexedVector"
    assert info["defaultStyles"] == "resources/styles"
    assert info["tiles"] == ["tile/{z}/{y}/{x}.pbf"]
    assert info["exportTilesAllowed"] is True and info["maxExportTilesCount"] == 100000
    assert (info["minLOD"], info["maxLOD"], info["maxzoom"]) == (0, 16, 16)
    tile_info = info["tileInfo"]
    assert (tile_info["rows"], tile_info["cols"], tile_info["format"]) == (512, 512, "pbf")
    assert [lod["level"] for lod in tile_info["lods"]] == list(range(17))
    # 512-px tiles: level z has the resolution of the 256-px level z + 1.
    assert tile_info["lods"][0]["resolution"] == pytest.approx(LEVEL0_RESOLUTION / 2)
    assert info["fullExtent"] == get(_map(reference_server))["fullExtent"]

    style_url = f"{_vector(reference_server)}/resources/styles/root.json"
    style = get(style_url)
    assert style["version"] == 8
    assert "sprite" not in style and "glyphs" not in style
    source = style["sources"]["esri"]
    assert source["type"] == "vector"
    assert urljoin(style_url, source["url"]) == _vector(reference_server) + "/"
    used = {(lay["type"], lay.get("source-layer")) for lay in style["layers"]}
    assert {("fill", "land"), ("line", "roads"), ("circle", "places")} <= used
    assert get(f"{_vector(reference_server)}/resources/styles") == style
    # The style's tile URL template, resolved against the style, reaches the tiles.
    row0, _, col0, _ = _tile_range(info["fullExtent"], 14)
    tile_url = urljoin(style_url, source["tiles"][0]).format(z=14, y=row0, x=col0)
    assert tile_url == f"{_vector(reference_server)}/tile/14/{row0}/{col0}.pbf"
    assert requests.get(tile_url, timeout=TIMEOUT).status_code == 200


def _base_xy() -> tuple[float, float]:
    """seed.py's BASE_LON/BASE_LAT in Web Mercator."""
    x = 6378137.0 * math.radians(BASE_LON)
    y = 6378137.0 * math.log(math.tan(math.pi / 4 + math.radians(BASE_LAT) / 2))
    return x, y


def _demo_center_tile(level: int) -> tuple[int, int]:
    """(row, col) of the tile holding seed.py's BASE_LON/BASE_LAT."""
    x, y = _base_xy()
    span = 2 * HALF_WORLD / 2**level
    return int((HALF_WORLD - y) // span), int((x + HALF_WORLD) // span)


def test_vector_tile_is_an_uncompressed_mvt_with_land_roads_and_places(reference_server, tmp_path):
    row, col = _demo_center_tile(12)
    url = f"{_vector(reference_server)}/tile/12/{row}/{col}.pbf"
    response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-protobuf"
    assert response.content[:2] != b"\x1f\x8b"  # not gzipped on the wire
    assert requests.get(url, timeout=TIMEOUT).content == response.content
    layers = _decode_tile(response.content)
    assert set(layers) == {"land", "roads", "places"}
    for layer in layers.values():
        assert (layer["version"], layer["extent"]) == (2, 4096)
        assert layer["features"]
    assert {f[0] for f in layers["land"]["features"]} == {3}  # polygons
    assert {f[0] for f in layers["roads"]["features"]} == {2}  # lines
    assert {f[0] for f in layers["places"]["features"]} == {1}  # points
    assert {"land", "park", "water"} == {f[1]["class"] for f in layers["land"]["features"]}
    names = {f[1]["name"] for f in layers["places"]["features"]}
    assert "Paradeplatz" in names
    for _, _, commands in layers["land"]["features"]:
        assert commands[0] == (1 | 1 << 3) and commands[-1] == (7 | 1 << 3)  # MoveTo .. Close

    # GDAL reads the same tile (the z/x/y path gives it the tile's place).
    path = tmp_path / "12" / str(col) / f"{row}.pbf"
    path.parent.mkdir(parents=True)
    path.write_bytes(response.content)
    dataset = ogr.Open(str(path))
    assert dataset is not None
    by_name = {dataset.GetLayer(i).GetName(): dataset.GetLayer(i) for i in range(3)}
    assert set(by_name) == {"land", "roads", "places"}
    gdal_names = {f.GetField("name") for f in by_name["places"]}
    assert gdal_names == names
    assert by_name["roads"].GetFeatureCount() == len(layers["roads"]["features"])
    lon_lat = [f.GetGeometryRef().Centroid() for f in by_name["places"]]
    assert all(900_000 < p.GetX() < 1_000_000 and 5_900_000 < p.GetY() < 6_100_000 for p in lon_lat)


def test_vector_tiles_outside_the_area_or_above_level_16_answer_404(reference_server):
    url = _vector(reference_server)
    row, col = _demo_center_tile(17)
    assert requests.get(f"{url}/tile/17/{row}/{col}.pbf", timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{url}/tile/10/0/0.pbf", timeout=TIMEOUT).status_code == 404
    row, col = _demo_center_tile(16)
    assert requests.get(f"{url}/tile/16/{row}/{col}.pbf", timeout=TIMEOUT).status_code == 200


# --- exportTiles and estimateExportTilesSize ---------------------------------------------------


def test_export_tiles_makes_a_tpkx_whose_bundles_hold_the_served_tiles(reference_server, tmp_path):
    url = _map(reference_server)
    full = get(url)["fullExtent"]
    status = _run_job(
        f"{url}/exportTiles",
        tilePackage=True,
        exportBy="LevelID",
        levels="0-16",
        exportExtent=full,
        storageFormatOption="esriMapCacheStorageModeCompactV2",
    )
    assert status["progress"]["percent"] == 100
    package_url = _result(status, "out_service_url")
    assert package_url.startswith(f"{reference_server.root_url}/rest/directories/arcgisoutput/")
    assert package_url.endswith(".tpkx")
    package = zipfile.ZipFile(_download(package_url, tmp_path / "basemap.tpkx"))
    assert all(i.compress_type == zipfile.ZIP_STORED for i in package.infolist())
    root = json.loads(package.read("root.json"))
    assert root["storageInfo"] == {
        "storageFormat": "esriMapCacheStorageModeCompactV2",
        "packetSize": 128,
    }
    assert root["tileInfo"]["rows"] == 256
    assert [lod["level"] for lod in root["tileInfo"]["lods"]] == list(range(17))
    assert root["tileInfo"]["lods"] == get(url)["tileInfo"]["lods"][:17]
    assert root["fullExtent"] == full
    assert "format" in root["tileImageInfo"]
    bundles = sorted(n for n in package.namelist() if n.endswith(".bundle"))
    assert {n.split("/")[1] for n in bundles} == {f"L{z:02d}" for z in range(17)}
    for level in (0, 5, 12, 16):
        row0, row1, col0, col1 = _tile_range(full, level)
        for row, col in ((row0, col0), (row1, col1), ((row0 + row1) // 2, col0)):
            bundle = package.read(f"tile/{_bundle_path(level, row, col)}")
            served = requests.get(f"{url}/tile/{level}/{row}/{col}", timeout=TIMEOUT).content
            assert _read_bundle_tile(bundle, row, col) == served
    # Every tile of the area is there, and nothing else.
    count = sum(len(_bundle_entries(package.read(n))) for n in bundles)
    expected = 0
    for level in range(17):
        row0, row1, col0, col1 = _tile_range(full, level)
        expected += (row1 - row0 + 1) * (col1 - col0 + 1)
    assert count == expected


def test_estimate_export_tiles_size_counts_what_the_package_holds(reference_server, tmp_path):
    url = _map(reference_server)
    area = PART_OF_THE_AREA
    params = {"exportBy": "LevelID", "levels": "10,12-15", "exportExtent": area}
    estimated = _run_job(f"{url}/estimateExportTilesSize", **params)
    estimate = _result(estimated, "out_service_tile_estimate")
    # Esri's documentation names the estimate out_service_url and puts jobs under the operation.
    job_id = estimated["jobId"]
    alias = get(f"{url}/estimateExportTilesSize/jobs/{job_id}/results/out_service_url")
    assert alias["value"] == estimate
    assert get(f"{url}/estimateExportTilesSize/jobs/{job_id}")["jobStatus"] == "esriJobSucceeded"
    status = _run_job(f"{url}/exportTiles", tilePackage=True, **params)
    package = zipfile.ZipFile(_download(_result(status, "out_service_url"), tmp_path / "a.tpkx"))
    # The package describes what it holds: the area's extent and the exported levels.
    root = json.loads(package.read("root.json"))
    assert root["fullExtent"] == root["initialExtent"] == area | {"spatialReference": SR}
    assert (root["minLOD"], root["maxLOD"]) == (10, 15)
    assert root["minScale"] == root["tileInfo"]["lods"][10]["scale"]
    assert root["maxScale"] == root["tileInfo"]["lods"][15]["scale"]
    item_info = json.loads(package.read("iteminfo.json"))
    assert "tpkx" in item_info["typeKeywords"]
    assert item_info["extent"]["xmin"] == pytest.approx(950_000.0 / 6378137.0 * 180 / math.pi)
    sizes = [
        size
        for name in package.namelist()
        if name.endswith(".bundle")
        for size in _bundle_entries(package.read(name))
    ]
    assert {n.split("/")[1] for n in package.namelist() if n.endswith(".bundle")} == {
        "L10",
        "L12",
        "L13",
        "L14",
        "L15",
    }
    assert estimate == {"totalSize": sum(sizes), "totalTilesToExport": len(sizes)}
    whole = _result(
        _run_job(f"{url}/estimateExportTilesSize", exportBy="LevelID", levels="10,12-15"),
        "out_service_tile_estimate",
    )
    assert whole["totalTilesToExport"] > estimate["totalTilesToExport"] > 5


def test_export_extent_in_wgs84_is_projected(reference_server):
    url = _map(reference_server)
    mercator = PART_OF_THE_AREA

    def lon_lat(x, y):
        return math.degrees(x / 6378137.0), math.degrees(
            2 * math.atan(math.exp(y / 6378137.0)) - math.pi / 2
        )

    lon0, lat0 = lon_lat(mercator["xmin"], mercator["ymin"])
    lon1, lat1 = lon_lat(mercator["xmax"], mercator["ymax"])
    wgs84 = {
        "xmin": lon0,
        "ymin": lat0,
        "xmax": lon1,
        "ymax": lat1,
        "spatialReference": {"wkid": 4326},
    }
    estimates = [
        _result(
            _run_job(f"{url}/estimateExportTilesSize", levels="14-16", exportExtent=extent),
            "out_service_tile_estimate",
        )
        for extent in (mercator, wgs84)
    ]
    assert estimates[0] == estimates[1]


def test_export_over_the_tile_limit_or_on_a_service_that_forbids_it_is_refused(reference_server):
    world = {
        "xmin": -HALF_WORLD,
        "ymin": -HALF_WORLD,
        "xmax": HALF_WORLD,
        "ymax": HALF_WORLD,
        "spatialReference": {"wkid": 102100},
    }
    url = _map(reference_server)
    response = requests.post(
        f"{url}/exportTiles",
        data={
            "f": "json",
            "tilePackage": "true",
            "levels": "0-10",
            "exportExtent": json.dumps(world),
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400
    assert "100000" in error["message"]  # 0-10 over the world is 1,398,101 tiles
    assert "1398101" in error["message"]
    # The same over fewer levels is fine: 0-8 is 87,381 tiles.
    started = post(f"{url}/estimateExportTilesSize", levels="0-8", exportExtent=world)
    assert started["jobStatus"] == "esriJobSubmitted"

    forbidden = requests.post(
        f"{_map(reference_server, BASEMAP_NO_EXPORT_SERVICE)}/exportTiles",
        data={"f": "json", "tilePackage": "true", "levels": "0-3"},
        timeout=TIMEOUT,
    )
    assert forbidden.status_code == 400
    assert forbidden.json()["error"]["message"] == "Export tiles is not allowed on this service"

    for bad in ({"levels": "0-20"}, {"levels": "a-b"}, {"exportExtent": '{"xmin": 1}'}):
        answer = post(f"{url}/exportTiles", tilePackage=True, **bad)
        assert answer["error"]["code"] == 400, bad


def test_vector_export_makes_a_vtpk_with_gzipped_tiles_style_and_service_json(
    reference_server, tmp_path
):
    url = _vector(reference_server)
    info = get(url)
    status = _run_job(f"{url}/exportTiles", levels="0-16", exportExtent=info["fullExtent"])
    package_url = _result(status, "out_service_url")
    assert package_url.endswith(".vtpk")
    package = zipfile.ZipFile(_download(package_url, tmp_path / "streets.vtpk"))
    assert all(i.compress_type == zipfile.ZIP_STORED for i in package.infolist())
    root = json.loads(package.read("p12/root.json"))
    assert root["tiles"] == ["tile/{z}/{y}/{x}.pbf"]
    assert root["tileInfo"]["lods"] == info["tileInfo"]["lods"]
    assert json.loads(package.read("p12/resources/styles/root.json")) == get(
        f"{url}/resources/styles/root.json"
    )
    row, col = _demo_center_tile(15)
    stored = _read_bundle_tile(package.read(f"p12/tile/{_bundle_path(15, row, col)}"), row, col)
    assert stored[:2] == b"\x1f\x8b"
    served = requests.get(f"{url}/tile/15/{row}/{col}.pbf", timeout=TIMEOUT).content
    assert gzip.decompress(stored) == served
    assert set(_decode_tile(gzip.decompress(stored))) == {"land", "roads", "places"}
    estimate = _result(
        _run_job(f"{url}/estimateExportTilesSize", levels="0-16", exportExtent=info["fullExtent"]),
        "out_service_tile_estimate",
    )
    sizes = [
        s
        for n in package.namelist()
        if n.endswith(".bundle")
        for s in _bundle_entries(package.read(n))
    ]
    assert estimate == {"totalSize": sum(sizes), "totalTilesToExport": len(sizes)}


# --- faults and counters ------------------------------------------------------------------------


def test_tile_requests_are_counted_and_tile_operations_take_faults(reference_server):
    server = reference_server
    row, col = _demo_center_tile(15)
    raster = f"{_map(server)}/tile/15/{row}/{col}"
    vector = f"{_vector(server)}/tile/15/{row}/{col}.pbf"
    server.reset_stats()
    requests.get(raster, timeout=TIMEOUT)
    requests.get(vector, timeout=TIMEOUT)
    requests.get(f"{_map(server)}/tile/15/0/0", timeout=TIMEOUT)  # a 404 is a request too
    get(_map(server))
    stats = get(f"{server.root_url}/admin/stats")
    assert stats["tiles"] == 3 and stats["requests"] == 4

    server.inject_fault("tile", "http503")
    assert requests.get(raster, timeout=TIMEOUT).status_code == 503
    assert requests.get(raster, timeout=TIMEOUT).status_code == 200
    server.inject_fault("vectorTile", "drop_before_commit")
    with pytest.raises(requests.ConnectionError):
        requests.get(vector, timeout=TIMEOUT)
    assert requests.get(vector, timeout=TIMEOUT).status_code == 200
    server.inject_fault("exportTiles", "http500")
    response = requests.post(f"{_map(server)}/exportTiles", data={"levels": "0-2"}, timeout=30)
    assert response.status_code == 500

    server.inject_fault("exportTiles", "slow_job", polls=2)
    submitted = post(f"{_map(server)}/exportTiles", tilePackage=True, levels="0-2")
    server.app.wait_for_jobs()
    status_url = f"{_map(server)}/jobs/{submitted['jobId']}"
    assert get(status_url)["jobStatus"] == "esriJobExecuting"
    assert get(status_url)["jobStatus"] == "esriJobExecuting"
    assert get(status_url)["jobStatus"] == "esriJobSucceeded"


def test_tile_jobs_belong_to_their_service(reference_server):
    submitted = post(f"{_map(reference_server)}/exportTiles", tilePackage=True, levels="0-1")
    reference_server.app.wait_for_jobs()
    elsewhere = get(f"{_vector(reference_server)}/jobs/{submitted['jobId']}")
    assert elsewhere["error"]["code"] == 400
    wrong_param = get(f"{_map(reference_server)}/jobs/{submitted['jobId']}/results/nothing")
    assert wrong_param["error"]["code"] == 400


def test_demo_web_map_basemap_points_at_the_basemap_services(reference_server):
    data = get(f"{reference_server.portal_url}/content/items/{DEMO_WEBMAP_ID}/data")
    layers = data["baseMap"]["baseMapLayers"]
    assert [(lay["id"], lay["layerType"]) for lay in layers] == [
        ("demo_topo", "ArcGISTiledMapServiceLayer"),
        ("demo_vector", "VectorTileLayer"),
    ]
    assert layers[0]["url"] == _map(reference_server)
    assert get(layers[0]["url"])["singleFusedMapCache"] is True
    assert get(layers[1]["styleUrl"])["version"] == 8


# --- preplanned map areas -----------------------------------------------------------------------


def test_map_areas_carry_a_tile_package_and_a_vector_tile_package(reference_server, tmp_path):
    server = reference_server
    portal = server.portal_url
    for number, area_id in enumerate(server.prepare_map_areas()):
        area = get(f"{portal}/content/items/{area_id}")
        box = area["properties"]["geometry"]
        related = get(
            f"{portal}/content/items/{area_id}/relatedItems", relationshipType="Area2Package"
        )["relatedItems"]
        assert [item["type"] for item in related] == [
            "SQLite Geodatabase",
            "Tile Package",
            "Vector Tile Package",
        ]
        raster, vector = related[1], related[2]
        assert raster["properties"]["serviceUrl"] == _map(server)
        assert vector["properties"]["serviceUrl"] == _vector(server)
        assert raster["properties"]["basemapLayerId"] == "demo_topo"
        assert vector["properties"]["basemapLayerId"] == "demo_vector"
        assert raster["properties"]["levels"] == vector["properties"]["levels"] == "0-16"

        with requests.get(f"{portal}/content/items/{raster['id']}/data", timeout=TIMEOUT) as r:
            assert r.headers["Content-Type"] == "application/zip"
            assert len(r.content) == raster["size"]
            package = zipfile.ZipFile(io.BytesIO(r.content))
        levels = {n.split("/")[1] for n in package.namelist() if n.endswith(".bundle")}
        assert levels == {f"L{z:02d}" for z in range(17)}
        row0, row1, col0, col1 = _tile_range(box, 16)
        expected = (row1 - row0 + 1) * (col1 - col0 + 1)
        level16 = [n for n in package.namelist() if n.startswith("tile/L16/")]
        assert sum(len(_bundle_entries(package.read(n))) for n in level16) == expected
        served = requests.get(f"{_map(server)}/tile/16/{row1}/{col1}", timeout=TIMEOUT).content
        bundle = package.read(f"tile/{_bundle_path(16, row1, col1)}")
        assert _read_bundle_tile(bundle, row1, col1) == served

        target = tmp_path / f"area{number}.vtpk"
        _download(f"{portal}/content/items/{vector['id']}/data", target)
        vtpk = zipfile.ZipFile(target)
        assert json.loads(vtpk.read("p12/root.json"))["tiles"] == ["tile/{z}/{y}/{x}.pbf"]
        stored = _read_bundle_tile(
            vtpk.read(f"p12/tile/{_bundle_path(16, row0, col0)}"), row0, col0
        )
        pbf = requests.get(f"{_vector(server)}/tile/16/{row0}/{col0}.pbf", timeout=TIMEOUT)
        assert gzip.decompress(stored) == pbf.content
    # The West half's packages hold fewer tiles than the whole area's.
    sizes = [
        get(f"{portal}/content/items/{area_id}/relatedItems", relationshipType="Area2Package")[
            "relatedItems"
        ][1]["size"]
        for area_id in server.prepare_map_areas()
    ]
    assert sizes[0] > sizes[1]


def _compact_cache(package: zipfile.ZipFile, folder: Path, lods: list[dict]) -> Path:
    """The package's bundles as an Esri compact cache folder (``conf.xml`` + ``_alllayers``),
    the layout GDAL's ESRIC driver reads (GDAL before 3.8 cannot open a .tpkx itself)."""
    for name in package.namelist():
        if name.startswith("tile/"):
            target = folder / "_alllayers" / name[len("tile/") :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(package.read(name))
    infos = "".join(
        f"<LODInfo><LevelID>{lod['level']}</LevelID><Scale>{lod['scale']}</Scale>"
        f"<Resolution>{lod['resolution']}</Resolution></LODInfo>"
        for lod in lods
    )
    (folder / "conf.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><CacheInfo><TileCacheInfo>'
        "<SpatialReference><WKT>EPSG:3857</WKT></SpatialReference>"
        f"<TileOrigin><X>{-HALF_WORLD}</X><Y>{HALF_WORLD}</Y></TileOrigin>"
        f"<TileCols>256</TileCols><TileRows>256</TileRows><LODInfos>{infos}</LODInfos>"
        "</TileCacheInfo><TileImageInfo><CacheTileFormat>PNG</CacheTileFormat></TileImageInfo>"
        "<CacheStorageInfo><StorageFormat>esriMapCacheStorageModeCompactV2</StorageFormat>"
        "<PacketSize>128</PacketSize></CacheStorageInfo></CacheInfo>",
        encoding="utf-8",
    )
    return folder / "conf.xml"


def _pixels(dataset, x: int, y: int) -> list[bytes]:
    return [bytes(dataset.GetRasterBand(b).ReadRaster(x, y, 256, 256)) for b in (1, 2, 3, 4)]


def test_gdal_reads_the_tile_package_bundles_as_the_served_pngs(reference_server, tmp_path):
    url = _map(reference_server)
    info = get(url)
    status = _run_job(f"{url}/exportTiles", tilePackage=True, levels="0-16")
    path = _download(_result(status, "out_service_url"), tmp_path / "basemap.tpkx")
    package = zipfile.ZipFile(path)
    cache = gdal.Open(
        str(_compact_cache(package, tmp_path / "cache", info["tileInfo"]["lods"][:17]))
    )
    assert cache.GetDriver().ShortName == "ESRIC" and cache.RasterCount == 4
    for level in (16, 12):
        row0, row1, col0, col1 = _tile_range(info["fullExtent"], level)
        for row, col in ((row0, col0), (row1, col1)):
            served = requests.get(f"{url}/tile/{level}/{row}/{col}", timeout=TIMEOUT).content
            gdal.FileFromMemBuffer("/vsimem/served.png", served)
            try:
                expected = _pixels(gdal.Open("/vsimem/served.png"), 0, 0)
            finally:
                gdal.Unlink("/vsimem/served.png")
            # Level 16 is the full resolution, coarser levels are its overviews.
            bands = [cache.GetRasterBand(b) for b in (1, 2, 3, 4)]
            if level < 16:
                bands = [band.GetOverview(16 - level - 1) for band in bands]
            read = [bytes(band.ReadRaster(col * 256, row * 256, 256, 256)) for band in bands]
            assert read == expected, (level, row, col)
            assert any(value != 0 for value in read[3])  # opaque, not a missing tile


def test_with_sign_in_on_tiles_and_jobs_need_a_token_and_jobs_stay_their_owners(
    secured_reference_server, tmp_path
):
    server = secured_reference_server
    row, col = _demo_center_tile(15)
    tile_url = f"{_map(server)}/tile/15/{row}/{col}"
    assert get(_map(server))["error"]["code"] == 499
    assert requests.get(tile_url, timeout=TIMEOUT).json()["error"]["code"] == 499
    alice, bob = server.generate_token("alice"), server.generate_token("bob")
    tile = requests.get(tile_url, params={"token": alice}, timeout=TIMEOUT)
    assert _png_header(tile.content)[:2] == (256, 256)

    started = post(f"{_map(server)}/exportTiles", tilePackage=True, levels="0-3", token=alice)
    server.app.wait_for_jobs()
    status_url = f"{_map(server)}/jobs/{started['jobId']}"
    assert get(status_url, token=bob)["error"]["code"] == 403
    status = get(status_url, token=alice)
    assert status["jobStatus"] == "esriJobSucceeded"
    package_url = get(f"{status_url}/results/out_service_url", token=alice)["value"]
    # The package URL is unguessable and served without a token, like other result files.
    package = zipfile.ZipFile(_download(package_url, tmp_path / "alice.tpkx"))
    assert "root.json" in package.namelist()
