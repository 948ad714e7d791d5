"""An offline map's geodatabases as QGIS layers: found again, reloaded, removed cleanly."""

from __future__ import annotations

import pytest
from osgeo import ogr
from qgis.core import QgsExpression, QgsFeatureRequest, QgsProject, QgsRelation

from plugin.core.rest import ArcGISClient
from plugin.core.take_offline import OfflineMapTask
from plugin.layers import (
    ATTACHMENTS_WIDGET,
    PROPERTY_ATTACHMENTS,
    add_offline_map_to_project,
    layers_with_unsaved_edits,
    offline_map_layers,
    reload_offline_map_layers,
    remove_offline_map_from_project,
)
from tests.featureservice import seed

POINTS = 0


def take_demo_web_map_offline(server, folder):
    """The demo web map taken offline into ``folder`` by the core, with its defaults."""
    task = OfflineMapTask(
        portal_url=server.portal_url,
        webmap_item_id=seed.DEMO_WEBMAP_ID,
        client=ArcGISClient(),
    )
    parameters = task.create_default_generate_offline_map_parameters(None)
    return task.generate_offline_map(parameters, folder).run().offline_map


@pytest.fixture
def demo_map(reference_server, tmp_path):
    return take_demo_web_map_offline(reference_server, tmp_path / "map")


@pytest.fixture
def project(qgis_new_project):
    yield QgsProject.instance()
    QgsProject.instance().clear()


def _value(layer, name, field):
    request = QgsFeatureRequest().setFilterExpression(
        QgsExpression.createFieldEqualityExpression("name", name)
    )
    return next(layer.getFeatures(request))[field]


def test_reload_shows_what_another_writer_put_into_the_geodatabase(demo_map, project):
    loaded = add_offline_map_to_project(demo_map, project)
    points = loaded[0].layers[POINTS]
    name = seed.POINT_NAMES[0]
    assert _value(points, name, "visits") != 321

    source = ogr.Open(str(demo_map.geodatabases[0].path), update=1)
    source.ExecuteSQL(f"UPDATE \"Points\" SET visits = 321 WHERE name = '{name}'")
    source = None

    assert reload_offline_map_layers(demo_map.folder, project) == 5
    assert _value(points, name, "visits") == 321


def test_only_layers_in_edit_mode_with_changes_count_as_unsaved(demo_map, project):
    loaded = add_offline_map_to_project(demo_map, project)
    points, lines = loaded[0].layers[POINTS], loaded[0].layers[1]
    points.startEditing()
    lines.startEditing()
    feature = next(points.getFeatures())
    points.changeAttributeValue(feature.id(), points.fields().lookupField("visits"), 1)

    assert layers_with_unsaved_edits(demo_map.folder, project) == [points]
    points.rollBack()
    lines.rollBack()
    assert layers_with_unsaved_edits(demo_map.folder, project) == []


def test_attachments_are_a_composition_shown_by_the_attachments_editor(demo_map, project):
    loaded = add_offline_map_to_project(demo_map, project)
    attachments = loaded[0].attachment_layers[POINTS]
    assert attachments.customProperty(PROPERTY_ATTACHMENTS) == POINTS
    data = attachments.fields().lookupField("DATA")
    assert attachments.editorWidgetSetup(data).type() == "Binary"
    relation = next(
        r
        for r in project.relationManager().relations().values()
        if r.referencingLayerId() == attachments.id()
    )
    assert relation.strength() == QgsRelation.RelationStrength.Composition
    # The points' form shows them with the plugin's attachments editor, other relations with
    # QGIS's own relation editor.
    elements = loaded[0].layers[POINTS].editFormConfig().invisibleRootContainer().children()
    widgets = {
        e.relation().id(): e.relationWidgetTypeId() for e in elements if hasattr(e, "relation")
    }
    assert widgets.pop(relation.id()) == ATTACHMENTS_WIDGET
    assert widgets and set(widgets.values()) == {"relation_editor"}
    parent = next(loaded[0].layers[POINTS].getFeatures())
    children = list(relation.getRelatedFeatures(parent))
    assert all(child["REL_GLOBALID"] == parent["GlobalID"] for child in children)


