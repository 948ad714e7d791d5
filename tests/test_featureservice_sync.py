"""Sync semantics of the reference service: createReplica, synchronizeReplica and friends."""

from __future__ import annotations

import base64
import threading
import time

import pytest
import requests

from tests.featureservice.client import error_code, get, post
from tests.featureservice.seed import DEMO_COUNTS, DEMO_SERVICE, NOSYNC_SERVICE, READONLY_SERVICE

EMBEDDED = "esriTransportTypeEmbedded"
NEW_GID = "{11111111-2222-3333-4444-555555555555}"


@pytest.fixture
def demo(reference_server):
    return reference_server.service_url(DEMO_SERVICE)


def create(url: str, **params) -> dict:
    params.setdefault("replicaName", "test")
    params.setdefault("layers", "0,1,2,3")
    params.setdefault("transportType", EMBEDDED)
    return post(f"{url}/createReplica", **params)


def sync(url: str, replica: dict, edits=None, **params) -> dict:
    params.setdefault("transportType", EMBEDDED)
    params.setdefault("rollbackOnFailure", False)
    if (
        "replicaServerGen" not in params
        and "syncLayers" not in params
        and "replicaServerGen" in replica
    ):
        params["replicaServerGen"] = replica["replicaServerGen"]
    return post(f"{url}/synchronizeReplica", replicaID=replica["replicaID"], edits=edits, **params)


def layer_entry(result: dict, layer_id: int) -> dict:
    return next(e for e in result["edits"] if e["id"] == layer_id)


def update(gid: str, geometry=None, **attributes) -> dict:
    feature = {"attributes": {"GlobalID": gid, **attributes}}
    if geometry is not None:
        feature["geometry"] = geometry
    return feature


def point_gid(server, index: int = 0) -> str:
    return server.query_all(DEMO_SERVICE, 0)[index]["attributes"]["GlobalID"]


def row(server, gid: str, layer_id: int = 0) -> dict | None:
    return next(
        (f for f in server.query_all(DEMO_SERVICE, layer_id) if f["attributes"]["GlobalID"] == gid),
        None,
    )


