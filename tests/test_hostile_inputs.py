"""Hostile inputs through the core API and the Processing doors.

Each case gives a message a GIS user can act on and leaves the local data as it was: the
geodatabase still opens (or, when it is the damaged input, its bytes are untouched) and its
pending edits are unchanged. The table in docs/hostile-inputs.md lists what the user sees.

Tests run as root, so ``chmod`` cannot make a folder read-only for them: unwritable places are
a path under /proc and a file where a folder is expected; a full disk is a child process with
a file-size limit (RLIMIT_FSIZE), which makes writes fail as a full disk does.
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from qgis.core import QgsProcessingException

from plugin.core.errors import (
    GeodatabaseError,
    ManifestError,
    OfflineMapSyncError,
    SchemaChangedError,
)
from plugin.core.geodatabase import Geodatabase
from plugin.core.geodatabase_sync import GeodatabaseSyncTask
from plugin.core.gpkg_connection import register_functions
from plugin.core.offline_map import OfflineMap
from plugin.core.removal import remove_offline_map
from plugin.core.sync import OfflineMapSyncTask
from plugin.core.sync_model import SyncGeodatabaseParameters
from plugin.core.take_offline import OfflineMapTask
from tests.featureservice import seed
from tests.test_processing_algorithms import _alg, processing  # noqa: F401 (fixture)
from tests.test_sync import (
    DEMO,
    POINTS,
    Local,
    fast_client,
    new_guid,
    point_gid,
    server_rows,
    sync_map,
    take_offline,
)

ROOT = Path(__file__).resolve().parent.parent


# -- helpers ----------------------------------------------------------------------------------


def local_state(path: Path) -> tuple[dict, dict]:
    """Pending counts and every Points row's name: what must not change."""
    with Geodatabase.open(path) as gdb:
        pending = gdb.pending_counts()
        table = gdb.layer(POINTS).table_name
        names = dict(gdb.conn.execute(f'SELECT GlobalID, name FROM "{table}"').fetchall())
    return pending, names


def registered_replicas(server) -> list[dict]:
    return fast_client().replicas(server.service_url(DEMO))


def alter_points_on_server(server, change, *sql: str) -> None:
    """Change layer 0's definition in the reference service's store (and its table)."""
    with server.app.store.write() as tx:
        row = tx.conn.execute(
            "SELECT table_name, definition FROM layers WHERE service = ? AND layer_id = 0",
            (DEMO,),
        ).fetchone()
        definition = json.loads(row["definition"])
        change(definition)
        tx.conn.execute(
            "UPDATE layers SET definition = ? WHERE service = ? AND layer_id = 0",
            (json.dumps(definition), DEMO),
        )
        for statement in sql:
            tx.conn.execute(statement.format(table=row["table_name"]))


def with_pending_edits(server, folder: Path) -> tuple[OfflineMap, Local, str]:
    offline_map = take_offline(server, folder)
    local = Local(offline_map)
    local.update(POINTS, point_gid(0), name="Edited offline", visits=5)
    added = local.add(POINTS, "POINT (950000 6003000)", name="Added offline")
    return offline_map, local, added


def add_large_attachment(local: Local) -> str:
    """A new 2 MB attachment 'flight.mp4' on the first point; its GlobalID."""
    table = local.layers[POINTS].attachment_table
    big = new_guid()
    con = local._connect()
    try:
        con.execute(
            f'INSERT INTO "{table}" (GLOBALID, REL_GLOBALID, CONTENT_TYPE, ATT_NAME, DATA_SIZE,'
            " DATA) VALUES (?, ?, 'video/mp4', 'flight.mp4', ?, zeroblob(?))",
            [big, point_gid(0), 2 * 1024**2, 2 * 1024**2],
        )
    finally:
        con.close()
    return big


# -- damaged geodatabases ------------------------------------------------------------------


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garble_header(data: bytes) -> bytes:
    return b"x" * 100 + data[100:]


def _garble_pages(data: bytes) -> bytes:
    damaged = bytearray(data)
    for offset in range(8192, len(damaged) - 8192, 3 * 4096):
        damaged[offset : offset + 2000] = b"\xff" * 2000
    return bytes(damaged)


