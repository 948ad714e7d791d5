"""The REST client: errors, retries, tokens, jobs and result files over real loopback HTTP.

Protocol corner cases that the reference service does not produce on purpose (spelling variants,
jobs that fail, proxies answering with web pages) are played by a small scripted werkzeug server;
the main paths are also exercised against the reference service.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from plugin.core.errors import AuthenticationError, CancelledError, NetworkError, ServiceError
from plugin.core.rest import (
    ArcGISClient,
    BadAnswerError,
    StaticTokenCredentials,
    TokenCredentials,
    same_site,
)
from plugin.core.service import supports_async
from plugin.core.sites import CredentialScope

#: The scripted servers speak plain http on loopback: credentials only go there because the
#: tests allow this host for plain http explicitly.
LOOPBACK = ("127.0.0.1",)


def loopback_scope(url: str) -> CredentialScope:
    return CredentialScope.of([url], plain_http_hosts=LOOPBACK)


class ScriptedServer:
    """A loopback HTTP server whose answers are set per path by the test."""

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.hits: dict[str, list[dict]] = defaultdict(list)
        #: The HTTP headers of every request, by path.
        self.headers: dict[str, list[dict]] = defaultdict(list)
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _app(self, environ, start_response):
        request = Request(environ)
        params = dict(request.args)
        params.update(request.form)
        self.hits[request.path].append(params)
        self.headers[request.path].append(dict(request.headers))
        route = self.routes.get(request.path)
        if route is None:
            response = Response("not here", status=404)
        elif isinstance(route, (Response, dict, list)):
            response = route
        else:
            response = route(request, params)
        if isinstance(response, (dict, list)):
            response = Response(json.dumps(response), mimetype="application/json")
        return response(environ, start_response)

    def json_sequence(self, path: str, *answers) -> None:
        """Answer successive requests to ``path`` with ``answers`` (the last one repeats)."""
        remaining = list(answers)

        def route(request, params):
            answer = remaining.pop(0) if len(remaining) > 1 else remaining[0]
            return answer

        self.routes[path] = route

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


@pytest.fixture
def scripted():
    server = ScriptedServer()
    yield server
    server.stop()


def fast_client(**kwargs) -> ArcGISClient:
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("timeout", 10)
    return ArcGISClient(**kwargs)


def token_route(tokens: list[str], password: str = "secret"):
    def route(request, params):
        if params.get("password") != password:
            return {"error": {"code": 400, "message": "Unable to generate token.", "details": []}}
        token = f"tok-{len(tokens)}-abcdef"
        tokens.append(token)
        return {"token": token, "expires": 4102444800000, "ssl": False}

    return route


# -- errors ------------------------------------------------------------------------------------


def test_error_body_in_http_200_becomes_service_error_with_code_and_details(scripted):
    scripted.routes["/svc"] = {
        "error": {"code": 400, "message": "Invalid parameter", "details": ["layers is bad"]}
    }
    with pytest.raises(ServiceError) as caught:
        fast_client().get_json(scripted.url + "/svc")
    assert caught.value.code == 400
    assert caught.value.details == ["layers is bad"]
    assert "Invalid parameter" in str(caught.value) and "layers is bad" in str(caught.value)
    assert not isinstance(caught.value, AuthenticationError)


def test_missing_token_error_is_an_authentication_error(scripted):
    scripted.routes["/svc"] = {"error": {"code": 499, "message": "Token Required"}}
    with pytest.raises(AuthenticationError) as caught:
        fast_client().get_json(scripted.url + "/svc")
    assert caught.value.code == 499
    assert "sign in" in str(caught.value)


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (Response("<html><body>Bad gateway</body></html>", status=200), "web page"),
        (Response('{"layers": [{"id": 0, "na', status=200), "cut off"),
        (Response("", status=200), "empty"),
    ],
)
def test_unusable_answers_raise_a_clear_error_after_retrying(scripted, response, match):
    scripted.routes["/svc"] = response
    with pytest.raises(BadAnswerError, match=match):
        fast_client(retries=2).get_json(scripted.url + "/svc")
    assert len(scripted.hits["/svc"]) == 3


def test_get_is_retried_after_transient_server_errors(scripted):
    scripted.json_sequence(
        "/svc",
        Response("oops", status=503),
        Response("<html>proxy</html>", status=502),
        {"currentVersion": 11.1},
    )
    assert fast_client(retries=3).get_json(scripted.url + "/svc") == {"currentVersion": 11.1}
    assert len(scripted.hits["/svc"]) == 3


def test_post_is_never_retried_automatically(scripted):
    scripted.json_sequence("/svc/synchronizeReplica", Response("oops", status=503), {"ok": True})
    with pytest.raises(BadAnswerError) as caught:
        fast_client(retries=3).post_json(scripted.url + "/svc/synchronizeReplica", {"a": 1})
    assert caught.value.code == 503
    assert len(scripted.hits["/svc/synchronizeReplica"]) == 1


def test_unreachable_server_raises_network_error_after_retries():
    client = fast_client(retries=1, timeout=2)
    # port 9 (discard) on loopback: nothing listens there in the test environment
    with pytest.raises(NetworkError, match="127.0.0.1:9"):
        client.get_json("http://127.0.0.1:9/arcgis/rest/services")
    assert client.request_count == 2


def test_parameters_are_form_encoded_with_json_values(scripted):
    scripted.routes["/svc/createReplica"] = {"ok": True}
    fast_client().post_json(
        scripted.url + "/svc/createReplica",
        {"layers": [0, 1], "async": False, "layerQueries": {"0": {"where": "a = 'é'"}}, "x": None},
    )
    sent = scripted.hits["/svc/createReplica"][0]
    assert sent["f"] == "json"
    assert json.loads(sent["layers"]) == [0, 1]
    assert sent["async"] == "false"
    assert json.loads(sent["layerQueries"]) == {"0": {"where": "a = 'é'"}}
    assert "x" not in sent


# -- tokens ------------------------------------------------------------------------------------


def test_generated_token_is_sent_as_token_parameter_and_cached(scripted):
    tokens: list[str] = []
    scripted.routes["/tokens/generateToken"] = token_route(tokens)
    scripted.routes["/svc"] = {"name": "svc"}
    creds = TokenCredentials(
        scripted.url + "/tokens/generateToken", "alice", "secret", plain_http_hosts=LOOPBACK
    )
    client = fast_client(credentials=creds)
    client.get_json(scripted.url + "/svc")
    client.post_json(scripted.url + "/svc", {"a": 1})
    assert len(tokens) == 1
    assert [h["token"] for h in scripted.hits["/svc"]] == [tokens[0], tokens[0]]


def test_expired_token_is_refreshed_once_and_the_request_repeated(scripted):
    tokens: list[str] = []
    scripted.routes["/tokens/generateToken"] = token_route(tokens)

    def service(request, params):
        if params.get("token") != tokens[-1] or len(tokens) < 2:
            return {"error": {"code": 498, "message": "Invalid token."}}
        return {"ok": True}

    scripted.routes["/svc/synchronizeReplica"] = service
    creds = TokenCredentials(
        scripted.url + "/tokens/generateToken", "alice", "secret", plain_http_hosts=LOOPBACK
    )
    assert fast_client(credentials=creds).post_json(scripted.url + "/svc/synchronizeReplica") == {
        "ok": True
    }
    assert len(tokens) == 2
    assert len(scripted.hits["/svc/synchronizeReplica"]) == 2


def test_token_rejected_again_after_refresh_raises_authentication_error(scripted):
    tokens: list[str] = []
    scripted.routes["/tokens/generateToken"] = token_route(tokens)
    scripted.routes["/svc"] = {"error": {"code": 498, "message": "Invalid token."}}
    creds = TokenCredentials(
        scripted.url + "/tokens/generateToken", "alice", "secret", plain_http_hosts=LOOPBACK
    )
    with pytest.raises(AuthenticationError) as caught:
        fast_client(credentials=creds).get_json(scripted.url + "/svc")
    assert caught.value.code == 498
    assert len(scripted.hits["/svc"]) == 2


def test_wrong_password_gives_a_clear_message_without_the_password(scripted):
    scripted.routes["/tokens/generateToken"] = token_route([], password="right")
    scripted.routes["/svc"] = {"ok": True}
    creds = TokenCredentials(
        scripted.url + "/tokens/generateToken", "alice", "wrong-pw-123", plain_http_hosts=LOOPBACK
    )
    with pytest.raises(AuthenticationError) as caught:
        fast_client(credentials=creds).get_json(scripted.url + "/svc")
    assert "Unable to generate token" in str(caught.value)
    assert "alice" in str(caught.value)
    assert "wrong-pw-123" not in str(caught.value) and "wrong-pw-123" not in repr(creds)


def test_tokens_never_appear_in_errors_or_logs(scripted, caplog):
    secret = "SECRET-TOKEN-0123456789"
    scripted.routes["/svc"] = Response("<html>error</html>", status=500)
    caplog.set_level(logging.DEBUG)
    client = fast_client(
        credentials=StaticTokenCredentials(secret, loopback_scope(scripted.url)), retries=1
    )
    with pytest.raises(BadAnswerError) as caught:
        client.get_json(scripted.url + "/svc?x=1")
    assert scripted.hits["/svc"][0]["token"] == secret
    assert secret not in str(caught.value) and secret not in str(caught.value.url)
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))
    assert secret not in ours
    assert "/svc" in ours and "token=***" in ours


def test_generated_token_is_only_sent_to_its_own_site():
    creds = TokenCredentials("https://www.arcgis.com/sharing/rest/generateToken", "a", "b")
    assert creds.scope.allows("https://www.arcgis.com/sharing/rest/content/items/x")
    assert not creds.scope.allows("https://example.com/arcgis/rest/services/x/FeatureServer")
    # Same host, another scheme or port: another site.
    assert not creds.scope.allows("http://www.arcgis.com/sharing/rest/content/items/x")
    assert not creds.scope.allows("https://www.arcgis.com:8443/sharing/rest")
    local = TokenCredentials(
        "http://127.0.0.1:8000/arcgis/tokens/generateToken", "a", "b", plain_http_hosts=LOOPBACK
    )
    assert local.scope.allows("http://127.0.0.1:8000/arcgis/rest/services/x")
    assert not local.scope.allows("http://127.0.0.1:8001/arcgis/rest/services/x")
    assert not local.scope.allows("http://127.0.0.2:8000/arcgis/rest/services/x")


# -- jobs and result files ---------------------------------------------------------------------

RESULT = {
    "replicaID": "{R1}",
    "responseType": "esriReplicaResponseTypeEdits",
    "replicaServerGen": "41",
    "edits": [{"id": 0, "features": {"adds": [{"attributes": {"GlobalID": "{G}"}}]}}],
}


@pytest.mark.parametrize(
    ("status_key", "url_key"), [("statusUrl", "resultUrl"), ("statusURL", "URL")]
)
def test_async_sync_follows_status_and_result_urls_verbatim(scripted, status_key, url_key):
    base = scripted.url
    scripted.routes["/svc/synchronizeReplica"] = {status_key: base + "/jobs/abc?extra=1"}
    scripted.json_sequence(
        "/jobs/abc",
        {"status": "Pending"},
        {"status": "InProgress"},
        {"status": "Completed", url_key: base + "/output/r1.json?sig=xyz"},
    )
    scripted.routes["/output/r1.json"] = Response(json.dumps(RESULT), mimetype="application/json")
    seen_status_urls = []

    def on_status_url(url):
        seen_status_urls.append(url)
        assert not scripted.hits["/jobs/abc"], "the status URL must be handed over before polling"

    messages = []
    result = fast_client().synchronize_replica(
        base + "/svc",
        {"replicaID": "{R1}", "async": True},
        on_status_url=on_status_url,
        progress=lambda fraction, message: messages.append(message),
    )
    try:
        header, events = result.read()
        assert header["replicaServerGen"] == 41
        assert list(events) == [(0, "features.adds", {"attributes": {"GlobalID": "{G}"}})]
    finally:
        result.close()
    assert not result.path.exists()
    assert seen_status_urls == [base + "/jobs/abc?extra=1"]
    assert all(h["extra"] == "1" for h in scripted.hits["/jobs/abc"])
    assert scripted.hits["/output/r1.json"][0]["sig"] == "xyz"
    assert len(scripted.hits["/jobs/abc"]) == 3
    assert messages


def test_sync_answer_with_url_and_embedded_answer_both_give_a_result_file(scripted):
    scripted.routes["/svc/createReplica"] = {
        "transportType": "esriTransportTypeUrl",
        "responseType": "esriReplicaResponseTypeData",
        "URL": scripted.url + "/output/c.json",
    }
    scripted.routes["/output/c.json"] = {"replicaID": "{C}", "layers": [{"id": 2, "features": []}]}
    with fast_client().create_replica(scripted.url + "/svc", {"replicaName": "x"}) as result:
        assert result.header()["replicaID"] == "{C}"
    sent = scripted.hits["/svc/createReplica"][0]
    assert sent["transportType"] == "esriTransportTypeUrl" and sent["dataFormat"] == "json"

    scripted.routes["/svc/synchronizeReplica"] = {
        "replicaID": "{C}",
        "responseType": "esriReplicaResponseTypeNoEdits",
        "layerServerGens": '[{"id": 2, "serverGen": "9"}]',
    }
    with fast_client().synchronize_replica(scripted.url + "/svc", {"replicaID": "{C}"}) as result:
        header, events = result.read()
        assert list(events) == []
        assert header["layerServerGens"] == {2: 9}


def test_failed_job_raises_with_the_server_message(scripted):
    scripted.routes["/svc/synchronizeReplica"] = {"statusUrl": scripted.url + "/jobs/f"}
    scripted.routes["/jobs/f"] = {
        "status": "Failed",
        "error": {"code": 400, "message": "Edit rejected: field too long"},
    }
    with pytest.raises(ServiceError, match="field too long") as caught:
        fast_client().synchronize_replica(scripted.url + "/svc", {})
    assert caught.value.code == 400


def test_cancel_between_polls_raises_cancelled(scripted):
    scripted.routes["/jobs/slow"] = {"status": "InProgress"}
    polls = []

    def cancel():
        return len(scripted.hits["/jobs/slow"]) >= 3

    with pytest.raises(CancelledError):
        fast_client().poll_job(scripted.url + "/jobs/slow", cancel=cancel)
    polls = scripted.hits["/jobs/slow"]
    assert len(polls) == 3


def test_a_job_is_looked_at_briskly_at_first_and_ever_less_often_as_it_runs():
    """The pauses between looks at a job: the client's interval for the first two seconds
    (a short job's end is noticed at once), then growing to 0.25 s, and past 10 s to a
    fortieth of the job's age, at most 5 s (a long job costs the server few requests)."""
    from plugin.core.rest import _next_pause

    pauses, elapsed, pause = [], 0.0, 0.1
    while elapsed < 600:
        elapsed += pause
        pauses.append((elapsed, pause))
        pause = _next_pause(pause, elapsed, 0.25)
    assert {p for t, p in pauses if t < 2.0} == {0.1}
    assert 19 <= sum(1 for t, _p in pauses if t < 2.0) <= 20  # (sums of tenths round)
    assert max(p for t, p in pauses if t < 10) == 0.25
    assert all(later >= earlier for (_t, earlier), (_u, later) in zip(pauses, pauses[1:]))
    assert pauses[-1][1] == 5.0
    assert sum(1 for t, _p in pauses if t > 60) < 250  # ten minutes of job, few requests


def test_expired_result_file_raises_service_error_with_404(scripted):
    with pytest.raises(ServiceError) as caught:
        fast_client().fetch_result(scripted.url + "/output/gone.json")
    assert caught.value.code == 404
    assert "expired" in str(caught.value)


def test_result_file_that_is_an_error_body_raises_it(scripted):
    scripted.routes["/output/e.json"] = {"error": {"code": 500, "message": "Result expired"}}
    with pytest.raises(ServiceError, match="Result expired"):
        fast_client(retries=0).fetch_result(scripted.url + "/output/e.json")


def test_download_streams_in_chunks_with_progress_and_cancels_cleanly(scripted, tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB
    scripted.routes["/pkg"] = Response(payload, mimetype="application/octet-stream")
    fractions = []
    dest = tmp_path / "pkg.bin"
    fast_client().download(
        scripted.url + "/pkg", dest, progress=lambda fraction, message: fractions.append(fraction)
    )
    assert dest.read_bytes() == payload
    assert len(fractions) > 4 and fractions[-1] == pytest.approx(1.0)

    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    dest2 = tmp_path / "pkg2.bin"
    with pytest.raises(CancelledError):
        fast_client().download(scripted.url + "/pkg", dest2, cancel=cancel)
    assert not dest2.exists()
    assert not (tmp_path / "pkg2.bin.part").exists()


def test_supports_async_accepts_both_spellings():
    assert supports_async({"syncCapabilities": {"supportsAsync": True}})
    assert supports_async({"syncCapabilities": {"supportsASync": True}})
    assert not supports_async({"syncCapabilities": {}})
    assert not supports_async({})


# -- against the reference service -------------------------------------------------------------


def test_reference_service_description_and_every_layer(reference_server):
    from tests.featureservice import seed

    client = fast_client()
    url = reference_server.service_url(seed.DEMO_SERVICE)
    info = client.service_info(url)
    assert "Sync" in info["capabilities"]
    assert supports_async(info)
    layers = client.all_layer_infos(url, info)
    assert sorted(layers) == [0, 1, 2, 3]
    assert layers[3]["type"] == "Table"
    assert layers[0]["geometryType"] == "esriGeometryPoint"


def test_layer_definitions_come_in_one_request_where_the_service_offers_it(reference_server):
    from tests.featureservice import seed

    client = fast_client()
    url = reference_server.service_url(seed.DEMO_SERVICE)
    info = client.service_info(url)
    one_by_one = {layer_id: client.layer_info(url, layer_id) for layer_id in (0, 1, 2, 3)}
    reference_server.reset_stats()

    layers = client.all_layer_infos(url, info)

    assert reference_server.stats()["requests"] == 1
    assert layers == one_by_one


def test_a_service_without_the_layers_resource_is_asked_layer_by_layer(reference_server):
    from tests.featureservice import seed

    client = fast_client()
    url = reference_server.service_url(seed.DEMO_SERVICE)
    one_by_one = {layer_id: client.layer_info(url, layer_id) for layer_id in (0, 1, 2, 3)}
    reference_server.inject_fault("layers", "json_error", message="Invalid URL")
    reference_server.reset_stats()

    layers = client.all_layer_infos(url)

    assert layers == one_by_one
    assert reference_server.stats()["requests"] == 1 + 1 + 4  # layers, service, each layer


def test_a_garbled_layer_list_is_reported_not_taken_for_a_missing_one(reference_server):
    from tests.featureservice import seed

    url = reference_server.service_url(seed.DEMO_SERVICE)
    reference_server.inject_fault("layers", "html_error", count=10)
    with pytest.raises(BadAnswerError, match="web page instead of data"):
        fast_client(retries=0).all_layer_infos(url)


def test_a_layer_list_without_numeric_ids_is_reported_and_other_answers_fall_back(scripted):
    service = f"{scripted.url}/arcgis/rest/services/S/FeatureServer"
    path = "/arcgis/rest/services/S/FeatureServer"
    scripted.routes[path + "/layers"] = {"layers": [{"id": "first", "name": "Points"}]}
    with pytest.raises(BadAnswerError, match="layer list of .* is not understood"):
        fast_client(retries=0).all_layer_infos(service)

    # An answer listing nothing (a server that does not know the resource): layer by layer.
    scripted.routes[path + "/layers"] = {"currentVersion": 10.0}
    scripted.routes[path] = {"layers": [{"id": 0, "name": "Points"}], "tables": []}
    scripted.routes[path + "/0"] = {"id": 0, "name": "Points", "type": "Feature Layer"}
    assert fast_client(retries=0).all_layer_infos(service) == {
        0: {"id": 0, "name": "Points", "type": "Feature Layer"}
    }
    # No such resource at all (HTTP 404): layer by layer too.
    del scripted.routes[path + "/layers"]
    assert list(fast_client(retries=0).all_layer_infos(service)) == [0]


def test_taking_offline_reads_the_layer_definitions_in_one_request(reference_server, tmp_path):
    from plugin.core.take_offline import OfflineMapTask
    from tests.featureservice import seed

    # Asking for one layer at a time would fail: the whole list must come in one request.
    reference_server.inject_fault("layer", "json_error", count=1000, message="Not asked")
    task = OfflineMapTask(
        service_urls=[reference_server.service_url(seed.DEMO_SERVICE)], client=fast_client()
    )
    parameters = task.create_default_generate_offline_map_parameters(None)

    result = task.generate_offline_map(parameters, tmp_path / "map").run()

    assert [entry.layer_ids for entry in result.offline_map.geodatabases] == [[0, 1, 2]]
    reference_server.clear_faults()


def test_create_replica_async_streams_the_data_and_the_replica_is_listed(reference_server):
    from tests.featureservice import seed

    client = fast_client()
    url = reference_server.service_url(seed.DEMO_SERVICE)
    status_urls = []
    params = {
        "replicaName": "rest-test",
        "layers": [0, 1, 2, 3],
        "syncModel": "perReplica",
        "syncDirection": "bidirectional",
        "returnAttachments": True,
        "returnAttachmentsDataByUrl": False,
        "async": True,
    }
    with client.create_replica(url, params, on_status_url=status_urls.append) as result:
        header, events = result.read()
        counts: dict[int, int] = defaultdict(int)
        for layer_id, section, _item in events:
            if section == "features":
                counts[layer_id] += 1
    assert status_urls, "the reference service runs createReplica as a job when asked"
    assert dict(counts) == seed.DEMO_COUNTS
    assert isinstance(header["replicaServerGen"], int)
    assert header["replicaID"] in [r["replicaID"] for r in client.replicas(url)]
    client.unregister_replica(url, header["replicaID"])
    assert header["replicaID"] not in [r["replicaID"] for r in client.replicas(url)]


def test_secured_service_needs_a_token_and_refuses_a_wrong_password(secured_reference_server):
    from tests.featureservice import seed

    server = secured_reference_server
    url = server.service_url(seed.DEMO_SERVICE)
    with pytest.raises(AuthenticationError) as caught:
        fast_client().service_info(url)
    assert caught.value.code == 499
    wrong = TokenCredentials(
        server.token_url, "alice", "not-her-password", plain_http_hosts=server.plain_http_hosts
    )
    with pytest.raises(AuthenticationError, match="Unable to generate token"):
        fast_client(credentials=wrong).service_info(url)
    right = fast_client(
        credentials=TokenCredentials(
            server.token_url, "alice", "alice-secret", plain_http_hosts=server.plain_http_hosts
        )
    )
    assert "Sync" in right.service_info(url)["capabilities"]
    server.expire_tokens()
    assert "Sync" in right.service_info(url)["capabilities"]  # renewed on 498


def test_reference_service_faults_on_reads_are_retried(reference_server):
    from tests.featureservice import seed

    url = reference_server.service_url(seed.DEMO_SERVICE)
    for kind in ("http503", "html_error", "truncated_json", "drop_before_commit"):
        reference_server.inject_fault("service", kind)
        assert fast_client(retries=2).service_info(url)["capabilities"]
    reference_server.inject_fault("service", "http502", count=5)
    with pytest.raises(BadAnswerError):
        fast_client(retries=2).service_info(url)


def test_http_403_with_a_sign_in_page_is_an_authentication_error(scripted):
    scripted.routes["/svc"] = Response("<html>Please sign in</html>", status=403)
    with pytest.raises(AuthenticationError) as caught:
        fast_client().get_json(scripted.url + "/svc")
    assert caught.value.code == 403
    assert len(scripted.hits["/svc"]) == 1  # not a transient failure: no retry


def test_a_post_answered_with_a_redirect_is_not_resent_with_its_token(scripted):
    # The form carries the token: following the redirect would hand it to another host.
    scripted.routes["/svc/applyEdits"] = Response(
        "", status=307, headers={"Location": scripted.url + "/elsewhere/applyEdits"}
    )
    scripted.routes["/elsewhere/applyEdits"] = {"success": True}
    client = fast_client(
        credentials=StaticTokenCredentials("secret-token-123", loopback_scope(scripted.url))
    )
    with pytest.raises(ServiceError) as caught:
        client.post_json(scripted.url + "/svc/applyEdits", {"edits": "[]"})
    assert "redirected" in str(caught.value)
    assert "secret-token-123" not in str(caught.value)
    assert scripted.hits["/elsewhere/applyEdits"] == []


@pytest.mark.parametrize(
    ("site", "url", "shared"),
    [
        ("https://gis.example.com/portal", "https://gis.example.com/server/rest", True),
        ("https://gis.example.com/portal", "https://GIS.example.com:443/server/rest", True),
        ("https://gis.example.com/portal", "http://gis.example.com/server/rest", False),
        ("https://gis.example.com/portal", "https://gis.example.com:8443/server/rest", False),
        (
            "https://www.arcgis.com",
            "https://services3.arcgis.com/abc/arcgis/rest/services/x",
            False,
        ),
        ("https://gis.example.co.uk/portal", "https://gis.attacker.co.uk/server/rest", False),
        ("https://gis.example.com/portal", "https://gis.example.com.evil.org/rest", False),
    ],
)
def test_credentials_stay_within_their_own_site(site, url, shared):
    assert same_site(site, url) is shared


def test_a_sign_in_demanded_by_a_site_the_credential_is_not_bound_to_says_why_none_was_sent(
    scripted,
):
    scripted.routes["/svc"] = {"error": {"code": 499, "message": "Token Required"}}
    client = fast_client(
        credentials=StaticTokenCredentials("secret-token-123", loopback_scope("http://127.0.0.1:1"))
    )
    with pytest.raises(AuthenticationError) as caught:
        client.get_json(scripted.url + "/svc")
    assert "Token Required" in str(caught.value)
    assert f"was not sent to {scripted.url}" in str(caught.value)
    assert "secret-token-123" not in str(caught.value)
    assert "token" not in scripted.hits["/svc"][0]
