"""Tokens, ownership, fault injection and concurrent clients of the reference service."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from tests.featureservice.client import error_code, get, post
from tests.featureservice.seed import DEMO_COUNTS, DEMO_SERVICE, DEMO_WEBMAP_ID

EMBEDDED = "esriTransportTypeEmbedded"


def token(server, user: str) -> str:
    return post(
        server.token_url,
        username=user,
        password=f"{user}-secret",
        client="requestip",
        expiration=60,
    )["token"]


# --- tokens and ownership ------------------------------------------------------------------------


def test_generate_token_and_wrong_password(secured_reference_server):
    server = secured_reference_server
    body = post(server.token_url, username="alice", password="alice-secret")
    assert set(body) == {"token", "expires", "ssl"} and body["token"]
    bad = post(server.token_url, username="alice", password="nope")
    assert bad["error"]["code"] == 400 and bad["error"]["message"] == "Unable to generate token."
    assert error_code(post(server.token_url, username="mallory", password="x")) == 400
    assert post(f"{server.portal_url}/generateToken", username="bob", password="bob-secret")[
        "token"
    ]


def test_missing_invalid_and_expired_tokens(secured_reference_server):
    server = secured_reference_server
    demo = server.service_url(DEMO_SERVICE)
    for url in (
        demo,
        f"{demo}/0",
        f"{demo}/0/query?where=1=1",
        f"{server.portal_url}/content/items/{DEMO_WEBMAP_ID}",
    ):
        assert error_code(get(url)) == 499, url
        assert error_code(get(url, token="forged")) == 498, url
    alice = token(server, "alice")
    assert get(demo, token=alice)["syncEnabled"] is True
    assert get(f"{server.portal_url}/content/items/{DEMO_WEBMAP_ID}/data", token=alice)[
        "operationalLayers"
    ]
    header = requests.get(
        demo, params={"f": "json"}, headers={"X-Esri-Authorization": f"Bearer {alice}"}, timeout=10
    ).json()
    assert header["syncEnabled"] is True
    server.expire_tokens()
    expired = get(demo, token=alice)
    assert expired["error"]["code"] == 498 and "expired" in " ".join(expired["error"]["details"])
    assert get(f"{server.root_url}/rest/info")["authInfo"]["isTokenBasedSecurity"] is True


def test_expire_tokens_over_the_admin_endpoint(secured_reference_server):
    server = secured_reference_server
    alice = token(server, "alice")
    assert post(f"{server.root_url}/admin/expireTokens") == {"success": True}
    assert error_code(get(server.service_url(DEMO_SERVICE), token=alice)) == 498


def test_replicas_belong_to_their_creator(secured_reference_server):
    server = secured_reference_server
    demo = server.service_url(DEMO_SERVICE)
    alice, bob = token(server, "alice"), token(server, "bob")
    replica = post(
        f"{demo}/createReplica",
        replicaName="alice's",
        layers="0",
        transportType=EMBEDDED,
        token=alice,
    )
    assert get(f"{demo}/replicas/{replica['replicaID']}", token=alice)["replicaOwner"] == "alice"
    assert get(f"{demo}/replicas", token=bob) == []
    for body in (
        post(
            f"{demo}/synchronizeReplica",
            replicaID=replica["replicaID"],
            replicaServerGen=replica["replicaServerGen"],
            token=bob,
        ),
        post(f"{demo}/unRegisterReplica", replicaID=replica["replicaID"], token=bob),
        get(f"{demo}/replicas/{replica['replicaID']}", token=bob),
    ):
        assert error_code(body) == 403
    assert post(f"{demo}/unRegisterReplica", replicaID="*", token=bob) == {"success": True}
    assert [r["replicaName"] for r in get(f"{demo}/replicas", token=alice)] == ["alice's"]


def test_editor_tracking_records_the_token_user(secured_reference_server):
    server = secured_reference_server
    demo = server.service_url(DEMO_SERVICE)
    alice = token(server, "alice")
    result = post(
        f"{demo}/0/applyEdits",
        adds=[{"attributes": {"name": "by alice"}, "geometry": {"x": 0.0, "y": 0.0}}],
        token=alice,
    )
    oid = result["addResults"][0]["objectId"]
    attributes = next(
        f["attributes"]
        for f in server.query_all(DEMO_SERVICE, 0)
        if f["attributes"]["OBJECTID"] == oid
    )
    assert attributes["created_user"] == "alice" and attributes["last_edited_user"] == "alice"


def test_async_job_status_needs_the_owners_token(secured_reference_server):
    server = secured_reference_server
    demo = server.service_url(DEMO_SERVICE)
    alice, bob = token(server, "alice"), token(server, "bob")
    answer = post(
        f"{demo}/createReplica", replicaName="a", layers="0", token=alice, **{"async": "true"}
    )
    server.app.wait_for_jobs()
    assert get(answer["statusUrl"], token=alice)["status"] == "Completed"
    assert error_code(get(answer["statusUrl"], token=bob)) == 403
    assert error_code(get(answer["statusUrl"])) == 499


# --- fault injection -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_http_errors_are_injected_for_the_next_requests_only(reference_server, status):
    demo = reference_server.service_url(DEMO_SERVICE)
    reference_server.inject_fault("query", f"http{status}", count=2)
    for _ in range(2):
        response = requests.get(f"{demo}/0/query", params={"where": "1=1", "f": "json"}, timeout=10)
        assert response.status_code == status and "html" in response.headers["Content-Type"]
    assert get(f"{demo}/0/query", where="1=1", returnCountOnly=True) == {"count": DEMO_COUNTS[0]}


def test_drop_before_commit_changes_nothing(reference_server):
    demo = reference_server.service_url(DEMO_SERVICE)
    reference_server.inject_fault("applyEdits", "drop_before_commit")
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{demo}/0/applyEdits",
            data={"f": "json", "adds": json.dumps([{"attributes": {"name": "lost"}}])},
            timeout=10,
        )
    assert len(reference_server.query_all(DEMO_SERVICE, 0)) == DEMO_COUNTS[0]


def test_drop_after_commit_keeps_the_change_and_a_replay_is_safe(reference_server):
    demo = reference_server.service_url(DEMO_SERVICE)
    replica = post(f"{demo}/createReplica", replicaName="r", layers="0", transportType=EMBEDDED)
    gid = "{33333333-4444-5555-6666-777777777777}"
    edits = json.dumps(
        [{"id": 0, "features": {"adds": [{"attributes": {"GlobalID": gid, "name": "kept"}}]}}]
    )
    data = {
        "f": "json",
        "replicaID": replica["replicaID"],
        "replicaServerGen": replica["replicaServerGen"],
        "edits": edits,
        "transportType": EMBEDDED,
    }
    reference_server.inject_fault("synchronizeReplica", "drop_after_commit")
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{demo}/synchronizeReplica", data=data, timeout=10)
    assert [f["attributes"]["name"] for f in reference_server.query_all(DEMO_SERVICE, 0)].count(
        "kept"
    ) == 1
    replay = requests.post(f"{demo}/synchronizeReplica", data=data, timeout=10).json()
    assert replay["edits"][0]["addResults"][0]["success"]
    assert [f["attributes"]["name"] for f in reference_server.query_all(DEMO_SERVICE, 0)].count(
        "kept"
    ) == 1


def test_html_error_truncated_json_and_delay(reference_server):
    demo = reference_server.service_url(DEMO_SERVICE)
    reference_server.inject_fault("layer", "html_error")
    response = requests.get(f"{demo}/0", params={"f": "json"}, timeout=10)
    assert response.status_code == 200 and response.text.startswith("<html>")
    reference_server.inject_fault("service", "truncated_json")
    response = requests.get(demo, params={"f": "json"}, timeout=10)
    with pytest.raises(ValueError):
        response.json()
    reference_server.inject_fault("*", "delay", seconds=0.2)
    assert get(demo)["syncEnabled"] is True
    reference_server.inject_fault("query", "http500", count=5)
    reference_server.clear_faults()
    assert "features" in get(f"{demo}/0/query", where="1=1")


def test_faults_over_the_admin_endpoint(reference_server):
    root = reference_server.root_url
    demo = reference_server.service_url(DEMO_SERVICE)
    body = post(f"{root}/admin/faults", operation="createReplica", kind="http503", count=1)
    assert body["faults"] == [{"operation": "createreplica", "kind": "http503", "remaining": 1}]
    assert requests.post(f"{demo}/createReplica", data={"f": "json"}, timeout=10).status_code == 503
    assert error_code(post(f"{root}/admin/faults", operation="query", kind="meteor")) == 400
    post(f"{root}/admin/faults", operation="query", kind="delay", opts={"seconds": 0.1})
    assert post(f"{root}/admin/clearFaults") == {"success": True}
    assert get(f"{root}/admin/faults") == {"faults": []}


def test_expire_results_over_the_admin_endpoint(reference_server):
    demo = reference_server.service_url(DEMO_SERVICE)
    answer = post(f"{demo}/createReplica", replicaName="r", layers="1")
    assert requests.get(answer["URL"], timeout=10).status_code == 200
    assert post(f"{reference_server.root_url}/admin/expireResults")["expired"] == 1
    assert requests.get(answer["URL"], timeout=10).status_code == 404


def test_result_file_names_cannot_escape_the_results_folder(reference_server):
    base = f"{reference_server.root_url}/rest/directories/arcgisoutput/Demo_FeatureServer"
    for name in ("..%2Fservice.sqlite", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "service.sqlite"):
        response = requests.get(f"{base}/{name}", timeout=10)
        assert response.status_code == 404 and b"SQLite" not in response.content


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_syncing_clients_lose_nothing(reference_server):
    demo = reference_server.service_url(DEMO_SERVICE)
    clients, rounds, per_round = 6, 4, 3
    replicas = [
        post(f"{demo}/createReplica", replicaName=f"c{i}", layers="0", transportType=EMBEDDED)
        for i in range(clients)
    ]
    shared = reference_server.query_all(DEMO_SERVICE, 0)[0]["attributes"]["GlobalID"]
    errors: list[str] = []
    start = threading.Barrier(clients)

    def client(index: int) -> None:
        replica = replicas[index]
        gen = replica["replicaServerGen"]
        start.wait(timeout=20)
        for r in range(rounds):
            adds = [
                {
                    "attributes": {
                        "GlobalID": f"{{{index:08X}-0000-0000-{r:04X}-{k:012X}}}",
                        "name": f"c{index} r{r} k{k}",
                    }
                }
                for k in range(per_round)
            ]
            edits = [
                {
                    "id": 0,
                    "features": {
                        "adds": adds,
                        "updates": [
                            {"attributes": {"GlobalID": shared, "visits": index * 100 + r}}
                        ],
                    },
                }
            ]
            body = post(
                f"{demo}/synchronizeReplica",
                replicaID=replica["replicaID"],
                replicaServerGen=gen,
                edits=edits,
                transportType=EMBEDDED,
                rollbackOnFailure=True,
            )
            if "error" in body:
                errors.append(json.dumps(body["error"]))
                return
            gen = body["replicaServerGen"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    names = [f["attributes"]["name"] for f in reference_server.query_all(DEMO_SERVICE, 0)]
    assert len(names) == DEMO_COUNTS[0] + clients * rounds * per_round
    assert len(set(names)) == len(names)
    # Every replica, downloading from where it started, sees every other client's adds, not its own.
    for index, replica in enumerate(replicas):
        body = post(
            f"{demo}/synchronizeReplica",
            replicaID=replica["replicaID"],
            replicaServerGen=replica["replicaServerGen"],
            syncDirection="download",
            transportType=EMBEDDED,
        )
        adds = {f["attributes"]["name"].split()[0] for f in body["edits"][0]["features"]["adds"]}
        assert adds == {f"c{i}" for i in range(clients) if i != index}
        assert len(body["edits"][0]["features"]["adds"]) == (clients - 1) * rounds * per_round


def test_concurrent_readers_and_writers(reference_server):
    demo = reference_server.service_url(DEMO_SERVICE)
    failures: list[str] = []

    def writer(i: int) -> None:
        for k in range(5):
            body = post(f"{demo}/0/applyEdits", adds=[{"attributes": {"name": f"w{i}-{k}"}}])
            if not body.get("addResults", [{}])[0].get("success"):
                failures.append(str(body))

    def reader() -> None:
        for _ in range(10):
            body = get(f"{demo}/0/query", where="1=1", returnCountOnly=True)
            if "count" not in body:
                failures.append(str(body))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert len(reference_server.query_all(DEMO_SERVICE, 0)) == DEMO_COUNTS[0] + 20
