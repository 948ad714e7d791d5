"""Attacks from hostile servers and tampered offline-map folders, judged from the outside.

Each case is judged by what a hostile loopback server received, the error the user sees, and
the files left behind. The client side of every case runs in a child process with at most
1 GB of address space (``RLIMIT_AS``) and a time limit, so that a regression (an endless
answer read whole, a read that ignores cancel) fails the test instead of taking the machine
down. docs/hostile-inputs.md lists what the user sees.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback
from werkzeug.wrappers import Response

from plugin.core.errors import GeodatabaseError, ManifestError
from plugin.core.geodatabase import Geodatabase
from plugin.core.offline_map import MANIFEST_NAME, MAX_FILE_STEM_BYTES, OfflineMap
from plugin.core.rest import TokenCredentials
from tests.test_gui_auth import auth_manager as _auth_manager_fixture
from tests.test_gui_auth import plain_http_on_loopback as _plain_http_fixture
from tests.test_hostile_inputs import registered_replicas
from tests.test_processing_algorithms import _alg, processing  # noqa: F401 (fixture)
from tests.test_rest import ScriptedServer
from tests.test_sync import DEMO, fast_client, sync_map, take_offline

ROOT = Path(__file__).resolve().parent.parent
auth_manager = _auth_manager_fixture  # the QGIS auth configurations fixtures, shared
plain_http_on_loopback = _plain_http_fixture
pytestmark = pytest.mark.timeout(180)

CHILD_MEMORY = 1 << 30
CHILD_SECONDS = 90
LOOPBACK = ["127.0.0.1"]
SECRET_TOKEN = "SECRET-TOKEN-0123456789"

_CHILD_PRELUDE = """
import json, sys, time
sys.path.insert(0, {root!r})
from plugin.core.rest import (
    ArcGISClient, HeaderCredentials, StaticTokenCredentials, TokenCredentials,
)
from plugin.core.sites import CredentialScope
from plugin.core.transport import ReadLimits
values = json.loads(sys.argv[1])
"""

_CHILD_EPILOGUE = """
try:
    outcome = {"result": main(values)}
except BaseException as error:  # the test judges every outcome, including the unexpected
    outcome = {"error": type(error).__name__, "message": str(error)}