def wait_for_job(status_url: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = get(status_url)
        if status["status"] in ("Completed", "CompletedWithErrors", "Failed"):
            return status
        time.sleep(0.05)
    raise AssertionError("job did not finish")


# --- createReplica -----------------------------------------------------------------------------


def test_create_replica_embedded_result_has_the_spec_shape(reference_server, demo):
    result = create(demo, returnAttachments=True, returnAttachmentsDataByUrl=False)
    assert list(result)[:6] == [
        "replicaName",
        "replicaID",
        "responseType",
        "syncModel",
        "replicaServerGen",
        "layers",
    ]
    assert result["responseType"] == "esriReplicaResponseTypeData"
    assert result["replicaID"].startswith("{") and result["syncModel"] == "perReplica"
    assert isinstance(result["replicaServerGen"], int)
    assert [list(entry)[0] for entry in result["layers"]] == ["id"] * 4
    counts = {entry["id"]: len(entry["features"]) for entry in result["layers"]}
    assert counts == DEMO_COUNTS
    points = result["layers"][0]
    feature = points["features"][0]
    assert (
        set(feature["attributes"]) >= {"OBJECTID", "GlobalID", "name", "observed"}
        and "x" in feature["geometry"]
    )
    assert "geometry" not in result["layers"][3]["features"][0]
    attachment = points["attachments"][0]
    assert set(attachment) == {"globalId", "parentGlobalId", "name", "contentType", "size", "data"}
    assert base64.b64decode(attachment["data"]).startswith(b"\x89PNG")
    assert len(points["attachments"]) == 4


def test_create_replica_by_url_with_attachment_urls(demo):
    answer = create(demo, transportType="esriTransportTypeUrl", returnAttachments=True)
    assert (
        answer["transportType"] == "esriTransportTypeUrl"
        and answer["responseType"] == "esriReplicaResponseTypeData"
    )
    result = requests.get(answer["URL"], timeout=10).json()
    assert result["replicaID"] == answer["replicaID"]
    attachment = result["layers"][0]["attachments"][0]
    assert "data" not in attachment
    assert requests.get(attachment["url"], timeout=10).content.startswith(b"\x89PNG")


def test_create_replica_async_reports_status_then_result(reference_server, demo):
    reference_server.inject_fault("createReplica", "slow_job", polls=2)
    answer = create(demo, **{"async": True})
    assert set(answer) == {"statusUrl"}
    first = get(answer["statusUrl"])
    assert first["status"] == "InProgress"
    status = wait_for_job(answer["statusUrl"])
    assert status["status"] == "Completed" and status["replicaID"].startswith("{")
    result = requests.get(status["resultUrl"], timeout=10).json()
    assert result["replicaID"] == status["replicaID"] and len(result["layers"]) == 4


def test_job_status_answers_while_another_job_holds_the_writer(reference_server, demo):
    # As on ArcGIS, polling a job does not wait for running jobs (their long transaction).
    answer = create(demo, **{"async": True})
    finished = wait_for_job(answer["statusUrl"])
    holding, release = threading.Event(), threading.Event()

    def long_job() -> None:
        with reference_server.app.store.write():
            holding.set()
            release.wait(60)

    job = threading.Thread(target=long_job)
    job.start()
    try:
        assert holding.wait(10)
        status = get(answer["statusUrl"])  # would wait for the writer before the fix
    finally:
        release.set()
        job.join()
    assert status["status"] == "Completed" and status["resultUrl"] == finished["resultUrl"]


def test_create_replica_async_failure_is_reported_in_the_job(reference_server):
    answer = create(reference_server.service_url(DEMO_SERVICE), layers="0,77", **{"async": True})
    status = wait_for_job(answer["statusUrl"])
    assert status["status"] == "Failed" and status["error"]["code"] == 400


def test_layer_queries_and_geometry_filter_limit_the_replica(reference_server, demo):
    points = reference_server.query_all(DEMO_SERVICE, 0)
    x, y = points[0]["geometry"]["x"], points[0]["geometry"]["y"]
    result = create(
        demo,
        geometry=f"{x - 10},{y - 10},{x + 500},{y + 10}",
        geometryType="esriGeometryEnvelope",
        layerQueries={
            "0": {"queryOption": "useFilter", "where": "category <> 2", "useGeometry": True},
            "1": {"queryOption": "none"},
            "2": {"queryOption": "all"},
        },
    )
    counts = {entry["id"]: len(entry["features"]) for entry in result["layers"]}
    assert counts == {0: 1, 1: 0, 2: DEMO_COUNTS[2], 3: DEMO_COUNTS[3]}


def test_include_related_takes_only_the_rows_of_exported_points(demo):
    result = create(
        demo,
        layers="0,3",
        layerQueries={
            "0": {"queryOption": "useFilter", "where": "OBJECTID = 1"},
            "3": {"queryOption": "none", "includeRelated": True},
        },
    )
    point = result["layers"][0]["features"][0]["attributes"]["GlobalID"]
    inspections = result["layers"][1]["features"]
    assert inspections and all(f["attributes"]["PointGlobalID"] == point for f in inspections)


def test_per_layer_replica_reports_layer_server_gens(demo):
    result = create(demo, syncModel="perLayer", layers="0,3")
    assert "replicaServerGen" not in result
    assert [g["id"] for g in result["layerServerGens"]] == [0, 3]


def test_sync_model_none_registers_nothing(demo):
    result = create(demo, syncModel="none", layers="1")
    assert "replicaID" not in result and len(result["layers"][0]["features"]) == DEMO_COUNTS[1]
    assert get(f"{demo}/replicas") == []


def test_registering_existing_data_answers_info_and_syncs_from_its_generation(
    reference_server, demo
):
    server = reference_server
    old_gen = server.server_gen(DEMO_SERVICE)
    gid = point_gid(server)
    server.apply_edits(DEMO_SERVICE, 0, updates=[{"GlobalID": gid, "name": "Since the data"}])
    for model, options in [
        ("perReplica", {"registerExistingData": True, "replicaServerGen": old_gen}),
        (
            "perLayer",
            {
                "registerExistingData": True,
                "layerServerGens": [{"id": i, "serverGen": old_gen} for i in (0, 3)],
            },
        ),
    ]:
        result = create(demo, syncModel=model, layers="0,3", replicaOptions=options)
        assert result["responseType"] == "esriReplicaResponseTypeInfo"
        assert "layers" not in result and result["replicaID"]
        if model == "perReplica":
            assert result["replicaServerGen"] == old_gen
        else:
            assert {g["serverGen"] for g in result["layerServerGens"]} == {old_gen}
        down = sync(demo, result, syncDirection="download")
        updates = layer_entry(down, 0)["features"]["updates"]
        assert [f["attributes"]["name"] for f in updates] == ["Since the data"]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"registerExistingData": True}, "generation"),
        ({"registerExistingData": True, "replicaServerGen": 10**9}, "newer"),
        ({"registerExistingData": True, "replicaServerGen": "soon"}, "replicaServerGen"),
        ("[1]", "replicaOptions"),
    ],
)
def test_registering_existing_data_refuses_unusable_generations(demo, options, fragment):
    body = create(demo, replicaOptions=options)
    assert error_code(body) == 400
    assert fragment.lower() in (body["error"]["message"]).lower()
    assert get(f"{demo}/replicas") == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"layers": "0,42"}, "42"),
        ({"layers": ""}, "layers"),
        ({"replicaName": ""}, "replicaName"),
        ({"layerQueries": "{broken"}, "layerQueries"),
        (
            {"layerQueries": {"0": {"queryOption": "useFilter", "where": "1=1; DROP TABLE x"}}},
            "where",
        ),
        ({"syncModel": "perFeature"}, "syncModel"),
        ({"dataFormat": "sqlite"}, "dataFormat"),
        ({"geometry": "1,2,3"}, "geometry"),
        ({"transportType": "carrierPigeon"}, "transportType"),
    ],
)
def test_create_replica_rejects_bad_parameters(reference_server, demo, params, fragment):
    body = create(demo, **params)
    assert error_code(body) == 400
    assert (
        fragment.lower() in (body["error"]["message"] + " ".join(body["error"]["details"])).lower()
    )
    assert get(f"{demo}/replicas") == []


