"""Basemap files without a server: tile math, tile packages, GeoPackage tiles and MBTiles that
GDAL opens, and the manifest's basemap entries."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from osgeo import gdal, ogr

from plugin.core.basemap import BasemapOptions, basemap_layers, offline_style, safe_file_stem
from plugin.core.enums import PreplannedUpdateMode
from plugin.core.errors import ManifestError, ServiceError
from plugin.core.offline_map import (
    MANIFEST_NAME,
    BasemapEntry,
    MapSource,
    OfflineMap,
    OfflineMapManifest,
)
from plugin.core.tile_package import TilePackage, TilePackageError
from plugin.core.tile_scheme import TileScheme, lonlat_to_mercator, mercator_extent
from plugin.core.tile_store import GeoPackageTiles, MBTiles, partial_tiles_path
from tests.tile_package_writer import write_tile_package

ORIGIN = 20037508.342787
TILE_INFO = {
    "rows": 256,
    "cols": 256,
    "dpi": 96,
    "format": "PNG32",
    "origin": {"x": -ORIGIN, "y": ORIGIN},
    "spatialReference": {"wkid": 102100, "latestWkid": 3857},
    "lods": [
        {"level": z, "resolution": 156543.03392800014 / 2**z, "scale": 591657527.591555 / 2**z}
        for z in range(20)
    ],
}
#: Near Bern (lon 7.44, lat 46.95), about 2 km across.
AREA = {
    "xmin": 7.43,
    "ymin": 46.94,
    "xmax": 7.46,
    "ymax": 46.96,
    "spatialReference": {"wkid": 4326},
}


def png(level: int, row: int, col: int) -> bytes:
    """A small PNG made by GDAL, different per tile."""
    driver = gdal.GetDriverByName("MEM")
    ds = driver.Create("", 256, 256, 3)
    for band, value in enumerate(((level * 13) % 256, (row * 7) % 256, (col * 5) % 256), 1):
        ds.GetRasterBand(band).Fill(value)
    path = f"/vsimem/tile_{level}_{row}_{col}.png"
    gdal.GetDriverByName("PNG").CreateCopy(path, ds)
    data = gdal.VSIFOpenL(path, "rb")
    size = gdal.VSIStatL(path).size
    content = gdal.VSIFReadL(1, size, data)
    gdal.VSIFCloseL(data)
    gdal.Unlink(path)
    return bytes(content)


def scheme() -> TileScheme:
    return TileScheme.from_tile_info(TILE_INFO)


def test_tile_ranges_cover_the_area_at_each_level():
    tiles = scheme()
    extent = mercator_extent(AREA)
    ranges = tiles.tile_ranges(extent, 0, 16)
    assert [r.level for r in ranges] == list(range(17))
    assert ranges[0].count == 1 and (ranges[0].min_row, ranges[0].min_col) == (0, 0)
    # The standard slippy-map formula gives the same tile for a corner of the area.
    for tile_range in ranges:
        z = tile_range.level
        import math

        lat = math.radians(46.96)
        col = int((7.43 + 180) / 360 * 2**z)
        row = int((1 - math.log(math.tan(lat) + 1 / math.cos(lat)) / math.pi) / 2 * 2**z)
        assert (tile_range.min_row, tile_range.min_col) == (row, col)
        assert tile_range.count >= 1
    # Each tile range's bounds hold the area.
    xmin, ymin, xmax, ymax = tiles.range_bounds(ranges[-1])
    assert xmin <= extent[0] and ymin <= extent[1] and xmax >= extent[2] and ymax >= extent[3]
    assert sum(r.count for r in ranges) < 200


def test_a_scheme_other_than_web_mercator_is_refused_with_a_clear_message():
    info = dict(TILE_INFO, spatialReference={"wkid": 2056})
    with pytest.raises(ServiceError, match="only Web Mercator"):
        TileScheme.from_tile_info(info, "https://h/arcgis/rest/services/X/MapServer")
    with pytest.raises(ServiceError, match="damaged"):
        TileScheme.from_tile_info(dict(TILE_INFO, lods=[{"level": 0, "resolution": -1}]))


def test_options_refuse_nonsense():
    with pytest.raises(ValueError):
        BasemapOptions(mode="sometimes")
    with pytest.raises(ValueError):
        BasemapOptions(min_level=10, max_level=3)
    with pytest.raises(ValueError):
        BasemapOptions(mode="local")
    assert BasemapOptions().mode == "download" and BasemapOptions().max_level == 16


def test_web_map_basemap_layers_are_classified():
    data = {
        "baseMap": {
            "baseMapLayers": [
                {
                    "id": "t",
                    "title": "Topo",
                    "layerType": "ArcGISTiledMapServiceLayer",
                    "url": "https://h/arcgis/rest/services/T/MapServer",
                },
                {
                    "id": "v",
                    "title": "Streets",
                    "layerType": "VectorTileLayer",
                    "styleUrl": "https://h/arcgis/rest/services/V/VectorTileServer/resources/styles/root.json",
                    "opacity": 0.5,
                    "visibility": False,
                },
                {"id": "osm", "title": "OpenStreetMap", "layerType": "OpenStreetMap"},
            ]
        }
    }
    topo, streets, osm = basemap_layers(data)
    assert (topo.kind, topo.service_url) == ("raster", "https://h/arcgis/rest/services/T/MapServer")
    assert (streets.kind, streets.service_url) == (
        "vector",
        "https://h/arcgis/rest/services/V/VectorTileServer",
    )
    assert streets.opacity == 0.5 and not streets.visible
    assert osm.kind == "online" and not osm.downloadable
    assert basemap_layers({}) == [] and basemap_layers({"baseMap": {"baseMapLayers": "x"}}) == []


def _gdalinfo(path: Path) -> dict:
    out = subprocess.run(
        ["gdalinfo", "-json", str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_geopackage_tiles_open_in_gdal_with_the_area_and_levels(tmp_path):
    tiles = scheme()
    ranges = tiles.tile_ranges(mercator_extent(AREA), 0, 12)
    final = tmp_path / "basemap" / "Topo.gpkg"
    store = GeoPackageTiles.open(final, tiles, [r.level for r in ranges], title="Topo")
    assert not store.has_tiles()
    written = [(lvl, row, col, png(lvl, row, col)) for r in ranges for (lvl, row, col) in r.tiles()]
    store.write(written[:5])
    store.close()
    # Resumed: the partial file keeps what was written; known tiles are not asked again.
    store = GeoPackageTiles.open(final, tiles, [r.level for r in ranges], title="Topo")
    assert store.has_tiles() and store.tile_count() == 5
    # Built in WAL mode, each batch synced at checkpoints only (what GeoPackages of maps use).
    assert store.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert store.conn.execute("PRAGMA synchronous").fetchone() == (1,)
    assert store.known(0) == {(0, 0)}
    store.write(written[5:], missing=[(12, 0, 0)])
    assert (0, 0) in store.known(12)
    store.finish()
    assert final.is_file() and not partial_tiles_path(final).exists()

    info = _gdalinfo(final)
    assert info["driverShortName"] == "GPKG"
    assert (
        "3857" in info["coordinateSystem"]["wkt"]
        or "Pseudo-Mercator" in info["coordinateSystem"]["wkt"]
    )
    # The extent is the tiles of level 12 around the area; resolution is level 12's.
    xmin, ymin, xmax, ymax = tiles.range_bounds(ranges[-1])
    corners = info["cornerCoordinates"]
    assert corners["upperLeft"] == pytest.approx([xmin, ymax], abs=0.01)
    assert corners["lowerRight"] == pytest.approx([xmax, ymin], abs=0.01)
    assert info["geoTransform"][1] == pytest.approx(tiles.lod(12).resolution)
    assert info["bands"][0].get("overviews")
    # Every level is there: GDAL reads the least detailed one on request.
    world = gdal.OpenEx(str(final), open_options=["ZOOM_LEVEL=0"])
    assert world.GetGeoTransform()[1] == pytest.approx(tiles.lod(0).resolution)
    world = None
    ds = gdal.Open(str(final))
    # A pixel in the top-left tile has that tile's colours.
    top_left = next(
        t
        for t in written
        if t[0] == 12 and (t[1], t[2]) == (ranges[-1].min_row, ranges[-1].min_col)
    )
    assert ds.GetRasterBand(2).ReadAsArray(0, 0, 1, 1)[0][0] == (top_left[1] * 7) % 256
    ds = None


def _mvt_tiles(tmp_path: Path) -> dict[tuple[int, int, int], bytes]:
    """A few real Mapbox vector tiles (made by GDAL) over the area, keyed (z, row, col)."""
    source = tmp_path / "roads.geojson"
    x0, y0 = lonlat_to_mercator(7.43, 46.94)
    x1, y1 = lonlat_to_mercator(7.46, 46.96)
    source.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "EPSG:3857"}},
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "Main street"},
                        "geometry": {"type": "LineString", "coordinates": [[x0, y0], [x1, y1]]},
                    }
                ],
            }
        )
    )
    out = tmp_path / "mvt"
    gdal.VectorTranslate(
        str(out),
        str(source),
        format="MVT",
        layerName="roads",
        datasetCreationOptions=["MINZOOM=0", "MAXZOOM=3", "COMPRESS=NO"],
    )
    found = {}
    for path in out.glob("*/*/*.pbf"):
        z, x, y = int(path.parent.parent.name), int(path.parent.name), int(path.stem)
        found[(z, y, x)] = path.read_bytes()
    assert found
    return found


def vector_scheme() -> TileScheme:
    """A vector tile service's scheme: 512-pixel tiles, levels 0-16."""
    return TileScheme.from_tile_info(
        dict(
            TILE_INFO,
            rows=512,
            cols=512,
            format="pbf",
            lods=[{"level": z, "resolution": 78271.51696399994 / 2**z} for z in range(17)],
        )
    )


