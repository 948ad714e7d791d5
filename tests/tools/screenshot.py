"""A screenshot of QGIS with the Offline Map Sync panel and an offline map's layers, under Xvfb.

Outside QGIS (``python -m tests.tools.screenshot [--out PNG]``): starts the reference service,
takes the demo web map offline, makes a local edit, then starts the real QGIS desktop under
``xvfb-run`` in a throw-away profile with this working copy as an enabled plugin, and runs this
same file inside it (``qgis --code``). Inside QGIS: opens the panel, opens the map, adds it to
the project, synchronizes it through the task manager, edits a feature with QGIS's editing
tools, saves PNGs of the Take offline dialog (preplanned map areas listed) and of the Remove
confirmation (``<name>_take_offline.png``, ``<name>_remove.png``), and last the main window.
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
            server.prepare_map_areas()

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
                    "OMS_SCREENSHOT_PORTAL": server.portal_url,
                    "OMS_SCREENSHOT_WEBMAP": seed.DEMO_WEBMAP_ID,
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

    png = Path(os.environ["OMS_SCREENSHOT_PNG"])

    def ours(module: str):
        # Inside QGIS the plugin is the package "offline_map_sync", not "plugin".
        import importlib

        return importlib.import_module(f"{name}.plugin.{module}")

    def guarded(function, *args):
        # An error in a timer callback would vanish inside QGIS: note it and carry on.
        def call():
            try:
                function(*args)
            except Exception:  # noqa: BLE001
                import traceback

                with open(png.with_suffix(".log"), "a", encoding="utf-8") as log:
                    log.write(traceback.format_exc())
                finish()

        return call

    def side_png(suffix: str) -> str:
        return str(png.with_name(f"{png.stem}_{suffix}.png"))

    def edit_after_sync() -> None:
        # A pending edit made the QGIS way, so the panel and the removal dialog show one.
        layers = ours("layers")
        dock = state["dock"]
        for layer in layers.offline_map_layers(dock.offline_map.folder):
            if layer.customProperty(layers.PROPERTY_LAYER_ID) == 0 and layer.customProperty(
                layers.PROPERTY_ATTACHMENTS
            ) in (None, ""):
                feature = next(layer.getFeatures())
                layer.startEditing()
                layer.changeAttributeValue(
                    feature.id(), layer.fields().lookupField("notes"), "Edited after the sync"
                )
                layer.commitChanges()
                break

    def take_offline_dialog() -> None:
        dialog = ours("gui.take_offline_dialog").TakeOfflineDialog(iface, iface.mainWindow())
        state["take_offline"] = dialog
        dialog.portalEdit.setText(os.environ["OMS_SCREENSHOT_PORTAL"])
        dialog.itemEdit.setText(os.environ["OMS_SCREENSHOT_WEBMAP"])
        dialog.preplannedRadio.setChecked(True)
        dialog.folderWidget.setFilePath(str(Path.home() / "Offline maps" / "West half"))
        dialog.show()
        task = dialog.list_areas()

        def listed(_task=None) -> None:
            dialog.areasList.setCurrentRow(dialog.areasList.count() - 1)
            QTimer.singleShot(500, guarded(grab_dialog, dialog, "take_offline", remove_dialog))

        if task is None:
            listed()
        else:
            task.done.connect(guarded(listed))

    def remove_dialog() -> None:
        dock = state["dock"]
        plan = ours("core.removal").plan_offline_map_removal(dock.offline_map)
        layers = ours("layers").offline_map_layers(dock.offline_map.folder)
        dialog = ours("gui.remove_dialog").RemoveDialog(plan, len(layers), iface.mainWindow())
        state["remove"] = dialog
        dialog.show()
        QTimer.singleShot(500, guarded(grab_dialog, dialog, "remove", finish))

    def grab_dialog(dialog, suffix: str, then) -> None:
        dialog.grab().save(side_png(suffix), "PNG")
        dialog.close()
        QTimer.singleShot(300, guarded(then))

    def after_sync(_task) -> None:
        guarded(edit_after_sync)()
        QTimer.singleShot(1000, guarded(take_offline_dialog))

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