def test_create_replica_on_a_service_without_sync_fails_clearly(reference_server):
    body = create(reference_server.service_url(NOSYNC_SERVICE), layers="0")
    assert error_code(body) == 400 and "does not support sync" in body["error"]["message"]


# --- synchronizeReplica ------------------------------------------------------------------------


def test_upload_applies_edits_returns_results_inside_layer_entry_and_advances_generation(
    reference_server, demo
):
    replica = create(demo)
    gid = point_gid(reference_server)
    deleted = reference_server.query_all(DEMO_SERVICE, 1)[0]["attributes"]["GlobalID"]
    edits = [
        {
            "id": 0,
            "features": {
                "adds": [
                    {
                        "attributes": {"GlobalID": NEW_GID, "name": "new"},
                        "geometry": {"x": 1.0, "y": 2.0},
                    }
                ],
                "updates": [update(gid, name="renamed")],
                "deleteIds": [],
            },
        },
        {"id": 1, "features": {"adds": [], "updates": [], "deleteIds": [deleted]}},
    ]
    result = sync(demo, replica, edits, syncDirection="upload")
    assert (
        result["replicaServerGen"] == replica["replicaServerGen"]
    )  # upload-only: still owes the download
    points = layer_entry(result, 0)
    assert points["addResults"] == [
        {"objectId": points["addResults"][0]["objectId"], "globalId": NEW_GID, "success": True}
    ]
    assert points["updateResults"][0]["success"] and points["updateResults"][0]["globalId"] == gid
    assert layer_entry(result, 1)["deleteResults"][0] == {
        "objectId": 1,
        "globalId": deleted,
        "success": True,
    }
    assert "features" not in points
    assert row(reference_server, gid)["attributes"]["name"] == "renamed"
    assert row(reference_server, NEW_GID)["geometry"] == {"x": 1.0, "y": 2.0}
    assert row(reference_server, deleted, 1) is None
    assert reference_server.server_gen(DEMO_SERVICE) > replica["replicaServerGen"]


def test_download_returns_full_rows_adds_and_globalid_deletes_from_others(reference_server, demo):
    replica = create(demo)
    gid = point_gid(reference_server, 2)
    gone = point_gid(reference_server, 3)
    reference_server.apply_edits(
        DEMO_SERVICE,
        0,
        adds=[{"attributes": {"name": "server add"}, "geometry": {"x": 5.0, "y": 5.0}}],
        updates=[{"GlobalID": gid, "visits": 999}],
        deletes=[gone],
    )
    result = sync(demo, replica, syncDirection="download")
    assert result["responseType"] == "esriReplicaResponseTypeEdits"
    assert (
        result["replicaServerGen"]
        == reference_server.server_gen(DEMO_SERVICE)
        > replica["replicaServerGen"]
    )
    features = layer_entry(result, 0)["features"]
    assert [f["attributes"]["name"] for f in features["adds"]] == ["server add"]
    [updated] = features["updates"]
    assert updated["attributes"]["visits"] == 999
    assert set(updated["attributes"]) == {f["name"] for f in get(f"{demo}/0")["fields"]}
    assert updated["geometry"] == row(reference_server, gid)["geometry"]
    assert features["deleteIds"] == [gone]
    again = sync(
        demo, {**replica, "replicaServerGen": result["replicaServerGen"]}, syncDirection="download"
    )
    assert again["responseType"] == "esriReplicaResponseTypeNoEdits"


