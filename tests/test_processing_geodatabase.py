"""Processing doors to one-service geodatabases and to removal: generate, synchronize with
per-layer directions, remove (with and without confirmation), through ``processing.run``."""

from __future__ import annotations

import json
import sqlite3

import pytest
from qgis.core import QgsProcessingException

from plugin.core.geodatabase import Geodatabase
from plugin.core.gpkg_connection import register_functions
from tests.featureservice import seed
from tests.test_processing_algorithms import _alg, processing  # noqa: F401 (fixture)
from tests.test_sync import DEMO, INSPECTIONS, POINTS, Local, point_gid, take_offline


def _set_name(path, table: str, global_id_field: str, global_id: str, column: str, value) -> None:
    con = sqlite3.connect(path)
    register_functions(con)
    with con:
        con.execute(
            f'UPDATE "{table}" SET "{column}" = ? WHERE "{global_id_field}" = ?', [value, global_id]
        )
    con.close()


def _registered(server) -> set[str]:
    from tests.test_sync import fast_client

    return {r["replicaID"] for r in fast_client().replicas(server.service_url(DEMO))}


def test_generate_sync_per_layer_and_remove_a_geodatabase(processing, reference_server, tmp_path):  # noqa: F811
    out = tmp_path / "field.gpkg"
    generated = processing.run(
        _alg("generategeodatabase"),
        {
            "SERVICE_URL": reference_server.service_url(DEMO),
            "LAYERS": "0, 3",
            "OUTPUT": str(out),
        },
    )
    assert generated["OUTPUT"] == str(out)
    assert generated["LAYER_COUNT"] == 2
    replica_id = generated["REPLICA_ID"]
    assert replica_id in _registered(reference_server)
    with Geodatabase.open(out) as gdb:
        inspection = gdb.layer(INSPECTIONS)
        points = gdb.layer(POINTS)
    inspection_gid = seed.guid(DEMO, INSPECTIONS, 0)
    _set_name(out, points.table_name, points.global_id_field, point_gid(0), "name", "Up")
    _set_name(
        out, inspection.table_name, inspection.global_id_field, inspection_gid, "remarks", "Stays"
    )
    reference_server.apply_edits(
        DEMO, POINTS, updates=[{"attributes": {"GlobalID": point_gid(1), "name": "Not for me"}}]
    )

    synced = processing.run(
        _alg("synchronizegeodatabase"),
        {
            "GEODATABASE": str(out),
            "LAYER_DIRECTIONS": "0=upload, 3=none",
            "ROLLBACK_ON_FAILURE": True,
        },
    )

    rows = {r["layer_id"]: r for r in json.loads(synced["RESULTS"])}
    assert rows[POINTS]["uploaded_counts"]["updates"] == 1
    assert rows[POINTS]["downloaded"] == 0  # upload only: the server's change waits
    assert rows[INSPECTIONS]["uploaded"] == 0
    assert synced["HAS_ERRORS"] is False
    server_points = {f["attributes"]["GlobalID"]: f for f in reference_server.query_all(DEMO, 0)}
    assert server_points[point_gid(0)]["attributes"]["name"] == "Up"
    with Geodatabase.open(out) as gdb:
        assert gdb.pending_counts()[INSPECTIONS]["updates"] == 1
        assert gdb.pending_counts()[POINTS]["updates"] == 0

    with pytest.raises(QgsProcessingException, match="never uploaded"):
        processing.run(_alg("removegeodatabase"), {"GEODATABASE": str(out)})
    assert out.is_file()

    removed = processing.run(
        _alg("removegeodatabase"), {"GEODATABASE": str(out), "DISCARD_PENDING_EDITS": True}
    )
    assert removed["UNREGISTERED"] == 1
    assert removed["DISCARDED_EDITS"] == 1
    assert not out.exists()
    assert replica_id not in _registered(reference_server)


def test_sync_refuses_malformed_layer_directions(processing, reference_server, tmp_path):  # noqa: F811
    offline_map = take_offline(reference_server, tmp_path / "map")
    path = offline_map.geodatabases[0].path
    with pytest.raises(QgsProcessingException, match="not a layer direction"):
        processing.run(
            _alg("synchronizegeodatabase"),
            {"GEODATABASE": str(path), "LAYER_DIRECTIONS": "Points=sideways"},
        )