def _streets_mbtiles(tmp_path: Path) -> tuple[MBTiles, Path, dict]:
    """An unfinished "Streets" vector MBTiles holding the test's vector tiles: the store, its
    final path and the tiles written ((level, row, column) -> MVT bytes)."""
    mvt = _mvt_tiles(tmp_path)
    final = tmp_path / "basemap" / "Streets.mbtiles"
    store = MBTiles.open(final, vector_scheme(), title="Streets")
    store.write([(z, row, col, data) for (z, row, col), data in mvt.items()])
    return store, final, mvt


def test_mbtiles_of_vector_tiles_open_in_gdal(tmp_path):
    store, final, mvt = _streets_mbtiles(tmp_path)
    store.set_vector_layers(["roads"])
    store.finish()
    conn_rows = _sqlite_rows(
        final, "SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles"
    )
    assert len(conn_rows) == len(mvt)
    for z, col, tms, data in conn_rows:
        # Rows are TMS (from the bottom) and the data gzipped.
        assert gzip.decompress(data) == mvt[(z, (1 << z) - 1 - tms, col)]
    meta = dict(_sqlite_rows(final, "SELECT name, value FROM metadata"))
    assert meta["format"] == "pbf" and meta["minzoom"] == "0" and meta["maxzoom"] == "3"
    west, south, east, north = map(float, meta["bounds"].split(","))
    assert west <= 7.43 and east >= 7.46 and south <= 46.94 and north >= 46.96
    ds = ogr.Open(str(final))
    assert ds is not None and ds.GetDriver().GetName() == "MBTiles"
    layer = ds.GetLayerByName("roads")
    assert layer is not None and layer.GetFeatureCount() > 0