def test_replicas_own_edits_are_not_echoed_but_merged_rows_are(reference_server, demo):
    replica = create(demo)
    mine, shared = point_gid(reference_server, 0), point_gid(reference_server, 1)
    reference_server.apply_edits(DEMO_SERVICE, 0, updates=[{"GlobalID": shared, "visits": 1234}])
    edits = [
        {
            "id": 0,
            "features": {
                "adds": [{"attributes": {"GlobalID": NEW_GID, "name": "mine"}}],
                "updates": [update(mine, name="only mine"), update(shared, name="both")],
                "deleteIds": [],
            },
        }
    ]
    result = sync(demo, replica, edits)
    features = layer_entry(result, 0)["features"]
    assert features["adds"] == []
    [merged] = features["updates"]
    assert merged["attributes"]["GlobalID"] == shared
    assert (merged["attributes"]["name"], merged["attributes"]["visits"]) == ("both", 1234)


def test_later_sync_wins_per_attribute_and_different_attributes_both_survive(
    reference_server, demo
):
    first = create(demo, replicaName="first")
    second = create(demo, replicaName="second")
    gid = point_gid(reference_server)
    sync(
        demo,
        first,
        [{"id": 0, "features": {"updates": [update(gid, name="first name", visits=1)]}}],
    )
    result = sync(
        demo,
        second,
        [{"id": 0, "features": {"updates": [update(gid, name="second name", status="damaged")]}}],
    )
    attributes = row(reference_server, gid)["attributes"]
    assert (attributes["name"], attributes["visits"], attributes["status"]) == (
        "second name",
        1,
        "damaged",
    )
    [downloaded] = layer_entry(result, 0)["features"]["updates"]
    assert (downloaded["attributes"]["name"], downloaded["attributes"]["visits"]) == (
        "second name",
        1,
    )
    back = sync(
        demo,
        {
            **first,
            "replicaServerGen": reference_server.replica(first["replicaID"])["replicaServerGen"],
        },
    )
    [seen_by_first] = layer_entry(back, 0)["features"]["updates"]
    assert (seen_by_first["attributes"]["name"], seen_by_first["attributes"]["status"]) == (
        "second name",
        "damaged",
    )


def test_geometry_changes_only_when_the_update_carries_one(reference_server, demo):
    replica = create(demo)
    gid = point_gid(reference_server)
    before = row(reference_server, gid)["geometry"]
    sync(demo, replica, [{"id": 0, "features": {"updates": [update(gid, name="no geometry")]}}])
    assert row(reference_server, gid)["geometry"] == before
    sync(
        demo,
        replica,
        [{"id": 0, "features": {"updates": [update(gid, geometry={"x": 7.0, "y": 8.0})]}}],
    )
    assert row(reference_server, gid)["geometry"] == {"x": 7.0, "y": 8.0}


def test_update_of_server_deleted_feature_fails_with_1019_and_is_not_resurrected(
    reference_server, demo
):
    replica = create(demo)
    gid = point_gid(reference_server)
    reference_server.apply_edits(DEMO_SERVICE, 0, deletes=[gid])
    result = sync(
        demo,
        replica,
        [{"id": 0, "features": {"updates": [update(gid, name="zombie")]}}],
        rollbackOnFailure=False,
    )
    entry = layer_entry(result, 0)
    [failure] = entry["updateResults"]
    assert (
        failure["success"] is False
        and failure["error"]["code"] == 1019
        and failure["globalId"] == gid
    )
    assert entry["features"]["deleteIds"] == [gid]
    assert row(reference_server, gid) is None


def test_uploaded_delete_of_server_updated_feature_deletes_it(reference_server, demo):
    replica = create(demo)
    gid = point_gid(reference_server)
    reference_server.apply_edits(DEMO_SERVICE, 0, updates=[{"GlobalID": gid, "name": "server"}])
    result = sync(demo, replica, [{"id": 0, "features": {"deleteIds": [gid]}}])
    assert layer_entry(result, 0)["deleteResults"][0]["success"]
    assert row(reference_server, gid) is None
    assert layer_entry(result, 0)["features"]["updates"] == []