def test_remove_offline_map_with_processing(processing, reference_server, tmp_path):  # noqa: F811
    offline_map = take_offline(reference_server, tmp_path / "map")
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Pending")

    with pytest.raises(QgsProcessingException, match="1 local edits"):
        processing.run(_alg("removeofflinemap"), {"OFFLINE_MAP": str(offline_map.folder)})
    assert local.pending()[POINTS]["updates"] == 1

    reference_server.stop()
    with pytest.raises(QgsProcessingException, match="cannot be reached"):
        processing.run(
            _alg("removeofflinemap"),
            {"OFFLINE_MAP": str(offline_map.folder), "DISCARD_PENDING_EDITS": True},
        )
    assert local.pending()[POINTS]["updates"] == 1

    removed = processing.run(
        _alg("removeofflinemap"),
        {
            "OFFLINE_MAP": str(offline_map.folder),
            "DISCARD_PENDING_EDITS": True,
            "REMOVE_IF_UNREACHABLE": True,
        },
    )
    assert removed["UNREGISTERED"] == 0
    assert len(json.loads(removed["LEFT_REGISTERED"])) == 1
    assert not offline_map.folder.exists()


def test_generate_refuses_a_url_that_is_not_a_feature_service(processing, tmp_path):  # noqa: F811
    with pytest.raises(QgsProcessingException, match="not a feature service URL"):
        processing.run(
            _alg("generategeodatabase"),
            {"SERVICE_URL": "http://127.0.0.1:9/nothing", "OUTPUT": str(tmp_path / "x.gpkg")},
        )
    assert not (tmp_path / "x.gpkg").exists()


def test_the_provider_offers_the_geodatabase_and_removal_algorithms(processing):  # noqa: F811
    from qgis.core import QgsApplication

    from plugin.processing.provider import PROVIDER_ID

    provider = QgsApplication.processingRegistry().providerById(PROVIDER_ID)
    names = {a.name() for a in provider.algorithms()}
    assert {
        "generategeodatabase",
        "synchronizegeodatabase",
        "removeofflinemap",
        "removegeodatabase",
    } <= names


def _map_and_a_copy(server, tmp_path):
    """A map taken offline in ``map`` and copied to ``copy``; the map and its replica ID."""
    import shutil

    original = take_offline(server, tmp_path / "map")
    shutil.copytree(tmp_path / "map", tmp_path / "copy")
    with Geodatabase.open(original.geodatabases[0].path) as gdb:
        return original, gdb.replica.replica_id


def test_processing_removes_a_copied_map_files_only_and_the_original_still_syncs(
    processing,  # noqa: F811
    reference_server,
    tmp_path,
):
    from tests.test_sync import assert_no_errors, sync_map

    original, replica_id = _map_and_a_copy(reference_server, tmp_path)

    with pytest.raises(QgsProcessingException, match="may be a copy"):
        processing.run(_alg("removeofflinemap"), {"OFFLINE_MAP": str(tmp_path / "copy")})
    assert (tmp_path / "copy").is_dir()

    removed = processing.run(
        _alg("removeofflinemap"),
        {"OFFLINE_MAP": str(tmp_path / "copy"), "IF_A_COPY": 1},  # the files only
    )

    assert not (tmp_path / "copy").exists()
    assert removed["UNREGISTERED"] == 0
    assert [r["replica_id"] for r in json.loads(removed["LEFT_REGISTERED"])] == [replica_id]
    assert replica_id in _registered(reference_server)
    Local(original).update(POINTS, point_gid(0), name="Still syncing")
    assert_no_errors(sync_map(original))


def test_processing_can_unregister_the_replicas_of_a_copy_anyway(
    processing,  # noqa: F811
    reference_server,
    tmp_path,
):
    _, replica_id = _map_and_a_copy(reference_server, tmp_path)

    removed = processing.run(
        _alg("removeofflinemap"),
        {"OFFLINE_MAP": str(tmp_path / "copy"), "IF_A_COPY": 2},  # unregister anyway
    )

    assert removed["UNREGISTERED"] == 1
    assert replica_id not in _registered(reference_server)
    assert not (tmp_path / "copy").exists()