def _sqlite_rows(path: Path, sql: str) -> list[tuple]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_tile_package_reader_reads_back_what_was_packed(tmp_path):
    wanted = {
        (z, r, c): png(z, r, c) for z, r, c in [(0, 0, 0), (3, 2, 4), (9, 130, 260), (9, 131, 260)]
    }
    path = write_tile_package(tmp_path / "topo.tpkx", {"tileInfo": TILE_INFO}, wanted)
    with TilePackage.open(path) as package:
        assert not package.is_vector
        assert package.levels() == [0, 3, 9]
        got = {(z, r, c): data for z, r, c, data in package.tiles()}
        assert got == wanted
        assert {(z, r, c) for z, r, c, _ in package.tiles(levels={3})} == {(3, 2, 4)}
    style = {"version": 8, "sources": {"esri": {"type": "vector", "url": "../../"}}, "layers": []}
    vector = write_tile_package(
        tmp_path / "streets.vtpk",
        {"tileInfo": TILE_INFO},
        {(1, 0, 1): b"x"},
        vector=True,
        style=style,
    )
    with TilePackage.open(vector) as package:
        assert package.is_vector and package.style() == style
        assert list(package.tiles()) == [(1, 0, 1, b"x")]


def test_reading_a_package_opens_its_file_once_however_many_bundles_it_has(tmp_path, monkeypatch):
    from plugin.core import tile_package

    # Six bundles of 128 x 128 tiles at level 9.
    packed = {(9, r, c): png(9, r, c) for r in (0, 130, 260) for c in (0, 130)}
    path = write_tile_package(tmp_path / "topo.tpkx", {"tileInfo": TILE_INFO}, packed)
    opened = []

    def watched_open(file, *args, **kwargs):
        opened.append(Path(file))
        return open(file, *args, **kwargs)

    with TilePackage.open(path) as package:
        monkeypatch.setattr(tile_package, "open", watched_open, raising=False)
        got = {(z, r, c): data for z, r, c, data in package.tiles()}

    assert got == packed
    assert opened == [path]


