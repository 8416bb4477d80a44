"""The contract can fail: each deliberately broken store below is caught by it.

Each mutant breaks one rule of the store port; the test runs the part of `StorageContract` that
should notice and asserts that it does. A contract that passed a mutant would be a test that
cannot fail.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest
from relay_core import Strategy
from relay_core.model import AuditRow, DenialCount, EventType, License, Node
from relay_core.ports import ANY_POOL, Culled, PoolCounts, PoolFilter
from relay_core.testing import MemoryStore, StorageContract
from relay_core.testing.memory import MemoryTransaction


def assert_contract_fails(check: Callable[[], None]) -> None:
    """Run one contract test against a mutant: it must fail (any error counts as caught)."""
    try:
        check()
    except (Exception, pytest.fail.Exception):
        return
    pytest.fail("the contract passed a deliberately broken store")


class LifoActsAsFifo(MemoryTransaction):
    def lease_free_license(
        self, pool_id: int | None, node_id: int, strategy: Strategy, now: int, rng: random.Random
    ) -> License | None:
        return super().lease_free_license(pool_id, node_id, Strategy.FIFO, now, rng)


class CullMissesTheBoundary(MemoryTransaction):
    def cull_batch(self, cutoff: int, now: int, limit: int) -> list[Culled]:
        return super().cull_batch(cutoff - 1, now, limit)


class ReleaseLeavesNodeActive(MemoryTransaction):
    def deactivate_node(self, node_id: int, now: int) -> None:
        pass


class IgnoresPools(MemoryTransaction):
    def _free(self, pool_id: int | None, now: int) -> list[License]:
        return [
            lic
            for lic in self._t.licenses.values()
            if lic.node_id is None and not lic.file_expired(now)
        ]


class HandsOutExpiredFiles(MemoryTransaction):
    def _free(self, pool_id: int | None, now: int) -> list[License]:
        return [
            lic
            for lic in self._t.licenses.values()
            if lic.pool_id == pool_id and lic.node_id is None
        ]


class LeasesHeldLicenses(MemoryTransaction):
    def _free(self, pool_id: int | None, now: int) -> list[License]:
        return [
            lic
            for lic in self._t.licenses.values()
            if lic.pool_id == pool_id and not lic.file_expired(now)
        ]


class DropsNodeAudit(MemoryTransaction):
    def append_audit(self, entries):  # type: ignore[no-untyped-def]
        super().append_audit([e for e in entries if e.entity_type.label != "node"])


def store_of(transaction: type[MemoryTransaction]) -> type[MemoryStore]:
    return type(f"{transaction.__name__}Store", (MemoryStore,), {"transaction_type": transaction})


class NeverRollsBack(MemoryStore):
    @contextlib.contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        with self._lock:
            try:
                yield MemoryTransaction(self._tables)
            finally:
                pass


class SlowPick(MemoryTransaction):
    def lease_free_license(
        self, pool_id: int | None, node_id: int, strategy: Strategy, now: int, rng: random.Random
    ) -> License | None:
        time.sleep(0.002)
        return super().lease_free_license(pool_id, node_id, strategy, now, rng)


class Unserialised(MemoryStore):
    """Copy-on-write without the lock: concurrent transactions overwrite each other."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        work = self._tables.copy()
        yield SlowPick(work)
        self._tables = work


def contract_for(store: type[MemoryStore], examples: int = 1000) -> StorageContract:
    class Contract(StorageContract):
        state_machine_examples = examples
        shrink_failures = False  # finding the failure is the point; shrinking it only costs time

        def make_store(self, path: Path) -> MemoryStore:
            return store()

    return Contract()


@pytest.mark.parametrize(
    "mutant",
    [
        LifoActsAsFifo,
        CullMissesTheBoundary,
        ReleaseLeavesNodeActive,
        IgnoresPools,
        HandsOutExpiredFiles,
        LeasesHeldLicenses,
        DropsNodeAudit,
    ],
)
def test_state_machine_catches_a_broken_transaction(mutant: type[MemoryTransaction]) -> None:
    """The reference-model state machine fails on a store that breaks one port rule."""
    assert_contract_fails(contract_for(store_of(mutant)).test_relay_matches_the_reference_model)


def test_state_machine_catches_a_store_that_never_rolls_back() -> None:
    """A failed claim that leaves its node activation behind is caught."""
    assert_contract_fails(contract_for(NeverRollsBack).test_relay_matches_the_reference_model)


def test_primitive_tests_catch_their_mutants() -> None:
    """The one-rule tests catch the broken ordering, rollback and cull boundary directly."""
    lifo = contract_for(store_of(LifoActsAsFifo))
    assert_contract_fails(
        lambda: lifo.test_lifo_takes_latest_added_ties_by_latest_insertion(
            store_of(LifoActsAsFifo)()
        )
    )
    rollback = contract_for(NeverRollsBack)
    assert_contract_fails(
        lambda: rollback.test_failed_transaction_leaves_nothing_behind(NeverRollsBack())
    )
    boundary = contract_for(store_of(CullMissesTheBoundary))
    assert_contract_fails(
        lambda: boundary.test_cull_batch_takes_stale_nodes_up_to_the_limit(
            store_of(CullMissesTheBoundary)()
        )
    )
    expired = contract_for(store_of(HandsOutExpiredFiles))
    assert_contract_fails(
        lambda: expired.test_pick_stays_in_pool_and_skips_leased_and_expired(
            store_of(HandsOutExpiredFiles)(), Strategy.FIFO
        )
    )