@pytest.mark.parametrize(
    "damage",
    [_truncate, _garble_header, _garble_pages, lambda data: b""],
    ids=["truncated", "header", "pages", "empty"],
)
def test_a_damaged_geopackage_is_reported_by_name_and_the_others_still_sync(
    reference_server, tmp_path, damage
):
    task = OfflineMapTask(
        service_urls=[
            reference_server.service_url(DEMO),
            reference_server.service_url(seed.READONLY_SERVICE),
        ],
        client=fast_client(),
    )
    params = task.create_default_generate_offline_map_parameters(None)
    offline_map = task.generate_offline_map(params, tmp_path / "map").run().offline_map
    damaged, intact = offline_map.geodatabases
    damaged_bytes = damage(damaged.path.read_bytes())
    damaged.path.write_bytes(damaged_bytes)

    with pytest.raises(GeodatabaseError, match=damaged.path.name):
        Geodatabase.open(damaged.path)
    result = sync_map(OfflineMap.open(offline_map.folder))

    message = result.geodatabase_errors[damaged.file]
    assert "damaged or not a GeoPackage" in message or "is not a GeoPackage" in message
    assert intact.file not in result.geodatabase_errors
    assert damaged.path.read_bytes() == damaged_bytes
    with Geodatabase.open(intact.path):
        pass


def test_processing_sync_of_a_damaged_geopackage_fails_with_its_name(
    processing,  # noqa: F811
    reference_server,
    tmp_path,
):
    offline_map = take_offline(reference_server, tmp_path / "map")
    path = offline_map.geodatabases[0].path
    path.write_bytes(_truncate(path.read_bytes()))
    before = path.read_bytes()
    with pytest.raises(QgsProcessingException, match="Demo.gpkg is damaged"):
        processing.run(_alg("synchronizeofflinemap"), {"OFFLINE_MAP": str(offline_map.folder)})
    assert path.read_bytes() == before


# -- a manifest from a newer version ---------------------------------------------------------


def test_a_manifest_from_a_newer_version_is_refused_by_every_door_and_nothing_changes(
    processing,  # noqa: F811
    reference_server,
    tmp_path,
):
    offline_map, local, _ = with_pending_edits(reference_server, tmp_path / "map")
    manifest = offline_map.folder / "offline_map.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["format_version"] = 99
    manifest.write_text(json.dumps(data), encoding="utf-8")
    text = manifest.read_text(encoding="utf-8")
    before = local_state(local.path)

    with pytest.raises(ManifestError, match="newer version"):
        OfflineMap.open(offline_map.folder)
    with pytest.raises(ManifestError, match="Update the plugin"):
        OfflineMapSyncTask(offline_map.folder, client=fast_client()).load()
    with pytest.raises(ManifestError, match="newer version"):
        remove_offline_map(offline_map.folder, client=fast_client())
    for algorithm in ("synchronizeofflinemap", "checkforupdates", "removeofflinemap"):
        with pytest.raises(QgsProcessingException):
            processing.run(_alg(algorithm), {"OFFLINE_MAP": str(offline_map.folder)})

    assert manifest.read_text(encoding="utf-8") == text
    assert local_state(local.path) == before


# -- bookkeeping tables dropped --------------------------------------------------------------


@pytest.mark.parametrize(
    "table", ["oms_journal", "oms_conflicts", "oms_history", "oms_changed_fields"]
)
def test_a_geodatabase_missing_a_bookkeeping_table_is_refused_and_its_data_kept(
    reference_server, tmp_path, table
):
    offline_map, local, _ = with_pending_edits(reference_server, tmp_path / "map")
    con = sqlite3.connect(local.path)
    register_functions(con)
    points = con.execute("SELECT count(*) FROM Points").fetchone()[0]
    con.execute(f"DROP TABLE {table}")
    con.commit()
    con.close()

    with pytest.raises(GeodatabaseError, match=f"damaged sync information.*{table}"):
        Geodatabase.open(local.path)
    result = sync_map(OfflineMap.open(offline_map.folder))

    assert table in result.geodatabase_errors["Demo.gpkg"]
    con = sqlite3.connect(local.path)
    assert con.execute("SELECT count(*) FROM Points").fetchone()[0] == points
    assert con.execute("SELECT count(*) FROM oms_changes").fetchone()[0] == 2
    con.close()
    assert point_gid(0) in server_rows(reference_server, POINTS)
    assert server_rows(reference_server, POINTS)[point_gid(0)]["attributes"]["name"] != (
        "Edited offline"
    )


