"""`StorageContract`: the test suite every storage adapter must pass.

A backend's test module is three lines::

    from relay_core.testing import StorageContract
    from relay_mybackend import MyStore

    class TestMyStore(StorageContract):
        def make_store(self, path):
            return MyStore(path / "relay.db")

`path` is a fresh, empty directory for each store. The suite checks the port's primitives one by
one, then drives `relay_core.Relay` over the store with a hypothesis state machine against a
simple reference model, checking the pool invariants and the audit log after every step.
Set `supports_threads = False` on a backend that is not meant for concurrent use.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, cast

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ..copying import CopyTransaction
from ..errors import (
    BulkError,
    ClaimConflictError,
    ClaimNotFoundError,
    DecryptionError,
    DuplicateLicenseError,
    LeaseNotFoundError,
    LicenseNotFoundError,
    NoLicensesAvailableError,
    PoolNotFoundError,
    RelayError,
)
from ..model import (
    AuditEntry,
    AuditRecord,
    ClaimStatus,
    DenialCount,
    EntityType,
    EventType,
    License,
    NewLicense,
    Node,
    Pool,
    Strategy,
)
from ..ports import ANY_POOL, AuditQuery, PoolCounts, Store, Transaction
from ..service import Relay
from .clock import FrozenClock
from .keygen_writer import LicenseWriter

__all__ = ["StorageContract"]

T0 = 1_765_324_800  # 2025-12-10T00:00:00Z
TTL = 60
_WRITER: LicenseWriter | None = None


def _writer() -> LicenseWriter:
    global _WRITER  # noqa: PLW0603 - one signing key per process keeps the suite fast
    if _WRITER is None:
        _WRITER = LicenseWriter.ed25519()
    return _WRITER


def _new(n: int, *, expires_at: int | None = None) -> NewLicense:
    return NewLicense(f"guid-{n}", f"file-{n}".encode(), f"key-{n}", expires_at)


class StorageContract:
    """Subclass it and implement `make_store`; every `test_*` method then runs on your store."""

    supports_threads: ClassVar[bool] = True
    state_machine_examples: ClassVar[int] = 200
    shrink_failures: ClassVar[bool] = True

    def make_store(self, path: Path) -> Store:
        """Return a new, empty store kept under `path` (a fresh directory)."""
        raise NotImplementedError("subclasses of StorageContract implement make_store(path)")

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = self.make_store(tmp_path)
        try:
            yield store
        finally:
            store.close()

    # -- pools ------------------------------------------------------------------------------

    def test_pools_are_created_found_and_listed_in_order(self, store: Store) -> None:
        """A created pool is found by its exact name and listed in creation order."""
        with store.transaction() as tx:
            prod = tx.create_pool("prod", T0)
            dev = tx.create_pool("dev", T0 + 1)
        with store.transaction() as tx:
            assert tx.get_pool("prod") == prod
            assert tx.get_pool("PROD") is None
            assert tx.list_pools() == [prod, dev]
            assert prod.name == "prod"
            assert prod.created_at == T0

    # -- licenses ---------------------------------------------------------------------------

    def test_inserted_license_reads_back_unchanged(self, store: Store) -> None:
        """Every field of an inserted license reads back as written, file bytes included."""
        raw = bytes(range(256)) * 20
        with store.transaction() as tx:
            pool = tx.create_pool("prod", T0)
            lic = tx.insert_license(NewLicense("g-1", raw, "k-1", T0 + 99), pool.id, T0)
        with store.transaction() as tx:
            got = tx.get_license("g-1")
        assert got == lic
        assert got is not None
        assert (got.file, got.key, got.pool_id, got.created_at) == (raw, "k-1", pool.id, T0)
        assert (got.claims, got.node_id, got.last_claimed_at, got.last_released_at) == (
            0,
            None,
            None,
            None,
        )
        assert got.file_expires_at == T0 + 99

    @pytest.mark.parametrize("clash", ["guid", "key", "file"])
    def test_duplicate_guid_key_or_file_is_refused(self, store: Store, clash: str) -> None:
        """A second license sharing a guid, key or file raises DuplicateLicenseError."""
        with store.transaction() as tx:
            tx.insert_license(_new(1), None, T0)
        other = attrs.evolve(_new(2), **{clash: getattr(_new(1), clash)})
        with pytest.raises(DuplicateLicenseError), store.transaction() as tx:
            tx.insert_license(other, None, T0)
        with store.transaction() as tx:
            assert [lic.guid for lic in tx.list_licenses(ANY_POOL)] == ["guid-1"]

    def test_failed_transaction_leaves_nothing_behind(self, store: Store) -> None:
        """An exception inside a transaction rolls back every write made in it."""
        with pytest.raises(RuntimeError), store.transaction() as tx:  # noqa: PT012
            pool = tx.create_pool("prod", T0)
            tx.insert_license(_new(1), pool.id, T0)
            tx.activate_node("n", T0)
            tx.append_audit([AuditEntry(EventType.POOL_ADDED, EntityType.POOL, pool.id, None, T0)])
            raise RuntimeError("boom")
        with store.transaction() as tx:
            assert tx.list_pools() == []
            assert tx.list_licenses(ANY_POOL) == []
            assert tx.get_node_lease("n") is None
            assert tx.read_audit(AuditQuery()) == []

    def test_list_filters_by_pool_in_insertion_order(self, store: Store) -> None:
        """Listing by pool id, global (None) or every pool keeps insertion order."""
        with store.transaction() as tx:
            a = tx.create_pool("a", T0)
            ids = [
                tx.insert_license(_new(i), a.id if i % 2 else None, T0 + 10 - i).id
                for i in range(6)
            ]
        with store.transaction() as tx:
            assert [lic.id for lic in tx.list_licenses(ANY_POOL)] == ids
            assert [lic.id for lic in tx.list_licenses(a.id)] == ids[1::2]
            assert [lic.id for lic in tx.list_licenses(None)] == ids[0::2]

    def test_deleted_license_is_gone(self, store: Store) -> None:
        """A deleted license is neither found nor listed."""
        with store.transaction() as tx:
            lic = tx.insert_license(_new(1), None, T0)
            tx.delete_license(lic.id)
        with store.transaction() as tx:
            assert tx.get_license("guid-1") is None
            assert tx.list_licenses(ANY_POOL) == []

    # -- picking a free license -------------------------------------------------------------

    def _fill(
        self, store: Store, created: list[int], pool: str | None = None
    ) -> tuple[int | None, list[int]]:
        with store.transaction() as tx:
            pool_id = tx.create_pool(pool, T0).id if pool else None
            ids = [tx.insert_license(_new(i), pool_id, at).id for i, at in enumerate(created)]
        return pool_id, ids

    def _lease_all(self, store: Store, pool_id: int | None, strategy: Strategy) -> list[int]:
        order = []
        with store.transaction() as tx:
            for n in range(100):
                node = tx.activate_node(f"node-{n}", T0)
                lic = tx.lease_free_license(pool_id, node.id, strategy, T0, random.Random(n))
                if lic is None:
                    break
                order.append(lic.id)
        return order

    def test_fifo_takes_earliest_added_ties_by_insertion(self, store: Store) -> None:
        """fifo leases by ascending created_at, ties in insertion order."""
        _, ids = self._fill(store, [T0 + 5, T0 + 1, T0 + 5, T0 + 1, T0 + 3])
        assert self._lease_all(store, None, Strategy.FIFO) == [
            ids[1],
            ids[3],
            ids[4],
            ids[0],
            ids[2],
        ]

    def test_lifo_takes_latest_added_ties_by_latest_insertion(self, store: Store) -> None:
        """lifo leases by descending created_at, ties latest insertion first."""
        _, ids = self._fill(store, [T0 + 5, T0 + 1, T0 + 5, T0 + 1, T0 + 3])
        assert self._lease_all(store, None, Strategy.LIFO) == [
            ids[2],
            ids[0],
            ids[4],
            ids[3],
            ids[1],
        ]

    def test_rand_reaches_every_free_license_and_only_free_ones(self, store: Store) -> None:
        """rand draws from the rng among free licenses only, and can reach each of them."""
        _, ids = self._fill(store, [T0] * 6)
        with store.transaction() as tx:
            held = tx.lease_free_license(
                None, tx.activate_node("holder", T0).id, Strategy.FIFO, T0, random.Random(0)
            )
        assert held is not None
        seen: Counter[int] = Counter()
        rng = random.Random(1234)
        for n in range(300):
            with pytest.raises(RuntimeError), store.transaction() as tx:  # noqa: PT012
                node = tx.activate_node(f"n{n}", T0)
                lic = tx.lease_free_license(None, node.id, Strategy.RAND, T0, rng)
                assert lic is not None
                seen[lic.id] += 1
                raise RuntimeError("roll back the draw")
        assert set(seen) == set(ids) - {held.id}
        assert min(seen.values()) >= 20, f"rand is far from uniform: {dict(seen)}"

    @pytest.mark.parametrize("strategy", list(Strategy))
    def test_pick_stays_in_pool_and_skips_leased_and_expired(
        self, store: Store, strategy: Strategy
    ) -> None:
        """Only unleased licenses of the asked pool whose file is unexpired are picked."""
        with store.transaction() as tx:
            a = tx.create_pool("a", T0)
            tx.insert_license(_new(1), a.id, T0)
            tx.insert_license(_new(2, expires_at=T0 + 10), None, T0)
            tx.insert_license(_new(3, expires_at=T0 + 100), None, T0 + 1)
            tx.insert_license(_new(4), None, T0 + 2)
            n = tx.activate_node("n", T0)
            assert (
                tx.lease_free_license(None, n.id, Strategy.LIFO, T0, random.Random(0)) is not None
            )
        with store.transaction() as tx:
            assert tx.has_free_license(None, T0 + 11)
            m = tx.activate_node("m", T0 + 11)
            got = tx.lease_free_license(None, m.id, strategy, T0 + 11, random.Random(0))
            assert got is not None
            assert got.guid == "guid-3"
            k = tx.activate_node("k", T0 + 11)
            assert tx.lease_free_license(None, k.id, strategy, T0 + 11, random.Random(0)) is None
            assert not tx.has_free_license(None, T0 + 11)
            assert tx.has_free_license(a.id, T0 + 11)
            assert tx.has_free_license(None, T0 + 10), (
                "a file is valid up to and including its expiry"
            )

    def test_lease_and_release_update_the_license(self, store: Store) -> None:
        """Leasing sets holder, claims and last_claimed_at; releasing clears the holder."""
        self._fill(store, [T0])
        with store.transaction() as tx:
            node = tx.activate_node("n", T0)
            leased = tx.lease_free_license(None, node.id, Strategy.FIFO, T0 + 5, random.Random(0))
            assert leased is not None
            assert (leased.node_id, leased.claims, leased.last_claimed_at) == (node.id, 1, T0 + 5)
            assert tx.get_node_lease("n") == (node, leased)
            tx.release_license(leased.id, T0 + 9)
            assert tx.get_node_lease("n") == (node, None)
        with store.transaction() as tx:
            got = tx.get_license(leased.guid)
            assert got is not None
            assert (got.node_id, got.claims, got.last_released_at) == (None, 1, T0 + 9)

    # -- nodes ------------------------------------------------------------------------------

    def test_node_lease_reads_the_active_node_with_its_license(self, store: Store) -> None:
        """get_node_lease: None for unknown or inactive nodes, else the node and what it holds."""
        self._fill(store, [T0, T0 + 1])
        with store.transaction() as tx:
            assert tx.get_node_lease("nobody") is None
            idle = tx.activate_node("idle", T0)
            holder = tx.activate_node("holder", T0)
            tx.heartbeat_node(holder.id, T0 + 2)
            leased = tx.lease_free_license(None, holder.id, Strategy.LIFO, T0, random.Random(0))
            assert leased is not None
            assert tx.get_node_lease("idle") == (idle, None)
            assert tx.get_node_lease("holder") == (
                attrs.evolve(holder, last_heartbeat_at=T0 + 2),
                leased,
            )
            tx.release_license(leased.id, T0 + 3)
            tx.deactivate_node(holder.id, T0 + 3)
            assert tx.get_node_lease("holder") is None

    def test_node_lifecycle_keeps_its_row(self, store: Store) -> None:
        """A node is activated, heartbeated, deactivated, and reactivated with the same id."""
        with store.transaction() as tx:
            node = tx.activate_node("fp", T0)
            assert node.active
            assert node.created_at == T0
            tx.heartbeat_node(node.id, T0 + 3)
            assert tx.get_node_lease("fp") == (attrs.evolve(node, last_heartbeat_at=T0 + 3), None)
            tx.deactivate_node(node.id, T0 + 4)
            assert tx.get_node_lease("fp") is None
            gone = tx.get_node(node.id)
            assert gone is not None
            assert gone.deactivated_at == T0 + 4
        with store.transaction() as tx:
            again = tx.activate_node("fp", T0 + 9)
            assert (again.id, again.created_at, again.deactivated_at) == (node.id, T0, None)
            assert again.last_heartbeat_at == T0 + 3

    def test_cull_batch_takes_stale_nodes_up_to_the_limit(self, store: Store) -> None:
        """cull_batch deactivates at most `limit` nodes at or before the cutoff and frees their licenses."""
        self._fill(store, [T0] * 3, pool="p")
        with store.transaction() as tx:
            pool = tx.get_pool("p")
            assert pool is not None
            nodes = []
            for i, beat in enumerate([T0, T0 + 10, T0 + 20, T0 + 30]):
                node = tx.activate_node(f"n{i}", T0)
                tx.heartbeat_node(node.id, beat)
                if i < 3:
                    tx.lease_free_license(pool.id, node.id, Strategy.FIFO, T0, random.Random(0))
                nodes.append(node)
        with store.transaction() as tx:
            first = tx.cull_batch(T0 + 20, T0 + 50, 2)
            second = tx.cull_batch(T0 + 20, T0 + 50, 2)
            third = tx.cull_batch(T0 + 20, T0 + 50, 2)
        culled = first + second
        assert (len(first), len(second), third) == (2, 1, [])
        assert {c.node_id for c in culled} == {nodes[0].id, nodes[1].id, nodes[2].id}
        assert all(c.pool_id == pool.id and c.license_id is not None for c in culled)
        with store.transaction() as tx:
            assert tx.get_node_lease("n3") is not None
            assert all(lic.node_id is None for lic in tx.list_licenses(ANY_POOL))
            assert all(lic.last_released_at == T0 + 50 for lic in tx.list_licenses(ANY_POOL))
            n0 = tx.get_node(nodes[0].id)
            assert n0 is not None
            assert n0.deactivated_at == T0 + 50

    # -- audit ------------------------------------------------------------------------------

    def test_audit_reads_newest_first_with_filters_and_labels(self, store: Store) -> None:
        """Audit rows come back newest first, filtered, with entities and pools named."""
        with store.transaction() as tx:
            pool = tx.create_pool("prod", T0)
            lic = tx.insert_license(_new(1), pool.id, T0)
            node = tx.activate_node("fp-1", T0)
            tx.append_audit(
                [
                    AuditEntry(EventType.POOL_ADDED, EntityType.POOL, pool.id, None, T0),
                    AuditEntry(
                        EventType.LICENSE_ADDED, EntityType.LICENSE, lic.id, pool.id, T0 + 1
                    ),
                    AuditEntry(EventType.NODE_ACTIVATED, EntityType.NODE, node.id, pool.id, T0 + 2),
                    AuditEntry(EventType.LICENSE_REMOVED, EntityType.LICENSE, 999, None, T0 + 3),
                ]
            )
        with store.transaction() as tx:
            rows = tx.read_audit(AuditQuery())
            assert [r.event for r in rows] == [
                EventType.LICENSE_REMOVED,
                EventType.NODE_ACTIVATED,
                EventType.LICENSE_ADDED,
                EventType.POOL_ADDED,
            ]
            assert [r.entity_label for r in rows] == [None, "fp-1", "guid-1", "prod"]
            assert [r.pool_name for r in rows] == [None, "prod", "prod", None]
            assert rows[0].id > rows[1].id > rows[2].id > rows[3].id
            assert len(tx.read_audit(AuditQuery(limit=2))) == 2
            in_pool = tx.read_audit(AuditQuery(pool_id=pool.id))
            assert [r.event for r in in_pool] == [EventType.NODE_ACTIVATED, EventType.LICENSE_ADDED]
            assert [r.pool_id for r in tx.read_audit(AuditQuery(pool_id=None))] == [None, None]
            picked = tx.read_audit(AuditQuery(events=(EventType.POOL_ADDED,)))
            assert [r.entity_type for r in picked] == [EntityType.POOL]
            assert [r.created_at for r in tx.read_audit(AuditQuery(since=T0 + 2))] == [
                T0 + 3,
                T0 + 2,
            ]

    # -- the operator's view ----------------------------------------------------------------

    def test_list_leases_returns_licenses_held_by_active_nodes(self, store: Store) -> None:
        """list_leases: (node, license) for each license held by an active node, in license
        order, filtered by pool id, None (global) or ANY_POOL; a deactivated holder is left out."""
        with store.transaction() as tx:
            p = tx.create_pool("p", T0)
            free = tx.insert_license(_new(1), None, T0)
            g = tx.insert_license(_new(2), None, T0 + 1)
            gone = tx.insert_license(_new(3), None, T0 + 2)
            pa = tx.insert_license(_new(4), p.id, T0)
            held = {}
            for fingerprint, pool_id in (("n-g", None), ("n-gone", None), ("n-p", p.id)):
                node = tx.activate_node(fingerprint, T0)
                tx.heartbeat_node(node.id, T0 + 7)
                lic = tx.lease_free_license(pool_id, node.id, Strategy.LIFO, T0, random.Random(0))
                assert lic is not None
                held[fingerprint] = (attrs.evolve(node, last_heartbeat_at=T0 + 7), lic)
            assert [held[f][1].id for f in ("n-g", "n-gone", "n-p")] == [gone.id, g.id, pa.id]
            tx.deactivate_node(held["n-gone"][0].id, T0 + 8)
        with store.transaction() as tx:
            assert tx.list_leases(ANY_POOL) == [held["n-g"], held["n-p"]]
            assert tx.list_leases(None) == [held["n-g"]]
            assert tx.list_leases(p.id) == [held["n-p"]]
            assert tx.list_leases(p.id + 1000) == []
            assert free.id not in {lic.id for _, lic in tx.list_leases(ANY_POOL)}

    def test_count_by_pool_groups_licenses_by_state(self, store: Store) -> None:
        """count_by_pool: per pool with licenses (global first), the totals, leased, free
        (unleased, file valid at `now`), expired (file past its expiry) and holders still active."""
        with store.transaction() as tx:
            p = tx.create_pool("p", T0)
            tx.create_pool("empty", T0)
            tx.insert_license(_new(1, expires_at=T0 + 100), None, T0)  # free
            tx.insert_license(_new(2, expires_at=T0 + 10), None, T0)  # expired, free before
            tx.insert_license(_new(3, expires_at=T0 + 50), None, T0)  # valid exactly at now
            tx.insert_license(_new(4, expires_at=T0 + 10), p.id, T0 + 1)  # leased, then expired
            tx.insert_license(_new(5), p.id, T0 + 2)  # leased by a node later deactivated
            tx.insert_license(_new(6), p.id, T0 + 3)  # free
            tx.insert_license(_new(7), None, T0 + 4)  # leased
            first = tx.activate_node("first", T0)
            second = tx.activate_node("second", T0)
            third = tx.activate_node("third", T0)
            for node in (first, second):
                assert tx.lease_free_license(p.id, node.id, Strategy.FIFO, T0, random.Random(0))
            assert tx.lease_free_license(None, third.id, Strategy.LIFO, T0, random.Random(0))
            tx.deactivate_node(second.id, T0 + 1)
        with store.transaction() as tx:
            assert tx.count_by_pool(T0 + 50) == [
                PoolCounts(None, licenses=4, leased=1, free=2, expired=1, nodes_active=1),
                PoolCounts(p.id, licenses=3, leased=2, free=1, expired=1, nodes_active=1),
            ]
            assert tx.count_by_pool(T0) == [
                PoolCounts(None, licenses=4, leased=1, free=3, expired=0, nodes_active=1),
                PoolCounts(p.id, licenses=3, leased=2, free=1, expired=0, nodes_active=1),
            ]

    def test_audit_scan_pages_through_chosen_events_in_time_order(self, store: Store) -> None:
        """scan_audit reads the chosen events oldest first by (created_at, id), in pages of
        whole seconds."""
        L, N = EntityType.LICENSE, EntityType.NODE
        with store.transaction() as tx:
            pool = tx.create_pool("prod", T0)
            # Written out of time order: a combined batch may commit a later `now` first.
            tx.append_audit(
                [
                    AuditEntry(EventType.LICENSE_LEASED, L, 1, pool.id, T0 + 5),
                    AuditEntry(EventType.NODE_HEARTBEAT_PING, N, 7, pool.id, T0 + 1),
                    AuditEntry(EventType.LICENSE_ADDED, L, 1, pool.id, T0 + 1),
                    AuditEntry(EventType.LICENSE_ADDED, L, 2, None, T0 + 1),
                    AuditEntry(EventType.NODE_CULLED, N, 7, None, T0 + 9),
                ]
            )
        wanted = (EventType.LICENSE_ADDED, EventType.LICENSE_LEASED, EventType.NODE_CULLED)
        with store.transaction() as tx:
            rows = tx.scan_audit(wanted, None, 100)
            assert rows == [
                (EventType.LICENSE_ADDED, 1, pool.id, T0 + 1),
                (EventType.LICENSE_ADDED, 2, None, T0 + 1),  # same second: written order
                (EventType.LICENSE_LEASED, 1, pool.id, T0 + 5),
                (EventType.NODE_CULLED, 7, None, T0 + 9),
            ]
            assert all(type(v) is int for row in rows for v in row if v is not None)
            assert tx.scan_audit(wanted, None, 1) == rows[:2]  # the second is not split
            assert tx.scan_audit(wanted, None, 3) == rows[:3]
            assert tx.scan_audit(wanted, T0 + 1, 1) == rows[2:3]
            assert tx.scan_audit(wanted, T0 + 4, 2) == rows[2:]
            assert tx.scan_audit(wanted, T0 + 9, 2) == []
            assert tx.scan_audit((EventType.NODE_HEARTBEAT_PING,), None, 10) == [
                (EventType.NODE_HEARTBEAT_PING, 7, pool.id, T0 + 1)
            ]
            assert tx.scan_audit((), None, 10) == []

    def test_license_holders_name_pool_and_holder_of_every_license(self, store: Store) -> None:
        """license_holders gives (id, pool, holder) for every license, in id order."""
        with store.transaction() as tx:
            pool = tx.create_pool("prod", T0)
            a = tx.insert_license(_new(1), None, T0)
            b = tx.insert_license(_new(2), pool.id, T0)
            c = tx.insert_license(_new(3), pool.id, T0)
            node = tx.activate_node("fp", T0)
            leased = tx.lease_free_license(pool.id, node.id, Strategy.FIFO, T0, random.Random(1))
            assert leased is not None
            assert leased.id == b.id
        with store.transaction() as tx:
            assert tx.license_holders() == [
                (a.id, None, None),
                (b.id, pool.id, node.id),
                (c.id, pool.id, None),
            ]

    def test_denials_add_up_per_pool_and_minute(self, store: Store) -> None:
        """Denial counts add up per (pool, minute), the global pool apart, read by minute range."""
        with store.transaction() as tx:
            pool = tx.create_pool("prod", T0)
            tx.add_denials([DenialCount(None, T0, 2), DenialCount(pool.id, T0, 1)])
        with store.transaction() as tx:
            tx.add_denials(
                [
                    DenialCount(None, T0, 3),
                    DenialCount(pool.id, T0 + 60, 4),
                    DenialCount(None, T0 + 120, 1),
                ]
            )
        with store.transaction() as tx:
            assert tx.read_denials(None, None) == [
                DenialCount(None, T0, 5),
                DenialCount(pool.id, T0, 1),
                DenialCount(pool.id, T0 + 60, 4),
                DenialCount(None, T0 + 120, 1),
            ]
            assert tx.read_denials(T0 + 60, T0 + 120) == [DenialCount(pool.id, T0 + 60, 4)]
            assert tx.read_denials(T0 + 61, None) == [DenialCount(None, T0 + 120, 1)]
        with pytest.raises(RuntimeError), store.transaction() as tx:  # noqa: PT012
            tx.add_denials([DenialCount(None, T0, 100)])
            raise RuntimeError("roll back")
        with store.transaction() as tx:
            assert tx.read_denials(T0, T0 + 1) == [
                DenialCount(None, T0, 5),
                DenialCount(pool.id, T0, 1),
            ]

    def test_denials_repeated_in_one_batch_add_up(self, store: Store) -> None:
        """One batch may name a (pool, minute) twice: both counts are added, none is lost."""
        with store.transaction() as tx:
            pool = tx.create_pool("prod", T0)
            tx.add_denials([DenialCount(pool.id, T0, 2), DenialCount(pool.id, T0, 3)])
            tx.add_denials([DenialCount(None, T0, 1), DenialCount(None, T0, 1)])
        with store.transaction() as tx:
            assert tx.read_denials(None, None) == [
                DenialCount(None, T0, 2),
                DenialCount(pool.id, T0, 5),
            ]

    # -- copying (relay_core.copying.CopyTransaction) ----------------------------------------

    def _populated(
        self, store: Store
    ) -> tuple[list[Pool], list[Node], list[License], list[AuditRecord]]:
        """Pools, licenses (one leased, one released, one in a pool), nodes and audit rows."""
        with store.transaction() as tx:
            pool = tx.create_pool("prod", T0)
            a = tx.insert_license(_new(1, expires_at=T0 + 500), None, T0)
            tx.insert_license(_new(2), pool.id, T0 + 1)
            gone = tx.insert_license(_new(3), None, T0 + 2)
            tx.delete_license(gone.id)
            holder = tx.activate_node("holder", T0 + 3)
            tx.heartbeat_node(holder.id, T0 + 4)
            assert tx.lease_free_license(None, holder.id, Strategy.FIFO, T0 + 4, random.Random(0))
            left = tx.activate_node("left", T0 + 5)
            tx.deactivate_node(left.id, T0 + 6)
            tx.append_audit(
                [
                    AuditEntry(EventType.POOL_ADDED, EntityType.POOL, pool.id, None, T0),
                    AuditEntry(EventType.LICENSE_ADDED, EntityType.LICENSE, a.id, None, T0),
                    AuditEntry(
                        EventType.LICENSE_REMOVED, EntityType.LICENSE, gone.id, None, T0 + 2
                    ),
                    AuditEntry(
                        EventType.NODE_ACTIVATED, EntityType.NODE, holder.id, pool.id, T0 + 3
                    ),
                ]
            )
        with store.transaction() as tx:
            copy = cast(CopyTransaction, tx)
            return (
                tx.list_pools(),
                copy.list_nodes(),
                tx.list_licenses(ANY_POOL),
                copy.audit_page(0, 100),
            )

    def test_copy_rows_read_back_with_their_ids_and_timestamps(
        self, store: Store, tmp_path: Path
    ) -> None:
        """Rows listed from one store and imported into an empty one read back identical, and
        later inserts get ids above the imported ones."""
        pools, nodes, licenses, audit = self._populated(store)
        assert [n.fingerprint for n in nodes] == ["holder", "left"]
        assert [r.entity_label for r in audit] == ["prod", "guid-1", None, "holder"]
        assert [r.id for r in audit] == sorted(r.id for r in audit)
        other_dir = tmp_path / "other"
        other_dir.mkdir()
        other = self.make_store(other_dir)
        try:
            with other.transaction() as tx:
                copy = cast(CopyTransaction, tx)
                assert copy.is_empty()
                copy.import_rows(pools=pools, nodes=nodes, licenses=licenses)
                copy.import_rows(audit=audit[:2])
                copy.import_rows(audit=audit[2:])
                assert not copy.is_empty()
            with other.transaction() as tx:
                copy = cast(CopyTransaction, tx)
                assert tx.list_pools() == pools
                assert copy.list_nodes() == nodes
                assert tx.list_licenses(ANY_POOL) == licenses
                assert copy.audit_page(0, 100) == audit
                assert copy.audit_page(audit[1].id, 1) == [audit[2]]
                held = tx.get_node_lease("holder")
                assert held is not None
                assert held[1] is not None
                assert held[1].guid == "guid-1"
                newer = tx.insert_license(_new(9), None, T0 + 9)
                assert newer.id > max(lic.id for lic in licenses)
                assert tx.create_pool("dev", T0).id > pools[0].id
                assert tx.activate_node("new", T0).id > nodes[-1].id
                tx.append_audit([AuditEntry(EventType.POOL_ADDED, EntityType.POOL, 1, None, T0)])
                assert tx.read_audit(AuditQuery(limit=1))[0].id > audit[-1].id
        finally:
            other.close()

    def test_is_empty_sees_any_row(self, store: Store) -> None:
        """A store is empty until any pool, license, node, audit row or denial count is written."""
        writes: list[Callable[[Transaction], object]] = [
            lambda tx: tx.create_pool("p", T0),
            lambda tx: tx.insert_license(_new(1), None, T0),
            lambda tx: tx.activate_node("n", T0),
            lambda tx: tx.append_audit(
                [AuditEntry(EventType.POOL_ADDED, EntityType.POOL, 1, None, T0)]
            ),
            lambda tx: tx.add_denials([DenialCount(None, T0, 1)]),
        ]
        for write in writes:
            with pytest.raises(RuntimeError), store.transaction() as tx:  # noqa: PT012
                copy = cast(CopyTransaction, tx)
                assert copy.is_empty()
                write(tx)
                assert not copy.is_empty()
                raise RuntimeError("roll back")

    # -- concurrency ------------------------------------------------------------------------

    def test_threads_claiming_at_once_never_share_a_license(self, store: Store) -> None:
        """Eight threads claiming together lease each license to at most one node."""
        if not self.supports_threads:
            pytest.skip("this backend declares supports_threads = False")
        writer = _writer()
        clock = FrozenClock(T0)
        relay = Relay(store, clock=clock)
        files = [_license(writer, issued=T0 - 60, expiry=None) for _ in range(10)]
        relay.add_licenses(files, public_key=writer.public_key)
        barrier = threading.Barrier(8)
        won: list[str] = []
        failures: list[BaseException] = []

        def worker(w: int) -> None:
            barrier.wait()
            for i in range(5):
                try:
                    won.append(relay.claim(f"t{w}-{i}").license.guid)
                except NoLicensesAvailableError:
                    pass
                except BaseException as exc:  # pragma: no cover - reported below
                    failures.append(exc)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert failures == []
        assert len(won) == 10
        assert len(set(won)) == 10
        holders = [lic.node_id for lic in relay.list_licenses()]
        assert None not in holders
        assert len(set(holders)) == 10

    # -- the whole service, against a model -------------------------------------------------

    def test_relay_matches_the_reference_model(self) -> None:
        """Random sequences of add/claim/release/remove/cull/clock steps keep every invariant."""
        contract = self

        class Machine(RelayStateMachine):
            def new_store(self) -> Store:
                directory = Path(tempfile.mkdtemp(prefix="relay-contract-"))
                return contract.make_store(directory)

        run_state_machine_as_test(
            Machine,
            settings=settings(
                max_examples=self.state_machine_examples,
                phases=list(Phase) if self.shrink_failures else [Phase.explicit, Phase.generate],
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )


_SERIAL = itertools.count(1)


def _license(writer: LicenseWriter, *, issued: int, expiry: int | None) -> tuple[bytes, str]:
    """A license whose GUID sorts in creation order, so examples replay deterministically."""
    serial = next(_SERIAL)
    key = f"KEY-{serial:012d}"
    return writer.license(key=key, guid=f"{serial:012d}", issued=issued, expiry=expiry), key


FINGERPRINTS = ("n1", "n2", "n3", "n4", "n5")
POOLS = (None, "a", "b")


@attrs.define
class _ModelLicense:
    guid: str
    pool: str | None
    seq: int
    created_at: int
    expires_at: int | None
    holder: str | None = None


class RelayStateMachine(RuleBasedStateMachine):
    """Drives `Relay` over a store and a dictionary model side by side."""

    def new_store(self) -> Store:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.store = self.new_store()
        self.clock = FrozenClock(T0)
        self.writer = _writer()
        self.licenses: dict[str, _ModelLicense] = {}
        self.pools: set[str] = set()
        self.active: dict[str, int] = {}  # fingerprint -> last heartbeat
        self.seq = 0
        self.audit_seen = 0
        self.relay = Relay(self.store, clock=self.clock)

    def teardown(self) -> None:
        self.store.close()

    @initialize(
        strategy=st.sampled_from(list(Strategy)),
        heartbeats=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    def configure(self, strategy: Strategy, heartbeats: bool, seed: int) -> None:
        self.relay = Relay(
            self.store,
            clock=self.clock,
            strategy=strategy,
            ttl=TTL,
            heartbeats=heartbeats,
            rng=random.Random(seed),
        )

    # helpers
    @property
    def now(self) -> int:
        return int(self.clock.now())

    def holding(self, fingerprint: str) -> _ModelLicense | None:
        return next((m for m in self.licenses.values() if m.holder == fingerprint), None)

    def free(self, pool: str | None) -> list[_ModelLicense]:
        return [
            m
            for m in self.licenses.values()
            if m.pool == pool
            and m.holder is None
            and (m.expires_at is None or self.now <= m.expires_at)
        ]

    def expect_audit(self, *events: tuple[EventType, str | None, str | None]) -> None:
        rows = [r for r in self.relay.audit_log(limit=10_000) if r.id > self.audit_seen]
        got = Counter((r.event, r.entity_label, r.pool_name) for r in rows)
        assert got == Counter(events), (
            f"audit rows {sorted(got.items())} != {sorted(Counter(events).items())}"
        )
        assert all(r.created_at == self.now for r in rows)
        if rows:
            self.audit_seen = max(r.id for r in rows)

    # rules
    @rule(
        pool=st.sampled_from(POOLS),
        lifetime=st.sampled_from([None, 30, 300, 3000]),
        count=st.integers(1, 3),
    )
    def add(self, pool: str | None, lifetime: int | None, count: int) -> None:
        files = [
            _license(
                self.writer,
                issued=self.now - 60,
                expiry=None if lifetime is None else self.now + lifetime,
            )
            for _ in range(count)
        ]
        added = self.relay.add_licenses(files, public_key=self.writer.public_key, pool=pool)
        expected: list[tuple[EventType, str | None, str | None]] = []
        if pool is not None and pool not in self.pools:
            self.pools.add(pool)
            expected.append((EventType.POOL_ADDED, pool, None))
        for lic in added:
            self.seq += 1
            self.licenses[lic.guid] = _ModelLicense(
                lic.guid,
                pool,
                self.seq,
                self.now,
                None if lifetime is None else self.now + lifetime,
            )
            expected.append((EventType.LICENSE_ADDED, lic.guid, pool))
        assert len(added) == count
        self.expect_audit(*expected)

    @precondition(lambda self: bool(self.licenses))
    @rule(data=st.data())
    def add_duplicate_changes_nothing(self, data: st.DataObject) -> None:
        guid = data.draw(st.sampled_from(sorted(self.licenses)))
        lic = self.relay.get_license(guid)
        fresh = _license(self.writer, issued=self.now - 60, expiry=None)
        with pytest.raises(BulkError) as caught:
            self.relay.add_licenses([fresh, (lic.file, lic.key)], public_key=self.writer.public_key)
        model = self.licenses[guid]
        expired = model.expires_at is not None and self.now > model.expires_at
        assert [type(e) for _, e in caught.value.errors] == [
            DecryptionError if expired else DuplicateLicenseError
        ]
        self.expect_audit()

    @rule(fingerprint=st.sampled_from(FINGERPRINTS), pool=st.sampled_from(POOLS))
    def claim(self, fingerprint: str, pool: str | None) -> None:
        held = self.holding(fingerprint)
        expected_error: type[RelayError] | None = None
        if pool is not None and pool not in self.pools:
            expected_error = PoolNotFoundError
        elif held is not None and held.pool != pool:
            expected_error = ClaimConflictError if self.free(pool) else NoLicensesAvailableError
        elif held is not None and not self.relay.heartbeats:
            expected_error = ClaimConflictError
        elif held is None and not self.free(pool):
            expected_error = NoLicensesAvailableError
        if expected_error is not None:
            with pytest.raises(expected_error):
                self.relay.claim(fingerprint, pool)
            self.expect_audit()
            return
        lease = self.relay.claim(fingerprint, pool)
        assert lease.expires_at == self.now + TTL
        assert lease.node.fingerprint == fingerprint
        if held is not None:
            assert lease.status is ClaimStatus.EXTENDED
            assert lease.license.guid == held.guid
            self.active[fingerprint] = self.now
            self.expect_audit(
                (EventType.LICENSE_LEASE_EXTENDED, held.guid, pool),
                (EventType.NODE_HEARTBEAT_PING, fingerprint, pool),
            )
            return
        free = self.free(pool)
        assert lease.status is ClaimStatus.CREATED
        strategy = self.relay.strategy
        if strategy is Strategy.FIFO:
            assert lease.license.guid == min(free, key=lambda m: (m.created_at, m.seq)).guid
        elif strategy is Strategy.LIFO:
            assert lease.license.guid == max(free, key=lambda m: (m.created_at, m.seq)).guid
        else:
            assert lease.license.guid in {m.guid for m in free}
        self.licenses[lease.license.guid].holder = fingerprint
        self.active[fingerprint] = self.now
        self.expect_audit(
            (EventType.NODE_ACTIVATED, fingerprint, pool),
            (EventType.LICENSE_LEASED, lease.license.guid, pool),
            (EventType.NODE_HEARTBEAT_PING, fingerprint, pool),
        )

    @rule(fingerprint=st.sampled_from(FINGERPRINTS), pool=st.sampled_from(POOLS))
    def release(self, fingerprint: str, pool: str | None) -> None:
        held = self.holding(fingerprint)
        if fingerprint not in self.active:
            expected: type[RelayError] | None = ClaimNotFoundError
        elif pool is not None and pool not in self.pools:
            expected = PoolNotFoundError
        elif held is None or held.pool != pool:
            expected = ClaimNotFoundError
        else:
            expected = None
        if expected is not None:
            with pytest.raises(expected):
                self.relay.release(fingerprint, pool)
            self.expect_audit()
            return
        assert held is not None
        freed = self.relay.release(fingerprint, pool)
        assert freed.guid == held.guid
        held.holder = None
        del self.active[fingerprint]
        self.expect_audit(
            (EventType.LICENSE_RELEASED, held.guid, pool),
            (EventType.NODE_DEACTIVATED, fingerprint, pool),
        )

    @rule(fingerprint=st.sampled_from(FINGERPRINTS), pool=st.sampled_from(POOLS))
    def force_release(self, fingerprint: str, pool: str | None) -> None:
        held = self.holding(fingerprint)
        if pool is not None and pool not in self.pools:
            expected: type[RelayError] | None = PoolNotFoundError
        elif held is None or (pool is not None and held.pool != pool):
            expected = LeaseNotFoundError
        else:
            expected = None
        if expected is not None:
            with pytest.raises(expected):
                self.relay.force_release(fingerprint, pool)
            self.expect_audit()
            return
        assert held is not None
        freed = self.relay.force_release(fingerprint, pool)
        assert (freed.guid, freed.node_id) == (held.guid, None)
        held.holder = None
        del self.active[fingerprint]
        self.expect_audit(
            (EventType.LICENSE_RELEASED, held.guid, held.pool),
            (EventType.NODE_DEACTIVATED, fingerprint, held.pool),
        )

    @precondition(lambda self: bool(self.licenses))
    @rule(data=st.data(), wrong_pool=st.booleans())
    def remove(self, data: st.DataObject, wrong_pool: bool) -> None:
        guids = data.draw(
            st.lists(st.sampled_from(sorted(self.licenses)), min_size=1, max_size=2, unique=True)
        )
        models = [self.licenses[g] for g in guids]
        if wrong_pool:
            target = "a" if models[0].pool != "a" else "b"
            if target not in self.pools:
                with pytest.raises(PoolNotFoundError):
                    self.relay.remove_licenses(guids, pool=target)
            else:
                with pytest.raises(BulkError) as caught:
                    self.relay.remove_licenses(guids, pool=target)
                assert all(isinstance(e, LicenseNotFoundError) for _, e in caught.value.errors)
            self.expect_audit()
            return
        self.relay.remove_licenses(guids)
        expected: list[tuple[EventType, str | None, str | None]] = []
        for m in models:
            if m.holder is not None:
                expected += [
                    (EventType.LICENSE_RELEASED, None, m.pool),
                    (EventType.NODE_DEACTIVATED, m.holder, m.pool),
                ]
                del self.active[m.holder]
            expected.append((EventType.LICENSE_REMOVED, None, m.pool))
            del self.licenses[m.guid]
        self.expect_audit(*expected)

    @rule(seconds=st.sampled_from([1, 10, 29, 30, 59, 60, 61, 200, 2000]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.active))
    @rule()
    def advance_to_the_oldest_lease_expiry(self) -> None:
        """Land exactly on the TTL boundary, where off-by-one culls hide."""
        self.clock.advance(max(0, min(self.active.values()) + TTL - self.now))

    @rule()
    def cull(self) -> None:
        cutoff = self.now - TTL
        dead = [fp for fp, beat in self.active.items() if beat <= cutoff]
        expected: list[tuple[EventType, str | None, str | None]] = []
        for fp in dead:
            held = self.holding(fp)
            pool = held.pool if held else None
            if held is not None:
                expected.append((EventType.LICENSE_LEASE_EXPIRED, held.guid, pool))
                held.holder = None
            expected.append((EventType.NODE_CULLED, fp, pool))
            del self.active[fp]
        report = self.relay.cull()
        assert report.culled == len(dead)
        self.expect_audit(*expected)

    # invariants
    @invariant()
    def operator_view_matches_model(self) -> None:
        order = {lic.guid: n for n, lic in enumerate(self.relay.list_licenses())}
        held = sorted((m for m in self.licenses.values() if m.holder), key=lambda m: order[m.guid])
        ttl = TTL if self.relay.heartbeats else None
        assert [
            (a.fingerprint, a.license, a.pool, a.last_heartbeat_at, a.expires_at)
            for a in self.relay.list_leases()
        ] == [
            (
                m.holder,
                m.guid,
                m.pool,
                self.active[m.holder or ""],
                None if ttl is None else self.active[m.holder or ""] + ttl,
            )
            for m in held
        ]
        for name in self.pools:
            assert [a.license for a in self.relay.list_leases(name)] == [
                m.guid for m in held if m.pool == name
            ]
        stats = {s.pool: s for s in self.relay.pool_stats()}
        assert list(stats)[:1] == [None]
        assert set(stats) == {None} | self.pools
        for pool, s in stats.items():
            models = [m for m in self.licenses.values() if m.pool == pool]
            expired = [m for m in models if m.expires_at is not None and self.now > m.expires_at]
            leased = [m for m in models if m.holder is not None]
            assert (s.licenses, s.leased, s.free, s.expired, s.nodes_active) == (
                len(models),
                len(leased),
                len(self.free(pool)),
                len(expired),
                len(leased),
            ), f"pool {pool}"

    @invariant()
    def store_matches_model(self) -> None:
        licenses = self.relay.list_licenses()
        holders = [lic.node_id for lic in licenses if lic.node_id is not None]
        assert len(holders) == len(set(holders)), "a node holds two leases"
        assert sorted(lic.guid for lic in licenses) == sorted(self.licenses)
        for lic in licenses:
            model = self.licenses[lic.guid]
            if lic.node_id is None:
                assert model.holder is None, f"{lic.guid} should be held by {model.holder}"
                continue
            node = self.relay.get_node(lic.node_id)
            assert node is not None
            assert node.active, "a lease is held by an inactive node"
            assert node.fingerprint == model.holder
            assert node.last_heartbeat_at == self.active[node.fingerprint]
        pools = {p.name for p in self.relay.list_pools()}
        assert pools == self.pools