def test_damaged_tile_packages_are_refused_with_a_message(tmp_path):
    not_zip = tmp_path / "x.tpkx"
    not_zip.write_bytes(b"hello")
    with pytest.raises(TilePackageError, match="not a tile package"):
        TilePackage.open(not_zip)
    no_root = tmp_path / "noroot.tpkx"
    with zipfile.ZipFile(no_root, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(TilePackageError, match="root.json"):
        TilePackage.open(no_root)
    # A bundle index pointing past the bundle's end.
    bad = tmp_path / "bad.tpkx"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("root.json", json.dumps({"tileInfo": TILE_INFO}))
        index = bytearray(128 * 128 * 8)
        struct.pack_into("<Q", index, 0, (64 + len(index) + 10) | (5000 << 40))
        archive.writestr("tile/L00/R0000C0000.bundle", bytes(64) + bytes(index) + b"0123456789")
    with TilePackage.open(bad) as package, pytest.raises(TilePackageError, match="points outside"):
        list(package.tiles())


def test_offline_style_needs_nothing_online():
    style = {
        "version": 8,
        "sprite": "../sprites/sprite",
        "glyphs": "https://h/fonts/{fontstack}/{range}.pbf",
        "sources": {
            "esri": {"type": "vector", "url": "../../", "tiles": ["https://h/tile/{z}/{y}/{x}.pbf"]}
        },
        "layers": [{"id": "roads", "type": "line", "source": "esri", "source-layer": "roads"}],
    }
    local = offline_style(style, "Streets.mbtiles")
    assert "sprite" not in local and "glyphs" not in local
    assert local["sources"] == {"esri": {"type": "vector", "url": "mbtiles://Streets.mbtiles"}}
    assert local["layers"] == style["layers"]
    assert "http" not in json.dumps(local)


def test_safe_file_stems_are_unique_and_plain():
    taken: set[str] = set()
    assert safe_file_stem("Demo topographic", taken) == "Demo_topographic"
    assert safe_file_stem("Demo topographic", taken) == "Demo_topographic_2"
    assert "/" not in safe_file_stem("../../etc/passwd", taken)
    assert safe_file_stem("CON", taken) == "CON_"
    assert safe_file_stem("", taken) == "basemap"


def _manifest(basemaps) -> OfflineMapManifest:
    return OfflineMapManifest(
        title="m",
        source=MapSource(service_urls=("https://h/arcgis/rest/services/D/FeatureServer",)),
        update_mode=PreplannedUpdateMode.SYNC_WITH_FEATURE_SERVICES,
        geodatabases=(),
        basemaps=tuple(basemaps),
    )


def test_manifest_keeps_basemaps_and_old_maps_stay_valid(tmp_path):
    entries = [
        BasemapEntry(
            "Topo",
            "raster",
            path="basemap/Topo.gpkg",
            format="gpkg",
            min_level=0,
            max_level=16,
            source_url="https://h/arcgis/rest/services/T/MapServer?token=secret",
        ),
        BasemapEntry(
            "Streets",
            "vector",
            path="basemap/Streets.mbtiles",
            format="mbtiles",
            style="basemap/Streets.style.json",
        ),
        BasemapEntry("OpenStreetMap", "online", layer_type="OpenStreetMap"),
        BasemapEntry("Mine", "local", path="/data/mine.gpkg", format="gpkg"),
    ]
    OfflineMap.write_manifest(tmp_path, _manifest(entries))
    text = (tmp_path / MANIFEST_NAME).read_text()
    assert "secret" not in text
    opened = OfflineMap.open(tmp_path)
    assert [b.title for b in opened.basemaps] == ["Topo", "Streets", "OpenStreetMap", "Mine"]
    assert opened.basemaps[1].style == "basemap/Streets.style.json"
    assert opened.basemap_path(opened.basemaps[0]) == tmp_path / "basemap" / "Topo.gpkg"
    assert opened.basemap_path(opened.basemaps[3]) == Path("/data/mine.gpkg")
    # A map without the list (made before basemaps) opens with none.
    data = json.loads(text)
    del data["basemaps"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    assert OfflineMap.open(tmp_path).basemaps == []


@pytest.mark.parametrize(
    "path", ["../elsewhere.gpkg", "/etc/passwd", "basemap/../../x.gpkg", "C:\\x.gpkg", "..\\x.gpkg"]
)
def test_manifest_refuses_downloaded_basemap_files_outside_the_folder(tmp_path, path):
    OfflineMap.write_manifest(tmp_path, _manifest([]))
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    data["basemaps"] = [{"title": "x", "kind": "raster", "path": path, "format": "gpkg"}]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="not inside the map folder"):
        OfflineMap.open(tmp_path)


def test_a_compressed_bundle_larger_than_it_says_is_refused(tmp_path):
    path = tmp_path / "bomb.tpkx"
    name = b"tile/L00/R0000C0000.bundle"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("root.json", json.dumps({"tileInfo": TILE_INFO}))
        archive.writestr(name.decode(), bytes(64 + 128 * 128 * 8 + 10_000_000))
    # The entry says it unpacks to 200 kB (both headers); it unpacks to 10 MB.
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, 200_000)
    struct.pack_into("<I", data, data.rfind(b"PK\x03\x04", 0, data.find(name)) + 22, 200_000)
    path.write_bytes(bytes(data))
    with TilePackage.open(path) as package, pytest.raises(TilePackageError, match="bundle"):
        list(package.tiles())