def test_replayed_upload_neither_duplicates_nor_fails(reference_server, demo):
    replica = create(demo)
    gid = point_gid(reference_server)
    edits = [
        {
            "id": 0,
            "features": {
                "adds": [
                    {
                        "attributes": {"GlobalID": NEW_GID, "name": "once"},
                        "geometry": {"x": 1.0, "y": 1.0},
                    }
                ],
                "updates": [update(gid, name="upd")],
                "deleteIds": [point_gid(reference_server, 5)],
            },
        }
    ]
    first = sync(demo, replica, edits, rollbackOnFailure=True)
    second = sync(demo, replica, edits, rollbackOnFailure=True)
    assert "error" not in second
    for result in (first, second):
        entry = layer_entry(result, 0)
        assert all(
            r["success"]
            for r in entry["addResults"] + entry["updateResults"] + entry["deleteResults"]
        )
    assert (
        layer_entry(first, 0)["addResults"][0]["objectId"]
        == layer_entry(second, 0)["addResults"][0]["objectId"]
    )
    gids = [f["attributes"]["GlobalID"] for f in reference_server.query_all(DEMO_SERVICE, 0)]
    assert gids.count(NEW_GID) == 1 and len(gids) == DEMO_COUNTS[0]
    assert layer_entry(second, 0)["features"] == {"adds": [], "updates": [], "deleteIds": []}


def test_rolled_back_sync_changes_nothing_and_keeps_the_generation(reference_server, demo):
    replica = create(demo)
    gid = point_gid(reference_server)
    reference_server.apply_edits(DEMO_SERVICE, 0, deletes=[gid])
    gen = reference_server.server_gen(DEMO_SERVICE)
    edits = [
        {
            "id": 0,
            "features": {
                "adds": [{"attributes": {"GlobalID": NEW_GID, "name": "rolled back"}}],
                "updates": [update(gid, name="zombie")],
            },
        }
    ]
    body = sync(demo, replica, edits, rollbackOnFailure=True)
    assert error_code(body) == 400 and "rolled back" in body["error"]["message"]
    assert any("1019" in d for d in body["error"]["details"])
    assert row(reference_server, NEW_GID) is None
    assert reference_server.server_gen(DEMO_SERVICE) == gen
    assert (
        reference_server.replica(replica["replicaID"])["replicaServerGen"]
        == replica["replicaServerGen"]
    )


def test_rollback_defaults_to_true_per_replica_and_false_per_layer(reference_server, demo):
    gid = point_gid(reference_server)
    reference_server.apply_edits(DEMO_SERVICE, 0, deletes=[gid])
    edits = [
        {
            "id": 0,
            "features": {
                "updates": [update(gid, name="zombie")],
                "adds": [{"attributes": {"GlobalID": NEW_GID}}],
            },
        }
    ]
    per_replica = create(demo)
    body = post(
        f"{demo}/synchronizeReplica",
        replicaID=per_replica["replicaID"],
        replicaServerGen=per_replica["replicaServerGen"],
        edits=edits,
        transportType=EMBEDDED,
    )
    assert error_code(body) == 400
    per_layer = create(demo, syncModel="perLayer", layers="0")
    body = post(
        f"{demo}/synchronizeReplica",
        replicaID=per_layer["replicaID"],
        edits=edits,
        transportType=EMBEDDED,
    )
    assert layer_entry(body, 0)["addResults"][0]["success"] is True


def test_failed_request_does_not_advance_generation(reference_server, demo):
    replica = create(demo)
    reference_server.apply_edits(
        DEMO_SERVICE, 0, updates=[{"GlobalID": point_gid(reference_server), "visits": 3}]
    )
    body = sync(demo, replica, edits="[{broken json")
    assert error_code(body) == 400
    assert (
        reference_server.replica(replica["replicaID"])["replicaServerGen"]
        == replica["replicaServerGen"]
    )
    result = sync(demo, replica)
    assert len(layer_entry(result, 0)["features"]["updates"]) == 1


