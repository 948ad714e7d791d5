"""The plugin's dock panel (layout in ``ui/dock_panel.ui``).

Opens an offline map folder, shows its geodatabases with their pending edits, what the map can
do (update capabilities) and what is waiting (updates info), adds it to the project as layers,
and synchronizes it as a background ``QgsTask``. All work is done by core calls; this class
only collects parameters, starts tasks and shows their results.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsSettings
from qgis.PyQt import sip, uic
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QMessageBox,
    QTableWidgetItem,
    QTreeWidgetItem,
    QWidget,
)

from .. import layers as map_layers
from ..auth import offline_map_auth_url, offline_map_credential_urls
from ..core.enums import OfflineUpdateAvailability, PreplannedScheduledUpdatesOption, SyncDirection
from ..core.errors import OfflineMapSyncError
from ..core.offline_map import OfflineMap
from ..resources import PLUGIN_NAME, tr, ui_path
from ..task import CallJob, JobTask, start_job_task
from .area_outline import AreaOutline
from .credential_consent import credentials_with_consent
from .formatting import ask, escape, name_column_stretches, size_text, tooltip
from .sign_in_bar import SignInBar

FORM_CLASS, _ = uic.loadUiType(ui_path("dock_panel.ui"))

SETTINGS_RECENT = "OfflineMapSync/recentMaps"
SETTINGS_AUTH = "OfflineMapSync/authConfigs"
MAX_RECENT = 10
ROLE_KEY = Qt.ItemDataRole.UserRole


def _count_words() -> dict[str, str]:
    return {
        "adds": tr("{0} added"),
        "updates": tr("{0} changed"),
        "deletes": tr("{0} deleted"),
        "attachment_adds": tr("{0} attachments added"),
        "attachment_updates": tr("{0} attachments changed"),
        "attachment_deletes": tr("{0} attachments deleted"),
    }


def describe_counts(counts: dict[str, int] | None) -> str:
    """Pending-edit counts in words, e.g. "2 added, 1 changed" (empty when nothing waits)."""
    words = _count_words()
    parts = []
    for key, value in (counts or {}).items():
        if value:
            parts.append(words.get(key, "{0} " + key.replace("_", " ")).format(value))
    return ", ".join(parts)


class OfflineMapSyncDock(QDockWidget, FORM_CLASS):
    """Dock panel: opens an offline map, shows what it can do and what is waiting, syncs it.

    Signals: ``closed`` when the user closes the panel; ``map_opened(folder)``;
    ``task_finished(task)`` after a sync / take-offline / check task ended and the panel shows
    its outcome.
    """

    closed = pyqtSignal()
    map_opened = pyqtSignal(str)
    task_finished = pyqtSignal(object)

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.setupUi(self)
        self.setObjectName("OfflineMapSyncDock")
        # Who is signed in where, "Sign in…" and "Sign out" (issue 20; sign_in_bar.py).
        self.signInBar = SignInBar(self)
        self.mainLayout.insertWidget(1, self.signInBar)
        self.offline_map: OfflineMap | None = None
        self.task: JobTask | None = None
        self.last_result: Any = None
        self.last_error: BaseException | None = None
        self.updates_info: Any = None
        #: The ``RemovalResult`` of the last map removed from the panel.
        self.last_removal: Any = None
        self._watched: set[str] = set()
        # Per geodatabase file, what _fill_tree read: (counts per layer, error). The
        # capabilities text reuses it rather than opening every geodatabase a second time.
        self._pending: dict[str, tuple[dict, str | None]] = {}
        #: Per geodatabase file, the newest row of its sync history (None: never synced).
        self._last_sync: dict[str, dict | None] = {}

        # Short labels (the panel is narrow); the tooltip says it in full.
        for label, explanation, direction in (
            (
                tr("Both ways"),
                tr("Upload local edits, download server changes"),
                SyncDirection.BIDIRECTIONAL,
            ),
            (tr("Upload only"), tr("Upload local edits only"), SyncDirection.UPLOAD),
            (tr("Download only"), tr("Download server changes only"), SyncDirection.DOWNLOAD),
        ):
            self.directionCombo.addItem(label, int(direction))
            self.directionCombo.setItemData(
                self.directionCombo.count() - 1, explanation, Qt.ItemDataRole.ToolTipRole
            )
        self.resultsTable.setColumnCount(4)
        # Names and counts as wide as they need; a layer's details (errors) go on a row of their
        # own under it, across the table, wrapped: all stays readable in a narrow panel.
        name_column_stretches(self.resultsTable.horizontalHeader())

        self.openButton.clicked.connect(self.choose_folder)
        self.recentCombo.activated.connect(self._recent_chosen)
        self.takeOfflineButton.clicked.connect(self.take_offline)
        self.addToMapButton.clicked.connect(self.add_to_map)
        self.checkUpdatesButton.clicked.connect(self.check_for_updates)
        self.syncButton.clicked.connect(self.sync)
        self.cancelButton.clicked.connect(self.cancel)
        self.conflictsButton.clicked.connect(self.show_conflicts)
        self.removeButton.clicked.connect(self.remove_map)
        self.authSelect.selectedConfigIdChanged.connect(self._remember_auth)
        self.areaCheck.toggled.connect(self._show_area)
        self._area_outline: AreaOutline | None = None

        self._fill_recent()
        self._update_state()

    # -- opening -----------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, tr("Open an offline map folder"))
        if folder:
            self.open_map(folder)

    def _recent_chosen(self, index: int) -> None:
        folder = self.recentCombo.itemData(index)
        if folder and (self.offline_map is None or str(self.offline_map.folder) != folder):
            self.open_map(folder)

    def open_map(self, folder: str | Path) -> bool:
        """Open the offline map in ``folder`` and show it; False (with a message) if it cannot."""
        try:
            offline_map = OfflineMap.open(folder)
        except OfflineMapSyncError as error:
            self._show_error(str(error))
            return False
        self.offline_map = offline_map
        self.updates_info = None
        self.last_result = None
        self.last_error = None
        self._remember_recent(str(offline_map.folder))
        self._restore_auth()
        # Cleared before refresh(), so that what it finds (a damaged geodatabase) stays shown.
        self.resultsTable.setRowCount(0)
        self.statusLabel.setText("")
        self.refresh()
        self._watch_layers()
        self._set_default_parameters()
        self._show_area(self.areaCheck.isChecked())
        self.map_opened.emit(str(offline_map.folder))
        return True

    def _set_default_parameters(self) -> None:
        from ..core.sync import OfflineMapSyncTask

        try:
            defaults = OfflineMapSyncTask(
                self.offline_map
            ).create_default_offline_map_sync_parameters()
        except OfflineMapSyncError:
            return
        index = self.directionCombo.findData(int(defaults.sync_direction))
        if index >= 0:
            self.directionCombo.setCurrentIndex(index)
        self.rollbackCheck.setChecked(defaults.rollback_on_failure)
        self.scheduledUpdatesCheck.setChecked(
            defaults.preplanned_scheduled_updates_option
            == PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
        )

    def refresh(self) -> None:
        """Read the map again: tree with pending edits, capabilities, parameter defaults."""
        self._fill_tree()
        self._show_capabilities()
        self._show_conflict_count()
        self._update_state()

    def conflict_count(self) -> int:
        """Entries in the open map's conflict log (0 when none or no map)."""
        if self.offline_map is None:
            return 0
        try:
            return len(self.offline_map.conflicts())
        except OfflineMapSyncError:
            return 0

    def _show_conflict_count(self) -> None:
        count = self.conflict_count()
        self.conflictsButton.setText(
            tr("Conflict log ({0})…").format(count) if count else tr("Conflict log…")
        )

    def _fill_tree(self) -> None:
        self.contentTree.clear()
        self._pending = {}
        self._last_sync = {}
        offline_map = self.offline_map
        self.introLabel.setVisible(offline_map is None)
        if offline_map is None:
            self.mapLabel.setText(tr("No offline map is open."))
            return
        self.mapLabel.setText(
            tr("<b>{0}</b><br>{1}").format(
                escape(offline_map.title), escape(str(offline_map.folder))
            )
        )
        self.mapLabel.setTextFormat(Qt.TextFormat.RichText)
        for entry in offline_map.geodatabases:
            # Per geodatabase: a damaged one must not hide the pending edits of the others.
            gdb_counts, error = self._pending_counts(entry)
            self._pending[entry.file] = (gdb_counts, error)
            total = sum(sum(c.values()) for c in gdb_counts.values())
            pending = tr("{0} pending").format(total) if error is None else tr("cannot be read")
            last = self._last_sync.get(entry.file)
            top = QTreeWidgetItem([entry.title or entry.file, pending, _when(last)])
            if last is not None:
                top.setToolTip(2, tooltip(_history_text(last)))
            top.setToolTip(0, tooltip(f"{entry.file}\n{entry.service_url}"))
            if error is not None:
                top.setToolTip(1, tooltip(error))
                self._show_error(error)
            top.setData(0, ROLE_KEY, (entry.file, None))
            if entry.download_only:
                top.setText(0, tr("{0} (download only)").format(top.text(0)))
            self.contentTree.addTopLevelItem(top)
            for layer in map_layers.tree_order(entry.layers):
                name = layer.title if not layer.is_table else tr("{0} (table)").format(layer.title)
                # "0", not an empty cell: an empty one reads like "unknown" (which it is when
                # the geodatabase cannot be read).
                pending = (
                    "" if error is not None else describe_counts(gdb_counts.get(layer.id)) or "0"
                )
                brought = (last or {}).get("counts", {}).get(layer.id)
                child = QTreeWidgetItem([name, pending, _moved(brought) if last else ""])
                child.setData(0, ROLE_KEY, (entry.file, layer.id))
                top.addChild(child)
            top.setExpanded(True)
        self.contentTree.resizeColumnToContents(0)

    def _pending_counts(self, entry) -> tuple[dict, str | None]:
        """A geodatabase's pending-edit counts per layer, or ({}, why) when it cannot be read.
        Its last sync (from its history) is kept for the tree on the way."""
        try:
            with self.offline_map.open_geodatabase(entry) as geodatabase:
                history = geodatabase.history()
                self._last_sync[entry.file] = history[0] if history else None
                return geodatabase.pending_counts(), None
        except OfflineMapSyncError as error:
            return {}, str(error)

    def pending_text(self, file: str, layer_id: int | None = None) -> str:
        """The pending-edits text the tree shows for a geodatabase or one of its layers."""
        for index in range(self.contentTree.topLevelItemCount()):
            top = self.contentTree.topLevelItem(index)
            if top.data(0, ROLE_KEY)[0] != file:
                continue
            if layer_id is None:
                return top.text(1)
            for child_index in range(top.childCount()):
                child = top.child(child_index)
                if child.data(0, ROLE_KEY)[1] == layer_id:
                    return child.text(1)
        return ""

    # -- capabilities and updates ------------------------------------------------------------
    def capabilities_text(self) -> str:
        """What the map can do and what is waiting, in words (the text the panel shows)."""
        offline_map = self.offline_map
        if offline_map is None:
            return ""
        capabilities = offline_map.update_capabilities
        lines = []
        if capabilities.supports_sync_with_feature_services:
            lines.append(
                tr(
                    "This map synchronizes with its feature services: local edits go up, server changes come down."
                )
            )
            download_only = [e.title or e.file for e in offline_map.geodatabases if e.download_only]
            if download_only:
                lines.append(
                    tr("Download only (the service does not accept edits): {0}.").format(
                        ", ".join(download_only)
                    )
                )
        if capabilities.supports_scheduled_updates_for_features:
            lines.append(tr("This map receives scheduled update packages prepared by the portal."))
        if not lines:
            lines.append(tr("This map cannot be updated: it is a read-only copy."))
        info = self.updates_info
        if info is not None:
            lines.append(_availability_text(tr("Upload"), info.upload_availability))
            lines.append(_availability_text(tr("Download"), info.download_availability))
            size = getattr(info, "scheduled_updates_download_size", 0) or 0
            if size:
                lines.append(tr("Scheduled updates to download: {0}.").format(size_text(size)))
            if getattr(info, "is_mobile_map_package_reopen_required", False):
                lines.append(tr("The map must be downloaded again: the updates it needs are gone."))
        else:
            waiting, unreadable = False, []
            for entry in offline_map.geodatabases:
                counts, error = self._pending.get(entry.file) or self._pending_counts(entry)
                if error is not None:
                    unreadable.append(entry.file)
                elif offline_map.edits_to_upload(entry, counts):
                    waiting = True
            if waiting:
                lines.append(tr("Local edits are waiting to be uploaded."))
            if unreadable:
                # Never "no edits are waiting" when a geodatabase could not be looked at.
                lines.append(
                    tr("The local edits of {0} cannot be read.").format(", ".join(unreadable))
                )
            elif not waiting:
                lines.append(tr("No local edits are waiting."))
        return "\n".join(lines)

    # -- the map's area on the canvas ----------------------------------------------------------
    def _show_area(self, shown: bool) -> None:
        """Outline the open map's area on the canvas (or take the outline away)."""
        if self._area_outline is None and self.iface is not None:
            self._area_outline = AreaOutline(self.iface.mapCanvas())
        if self._area_outline is None:
            return
        shown = shown and self.offline_map is not None
        self._area_outline.show_area(self.offline_map.area_of_interest if shown else None)

    def remove_area_outline(self) -> None:
        """Take the outline off the canvas for good (the plugin is unloaded)."""
        if self._area_outline is not None:
            self._area_outline.remove()

    def area_outline(self):
        """The outline shown on the canvas (a ``QgsRubberBand``), or None."""
        return self._area_outline.band() if self._area_outline is not None else None

    def _show_capabilities(self) -> None:
        self.capabilitiesLabel.setText(self.capabilities_text())

    def check_for_updates(self) -> JobTask | None:
        """Ask the services/portal what is waiting (background task); the panel shows it."""
        if self.offline_map is None or self.task is not None:
            return None
        from ..core.sync import OfflineMapSyncTask

        try:
            sync_task = OfflineMapSyncTask(self.offline_map, client=self._client())
            # Scheduled-update maps ask the portal: never on the main thread.
            job = CallJob(sync_task.check_for_updates)
        except OfflineMapSyncError as error:
            self._show_error(str(error))
            return None
        return self._start(
            tr("Checking for updates of '{0}'").format(self.offline_map.title),
            job,
            self._updates_checked,
        )

    def _updates_checked(self, task: JobTask) -> None:
        if task.succeeded:
            self.updates_info = task.result
            self.statusLabel.setText(tr("Checked for updates."))
        elif not task.cancelled:
            self.statusLabel.setText(
                tr("Could not check for updates: {0}").format(_error_text(task.error))
            )
        self._show_capabilities()

    # -- adding to the project ---------------------------------------------------------------
    def add_to_map(self) -> list:
        """Add the open map's geodatabases to the current project as layers."""
        if self.offline_map is None:
            return []
        problems: list[str] = []
        try:
            loaded = map_layers.add_offline_map_to_project(
                self.offline_map, on_problem=problems.append
            )
        except OfflineMapSyncError as error:
            self._show_error(str(error))
            return []
        self._watch_layers()
        count = sum(len(item.layers) for item in loaded)
        self._push(
            tr("Added {0} layers and tables of '{1}'.").format(count, self.offline_map.title)
        )
        if problems:
            # Logged already (basemap_layers): the message bar only tells the user.
            self._push(" ".join(problems), Qgis.MessageLevel.Warning, log=False)
        if self.iface is not None and self.offline_map.initial_extent:
            self._zoom_to_initial_extent()
        return loaded

    def _watch_layers(self) -> None:
        # Saving edits in QGIS changes what is pending: keep the tree's counts current.
        for layer in map_layers.offline_map_layers(self.offline_map.folder):
            if layer.id() not in self._watched:
                self._watched.add(layer.id())
                layer.afterCommitChanges.connect(self._layer_saved)
                layer.willBeDeleted.connect(partial(self._watched.discard, layer.id()))

    def _layer_saved(self) -> None:
        if self.offline_map is not None and self.task is None:
            self._fill_tree()
            self._show_capabilities()

    def _zoom_to_initial_extent(self) -> None:
        from qgis.core import QgsCoordinateTransform, QgsProject, QgsRectangle

        extent = self.offline_map.initial_extent or {}
        if not all(key in extent for key in ("xmin", "ymin", "xmax", "ymax")):
            return
        canvas = self.iface.mapCanvas()
        source = map_layers.qgis_crs(extent.get("spatialReference"))
        rect = QgsRectangle(extent["xmin"], extent["ymin"], extent["xmax"], extent["ymax"])
        if source.isValid():
            transform = QgsCoordinateTransform(
                source, canvas.mapSettings().destinationCrs(), QgsProject.instance()
            )
            try:
                rect = transform.transformBoundingBox(rect)
            except Exception:  # noqa: BLE001 (a bad extent must not stop adding layers)
                return
        canvas.setExtent(rect)
        canvas.refresh()

    # -- sync --------------------------------------------------------------------------------
    def sync_parameters(self) -> dict[str, Any]:
        """The sync options chosen in the panel."""
        return {
            "sync_direction": SyncDirection(self.directionCombo.currentData()),
            "rollback_on_failure": self.rollbackCheck.isChecked(),
            "preplanned_scheduled_updates_option": (
                PreplannedScheduledUpdatesOption.DOWNLOAD_ALL_UPDATES
                if self.scheduledUpdatesCheck.isChecked()
                else PreplannedScheduledUpdatesOption.NO_UPDATES
            ),
        }

    def confirm_save_edits(self, layers: list) -> bool:
        """Ask whether to save the layers' unsaved edits before syncing (True = save them)."""
        names = ", ".join(layer.name() for layer in layers)
        answer = ask(
            self,
            tr("Unsaved edits"),
            tr(
                "These layers have edits that are not saved yet: {0}.\n\n"
                "Save them now so that they are synchronized?"
            ).format(names),
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        return answer == QMessageBox.StandardButton.Save

    def sync(self) -> JobTask | None:
        """Synchronize the open map in a background task; returns the task (None if not started)."""
        if self.offline_map is None or self.task is not None:
            return None
        unsaved = map_layers.layers_with_unsaved_edits(self.offline_map.folder)
        save = bool(unsaved) and self.confirm_save_edits(unsaved)
        try:
            map_layers.save_edits_before_sync(self.offline_map.folder, save)
        except OfflineMapSyncError as error:
            self._show_error(str(error), level=Qgis.MessageLevel.Warning)
            return None
        from ..core.sync import OfflineMapSyncTask

        try:
            sync_task = OfflineMapSyncTask(self.offline_map, client=self._client())
            parameters = sync_task.create_default_offline_map_sync_parameters()
            for name, value in self.sync_parameters().items():
                setattr(parameters, name, value)
            job = sync_task.create_offline_map_sync_job(parameters)
        except OfflineMapSyncError as error:
            self._show_error(str(error))
            return None
        self.resultsTable.setRowCount(0)
        return self._start(
            tr("Synchronizing '{0}'").format(self.offline_map.title), job, self._synced
        )

    def _synced(self, task: JobTask) -> None:
        result = task.result if task.succeeded else None
        # What a check for updates found is out of date once the sync ran.
        self.updates_info = None
        if not task.succeeded and not task.cancelled:
            self.statusLabel.setText(tr("Sync failed: {0}").format(_error_text(task.error)))
        if self.offline_map is not None:
            if result is not None and result.is_mobile_map_package_reopen_required:
                self._reopen()
            else:
                map_layers.reload_offline_map_layers(self.offline_map.folder)
        if result is not None:
            self.last_result = result
            rows = self._show_result(result)
            if result.is_mobile_map_package_reopen_required:
                self._push(
                    tr("The map's data was replaced by a fresh download; it has been reopened."),
                    Qgis.MessageLevel.Warning,
                )
            elif result.failed:
                why = "; ".join(dict.fromkeys(result.geodatabase_errors.values()))
                self._show_error(tr("Sync failed: {0}").format(why))
            elif result.has_errors:
                # The task itself succeeded ("Done."), but the user must not read that as "all fine".
                self.statusLabel.setText(tr("Synchronized with errors: see the results below."))
                self._push(
                    tr("Synchronized with errors: see the results in the panel."),
                    Qgis.MessageLevel.Warning,
                )
            else:
                self._push(
                    tr("Synchronized {0} layers and tables.").format(rows),
                    Qgis.MessageLevel.Success,
                )
        self.refresh()

    def _reopen(self) -> None:
        # The geodatabases were replaced on disk: layers must be made again, not just reloaded.
        folder = self.offline_map.folder
        had_layers = bool(map_layers.offline_map_layers(folder))
        try:
            self.offline_map = OfflineMap.open(folder)
            if had_layers:
                map_layers.add_offline_map_to_project(self.offline_map)
        except OfflineMapSyncError as error:
            self._show_error(str(error))

    def result_rows(self) -> list[list[str]]:
        """What the results table shows, per layer: name, up, down, conflicts and the details
        (the row under it, or "")."""
        table = self.resultsTable
        rows: list[list[str]] = []
        for row in range(table.rowCount()):
            first = table.item(row, 0)
            if first is not None and first.data(ROLE_KEY) == "details":
                rows[-1][-1] = first.text()
                continue
            cells = [table.item(row, c) for c in range(table.columnCount())]
            rows.append([cell.text() if cell else "" for cell in cells] + [""])
        return rows

    def _feature_names(self) -> dict[str, str]:
        """GlobalID -> name of the features in the conflict log (what a refused edit left)."""
        try:
            found = self.offline_map.conflicts() if self.offline_map is not None else []
        except OfflineMapSyncError:
            return {}
        return {f.conflict.global_id: f.feature_name for f in found if f.feature_name}

    def _show_result(self, result: Any) -> int:
        rows = sync_result_rows(result, self._feature_names())
        table = self.resultsTable
        table.clearSpans()
        table.setRowCount(0)
        for values in rows:
            *counts, details = values
            row = table.rowCount()
            table.insertRow(row)
            for column, value in enumerate(counts):
                item = QTableWidgetItem(str(value))
                item.setToolTip(tooltip(details or str(value)))
                table.setItem(row, column, item)
            if details:
                table.insertRow(row + 1)
                item = QTableWidgetItem(details)
                item.setData(ROLE_KEY, "details")
                item.setToolTip(tooltip(details))
                table.setItem(row + 1, 0, item)
                table.setSpan(row + 1, 0, 1, table.columnCount())
        table.resizeRowsToContents()
        return len(rows)

    def cancel(self) -> None:
        """Cancel the running task (the job stops at its next safe point)."""
        if self.task is not None:
            # Text first: a task that has not started yet finishes inside cancel().
            self.statusLabel.setText(tr("Cancelling…"))
            self.task.cancel()

    # -- take offline ------------------------------------------------------------------------
    def take_offline(self) -> JobTask | None:
        """Ask what to take offline (dialog) and run it as a background task."""
        from .take_offline_dialog import TakeOfflineDialog

        dialog = TakeOfflineDialog(self.iface, self)
        # exec() gives an int under PyQt5 and PyQt6 alike: compare it as a truth value.
        if not dialog.exec():
            return None
        return self.start_take_offline(dialog.request())

    def start_take_offline(self, request) -> JobTask | None:
        """Run a :class:`~plugin.take_offline_request.TakeOfflineRequest`; the new map opens when done."""
        if self.task is not None:
            return None
        from ..take_offline_request import TakeOfflineJob

        try:
            credentials = credentials_with_consent(
                self, request.authcfg, request.auth_url, request.credential_urls
            )
            job = TakeOfflineJob(request, credentials)
        except (OfflineMapSyncError, ValueError) as error:
            self._show_error(str(error))
            return None
        self._pending_authcfg = request.authcfg
        if request.map_area is not None:
            description = tr("Downloading the map area '{0}'").format(request.map_area.title)
        else:
            description = tr("Taking a map offline")
        return self._start(description, job, self._taken_offline)

    def _taken_offline(self, task: JobTask) -> None:
        if task.succeeded:
            folder = task.result.offline_map.folder
            if self._pending_authcfg:
                _save_auth(str(folder), self._pending_authcfg)
            self.open_map(folder)
            skipped = getattr(task.result, "skipped_layers", ())
            message = tr("The map '{0}' is offline in {1}.").format(
                task.result.offline_map.title, folder
            )
            if skipped:
                message += " " + tr("Left out: {0}.").format(
                    ", ".join(f"{s.title} ({s.reason})" for s in skipped)
                )
            self._push(message, Qgis.MessageLevel.Success)

    # -- conflicts ---------------------------------------------------------------------------
    def conflict_dialog(self):
        """A conflict-log dialog for the open map (not shown yet)."""
        from .conflict_dialog import ConflictDialog

        dialog = ConflictDialog(self.offline_map, self)
        dialog.changed.connect(self._conflicts_changed)
        return dialog

    def _conflicts_changed(self) -> None:
        # A restored or dismissed entry changed rows in the geodatabase: the layers and the
        # canvas must show them, not only the panel's counts.
        if self.offline_map is not None:
            map_layers.reload_offline_map_layers(self.offline_map.folder)
        self.refresh()

    def show_conflicts(self) -> None:
        if self.offline_map is None:
            return
        try:
            self.conflict_dialog().exec()
        except OfflineMapSyncError as error:
            self._show_error(str(error))

    # -- removal -----------------------------------------------------------------------------
    def confirm_removal(self, plan, layers: list):
        """Show the removal confirmation; the confirmed ``RemovalParameters``, or None."""
        from .remove_dialog import RemoveDialog

        unsaved = [layer.name() for layer in layers if layer.isEditable() and layer.isModified()]
        dialog = RemoveDialog(plan, len(layers), self, unsaved)
        if not dialog.exec():
            return None
        return dialog.parameters()

    def confirm_remove_locally(self, error) -> bool:
        """Ask whether to delete the local copy although its replicas stay registered."""
        answer = ask(
            self,
            tr("Remove offline map"),
            tr(
                "{0}\n\nRemove the local copy anyway? Its replicas then stay registered on the "
                "services (an administrator can remove them there)."
            ).format(error),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def remove_map(self) -> JobTask | None:
        """Confirm, then remove the open map in a background task: its replicas are
        unregistered and its files deleted (see ``plugin.core.removal``)."""
        if self.offline_map is None or self.task is not None:
            return None
        from ..core.removal import plan_offline_map_removal

        try:
            plan = plan_offline_map_removal(self.offline_map, self.recent_maps())
        except OfflineMapSyncError as error:
            self._show_error(str(error))
            return None
        layers = map_layers.offline_map_layers(self.offline_map.folder)
        parameters = self.confirm_removal(plan, layers)
        if parameters is None:
            return None
        return self._start_removal(parameters, bool(layers))

    def _start_removal(self, parameters, had_layers: bool) -> JobTask | None:
        from ..core.removal import RemoveOfflineMapJob

        try:
            job = RemoveOfflineMapJob(
                self.offline_map,
                parameters,
                client=self._client(),
                known_maps=self.recent_maps(),
            )
        except OfflineMapSyncError as error:
            self._show_error(str(error))
            return None
        # QGIS must let go of the GeoPackages before they are deleted (Windows locks open
        # files); the layers come back if the removal does not happen.
        map_layers.remove_offline_map_from_project(self.offline_map.folder)
        return self._start(
            tr("Removing '{0}'").format(self.offline_map.title),
            job,
            partial(self._removal_done, parameters, had_layers),
        )

    def _removal_done(self, parameters, had_layers: bool, task: JobTask) -> None:
        from dataclasses import replace

        from ..core.removal import UnregisterError

        if task.succeeded:
            self._map_removed(task.result)
            return
        if (
            isinstance(task.error, UnregisterError)
            and not parameters.remove_locally_if_unreachable
            and self.confirm_remove_locally(task.error)
        ):
            again = replace(parameters, remove_locally_if_unreachable=True)
            if self._start_removal(again, had_layers) is not None:
                return
        if had_layers and self.offline_map is not None:
            try:
                map_layers.add_offline_map_to_project(self.offline_map)
                self._watch_layers()
            except OfflineMapSyncError as error:
                self._show_error(str(error))

    def _map_removed(self, result) -> None:
        folder = str(self.offline_map.folder)
        self._forget_recent(folder)
        _save_auth(folder, "")
        self.offline_map = None
        self.updates_info = None
        self.last_removal = result
        self.resultsTable.setRowCount(0)
        self.refresh()
        warnings = result.warnings
        message = tr("Removed '{0}'.").format(result.title)
        if warnings:
            self._push(" ".join([message, *warnings]), Qgis.MessageLevel.Warning)
        else:
            self._push(message, Qgis.MessageLevel.Success)

    # -- tasks -------------------------------------------------------------------------------
    def _client(self):
        from ..core.rest import ArcGISClient

        # Prepared here, on the main thread: the auth manager must never be asked from a task.
        credentials = credentials_with_consent(
            self,
            self.authSelect.configId(),
            offline_map_auth_url(self.offline_map),
            offline_map_credential_urls(self.offline_map),
        )
        return ArcGISClient(credentials)

    def _start(self, description: str, job, on_done) -> JobTask:
        self.last_error = None
        self.progressBar.setValue(0)
        self.statusLabel.setText(description)
        task = start_job_task(description, job, on_done=lambda t: self._task_done(t, on_done))
        task.progress_message.connect(self._progress)
        self.task = task
        self._update_state()
        return task

    def _progress(self, percent: int, message: str) -> None:
        self.progressBar.setValue(percent)
        if message:
            self.statusLabel.setText(message)

    def _task_done(self, task: JobTask, on_done) -> None:
        if sip.isdeleted(self):
            # The plugin was unloaded while the task ran: the work is done, no panel to update.
            return
        self.task = None
        if task.succeeded:
            self.statusLabel.setText(tr("Done."))
        elif task.cancelled:
            self.statusLabel.setText(tr("Cancelled."))
        else:
            self.last_error = task.error
            self._show_error(_error_text(task.error))
        try:
            on_done(task)
        finally:
            self._update_state()
            self.task_finished.emit(task)

    # -- state and messages ------------------------------------------------------------------
    def _update_state(self) -> None:
        has_map = self.offline_map is not None
        busy = self.task is not None
        capabilities = self.offline_map.update_capabilities if has_map else None
        can_sync = bool(
            capabilities
            and (
                capabilities.supports_sync_with_feature_services
                or capabilities.supports_scheduled_updates_for_features
            )
        )
        self.addToMapButton.setEnabled(has_map)
        self.checkUpdatesButton.setEnabled(has_map and not busy)
        self.syncGroup.setEnabled(has_map)
        self.syncButton.setEnabled(has_map and can_sync and not busy)
        self.cancelButton.setEnabled(busy)
        self.takeOfflineButton.setEnabled(not busy)
        self.openButton.setEnabled(not busy)
        self.recentCombo.setEnabled(not busy)
        self.conflictsButton.setEnabled(has_map)
        has_area = has_map and self.offline_map.area_of_interest is not None
        self.areaCheck.setEnabled(has_area and self.iface is not None)
        if not has_area and self.areaCheck.isChecked():
            self.areaCheck.setChecked(False)
        self.removeButton.setEnabled(has_map and not busy)
        self.scheduledUpdatesCheck.setEnabled(
            bool(capabilities and capabilities.supports_scheduled_updates_for_features)
        )
        # A bar at 100 % (or stuck where a failure left it) reads as "done": only while busy.
        self.progressBar.setVisible(busy)

    def _show_error(self, message: str, level=Qgis.MessageLevel.Critical) -> None:
        self.statusLabel.setText(message)
        QgsMessageLog.logMessage(message, PLUGIN_NAME, level)
        self._push(message, level, log=False)

    def _push(self, message: str, level=Qgis.MessageLevel.Info, *, log: bool = True) -> None:
        if log:
            QgsMessageLog.logMessage(message, PLUGIN_NAME, Qgis.MessageLevel.Info)
        if self.iface is not None and self.iface.messageBar() is not None:
            # The message bar shows rich text (images loaded, links clickable): escaped, a
            # server's or a file's text reads as typed.
            self.iface.messageBar().pushMessage(PLUGIN_NAME, escape(message), level, 8)

    # -- settings ----------------------------------------------------------------------------
    def recent_maps(self) -> list[str]:
        value = QgsSettings().value(SETTINGS_RECENT, [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(folder) for folder in value or []]

    def _remember_recent(self, folder: str) -> None:
        folders = [folder] + [f for f in self.recent_maps() if f != folder]
        QgsSettings().setValue(SETTINGS_RECENT, folders[:MAX_RECENT])
        self._fill_recent()

    def _forget_recent(self, folder: str) -> None:
        QgsSettings().setValue(SETTINGS_RECENT, [f for f in self.recent_maps() if f != folder])
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recentCombo.blockSignals(True)
        self.recentCombo.clear()
        for folder in self.recent_maps():
            self.recentCombo.addItem(Path(folder).name or folder, folder)
            self.recentCombo.setItemData(
                self.recentCombo.count() - 1, tooltip(folder), Qt.ItemDataRole.ToolTipRole
            )
        if self.offline_map is not None:
            index = self.recentCombo.findData(str(self.offline_map.folder))
            self.recentCombo.setCurrentIndex(index)
        else:
            self.recentCombo.setCurrentIndex(-1)
        self.recentCombo.blockSignals(False)

    def _restore_auth(self) -> None:
        # Only the configuration id is kept (per map folder); the secrets stay in QGIS's
        # encrypted auth database.
        configs = QgsSettings().value(SETTINGS_AUTH, {}) or {}
        self.authSelect.blockSignals(True)
        self.authSelect.setConfigId(configs.get(str(self.offline_map.folder), ""))
        self.authSelect.blockSignals(False)

    def _remember_auth(self, authcfg: str) -> None:
        if self.offline_map is not None:
            _save_auth(str(self.offline_map.folder), authcfg)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API name)
        self.closed.emit()
        super().closeEvent(event)


def _save_auth(folder: str, authcfg: str) -> None:
    settings = QgsSettings()
    configs = dict(settings.value(SETTINGS_AUTH, {}) or {})
    if authcfg:
        configs[folder] = authcfg
    else:
        configs.pop(folder, None)
    settings.setValue(SETTINGS_AUTH, configs)


def sync_result_rows(result: Any, names: dict[str, str] | None = None) -> list[list[str]]:
    """Rows "layer, up, down, conflicts, details" of an ``OfflineMapSyncResult``.

    A refused edit is counted once: its local version is in the conflict log (the conflicts
    count), and the server's reason is in the details, the feature named by ``names``
    (GlobalID -> name) where known."""
    names = names or {}
    rows = []
    for layer_result in result.all_results():
        row = layer_result.as_row()
        name = tr("{0} (table)").format(row["name"]) if row["is_table"] else row["name"]
        rows.append(
            [
                name,
                str(row["uploaded"]),
                str(row["downloaded"]),
                str(row["conflicts"]),
                layer_result.describe_errors(names),
            ]
        )
    return rows


def _when(entry: dict | None) -> str:
    """When a history entry finished, in local time ("never" without one)."""
    if entry is None:
        return tr("never")
    from datetime import datetime

    try:
        finished = datetime.fromisoformat(str(entry["finished_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return str(entry.get("finished_at") or "")
    local = finished.astimezone()
    today = datetime.now(local.tzinfo).date()
    return local.strftime("%H:%M" if local.date() == today else "%d %b %Y %H:%M")


def _moved(counts: dict | None) -> str:
    """What one layer sent and received in a sync, as arrows: "↑1 ↓2" ("–" for nothing)."""
    counts = counts or {}
    up = sum(v for k, v in counts.items() if k.startswith("uploaded_"))
    down = sum(v for k, v in counts.items() if k.startswith("downloaded_"))
    return tr("↑{0} ↓{1}").format(up, down) if up or down else "–"


def _history_text(entry: dict) -> str:
    up = down = 0
    for counts in (entry.get("counts") or {}).values():
        up += sum(v for k, v in counts.items() if k.startswith("uploaded_"))
        down += sum(v for k, v in counts.items() if k.startswith("downloaded_"))
    return tr("Last sync {0}: {1} up, {2} down, {3} conflicts.").format(
        _when(entry), up, down, entry.get("conflicts") or 0
    )


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return ""
    if isinstance(error, OfflineMapSyncError):
        return str(error)
    # Not one of ours: a bug. Say so briefly; the traceback is in the log.
    return tr("Unexpected error ({0}); see the Offline Map Sync log.").format(type(error).__name__)


def _availability_text(what: str, availability: Any) -> str:
    try:
        value = OfflineUpdateAvailability(int(availability))
    except (TypeError, ValueError):
        value = OfflineUpdateAvailability.INDETERMINATE
    if value == OfflineUpdateAvailability.AVAILABLE:
        return tr("{0}: updates are available.").format(what)
    if value == OfflineUpdateAvailability.NONE:
        return tr("{0}: nothing to transfer.").format(what)
    return tr("{0}: cannot be known without synchronizing.").format(what)
