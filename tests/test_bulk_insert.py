"""The packed spatial index (``bulk_insert.pack_rtree``) against SQLite's own R*Tree inserts."""

from __future__ import annotations

import random
import sqlite3

import pytest

from plugin.core.bulk_insert import pack_rtree


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
    rng = random.Random(7)
    window = "SELECT id FROM {} WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?"
    for _ in range(50):
        x0, x1 = sorted(rng.uniform(-2e7, 2e7) for _ in range(2))
        y0, y1 = sorted(rng.uniform(-1e5, 1e5) for _ in range(2))
        found = {r[0] for r in conn.execute(window.format("packed"), (x0, x1, y0, y1))}
        assert found == {r[0] for r in conn.execute(window.format("inserted"), (x0, x1, y0, y1))}
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
