"""Several stores (replicas) on one database: claims, culls and fingerprints never collide."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import psycopg
import pytest
from relay_core import ClaimConflictError, NoLicensesAvailableError, Relay, Strategy
from relay_core.model import ClaimStatus, EventType
from relay_core.testing import FrozenClock, LicenseWriter
from relay_postgres import PostgresStore
from relay_postgres.testing import PostgresServer

T0 = 1_765_324_800


@pytest.fixture
def stores(schema_url: str) -> Iterator[list[PostgresStore]]:
    opened = [PostgresStore(schema_url) for _ in range(3)]
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


def _licenses(writer: LicenseWriter, count: int) -> list[tuple[bytes, str]]:
    return [
        (writer.license(key=f"K-{n}-{id(writer)}", issued=T0 - 60), f"K-{n}-{id(writer)}")
        for n in range(count)
    ]


def _storm(workers: int, job: Callable[[int], None]) -> list[BaseException]:
    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []

    def run(w: int) -> None:
        barrier.wait()
        try:
            job(w)
        except BaseException as exc:  # pragma: no cover - reported by the caller
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return failures


@pytest.mark.parametrize("strategy", list(Strategy))
def test_replicas_claiming_at_once_lease_each_license_once(
    postgres_server: PostgresServer,
    schema_url: str,
    stores: list[PostgresStore],
    writer: LicenseWriter,
    strategy: Strategy,
) -> None:
    clock = FrozenClock(T0)
    relays = [Relay(s, clock=clock, strategy=strategy) for s in stores]
    relays[0].add_licenses(_licenses(writer, 10), public_key=writer.public_key)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def job(w: int) -> None:
        for i in range(8):
            try:
                relays[w % 3].claim(f"fp-{w}-{i}")
                result = "201"
            except NoLicensesAvailableError:
                result = "410"
            with lock:
                outcomes[result] += 1

    assert _storm(12, job) == []
    assert outcomes == {"201": 10, "410": 86}
    held = postgres_server.execute(
        schema_url,
        "SELECT count(*), count(DISTINCT l.node_id) FROM licenses l "
        "JOIN nodes n ON n.id = l.node_id WHERE n.deactivated_at IS NULL",
    )
    assert held == [(10, 10)]


def test_one_fingerprint_on_every_replica_at_once_gets_one_lease(
    postgres_server: PostgresServer,
    schema_url: str,
    stores: list[PostgresStore],
    writer: LicenseWriter,
) -> None:
    clock = FrozenClock(T0)
    relays = [Relay(s, clock=clock) for s in stores]
    relays[0].add_licenses(_licenses(writer, 20), public_key=writer.public_key)
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def job(w: int) -> None:
        for fp in range(8):
            try:
                lease = relays[w % 3].claim(f"same-{fp}")
                result = "201" if lease.status is ClaimStatus.CREATED else "202"
            except ClaimConflictError:
                result = "409"
            with lock:
                statuses[result] += 1

    assert _storm(9, job) == []
    assert statuses["201"] == 8
    assert sum(statuses.values()) == 72
    leased = postgres_server.execute(
        schema_url, "SELECT count(*) FROM licenses WHERE node_id IS NOT NULL"
    )
    assert leased == [(8,)]


def test_replicas_culling_at_once_cull_each_node_once(
    postgres_server: PostgresServer,
    schema_url: str,
    stores: list[PostgresStore],
    writer: LicenseWriter,
) -> None:
    clock = FrozenClock(T0)
    relays = [Relay(s, clock=clock, ttl=60) for s in stores]
    relays[0].add_licenses(_licenses(writer, 300), public_key=writer.public_key)
    for n in range(300):
        relays[n % 3].claim(f"dying-{n}")
    clock.advance(61)
    reports = []

    def job(w: int) -> None:
        reports.append(relays[w % 3].cull())

    assert _storm(6, job) == []
    assert sum(r.culled for r in reports) == 300
    assert sum(r.released for r in reports) == 300
    culled = postgres_server.execute(
        schema_url,
        "SELECT entity_id, count(*) FROM audit_logs WHERE event_type_id = %s GROUP BY entity_id",
        (int(EventType.NODE_CULLED),),
    )
    assert len(culled) == 300
    assert {count for _, count in culled} == {1}


def test_deleting_licenses_retries_a_deadlock_with_another_writer(
    schema_url: str, stores: list[PostgresStore], writer: LicenseWriter
) -> None:
    """`relay del` of several leased licenses locks their holders' nodes in the order of the
    GUIDs given, while other writers (the heartbeat flusher, a cull) lock nodes in id order.
    When the two deadlock and PostgreSQL ends the deletion, it runs again instead of failing
    the operator's command."""
    clock = FrozenClock(T0)
    relay = Relay(stores[0], clock=clock)
    added = relay.add_licenses(_licenses(writer, 2), public_key=writer.public_key)
    first, second = (relay.claim(f"fp-{n}") for n in range(2))
    assert {first.license.id, second.license.id} == {lic.id for lic in added}
    low, high = sorted((first, second), key=lambda lease: lease.node.id)
    other = psycopg.connect(schema_url)
    watcher = psycopg.connect(schema_url, autocommit=True)
    outcome: list[object] = []

    def delete() -> None:
        try:  # the higher node first, so it holds that one while it waits for the lower
            outcome.extend(relay.remove_licenses([high.license.guid, low.license.guid]))
        except BaseException as exc:
            outcome.append(exc)

    try:
        other.execute("SET deadlock_timeout = '30s'")  # the deletion detects it, after 1 s
        other.execute("SELECT 1 FROM nodes WHERE id = %s FOR UPDATE", (low.node.id,))
        deletion = threading.Thread(target=delete)
        deletion.start()
        for _ in range(500):  # until the deletion waits for the lower node
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone()
            if waiting is not None and waiting[0]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the deletion never waited for the lower node")
        other.execute("SELECT 1 FROM nodes WHERE id = %s FOR UPDATE", (high.node.id,))
        other.commit()
        deletion.join(60)
    finally:
        other.close()
        watcher.close()
    assert [getattr(lic, "guid", lic) for lic in outcome] == [high.license.guid, low.license.guid]
    assert relay.list_licenses() == []
