"""The "Basemap" section of the Take-offline dialog: what becomes of the web map's basemap.

Download it for the area (levels, a tile limit, an estimate of tiles and size first), keep it
online, use a tile file the user already has, or none. The section is built here and put into
the dialog by :func:`add_basemap_section`; the dialog asks it for :meth:`options`.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsSettings
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..core.basemap import BasemapOptions, check_local_file
from ..core.errors import OfflineMapSyncError
from ..resources import tr
from ..take_offline_request import EstimateBasemapJob, basemap_mode_labels
from ..task import JobTask, start_job_task
from .credential_consent import credentials_with_consent
from .formatting import size_text, tooltip

SETTINGS_BASEMAP = "OfflineMapSync/takeOffline/basemap/"
#: The deepest level offered (ArcGIS Online's basemaps go to 23).
MAX_LEVEL = 23
LOCAL_FILE_FILTER = "Tile sets (*.gpkg *.mbtiles *.tpkx *.vtpk);;All files (*)"


class BasemapSection(QgsCollapsibleGroupBox):
    """The section's widgets; ``dialog`` is the Take-offline dialog it estimates for."""

    def __init__(self, dialog) -> None:
        super().__init__(tr("Basemap"), dialog)
        self.setObjectName("basemapGroup")
        self.dialog = dialog
        self.task: JobTask | None = None
        self.estimate = None
        self._estimated_for: tuple | None = None
        layout = QGridLayout(self)

        self.modeCombo = QComboBox(self)
        self.modeCombo.setObjectName("basemapModeCombo")
        for mode, label in basemap_mode_labels():
            self.modeCombo.addItem(label, mode)
        self.modeCombo.setToolTip(tr("What the offline map shows under its layers"))
        layout.addWidget(self.modeCombo, 0, 0, 1, 2)

        self.fileWidget = QgsFileWidget(self)
        self.fileWidget.setObjectName("basemapFileWidget")
        self.fileWidget.setFilter(tr(LOCAL_FILE_FILTER))
        self.fileWidget.setDialogTitle(tr("A basemap file you have"))
        self.fileLabel = self._label(tr("File"), self.fileWidget)
        layout.addWidget(self.fileLabel, 1, 0)
        layout.addWidget(self.fileWidget, 1, 1)

        self.minLevelSpin = self._spin("basemapMinLevelSpin", 0, MAX_LEVEL, 0)
        self.maxLevelSpin = self._spin("basemapMaxLevelSpin", 0, MAX_LEVEL, 16)
        levels = QHBoxLayout()
        levels.addWidget(self.minLevelSpin)
        self.toLabel = QLabel(tr("to"), self)
        levels.addWidget(self.toLabel)
        levels.addWidget(self.maxLevelSpin)
        levels.addStretch(1)
        self.levelsLabel = self._label(tr("Levels"), self.minLevelSpin)
        self.levelsLabel.setToolTip(tr("0 shows the whole world; each level doubles the detail"))
        layout.addWidget(self.levelsLabel, 2, 0)
        layout.addLayout(levels, 2, 1)

        self.limitSpin = self._spin("basemapLimitSpin", 1, 10_000_000, 100_000)
        self.limitSpin.setSingleStep(10_000)
        self.limitSpin.setGroupSeparatorShown(True)
        self.limitSpin.setSuffix(tr(" tiles"))
        self.limitLabel = self._label(tr("At most"), self.limitSpin)
        self.limitLabel.setToolTip(tr("ArcGIS exports at most 100,000 tiles per job"))
        limit = QHBoxLayout()
        limit.addWidget(self.limitSpin)
        limit.addStretch(1)
        layout.addWidget(self.limitLabel, 3, 0)
        layout.addLayout(limit, 3, 1)

        self.estimateButton = QPushButton(tr("Estimate"), self)
        self.estimateButton.setObjectName("basemapEstimateButton")
        self.estimateButton.setToolTip(
            tr("Count the tiles and their size for the area and levels (connects to the server)")
        )
        self.estimateLabel = QLabel(self)
        self.estimateLabel.setObjectName("basemapEstimateLabel")
        self.estimateLabel.setTextFormat(Qt.TextFormat.PlainText)
        self.estimateLabel.setWordWrap(True)
        layout.addWidget(self.estimateButton, 4, 0)
        layout.addWidget(self.estimateLabel, 4, 1)
        layout.setColumnStretch(1, 1)

        self.minLevelSpin.valueChanged.connect(self._min_changed)
        self.maxLevelSpin.valueChanged.connect(self._max_changed)
        self.modeCombo.currentIndexChanged.connect(self._update_enabled)
        self.estimateButton.clicked.connect(self._estimate_clicked)
        # An estimate made for other choices would mislead: it is shown only while it holds.
        for signal in (
            self.modeCombo.currentIndexChanged,
            self.minLevelSpin.valueChanged,
            self.maxLevelSpin.valueChanged,
            self.limitSpin.valueChanged,
            dialog.wholeRadio.toggled,
            dialog.canvasRadio.toggled,
            dialog.layerRadio.toggled,
            dialog.layerCombo.layerChanged,
        ):
            signal.connect(self._show_estimate)
        dialog.preplannedRadio.toggled.connect(self._update_enabled)
        dialog.accepted.connect(self.remember)
        dialog.finished.connect(self.cancel_estimate)
        self.restore()
        self._update_enabled()

    def _label(self, text: str, buddy: QWidget) -> QLabel:
        label = QLabel(text, self)
        label.setBuddy(buddy)
        return label

    def _spin(self, name: str, low: int, high: int, value: int) -> QSpinBox:
        spin = QSpinBox(self)
        spin.setObjectName(name)
        spin.setRange(low, high)
        spin.setValue(value)
        # Typing "14" must not pass through level 1 (and drag the other bound along).
        spin.setKeyboardTracking(False)
        return spin

    # -- state -----------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return str(self.modeCombo.currentData())

    def _min_changed(self, value: int) -> None:
        if self.maxLevelSpin.value() < value:
            self.maxLevelSpin.setValue(value)

    def _max_changed(self, value: int) -> None:
        if self.minLevelSpin.value() > value:
            self.minLevelSpin.setValue(value)

    def _update_enabled(self, *_args) -> None:
        mode = self.mode
        # A preplanned area's basemap comes as the portal packaged it: no levels to choose.
        download = mode == "download" and not self.dialog.preplannedRadio.isChecked()
        for widget in (self.fileLabel, self.fileWidget):
            widget.setVisible(mode == "local")
        for widget in (
            self.levelsLabel,
            self.minLevelSpin,
            self.maxLevelSpin,
            self.toLabel,
            self.limitLabel,
            self.limitSpin,
            self.estimateButton,
            self.estimateLabel,
        ):
            widget.setVisible(download)

    def options(self) -> BasemapOptions:
        """The user's choice; raises ValueError with a message to show when it is incomplete
        or the estimate shown is over the limit."""
        mode = self.mode
        local_path = self.fileWidget.filePath().strip() if mode == "local" else ""
        try:
            if local_path:
                local_path = str(check_local_file(local_path))
            options = BasemapOptions(
                mode=mode,
                min_level=self.minLevelSpin.value(),
                max_level=self.maxLevelSpin.value(),
                tile_limit=self.limitSpin.value(),
                local_path=local_path or None,
            )
        except OfflineMapSyncError as error:
            raise ValueError(str(error)) from None
        if self._estimate_holds() and self.estimate.over_limit(options.tile_limit):
            raise ValueError(self._over_limit_text())
        return options

    # -- estimate --------------------------------------------------------------------------
    def _choices(self) -> tuple:
        return (self.mode, self.minLevelSpin.value(), self.maxLevelSpin.value())

    def _estimate_holds(self) -> bool:
        return (
            self.estimate is not None
            and self.mode == "download"
            and self._estimated_for == (self._choices(), self._area_key())
        )

    def _area_key(self):
        try:
            area = self.dialog._area_of_interest()
        except ValueError:
            return None
        return repr(area)

    def _estimate_clicked(self) -> None:
        if self.task is not None:
            self.cancel_estimate()
        else:
            self.start_estimate()

    def start_estimate(self) -> JobTask | None:
        """Estimate the tiles and size of the basemap download in a background task."""
        if self.task is not None:
            return None
        try:
            request = self.dialog._source(Path())
            request.area_of_interest = self.dialog._area_of_interest()
            request.basemap = BasemapOptions(
                mode="download",
                min_level=self.minLevelSpin.value(),
                max_level=self.maxLevelSpin.value(),
                tile_limit=self.limitSpin.value(),
            )
            # Prepared here on the main thread: the auth manager must not be asked from a task.
            credentials = credentials_with_consent(
                self.dialog, request.authcfg, request.auth_url, request.credential_urls
            )
        except (ValueError, OfflineMapSyncError) as error:
            self.estimateLabel.setText(str(error))
            return None
        self.estimate = None
        self.estimateLabel.setText(tr("Estimating…"))
        self.estimateButton.setText(tr("Stop"))
        key = (self._choices(), repr(request.area_of_interest))
        self.task = start_job_task(
            tr("Estimating the basemap"),
            EstimateBasemapJob(request, credentials),
            on_done=lambda task: self._estimated(task, key),
        )
        return self.task

    def cancel_estimate(self, *_args) -> None:
        """Stop a running estimate (the dialog closing stops it too)."""
        if self.task is not None:
            self.task.cancel()

    def _estimated(self, task: JobTask, key: tuple) -> None:
        if sip.isdeleted(self):
            return
        self.task = None
        self.estimateButton.setText(tr("Estimate"))
        if not task.succeeded:
            self.estimateLabel.setText(
                tr("Estimate stopped.") if task.cancelled else str(task.error)
            )
            return
        self.estimate, self._estimated_for = task.result, key
        self._show_estimate()

    def _show_estimate(self, *_args) -> None:
        if self.task is not None:
            return
        if not self._estimate_holds():
            if self.estimate is not None:
                self.estimateLabel.setText(tr("Estimate again for these choices."))
            return
        estimate = self.estimate
        if not estimate.layers:
            self.estimateLabel.setText(tr("The web map has no basemap to download."))
            return
        text = tr("About {0:,} tiles, {1}.").format(estimate.tiles, size_text(estimate.bytes))
        if estimate.over_limit(self.limitSpin.value()):
            text += " " + self._over_limit_text()
        self.estimateLabel.setText(text)
        self.estimateLabel.setToolTip(
            tooltip(
                "\n".join(
                    tr("{0}: {1:,} tiles, {2}").format(
                        layer.title, layer.tiles, size_text(layer.bytes)
                    )
                    for layer in estimate.layers
                )
            )
        )

    def _over_limit_text(self) -> str:
        return tr(
            "The basemap needs {0:,} tiles, more than the limit of {1:,}: choose fewer levels "
            "or a smaller area, or raise the limit."
        ).format(self.estimate.tiles, self.limitSpin.value())

    # -- remembered choices ----------------------------------------------------------------
    def remember(self) -> None:
        settings = QgsSettings()
        settings.setValue(SETTINGS_BASEMAP + "mode", self.mode)
        settings.setValue(SETTINGS_BASEMAP + "minLevel", self.minLevelSpin.value())
        settings.setValue(SETTINGS_BASEMAP + "maxLevel", self.maxLevelSpin.value())
        settings.setValue(SETTINGS_BASEMAP + "tileLimit", self.limitSpin.value())
        settings.setValue(SETTINGS_BASEMAP + "localFile", self.fileWidget.filePath().strip())

    def restore(self) -> None:
        settings = QgsSettings()
        index = self.modeCombo.findData(settings.value(SETTINGS_BASEMAP + "mode", "download"))
        if index >= 0:
            self.modeCombo.setCurrentIndex(index)
        self.maxLevelSpin.setValue(settings.value(SETTINGS_BASEMAP + "maxLevel", 16, type=int))
        self.minLevelSpin.setValue(settings.value(SETTINGS_BASEMAP + "minLevel", 0, type=int))
        self.limitSpin.setValue(settings.value(SETTINGS_BASEMAP + "tileLimit", 100_000, type=int))
        self.fileWidget.setFilePath(str(settings.value(SETTINGS_BASEMAP + "localFile", "") or ""))


def add_basemap_section(dialog) -> BasemapSection:
    """Put the Basemap section into the Take-offline dialog, after the attachments choice."""
    section = BasemapSection(dialog)
    layout = dialog.scrollContents.layout()
    layout.insertWidget(layout.indexOf(dialog.attachmentsCheck) + 1, section)
    return section
