"""Benchmark hooks of the reference service: request/byte counters and fast bulk changes."""

from __future__ import annotations

import requests

from tests.featureservice.client import error_code, get, post
from tests.featureservice.seed import DEMO_SERVICE

EMBEDDED = "esriTransportTypeEmbedded"


def test_stats_count_service_requests_and_bytes_but_not_admin_calls(reference_server):
    server = reference_server
    server.reset_stats()
    assert server.stats() == {"requests": 0, "bytesOut": 0, "tiles": 0}
    body = requests.get(
        f"{server.service_url(DEMO_SERVICE)}/0/query",
        params={"where": "1=1", "outFields": "*", "f": "json"},
        timeout=30,
    ).content
    requests.get(server.service_url(DEMO_SERVICE), params={"f": "json"}, timeout=30)
    stats = get(f"{server.root_url}/admin/stats")
    assert stats["requests"] == 2
    assert stats["bytesOut"] > len(body)
    assert server.stats() == stats
    assert post(f"{server.root_url}/admin/resetStats") == {"success": True}
    assert server.stats() == {"requests": 0, "bytesOut": 0, "tiles": 0}


def test_stats_count_streamed_result_files(reference_server):
    server = reference_server
    url = server.service_url(DEMO_SERVICE)
    started = post(
        f"{url}/createReplica",
        replicaName="stats",
        layers="0,1,2,3",
        transportType="esriTransportTypeUrl",
        returnAttachments=True,
        syncModel="perReplica",
    )
    server.reset_stats()
    data = requests.get(started["URL"], timeout=30).content
    assert server.stats() == {"requests": 1, "bytesOut": len(data), "tiles": 0}


def test_bulk_update_changes_features_in_one_new_generation_that_replicas_download(
    reference_server,
):
    server = reference_server
    url = server.service_url(DEMO_SERVICE)
    replica = post(
        f"{url}/createReplica",
        replicaName="bulk",
        layers="0",
        transportType=EMBEDDED,
        syncModel="perReplica",
    )
    before = {f["attributes"]["GlobalID"]: f for f in server.query_all(DEMO_SERVICE, 0)}
    gen_before = server.server_gen(DEMO_SERVICE)

    result = post(f"{server.root_url}/admin/bulkUpdate", service=DEMO_SERVICE, layer=0, count=5)

    assert result["success"] and result["updated"] == 5
    assert result["gen"] == gen_before + 1 == server.server_gen(DEMO_SERVICE)
    field = result["field"]
    after = server.query_all(DEMO_SERVICE, 0)
    changed = [
        f
        for f in after
        if f["attributes"][field] != before[f["attributes"]["GlobalID"]]["attributes"][field]
    ]
    assert len(changed) == 5
    for feature in changed:
        old = before[feature["attributes"]["GlobalID"]]["geometry"]
        assert feature["geometry"]["x"] == old["x"] + 1.0
        assert feature["attributes"]["last_edited_user"] == "bulk_editor"
    downloaded = post(
        f"{url}/synchronizeReplica",
        replicaID=replica["replicaID"],
        replicaServerGen=replica["replicaServerGen"],
        syncDirection="download",
        transportType=EMBEDDED,
    )
    updates = downloaded["edits"][0]["features"]["updates"]
    assert sorted(u["attributes"]["GlobalID"] for u in updates) == sorted(
        f["attributes"]["GlobalID"] for f in changed
    )


def test_bulk_update_from_python_uses_the_named_field_and_refuses_unusable_ones(reference_server):
    server = reference_server
    result = server.bulk_update(DEMO_SERVICE, 3, 2, field="REMARKS")
    assert result["updated"] == 2 and result["field"] == "remarks"
    body = post(
        f"{server.root_url}/admin/bulkUpdate", service=DEMO_SERVICE, layer=3, count=1, field="nope"
    )
    assert error_code(body) == 400


def test_sync_listeners_see_committed_uploads_in_commit_order_and_not_rolled_back_ones(
    reference_server,
):
    server = reference_server
    records = []
    server.add_sync_listener(records.append)
    url = server.service_url(DEMO_SERVICE)
    replica = post(
        f"{url}/createReplica",
        replicaName="observed",
        layers="0",
        transportType=EMBEDDED,
        syncModel="perReplica",
    )
    gid = server.query_all(DEMO_SERVICE, 0)[0]["attributes"]["GlobalID"]
    missing = "{11111111-2222-3333-4444-555555555555}"

    def upload(name: str, target: str, rollback: bool) -> dict:
        edits = [
            {"id": 0, "features": {"updates": [{"attributes": {"GlobalID": target, "name": name}}]}}
        ]
        return post(
            f"{url}/synchronizeReplica",
            replicaID=replica["replicaID"],
            replicaServerGen=replica["replicaServerGen"],
            syncDirection="upload",
            transportType=EMBEDDED,
            rollbackOnFailure=rollback,
            edits=edits,
        )

    upload("first", gid, False)
    assert error_code(upload("refused", missing, True)) == 400  # rolled back: not observed
    upload("second", gid, False)
    upload("rejected", missing, False)  # committed with an edit error: observed with its result

    assert [r["edits"][0]["features"]["updates"][0]["attributes"]["name"] for r in records] == [
        "first",
        "second",
        "rejected",
    ]
    assert records[0]["replicaID"] == replica["replicaID"]
    assert records[0]["gen"] < records[1]["gen"]
    assert records[2]["results"][0]["updateResults"][0]["error"]["code"] == 1019
