"""Areas outlined on the QGIS map canvas: an open offline map's area (the dock), and while the
Take-offline dialog is open, the web map's preplanned map areas (the chosen one highlighted) or
the on-demand area the user is choosing.

Every outline is a ``QgsRubberBand`` made when first needed; without a canvas (headless, tests
without an interface) nothing is drawn and every call does nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsGeometry,
    QgsProject,
)
from qgis.PyQt.QtCore import QEvent, QObject
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QWidget

from ..layers import area_geometry
from ..qgis_compat import POLYGON_GEOMETRY

#: The area that is (or will be) taken offline.
CHOSEN = QColor(230, 80, 0)
#: The other preplanned map areas the user could choose.
OTHER = QColor(40, 110, 200)


class AreaOutline:
    """One outline on ``canvas`` (``None``: no canvas, nothing is drawn), drawn in ``color``."""

    def __init__(self, canvas, color: QColor = CHOSEN, width: int = 2, fill_alpha: int = 30):
        self.canvas = canvas
        self.color, self.width, self.fill_alpha = color, width, fill_alpha
        self._band = None

    def show(self, shapes: Iterable[tuple[QgsGeometry, QgsCoordinateReferenceSystem]]) -> None:
        """Outline ``shapes`` (geometry, CRS) instead of what was outlined; empty ones are
        left out, and nothing is shown when none remains."""
        shapes = [(g, crs) for g, crs in shapes if g is not None and not g.isEmpty()]
        if self.canvas is None or (self._band is None and not shapes):
            return
        band = self._band or self._make_band()
        band.reset(POLYGON_GEOMETRY)
        for geometry, crs in shapes:
            band.addGeometry(geometry, crs)
        # The rubber band repaints itself; refreshing the canvas would draw every layer again
        # (on each pan, while the outline follows the canvas).
        band.setVisible(bool(shapes))

    def show_area(self, area: dict[str, Any] | None) -> None:
        """Outline an Esri JSON envelope or polygon (nothing for ``None`` or an unreadable one)."""
        self.show([area_geometry(area)] if area else [])

    def hide(self) -> None:
        self.show([])

    def remove(self) -> None:
        """Take the outline off the canvas for good (a later ``show`` draws a new one)."""
        if self._band is not None and self.canvas is not None:
            self.canvas.scene().removeItem(self._band)
        self._band = None

    def band(self):
        """The ``QgsRubberBand`` shown on the canvas, or None when nothing is outlined."""
        band = self._band
        return band if band is not None and band.isVisible() and band.numberOfVertices() else None

    def _make_band(self):
        from qgis.gui import QgsRubberBand

        self._band = QgsRubberBand(self.canvas, POLYGON_GEOMETRY)
        self._band.setStrokeColor(self.color)
        fill = QColor(self.color)
        fill.setAlpha(self.fill_alpha)
        self._band.setFillColor(fill)
        self._band.setWidth(self.width)
        return self._band


def map_area_shape(map_area) -> tuple[QgsGeometry, QgsCoordinateReferenceSystem]:
    """A ``PreplannedMapArea``'s outline: its area of interest, else its item's extent."""
    return area_geometry(map_area.outline)


class AreaChoicePreview(QObject):
    """What a dialog's area choice covers, drawn on ``canvas`` while the dialog is shown: every
    listed preplanned map area with the chosen one highlighted, or the on-demand area.

    ``redraw`` (the dialog's) is called when the dialog is shown and whenever the canvas
    extent changes, so that an area that follows the canvas follows it live; when the dialog
    is closed or hidden every outline goes, and nothing is drawn until it is shown again.
    """

    def __init__(self, dialog: QWidget, canvas, redraw: Callable[[], None]) -> None:
        super().__init__(dialog)
        self.canvas = canvas
        self.chosen = AreaOutline(canvas, CHOSEN, width=3)
        self.others = AreaOutline(canvas, OTHER, width=1, fill_alpha=15)
        self._redraw = redraw
        self._active = False
        self._selected_id: str | None = None
        dialog.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Show and not self._active and self.canvas is not None:
            self._active = True
            self.canvas.extentsChanged.connect(self._redraw)
            self._redraw()
        elif event.type() == QEvent.Type.Hide and not event.spontaneous() and self._active:
            self._active = False
            self.canvas.extentsChanged.disconnect(self._redraw)
            self.chosen.remove()
            self.others.remove()
            self._selected_id = None
        return False

    def show_map_areas(self, map_areas: list, selected) -> None:
        """Outline ``map_areas``, ``selected`` (one of them, or None) highlighted; when the
        user picks another area the canvas moves to it if it is not in view."""
        if not self._active:
            return
        self.others.show(map_area_shape(a) for a in map_areas if a != selected)
        shape = map_area_shape(selected) if selected is not None else None
        self.chosen.show([shape] if shape else [])
        picked = selected.item_id if selected is not None else None
        if shape is not None and picked != self._selected_id:
            self._selected_id = picked
            self._bring_into_view(*shape)
        self._selected_id = picked

    def show_area(self, area: dict[str, Any] | None) -> None:
        """Outline an on-demand area of interest (Esri JSON), or nothing for ``None``."""
        if not self._active:
            return
        self.others.hide()
        self.chosen.show_area(area)
        self._selected_id = None

    def _bring_into_view(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        if self.canvas is None or not crs.isValid():
            return
        target = self.canvas.mapSettings().destinationCrs()
        box = geometry.boundingBox()
        try:
            if target.isValid() and target != crs:
                transform = QgsCoordinateTransform(crs, target, QgsProject.instance())
                box = transform.transformBoundingBox(box)
        except QgsCsException:  # an area QGIS cannot project: leave the canvas as it is
            return
        if self.canvas.extent().contains(box):
            return
        box.scale(1.2)
        self.canvas.setExtent(box)
        self.canvas.refresh()