def test_per_layer_sync_layers_directions_and_generations(reference_server, demo):
    replica = create(demo, syncModel="perLayer", layers="0,1")
    start = {g["id"]: g["serverGen"] for g in replica["layerServerGens"]}
    reference_server.apply_edits(
        DEMO_SERVICE, 0, updates=[{"GlobalID": point_gid(reference_server), "visits": 3}]
    )
    reference_server.apply_edits(
        DEMO_SERVICE,
        1,
        updates=[
            {
                "GlobalID": reference_server.query_all(DEMO_SERVICE, 1)[0]["attributes"][
                    "GlobalID"
                ],
                "name": "x",
            }
        ],
    )
    sync_layers = [{"id": 0, "serverGen": start[0], "syncDirection": "download"}]
    result = post(
        f"{demo}/synchronizeReplica",
        replicaID=replica["replicaID"],
        syncLayers=sync_layers,
        transportType=EMBEDDED,
    )
    gens = {g["id"]: g["serverGen"] for g in result["layerServerGens"]}
    assert gens[0] == reference_server.server_gen(DEMO_SERVICE) and gens[1] == start[1]
    assert [e["id"] for e in result["edits"]] == [0]
    body = post(
        f"{demo}/synchronizeReplica",
        replicaID=replica["replicaID"],
        syncLayers=[{"id": 2, "serverGen": 1}],
        transportType=EMBEDDED,
    )
    assert error_code(body) == 400 and "not part of this replica" in body["error"]["message"]


def test_snapshot_returns_replacement_data(reference_server, demo):
    replica = create(demo, layers="1")
    result = sync(demo, replica, syncDirection="snapshot")
    assert result["responseType"] == "esriReplicaResponseTypeReplacementData"
    assert len(result["layers"][0]["features"]) == DEMO_COUNTS[1]


def test_attachment_upload_and_download_by_globalid(reference_server, demo):
    first = create(demo, replicaName="first", layers="0")
    second = create(demo, replicaName="second", layers="0")
    parent = point_gid(reference_server, 2)
    att_gid = "{22222222-3333-4444-5555-666666666666}"
    data = base64.b64encode(b"photo bytes").decode()
    edits = [
        {
            "id": 0,
            "attachments": {
                "adds": [
                    {
                        "globalId": att_gid,
                        "parentGlobalId": parent,
                        "name": "p.jpg",
                        "contentType": "image/jpeg",
                        "data": data,
                    }
                ]
            },
        }
    ]
    result = sync(demo, first, edits)
    assert layer_entry(result, 0)["attachmentResults"]["addResults"] == [
        {"globalId": att_gid, "success": True}
    ]
    again = sync(demo, first, edits)
    assert again["edits"][0]["attachmentResults"]["addResults"][0]["success"]
    assert [
        a["data"] for a in reference_server.attachments(DEMO_SERVICE, 0) if a["globalId"] == att_gid
    ] == [b"photo bytes"]
    downloaded = layer_entry(sync(demo, second, returnAttachmentsDataByUrl=False), 0)["attachments"]
    assert [
        (a["globalId"], a["parentGlobalId"], base64.b64decode(a["data"]))
        for a in downloaded["adds"]
    ] == [(att_gid, parent, b"photo bytes")]
    delete = [{"id": 0, "attachments": {"deleteIds": [att_gid]}}]
    sync(demo, first, delete)
    fresh = reference_server.replica(second["replicaID"])["replicaServerGen"]
    assert layer_entry(sync(demo, {**second, "replicaServerGen": fresh}), 0)["attachments"][
        "deleteIds"
    ] == [att_gid]


@pytest.mark.parametrize("name", ["../../evil.sh", "a/b.jpg", "c:\\x.jpg", "nul\x00.jpg"])
def test_sync_refuses_path_like_attachment_names(reference_server, demo, name):
    replica = create(demo, layers="0")
    edits = [
        {
            "id": 0,
            "attachments": {
                "adds": [
                    {
                        "globalId": "{22222222-3333-4444-5555-666666666666}",
                        "parentGlobalId": point_gid(reference_server),
                        "name": name,
                        "contentType": "text/plain",
                        "data": "eA==",
                    }
                ]
            },
        }
    ]
    result = sync(demo, replica, edits)
    [failure] = layer_entry(result, 0)["attachmentResults"]["addResults"]
    assert failure["success"] is False and "name" in failure["error"]["description"]


def test_download_only_replica_of_query_sync_service_refuses_uploads(reference_server):
    url = reference_server.service_url(READONLY_SERVICE)
    replica = create(url, layers="0")
    assert get(f"{url}/replicas/{replica['replicaID']}")["syncDirection"] == "download"
    body = sync(
        url,
        replica,
        [{"id": 0, "features": {"updates": [update(point_gid(reference_server), name="x")]}}],
    )
    assert error_code(body) == 400 and "download-only" in body["error"]["message"]
    assert (
        sync(url, replica, syncDirection="download")["responseType"]
        == "esriReplicaResponseTypeNoEdits"
    )


