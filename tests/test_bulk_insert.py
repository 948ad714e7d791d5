"""The packed spatial index (``bulk_insert.pack_rtree``) against SQLite's own R*Tree inserts."""

from __future__ import annotations

import random
import sqlite3
import struct

import pytest

from plugin.core import bulk_insert
from plugin.core.bulk_insert import MovedRows, envelope_row, pack_rtree


@pytest.fixture
def conn():
    connection = sqlite3.connect(":memory:", isolation_level=None)
    yield connection
    connection.close()


def _boxes(count: int, seed: int, spacing: int = 3) -> list[tuple]:
    """Points and small boxes, with coordinates that 32-bit floats cannot hold exactly."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, count + 1):
        x = rng.choice(
            [rng.uniform(-2e7, 2e7), rng.uniform(-1, 1), float(rng.randint(-9, 9)), 1e-30]
        )
        y = rng.uniform(-1e5, 1e5)
        w = rng.choice([0.0, rng.random() * 100])
        rows.append((i * spacing, x, x + w, y, y + w))
    return rows


@pytest.mark.parametrize("spacing", [3, 1000], ids=["ids close together", "ids far apart"])
@pytest.mark.parametrize("count", [1, 51, 52, 3000])
def test_a_packed_spatial_index_holds_what_sqlite_inserts_and_stays_editable(conn, count, spacing):
    rows = _boxes(count, seed=count, spacing=spacing)
    conn.execute("CREATE TEMP TABLE boxes (id INTEGER PRIMARY KEY, minx, maxx, miny, maxy)")
    conn.executemany("INSERT INTO boxes VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("CREATE VIRTUAL TABLE inserted USING rtree(id, minx, maxx, miny, maxy)")
    conn.execute("CREATE VIRTUAL TABLE packed USING rtree(id, minx, maxx, miny, maxy)")
    conn.execute("INSERT INTO inserted SELECT * FROM boxes")

    assert pack_rtree(conn, "packed", "temp.boxes")

    # The same entries, rounded outwards to 32-bit floats exactly as SQLite rounds them.
    everything = "SELECT * FROM {} ORDER BY id"
    assert (
        conn.execute(everything.format("packed")).fetchall()
        == conn.execute(everything.format("inserted")).fetchall()
    )
    assert conn.execute("SELECT rtreecheck('packed')").fetchone() == ("ok",)
    # Searches find what a scan finds.
    for x0, x1, y0, y1 in _windows(random.Random(7), 50):
        found = _found(conn, "packed", x0, x1, y0, y1)
        assert found == _found(conn, "inserted", x0, x1, y0, y1)
        assert found >= {
            r[0] for r in rows if x0 <= r[1] and r[2] <= x1 and y0 <= r[3] and r[4] <= y1
        }
    # SQLite's module keeps editing it: deletes (nodes underflowing), inserts (nodes splitting).
    conn.execute("DELETE FROM packed WHERE id % 2 = 0")
    conn.executemany("INSERT INTO packed VALUES (?, ?, ?, ?, ?)", [(-r[0], *r[1:]) for r in rows])
    assert conn.execute("SELECT rtreecheck('packed')").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM packed").fetchone()[0] == len(rows) + sum(
        1 for r in rows if r[0] % 2
    )


def test_only_an_empty_two_dimensional_float_index_is_packed(conn):
    conn.execute("CREATE TEMP TABLE boxes (id INTEGER PRIMARY KEY, minx, maxx, miny, maxy)")
    conn.execute("INSERT INTO boxes VALUES (1, 0, 1, 0, 1)")
    conn.execute("CREATE VIRTUAL TABLE cube USING rtree(id, x0, x1, y0, y1, z0, z1)")
    conn.execute("CREATE VIRTUAL TABLE ints USING rtree_i32(id, minx, maxx, miny, maxy)")
    conn.execute("CREATE VIRTUAL TABLE used USING rtree(id, minx, maxx, miny, maxy)")
    conn.execute("INSERT INTO used VALUES (5, 0, 0, 0, 0)")
    for name in ("cube", "ints", "used", "missing"):
        assert not pack_rtree(conn, name, "temp.boxes")
    assert conn.execute("SELECT id FROM used").fetchall() == [(5,)]


def _windows(rng: random.Random, count: int):
    """``count`` random search windows ``(x0, x1, y0, y1)`` over :func:`_boxes`' area."""
    for _ in range(count):
        x0, x1 = sorted(rng.uniform(-2e7, 2e7) for _ in range(2))
        y0, y1 = sorted(rng.uniform(-1e5, 1e5) for _ in range(2))
        yield x0, x1, y0, y1


