"""An offline map's basemaps as QGIS layers, under its operational layers.

The manifest lists the basemaps bottom to top (see ``plugin/core/basemap.py``): downloaded
raster tiles (a GeoPackage tile set, read by GDAL), downloaded vector tiles (MBTiles, styled
from the saved Mapbox GL style), basemaps kept online (the matching online layer) and a file
the user already had. They go into a sub-group "Basemap" at the bottom of the map's group.
A basemap that cannot be opened is named in a message and left out; the rest of the map loads.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from qgis.core import (
    QgsDataSourceUri,
    QgsLayerTreeGroup,
    QgsMapBoxGlStyleConversionContext,
    QgsMapBoxGlStyleConverter,
    QgsMapLayer,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorTileLayer,
)

from .core.offline_map import BasemapEntry, OfflineMap, resolves_inside
from .resources import tr

log = logging.getLogger(__name__)

#: Custom property marking a layer as one of the map's basemaps (its title).
PROPERTY_BASEMAP = "offline_map_sync/basemap"
#: The style of a vector basemap is read whole; a real one is well below this.
MAX_STYLE_BYTES = 16 * 1024 * 1024
OPENSTREETMAP_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


class BasemapLayerError(Exception):
    """A basemap that cannot become a layer; the message names it and says why."""


def basemap_group_name() -> str:
    return tr("Basemap")


def add_basemaps(
    offline_map: OfflineMap,
    group: QgsLayerTreeGroup,
    project: QgsProject,
    tag: Callable[[QgsMapLayer], None],
    on_problem: Callable[[str], None],
) -> list[QgsMapLayer]:
    """Add the map's basemaps to a sub-group "Basemap" at the end of ``group``; ``tag`` marks
    each layer as the map's, ``on_problem`` hears about each basemap left out (it is logged
    too). Returns the layers added, top first (as the layer tree lists them)."""
    made = []
    for entry in reversed(offline_map.basemaps):
        try:
            layer = basemap_layer(offline_map, entry)
        except BasemapLayerError as error:
            log.warning("%s", error)
            on_problem(str(error))
            continue
        tag(layer)
        layer.setCustomProperty(PROPERTY_BASEMAP, layer.name())
        made.append((layer, entry.visible))
    if not made:
        return []
    basemap_group = group.addGroup(basemap_group_name())
    for layer, visible in made:
        project.addMapLayer(layer, False)
        node = basemap_group.addLayer(layer)
        node.setItemVisibilityChecked(visible)
        node.setExpanded(False)  # a basemap's legend (bands, style rules) is noise here
    return [layer for layer, _visible in made]


def basemap_layer(offline_map: OfflineMap, entry: BasemapEntry) -> QgsMapLayer:
    """The QGIS layer of one of the map's basemaps; raises BasemapLayerError when it cannot be
    opened (missing or damaged file, unusable address)."""
    title = entry.title or tr("Basemap")
    if entry.kind == "online":
        layer = _online_layer(entry, title)
        problem = tr("the service did not answer as expected ({0}).").format(layer.source())
    else:
        path = offline_map.basemap_path(entry)
        if path is None or not path.is_file():
            if entry.downloaded:
                raise BasemapLayerError(
                    tr("The basemap '{0}' is missing from the offline map folder ({1}).").format(
                        title, entry.path
                    )
                )
            if path is None:
                raise BasemapLayerError(
                    tr(
                        "The basemap file {0} of '{1}' is not named by its full path; it is not "
                        "opened."
                    ).format(entry.path, title)
                )
            raise BasemapLayerError(
                tr("The basemap file {0} of '{1}' is not there any more.").format(entry.path, title)
            )
        style = offline_map.folder / entry.style if entry.downloaded and entry.style else None
        if entry.downloaded and not resolves_inside(offline_map.folder, path):
            raise BasemapLayerError(
                tr(
                    "The basemap file {0} of '{1}' is a link to a file outside the offline map "
                    "folder; it is not opened."
                ).format(entry.path, title)
            )
        layer = _file_layer(
            path, title, style if style and _style_inside(offline_map, style, title) else None
        )
        problem = tr("{0} is damaged or not a tile set QGIS can read.").format(path)
    if not layer.isValid():
        raise BasemapLayerError(
            tr("The basemap '{0}' could not be opened: {1}").format(title, problem)
        )
    layer.setOpacity(max(0.0, min(1.0, entry.opacity)))
    return layer


# -- files -----------------------------------------------------------------------------------
def _file_layer(path: Path, title: str, style: Path | None) -> QgsMapLayer:
    suffix = path.suffix.lower()
    if suffix == ".mbtiles" and _is_vector_mbtiles(path):
        layer = QgsVectorTileLayer(_uri(type="mbtiles", url=str(path)), title)
        if layer.isValid() and style:
            _apply_style_file(layer, style, title)
        return layer
    if suffix == ".vtpk":
        if not _has_provider("vtpkvectortiles"):
            raise BasemapLayerError(
                tr(
                    "The basemap '{0}' is a vector tile package (.vtpk), which QGIS reads from "
                    "version 3.26 on."
                ).format(title)
            )
        layer = QgsVectorTileLayer(_uri(type="vtpk", url=str(path)), title)
        if layer.isValid():
            layer.loadDefaultStyle()
        return layer
    # GeoPackage tiles, raster MBTiles and tile packages (.tpkx, GDAL's ESRIC driver).
    return QgsRasterLayer(str(path), title, "gdal")


def _style_inside(offline_map: OfflineMap, style: Path, title: str) -> bool:
    """False (and a warning) when the saved style is a link out of the map folder: the layer
    then keeps QGIS's default style."""
    if resolves_inside(offline_map.folder, style):
        return True
    log.warning(
        tr(
            "The style of the basemap '{0}' ({1}) is a link to a file outside the offline map "
            "folder; it is not read."
        ).format(title, style.name)
    )
    return False