def test_async_sync_with_url_transport_and_expired_results(reference_server, demo):
    replica = create(demo)
    answer = sync(
        demo,
        replica,
        [{"id": 0, "features": {"updates": [update(point_gid(reference_server), name="async")]}}],
        **{"async": True},
    )
    status = wait_for_job(answer["statusUrl"])
    assert status["status"] == "Completed"
    assert layer_entry(requests.get(status["resultUrl"], timeout=10).json(), 0)["updateResults"][0][
        "success"
    ]
    reference_server.expire_results()
    gone = requests.get(status["resultUrl"], timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == 404
    assert get(answer["statusUrl"])["status"] == "Completed"  # the status URL outlives the result


def test_sync_errors_for_unknown_replica_and_bad_parameters(reference_server, demo):
    body = post(
        f"{demo}/synchronizeReplica",
        replicaID="{00000000-0000-0000-0000-000000000000}",
        replicaServerGen=1,
    )
    assert error_code(body) == 400 and "does not exist" in body["error"]["message"]
    replica = create(demo)
    for params in (
        {"replicaServerGen": "abc"},
        {"replicaServerGen": 10**9},
        {"syncDirection": "sideways"},
        {"edits": {"id": 0}},
        {"edits": [{"id": 9}]},
    ):
        body = sync(demo, replica, **params)
        assert error_code(body) == 400, params
    assert error_code(post(f"{demo}/synchronizeReplica")) == 400


def test_close_replica_unregister_and_replica_listing(reference_server, demo):
    a = create(demo, replicaName="a")
    b = create(demo, replicaName="b")
    c = create(demo, replicaName="c")
    assert [r["replicaName"] for r in get(f"{demo}/replicas")] == ["a", "b", "c"]
    info = get(f"{demo}/replicas/{a['replicaID']}")
    assert info["replicaServerGen"] == a["replicaServerGen"] and info["layers"] == [0, 1, 2, 3]
    sync(demo, a, closeReplica=True)
    assert post(f"{demo}/unRegisterReplica", replicaID=b["replicaID"]) == {"success": True}
    assert [r["replicaName"] for r in get(f"{demo}/replicas")] == ["c"]
    assert error_code(post(f"{demo}/unRegisterReplica", replicaID=b["replicaID"])) == 400
    assert error_code(sync(demo, a)) == 400
    assert post(f"{demo}/unRegisterReplica", replicaID="*") == {"success": True}
    assert get(f"{demo}/replicas") == []
    assert error_code(get(f"{demo}/replicas/{c['replicaID']}")) == 400


def test_polygon_area_of_interest_selects_points_exactly(reference_server, demo):
    points = reference_server.query_all(DEMO_SERVICE, 0)
    x, y = points[0]["geometry"]["x"], points[0]["geometry"]["y"]
    triangle = {
        "rings": [[[x - 50, y - 50], [x - 50, y + 600], [x + 500, y - 50], [x - 50, y - 50]]],
        "spatialReference": {"wkid": 102100},
    }
    result = create(demo, layers="0", geometry=triangle, geometryType="esriGeometryPolygon")
    assert sorted(f["attributes"]["OBJECTID"] for f in result["layers"][0]["features"]) == [1, 2, 5]
    assert "attachments" not in result["layers"][0]  # returnAttachments defaults to false


def test_async_sync_that_rolls_back_reports_failed_and_changes_nothing(reference_server, demo):
    replica = create(demo)
    gid = point_gid(reference_server)
    reference_server.apply_edits(DEMO_SERVICE, 0, deletes=[gid])
    gen = reference_server.server_gen(DEMO_SERVICE)
    edits = [
        {
            "id": 0,
            "features": {
                "adds": [{"attributes": {"GlobalID": NEW_GID}}],
                "updates": [update(gid, name="zombie")],
            },
        }
    ]
    answer = sync(demo, replica, edits, rollbackOnFailure=True, **{"async": True})
    status = wait_for_job(answer["statusUrl"])
    assert status["status"] == "Failed" and status["error"]["code"] == 400
    assert (
        row(reference_server, NEW_GID) is None and reference_server.server_gen(DEMO_SERVICE) == gen
    )


def test_dropped_create_replica_answer_still_registers_the_replica(reference_server, demo):
    reference_server.inject_fault("createReplica", "drop_after_commit")
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{demo}/createReplica",
            data={"f": "json", "replicaName": "lost answer", "layers": "0"},
            timeout=10,
        )
    assert [r["replicaName"] for r in get(f"{demo}/replicas")] == ["lost answer"]


