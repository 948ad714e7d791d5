"""``make bench``: taking data offline, uploading and downloading, measured side by side.

Every measured step runs in a child process of its own, so its wall time, CPU time and peak
memory (``ru_maxrss`` from ``os.wait4``) are its alone; the reference service runs in another
process whose CPU time and peak memory (``VmHWM``, reset before each run) are read from /proc,
and it counts the requests it answers. Every case runs ``--runs`` times (3 by default), in
rounds of one run of every tool, so that all meet the machine's slow and fast moments alike; a row
keeps ``wall_s`` (the fastest run), ``wall_s_median``, ``peak_mb`` (the client's, largest run),
``server_peak_mb``, ``client_s`` and ``server_s`` (median CPU seconds of each side: the two
overlap in wall time, CPU time separates them) and, for our jobs, ``poll_lag_s`` (average time
from the server job's end to the client noticing it). Cases:

- take offline N point features with 10 attributes: this plugin; ``ogr2ogr`` from the layer's
  query endpoint into a GeoPackage (typed like ours: dates as dates, numbers as numbers, into a
  table with a spatial index, made before the timed run); QGIS's "Package layers" from an
  ArcGIS Feature Server layer (what a QGIS user would do today), its export timed apart from
  QGIS's start-up (``qgis_startup_s``: a user has QGIS open);
- download and apply N server changes: this plugin, and ``ogr2ogr -upsert`` of the same changed
  rows (typed the same way) into a copy of our GeoPackage (tracking triggers dropped, GlobalID
  made unique so the upsert finds the rows);
- upload 10,000 mixed local edits (attribute and geometry updates, adds, deletes);
- read in QGIS (largest size, beside ``ogr2ogr``'s GeoPackage): our geodatabase after the last
  download, opened, drawn whole, drawn in 40 small windows, 1,000 attribute edits and 1,000
  moves saved (``open_s``, ``draw_s``, ``draw_windows_s``, ``edit_s``; ``wall_s`` is their sum,
  QGIS's start-up apart): the geodatabase must stay what QGIS reads fastest.

``ogr2ogr``'s warnings are kept (``warnings``: their count; ``warning_lines``: the first few).

Usage: python tests/tools/bench.py [--sizes 10000,100000] [--runs 3] [--json bench.json]
       [--skip-qgis] [--only-ours]
Figures are printed as a table and written as JSON for comparison between commits.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYTHON = sys.executable


# -- child processes -------------------------------------------------------------------------------
def _watch_job_polls() -> list[float]:
    """Seconds from each server job's end (its ``lastUpdatedTime``) to the client seeing it."""
    from plugin.core import rest

    lags: list[float] = []
    poll_job = rest.ArcGISClient.poll_job

    def watched(self, *args, **kwargs):
        status = poll_job(self, *args, **kwargs)
        ended = status.get("lastUpdatedTime")
        if isinstance(ended, (int, float)):
            lags.append(time.time() - ended / 1000)
        return status

    rest.ArcGISClient.poll_job = watched
    return lags


def _child_plugin_offline(args: dict) -> dict:
    from plugin.core.take_offline import OfflineMapTask

    lags = _watch_job_polls()

    task = OfflineMapTask(service_urls=[args["service_url"]])
    params = task.create_default_generate_offline_map_parameters(None)
    params.include_attachments = False
    result = task.generate_offline_map(params, args["folder"]).run()
    counts = {}
    for entry in result.offline_map.geodatabases:
        with result.offline_map.open_geodatabase(entry) as gdb:
            for layer in gdb.layers:
                counts[layer.name] = _count_rows(gdb.path, layer.table_name)
    return {"rows": sum(counts.values()), "poll_lags": lags}


def _child_sync(args: dict) -> dict:
    from plugin.core.enums import SyncDirection
    from plugin.core.offline_map import OfflineMap
    from plugin.core.sync import OfflineMapSyncTask

    lags = _watch_job_polls()
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
    return {"uploaded": up, "downloaded": down, "poll_lags": lags}


