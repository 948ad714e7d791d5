"""An offline map's basemaps in QGIS: under the operational layers in the map's group, styled,
drawn, named when they cannot be opened, and gone with the map."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsLayerTreeGroup,
    QgsLayerTreeLayer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorTileLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

from plugin.basemap_layers import PROPERTY_BASEMAP
from plugin.core.offline_map import MANIFEST_NAME, OfflineMap
from plugin.layers import (
    add_offline_map_to_project,
    offline_map_layers,
    remove_offline_map_from_project,
)
from tests import basemap_files
from tests.featureservice.server import ReferenceServer
from tests.test_layers import take_demo_web_map_offline

TOPO = {
    "title": "Demo topographic",
    "kind": "raster",
    "format": "gpkg",
    "path": "basemap/Demo_topographic.gpkg",
    "style": None,
    "min_level": 0,
    "max_level": 5,
    "visible": True,
    "opacity": 1.0,
}
STREETS = {
    "title": "Demo streets",
    "kind": "vector",
    "format": "mbtiles",
    "path": "basemap/Demo_streets.mbtiles",
    "style": "basemap/Demo_streets.style.json",
    "min_level": 0,
    "max_level": 5,
    "visible": True,
    "opacity": 1.0,
}


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """The demo web map taken offline once; each test gets a copy to give its own basemaps."""
    where = tmp_path_factory.mktemp("demo")
    with ReferenceServer(where / "featureservice", seed="demo") as server:
        return take_demo_web_map_offline(server, where / "map").folder


@pytest.fixture
def project(qgis_new_project):
    yield QgsProject.instance()
    QgsProject.instance().clear()


def map_with_basemaps(demo_folder, tmp_path, basemaps: list[dict]) -> OfflineMap:
    """A copy of the demo map whose manifest lists ``basemaps`` (bottom to top), with the
    GDAL-made files that the downloaded entries name."""
    folder = tmp_path / "map"
    shutil.copytree(demo_folder, folder, ignore=shutil.ignore_patterns("basemap"))
    basemap_files.raster_gpkg(folder / TOPO["path"])
    basemap_files.vector_mbtiles(folder / STREETS["path"])
    basemap_files.mapbox_style(folder / STREETS["style"])
    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["basemaps"] = basemaps
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return OfflineMap.open(folder)


def map_group(project, offline_map) -> QgsLayerTreeGroup:
    group = project.layerTreeRoot().findGroup(offline_map.title)
    assert group is not None
    return group


def render(layers, size: int = 64) -> QColor:
    """The colour drawn at the centre of the demo square by ``layers`` (top first)."""
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    settings.setExtent(QgsRectangle(-400_000, -400_000, -100_000, -100_000))
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return QColor(job.renderedImage().pixel(size // 2, size // 2))


def rgb(color: QColor) -> tuple[int, int, int]:
    return color.red(), color.green(), color.blue()


def test_downloaded_basemaps_lie_under_the_operational_layers_and_draw(
    demo_folder, tmp_path, project
):
    offline_map = map_with_basemaps(demo_folder, tmp_path, [TOPO, STREETS])
    problems = []

    add_offline_map_to_project(offline_map, project, problems.append)

    assert problems == []
    group = map_group(project, offline_map)
    children = group.children()
    basemap_group = children[-1]
    assert isinstance(basemap_group, QgsLayerTreeGroup) and basemap_group.name() == "Basemap"
    operational = [child.layer() for child in children[:-1] if isinstance(child, QgsLayerTreeLayer)]
    assert operational and all(
        layer in offline_map_layers(offline_map.folder) for layer in operational
    )
    # The manifest lists bottom to top; the layer tree shows the top first.
    streets, topo = [node.layer() for node in basemap_group.findLayers()]
    assert isinstance(streets, QgsVectorTileLayer) and streets.name() == "Demo streets"
    assert isinstance(topo, QgsRasterLayer) and topo.providerType() == "gdal"
    assert topo.name() == "Demo topographic" and topo.crs().authid() == "EPSG:3857"
    for layer in (streets, topo):
        assert layer.isValid()
        assert layer.customProperty(PROPERTY_BASEMAP) == layer.name()
        assert layer.extent().contains(QgsRectangle(-400_000, -400_000, -100_000, -100_000))
    # Styled from the saved style: the land is the style's green, drawn over the raster.
    assert rgb(render([topo])) == basemap_files.RASTER_RGB
    assert rgb(render([streets, topo])) == basemap_files.LAND_RGB


def test_the_style_parts_qgis_cannot_convert_are_named_in_the_log(
    demo_folder, tmp_path, project, caplog
):
    offline_map = map_with_basemaps(demo_folder, tmp_path, [STREETS])

    with caplog.at_level(logging.INFO, logger="plugin"):
        add_offline_map_to_project(offline_map, project)

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("Demo streets" in text and "heatmap" in text for text in warnings), warnings


def test_a_missing_or_damaged_basemap_is_named_and_the_rest_of_the_map_loads(
    demo_folder, tmp_path, project
):
    damaged = dict(TOPO, title="Damaged", path="basemap/damaged.gpkg")
    missing = dict(STREETS, title="Missing", path="basemap/missing.mbtiles")
    offline_map = map_with_basemaps(demo_folder, tmp_path, [damaged, missing, TOPO])
    (offline_map.folder / "basemap" / "damaged.gpkg").write_bytes(b"not a geopackage")
    problems = []

    loaded = add_offline_map_to_project(offline_map, project, problems.append)

    assert len(problems) == 2
    assert "Damaged" in problems[0] + problems[1] and "Missing" in problems[0] + problems[1]
    assert any("missing.mbtiles" in text for text in problems)
    assert loaded and loaded[0].layers
    basemap_group = map_group(project, offline_map).children()[-1]
    assert [node.layer().name() for node in basemap_group.findLayers()] == ["Demo topographic"]


def test_removing_the_map_removes_its_basemaps(demo_folder, tmp_path, project):
    offline_map = map_with_basemaps(demo_folder, tmp_path, [TOPO, STREETS])
    add_offline_map_to_project(offline_map, project)
    assert len(project.mapLayers()) > len(offline_map_layers(offline_map.folder)) >= 1

    remove_offline_map_from_project(offline_map.folder, project)

    assert project.mapLayers() == {}
    assert project.layerTreeRoot().findGroup(offline_map.title) is None


def test_a_local_file_is_used_where_the_user_keeps_it(demo_folder, tmp_path, project):
    mine = basemap_files.raster_gpkg(tmp_path / "elsewhere" / "my basemap.gpkg")
    local = {"title": "My basemap", "kind": "local", "path": str(mine)}
    offline_map = map_with_basemaps(demo_folder, tmp_path, [local])

    add_offline_map_to_project(offline_map, project)

    (layer,) = [
        node.layer() for node in map_group(project, offline_map).children()[-1].findLayers()
    ]
    assert layer.isValid() and layer.source() == str(mine)
    assert rgb(render([layer])) == basemap_files.RASTER_RGB
    remove_offline_map_from_project(offline_map.folder, project)
    assert mine.is_file()


def test_an_online_basemap_is_only_opened_from_a_web_address(demo_folder, tmp_path, project):
    untrusted = {
        "title": "Sneaky",
        "kind": "online",
        "layer_type": "ArcGISTiledMapServiceLayer",
        "source_url": "file:///etc/passwd",
    }
    osm = {"title": "OpenStreetMap", "kind": "online", "layer_type": "OpenStreetMap"}
    offline_map = map_with_basemaps(demo_folder, tmp_path, [osm, untrusted])
    problems = []

    add_offline_map_to_project(offline_map, project, problems.append)

    assert problems == [
        "The online basemap 'Sneaky' (ArcGISTiledMapServiceLayer) has no usable web address."
    ]
    (layer,) = [
        node.layer() for node in map_group(project, offline_map).children()[-1].findLayers()
    ]
    assert layer.providerType() == "wms" and "tile.openstreetmap.org" in layer.source()
    assert "type=xyz" in layer.source()


@pytest.mark.parametrize("hostile", ["nested", "pipe"])
def test_a_hostile_style_leaves_the_vector_basemap_in_qgis_default_style(
    demo_folder, tmp_path, project, caplog, hostile
):
    offline_map = map_with_basemaps(demo_folder, tmp_path, [STREETS])
    style = offline_map.folder / STREETS["style"]
    if hostile == "nested":
        style.write_text("[" * 100_000, encoding="utf-8")
    else:
        style.unlink()
        os.mkfifo(style)  # not a plain file: reading it would wait for ever

    with caplog.at_level(logging.WARNING, logger="plugin"):
        add_offline_map_to_project(offline_map, project)

    (layer,) = [
        node.layer() for node in map_group(project, offline_map).children()[-1].findLayers()
    ]
    assert layer.isValid()
    assert any("could not be read" in r.getMessage() for r in caplog.records)


def test_basemap_files_linked_out_of_the_map_folder_are_not_opened(
    demo_folder, tmp_path, project, caplog
):
    offline_map = map_with_basemaps(demo_folder, tmp_path, [TOPO, STREETS])
    folder = offline_map.folder
    # A copied map whose basemap files are links to files elsewhere on the computer.
    elsewhere = basemap_files.raster_gpkg(tmp_path / "elsewhere" / "private.gpkg")
    (folder / TOPO["path"]).unlink()
    (folder / TOPO["path"]).symlink_to(elsewhere)
    outside_style = tmp_path / "elsewhere" / "style.json"
    shutil.move(folder / STREETS["style"], outside_style)
    (folder / STREETS["style"]).symlink_to(outside_style)
    problems = []

    with caplog.at_level(logging.WARNING, logger="plugin"):
        add_offline_map_to_project(offline_map, project, problems.append)

    assert len(problems) == 1 and "Demo topographic" in problems[0]
    assert "outside the offline map folder" in problems[0]
    (streets,) = [
        node.layer() for node in map_group(project, offline_map).children()[-1].findLayers()
    ]
    # The vector tiles in the folder load, in QGIS's default style, not the linked one.
    assert streets.name() == "Demo streets" and streets.isValid()
    assert rgb(render([streets])) != basemap_files.LAND_RGB
    assert any(
        "outside the offline map folder" in r.getMessage() and "Demo streets" in r.getMessage()
        for r in caplog.records
    )


def test_a_local_basemap_with_a_relative_path_is_not_looked_for_elsewhere(
    demo_folder, tmp_path, project, monkeypatch
):
    # A copied manifest naming a "local" file by a relative path: QGIS's working folder
    # holds such a file, but it is not the map's.
    somewhere = tmp_path / "qgis working folder"
    basemap_files.raster_gpkg(somewhere / "mine.gpkg")
    monkeypatch.chdir(somewhere)
    local = {"title": "Mine", "kind": "local", "path": "mine.gpkg"}
    offline_map = map_with_basemaps(demo_folder, tmp_path, [local])
    problems = []

    add_offline_map_to_project(offline_map, project, problems.append)

    assert len(problems) == 1 and "Mine" in problems[0] and "full path" in problems[0]
    assert project.layerTreeRoot().findGroup(offline_map.title).findGroup("Basemap") is None
