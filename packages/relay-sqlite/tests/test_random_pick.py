"""rand is exactly uniform over valid free licenses; its slot table always mirrors `licenses`."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from relay_core.model import NewLicense, Strategy
from relay_sqlite import SqliteStore

T0 = 1_765_324_800


def draw_counts(store: SqliteStore, pool_id: int | None, draws: int, now: int) -> Counter[str]:
    """Draw `draws` times, rolling each lease back, and count the guids drawn."""
    rng = random.Random(7)
    seen: Counter[str] = Counter()
    for n in range(draws):
        with pytest.raises(LookupError), store.transaction() as tx:  # noqa: PT012
            node = tx.activate_node(f"n{n}", now)
            lic = tx.lease_free_license(pool_id, node.id, Strategy.RAND, now, rng)
            assert lic is not None
            seen[lic.guid] += 1
            raise LookupError("roll back")
    return seen


def test_rand_is_close_to_uniform(store: SqliteStore) -> None:
    """Four free licenses are each drawn about a quarter of 2,000 times (seeded)."""
    with store.transaction() as tx:
        for n in range(4):
            tx.insert_license(NewLicense(f"g{n}", f"f{n}".encode(), f"k{n}", None), None, T0)
    seen = draw_counts(store, None, 2000, T0)
    assert set(seen) == {"g0", "g1", "g2", "g3"}
    assert all(420 <= c <= 580 for c in seen.values()), seen


def test_rand_skips_expired_files_and_stays_uniform(store: SqliteStore) -> None:
    """With 18 of 20 free files expired, only the two valid ones are drawn, about equally."""
    with store.transaction() as tx:
        pool = tx.create_pool("p", T0)
        for n in range(20):
            expires = None if n in (4, 15) else T0 - 1
            tx.insert_license(NewLicense(f"g{n}", f"f{n}".encode(), f"k{n}", expires), pool.id, T0)
    seen = draw_counts(store, pool.id, 600, T0)
    assert set(seen) == {"g4", "g15"}
    assert all(240 <= c <= 360 for c in seen.values()), seen


def slot_table(conn: sqlite3.Connection) -> dict[int, list[tuple[int, int]]]:
    tables: dict[int, list[tuple[int, int]]] = {}
    for key, slot, lic in conn.execute(
        "SELECT pool_key, slot, license_id FROM relay_free_licenses ORDER BY pool_key, slot"
    ):
        tables.setdefault(key, []).append((slot, lic))
    return tables


def free_by_pool(conn: sqlite3.Connection) -> dict[int, set[int]]:
    free: dict[int, set[int]] = {}
    for key, lic in conn.execute(
        "SELECT coalesce(pool_id, 0), id FROM licenses WHERE node_id IS NULL"
    ):
        free.setdefault(key, set()).add(lic)
    return free


@pytest.mark.parametrize("seed", range(4))
def test_slots_stay_dense_and_match_the_free_licenses(db_path: Path, seed: int) -> None:
    """After random inserts, leases, releases, deletes and culls, slots are 0..n-1 per pool."""
    rng = random.Random(seed)
    store = SqliteStore(db_path)
    conn = sqlite3.connect(db_path)
    try:
        with store.transaction() as tx:
            pools = [None, tx.create_pool("a", T0).id, tx.create_pool("b", T0).id]
        serial = 0
        for step in range(150):
            with store.transaction() as tx:
                action = rng.choice(
                    ["insert", "insert", "lease", "lease", "release", "delete", "cull"]
                )
                licenses = tx.list_licenses(pools[1]) + tx.list_licenses(pools[2])
                licenses += tx.list_licenses(None)
                if action == "insert":
                    serial += 1
                    new = NewLicense(f"g{serial}", f"f{serial}".encode(), f"k{serial}", None)
                    tx.insert_license(new, rng.choice(pools), T0)
                elif action == "lease":
                    node = tx.activate_node(f"n{step}", T0)
                    tx.heartbeat_node(node.id, T0 + rng.randrange(100))
                    strategy = rng.choice(list(Strategy))
                    tx.lease_free_license(rng.choice(pools), node.id, strategy, T0, rng)
                elif action == "release" and (held := [x for x in licenses if x.node_id]):
                    tx.release_license(rng.choice(held).id, T0)
                elif action == "delete" and licenses:
                    tx.delete_license(rng.choice(licenses).id)
                elif action == "cull":
                    tx.cull_batch(T0 + rng.randrange(100), T0 + 100, rng.randrange(1, 4))
            slots = slot_table(conn)
            assert all([s for s, _ in rows] == list(range(len(rows))) for rows in slots.values())
            assert {k: {lic for _, lic in rows} for k, rows in slots.items()} == free_by_pool(conn)
    finally:
        conn.close()
        store.close()