def _child_qgis_package(args: dict) -> dict:
    started = time.perf_counter()
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
    from qgis.core import QgsNetworkAccessManager

    cache = QgsNetworkAccessManager.instance().cache()
    if cache is not None:  # answers cached by an earlier run are no download
        cache.clear()
    ready = time.perf_counter()
    layer = QgsVectorLayer(
        f"crs='EPSG:3857' url='{args['layer_url']}'", "LargePoints", "arcgisfeatureserver"
    )
    if not layer.isValid():
        raise SystemExit("QGIS could not load the ArcGIS Feature Server layer")
    processing.run(
        "native:package",
        {"LAYERS": [layer], "OUTPUT": args["output"], "OVERWRITE": True, "SAVE_STYLES": False},
    )
    exported = time.perf_counter()
    rows = QgsVectorLayer(f"{args['output']}|layername=LargePoints", "out", "ogr").featureCount()
    return {
        "rows": rows,
        "qgis_startup_s": round(ready - started, 2),
        "export_s": round(exported - ready, 2),
    }


#: The steps of "read in QGIS" (seconds each, kept to the millisecond: some take a few).
_READ_STEPS = ("open_s", "draw_s", "draw_windows_s", "edit_s")


def _child_qgis_read(args: dict) -> dict:
    """What a QGIS user does with a GeoPackage layer: open it, draw it whole, draw 40 small
    windows (the spatial index at work), edit 1,000 features' attributes and move 1,000 others
    and save. Seconds of each step, QGIS's start-up apart."""
    started = time.perf_counter()
    from qgis.core import (
        QgsApplication,
        QgsGeometry,
        QgsMapRendererSequentialJob,
        QgsMapSettings,
        QgsPointXY,
        QgsRectangle,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSize

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    ready = time.perf_counter()
    layer = QgsVectorLayer(f"{args['path']}|layername={args['layer']}", "read", "ogr")
    if not layer.isValid():
        raise SystemExit(f"QGIS could not open {args['path']}")
    count, extent = layer.featureCount(), layer.extent()
    opened = time.perf_counter()

    def draw(rect: QgsRectangle, pixels: int) -> None:
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(layer.crs())
        settings.setExtent(rect)
        settings.setOutputSize(QSize(pixels, pixels))
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()

    draw(extent, 1000)
    drawn = time.perf_counter()
    rng = random.Random(3)
    width, height = extent.width() / 50, extent.height() / 50
    for _ in range(40):
        x = extent.xMinimum() + rng.random() * (extent.width() - width)
        y = extent.yMinimum() + rng.random() * (extent.height() - height)
        draw(QgsRectangle(x, y, x + width, y + height), 256)
    zoomed = time.perf_counter()
    fids = sorted(f.id() for f in layer.getFeatures())[: 2 * args["edits"]]
    note = layer.fields().indexOf("note")
    layer.startEditing()
    for fid in fids[: args["edits"]]:
        layer.changeAttributeValue(fid, note, f"edited in QGIS {fid}")
    for feature in layer.getFeatures(fids[args["edits"] :]):
        point = feature.geometry().asPoint()
        layer.changeGeometry(
            feature.id(), QgsGeometry.fromPointXY(QgsPointXY(point.x() + 5, point.y() + 5))
        )
    if not layer.commitChanges():
        raise SystemExit(f"QGIS could not save the edits: {layer.commitErrors()}")
    edited = time.perf_counter()
    return {
        "rows": count,
        "qgis_startup_s": round(ready - started, 2),
        "open_s": round(opened - ready, 3),
        "draw_s": round(drawn - opened, 3),
        "draw_windows_s": round(zoomed - drawn, 3),
        "edit_s": round(edited - zoomed, 3),
        "export_s": round(edited - ready, 2),
    }


CHILDREN = {
    "plugin-offline": _child_plugin_offline,
    "sync": _child_sync,
    "qgis-package": _child_qgis_package,
    "qgis-read": _child_qgis_read,
}


def _count_rows(path, table: str) -> int:
    import sqlite3

    with closing(sqlite3.connect(str(path))) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


# -- measuring -------------------------------------------------------------------------------------
class Server:
    """The reference service in its own process, with N generated point features."""

    def __init__(self, work: Path, large: int, seed: str = "none") -> None:
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
                seed,
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

    def reset_peak(self) -> None:
        """Start a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM)."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return None

    def cpu_s(self) -> float | None:
        """User + system CPU seconds the service has used so far."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def admin(self, name: str, **fields) -> dict:
        data = urllib.parse.urlencode(dict(fields, f="json")).encode()
        with urllib.request.urlopen(f"{self.root_url}/admin/{name}", data, timeout=600) as r:
            return json.load(r)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def measure(argv: list[str], server: Server | None) -> dict:
    """Run ``argv`` as a child: wall and CPU seconds and peak MB of the child and the server,
    requests the server answered for it, warnings the child wrote (GDAL tools)."""
    if server:
        server.reset_peak()
    before = server.requests() if server else None
    server_cpu = server.cpu_s() if server else None
    started = time.perf_counter()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True, env=env
        )
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        errors.seek(0)
        error_text = errors.read()
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:4])}... failed ({child.returncode}):\n{output}\n{error_text[-3000:]}"
        )
    after = server.requests() if server else None
    server_cpu_after = server.cpu_s() if server else None
    warnings = [line for line in error_text.splitlines() if line.startswith(("Warning", "ERROR"))]
    figures = {
        "wall_s": round(wall, 2),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "client_s": round(usage.ru_utime + usage.ru_stime, 2),
        "server_s": (
            round(server_cpu_after - server_cpu, 2)
            if server_cpu is not None and server_cpu_after is not None
            else None
        ),
        "server_peak_mb": server.peak_mb() if server else None,
        "requests": (after - before) if before is not None and after is not None else None,
        "warnings": len(warnings),
        "warning_lines": sorted(set(warnings))[:5],
    }
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if lines:
        figures.update(json.loads(lines[-1]))
    return figures


