"""The demo: a whole offline round trip against the reference service, headless.

1. starts the reference feature service and portal (seed "demo") on loopback,
2. takes its web map offline with ``qgis_process`` (algorithm ``offlinemapsync:takemapoffline``),
3. edits the offline copy the way any writer would (GDAL/OGR on the GeoPackage) and edits the
   service as another user, including a conflict (a point changed here, deleted there),
4. synchronizes with ``qgis_process`` (``offlinemapsync:synchronizeofflinemap``),
5. prints the per-layer result and the conflict log,
6. ahead of time: lists the web map's preplanned map areas, downloads one
   (``downloadpreplannedmaparea``) and removes it again (``removeofflinemap``),
7. true curves: takes the "Parcels" service offline (``generategeodatabase``), pulls a lot's
   arc further out with GDAL, synchronizes (``synchronizegeodatabase``): the arc arrives as an arc,
8. checks the service got the edits, tells how to open the same map in QGIS with the plugin.

Run: ``make demo`` (or ``.venv/bin/python -m tests.tools.demo [--out DIR] [--keep-serving]``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from tests.tools.qgis_process import REPO_ROOT, QgisProcess

ALG = "offlinemapsync:"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "build" / "demo"), help="output folder")
    parser.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep the reference service running at the end (Ctrl+C stops it)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from osgeo import ogr

    from plugin.core.gdal_mode import gdal_exceptions
    from tests.featureservice import seed
    from tests.featureservice.server import ReferenceServer

    out = Path(args.out).absolute()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    map_folder = out / "offline_map"
    report = out / "sync_report.html"

    step("Starting the reference feature service (seed 'demo')")
    server = ReferenceServer(out / "server", seed="demo")
    server.start()
    try:
        print(f"   portal:  {server.portal_url}")
        print(f"   service: {server.service_url(seed.DEMO_SERVICE)}")
        runner = QgisProcess(out / "qgis_process")

        step("Taking the web map offline with qgis_process")
        taken = run(
            runner,
            "takemapoffline",
            PORTAL_URL=server.portal_url,
            WEBMAP_ITEM_ID=seed.DEMO_WEBMAP_ID,
            OUTPUT=str(map_folder),
        )
        print(
            f"   '{taken['TITLE']}': {taken['GEODATABASE_COUNT']:.0f} geodatabase(s), "
            f"{taken['LAYER_COUNT']:.0f} layers and tables in {taken['OUTPUT']}"
        )

        basemap_files = describe_basemaps(map_folder)

        gpkg = next(map_folder.glob("*.gpkg"))
        points = server.query_all(seed.DEMO_SERVICE, 0)
        by_name = {p["attributes"]["name"]: p for p in points}
        names = sorted(by_name)
        changed_here, deleted_there, changed_there = names[0], names[1], names[2]

        step("Editing the offline copy (with GDAL, as any editor would)")
        with gdal_exceptions(True):
            source = ogr.Open(str(gpkg), update=1)
            layer = source.GetLayerByName("Points")
            layer.SetAttributeFilter(f"name = '{sql(changed_here)}'")
            feature = layer.GetNextFeature()
            feature.SetField("notes", "Checked in the field (demo)")
            layer.SetFeature(feature)
            layer.SetAttributeFilter(f"name = '{sql(deleted_there)}'")
            feature = layer.GetNextFeature()
            feature.SetField("status", "damaged")
            layer.SetFeature(feature)
            layer.SetAttributeFilter(None)
            new = ogr.Feature(layer.GetLayerDefn())
            new.SetField("name", "New bench (added offline)")
            new.SetField("category", 4)
            x, y = seed.mercator(seed.BASE_LON + 0.002, seed.BASE_LAT + 0.001)
            new.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({x} {y})"))
            layer.CreateFeature(new)
            source = None
        print(f"   changed '{changed_here}', changed '{deleted_there}', added 'New bench'")

        step("Editing the service as another user")
        server.apply_edits(
            seed.DEMO_SERVICE,
            0,
            updates=[
                {
                    "attributes": {
                        "GlobalID": by_name[changed_there]["attributes"]["GlobalID"],
                        "visits": 999,
                    }
                }
            ],
            deletes=[by_name[deleted_there]["attributes"]["GlobalID"]],
        )
        print(f"   changed '{changed_there}' (visits = 999), deleted '{deleted_there}'")
        print(f"   -> conflict: '{deleted_there}' was changed offline but deleted on the server")

        step("Synchronizing with qgis_process")
        synced = run(
            runner,
            "synchronizeofflinemap",
            OFFLINE_MAP=str(map_folder),
            REPORT=str(report),
        )
        rows = json.loads(synced["RESULTS"])
        print_table(
            ["layer / table", "up", "down", "edit errors", "conflicts", "error"],
            [
                [
                    r["name"] + (" (table)" if r["is_table"] else ""),
                    r["uploaded"],
                    r["downloaded"],
                    len(r["edit_errors"]),
                    r["conflicts"],
                    r["error"] or "",
                ]
                for r in rows
            ],
        )
        print(f"   report: {report}")

        step("The conflict log")
        conflicts = run(runner, "listconflicts", OFFLINE_MAP=str(map_folder))
        for entry in json.loads(conflicts["CONFLICTS"]):
            print(
                f"   #{entry['id']} {entry['layer']} '{entry['attributes'].get('name')}': "
                f"{entry['reason']} (local {entry['local_operation']})"
            )

        step("Ahead of time: the web map's preplanned map areas")
        server.prepare_map_areas()
        web_map = {"PORTAL_URL": server.portal_url, "WEBMAP_ITEM_ID": seed.DEMO_WEBMAP_ID}
        listed = run(runner, "listpreplannedmapareas", **web_map)
        for area in json.loads(listed["AREAS"]):
            print(f"   '{area['title']}': {area['size']} bytes to download ({area['item_id']})")
        area_folder = out / "west_half"
        downloaded = run(
            runner,
            "downloadpreplannedmaparea",
            **web_map,
            MAP_AREA="West half",
            UPDATE_MODE=0,
            OUTPUT=str(area_folder),
        )
        print(
            f"   'West half' is offline in {downloaded['OUTPUT']} "
            f"({downloaded['LAYER_COUNT']:.0f} layers and tables, {downloaded['UPDATE_MODE']})"
        )

        step("Removing the map area again")
        removed = run(runner, "removeofflinemap", OFFLINE_MAP=str(area_folder))
        print(
            f"   {removed['UNREGISTERED']:.0f} replica unregistered from the service, "
            f"{len(json.loads(removed['REMOVED']))} files and folders deleted"
        )

        step("True curves: the Parcels service as a geodatabase (generategeodatabase)")
        parcels_gpkg = out / "parcels.gpkg"
        run(
            runner,
            "generategeodatabase",
            SERVICE_URL=server.service_url(seed.PARCELS_SERVICE),
            OUTPUT=str(parcels_gpkg),
        )
        lot_name = seed.PARCEL_NAMES[0]
        source = ogr.Open(str(parcels_gpkg), update=1)
        parcels = source.GetLayerByName("Parcels")
        parcels.SetAttributeFilter(f"name = '{sql(lot_name)}'")
        lot = parcels.GetNextFeature()
        curved_offline = lot.GetGeometryRef().ExportToIsoWkt()
        print(f"   '{lot_name}' offline: {curved_offline[:110]}…")
        # The user pulls the lot's arc 20 m further out (still a true arc).
        (x, y) = seed.parcels_geometries()[0][0]["curveRings"][0][0]
        lot.SetGeometry(
            ogr.CreateGeometryFromWkt(
                f"MULTISURFACE (CURVEPOLYGON (COMPOUNDCURVE (({x} {y},{x + 60} {y},"
                f"{x + 60} {y + 60}),CIRCULARSTRING ({x + 60} {y + 60},{x + 30} {y + 110},"
                f"{x} {y + 60}),({x} {y + 60},{x} {y}))))"
            )
        )
        parcels.SetFeature(lot)
        lot = parcels = source = None
        run(runner, "synchronizegeodatabase", GEODATABASE=str(parcels_gpkg))
        lot_now = next(
            p
            for p in server.query_all(seed.PARCELS_SERVICE, 0)
            if p["attributes"]["name"] == lot_name
        )["geometry"]
        arc = next(s for s in lot_now.get("curveRings", [[]])[0] if isinstance(s, dict))
        print(f"   on the service after the sync: {json.dumps(lot_now)[:110]}…")

        step("Checking the service")
        after = {
            p["attributes"]["name"]: p["attributes"] for p in server.query_all(seed.DEMO_SERVICE, 0)
        }
        checks = [
            (
                "the offline change arrived",
                after[changed_here]["notes"] == "Checked in the field (demo)",
            ),
            ("the offline point was added", "New bench (added offline)" in after),
            ("the server delete stands", deleted_there not in after),
            ("the map area was removed", not area_folder.exists()),
            ("the basemap went offline and GDAL opens it", basemap_files == 2),
            ("the curved lot is a true curve offline", "CIRCULARSTRING" in curved_offline),
            (
                "the edited arc reached the service as an arc",
                arc.get("c", [None, None])[1] == [x + 30, y + 110],
            ),
        ]
        for text, ok in checks:
            print(f"   [{'ok' if ok else 'FAILED'}] {text}")

        print()
        print("Open the same map in QGIS:")
        print("   make deploy            # links this working copy into your QGIS profile")
        print(
            "   qgis                   # Plugins > Manage and Install Plugins > enable 'Offline Map Sync'"
        )
        print(f"   then in the Offline Map Sync panel: Open… {map_folder}  and  Add to map")
        print(
            "   (to sync from QGIS, keep the service running: make demo DEMO_ARGS=--keep-serving)"
        )
        if args.keep_serving:
            print(f"\nThe reference service is running at {server.root_url}; Ctrl+C stops it.")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        runner.close()
        return 0 if all(ok for _, ok in checks) else 1
    finally:
        server.stop()


def run(runner: QgisProcess, algorithm: str, **parameters) -> dict:
    """Run one of our algorithms through qgis_process and return its outputs."""
    args = ["run", ALG + algorithm] + [f"--{k}={v}" for k, v in parameters.items()]
    answer = runner.run_json(*args, timeout=600)
    if "results" not in answer:
        raise SystemExit(f"qgis_process {algorithm} failed:\n{json.dumps(answer, indent=2)}")
    return answer["results"]


def describe_basemaps(map_folder: Path) -> int:
    """Print the basemap files the map carries; the number of them that GDAL opens."""
    from osgeo import gdal, ogr

    from plugin.core.gdal_mode import gdal_exceptions
    from plugin.core.offline_map import OfflineMap

    offline_map = OfflineMap.open(map_folder)
    opened = 0
    for entry in offline_map.manifest.basemaps:
        path = offline_map.basemap_path(entry)
        if path is None or not path.is_file():
            print(f"   basemap '{entry.title}': {entry.kind}")
            continue
        with gdal_exceptions(True):
            if entry.kind == "raster":
                dataset = gdal.Open(str(path))
                what = f"{dataset.RasterXSize} x {dataset.RasterYSize} px"
            else:
                dataset = ogr.Open(str(path))
                layers = dataset.GetLayerCount()
                what = f"vector tiles, {layers} layers"
        dataset = None
        opened += 1
        size_kb = path.stat().st_size / 1024
        print(
            f"   basemap '{entry.title}': levels {entry.min_level}-{entry.max_level}, "
            f"{what}, {size_kb:.0f} KB ({path.relative_to(map_folder)})"
        )
    return opened


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def sql(text: str) -> str:
    return text.replace("'", "''")


def print_table(header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in [header] + rows:
        print("   " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    sys.exit(main())