def test_truncated_result_file_then_intact_on_retry(reference_server, demo):
    answer = create(demo, transportType="esriTransportTypeUrl", layers="1")
    reference_server.inject_fault("result", "truncated_json")
    broken = requests.get(answer["URL"], timeout=10)
    with pytest.raises(ValueError):
        broken.json()
    assert (
        len(requests.get(answer["URL"], timeout=10).json()["layers"][0]["features"])
        == DEMO_COUNTS[1]
    )


def test_edits_for_layers_synced_download_only_are_ignored(reference_server, demo):
    replica = create(demo, syncModel="perLayer", layers="0,1")
    gens = {g["id"]: g["serverGen"] for g in replica["layerServerGens"]}
    gid = point_gid(reference_server)
    sync_layers = [
        {"id": 0, "serverGen": gens[0], "syncDirection": "download"},
        {"id": 1, "serverGen": gens[1], "syncDirection": "bidirectional"},
    ]
    result = post(
        f"{demo}/synchronizeReplica",
        replicaID=replica["replicaID"],
        syncLayers=sync_layers,
        edits=[{"id": 0, "features": {"updates": [update(gid, name="ignored")]}}],
        transportType=EMBEDDED,
    )
    assert "updateResults" not in layer_entry(result, 0)
    assert row(reference_server, gid)["attributes"]["name"] != "ignored"


def test_service_level_apply_edits_with_attachments(reference_server, demo):
    parent = point_gid(reference_server, 3)
    att = {
        "globalId": "{44444444-5555-6666-7777-888888888888}",
        "parentGlobalId": parent,
        "name": "a.txt",
        "contentType": "text/plain",
        "data": base64.b64encode(b"abc").decode(),
    }
    body = post(
        f"{demo}/applyEdits", edits=[{"id": 0, "attachments": {"adds": [att]}}], useGlobalIds=True
    )
    assert body[0]["attachments"]["addResults"][0]["success"]
    assert [
        a["data"]
        for a in reference_server.attachments(DEMO_SERVICE, 0)
        if a["parentGlobalId"] == parent
    ] == [b"abc"]


def test_replica_sr_projects_downloads_and_uploads(reference_server, demo):
    replica = create(demo, layers="0", replicaSR=4326)
    first = replica["layers"][0]["features"][0]["geometry"]
    assert (first["x"], first["y"]) == (
        pytest.approx(8.54, abs=1e-6),
        pytest.approx(47.37, abs=1e-6),
    )
    assert get(f"{demo}/replicas/{replica['replicaID']}")["spatialReference"] == {"wkid": 4326}
    edits = [
        {
            "id": 0,
            "features": {
                "adds": [{"attributes": {"GlobalID": NEW_GID}, "geometry": {"x": 8.55, "y": 47.38}}]
            },
        }
    ]
    sync(demo, replica, edits)
    stored = row(reference_server, NEW_GID)["geometry"]
    assert stored["x"] == pytest.approx(951781.6, abs=1) and stored["y"] > 6_000_000
    reference_server.apply_edits(
        DEMO_SERVICE, 0, updates=[{"GlobalID": NEW_GID, "name": "moved on"}]
    )
    fresh = reference_server.replica(replica["replicaID"])["replicaServerGen"]
    [downloaded] = layer_entry(sync(demo, {**replica, "replicaServerGen": fresh}), 0)["features"][
        "updates"
    ]
    assert downloaded["geometry"]["x"] == pytest.approx(8.55)
    assert error_code(create(demo, layers="0", replicaSR=2056)) == 400


def test_replayed_add_of_a_feature_deleted_meanwhile_is_not_reported_deleted(
    reference_server, demo
):
    replica = create(demo, layers="0")
    edits = [
        {"id": 0, "features": {"adds": [{"attributes": {"GlobalID": NEW_GID, "name": "again"}}]}}
    ]
    sync(demo, replica, edits, syncDirection="upload")
    reference_server.apply_edits(DEMO_SERVICE, 0, deletes=[NEW_GID])
    replay = sync(demo, replica, edits)
    assert layer_entry(replay, 0)["addResults"][0]["success"]
    assert row(reference_server, NEW_GID) is not None
    assert NEW_GID not in layer_entry(replay, 0)["features"]["deleteIds"]


def test_unknown_job_and_result_answer_errors(reference_server, demo):
    assert error_code(get(f"{demo}/jobs/0123456789abcdef")) == 400
    response = requests.get(
        f"{reference_server.root_url}/rest/directories/arcgisoutput/Demo_FeatureServer/_ags_nothing.json",
        timeout=10,
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == 404