def summarize(runs: list[dict]) -> dict:
    """One row from several runs: fastest and median wall time, largest peaks, median CPU."""
    walls = [r["wall_s"] for r in runs]
    row = dict(runs[-1])
    row["wall_s"] = min(walls)
    row["wall_s_median"] = round(statistics.median(walls), 2)
    row["runs"] = len(runs)
    for key in ("peak_mb", "server_peak_mb"):
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key] = max(values) if values else None
    for key in ("client_s", "server_s", "export_s", "qgis_startup_s", *_READ_STEPS):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            row[key] = round(statistics.median(values), 3 if key in _READ_STEPS else 2)
    if "export_s" in row:  # QGIS: the export alone; start-up is reported apart
        walls = [r["export_s"] for r in runs]
        row["process_wall_s"] = row["wall_s"]
        row["wall_s"] = min(walls)
        row["wall_s_median"] = round(statistics.median(walls), 2)
    row["wall_s_runs"] = [round(w, 2) for w in walls]  # in round order
    lags = [lag for r in runs for lag in r.get("poll_lags") or ()]
    row.pop("poll_lags", None)
    if lags:
        row["poll_lag_s"] = round(statistics.mean(lags), 3)
        row["poll_lag_max_s"] = round(max(lags), 3)
    row["warnings"] = max(r.get("warnings", 0) for r in runs)
    if not row["warnings"]:
        row.pop("warning_lines", None)
    return row


def child_argv(case: str, *, script: str = __file__, **args) -> list[str]:
    """The command line running ``case`` of ``script``'s children with ``args`` (JSON): the
    child side is :func:`answer_child` in ``script``'s ``main``."""
    return [PYTHON, str(Path(script).resolve()), "--child", case, "--args", json.dumps(args)]


