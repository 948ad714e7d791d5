"""A screenshot of QGIS with the Offline Map Sync panel and an offline map's layers, under Xvfb.

Outside QGIS (``python -m tests.tools.screenshot [--out PNG]``): starts the reference service,
takes the demo web map offline, makes a local edit, then starts the real QGIS desktop under
``xvfb-run`` in a throw-away profile with this working copy as an enabled plugin, and runs this
same file inside it (``qgis --code``). Inside QGIS: opens the panel, opens the map, adds it to
the project, synchronizes it through the task manager, and saves a PNG of the main window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE_VARIABLE = "OMS_SCREENSHOT_STAGE"


# -- outside QGIS ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse

    from tests.tools.qgis_process import PLUGIN_FOLDER_NAME, REPO_ROOT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=str(REPO_ROOT / "screenshots" / "qgis_offline_map_sync.png")
    )
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args(argv)
    png = Path(args.out).absolute()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()

    from tests.featureservice import seed
    from tests.featureservice.server import ReferenceServer

    with tempfile.TemporaryDirectory(prefix="oms-screenshot-") as tmp:
        work = Path(tmp)
        with ReferenceServer(work / "server", seed="demo") as server:
            folder = work / "Offline demo map"
            _take_offline(server.portal_url, seed.DEMO_WEBMAP_ID, folder)
            _edit_locally(folder)

            profiles = work / "profiles"
            plugins = profiles / "profiles" / "default" / "python" / "plugins"
            plugins.mkdir(parents=True)
            (plugins / PLUGIN_FOLDER_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
            ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
            ini.parent.mkdir(parents=True)
            ini.write_text(
                "[PythonPlugins]\n"
                f"{PLUGIN_FOLDER_NAME}=true\n"
                "[qgis]\n"
                "checkVersion=false\n"
                "showTips=false\n"
                "[UI]\n"
                "hidebrowser=true\n",
                encoding="utf-8",
            )
            env = dict(
                os.environ,
                **{
                    STAGE_VARIABLE: "inside",
                    "OMS_SCREENSHOT_MAP": str(folder),
                    "OMS_SCREENSHOT_PNG": str(png),
                    "XDG_RUNTIME_DIR": str(work / "runtime"),
                },
            )
            env.pop("QT_QPA_PLATFORM", None)  # a real X display (Xvfb) this time
            (work / "runtime").mkdir(mode=0o700)
            command = [
                "xvfb-run",
                "-a",
                "-s",
                "-screen 0 1600x1000x24",
                "qgis",
                "--profiles-path",
                str(profiles),
                "--nologo",
                "--noversioncheck",
                "--code",
                str(Path(__file__).resolve()),
            ]
            process = subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + args.timeout
            try:
                while time.monotonic() < deadline and process.poll() is None:
                    if png.exists() and png.stat().st_size > 0:
                        time.sleep(1)
                        break
                    time.sleep(0.5)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    try:
                        process.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait(20)
    if not png.exists():
        print("No screenshot was taken (QGIS did not get that far).", file=sys.stderr)
        return 1
    print(png)
    return 0


def _take_offline(portal_url: str, item_id: str, folder: Path) -> None:
    from plugin.core.rest import ArcGISClient
    from plugin.core.take_offline import OfflineMapTask

    task = OfflineMapTask(portal_url=portal_url, webmap_item_id=item_id, client=ArcGISClient())
    parameters = task.create_default_generate_offline_map_parameters(None)
    task.generate_offline_map(parameters, folder).run()


def _edit_locally(folder: Path) -> None:
    # One pending edit, so the panel shows what is waiting before the sync.
    from osgeo import ogr

    gpkg = next(folder.glob("*.gpkg"))
    source = ogr.Open(str(gpkg), update=1)
    layer = source.GetLayerByName("Points")
    feature = layer.GetNextFeature()
    feature.SetField("notes", "Edited offline for the screenshot")
    layer.SetFeature(feature)
    source = None


# -- inside QGIS -------------------------------------------------------------------------------
def inside_qgis() -> None:
    from qgis.core import QgsProject
    from qgis.PyQt.QtCore import Qt, QTimer
    from qgis.PyQt.QtWidgets import QDockWidget
    from qgis.utils import iface, loadPlugin, plugins, startPlugin

    name = "offline_map_sync"
    state = {}

    def finish() -> None:
        window = iface.mainWindow()
        window.grab().save(os.environ["OMS_SCREENSHOT_PNG"], "PNG")
        QgsProject.instance().setDirty(False)
        os._exit(0)

    def after_sync(_task) -> None:
        QTimer.singleShot(1500, finish)

    def start() -> None:
        if name not in plugins:
            loadPlugin(name)
            startPlugin(name)
        plugin = plugins[name]
        window = iface.mainWindow()
        window.showMaximized()
        window.resize(1600, 1000)
        for panel in window.findChildren(QDockWidget):
            if panel.objectName() == "Browser":
                panel.hide()
        plugin.action.setChecked(True)
        dock = plugin.dock
        state["dock"] = dock
        window.resizeDocks([dock], [470], Qt.Orientation.Horizontal)
        dock.open_map(os.environ["OMS_SCREENSHOT_MAP"])
        loaded = dock.add_to_map()
        extent = None
        for item in loaded:
            for layer in item.layers.values():
                if layer.isSpatial():
                    layer_extent = (
                        iface.mapCanvas()
                        .mapSettings()
                        .layerExtentToOutputExtent(layer, layer.extent())
                    )
                    if extent is None:
                        extent = layer_extent
                    else:
                        extent.combineExtentWith(layer_extent)
        if extent is not None:
            extent.scale(1.15)
            iface.mapCanvas().setExtent(extent)
            iface.mapCanvas().refresh()
        dock.task_finished.connect(after_sync)
        if dock.sync() is None:
            QTimer.singleShot(1500, finish)

    QTimer.singleShot(3000, start)
    # Whatever happens, never hang the caller forever.
    QTimer.singleShot(150_000, finish)


if os.environ.get(STAGE_VARIABLE) == "inside":
    inside_qgis()
elif __name__ == "__main__":
    sys.exit(main())