@pytest.mark.parametrize(
    "damage",
    ["x'0000ffff' || substr(data, 5)", "substr(data, 1, 30)"],
    ids=["more cells than room", "cut short"],
)
def test_a_damaged_spatial_index_is_rebuilt_and_the_next_sync_goes_through(
    reference_server, tmp_path, damage
):
    """A spatial index damaged outside the plugin (its root node claims more cells than it has
    room for, or is cut short) fails the sync that moves the points, with nothing changed; the
    index is rebuilt from the features and the next sync goes through."""
    offline_map, local, _ = with_pending_edits(reference_server, tmp_path / "map")
    con = sqlite3.connect(local.path)
    con.execute(f"UPDATE rtree_Points_geom_node SET data = {damage} WHERE nodeno = 1")
    con.commit()
    con.close()
    before = local_state(local.path)
    reference_server.bulk_update(DEMO, POINTS, 1000)  # every point moved on the service

    result = sync_map(OfflineMap.open(offline_map.folder))

    message = result.geodatabase_errors["Demo.gpkg"]
    assert "spatial index of Points was damaged" in message
    assert "rebuilt" in message and "Synchronize again" in message
    assert local_state(local.path) == before
    result = sync_map(OfflineMap.open(offline_map.folder))
    assert not result.has_errors
    assert server_rows(reference_server, POINTS)[point_gid(0)]["attributes"]["name"] == (
        "Edited offline"
    )
    con = sqlite3.connect(local.path)
    register_functions(con)
    assert con.execute("SELECT rtreecheck('rtree_Points_geom')").fetchone() == ("ok",)
    # Every point is found where it now is (the index holds each row's extent).
    rows = con.execute("SELECT count(*) FROM Points WHERE geom IS NOT NULL").fetchone()[0]
    found = con.execute(
        "SELECT count(*) FROM Points p JOIN rtree_Points_geom r ON r.id = p.OBJECTID"
        " WHERE r.minx <= ST_MinX(p.geom) AND r.maxx >= ST_MaxX(p.geom)"
        " AND r.miny <= ST_MinY(p.geom) AND r.maxy >= ST_MaxY(p.geom)"
    ).fetchone()[0]
    con.close()
    assert found == rows == len(server_rows(reference_server, POINTS))


def test_a_geopackage_without_any_sync_information_is_not_taken_for_a_geodatabase(
    reference_server, tmp_path
):
    offline_map = take_offline(reference_server, tmp_path / "map")
    path = offline_map.geodatabases[0].path
    con = sqlite3.connect(path)
    for (name,) in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'oms%'"
    ).fetchall():
        con.execute(f'DROP TABLE "{name}"')
    con.commit()
    con.close()
    with pytest.raises(GeodatabaseError, match="not an offline-map geodatabase"):
        Geodatabase.open(path)


# -- the service's schema changed ------------------------------------------------------------


def test_a_field_added_on_the_service_does_not_stop_the_sync(reference_server, tmp_path):
    offline_map, local, added = with_pending_edits(reference_server, tmp_path / "map")
    alter_points_on_server(
        reference_server,
        lambda d: d["fields"].append(
            {"name": "extra", "type": "esriFieldTypeString", "alias": "Extra", "length": 50}
        ),
        "ALTER TABLE {table} ADD COLUMN extra TEXT",
    )

    result = sync_map(offline_map)

    assert not result.has_errors
    on_server = server_rows(reference_server, POINTS)
    assert on_server[point_gid(0)]["attributes"]["name"] == "Edited offline"
    assert added in on_server
    assert not local.has_pending()


def _remove_notes(definition: dict) -> None:
    definition["fields"] = [f for f in definition["fields"] if f["name"] != "notes"]


def _visits_become_text(definition: dict) -> None:
    for f in definition["fields"]:
        if f["name"] == "visits":
            f["type"], f["length"] = "esriFieldTypeString", 20