def _found(conn, rtree: str, x0: float, x1: float, y0: float, y1: float) -> set[int]:
    """The ids a search of ``rtree`` finds in a window."""
    sql = f"SELECT id FROM {rtree} WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?"
    return {r[0] for r in conn.execute(sql, (x0, x1, y0, y1))}


def _leaf_half_perimeters(conn, rtree: str) -> float:
    """The sum of the leaves' half-perimeters: how tight the index is (lower is better)."""
    total = 0.0
    for (blob,) in conn.execute(
        f"SELECT data FROM {rtree}_node WHERE nodeno IN (SELECT DISTINCT nodeno FROM {rtree}_rowid)"
    ):
        count = struct.unpack_from(">H", blob, 2)[0]
        cells = [struct.unpack_from(">q4f", blob, 4 + 24 * i) for i in range(count)]
        total += max(c[2] for c in cells) - min(c[1] for c in cells)
        total += max(c[4] for c in cells) - min(c[3] for c in cells)
    return total


def _feature_table(conn, rows: list[tuple], shapeless: list[int] = ()) -> None:
    """Table ``t`` of ``rows`` (``(fid, minx, maxx, miny, maxy)``; ``shapeless`` fids without
    one) whose triggers keep its index ``rtree_t_geom`` as GDAL's do, packed as a new replica's."""
    conn.execute("CREATE TABLE t (fid INTEGER PRIMARY KEY, minx, maxx, miny, maxy)")
    conn.execute("CREATE VIRTUAL TABLE rtree_t_geom USING rtree(id, minx, maxx, miny, maxy)")
    conn.execute(
        "CREATE TRIGGER t_insert AFTER INSERT ON t WHEN NEW.minx IS NOT NULL BEGIN"
        " INSERT INTO rtree_t_geom VALUES (NEW.fid, NEW.minx, NEW.maxx, NEW.miny, NEW.maxy);"
        " END"
    )
    conn.execute(
        "CREATE TRIGGER t_delete AFTER DELETE ON t BEGIN"
        " DELETE FROM rtree_t_geom WHERE id = OLD.fid; END"
    )
    shaped = [r for r in rows if r[0] not in set(shapeless)]
    conn.executemany("INSERT INTO t VALUES (?, NULL, NULL, NULL, NULL)", [r[:1] for r in rows])
    conn.execute("CREATE TEMP TABLE boxes (id INTEGER PRIMARY KEY, minx, maxx, miny, maxy)")
    conn.executemany("INSERT INTO boxes VALUES (?, ?, ?, ?, ?)", shaped)
    assert pack_rtree(conn, "rtree_t_geom", "temp.boxes")
    conn.execute(
        "UPDATE t SET (minx, maxx, miny, maxy) ="
        " (SELECT minx, maxx, miny, maxy FROM boxes WHERE id = fid)"
    )
    conn.execute("DROP TABLE temp.boxes")


def _download_moves(conn, new: list, then=None) -> None:
    """Rows of ``t`` moved (``[fid, minx, maxx, miny, maxy]``, None: no shape) as a download
    moves them: written and noted in batches with the index left behind, ``then`` (other
    writes), the index brought up to date; one transaction."""
    conn.execute("BEGIN")
    moved = MovedRows(conn, "t", "fid", "geom")
    for start in range(0, len(new), 1000):  # as update_rows writes and notes them
        batch = new[start : start + 1000]
        conn.executemany(
            "UPDATE t SET minx = ?, maxx = ?, miny = ?, maxy = ? WHERE fid = ?",
            [(*r[1:], r[0]) for r in batch],
        )
        moved.note([None if r[1] is None else tuple(r) for r in batch], [[r[0]] for r in batch])
    if then is not None:
        then()
    moved.finish()
    conn.execute("COMMIT")


