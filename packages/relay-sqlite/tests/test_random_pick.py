"""rand is exactly uniform over the valid free licenses of a pool, dense or sparse."""

from __future__ import annotations

import random
from collections import Counter

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


def test_rand_is_uniform_when_free_licenses_are_sparse(store: SqliteStore) -> None:
    """With 3 free licenses spread over 300 leased ones, each is drawn about a third of the time."""
    with store.transaction() as tx:
        ids = [
            tx.insert_license(NewLicense(f"g{n}", f"f{n}".encode(), f"k{n}", None), None, T0).id
            for n in range(303)
        ]
        for n in range(303):
            node = tx.activate_node(f"holder-{n}", T0)
            tx.lease_free_license(None, node.id, Strategy.FIFO, T0, random.Random(0))
        for n in (0, 150, 302):
            tx.release_license(ids[n], T0)
        assert {lic.guid for lic in tx.list_licenses(None) if lic.node_id is None} == {
            "g0",
            "g150",
            "g302",
        }
    seen = draw_counts(store, None, 900, T0)
    assert set(seen) == {"g0", "g150", "g302"}
    assert all(250 <= c <= 350 for c in seen.values()), seen


def test_rand_finds_nothing_in_an_empty_or_fully_expired_pool(store: SqliteStore) -> None:
    """No free license, or only expired ones, gives None rather than a wrong pick."""
    with store.transaction() as tx:
        node = tx.activate_node("n", T0)
        assert tx.lease_free_license(None, node.id, Strategy.RAND, T0, random.Random(0)) is None
        tx.insert_license(NewLicense("g", b"f", "k", T0 - 1), None, T0)
        assert tx.lease_free_license(None, node.id, Strategy.RAND, T0, random.Random(0)) is None