@pytest.mark.parametrize(
    ("change", "sql", "expected"),
    [
        (_remove_notes, ["ALTER TABLE {table} DROP COLUMN notes"], "'notes' was removed"),
        (_visits_become_text, [], "'visits' changed from esriFieldTypeInteger"),
    ],
    ids=["field removed", "type changed"],
)
def test_a_field_removed_or_retyped_on_the_service_stops_the_sync_and_keeps_every_edit(
    processing,  # noqa: F811
    reference_server,
    tmp_path,
    change,
    sql,
    expected,
):
    offline_map, local, added = with_pending_edits(reference_server, tmp_path / "map")
    alter_points_on_server(reference_server, change, *sql)
    before = local_state(local.path)

    result = sync_map(offline_map)
    message = result.geodatabase_errors["Demo.gpkg"]
    assert expected in message and "local edits stay pending" in message
    task = GeodatabaseSyncTask(reference_server.service_url(DEMO), client=fast_client())
    with pytest.raises(SchemaChangedError) as refused:
        task.synchronize(local.path, SyncGeodatabaseParameters())
    assert any(expected in change for change in refused.value.changes)
    with pytest.raises(QgsProcessingException, match="changed since"):
        processing.run(_alg("synchronizegeodatabase"), {"GEODATABASE": str(local.path)})

    assert local_state(local.path) == before
    assert added not in server_rows(reference_server, POINTS)
    assert local.conflicts() == []


# -- what the server sends -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "kind", "expected"),
    [
        ("synchronizeReplica", "html_error", "web page instead of data"),
        ("synchronizeReplica", "truncated_json", "cut off or is not valid JSON"),
        ("result", "truncated_json", "incomplete"),
        ("result", "html_error", "web page instead of the result file"),
        ("service", "html_error", "web page instead of data"),
        ("layers", "truncated_json", "cut off or is not valid JSON"),
    ],
)
def test_html_pages_and_cut_off_json_fail_the_sync_clearly_and_the_retry_converges(
    reference_server, tmp_path, operation, kind, expected
):
    offline_map, local, added = with_pending_edits(reference_server, tmp_path / "map")
    before = local_state(local.path)
    reference_server.inject_fault(operation, kind, count=10)

    result = sync_map(offline_map)

    message = result.geodatabase_errors["Demo.gpkg"]
    assert expected in message and "Syncing again will resolve it" in message
    assert local_state(local.path)[1] == before[1]  # no row changed locally
    reference_server.clear_faults()
    assert not sync_map(offline_map).has_errors
    on_server = server_rows(reference_server, POINTS)
    assert on_server[point_gid(0)]["attributes"]["name"] == "Edited offline"
    assert len(on_server) == seed.DEMO_COUNTS[POINTS] + 1  # the add arrived exactly once
    assert added in on_server
    assert not local.has_pending()


def test_processing_sync_reports_an_html_page_from_the_server(
    processing,  # noqa: F811
    reference_server,
    tmp_path,
):
    offline_map, local, _ = with_pending_edits(reference_server, tmp_path / "map")
    before = local_state(local.path)
    reference_server.inject_fault("synchronizeReplica", "html_error", count=10)
    with pytest.raises(QgsProcessingException, match="web page"):
        processing.run(_alg("synchronizeofflinemap"), {"OFFLINE_MAP": str(offline_map.folder)})
    assert local_state(local.path) == before


@pytest.mark.parametrize(
    ("operation", "kind"),
    [("createReplica", "html_error"), ("result", "truncated_json"), ("layers", "html_error")],
)
def test_taking_offline_from_a_garbled_server_leaves_no_files_and_no_replica(
    reference_server, tmp_path, operation, kind
):
    reference_server.inject_fault(operation, kind, count=10)
    with pytest.raises(OfflineMapSyncError):
        take_offline(reference_server, tmp_path / "map")
    reference_server.clear_faults()
    assert not (tmp_path / "map").exists() or not list((tmp_path / "map").iterdir())
    assert registered_replicas(reference_server) == []


# -- big attachments -------------------------------------------------------------------------