def add_child_arguments(parser: argparse.ArgumentParser) -> None:
    """The options :func:`child_argv` passes."""
    parser.add_argument("--child")
    parser.add_argument("--args")


def answer_child(options: argparse.Namespace, children: dict) -> bool:
    """In a child (``--child`` given): run the case and print its figures as JSON; True then."""
    if not options.child:
        return False
    print(json.dumps(children[options.child](json.loads(options.args))), flush=True)
    return True


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


# -- ogr2ogr, typed like our output -----------------------------------------------------------------
_OGR_TYPES = {
    "esriFieldTypeSmallInteger": "OFTInteger",
    "esriFieldTypeInteger": "OFTInteger",
    "esriFieldTypeDouble": "OFTReal",
    "esriFieldTypeSingle": "OFTReal",
    "esriFieldTypeDate": "OFTDateTime",
}


def layer_json(server: Server) -> dict:
    with urllib.request.urlopen(f"{server.service_url}/0?f=json", timeout=60) as r:
        return json.load(r)


def typed_select(info: dict) -> str:
    """SQLite-dialect SELECT over GDAL's ESRIJSON layer that types what GDAL 3.6 reads as text
    (dates, single floats): dates as ISO date-times, numbers as numbers."""
    columns = []
    for f in info["fields"]:
        name, kind = f["name"], f["type"]
        q = '"' + name.replace('"', '""') + '"'
        if kind == "esriFieldTypeDate":
            columns.append(
                f"strftime('%Y-%m-%dT%H:%M:%fZ', CAST({q} AS INTEGER) / 1000.0, 'unixepoch') AS {q}"
            )
        elif kind in ("esriFieldTypeSingle", "esriFieldTypeDouble"):
            columns.append(f"CAST({q} AS REAL) AS {q}")
        else:
            columns.append(q)
    return f"SELECT {', '.join(columns)}, geometry FROM ESRIJSON"


def typed_table(path: Path, info: dict) -> None:
    """An empty GeoPackage table typed like the layer, with a spatial index (ogr2ogr -append
    fills it: made before the timed run, as a user would prepare a target once)."""
    from osgeo import ogr, osr

    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    oid = info.get("objectIdField", "OBJECTID")
    layer = ds.CreateLayer(
        "LargePoints", srs, ogr.wkbPoint, [f"FID={oid}", "GEOMETRY_NAME=geom", "SPATIAL_INDEX=YES"]
    )
    for f in info["fields"]:
        if f["type"] == "esriFieldTypeOID":
            continue
        defn = ogr.FieldDefn(f["name"], getattr(ogr, _OGR_TYPES.get(f["type"], "OFTString")))
        if defn.GetType() == ogr.OFTString and f.get("length"):
            defn.SetWidth(int(f["length"]))
        layer.CreateField(defn)
    ds = None


def ogr2ogr_argv(
    ogr2ogr: str, mode: str, target: Path, server: Server, info: dict, where: str = "1=1"
) -> list[str]:
    """``ogr2ogr`` writing the rows of the layer's query endpoint, typed, into ``target``."""
    source = (
        f"ESRIJSON:{server.service_url}/0/query?where={urllib.parse.quote(where)}&outFields=*"
        "&f=json&orderByFields=OBJECTID"
    )
    sql = typed_select(info)
    return [
        ogr2ogr,
        mode,
        str(target),
        source,
        "-nln",
        "LargePoints",
        "-dialect",
        "SQLite",
        "-sql",
        sql,
    ]