def test_a_partial_tile_set_resumed_with_more_levels_gets_their_tile_matrices(tmp_path):
    tiles = scheme()
    ranges = tiles.tile_ranges(mercator_extent(AREA), 0, 6)
    final = tmp_path / "Topo.gpkg"
    store = GeoPackageTiles.open(final, tiles, [0, 1, 2], title="Topo")
    store.write([(t.level, t.min_row, t.min_col, png(t.level, 0, 0)) for t in ranges[:3]])
    store.close()
    store = GeoPackageTiles.open(final, tiles, [r.level for r in ranges], title="Topo")
    store.write([(t.level, t.min_row, t.min_col, png(t.level, 0, 0)) for t in ranges[3:]])
    store.finish()
    detailed = gdal.OpenEx(str(final), open_options=["ZOOM_LEVEL=6"])
    assert detailed.GetGeoTransform()[1] == pytest.approx(tiles.lod(6).resolution)
    detailed = None


def _gzip_bomb(unpacked_mib: int) -> bytes:
    """A few hundred KiB of gzip that unpack to ``unpacked_mib`` MiB of zeros."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(unpacked_mib)) + packer.flush()


def test_a_gzip_bomb_among_vector_tiles_is_not_unpacked_when_finishing(tmp_path):
    import tracemalloc

    store, final, mvt = _streets_mbtiles(tmp_path)
    # A hostile package's tile at the most detailed level: sampled first when finishing.
    store.write([(16, 100, 100, _gzip_bomb(256))])
    tracemalloc.start()
    try:
        store.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024
    meta = dict(_sqlite_rows(final, "SELECT name, value FROM metadata"))
    # The real tiles' layer is still listed.
    assert [layer["id"] for layer in json.loads(meta["json"])["vector_layers"]] == ["roads"]


@pytest.mark.parametrize("damage", ["not_sqlite", "damaged_page"])
def test_a_damaged_partial_tile_set_is_started_over(tmp_path, damage):
    tiles = scheme()
    ranges = tiles.tile_ranges(mercator_extent(AREA), 0, 4)
    final = tmp_path / "basemap" / "Topo.gpkg"
    partial = partial_tiles_path(final)
    if damage == "not_sqlite":
        partial.parent.mkdir()
        partial.write_bytes(b"left over by something else" * 100)
    else:
        store = GeoPackageTiles.open(final, tiles, [r.level for r in ranges], title="Topo")
        store.write([(r.level, r.min_row, r.min_col, png(r.level, 0, 0)) for r in ranges])
        store.close()
        data = bytearray(partial.read_bytes())
        # Scribble over the second page: the tables still answer, the file is damaged.
        data[4096 : 4096 + 100] = b"\xff" * 100
        partial.write_bytes(bytes(data))
    store = GeoPackageTiles.open(final, tiles, [r.level for r in ranges], title="Topo")
    assert store.tile_count() == 0
    store.write([(r.level, r.min_row, r.min_col, png(r.level, 0, 0)) for r in ranges])
    store.finish()
    info = _gdalinfo(final)
    assert info["driverShortName"] == "GPKG"


@pytest.mark.parametrize(
    "template",
    [
        "https://elsewhere.example/tile/{z}/{y}/{x}.pbf",
        "http://basemaps.example/VectorTileServer/tile/{z}/{y}/{x}.pbf",
        "//elsewhere.example/tile/{z}/{y}/{x}.pbf",
    ],
)
def test_a_vector_tile_template_naming_another_site_is_refused(template):
    from plugin.core.basemap import BasemapLayer, _Service

    layer = BasemapLayer(
        "Streets",
        "vector",
        "VectorTileLayer",
        service_url="https://basemaps.example/VectorTileServer",
    )
    service = _Service(layer, {"tiles": [template]}, scheme(), [])
    with pytest.raises(ServiceError, match="another server"):
        service.tile_url(3, 2, 1)
    same = _Service(layer, {"tiles": ["tile/{z}/{y}/{x}.pbf"]}, scheme(), [])
    assert same.tile_url(3, 2, 1) == "https://basemaps.example/VectorTileServer/tile/3/2/1.pbf"


@pytest.mark.parametrize(
    ("entries", "max_entries", "max_directory"),
    [(2_000, 1_000_000, 64 * 1024), (66_000, 65_800, 64 * 1024 * 1024)],
)
def test_a_package_listing_too_many_files_is_refused_before_they_are_read(
    tmp_path, monkeypatch, entries, max_entries, max_directory
):
    import plugin.core.tile_package as tile_package

    # Lowered limits stand for the real ones (a package of millions of entries takes long to
    # write). Over 65,535 entries the count is only in the Zip64 end record.
    many = tmp_path / "many.tpkx"
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr("root.json", json.dumps({"tileInfo": TILE_INFO}))
        for number in range(entries):
            archive.writestr(f"padding/{number:08d}" + "x" * 40, b"")
    monkeypatch.setattr(tile_package, "MAX_CENTRAL_DIRECTORY_BYTES", max_directory)
    monkeypatch.setattr(tile_package, "MAX_ENTRIES", max_entries)
    read = []
    original = zipfile.ZipFile._RealGetContents

    def counting(self):
        read.append(self.filename)
        return original(self)

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", counting)
    with pytest.raises(TilePackageError, match="too many files"):
        TilePackage.open(many)
    # Refused from the zip's end record: the list of entries was never loaded.
    assert read == []