def test_remove_takes_away_layers_relations_and_the_group(demo_map, project):
    add_offline_map_to_project(demo_map, project)
    assert offline_map_layers(demo_map.folder, project)

    remove_offline_map_from_project(demo_map.folder, project)

    assert offline_map_layers(demo_map.folder, project) == []
    assert project.relationManager().relations() == {}
    assert project.layerTreeRoot().findGroups() == []


def test_class_breaks_become_a_graduated_renderer_and_the_log_names_what_was_left_out(qgis_app):
    from qgis.core import Qgis, QgsApplication, QgsGraduatedSymbolRenderer, QgsVectorLayer

    from plugin.layers import graduated_renderer

    layer = QgsVectorLayer("Point?crs=EPSG:3857&field=visits:integer", "Counts", "memory")
    symbol = {
        "type": "esriSMS",
        "style": "esriSMSCircle",
        "color": [255, 0, 0, 255],
        "size": 6,
        "outline": {"color": [0, 0, 0, 255], "width": 1},
    }
    renderer_json = {
        "type": "classBreaks",
        "field": "VISITS",  # as the service spells it
        "minValue": 0,
        # ArcGIS Online's "Counts and Amounts" maps: unsorted breaks, no default symbol,
        # visual variables.
        "classBreakInfos": [
            {"classMaxValue": 100, "label": "51 – 100", "symbol": symbol},
            {"classMaxValue": 10, "label": "0 – 10", "symbol": symbol},
            {"classMaxValue": 50, "symbol": None},
        ],
        "defaultSymbol": None,
        "visualVariables": [{"type": "sizeInfo", "field": "visits"}],
    }
    logged = []

    def collect(message, tag, level):
        if tag == "Offline Map Sync":
            logged.append((message, level))

    QgsApplication.messageLog().messageReceived.connect(collect)
    try:
        renderer = graduated_renderer(renderer_json, layer)
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(collect)

    assert isinstance(renderer, QgsGraduatedSymbolRenderer)
    assert renderer.classAttribute() == "visits"
    assert [(r.lowerValue(), r.upperValue()) for r in renderer.ranges()] == [
        (0, 10),
        (10, 50),
        (50, 100),
    ]
    assert [r.label() for r in renderer.ranges()] == ["0 – 10", "10 – 50", "51 – 100"]
    assert all(r.symbol() is not None for r in renderer.ranges())
    assert any(
        "Counts" in message and "visual variables" in message and level == Qgis.MessageLevel.Warning
        for message, level in logged
    ), logged


def _journal_mode(path) -> str:
    import sqlite3

    con = sqlite3.connect(str(path))
    try:
        return str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    finally:
        con.close()


def test_a_sync_runs_in_wal_mode_while_a_qgis_layer_holds_the_geopackage_and_reads_it(
    reference_server, demo_map, project
):
    from plugin.core.sync import OfflineMapSyncTask

    path = demo_map.geodatabases[0].path
    loaded = add_offline_map_to_project(demo_map, project)
    points = loaded[0].layers[POINTS]
    # An edit saved in QGIS: QGIS leaves the GeoPackage in the rollback journal.
    points.startEditing()
    first = next(points.getFeatures())
    points.changeAttributeValue(first.id(), points.fields().lookupField("visits"), 4321)
    assert points.commitChanges()
    name = seed.POINT_NAMES[1]
    server_gid = _value(points, name, "GlobalID")
    reference_server.apply_edits(
        seed.DEMO_SERVICE, POINTS, updates=[{"GlobalID": server_gid, "visits": 999}]
    )
    count = points.featureCount()
    seen = []

    def read_during_the_commit(percent, message):
        if message.startswith("Applied"):  # inside the sync's write transaction
            names = [f["name"] for f in points.getFeatures()]  # the QGIS layer reads
            seen.append((len(names), _journal_mode(path)))

    task = OfflineMapSyncTask(demo_map, client=ArcGISClient())
    job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())
    job.add_progress_listener(read_during_the_commit)
    result = job.run()

    assert not result.has_errors, result.geodatabase_errors
    assert seen and all(entry == (count, "wal") for entry in seen)
    assert reload_offline_map_layers(demo_map.folder, project) == 5
    assert _value(points, name, "visits") == 999
    server = {
        f["attributes"]["GlobalID"]: f["attributes"]
        for f in reference_server.query_all(seed.DEMO_SERVICE, POINTS)
    }
    assert server[first["GlobalID"]]["visits"] == 4321
