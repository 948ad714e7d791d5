"""Screenshots of QGIS with the Offline Map Sync panel, taken by clicking, under Xvfb.

Outside QGIS (``python -m tests.tools.screenshot [--out PNG]``): starts the reference service,
then starts the real QGIS desktop under ``xvfb-run`` in a throw-away profile with this working
copy as an enabled plugin, and runs this same file inside it (``qgis --code``). Inside QGIS the
whole job is done the way a user does it, with clicks (``tests/gui_user.py``): the toolbar
button opens the panel, Take offline… is filled in and answered, Add to map, a feature form with
its related rows and attachments (a site photo added with the attachments editor), an edit in an
edit session, Sync (answering the save question) against a server that deleted the edited
feature, the conflict log, a sync that fails, and last Sign in… with a portal's built-in
account (the browser played by a plain HTTP client filling the portal's sign-in form, the auth
database's master password set in the throw-away profile) and Sign out while that portal holds
the revoke request (the 'hold' fault, released once the signed-out screenshot exists). It saves
``<name>_1_take_offline.png``, ``_1b_basemap.png`` (the basemap's estimate),
``_2_feature_form.png``, ``_3_sync_conflict.png``, ``_4_conflict_log.png``,
``_5_sync_failed.png``, ``_6_signed_in.png``, ``_7_signed_out.png`` (the panel signed out, the
revoke still running in QGIS's task bar) next to ``--out``, and last ``--out`` itself: the main
window with the panel and the map's layers. What went wrong is written to ``<name>.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
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
    for old in (png, png.with_suffix(".log"), *png.parent.glob(f"{png.stem}_*.png")):
        old.unlink(missing_ok=True)

    from tests.featureservice import seed
    from tests.featureservice.oauth import DEFAULT_CLIENT_ID
    from tests.featureservice.server import ReferenceServer

    user, password = "alice", "alice-secret"
    signed_out_png = png.with_name(f"{png.stem}_7_signed_out.png")
    with tempfile.TemporaryDirectory(prefix="oms-screenshot-") as tmp:
        work = Path(tmp)
        with (
            ReferenceServer(work / "server", seed="demo") as server,
            ReferenceServer(work / "portal", seed="demo", users={user: password}) as portal,
        ):
            # Signing out asks this portal to revoke the sign-in: it holds that request until
            # the signed-out screenshot exists, so the screenshot shows whether QGIS waited.
            release = threading.Event()
            portal.inject_fault("oauth_revoke", "hold", release=release, seconds=60)
            folder = work / "Offline maps" / "Demo offline map"
            folder.parent.mkdir()

            profiles = work / "profiles"
            plugins = profiles / "profiles" / "default" / "python" / "plugins"
            plugins.mkdir(parents=True)
            (plugins / PLUGIN_FOLDER_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
            ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
            ini.parent.mkdir(parents=True)
            ini.write_text(
                "[PythonPlugins]\n"
                f"{PLUGIN_FOLDER_NAME}=true\n"
                "[offline_map_sync]\n"
                "plain_http_hosts=127.0.0.1\n"
                "[auth]\n"
                "password_helper_enabled=false\n"
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
                    "OMS_SCREENSHOT_SERVICE": server.service_url(seed.DEMO_SERVICE),
                    "OMS_SCREENSHOT_ADMIN": server.root_url + "/admin",
                    "OMS_SCREENSHOT_FORM": seed.POINT_NAMES[0],
                    "OMS_SCREENSHOT_CONFLICT": seed.POINT_NAMES[3],
                    "OMS_SCREENSHOT_SIGN_IN_PORTAL": portal.portal_url,
                    "OMS_SCREENSHOT_CLIENT_ID": DEFAULT_CLIENT_ID,
                    "OMS_SCREENSHOT_USER": user,
                    "OMS_SCREENSHOT_PASSWORD": password,
                    "PYTHONPATH": os.pathsep.join(
                        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
                    ),
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
            # QGIS's and xvfb-run's output goes to a file: shown when no screenshot comes.
            output_log = work / "qgis-output.txt"
            with open(output_log, "wb") as output:
                process = subprocess.Popen(
                    command,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + args.timeout
            exited = None
            try:
                while time.monotonic() < deadline and exited is None:
                    if png.exists() and png.stat().st_size > 0:
                        time.sleep(1)
                        break
                    if signed_out_png.exists() and not release.is_set():
                        release.set()
                    time.sleep(0.5)
                    exited = process.poll()
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    try:
                        process.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait(20)
                release.set()
            if png.exists() and portal.oauth.refresh_token_count():
                _note(png, "Signing out did not revoke the sign-in at the portal.")
            if not png.exists():
                if exited is None:
                    print(f"No screenshot within {args.timeout:.0f} s.", file=sys.stderr)
                else:
                    print(f"No screenshot: xvfb-run exited with {exited}.", file=sys.stderr)
                _print_tail("Output of xvfb-run and QGIS", output_log)
    log = png.with_suffix(".log")
    if log.exists():
        print(log.read_text(encoding="utf-8"), file=sys.stderr)
    if not png.exists():
        return 1
    print(png)
    return 0


def _note(png: Path, text: str) -> None:
    """Note what went wrong in ``<name>.log`` (its existence fails the screenshot test)."""
    with open(png.with_suffix(".log"), "a", encoding="utf-8") as log:
        log.write(text.rstrip("\n") + "\n")


def _print_tail(title: str, path: Path, lines: int = 40) -> None:
    said = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
    if said:
        print(f"{title} (last {min(lines, len(said))} lines):", file=sys.stderr)
        print("\n".join(said[-lines:]), file=sys.stderr)


# -- inside QGIS -------------------------------------------------------------------------------
def inside_qgis() -> None:
    from qgis.core import QgsProject
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QDockWidget
    from qgis.utils import iface, loadPlugin, plugins, startPlugin

    name = "offline_map_sync"
    png = Path(os.environ["OMS_SCREENSHOT_PNG"])

    def finish() -> None:
        QgsProject.instance().setDirty(False)
        os._exit(0)

    def start() -> None:
        try:
            if name not in plugins:
                loadPlugin(name)
                startPlugin(name)
            _walk(plugins[name], iface, png)
        except Exception:  # noqa: BLE001 (an error inside QGIS would vanish: note it)
            import traceback

            _note(png, traceback.format_exc())
        finish()

    window = iface.mainWindow()
    window.showMaximized()
    window.resize(1600, 1000)
    for panel in window.findChildren(QDockWidget):
        if panel.objectName() == "Browser":
            panel.hide()
    QTimer.singleShot(3000, start)
    # Whatever happens, never hang the caller forever.
    QTimer.singleShot(170_000, finish)


def _walk(plugin, iface, png: Path) -> None:
    """The job done by clicks inside QGIS, saving a PNG at each step worth showing."""
    import requests
    from qgis.core import QgsExpression, QgsFeatureRequest, QgsSettings
    from qgis.PyQt.QtCore import QPoint, Qt
    from qgis.PyQt.QtWidgets import (
        QApplication,
        QDialogButtonBox,
        QDockWidget,
        QFileDialog,
        QMessageBox,
        QTreeWidget,
    )

    from tests.gui_user import (
        answering,
        button_named,
        choose_file,
        click,
        click_item,
        process_events,
        type_into,
    )

    env = os.environ
    window = iface.mainWindow()

    def shot(widget, suffix: str | None) -> None:
        process_events(0.6)
        target = png if suffix is None else png.with_name(f"{png.stem}_{suffix}.png")
        widget.grab().save(str(target), "PNG")

    def idle(dock) -> None:
        deadline = time.monotonic() + 90
        while dock.task is not None and time.monotonic() < deadline:
            process_events(0.1)

    def feature_named(layer, text: str):
        request = QgsFeatureRequest().setFilterExpression(
            QgsExpression.createFieldEqualityExpression("name", text)
        )
        return next(layer.getFeatures(request))

    # The toolbar button opens the panel.
    click(plugin.toolbar.widgetForAction(plugin.action))
    dock = plugin.dock
    window.resizeDocks([dock], [470], Qt.Orientation.Horizontal)

    # Take offline…: the web map, everything, with attachments.
    def take_offline(dialog) -> None:
        type_into(dialog.portalEdit, env["OMS_SCREENSHOT_PORTAL"])
        type_into(dialog.itemEdit, env["OMS_SCREENSHOT_WEBMAP"])
        type_into(dialog.folderWidget, env["OMS_SCREENSHOT_MAP"])
        click(dialog.listLayersButton)
        deadline = time.monotonic() + 60
        while dialog.task is not None and time.monotonic() < deadline:
            process_events(0.1)
        dialog.scrollArea.verticalScrollBar().setValue(0)
        shot(dialog, "1_take_offline")
        # The basemap: its tiles and size estimated before anything is downloaded.
        basemap = dialog.basemapSection
        dialog.scrollArea.ensureWidgetVisible(basemap)
        click(basemap.estimateButton)
        deadline = time.monotonic() + 60
        while basemap.task is not None and time.monotonic() < deadline:
            process_events(0.1)
        shot(dialog, "1b_basemap")
        click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Ok))

    with answering(take_offline):
        click(dock.takeOfflineButton)
    idle(dock)

    # Add to map, and look at the map's layers.
    click(dock.addToMapButton)
    layers = _map_layers(dock)
    points = layers["points"]
    canvas = iface.mapCanvas()
    extent = None
    for layer in layers["spatial"]:
        box = canvas.mapSettings().layerExtentToOutputExtent(layer, layer.extent())
        extent = box if extent is None else extent.combineExtentWith(box) or extent
    if extent is not None:
        extent.scale(1.15)
        canvas.setExtent(extent)
        canvas.refresh()
    process_events(1.5)
    panel_image = window.grab()

    # A feature's form, opened as a user does: the Identify tool, a click on the point.
    feature = feature_named(points, env["OMS_SCREENSHOT_FORM"])
    QgsSettings().setValue("Map/identifyAutoFeatureForm", True)
    QgsSettings().setValue("Map/identifyMode", 0)  # the active layer
    iface.setActiveLayer(points)
    iface.actionIdentify().trigger()
    where = canvas.mapSettings().layerToMapCoordinates(points, feature.geometry().asPoint())
    pixel = canvas.getCoordinateTransform().transform(where)
    before = set(QApplication.topLevelWidgets())
    click(canvas.viewport(), QPoint(round(pixel.x()), round(pixel.y())))
    form = _new_window(before, "QgsAttributeDialog")
    if form is None:  # the profile does not open forms on identify: the same form, asked for
        iface.openFeatureForm(points, feature, False, False)
        form = _new_window(before, "QgsAttributeDialog")
    form.resize(760, 860)
    # Its attachments: Edit, then Add… a site photo (the file dialog answered by typing).
    photo = Path(env["OMS_SCREENSHOT_MAP"]).parent / "site photo.jpg"
    _site_photo(photo)
    editor = form.findChild(QTreeWidget, "attachmentsList").parentWidget()
    click(button_named(editor, "Edit"))
    with answering(choose_file(photo), QFileDialog):
        click(button_named(editor, "Add…"))
    shot(form, "2_feature_form")
    form.close()
    iface.actionPan().trigger()
    # The Identify tool opened its results panel: the user closes it again.
    for panel in window.findChildren(QDockWidget):
        if panel.objectName() == "IdentifyResultsDock":
            panel.close()
    window.resize(1600, 1000)

    # An edit in an edit session; meanwhile the office deletes that very point.
    edited = feature_named(points, env["OMS_SCREENSHOT_CONFLICT"])
    points.startEditing()
    points.changeAttributeValue(edited.id(), points.fields().lookupField("status"), "damaged")
    requests.post(
        env["OMS_SCREENSHOT_SERVICE"] + "/0/applyEdits",
        data={"f": "json", "deletes": f'["{edited["GlobalID"]}"]', "useGlobalIds": "true"},
        timeout=30,
    ).raise_for_status()

    # Sync asks to save the edit first: Save.
    def save(box) -> None:
        click(box.button(QMessageBox.StandardButton.Save))

    with answering(save, QMessageBox):
        click(dock.syncButton)
    idle(dock)
    shot(window, "3_sync_conflict")

    # The conflict log, with the local version that lost.
    def look_at_log(dialog) -> None:
        click_item(dialog.conflictTable, dialog.conflictTable.item(0, 1))
        shot(dialog, "4_conflict_log")
        click(dialog.buttonBox.button(QDialogButtonBox.StandardButton.Close))

    with answering(look_at_log):
        click(dock.conflictsButton)

    # A sync that fails: the service answers every sync with an error.
    requests.post(
        env["OMS_SCREENSHOT_ADMIN"] + "/faults",
        data={
            "f": "json",
            "operation": "synchronizeReplica",
            "kind": "json_error",
            "count": "20",
            "opts": '{"message": "The service is down for maintenance until 18:00."}',
        },
        timeout=30,
    ).raise_for_status()
    click(dock.syncButton)
    idle(dock)
    shot(window, "5_sync_failed")

    _sign_in_and_out(dock, window, shot, png)
    panel_image.save(str(png), "PNG")


def _sign_in_and_out(dock, window, shot, png: Path) -> None:
    """Sign in… with the portal's built-in account, then Sign out while the portal holds the
    revoke request: the panel must show "signed out" while the revoke still runs."""
    from qgis.core import QgsApplication

    from tests.form_browser import form_browser
    from tests.gui_user import answering, click, process_events, type_into

    env = os.environ
    # The throw-away profile's auth database gets its master password here, so that QGIS
    # never asks for one (a new profile has none yet).
    if not QgsApplication.authManager().setMasterPassword("screenshot-master-password", True):
        raise RuntimeError("The throw-away profile's auth database refused a master password.")
    bar = dock.signInBar
    bar.open_browser = form_browser(env["OMS_SCREENSHOT_USER"], env["OMS_SCREENSHOT_PASSWORD"])

    def sign_in(dialog) -> None:
        type_into(dialog.portalEdit, env["OMS_SCREENSHOT_SIGN_IN_PORTAL"])
        type_into(dialog.clientIdEdit, env["OMS_SCREENSHOT_CLIENT_ID"])
        click(dialog.signInButton)
        deadline = time.monotonic() + 60
        while dialog.isVisible() and time.monotonic() < deadline:
            process_events(0.1)
        if dialog.isVisible():  # the sign-in failed: say why, and close the dialog as a user
            said = dialog.messageLabel.text()
            click(dialog.cancelButton)  # stops waiting for the browser
            process_events(1)
            if dialog.isVisible():
                click(dialog.cancelButton)
            raise AssertionError(f"Signing in did not finish: {said}")

    with answering(sign_in):
        click(bar.signInButton)
    if not bar.signOutButton.isVisible():
        raise AssertionError(f"Not signed in after Sign in…: {bar.accountLabel.text()}")
    shot(window, "6_signed_in")

    def revoking() -> list:
        return [
            task
            for task in QgsApplication.taskManager().activeTasks()
            if task.description().startswith("Signing out")
        ]

    click(bar.signOutButton)
    shot(window, "7_signed_out")  # the caller releases the portal's revoke once this exists
    if bar.signOutButton.isVisible() or not revoking():
        _note(
            png,
            "Signing out waited for the portal: when the panel showed "
            f"{bar.accountLabel.text()!r}, the revoke was no longer running.",
        )
    deadline = time.monotonic() + 90
    while revoking() and time.monotonic() < deadline:
        process_events(0.1)


def _site_photo(path: Path) -> None:
    """A made-up field photo (sky, ground, a cracked wall) saved as a JPEG."""
    from qgis.PyQt.QtCore import QPointF, QRectF, Qt
    from qgis.PyQt.QtGui import QColor, QImage, QLinearGradient, QPainter, QPen

    image = QImage(1200, 900, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    sky = QLinearGradient(QPointF(0, 0), QPointF(0, 520))
    sky.setColorAt(0, QColor(90, 150, 220))
    sky.setColorAt(1, QColor(200, 225, 245))
    painter.fillRect(QRectF(0, 0, 1200, 520), sky)
    painter.fillRect(QRectF(0, 520, 1200, 380), QColor(110, 140, 70))
    painter.fillRect(QRectF(250, 260, 700, 420), QColor(170, 150, 130))
    painter.setPen(QPen(QColor(60, 40, 30), 8, Qt.PenStyle.SolidLine))
    painter.drawPolyline(
        [QPointF(600, 260), QPointF(560, 380), QPointF(640, 480), QPointF(590, 680)]
    )
    painter.end()
    image.save(str(path), "JPG")


def _new_window(before: set, class_name: str, timeout: float = 10):
    """The first visible window of the Qt class ``class_name`` that was not there ``before``."""
    from qgis.PyQt.QtWidgets import QApplication

    from tests.gui_user import process_events

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for widget in QApplication.topLevelWidgets():
            if (
                widget not in before
                and widget.metaObject().className() == class_name
                and widget.isVisible()
            ):
                return widget
        process_events(0.1)
    return None


def _map_layers(dock) -> dict:
    """The open map's layers: ``points`` (layer 0) and every ``spatial`` one."""
    from importlib import import_module

    layers = import_module("offline_map_sync.plugin.layers")
    found = layers.offline_map_layers(dock.offline_map.folder)
    main = [
        layer for layer in found if layer.customProperty(layers.PROPERTY_ATTACHMENTS) in (None, "")
    ]
    return {
        "points": next(
            layer for layer in main if layer.customProperty(layers.PROPERTY_LAYER_ID) == 0
        ),
        "spatial": [layer for layer in main if layer.isSpatial()],
    }


if os.environ.get(STAGE_VARIABLE) == "inside":
    inside_qgis()
elif __name__ == "__main__":
    sys.exit(main())
