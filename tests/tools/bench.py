"""``make bench``: taking data offline, uploading and downloading, measured side by side.

Every measured step runs in a child process of its own, so its wall time and peak memory
(``ru_maxrss`` from ``os.wait4``) are its alone; the reference service runs in another process
and counts the requests it answers. Cases:

- take offline N point features with 10 attributes: this plugin, ``ogr2ogr`` from the layer's
  query endpoint into a GeoPackage, and QGIS's "Package layers" from an ArcGIS Feature Server
  layer (what a QGIS user would do today);
- upload 10,000 mixed local edits (attribute and geometry updates, adds, deletes);
- download and apply N server changes.

Usage: python tests/tools/bench.py [--sizes 10000,100000] [--json bench.json] [--skip-qgis]
Figures are printed as a table and written as JSON for comparison between commits.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYTHON = sys.executable


# -- child processes -------------------------------------------------------------------------------
def _child_plugin_offline(args: dict) -> dict:
    from plugin.core.take_offline import OfflineMapTask

    task = OfflineMapTask(service_urls=[args["service_url"]])
    params = task.create_default_generate_offline_map_parameters(None)
    params.include_attachments = False
    result = task.generate_offline_map(params, args["folder"]).run()
    counts = {}
    for entry in result.offline_map.geodatabases:
        with result.offline_map.open_geodatabase(entry) as gdb:
            for layer in gdb.layers:
                counts[layer.name] = _count_rows(gdb.path, layer.table_name)
    return {"rows": sum(counts.values())}


def _child_sync(args: dict) -> dict:
    from plugin.core.enums import SyncDirection
    from plugin.core.offline_map import OfflineMap
    from plugin.core.sync import OfflineMapSyncTask

    task = OfflineMapSyncTask(OfflineMap.open(args["folder"]))
    task.load()
    params = task.create_default_offline_map_sync_parameters()
    params.sync_direction = SyncDirection[args["direction"]]
    result = task.create_offline_map_sync_job(params).run()
    if result.has_errors:
        raise SystemExit(f"sync reported errors: {result}")
    up = down = 0
    for layer in result.all_results():
        up += layer.uploaded.total
        down += layer.downloaded.total
    return {"uploaded": up, "downloaded": down}


def _child_qgis_package(args: dict) -> dict:
    from qgis.core import QgsApplication, QgsVectorLayer

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing
    from qgis import processing
    from qgis.analysis import QgsNativeAlgorithms

    Processing.initialize()
    QgsApplication.processingRegistry().addProvider(QgsNativeAlgorithms())
    layer = QgsVectorLayer(
        f"crs='EPSG:3857' url='{args['layer_url']}'", "LargePoints", "arcgisfeatureserver"
    )
    if not layer.isValid():
        raise SystemExit("QGIS could not load the ArcGIS Feature Server layer")
    processing.run(
        "native:package",
        {"LAYERS": [layer], "OUTPUT": args["output"], "OVERWRITE": True, "SAVE_STYLES": False},
    )
    rows = QgsVectorLayer(f"{args['output']}|layername=LargePoints", "out", "ogr").featureCount()
    return {"rows": rows}


CHILDREN = {
    "plugin-offline": _child_plugin_offline,
    "sync": _child_sync,
    "qgis-package": _child_qgis_package,
}


def _count_rows(path, table: str) -> int:
    import sqlite3

    with sqlite3.connect(str(path)) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


# -- measuring -------------------------------------------------------------------------------------
class Server:
    """The reference service in its own process, with N generated point features."""

    def __init__(self, work: Path, large: int) -> None:
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "tests.featureservice",
                "--data",
                str(work / f"server-{large}"),
                "--port",
                "0",
                "--seed",
                "none",
                "--large",
                str(large),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.root_url = self.process.stdout.readline().strip()
        if not self.root_url.startswith("http"):
            raise SystemExit("the reference service did not start")
        self.service_url = f"{self.root_url}/rest/services/Large/FeatureServer"

    def requests(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.root_url}/admin/stats?f=json", timeout=30) as r:
                return int(json.load(r).get("requests"))
        except Exception:
            return None

    def admin(self, name: str, **fields) -> dict:
        data = urllib.parse.urlencode(dict(fields, f="json")).encode()
        with urllib.request.urlopen(f"{self.root_url}/admin/{name}", data, timeout=600) as r:
            return json.load(r)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def measure(argv: list[str], server: Server | None) -> dict:
    """Run ``argv`` as a child; wall seconds, peak MB, requests the server answered for it."""
    before = server.requests() if server else None
    started = time.perf_counter()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True, env=env
        )
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        errors.seek(0)
        error_text = errors.read()[-3000:]
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:4])}... failed ({child.returncode}):\n{output}\n{error_text}"
        )
    after = server.requests() if server else None
    figures = {
        "wall_s": round(wall, 2),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "requests": (after - before) if before is not None and after is not None else None,
    }
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if lines:
        figures.update(json.loads(lines[-1]))
    return figures


def child_argv(case: str, **args) -> list[str]:
    return [PYTHON, str(Path(__file__).resolve()), "--child", case, "--args", json.dumps(args)]


def make_local_edits(folder: Path, count: int, seed: int = 7) -> int:
    """``count`` mixed edits through OGR, as QGIS would make them: 60 % attribute updates,
    20 % geometry moves, 10 % adds, 10 % deletes."""
    from osgeo import ogr

    gpkg = next(folder.glob("*.gpkg"))
    rng = random.Random(seed)
    ds = ogr.Open(str(gpkg), 1)
    layer = ds.GetLayerByName("LargePoints") or ds.GetLayer(0)
    fids = [f.GetFID() for f in layer]
    rng.shuffle(fids)
    n_attr, n_geom, n_add = int(count * 0.6), int(count * 0.2), int(count * 0.1)
    n_del = count - n_attr - n_geom - n_add
    made = 0
    ds.StartTransaction()
    for fid in fids[:n_attr]:
        feature = layer.GetFeature(fid)
        feature.SetField("note", f"edited offline {fid}")
        layer.SetFeature(feature)
        made += 1
    for fid in fids[n_attr : n_attr + n_geom]:
        feature = layer.GetFeature(fid)
        point = feature.GetGeometryRef().Clone()
        point.SetPoint_2D(0, point.GetX() + 5, point.GetY() + 5)
        feature.SetGeometry(point)
        layer.SetFeature(feature)
        made += 1
    template = layer.GetFeature(fids[0])
    for i in range(n_add):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", f"new {i}")
        feature.SetField("category", 1)
        feature.SetGeometry(template.GetGeometryRef().Clone())
        layer.CreateFeature(feature)
        made += 1
    for fid in fids[n_attr + n_geom : n_attr + n_geom + n_del]:
        layer.DeleteFeature(fid)
        made += 1
    ds.CommitTransaction()
    ds = None
    return made


def server_changes(server: Server, count: int) -> None:
    """Change ``count`` features on the service, as another user would."""
    answer = server.admin("bulkUpdate", service="Large", layer=0, count=count)
    if answer.get("error"):
        raise SystemExit(f"bulkUpdate failed: {answer['error']}")


def run(sizes: list[int], json_path: Path, skip_qgis: bool, work: Path) -> list[dict]:
    rows: list[dict] = []

    def record(case: str, tool: str, size: int, figures: dict) -> None:
        row = {"case": case, "tool": tool, "size": size, **figures}
        rows.append(row)
        print(
            f"  {case:<28} {tool:<22} {size:>7}  {row['wall_s']:>8.2f} s  "
            f"{row['peak_mb']:>7.1f} MB  {row.get('requests') if row.get('requests') is not None else '-':>6} req",
            flush=True,
        )

    ogr2ogr = shutil.which("ogr2ogr")
    for size in sizes:
        server = Server(work, size)
        try:
            folder = work / f"map-{size}"
            record(
                "take offline",
                "offline map sync",
                size,
                measure(
                    child_argv(
                        "plugin-offline", service_url=server.service_url, folder=str(folder)
                    ),
                    server,
                ),
            )
            if ogr2ogr:
                out = work / f"ogr2ogr-{size}.gpkg"
                url = (
                    f"ESRIJSON:{server.service_url}/0/query?where=1%3D1&outFields=*&f=json"
                    "&orderByFields=OBJECTID"
                )
                figures = measure(
                    [ogr2ogr, "-f", "GPKG", str(out), url, "-nln", "LargePoints"], server
                )
                figures["rows"] = _count_rows(out, "LargePoints")
                record("take offline", "ogr2ogr (query)", size, figures)
            if not skip_qgis:
                record(
                    "take offline",
                    "QGIS Package layers",
                    size,
                    measure(
                        child_argv(
                            "qgis-package",
                            layer_url=f"{server.service_url}/0",
                            output=str(work / f"qgis-{size}.gpkg"),
                        ),
                        server,
                    ),
                )
            server_changes(server, size)
            record(
                "download and apply",
                "offline map sync",
                size,
                measure(child_argv("sync", folder=str(folder), direction="DOWNLOAD"), server),
            )
            if size == min(sizes):
                edits = make_local_edits(folder, 10_000 if size >= 10_000 else size)
                record(
                    "upload edits",
                    "offline map sync",
                    edits,
                    measure(child_argv("sync", folder=str(folder), direction="UPLOAD"), server),
                )
        finally:
            server.stop()

    by = {(r["case"], r["tool"], r["size"]): r for r in rows}
    small, large = min(sizes), max(sizes)
    ratios = {}
    if small != large:
        for case in ("take offline", "download and apply"):
            a, b = (
                by.get((case, "offline map sync", small)),
                by.get((case, "offline map sync", large)),
            )
            if a and b:
                ratios[case] = round(b["wall_s"] / a["wall_s"], 2)
    print()
    for case, ratio in ratios.items():
        print(
            f"  cost ratio {large // 1000}k/{small // 1000}k, {case}: {ratio}  (linear = {large / small:g})"
        )
    json_path.write_text(
        json.dumps(
            {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows, "ratios": ratios}, indent=2
        ),
        encoding="utf-8",
    )
    print(f"\n  written to {json_path}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--json", default=".bench/bench.json", type=Path)
    parser.add_argument("--skip-qgis", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child")
    parser.add_argument("--args")
    options = parser.parse_args()
    if options.child:
        print(json.dumps(CHILDREN[options.child](json.loads(options.args))), flush=True)
        return 0
    sizes = sorted(int(s) for s in options.sizes.split(","))
    options.json.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="oms-bench-"))
    print(f"  {'case':<28} {'tool':<22} {'size':>7}  {'wall':>10}  {'peak':>10}  {'':>6}")
    try:
        run(sizes, options.json, options.skip_qgis, work)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
