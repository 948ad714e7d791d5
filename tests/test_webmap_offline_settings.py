"""A web map's offline settings (``applicationProperties.offline``) as the defaults of taking
it offline on demand, and the user's choices over them (issue 18, item 4)."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from plugin.core.enums import AttachmentSyncDirection, ReturnLayerAttachmentOption
from plugin.core.geodatabase import Geodatabase
from plugin.core.offline_map import OfflineMap
from plugin.core.sync_model import LayerQuery
from plugin.core.take_offline import OfflineMapTask
from plugin.core.webmap import OfflineSettings, offline_settings
from plugin.take_offline_request import TakeOfflineJob, TakeOfflineRequest
from tests.featureservice import seed
from tests.test_processing_algorithms import _alg
from tests.test_processing_algorithms import processing as _processing_fixture
from tests.test_sync import Local, assert_no_errors, server_rows, sync_map
from tests.test_take_offline import fast_client, local_attachments, local_features

processing = _processing_fixture  # the QGIS Processing fixture, shared
DEMO, READONLY = seed.DEMO_SERVICE, seed.READONLY_SERVICE
POINTS, INSPECTIONS = 0, 3
EVERYTHING = ReturnLayerAttachmentOption.ALL_LAYERS


def webmap(offline) -> dict:
    return {"operationalLayers": [], "applicationProperties": {"offline": offline}}


@pytest.mark.parametrize(
    "data, expected",
    [
        ({}, OfflineSettings()),
        ({"applicationProperties": {"viewing": {}}}, OfflineSettings()),
        (webmap("not an object"), OfflineSettings()),
        (
            webmap(
                {"editableLayers": {"download": "none", "sync": "uploadFeaturesAndAttachments"}}
            ),
            OfflineSettings(
                ReturnLayerAttachmentOption.READ_ONLY_LAYERS,
                True,
                AttachmentSyncDirection.UPLOAD,
            ),
        ),
        (
            webmap({"editableLayers": {"download": "FEATURES"}, "tables": {"includeRows": False}}),
            OfflineSettings(
                ReturnLayerAttachmentOption.READ_ONLY_LAYERS, return_schema_only_for_tables=True
            ),
        ),
        (
            webmap({"readonlyLayers": {"downloadAttachments": False}, "syncDataOptions": 144}),
            OfflineSettings(ReturnLayerAttachmentOption.EDITABLE_LAYERS, sync_data_options=144),
        ),
        (
            webmap(
                {
                    "editableLayers": {
                        "download": "features",
                        "sync": "syncFeaturesAndAttachments",
                    },
                    "readonlyLayers": {"downloadAttachments": False},
                }
            ),
            OfflineSettings(ReturnLayerAttachmentOption.NONE),
        ),
        # Values of the wrong kind keep the defaults.
        (
            webmap(
                {
                    "editableLayers": {"download": 3, "sync": ["upload"]},
                    "tables": {"includeRows": "no"},
                    "syncDataOptions": True,
                }
            ),
            OfflineSettings(),
        ),
        (webmap({"syncDataOptions": -1}), OfflineSettings()),
    ],
)
def test_offline_settings_are_read_from_the_web_map(data, expected):
    assert offline_settings(data) == expected


def settings_task(server) -> OfflineMapTask:
    return OfflineMapTask(
        portal_url=server.portal_url,
        webmap_item_id=seed.OFFLINE_SETTINGS_WEBMAP_ID,
        client=fast_client(),
    )


def table_columns(path, table: str) -> list[str]:
    with closing(sqlite3.connect(path)) as con:
        return [row[1] for row in con.execute(f'PRAGMA table_info("{table}")')]


def entry_of(offline_map, service: str):
    [entry] = [
        e for e in offline_map.geodatabases if e.service_url.endswith(f"/{service}/FeatureServer")
    ]
    return entry


def test_web_map_settings_are_the_defaults_of_taking_it_offline(reference_server, tmp_path):
    server = reference_server
    task = settings_task(server)
    params = task.create_default_generate_offline_map_parameters(None)
    assert params.return_layer_attachment_option is ReturnLayerAttachmentOption.READ_ONLY_LAYERS
    assert params.return_schema_only_for_tables and params.sync_data_options == 4

    offline_map = task.generate_offline_map(params, tmp_path / "map").run().offline_map

    demo, read_only = entry_of(offline_map, DEMO), entry_of(offline_map, READONLY)
    # The table is there with its fields, and no rows.
    assert demo.table_ids == [INSPECTIONS]
    assert local_features(demo.path, INSPECTIONS) == {}
    assert {"inspector", "remarks", "PointGlobalID"} <= set(table_columns(demo.path, "Inspections"))
    # Editable layers: features without attachments; read-only layers: with theirs.
    assert len(local_features(demo.path, POINTS)) == seed.DEMO_COUNTS[POINTS]
    assert local_attachments(demo.path, "Points__ATTACH") == {}
    assert (
        len(local_attachments(read_only.path, "Points__ATTACH"))
        == len(server.attachments(READONLY, POINTS))
        > 0
    )
    # The replica was asked for what the author chose.
    with Geodatabase.open(demo.path) as gdb:
        replica_id = gdb.replica.replica_id
    replica = fast_client().replica_info(server.service_url(DEMO), replica_id)
    assert replica["attachmentsSyncDirection"] == "upload"
    assert replica["syncDataOptions"] == 4


def test_schema_only_table_still_syncs_new_rows_up(reference_server, tmp_path):
    server = reference_server
    task = settings_task(server)
    offline_map = (
        task.generate_offline_map(
            task.create_default_generate_offline_map_parameters(None), tmp_path / "map"
        )
        .run()
        .offline_map
    )
    local = Local(offline_map)
    assert local.rows(INSPECTIONS) == {}
    before = set(server_rows(server, INSPECTIONS))
    added = local.add(
        INSPECTIONS, None, PointGlobalID=seed.guid(DEMO, POINTS, 1), inspector="Field crew"
    )

    result = sync_map(offline_map)

    assert_no_errors(result)
    rows = server_rows(server, INSPECTIONS)
    assert set(rows) == before | {added}
    assert rows[added]["attributes"]["inspector"] == "Field crew"
    # Only the own row comes back: the table stays without the server's other rows.
    assert set(local.rows(INSPECTIONS)) == {added}


def test_users_choices_win_over_the_web_map_settings(reference_server, tmp_path):
    server = reference_server
    task = settings_task(server)
    params = task.create_default_generate_offline_map_parameters(None)
    params.include_attachments = True
    params.return_schema_only_for_tables = False
    params.sync_data_options = None

    offline_map = task.generate_offline_map(params, tmp_path / "map").run().offline_map

    demo = entry_of(offline_map, DEMO)
    assert len(local_features(demo.path, INSPECTIONS)) == seed.DEMO_COUNTS[INSPECTIONS]
    assert len(local_attachments(demo.path, "Points__ATTACH")) == len(
        server.attachments(DEMO, POINTS)
    )


def test_a_layer_query_set_for_a_table_wins_over_schema_only_tables(reference_server, tmp_path):
    server = reference_server
    task = settings_task(server)
    params = task.create_default_generate_offline_map_parameters(None)
    params.set_layer_query(server.service_url(DEMO), INSPECTIONS, LayerQuery(query_option="all"))

    offline_map = task.generate_offline_map(params, tmp_path / "map").run().offline_map

    demo = entry_of(offline_map, DEMO)
    assert len(local_features(demo.path, INSPECTIONS)) == seed.DEMO_COUNTS[INSPECTIONS]
    assert local_attachments(demo.path, "Points__ATTACH") == {}


@pytest.mark.parametrize("include_attachments, expected", [(None, 0), (True, 4)])
def test_request_keeps_the_web_map_attachment_default_unless_chosen(
    reference_server, tmp_path, include_attachments, expected
):
    server = reference_server
    request = TakeOfflineRequest(
        folder=tmp_path / "map",
        portal_url=server.portal_url,
        webmap_item_id=seed.OFFLINE_SETTINGS_WEBMAP_ID,
        include_attachments=include_attachments,
    )
    offline_map = TakeOfflineJob(request).run().offline_map

    demo = entry_of(offline_map, DEMO)
    assert len(local_attachments(demo.path, "Points__ATTACH")) == expected
    assert expected in (0, len(server.attachments(DEMO, POINTS)))


@pytest.mark.parametrize(
    "choice, expected, read_only_expected", [(None, 0, 4), (2, 0, 4), (1, 4, 4), (0, 0, 0)]
)
def test_processing_takes_the_web_map_attachment_default_unless_chosen(
    processing, reference_server, tmp_path, choice, expected, read_only_expected
):
    server = reference_server
    parameters = {
        "PORTAL_URL": server.portal_url,
        "WEBMAP_ITEM_ID": seed.OFFLINE_SETTINGS_WEBMAP_ID,
        "OUTPUT": str(tmp_path / "map"),
    }
    if choice is not None:
        parameters["INCLUDE_ATTACHMENTS"] = choice
    processing.run(_alg("takemapoffline"), parameters)

    offline_map = OfflineMap.open(tmp_path / "map")
    demo = entry_of(offline_map, DEMO)
    read_only = entry_of(offline_map, READONLY)
    assert len(local_attachments(demo.path, "Points__ATTACH")) == expected
    assert len(local_attachments(read_only.path, "Points__ATTACH")) == read_only_expected
    assert local_features(demo.path, INSPECTIONS) == {}