def test_a_2_gb_attachment_cannot_enter_the_geopackage_and_nothing_changes(
    reference_server, tmp_path
):
    offline_map, local, _ = with_pending_edits(reference_server, tmp_path / "map")
    before = local_state(local.path)
    table = local.layers[POINTS].attachment_table
    con = local._connect()
    try:
        # SQLite stores at most 1 GB in one value: the writer is refused before any byte lands.
        with pytest.raises(sqlite3.DataError, match="too big"):
            con.execute(
                f'INSERT INTO "{table}" (GLOBALID, REL_GLOBALID, CONTENT_TYPE, ATT_NAME, '
                "DATA_SIZE, DATA) VALUES (?, ?, 'video/mp4', 'flight.mp4', ?, zeroblob(?))",
                [new_guid(), point_gid(0), 2 * 1024**3, 2 * 1024**3],
            )
    finally:
        con.close()
    assert local_state(local.path) == before


def test_an_attachment_above_the_upload_limit_stays_pending_and_costs_the_other_edits_nothing(
    reference_server, tmp_path
):
    offline_map, local, added = with_pending_edits(reference_server, tmp_path / "map")
    big = add_large_attachment(local)
    # The server changed another field of the row edited offline, and another row.
    reference_server.apply_edits(
        DEMO,
        POINTS,
        updates=[
            {"attributes": {"GlobalID": point_gid(5), "name": "Server side"}},
            {"attributes": {"GlobalID": point_gid(0), "notes": "Server note"}},
        ],
    )

    task = OfflineMapSyncTask(offline_map, client=fast_client())
    params = task.create_default_offline_map_sync_parameters()
    params.max_attachment_upload_bytes = 1024**2
    result = task.create_offline_map_sync_job(params).run()

    points = next(r for r in result.layer_results if r.layer_id == POINTS)
    assert points.error is None
    (message,) = [e.message for e in points.edit_errors]
    assert "'flight.mp4' (2.0 MB)" in message and "1.0 MB" in message
    # The attribute edit and the new feature went up, nothing went to the conflict log.
    assert points.uploaded.adds == 1 and points.uploaded.updates == 1
    assert points.conflicts == 0
    remote = {g: f["attributes"] for g, f in server_rows(reference_server, POINTS).items()}
    assert remote[point_gid(0)]["name"] == "Edited offline" and remote[point_gid(0)]["visits"] == 5
    assert remote[point_gid(0)]["notes"] == "Server note"
    assert remote[added]["name"] == "Added offline"
    assert local.rows(POINTS)[point_gid(5)]["name"] == "Server side"  # downloads went on
    assert local.rows(POINTS)[point_gid(0)]["notes"] == "Server note"
    # Only the large attachment is still pending, and the server does not have it.
    pending = local_state(local.path)[0][POINTS]
    assert pending["attachment_adds"] == 1 and sum(pending.values()) == 1
    assert big not in {a["globalId"].upper() for a in reference_server.attachments(DEMO, POINTS)}

    assert not sync_map(offline_map).has_errors  # the default limit lets 2 MB through
    assert big in {a["globalId"].upper() for a in reference_server.attachments(DEMO, POINTS)}
    assert not local.has_pending()


def test_an_upload_of_new_features_only_reports_just_the_large_attachments_it_left_out(
    reference_server, tmp_path
):
    offline_map = take_offline(reference_server, tmp_path / "map")
    local = Local(offline_map)
    added = local.add(POINTS, "POINT (950000 6003000)", name="Added offline")
    big = add_large_attachment(local)
    table = local.layers[POINTS].attachment_table
    replaced = reference_server.attachments(DEMO, POINTS)[0]["globalId"].upper()
    con = local._connect()
    try:
        con.execute(
            f"UPDATE \"{table}\" SET ATT_NAME = 'survey.mp4', DATA = zeroblob(?), DATA_SIZE = ?"
            " WHERE upper(GLOBALID) = ?",
            [2 * 1024**2, 2 * 1024**2, replaced],
        )
    finally:
        con.close()

    task = GeodatabaseSyncTask(reference_server.service_url(DEMO), client=fast_client())
    params = task.create_default_sync_geodatabase_parameters(local.path)
    params.upload_only_new_features = True
    params.max_attachment_upload_bytes = 1024**2
    results = {r.layer_id: r for r in task.sync_geodatabase(params, local.path).run()}

    # The replaced attachment was never going up in an upload of new features only: only the
    # new one is reported as too large.
    (message,) = [e.message for e in results[POINTS].edit_errors]
    assert "'flight.mp4' (2.0 MB)" in message
    assert results[POINTS].uploaded.adds == 1
    assert added in server_rows(reference_server, POINTS)
    on_server = {a["globalId"].upper(): a for a in reference_server.attachments(DEMO, POINTS)}
    assert big not in on_server and on_server[replaced]["name"] != "survey.mp4"
    pending = local_state(local.path)[0][POINTS]
    assert pending["attachment_adds"] == 1 and pending["attachment_updates"] == 1
    assert sum(pending.values()) == 2