def _index_holds(conn, rtree: str, boxes) -> None:
    """``rtree`` holds exactly what SQLite's module would for ``boxes`` (``(id, minx, maxx,
    miny, maxy)`` rows; it rounds them outwards to 32-bit floats), and passes its check."""
    conn.execute("CREATE VIRTUAL TABLE temp.expected USING rtree(id, minx, maxx, miny, maxy)")
    conn.executemany("INSERT INTO temp.expected VALUES (?, ?, ?, ?, ?)", boxes)
    everything = "SELECT * FROM {} ORDER BY id"
    assert (
        conn.execute(everything.format(rtree)).fetchall()
        == conn.execute(everything.format("temp.expected")).fetchall()
    )
    conn.execute("DROP TABLE temp.expected")
    assert conn.execute("SELECT rtreecheck(?)", (rtree,)).fetchone() == ("ok",)


def _index_is_the_rows(conn) -> None:
    """``rtree_t_geom`` holds exactly what SQLite's module would for ``t``'s rows."""
    _index_holds(conn, "rtree_t_geom", conn.execute("SELECT * FROM t WHERE minx IS NOT NULL"))


def _packed_half_perimeters(conn) -> float:
    """:func:`_leaf_half_perimeters` of ``t``'s rows packed anew."""
    conn.execute("CREATE VIRTUAL TABLE fresh USING rtree(id, minx, maxx, miny, maxy)")
    rows = "(SELECT fid AS id, minx, maxx, miny, maxy FROM t WHERE minx IS NOT NULL)"
    assert pack_rtree(conn, "fresh", rows)
    tight = _leaf_half_perimeters(conn, "fresh")
    conn.execute("DROP TABLE fresh")
    return tight