def test_thread_race_test_catches_an_unserialised_store() -> None:
    """Two threads leasing through unserialised transactions get the same license, and the test sees it."""
    race = contract_for(Unserialised)
    assert_contract_fails(
        lambda: race.test_threads_claiming_at_once_never_share_a_license(Unserialised())
    )


class NodeLeaseForgetsTheLicense(MemoryTransaction):
    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        node = self._active_node(fingerprint)
        return None if node is None else (node, None)


def test_node_lease_test_catches_a_store_that_loses_the_holding() -> None:
    """A get_node_lease that never reports the held license fails the contract, in both tests."""
    store = store_of(NodeLeaseForgetsTheLicense)
    contract = contract_for(store)
    assert_contract_fails(
        lambda: contract.test_node_lease_reads_the_active_node_with_its_license(store())
    )
    assert_contract_fails(contract.test_relay_matches_the_reference_model)


class LeasesOfInactiveNodes(MemoryTransaction):
    def list_leases(self, pool_id: PoolFilter) -> list[tuple[Node, License]]:
        return [
            (self._t.nodes[lic.node_id], lic)
            for lic in self.list_licenses(pool_id)
            if lic.node_id is not None
        ]


class LeasesIgnorePoolFilter(MemoryTransaction):
    def list_leases(self, pool_id: PoolFilter) -> list[tuple[Node, License]]:
        return super().list_leases(ANY_POOL)


class CountsExpiredAsFree(MemoryTransaction):
    def count_by_pool(self, now: int) -> list[PoolCounts]:
        return [
            attrs.evolve(
                c,
                free=sum(
                    1
                    for lic in self._t.licenses.values()
                    if lic.pool_id == c.pool_id and lic.node_id is None
                ),
            )
            for c in super().count_by_pool(now)
        ]


class CountsExpiryOneSecondEarly(MemoryTransaction):
    def count_by_pool(self, now: int) -> list[PoolCounts]:
        return super().count_by_pool(now + 1)


class CountsForgetTheGlobalPool(MemoryTransaction):
    def count_by_pool(self, now: int) -> list[PoolCounts]:
        return [c for c in super().count_by_pool(now) if c.pool_id is not None]


@pytest.mark.parametrize(
    ("mutant", "primitive", "in_state_machine"),
    [
        (LeasesOfInactiveNodes, "test_list_leases_returns_licenses_held_by_active_nodes", False),
        (LeasesIgnorePoolFilter, "test_list_leases_returns_licenses_held_by_active_nodes", True),
        (CountsExpiredAsFree, "test_count_by_pool_groups_licenses_by_state", True),
        (CountsExpiryOneSecondEarly, "test_count_by_pool_groups_licenses_by_state", True),
        (CountsForgetTheGlobalPool, "test_count_by_pool_groups_licenses_by_state", True),
    ],
)
def test_operator_view_tests_catch_their_mutants(
    mutant: type[MemoryTransaction], primitive: str, in_state_machine: bool
) -> None:
    """list_leases and count_by_pool: a store that gets one rule wrong fails its primitive test,
    and, where Relay can reach that state, the reference-model state machine."""
    store = store_of(mutant)
    contract = contract_for(store)
    assert_contract_fails(lambda: getattr(contract, primitive)(store()))
    if in_state_machine:
        assert_contract_fails(contract.test_relay_matches_the_reference_model)


class ScansInIdOrder(MemoryTransaction):
    def scan_audit(
        self, events: Sequence[EventType], after: int | None, limit: int
    ) -> list[AuditRow]:
        return [
            (int(e.event), e.entity_id, e.pool_id, e.created_at)
            for _, e in self._t.audit
            if e.event in events and (after is None or e.created_at > after)
        ][:limit]


class SplitsASecond(MemoryTransaction):
    def scan_audit(
        self, events: Sequence[EventType], after: int | None, limit: int
    ) -> list[AuditRow]:
        return super().scan_audit(events, after, 1_000_000)[:limit]


class DenialsOverwrite(MemoryTransaction):
    def add_denials(self, counts: Sequence[DenialCount]) -> None:
        for c in counts:
            self._t.denials[(c.pool_id, c.minute)] = c.count


def test_report_primitives_catch_their_mutants() -> None:
    """A scan in insertion order instead of time order, a page that splits a second, and
    counters that overwrite, are caught."""
    for mutant in (ScansInIdOrder, SplitsASecond):
        scan = store_of(mutant)
        assert_contract_fails(
            lambda scan=scan: contract_for(
                scan
            ).test_audit_scan_pages_through_chosen_events_in_time_order(scan())
        )
    overwrite = store_of(DenialsOverwrite)
    assert_contract_fails(
        lambda: contract_for(overwrite).test_denials_add_up_per_pool_and_minute(overwrite())
    )