def _is_vector_mbtiles(path: Path) -> bool:
    try:
        # Closed at once: an open handle would keep the file locked for removal (Windows).
        with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM metadata WHERE name = 'format'").fetchone()
    except sqlite3.Error:
        return False
    return bool(row) and str(row[0]).lower() == "pbf"


def _apply_style_file(layer: QgsVectorTileLayer, style_path: Path, title: str) -> None:
    """Style ``layer`` from a saved Mapbox GL style; what QGIS could not convert goes to the log.
    Without a readable style the layer keeps QGIS's default style."""
    try:
        # Only a plain file, read up to the limit (a device or a pipe never ends).
        if not style_path.is_file():
            raise ValueError(tr("it is not a file"))
        with open(style_path, "rb") as stream:
            text = stream.read(MAX_STYLE_BYTES + 1)
        if len(text) > MAX_STYLE_BYTES:
            raise ValueError(tr("the file is too large"))
        style = json.loads(text.decode("utf-8"))
        if not isinstance(style, dict):
            raise ValueError(tr("it is not a JSON object"))
    except (OSError, ValueError, RecursionError) as error:
        log.warning(
            tr("The style of the basemap '{0}' could not be read ({1}): {2}").format(
                title, style_path.name, error
            )
        )
        return
    apply_mapbox_style(layer, style, title)


def apply_mapbox_style(layer: QgsVectorTileLayer, style: dict, title: str) -> bool:
    """Convert a Mapbox GL style with QGIS's converter and give it to ``layer``; the parts QGIS
    could not convert are named in the log. False when nothing could be converted."""
    converter = QgsMapBoxGlStyleConverter()
    context = QgsMapBoxGlStyleConversionContext()
    result = converter.convert(style, context)
    lost = [str(warning) for warning in converter.warnings()]
    if lost:
        log.warning(
            tr("The style of the basemap '{0}' was carried over without: {1}").format(
                title, "; ".join(lost)
            )
        )
    if result != QgsMapBoxGlStyleConverter.Result.Success:
        log.warning(
            tr("The style of the basemap '{0}' could not be converted: {1}").format(
                title, converter.errorMessage()
            )
        )
        return False
    layer.setRenderer(converter.renderer())
    labeling = converter.labeling()
    if labeling is not None:
        layer.setLabeling(labeling)
    return True


# -- online ----------------------------------------------------------------------------------
def _online_layer(entry: BasemapEntry, title: str) -> QgsMapLayer:
    layer_type = entry.layer_type or ""
    url = _web_url(entry.source_url)
    style_url = _web_url(entry.style_url)
    if layer_type == "OpenStreetMap":
        template = url if url and "{z}" in url else OPENSTREETMAP_TILES
        return QgsRasterLayer(_uri(type="xyz", url=template, zmin="0", zmax="19"), title, "wms")
    if layer_type == "ArcGISTiledMapServiceLayer" and url:
        # The ArcGIS provider reads the service's own tiling scheme (any CRS, any LODs).
        return QgsRasterLayer(_uri(url=url.rstrip("/")), title, "arcgismapserver")
    if layer_type == "VectorTileLayer" and (url or style_url):
        service = url or _vector_tile_service(style_url)
        layer = QgsVectorTileLayer(
            _uri(type="xyz", serviceType="arcgis", url=service.rstrip("/"), styleUrl=style_url),
            title,
        )
        if layer.isValid():
            message, ok = layer.loadDefaultStyle()
            if not ok:
                log.warning(
                    tr("The style of the basemap '{0}' could not be loaded: {1}").format(
                        title, message
                    )
                )
        return layer
    raise BasemapLayerError(
        tr("The online basemap '{0}' ({1}) has no usable web address.").format(title, layer_type)
    )


def _web_url(url: Any) -> str:
    """``url`` when it is an http(s) address, else "" (the manifest is untrusted input)."""
    text = str(url or "").strip()
    return text if urlsplit(text).scheme.lower() in ("http", "https") else ""


def _vector_tile_service(style_url: str) -> str:
    """The VectorTileServer of a style URL (…/VectorTileServer/resources/styles/root.json)."""
    marker = "/vectortileserver"
    index = style_url.lower().find(marker)
    return style_url[: index + len(marker)] if index >= 0 else style_url


def _uri(**params: str) -> str:
    uri = QgsDataSourceUri()
    for key, value in params.items():
        if value:
            uri.setParam(key, value)
    return bytes(uri.encodedUri()).decode("utf-8")


def _has_provider(key: str) -> bool:
    return key in QgsProviderRegistry.instance().providerList()
