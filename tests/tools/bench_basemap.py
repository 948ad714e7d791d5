"""``make bench`` (basemap part): taking a basemap offline, tiles per second and peak memory,
side by side with GDAL fetching the same tiles.

The tiles are those of the demo area (the Demo feature service's extent) at levels 0-16 of the
reference service's ``DemoBasemapNoExport`` (a tiled map service that does not allow export, so
every tool fetches ``/tile/{z}/{y}/{x}`` one by one). Cases, each in a child process of its own
(wall time, CPU time and peak memory as ``bench.py`` measures them; ``tiles`` is the number of
tile requests the service answered):

- this plugin, tile by tile, into a GeoPackage tile set (``basemap.BasemapDownloads``);
- this plugin with ``exportTiles`` on ``DemoBasemap`` (one tile package, converted);
- ``gdal_translate`` from a GDAL WMS/TMS description pointing at ``/tile/${z}/${y}/${x}``, one
  run per level at that level's resolution (GDAL's own tile cache off), into GeoTIFFs.

Usage: python tests/tools/bench_basemap.py [--runs 3] [--levels 0-16] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.tools.bench import (  # noqa: E402
    Server,
    add_child_arguments,
    answer_child,
    child_argv,
    measure,
    summarize,
)

NO_EXPORT = "DemoBasemapNoExport"
EXPORT = "DemoBasemap"


class DemoServer(Server):
    """The reference service with the demo seed (its basemap services), in its own process."""

    def __init__(self, work: Path) -> None:
        super().__init__(work, 0, seed="demo")
        self.service_url = f"{self.root_url}/rest/services/Demo/FeatureServer"

    def tiles(self) -> int:
        return int(self.admin("stats").get("tiles") or 0)


# -- children -------------------------------------------------------------------------------------
def _area(args: dict) -> tuple[float, float, float, float]:
    return tuple(args["extent"])  # type: ignore[return-value]


def _child_ours(args: dict) -> dict:
    from plugin.core.basemap import BasemapDownloads, BasemapLayer, BasemapOptions
    from plugin.core.basemap import _describe_service as describe
    from plugin.core.rest import ArcGISClient

    client = ArcGISClient()
    layer = BasemapLayer("Bench", "raster", "ArcGISTiledMapServiceLayer", args["service"])
    options = BasemapOptions(min_level=args["levels"][0], max_level=args["levels"][1])
    service = describe(client, layer, _area(args), options)
    downloads = BasemapDownloads(Path(args["folder"]), client, lambda: False)
    started = time.perf_counter()
    entry = downloads.download(service, _area(args), lambda fraction, message: None)
    seconds = time.perf_counter() - started
    path = Path(args["folder"]) / entry.path
    return {"stored": _count(path, "basemap"), "job_s": round(seconds, 3)}


def _child_gdal(args: dict) -> dict:
    from osgeo import gdal

    from plugin.core.tile_scheme import TileScheme

    gdal.UseExceptions()
    gdal.SetConfigOption("GDAL_ENABLE_WMS_CACHE", "NO")
    with urllib.request.urlopen(f"{args['service']}?f=json", timeout=60) as answer:
        info = json.load(answer)
    scheme = TileScheme.from_tile_info(info["tileInfo"])
    top = args["levels"][1]
    xml = Path(args["folder"]) / "tms.xml"
    half = abs(scheme.origin_x)
    xml.write_text(
        f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{args["service"]}/tile/${{z}}/${{y}}/${{x}}</ServerUrl></Service>
  <DataWindow><UpperLeftX>{-half}</UpperLeftX><UpperLeftY>{half}</UpperLeftY>
    <LowerRightX>{half}</LowerRightX><LowerRightY>{-half}</LowerRightY>
    <TileLevel>{top}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin></DataWindow>
  <Projection>EPSG:3857</Projection><BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY>
  <BandsCount>4</BandsCount><ZeroBlockHttpCodes>404</ZeroBlockHttpCodes>
</GDAL_WMS>
"""
    )
    started = time.perf_counter()
    for tile_range in scheme.tile_ranges(_area(args), *args["levels"]):
        xmin, ymin, xmax, ymax = scheme.range_bounds(tile_range)
        resolution = scheme.lod(tile_range.level).resolution
        gdal.Translate(
            str(Path(args["folder"]) / f"level{tile_range.level}.tif"),
            str(xml),
            projWin=[xmin, ymax, xmax, ymin],
            xRes=resolution,
            yRes=resolution,
        )
    return {"job_s": round(time.perf_counter() - started, 3)}


def _count(path: Path, table: str) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


CHILDREN = {"ours": _child_ours, "gdal": _child_gdal}


# -- the run --------------------------------------------------------------------------------------
def demo_extent(server: DemoServer) -> tuple[float, float, float, float]:
    from plugin.core.rest import ArcGISClient
    from plugin.core.tile_scheme import mercator_extent

    info = ArcGISClient().get_json(server.service_url)
    return mercator_extent(info["initialExtent"])


def run(work: Path, runs: int, levels: tuple[int, int], json_path: Path) -> list[dict]:
    server = DemoServer(work)
    rows = []
    try:
        extent = demo_extent(server)
        services = f"{server.root_url}/rest/services"
        cases = [
            ("this plugin (tile by tile)", "ours", f"{services}/{NO_EXPORT}/MapServer"),
            ("this plugin (exportTiles)", "ours", f"{services}/{EXPORT}/MapServer"),
            ("gdal_translate (TMS)", "gdal", f"{services}/{NO_EXPORT}/MapServer"),
        ]
        for tool, child, service in cases:
            results = []
            for number in range(runs):
                folder = work / f"{child}-{len(rows)}-{number}"
                folder.mkdir()
                before = server.tiles()
                figures = measure(
                    child_argv(
                        child,
                        script=__file__,
                        service=service,
                        folder=str(folder),
                        extent=list(extent),
                        levels=list(levels),
                    ),
                    server,
                )
                figures["tiles"] = server.tiles() - before
                results.append(figures)
                shutil.rmtree(folder, ignore_errors=True)
            row = summarize(results)
            row.update(case=f"basemap levels {levels[0]}-{levels[1]}", tool=tool)
            fetched = row.get("stored") if child == "ours" and "export" in tool else row["tiles"]
            row["tiles_per_s"] = (
                round((fetched or 0) / row["job_s"], 1) if row.get("job_s") else None
            )
            rows.append(row)
            print(
                f"  {row['case']:<22} {tool:<28} {row['wall_s']:>7.2f}s  job {row['job_s']:>6.2f}s  "
                f"{row['tiles_per_s'] or 0:>8.1f} tiles/s  tile requests {row['tiles']:>5}  "
                f"peak {row['peak_mb']:>6.1f} MB",
                flush=True,
            )
    finally:
        server.stop()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(rows, indent=1))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--levels", default="0-16")
    parser.add_argument("--json", default=".bench/bench-basemap.json", type=Path)
    add_child_arguments(parser)
    options = parser.parse_args()
    if answer_child(options, CHILDREN):
        return 0
    low, _, high = options.levels.partition("-")
    work = Path(tempfile.mkdtemp(prefix="oms-bench-basemap-"))
    try:
        run(work, max(1, options.runs), (int(low), int(high or low)), options.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