print(json.dumps(outcome, default=str))
"""


def in_capped_child(code: str, **values) -> dict:
    """Run ``code`` (core code only; it defines ``main(values)``) in a child process limited to
    1 GB of memory; ``{"result": ...}`` or ``{"error": class name, "message": ...}``."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))

    program = _CHILD_PRELUDE.format(root=str(ROOT)) + textwrap.dedent(code) + _CHILD_EPILOGUE
    child = subprocess.run(
        [sys.executable, "-c", program, json.dumps(values)],
        preexec_fn=limited,
        capture_output=True,
        text=True,
        timeout=CHILD_SECONDS,
        cwd=ROOT,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


@pytest.fixture
def hostile():
    server = ScriptedServer()
    yield server
    server.stop()


@pytest.fixture
def other_site():
    """A second loopback server on another port: another site."""
    server = ScriptedServer()
    yield server
    server.stop()


class RecordingFeedback(QgsProcessingFeedback):
    """Processing feedback that keeps the errors reported, as the Processing log shows them."""

    def __init__(self) -> None:
        super().__init__()
        self.errors = ""

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.errors += error + "\n"


def everything_received(server: ScriptedServer) -> str:
    """All a server received (paths, parameters, headers) as one text, to look for secrets."""
    return json.dumps([server.hits, server.headers])


# -- 1. a received map cannot harvest credentials ----------------------------------------------


def _point_manifest_at(folder: Path, url: str, *, portal: bool = False) -> None:
    manifest = folder / MANIFEST_NAME
    data = json.loads(manifest.read_text(encoding="utf-8"))
    if portal:
        data["source"]["portal_url"] = url
    for entry in data["geodatabases"]:
        entry["service_url"] = url
    manifest.write_text(json.dumps(data), encoding="utf-8")


SYNC_WITH_ALICE = """
from plugin.core.sync import OfflineMapSyncTask

def main(values):
    credentials = TokenCredentials(
        values["token_url"], "alice", "alice-secret", plain_http_hosts=["127.0.0.1"]
    )
    client = ArcGISClient(credentials, retries=0, poll_interval=0.02)
    task = OfflineMapSyncTask(values["folder"], client=client)
    job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())
    job.run()
"""


def test_a_manifest_naming_another_service_is_refused_and_that_host_receives_nothing(
    secured_reference_server, hostile, tmp_path
):
    server = secured_reference_server
    alice = TokenCredentials(
        server.token_url, "alice", "alice-secret", plain_http_hosts=server.plain_http_hosts
    )
    offline_map = take_offline(server, tmp_path / "map", client=fast_client(alice))
    hostile.routes["/arcgis/rest/services/Demo/FeatureServer"] = {"capabilities": "Sync"}
    _point_manifest_at(offline_map.folder, hostile.url + "/arcgis/rest/services/Demo/FeatureServer")

    outcome = in_capped_child(
        SYNC_WITH_ALICE, token_url=server.token_url, folder=str(offline_map.folder)
    )

    # The whole map is refused: its manifest cannot be trusted for any of its geodatabases.
    assert outcome["error"] == "ManifestError"
    assert "manifest names the service" in outcome["message"]
    assert "nothing was sent" in outcome["message"]
    assert hostile.hits == {}  # not a single request, let alone the password or a token


def test_no_password_goes_to_a_host_over_plain_http_unless_allowed(hostile):
    outcome = in_capped_child(
        """
        def main(values):
            TokenCredentials(values["token_url"], "alice", "alice-secret")
        """,
        token_url=hostile.url + "/arcgis/tokens/generateToken",
    )
    assert outcome["error"] == "InsecureConnectionError"
    assert "plain http" in outcome["message"] and "alice-secret" not in outcome["message"]
    assert hostile.hits == {}


# -- 3. credentials do not follow redirects to other sites -------------------------------------

FOLLOW_REDIRECTS = """
def main(values):
    scope = CredentialScope.of([values["home"]], plain_http_hosts=["127.0.0.1"])
    headers = HeaderCredentials(
        {"X-Esri-Authorization": "Bearer " + values["secret"],
         "Authorization": "Bearer " + values["secret"]},
        scope,
    )
    tokens = StaticTokenCredentials(values["secret"], scope)
    answers = []
    for credentials in (headers, tokens):
        client = ArcGISClient(credentials, retries=0)
        answers.append(client.get_json(values["home"] + "/svc"))
    path = values["folder"] + "/file.bin"
    ArcGISClient(tokens, retries=0).download(values["home"] + "/file", path)
    answers.append(open(path).read())
    return answers
"""


def test_credentials_are_only_attached_for_their_own_site_at_every_redirect_hop(
    hostile, other_site, tmp_path
):
    # Home redirects to itself once (its own site: credentials go), then to another site.
    hostile.routes["/svc"] = Response("", status=302, headers={"Location": "/svc2"})
    hostile.routes["/svc2"] = Response(
        "", status=307, headers={"Location": f"{other_site.url}/steal?f=json&token=echoed"}
    )
    hostile.routes["/file"] = Response("", status=301, headers={"Location": f"{other_site.url}/f"})
    other_site.routes["/steal"] = {"stolen": False}
    other_site.routes["/f"] = Response("file content")

    outcome = in_capped_child(
        FOLLOW_REDIRECTS, home=hostile.url, secret=SECRET_TOKEN, folder=str(tmp_path)
    )

    assert outcome["result"] == [{"stolen": False}, {"stolen": False}, "file content"]
    assert SECRET_TOKEN not in everything_received(other_site)
    assert "echoed" not in everything_received(other_site)
    assert len(other_site.hits["/steal"]) == 2 and len(other_site.hits["/f"]) == 1
    # The home site got them at both of its hops.
    assert hostile.headers["/svc"][0]["X-Esri-Authorization"] == "Bearer " + SECRET_TOKEN
    assert hostile.headers["/svc2"][0]["X-Esri-Authorization"] == "Bearer " + SECRET_TOKEN
    assert hostile.hits["/svc2"][1]["token"] == SECRET_TOKEN


def test_endless_redirects_stop_with_a_clear_message(hostile):
    hostile.routes["/svc"] = Response("", status=302, headers={"Location": "/svc"})
    outcome = in_capped_child(
        """
        def main(values):
            return ArcGISClient(retries=0).get_json(values["url"])
        """,
        url=hostile.url + "/svc",
    )
    assert outcome["error"] == "ServiceError"
    assert "redirected the request more than 5 times" in outcome["message"]
    assert len(hostile.hits["/svc"]) == 6


# -- 4. same site = same scheme, host and port --------------------------------------------------


def test_a_token_does_not_go_to_another_port_or_to_plain_http_after_https(hostile, other_site):
    hostile.routes["/svc"] = {"ok": True}
    other_site.routes["/svc"] = {"ok": True}
    outcome = in_capped_child(
        """
        def main(values):
            # Bound to the https site of the first server's host and port, and to the plain
            # http site of the second: neither the http form of the first nor another port
            # is that site.
            scope = CredentialScope.of(
                [values["https_home"], values["home"]], plain_http_hosts=["127.0.0.1"]
            )
            client = ArcGISClient(StaticTokenCredentials(values["secret"], scope), retries=0)
            client.get_json(values["http_first"] + "/svc")
            client.get_json(values["home"] + "/svc")
        """,
        https_home=hostile.url.replace("http://", "https://"),
        http_first=hostile.url,
        home=other_site.url,
        secret=SECRET_TOKEN,
    )
    assert "error" not in outcome, outcome
    assert SECRET_TOKEN not in everything_received(hostile)
    assert other_site.hits["/svc"][0]["token"] == SECRET_TOKEN


# -- 5. bounded answers ---------------------------------------------------------------------------


def test_an_endless_answer_is_refused_at_its_size_limit(hostile):
    def endless():
        yield b'{"layers": ['
        while True:
            yield b"0," * 65536

    hostile.routes["/svc"] = lambda request, params: Response(endless(), mimetype="text/plain")
    outcome = in_capped_child(
        """
        def main(values):
            return ArcGISClient(retries=0).get_json(values["url"])
        """,
        url=hostile.url + "/svc",
    )
    assert outcome["error"] == "UnusableAnswerError"
    assert "not usable" in outcome["message"] and "larger than 64 MB" in outcome["message"]


def _trickle():
    for _ in range(100_000):
        yield b" "
        time.sleep(0.05)


def test_a_download_that_trickles_is_given_up_with_a_clear_message(hostile, tmp_path):
    hostile.routes["/result.json"] = lambda request, params: Response(_trickle())
    outcome = in_capped_child(
        """
        def main(values):
            limits = ReadLimits(min_bytes_per_second=100, slow_window=1.0)
            client = ArcGISClient(retries=0, limits=limits)
            client.download(values["url"], values["dest"])
        """,
        url=hostile.url + "/result.json",
        dest=str(tmp_path / "result.json"),
    )
    assert outcome["error"] == "NetworkError"
    assert "too slowly" in outcome["message"] and "100 bytes a second" in outcome["message"]
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_cancel_is_honoured_while_a_trickling_answer_is_read(hostile, tmp_path):
    hostile.routes["/result.json"] = lambda request, params: Response(_trickle())
    hostile.routes["/status"] = lambda request, params: Response(_trickle())
    outcome = in_capped_child(
        """
        def main(values):
            # Default limits: only cancel can end these reads early.
            client = ArcGISClient(retries=0)
            errors = []
            for read in (
                lambda cancel: client.download(values["url"], values["dest"], cancel=cancel),
                lambda cancel: client.poll_job(values["status"], cancel=cancel),
            ):
                deadline = time.monotonic() + 0.5
                try:
                    read(lambda: time.monotonic() > deadline)
                except Exception as error:
                    errors.append([type(error).__name__, str(error)])
            return errors
        """,
        url=hostile.url + "/result.json",
        status=hostile.url + "/status",
        dest=str(tmp_path / "result.json"),
    )
    assert outcome["result"] == [["CancelledError", "The operation was cancelled."]] * 2


# -- 6. deep JSON -------------------------------------------------------------------------------


def test_deeply_nested_json_is_an_unusable_answer_not_a_recursion_error(hostile, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    hostile.routes["/svc"] = Response(deep, mimetype="application/json")
    hostile.routes["/deep_feature.json"] = Response(
        '{"layers": [{"id": 0, "features": [' + deep + "]}]}"
    )
    hostile.routes["/deep_object.json"] = Response(
        '{"layers": [{"id": 0, "x": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}]}"
    )
    outcome = in_capped_child(
        """
        def main(values):
            client = ArcGISClient(retries=0)
            errors = []
            for read in (
                lambda: client.get_json(values["url"] + "/svc"),
                lambda: client.fetch_result(values["url"] + "/deep_feature.json").header(),
                lambda: client.fetch_result(values["url"] + "/deep_object.json").header(),
            ):
                try:
                    read()
                except Exception as error:
                    errors.append([type(error).__name__, str(error)])
            return errors
        """,
        url=hostile.url,
    )
    errors = outcome["result"]
    assert [name for name, _ in errors] == ["UnusableAnswerError"] * 3
    assert all("not usable" in message and "nested too deeply" in message for _, message in errors)


def test_a_small_deeply_nested_download_leaves_no_partial_file(hostile, tmp_path):
    # Small downloads are checked for an ArcGIS error body; one too deep to read is refused
    # without leaving the ".part" file behind.
    deep = "[" * 8000 + "]" * 8000
    try:
        json.loads(deep)
    except RecursionError:
        pass
    else:  # Debian 13's Python 3.13 reads this depth; Debian 12's 3.11 does not.
        pytest.skip("this Python reads 8,000 levels of JSON without a RecursionError")
    hostile.routes["/result.json"] = Response(deep)
    outcome = in_capped_child(
        """
        def main(values):
            ArcGISClient(retries=0).download(values["url"], values["dest"])
        """,
        url=hostile.url + "/result.json",
        dest=str(tmp_path / "result.json"),
    )
    assert outcome["error"] == "UnusableAnswerError"
    assert list(tmp_path.iterdir()) == []


def test_a_deeply_nested_manifest_is_a_damaged_manifest(tmp_path):
    folder = tmp_path / "map"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    outcome = in_capped_child(
        """
        from plugin.core.offline_map import OfflineMap

        def main(values):
            OfflineMap.open(values["folder"])
        """,
        folder=str(folder),
    )
    assert outcome["error"] == "ManifestError"
    assert "nested too deeply" in outcome["message"]


# -- 7. files -----------------------------------------------------------------------------------


REMOVE_MAP = """
from plugin.core.removal import remove_offline_map

def main(values):
    remove_offline_map(values["folder"], client=ArcGISClient(retries=0))
"""


def test_a_geodatabase_linked_to_another_maps_file_is_refused_and_the_other_map_kept(
    reference_server, tmp_path
):
    mine = take_offline(reference_server, tmp_path / "mine")
    received = take_offline(reference_server, tmp_path / "received")
    (received.folder / "Demo.gpkg").unlink()
    (received.folder / "Demo.gpkg").symlink_to(mine.folder / "Demo.gpkg")
    before = (mine.folder / "Demo.gpkg").read_bytes()
    with Geodatabase.open(mine.folder / "Demo.gpkg") as gdb:
        my_replica = gdb.replica.replica_id

    outcome = in_capped_child(REMOVE_MAP, folder=str(received.folder))

    assert "is a link to another file" in outcome["message"]
    assert my_replica in [r["replicaID"] for r in registered_replicas(reference_server)]
    assert (mine.folder / "Demo.gpkg").read_bytes() == before
    with pytest.raises(GeodatabaseError, match="is a link to another file"):
        OfflineMap.open(received.folder).open_geodatabase(received.geodatabases[0])


def test_a_linked_manifest_is_refused(reference_server, tmp_path):
    mine = take_offline(reference_server, tmp_path / "mine")
    other = tmp_path / "received"
    other.mkdir()
    (other / MANIFEST_NAME).symlink_to(mine.folder / MANIFEST_NAME)
    with pytest.raises(ManifestError, match="is a link to another file"):
        OfflineMap.open(other)


def test_a_linked_wal_file_is_named_not_blamed_on_a_full_disk(reference_server, tmp_path):
    offline_map = take_offline(reference_server, tmp_path / "map")
    elsewhere = tmp_path / "someone-elses-file"
    elsewhere.write_bytes(b"precious")
    wal = offline_map.folder / "Demo.gpkg-wal"
    if wal.exists():
        wal.unlink()
    wal.symlink_to(elsewhere)

    outcome = in_capped_child(
        """
        from plugin.core.geodatabase import Geodatabase

        def main(values):
            Geodatabase.open(values["path"])
        """,
        path=str(offline_map.folder / "Demo.gpkg"),
    )

    assert outcome["error"] == "GeodatabaseError"
    assert "Demo.gpkg-wal file is a link" in outcome["message"]
    assert "disk" not in outcome["message"]
    assert elsewhere.read_bytes() == b"precious"


def test_a_service_with_a_300_character_name_makes_files_with_room_for_their_companions(
    reference_server, tmp_path
):
    long_name = "Inspections_of_" + "x" * 285
    with reference_server.app.store.write() as tx:
        tx.conn.execute("UPDATE services SET name = ? WHERE name = ?", (long_name, DEMO))
        tx.conn.execute("UPDATE layers SET service = ? WHERE service = ?", (long_name, DEMO))

    offline_map = take_offline(reference_server, tmp_path / "map", service=long_name)

    (entry,) = offline_map.geodatabases
    stem = Path(entry.file).stem
    assert len(stem.encode()) <= MAX_FILE_STEM_BYTES and stem.startswith("Inspections_of_xxx")
    result = sync_map(offline_map, keep_deltas=True)
    assert not result.has_errors, result.geodatabase_errors
    deltas = offline_map.folder.with_name(offline_map.folder.name + "_deltas")
    assert [p.name for p in deltas.iterdir() if p.name.startswith(stem)]


# -- 1. Processing goes through the same rule ---------------------------------------------------


def test_processing_refuses_a_credential_for_a_server_the_map_names_unless_allowed(
    processing,  # noqa: F811
    reference_server,
    hostile,
    auth_manager,
    plain_http_on_loopback,
    tmp_path,
):
    offline_map = take_offline(reference_server, tmp_path / "map")
    data = json.loads((offline_map.folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    data["source"]["portal_url"] = hostile.url + "/arcgis/sharing/rest"
    (offline_map.folder / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    config_id = auth_manager(
        "Basic", uri=reference_server.root_url, username="alice", password="alice-secret"
    )
    parameters = {"OFFLINE_MAP": str(offline_map.folder), "AUTHCFG": config_id}
    feedback = RecordingFeedback()

    with pytest.raises(QgsProcessingException):
        processing.run(_alg("synchronizeofflinemap"), parameters, feedback=feedback)

    assert hostile.url.replace("http://", "") in feedback.errors
    assert "APPROVE_NEW_SITES" in feedback.errors
    assert hostile.hits == {}