# -- folders that cannot be written ----------------------------------------------------------


def test_taking_offline_into_a_file_or_an_unwritable_place_fails_clearly(
    reference_server, tmp_path
):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for target, expected in [
        (a_file, "is a file"),
        (a_file / "map", "cannot be created"),
        (Path("/proc/offline-map-sync-test/map"), "cannot be created"),
    ]:
        with pytest.raises(OfflineMapSyncError, match=expected):
            take_offline(reference_server, target)
    assert a_file.read_text() == "mine"
    assert registered_replicas(reference_server) == []


@pytest.mark.parametrize(
    "target", ["file/field.gpkg", "/proc/field.gpkg", "missing/field.gpkg"], ids=str
)
def test_generating_a_geodatabase_where_it_cannot_be_written_leaves_no_replica(
    reference_server, tmp_path, target
):
    (tmp_path / "file").write_text("mine")
    task = GeodatabaseSyncTask(reference_server.service_url(DEMO), client=fast_client())
    with pytest.raises(GeodatabaseError, match="folder"):
        task.generate_geodatabase(
            task.create_default_generate_geodatabase_parameters(), tmp_path / target
        ).run()
    assert registered_replicas(reference_server) == []
    assert (tmp_path / "file").read_text() == "mine"


def test_a_file_where_the_deltas_folder_belongs_fails_clearly_and_the_next_sync_finishes(
    reference_server, tmp_path
):
    offline_map, local, added = with_pending_edits(reference_server, tmp_path / "map")
    (tmp_path / "map_deltas").write_text("in the way")
    task = OfflineMapSyncTask(offline_map, client=fast_client())
    params = task.create_default_offline_map_sync_parameters()
    params.keep_geodatabase_deltas = True

    result = task.create_offline_map_sync_job(params).run()

    message = result.geodatabase_errors["Demo.gpkg"]
    assert "a file is in the way" in message and "Syncing again will resolve it" in message
    assert local.pending()[POINTS]["adds"] == 1
    assert not sync_map(offline_map).has_errors  # finishes the journalled upload
    assert not local.has_pending()
    on_server = server_rows(reference_server, POINTS)
    assert len(on_server) == seed.DEMO_COUNTS[POINTS] + 1
    assert added in on_server


SYNC_WITH_A_FULL_DISK = r"""
import resource, signal, sys
sys.path.insert(0, sys.argv[1])
from plugin.core.rest import ArcGISClient
from plugin.core.sync import OfflineMapSyncTask

task = OfflineMapSyncTask(sys.argv[2], client=ArcGISClient(retries=0, poll_interval=0.02))
job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())
print(job.run().geodatabase_errors.get("Demo.gpkg", ""))
"""


