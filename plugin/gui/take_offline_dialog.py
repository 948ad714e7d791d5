"""The "Take offline" dialog (layout in ``ui/take_offline_dialog.ui``).

It only collects what the user wants, on demand (an area, layers) or ahead of time (a
preplanned map area and its update mode); the dock turns the answer into a core
``OfflineMapTask`` job and runs it as a ``QgsTask``.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProject,
    QgsSettings,
)
from qgis.gui import QgsFileWidget
from qgis.PyQt import sip, uic
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QListWidgetItem,
    QPlainTextEdit,
    QWidget,
)

from ..core.enums import PreplannedUpdateMode, ReturnLayerAttachmentOption
from ..core.errors import OfflineMapSyncError
from ..layers import esri_envelope
from ..qgis_compat import SPATIAL_LAYERS
from ..resources import tr, ui_path
from ..take_offline_request import (
    TakeOfflineRequest,
    list_map_areas,
    list_source,
    update_mode_labels,
)
from ..task import CallJob, start_job_task
from .area_outline import AreaChoicePreview
from .basemap_options import add_basemap_section
from .browse_dialog import add_browse_button
from .credential_consent import credentials_with_consent
from .formatting import size_text, tooltip

FORM_CLASS, _ = uic.loadUiType(ui_path("take_offline_dialog.ui"))

_ITEM_ID = re.compile(r"^[0-9a-fA-F]{32}$")
# What the user typed last time (the source only: folders and credentials are chosen anew).
SETTINGS_SOURCE = "OfflineMapSync/takeOffline/"


class TakeOfflineDialog(QDialog, FORM_CLASS):
    """Asks what to take offline, for which area, where to, and with which credentials."""

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.task = None
        self.setupUi(self)
        self.basemapSection = add_basemap_section(self)
        self._fit_to_screen()
        self.folderWidget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folderWidget.setDialogTitle(tr("Folder for the new offline map"))
        self.layerCombo.setFilters(SPATIAL_LAYERS)
        self.canvasRadio.setEnabled(iface is not None and iface.mapCanvas() is not None)
        for widget in (
            self.webmapRadio,
            self.servicesRadio,
            self.wholeRadio,
            self.canvasRadio,
            self.layerRadio,
            self.preplannedRadio,
        ):
            widget.toggled.connect(self._update_enabled)
        for mode, label in update_mode_labels():
            self.updateModeCombo.addItem(label, int(mode))
        self.buttonBox.button(QDialogButtonBox.StandardButton.Ok).setText(tr("Take offline"))
        # The attachment choice left as shown (the web map's default, once the layers are
        # listed) lets the web map's offline settings decide.
        self._attachments_default = self.attachmentsCheck.checkState()
        self.listLayersButton.clicked.connect(self.list_layers)
        self.listAreasButton.clicked.connect(self.list_areas)
        # "Browse…": pick the web map from the signed-in portal instead of pasting its ID
        # (issue 20; browse_dialog.py fills the fields).
        self.browseButton = add_browse_button(self)
        # A layer list read for another source would be wrong: forget it when the source changes.
        for signal in (
            self.portalEdit.textChanged,
            self.itemEdit.textChanged,
            self.servicesEdit.textChanged,
            self.webmapRadio.toggled,
        ):
            signal.connect(self.layersList.clear)
            signal.connect(self.areasList.clear)
        # The area chosen (or the map areas to choose from) outlined on the canvas (issue 20).
        canvas = iface.mapCanvas() if iface is not None else None
        self.area_preview = AreaChoicePreview(self, canvas, self._outline_area)
        self.layerCombo.layerChanged.connect(self._outline_area)
        self.areasList.currentRowChanged.connect(self._outline_area)
        self._restore_source()
        self._update_enabled()

    def _fit_to_screen(self) -> None:
        # The choices scroll (ui file): the dialog is as tall as they need, but never taller
        # than the screen, so that its buttons stay reachable.
        screen = (self.parentWidget() or self).screen()
        contents = self.scrollContents.sizeHint()
        width = max(self.width(), contents.width() + 40)
        height = max(self.height(), contents.height() + self.buttonBox.sizeHint().height() + 40)
        if screen is not None:
            height = max(300, min(height, screen.availableGeometry().height() - 60))
        self.resize(width, height)

    def _remembered(self) -> dict[str, Any]:
        return {
            "portalUrl": self.portalEdit,
            "webmapItemId": self.itemEdit,
            "serviceUrls": self.servicesEdit,
        }

    def _restore_source(self) -> None:
        settings = QgsSettings()
        for key, widget in self._remembered().items():
            text = str(settings.value(SETTINGS_SOURCE + key, "") or "")
            if isinstance(widget, QPlainTextEdit):
                widget.setPlainText(text)
            else:
                widget.setText(text)
        if settings.value(SETTINGS_SOURCE + "useServices", False, type=bool):
            self.servicesRadio.setChecked(True)

    def _remember_source(self) -> None:
        settings = QgsSettings()
        for key, widget in self._remembered().items():
            text = widget.toPlainText() if isinstance(widget, QPlainTextEdit) else widget.text()
            settings.setValue(SETTINGS_SOURCE + key, text.strip())
        settings.setValue(SETTINGS_SOURCE + "useServices", self.servicesRadio.isChecked())

    def _update_enabled(self, *_args) -> None:
        webmap = self.webmapRadio.isChecked()
        for widget in (self.portalEdit, self.itemEdit, self.portalLabel, self.itemLabel):
            widget.setEnabled(webmap)
        self.servicesEdit.setEnabled(not webmap)
        self.layerCombo.setEnabled(self.layerRadio.isChecked())
        # Map areas belong to a web map; feature services have none.
        self.preplannedRadio.setEnabled(webmap)
        if not webmap and self.preplannedRadio.isChecked():
            self.wholeRadio.setChecked(True)
        preplanned = self.preplannedRadio.isChecked()
        # Only the choices that apply are shown: a map area comes as its packages were made
        # (no layer choice, attachments included).
        for widget in (
            self.areasList,
            self.listAreasButton,
            self.updateModeLabel,
            self.updateModeCombo,
        ):
            widget.setVisible(preplanned)
        self.listAreasButton.setEnabled(self.task is None)
        self.layersGroup.setVisible(not preplanned)
        self.attachmentsCheck.setVisible(not preplanned)
        self.titleEdit.setPlaceholderText(
            tr("The map area's title") if preplanned else tr("The web map's or the services' name")
        )
        self._outline_area()

    # -- the answer ------------------------------------------------------------------------
    def request(self) -> TakeOfflineRequest:
        """The user's choices; raises ValueError with a message to show when they are incomplete."""
        folder_text = self.folderWidget.filePath().strip()
        if not folder_text:
            raise ValueError(tr("Choose a target folder for the offline map."))
        folder = Path(folder_text)
        if folder.is_dir() and any(folder.iterdir()):
            raise ValueError(
                tr("The folder {0} is not empty; choose a new or empty folder.").format(folder)
            )
        request = self._source(folder)
        request.basemap = self.basemapSection.options()
        if self.preplannedRadio.isChecked():
            request.map_area = self.selected_area()
            if request.map_area is None:
                raise ValueError(
                    tr("Choose a map area (List map areas shows the web map's areas).")
                )
            request.update_mode = PreplannedUpdateMode(self.updateModeCombo.currentData())
            return request
        request.area_of_interest = self._area_of_interest()
        for row in range(self.layersList.count()):
            item = self.layersList.item(row)
            if item.checkState() != Qt.CheckState.Checked:
                request.schema_only_layers.append(tuple(item.data(Qt.ItemDataRole.UserRole)))
        return request

    def _source(self, folder: Path) -> TakeOfflineRequest:
        request = TakeOfflineRequest(
            folder=folder,
            include_attachments=None
            if self.attachmentsCheck.checkState() == self._attachments_default
            else self.attachmentsCheck.isChecked(),
            title=self.titleEdit.text().strip(),
            authcfg=self.authSelect.configId() or "",
        )
        if self.webmapRadio.isChecked():
            portal = self.portalEdit.text().strip().rstrip("/")
            item = self.itemEdit.text().strip()
            if not portal.lower().startswith(("http://", "https://")):
                raise ValueError(tr("Enter the portal URL (https://…/sharing/rest)."))
            if not _ITEM_ID.match(item):
                raise ValueError(tr("The web map item ID must be 32 hexadecimal characters."))
            request.portal_url, request.webmap_item_id = portal, item
        else:
            urls = [
                line.strip()
                for line in self.servicesEdit.toPlainText().splitlines()
                if line.strip()
            ]
            if not urls:
                raise ValueError(tr("Enter at least one feature service URL."))
            bad = [url for url in urls if "/featureserver" not in url.lower()]
            if bad:
                raise ValueError(
                    tr("{0} is not a feature service URL (…/FeatureServer).").format(bad[0])
                )
            request.service_urls = urls
        return request

    # -- layers ----------------------------------------------------------------------------
    def list_layers(self):
        """Read the source's layers in a background task and list them, all checked."""
        return self._list_in_background(
            list_source,
            self.listLayersButton,
            tr("Reading the layers…"),
            tr("Listing layers"),
            self._layers_listed,
        )

    def _list_in_background(self, function, button, message: str, title: str, on_done):
        """Run ``function(request, credentials)`` for the source in a task; ``None`` when one is
        already running or the source is incomplete (the message label says why)."""
        if self.task is not None:
            return None
        try:
            request = self._source(Path())
            # Prepared here on the main thread: the auth manager must not be asked from a task.
            credentials = credentials_with_consent(
                self, request.authcfg, request.auth_url, request.credential_urls
            )
        except (ValueError, OfflineMapSyncError) as error:
            self.messageLabel.setText(str(error))
            return None
        self.messageLabel.setText(message)
        button.setEnabled(False)
        job = CallJob(partial(function, request, credentials))
        self.task = start_job_task(title, job, on_done=on_done)
        return self.task

    def _listing_succeeded(self, task, enable_buttons) -> bool:
        """Forget the finished listing ``task`` and call ``enable_buttons``; False (with the
        reason shown) when it failed or the dialog is gone."""
        if sip.isdeleted(self):
            return False
        self.task = None
        enable_buttons()
        if not task.succeeded:
            self.messageLabel.setText(str(task.error) if task.error else tr("Cancelled."))
            return False
        return True

    def _layers_listed(self, task) -> None:
        if not self._listing_succeeded(task, lambda: self.listLayersButton.setEnabled(True)):
            return
        self.layersList.clear()
        layers, settings = task.result
        # Partly checked: only the read-only (or only the editable) layers bring attachments.
        self._attachments_default = {
            ReturnLayerAttachmentOption.ALL_LAYERS: Qt.CheckState.Checked,
            ReturnLayerAttachmentOption.NONE: Qt.CheckState.Unchecked,
        }.get(settings.return_layer_attachment_option, Qt.CheckState.PartiallyChecked)
        partly = self._attachments_default == Qt.CheckState.PartiallyChecked
        self.attachmentsCheck.setTristate(partly)
        self.attachmentsCheck.setCheckState(self._attachments_default)
        for layer in layers:
            text = tr("{0} (table)").format(layer.title) if layer.is_table else layer.title
            item = QListWidgetItem(text)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setData(Qt.ItemDataRole.UserRole, [layer.service_url, layer.layer_id])
            item.setToolTip(tooltip(f"{layer.service_url}/{layer.layer_id}"))
            self.layersList.addItem(item)
        self.messageLabel.setText("")

    # -- preplanned map areas ----------------------------------------------------------------
    def list_areas(self):
        """Read the web map's preplanned map areas in a background task and list them."""
        return self._list_in_background(
            list_map_areas,
            self.listAreasButton,
            tr("Reading the map areas…"),
            tr("Listing map areas"),
            self._areas_listed,
        )

    def _areas_listed(self, task) -> None:
        if not self._listing_succeeded(task, self._update_enabled):
            return
        self.areasList.clear()
        for area in task.result:
            item = QListWidgetItem(
                tr("{0} — {1}").format(area.title, size_text(area.size))
                if area.size
                else area.title
            )
            item.setData(Qt.ItemDataRole.UserRole, area)
            # What the size is made of: one package per feature service.
            packages = [tr("{0}: {1}").format(p.title, size_text(p.size)) for p in area.packages]
            lines = [area.snippet, *packages, area.item_id]
            item.setToolTip(tooltip("\n".join(t for t in lines if t)))
            self.areasList.addItem(item)
        if self.areasList.count():
            self.areasList.setCurrentRow(0)
            self.messageLabel.setText("")
        else:
            self.messageLabel.setText(tr("This web map has no preplanned map areas."))

    def selected_area(self):
        """The ``PreplannedMapArea`` chosen in the list, or None."""
        item = self.areasList.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _outline_area(self, *_args) -> None:
        if self.preplannedRadio.isChecked():
            rows = range(self.areasList.count())
            areas = [self.areasList.item(row).data(Qt.ItemDataRole.UserRole) for row in rows]
            self.area_preview.show_map_areas(areas, self.selected_area())
            return
        try:
            area = self._area_of_interest()
        except ValueError:  # no layer to take the extent of yet
            area = None
        self.area_preview.show_area(area)

    def _area_of_interest(self) -> dict[str, Any] | None:
        if self.canvasRadio.isChecked() and self.iface is not None:
            canvas = self.iface.mapCanvas()
            return esri_envelope(canvas.extent(), canvas.mapSettings().destinationCrs())
        if self.layerRadio.isChecked():
            layer = self.layerCombo.currentLayer()
            if layer is None:
                raise ValueError(tr("Choose the layer whose extent is the area to take offline."))
            crs = layer.crs() if layer.crs().isValid() else QgsProject.instance().crs()
            return esri_envelope(layer.extent(), crs or QgsCoordinateReferenceSystem("EPSG:4326"))
        return None

    def accept(self) -> None:  # noqa: D102 (Qt API)
        try:
            self.request()
        except ValueError as error:
            self.messageLabel.setText(str(error))
            return
        self._remember_source()
        super().accept()