@pytest.mark.parametrize("spacing", [3, 1000], ids=["ids close together", "ids far apart"])
@pytest.mark.parametrize("how", ["shifted", "jittered", "relocated", "a few relocated"])
def test_moved_rows_leave_the_spatial_index_right_and_tight(conn, how, spacing, monkeypatch):
    """A download that moves rows (``update_rows`` with GDAL's update triggers suspended)
    leaves the index holding each row's new extent, as tight as a packed index when most rows
    moved, whichever way they moved; rows deleted, added back or left without a shape on the
    way are right too."""
    rows = _boxes(3000, seed=11, spacing=spacing)
    _feature_table(conn, rows, shapeless=[rows[4][0]])  # the fifth row has no shape yet
    placed = conn.execute("SELECT * FROM rtree_t_geom_rowid ORDER BY rowid").fetchall()

    rng = random.Random(5)
    if how == "shifted":
        new = [(r[0], r[1] + 1000, r[2] + 1000, r[3], r[4]) for r in rows]
    elif how == "jittered":
        new = []
        for r in rows:
            dx, dy = rng.uniform(-1, 1), rng.uniform(-1, 1)
            new.append((r[0], r[1] + dx, r[2] + dx, r[3] + dy, r[4] + dy))
    else:
        moving = rows if how == "relocated" else rng.sample(rows, len(rows) // 10)
        places = [r[1:] for r in moving]
        rng.shuffle(places)
        new = [(r[0], *place) for r, place in zip(moving, places)]
    new = [list(r) for r in sorted(new)]
    new[1][1:] = [None] * 4  # loses its shape
    no_shape, deleted, added_back, new_shape = new[1][0], new[2][0], new[3][0], rows[4][0]
    if new_shape not in [r[0] for r in new]:
        new = sorted([*new, [new_shape, 5.0, 6.0, 7.0, 8.0]])

    if how in ("shifted", "jittered") and spacing == 3:
        # Refitted: the index is not written anew (pack_rtree) nor entry by entry.
        def written_anew(*args):
            raise AssertionError("the index was written anew instead of refitted")

        monkeypatch.setattr(bulk_insert, "pack_rtree", written_anew)

    def then():  # rows deleted, one added back, before the index is brought up to date
        conn.execute("DELETE FROM t WHERE fid IN (?, ?)", (deleted, added_back))
        conn.execute("INSERT INTO t VALUES (?, 1, 2, 3, 4)", (added_back,))

    _download_moves(conn, new, then)

    _index_is_the_rows(conn)
    ids = {r[0] for r in conn.execute("SELECT id FROM rtree_t_geom")}
    assert no_shape not in ids and deleted not in ids and added_back in ids and new_shape in ids
    assert not conn.execute("SELECT name FROM sqlite_temp_master").fetchall()
    for x0, x1, y0, y1 in _windows(rng, 30):  # searches find all a scan finds
        assert _found(conn, "rtree_t_geom", x0, x1, y0, y1) >= {
            fid
            for fid, *box in conn.execute("SELECT * FROM t WHERE minx IS NOT NULL")
            if box[1] >= x0 and box[0] <= x1 and box[3] >= y0 and box[2] <= y1
        }
    monkeypatch.undo()
    if how != "a few relocated":  # (a few: SQLite's module places each; it packs nothing)
        assert _leaf_half_perimeters(conn, "rtree_t_geom") <= 1.1 * _packed_half_perimeters(conn)
    if how in ("shifted", "jittered") and spacing == 3:
        # Refitted: the rows are where they were in the tree (three had their entries redone).
        after = dict(conn.execute("SELECT * FROM rtree_t_geom_rowid").fetchall())
        kept = sum(1 for fid, node in placed if after.get(fid) == node)
        assert kept >= len(placed) - 3 and len(after) == len(placed) - 1


@pytest.mark.parametrize("damage", ["a node twice", "a missing node", "a cut node", "too deep"])
def test_moved_rows_refit_nothing_from_an_index_that_is_not_a_tree(conn, damage):
    """A damaged or hostile spatial index (an offline map may come from anyone) is not refitted:
    no endless walk, no Python error; the index is written anew or SQLite reports it."""
    rows = _boxes(3000, seed=3)
    conn.execute("CREATE TABLE t (fid INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [r[:1] for r in rows])
    conn.execute("CREATE VIRTUAL TABLE rtree_t_geom USING rtree(id, minx, maxx, miny, maxy)")
    conn.execute("CREATE TEMP TABLE boxes (id INTEGER PRIMARY KEY, minx, maxx, miny, maxy)")
    conn.executemany("INSERT INTO boxes VALUES (?, ?, ?, ?, ?)", rows)
    assert pack_rtree(conn, "rtree_t_geom", "temp.boxes")
    root = conn.execute("SELECT data FROM rtree_t_geom_node WHERE nodeno = 1").fetchone()[0]
    first_child = struct.unpack_from(">q", root, 4)[0]
    if damage == "a node twice":  # every cell of the root names its first child
        count = struct.unpack_from(">H", root, 2)[0]
        damaged = bytearray(root)
        for i in range(count):
            struct.pack_into(">q", damaged, 4 + 24 * i, first_child)
        conn.execute("UPDATE rtree_t_geom_node SET data = ? WHERE nodeno = 1", (bytes(damaged),))
    elif damage == "a missing node":
        conn.execute("DELETE FROM rtree_t_geom_node WHERE nodeno = ?", (first_child,))
    elif damage == "a cut node":
        conn.execute(
            "UPDATE rtree_t_geom_node SET data = substr(data, 1, 30) WHERE nodeno = ?",
            (first_child,),
        )
    else:
        conn.execute(
            "UPDATE rtree_t_geom_node SET data = x'ffff' || substr(data, 3) WHERE nodeno = 1"
        )
    conn.execute("BEGIN")
    moved = MovedRows(conn, "t", "fid", "geom")
    shifted = [(r[0], r[1] + 1, r[2] + 1, r[3], r[4]) for r in rows]
    for start in range(0, len(shifted), 1000):
        batch = shifted[start : start + 1000]
        moved.note(batch, [[r[0]] for r in batch])
    try:
        moved.finish()
    except sqlite3.DatabaseError:
        conn.execute("ROLLBACK")
        return
    conn.execute("COMMIT")
    assert conn.execute("SELECT rtreecheck('rtree_t_geom')").fetchone() == ("ok",)


def test_features_moving_a_little_at_every_sync_do_not_wear_the_spatial_index_down(conn):
    """Tracked assets drift a little between syncs: each download refits the index (their
    leaves stay), until the leaves overlap too much; it is then packed anew, so the index
    never gets much looser than a packed one however many syncs there are."""
    rng = random.Random(8)
    rows = []
    for fid in range(1, 3001):
        x, y = rng.random() * 10_000, rng.random() * 10_000
        rows.append((fid, x, x, y, y))
    _feature_table(conn, rows)
    refitted = repacked = 0
    for _ in range(12):
        placed = conn.execute("SELECT * FROM rtree_t_geom_rowid").fetchall()
        moved = []
        for fid, x, _x, y, _y in conn.execute("SELECT * FROM t ORDER BY fid").fetchall():
            x, y = x + rng.gauss(0, 60), y + rng.gauss(0, 60)  # leaves are ~2,400 wide
            moved.append([fid, x, x, y, y])
        _download_moves(conn, moved)
        _index_is_the_rows(conn)
        same = placed == conn.execute("SELECT * FROM rtree_t_geom_rowid").fetchall()
        refitted, repacked = refitted + same, repacked + (not same)
        assert _leaf_half_perimeters(conn, "rtree_t_geom") <= 1.3 * _packed_half_perimeters(conn)
    assert refitted and repacked


@pytest.mark.parametrize("damage", ["a missing node", "a cut root", "lost row mappings"])
def test_a_damaged_spatial_index_is_found_and_rebuilt_from_the_geometries(conn, damage):
    from plugin.core.geometry import geometry_encoder

    encode = geometry_encoder("esriGeometryPoint", 3857)
    rng = random.Random(4)
    conn.execute("CREATE TABLE g (fid INTEGER PRIMARY KEY, geom BLOB)")
    conn.executemany(
        "INSERT INTO g VALUES (?, ?)",
        [
            (fid, encode({"x": rng.uniform(-2e7, 2e7), "y": rng.uniform(-1e5, 1e5)}))
            for fid in range(1, 3001)
        ]
        + [(3001, None), (3002, "not a geometry"), (3003, b"GP\x00")],
    )
    conn.execute("CREATE VIRTUAL TABLE rtree_g_geom USING rtree(id, minx, maxx, miny, maxy)")
    conn.execute("BEGIN")
    bulk_insert.rebuild_spatial_index(conn, "g", "fid", "geom")  # (an empty one: filled)
    conn.execute("COMMIT")
    assert bulk_insert.spatial_index_damage(conn, "rtree_g_geom") is None
    if damage == "a missing node":
        conn.execute(
            "DELETE FROM rtree_g_geom_node WHERE nodeno = (SELECT max(nodeno) FROM rtree_g_geom_node)"
        )
    elif damage == "a cut root":
        conn.execute("UPDATE rtree_g_geom_node SET data = substr(data, 1, 30) WHERE nodeno = 1")
    else:
        conn.execute("DELETE FROM rtree_g_geom_rowid WHERE rowid % 7 = 0")
    assert bulk_insert.spatial_index_damage(conn, "rtree_g_geom")

    conn.execute("BEGIN")
    bulk_insert.rebuild_spatial_index(conn, "g", "fid", "geom")
    conn.execute("COMMIT")

    assert bulk_insert.spatial_index_damage(conn, "rtree_g_geom") is None
    # The points' extents (the unreadable values have no entry).
    rows = conn.execute("SELECT * FROM g WHERE fid <= 3000").fetchall()
    _index_holds(conn, "rtree_g_geom", [envelope_row(fid, blob) for fid, blob in rows])
    assert not conn.execute("SELECT name FROM sqlite_temp_master WHERE name LIKE 'oms%'").fetchall()