def test_a_full_disk_while_downloading_fails_clearly_and_the_next_sync_finishes(
    reference_server, tmp_path
):
    offline_map, local, added = with_pending_edits(reference_server, tmp_path / "map")
    long_notes = "n" * 3500
    reference_server.apply_edits(
        DEMO,
        POINTS,
        updates=[
            {"attributes": {"GlobalID": point_gid(i), "notes": long_notes}} for i in range(1, 12)
        ],
    )
    before = local_state(local.path)
    # Files may not grow past 36 kB: the SQLite side files fit, the download (about 40 kB) does not.
    limit = 36_000

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    child = subprocess.run(
        [sys.executable, "-c", SYNC_WITH_A_FULL_DISK, str(ROOT), str(offline_map.folder)],
        preexec_fn=limited,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert child.returncode == 0, child.stderr
    assert "could not be saved" in child.stdout and "File too large" in child.stdout
    assert "Free some disk space" in child.stdout
    assert local_state(local.path)[1] == before[1]
    assert local.pending()[POINTS] == before[0][POINTS]
    assert not sync_map(offline_map).has_errors
    assert not local.has_pending()
    assert local.rows(POINTS)[point_gid(3)]["notes"] == long_notes
    on_server = server_rows(reference_server, POINTS)
    assert len(on_server) == seed.DEMO_COUNTS[POINTS] + 1


SYNC_AS_ANOTHER_USER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from plugin.core.rest import ArcGISClient
from plugin.core.sync import OfflineMapSyncTask

task = OfflineMapSyncTask(sys.argv[2], client=ArcGISClient(retries=0, poll_interval=0.02))
job = task.create_offline_map_sync_job(task.create_default_offline_map_sync_parameters())
print(job.run().geodatabase_errors.get("Demo.gpkg", ""))
"""


@pytest.fixture
def world_readable_folder():
    """A folder another user can reach (pytest's tmp_path is private to root)."""
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="oms-readonly-"))
    os.chmod(folder, 0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            os.chmod(path, 0o755)
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def as_nobody():
    """Runs a Python script as user 65534 (root ignores file permissions; real users do not).

    That user may not enter the checkout or its virtual environment (a home folder is often
    private, mode 0700), so the script runs with the system interpreter and a copy of the
    plugin's code in a folder anyone can read; the script gets that folder as ``sys.argv[1]``.
    """
    import os
    import shutil
    import tempfile

    code = Path(tempfile.mkdtemp(prefix="oms-code-"))
    shutil.copytree(ROOT / "plugin", code / "plugin", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [code, *code.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    interpreter = os.path.realpath(sys.executable)  # the venv's python links to the system one

    def become_nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    def run(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [interpreter, "-c", script, str(code), *args],
            cwd=code,
            preexec_fn=become_nobody,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    yield run
    shutil.rmtree(code)


@pytest.mark.parametrize("folder_read_only", [True, False], ids=["folder", "files only"])
def test_a_read_only_map_fails_clearly_for_a_user_who_cannot_write_it(
    reference_server, world_readable_folder, as_nobody, folder_read_only
):
    import os

    if not hasattr(os, "setuid"):
        pytest.skip("needs POSIX users")
    offline_map, local, added = with_pending_edits(reference_server, world_readable_folder / "map")
    before = local_state(local.path)
    for path in offline_map.folder.iterdir():
        os.chmod(path, 0o444)
    if folder_read_only:
        os.chmod(offline_map.folder, 0o555)
    data = local.path.read_bytes()

    child = as_nobody(SYNC_AS_ANOTHER_USER, str(offline_map.folder), timeout=120)

    assert child.returncode == 0, child.stderr
    assert "read-only" in child.stdout, child.stdout
    assert "damaged" not in child.stdout
    assert local.path.read_bytes() == data
    os.chmod(offline_map.folder, 0o755)
    assert local_state(local.path) == before
    assert added not in server_rows(reference_server, POINTS)


OPEN_AS_ANOTHER_USER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from plugin.core.errors import GeodatabaseError
from plugin.core.geodatabase import Geodatabase

try:
    Geodatabase.open(sys.argv[2]).close()
    print("opened")
except GeodatabaseError as error:
    print(error)
"""


def test_a_read_only_copy_with_changes_waiting_in_its_wal_says_so(
    reference_server, world_readable_folder, as_nobody
):
    import os
    import shutil

    offline_map = take_offline(reference_server, world_readable_folder / "map")
    path = offline_map.geodatabases[0].path
    copy = world_readable_folder / "copy"
    copy.mkdir()
    writer = sqlite3.connect(path, isolation_level=None)
    register_functions(writer)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE Points SET name = 'in the WAL' WHERE GlobalID = ?", [point_gid(0)])
    for suffix in ("", "-wal"):
        shutil.copyfile(str(path) + suffix, str(copy / path.name) + suffix)
    writer.close()
    assert (copy / (path.name + "-wal")).stat().st_size > 0
    for item in copy.iterdir():
        os.chmod(item, 0o444)
    os.chmod(copy, 0o555)

    child = as_nobody(OPEN_AS_ANOTHER_USER, str(copy / path.name), timeout=60)

    assert "changes waiting in Demo.gpkg-wal" in child.stdout, child.stdout + child.stderr