def upsert_target(folder: Path, target: Path, info: dict) -> None:
    """A copy of our GeoPackage that ``ogr2ogr -upsert`` can update: no tracking triggers (they
    are ours, not GDAL's), and a unique GlobalID, the key the upsert matches rows on."""
    _remove_gpkg(target)
    source = sqlite3.connect(next(folder.glob("*.gpkg")))
    copy = sqlite3.connect(target)
    source.backup(copy)  # with what is still in the -wal file
    source.close()
    copy.close()
    with closing(sqlite3.connect(target)) as conn, conn:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'oms\\_%' ESCAPE '\\'"
        ).fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        gid = info.get("globalIdField") or "GlobalID"
        conn.execute(f'CREATE UNIQUE INDEX bench_unique_gid ON LargePoints ("{gid}")')


def _remove_gpkg(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- the run -----------------------------------------------------------------------------------------
def run(
    sizes: list[int],
    json_path: Path,
    skip_qgis: bool,
    work: Path,
    runs: int = 3,
    only_ours: bool = False,
) -> list[dict]:
    rows: list[dict] = []

    def record(case: str, tool: str, size: int, output: str, results: list[dict]) -> dict:
        row = {"case": case, "tool": tool, "size": size, "output": output, **summarize(results)}
        rows.append(row)
        print(
            f"  {case:<20} {tool:<26} {size:>8}  {row['wall_s']:>7.2f} {row['wall_s_median']:>7.2f} s"
            f"  {row['peak_mb']:>7.1f} MB  {_fmt(row.get('server_peak_mb')):>7} MB"
            f"  {_fmt(row.get('client_s')):>6} {_fmt(row.get('server_s')):>6} s"
            f"  {_fmt(row.get('poll_lag_s')):>6} s  {row.get('warnings') or '':>4}",
            flush=True,
        )
        return row

    ogr2ogr = None if only_ours else shutil.which("ogr2ogr")
    ours = "offline map sync"
    for size in sizes:
        server = Server(work, size)
        try:
            info = layer_json(server)
            folder = work / f"map-{size}"
            # Round by round, every tool once per round: each tool meets the machine's slow and
            # fast moments alike (on a shared machine they come and go within minutes).
            offline, ogr, qgis, ours_down, upserts = [], [], [], [], []
            for _ in range(runs):
                shutil.rmtree(folder, ignore_errors=True)
                argv = child_argv(
                    "plugin-offline", service_url=server.service_url, folder=str(folder)
                )
                offline.append(measure(argv, server))
                if ogr2ogr:
                    out = work / f"ogr2ogr-{size}.gpkg"
                    _remove_gpkg(out)
                    typed_table(out, info)
                    argv = ogr2ogr_argv(ogr2ogr, "-append", out, server, info)
                    figures = measure(argv, server)
                    figures["rows"] = _count_rows(out, "LargePoints")
                    ogr.append(figures)
                if not skip_qgis and not only_ours:
                    argv = child_argv(
                        "qgis-package",
                        layer_url=f"{server.service_url}/0",
                        output=str(work / f"qgis-{size}.gpkg"),
                    )
                    qgis.append(measure(argv, server))
                server_changes(server, size)
                if ogr2ogr:
                    target = work / f"upsert-{size}.gpkg"
                    upsert_target(folder, target, info)
                    where = f"OBJECTID<={size}"  # the rows server_changes changed
                    argv = ogr2ogr_argv(ogr2ogr, "-upsert", target, server, info, where)
                    upserts.append(measure(argv, server))
                    _remove_gpkg(target)
                argv = child_argv("sync", folder=str(folder), direction="DOWNLOAD")
                ours_down.append(measure(argv, server))
            record("take offline", ours, size, "typed, indexed, tracked, a replica", offline)
            if ogr:
                record("take offline", "ogr2ogr (query)", size, "typed, indexed", ogr)
            if qgis:
                record("take offline", "QGIS Package layers", size, "typed, indexed", qgis)
            record(
                "download and apply", ours, size, "typed, indexed, tracked, a replica", ours_down
            )
            if upserts:
                record(
                    "download and apply", "ogr2ogr -upsert (query)", size, "typed, indexed", upserts
                )
            if ogr and size == max(sizes) and not skip_qgis:
                # The GeoPackages as a QGIS user then reads and edits them: ours after the last
                # download (its spatial index refitted), and GDAL's own, side by side.
                reads: dict[str, list] = {ours: [], "ogr2ogr (query)": []}
                for _ in range(runs):
                    for tool, path in (
                        (ours, next(folder.glob("*.gpkg"))),
                        ("ogr2ogr (query)", work / f"ogr2ogr-{size}.gpkg"),
                    ):
                        argv = child_argv(
                            "qgis-read", path=str(path), layer="LargePoints", edits=1000
                        )
                        reads[tool].append(measure(argv, None))
                for tool, results in reads.items():
                    record(
                        "read in QGIS", tool, size, "open, draw, 40 windows, 2,000 edits", results
                    )
            if size == min(sizes):
                results = []
                for attempt in range(runs):
                    edits = make_local_edits(
                        folder, 10_000 if size >= 10_000 else size, seed=7 + attempt
                    )
                    argv = child_argv("sync", folder=str(folder), direction="UPLOAD")
                    results.append(measure(argv, server))
                record("upload edits", ours, edits, "", results)
        finally:
            server.stop()

    by = {(r["case"], r["tool"], r["size"]): r for r in rows}
    small, large = min(sizes), max(sizes)
    ratios = {}
    if small != large:
        for case in ("take offline", "download and apply"):
            a, b = by.get((case, ours, small)), by.get((case, ours, large))
            if a and b:
                ratios[f"{case} {large}/{small}"] = round(b["wall_s"] / a["wall_s"], 2)
                # The fastest of short runs catches the machine's fast moments more easily
                # than the fastest of long ones: the medians' ratio is shown beside it.
                ratios[f"{case} {large}/{small}, medians"] = round(
                    b["wall_s_median"] / a["wall_s_median"], 2
                )
    pairs = (
        (("take offline", ours), ("take offline", "ogr2ogr (query)")),
        (("download and apply", ours), ("download and apply", "ogr2ogr -upsert (query)")),
        (("download and apply", ours), ("take offline", ours)),
        (("read in QGIS", ours), ("read in QGIS", "ogr2ogr (query)")),
    )
    for size in sizes:
        for (case, tool), (other_case, other_tool) in pairs:
            this, other = by.get((case, tool, size)), by.get((other_case, other_tool, size))
            if this and other:
                label = f"{case} {size}: ours / {other_tool} {other_case}"
                ratios[label] = round(this["wall_s"] / other["wall_s"], 2)
                # Runs of one round ran side by side: the median of their ratios.
                ratios[f"{label}, per round"] = round(
                    statistics.median(
                        a / b for a, b in zip(this["wall_s_runs"], other["wall_s_runs"])
                    ),
                    2,
                )
    print()
    for label, ratio in ratios.items():
        print(f"  {label}: {ratio}")
    json_path.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "runs": runs,
                "rows": rows,
                "ratios": ratios,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"\n  written to {json_path}")
    return rows


def _fmt(value) -> str:
    return "-" if value is None else f"{value:g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--json", default=".bench/bench.json", type=Path)
    parser.add_argument("--runs", type=int, default=3, help="runs per case (at least 3)")
    parser.add_argument("--skip-qgis", action="store_true")
    parser.add_argument(
        "--only-ours", action="store_true", help="this plugin only (no ogr2ogr, no QGIS)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    add_child_arguments(parser)
    options = parser.parse_args()
    if answer_child(options, CHILDREN):
        return 0
    sizes = sorted(int(s) for s in options.sizes.split(","))
    options.json.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="oms-bench-"))
    print(
        f"  {'case':<20} {'tool':<26} {'size':>8}  {'min':>7} {'median':>7}    {'peak':>7}     "
        f"{'server':>7}     {'client':>6} {'server':>6}    {'poll lag':>8} {'warn':>4}"
    )
    try:
        run(sizes, options.json, options.skip_qgis, work, options.runs, options.only_ours)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
