"""The use cases of Relay, in one service built from its ports."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar, cast

import attrs

from .errors import (
    BulkError,
    ClaimConflictError,
    ClaimNotFoundError,
    DuplicateLicenseError,
    LeaseNotFoundError,
    LicenseFileNotFoundError,
    LicenseFileReadError,
    LicenseKeyMismatchError,
    LicenseNotFoundError,
    NoLicensesAvailableError,
    PoolNotFoundError,
    RelayError,
)
from .events import ClaimResult, NoEvents, RelayEvents, ReleaseResult
from .model import (
    AuditEntry,
    AuditRecord,
    AuditRow,
    ClaimStatus,
    DenialCount,
    EntityType,
    EventType,
    Lease,
    License,
    LicenseFile,
    NewLicense,
    Node,
    Pool,
    Strategy,
)
from .ports import (
    ANY_POOL,
    AnyPool,
    AuditQuery,
    Clock,
    CombiningStore,
    Culled,
    LicenseVerifier,
    PoolCounts,
    PoolFilter,
    Store,
    Transaction,
    VerifierFactory,
)
from .reports import (
    LIFECYCLE_EVENTS,
    DenialTally,
    OpeningState,
    PoolUsage,
    UsageReplay,
    period_bounds,
)
from .views import ActiveLease, LicenseRow, PoolStats
from .waiting import Ticket, WaitQueue

__all__ = ["CullReport", "LicenseSource", "Relay", "SystemClock", "read_license_source"]

T = TypeVar("T")

LicenseSource = str | os.PathLike[str] | bytes
"""A license file given as a path, or as its bytes."""

_CLAIM_RESULT = {
    ClaimStatus.CREATED: ClaimResult.CREATED,
    ClaimStatus.EXTENDED: ClaimResult.EXTENDED,
}

CULL_BATCH = 1000
"""Nodes culled per transaction, so the write lock is never held long (see performance notes)."""

REPORT_PAGE = 20_000
"""Audit rows a report reads per transaction: a year of history never holds the lock long."""


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


def _keygen_factory(public_key: str) -> LicenseVerifier:
    # Imported here so `import relay_core` stays free of the crypto stack.
    from .keygen import KeygenVerifier

    return KeygenVerifier(public_key)


def read_license_source(source: LicenseSource) -> tuple[str, bytes]:
    """Return a label for messages and the file's bytes; path errors become `RelayError`s."""
    if isinstance(source, bytes):
        return "<bytes>", source
    path = os.fspath(source)
    if path.lstrip().startswith("-----BEGIN"):
        # A file read as text and passed on: naming it "path" would print the whole file.
        raise LicenseFileReadError(
            "<text>", "a str is read as a path; pass the license file's contents as bytes"
        )
    try:
        return path, Path(path).read_bytes()
    except FileNotFoundError:
        raise LicenseFileNotFoundError(path) from None
    except OSError as exc:
        raise LicenseFileReadError(path, f"read {path}: {exc.strerror or exc}") from None


def check_license_key(file: LicenseFile, key: str, *, label: str) -> None:
    """The key given with a file must be the one inside it (`data.attributes.key`): an
    unencrypted file would otherwise be stored with, and handed out with, a wrong key."""
    if file.key != key.strip():
        raise LicenseKeyMismatchError(None if label == "<bytes>" else label)


@attrs.frozen
class CullReport:
    """What one cull pass did."""

    released: int
    culled: int


def _ttl_seconds(ttl: int | float | timedelta) -> int:
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if not 0 <= seconds < math.inf:  # also NaN: a negative TTL would expire every lease at once
        raise ValueError(f"ttl must be a finite number of seconds, 0 or more (got {ttl!r})")
    return int(seconds)


@attrs.define
class Relay:
    """Floating-license leasing over a store: add, remove, list, claim, release, cull.

    Every use case runs in one store transaction, and writes its audit rows in that same
    transaction (unless `audit` is off), so a crash never separates a change from its record.
    """

    store: Store
    clock: Clock = attrs.field(factory=SystemClock, kw_only=True)
    strategy: Strategy = attrs.field(default=Strategy.FIFO, converter=Strategy, kw_only=True)
    ttl: int = attrs.field(default=60, converter=_ttl_seconds, kw_only=True)
    heartbeats: bool = attrs.field(default=True, kw_only=True)
    audit: bool = attrs.field(default=True, kw_only=True)
    rng: random.Random = attrs.field(factory=random.Random, kw_only=True)
    verifier: VerifierFactory = attrs.field(default=_keygen_factory, kw_only=True)
    events: RelayEvents = attrs.field(factory=NoEvents, kw_only=True)
    denials: DenialTally = attrs.field(factory=DenialTally, kw_only=True)
    queue: WaitQueue | None = attrs.field(default=None, kw_only=True)
    """The wait queue whose head ticket is owed the next free seat (None: nobody waits)."""
    _combines: bool = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        self._combines = callable(getattr(self.store, "run", None))

    def _now(self) -> int:
        return int(self.clock.now())

    def _run(self, work: Callable[[Transaction], T]) -> T:
        """`work` in one transaction: handed to the store if it combines concurrent work."""
        if self._combines:
            return cast(CombiningStore, self.store).run(work)
        with self.store.transaction() as tx:
            return work(tx)

    def _audit(self, tx: Transaction, entries: Sequence[AuditEntry]) -> None:
        if self.audit and entries:
            tx.append_audit(entries)

    # -- licenses ---------------------------------------------------------------------------

    def verify_license(self, source: LicenseSource, key: str, *, public_key: str) -> LicenseFile:
        """Read, verify and decrypt one license file without storing it."""
        label, raw = read_license_source(source)
        file = self.verifier(public_key).verify(raw, key.strip(), now=self.clock.now())
        check_license_key(file, key, label=label)
        return file

    def add_licenses(
        self,
        items: Iterable[tuple[LicenseSource, str]],
        *,
        public_key: str,
        pool: str | None = None,
    ) -> list[License]:
        """Verify, decrypt and store license files, all or nothing.

        Every (file, key) pair is checked; if any fails, `BulkError` lists each failure and
        nothing is stored. A named pool is created on first use.
        """
        verifier = self.verifier(public_key)
        now_f = self.clock.now()
        loaded: list[tuple[int, str, LicenseFile]] = []
        errors: list[tuple[int, str, RelayError]] = []
        seen: set[str] = set()
        for index, (source, key) in enumerate(items):
            label = "<bytes>" if isinstance(source, bytes) else os.fspath(source)
            try:
                label, raw = read_license_source(source)
                file = verifier.verify(raw, key.strip(), now=now_f)
                check_license_key(file, key, label=label)
            except RelayError as exc:
                errors.append((index, label, exc))
                continue
            if file.guid in seen:
                errors.append((index, label, DuplicateLicenseError(file.guid)))
                continue
            seen.add(file.guid)
            loaded.append((index, label, file))

        now = int(now_f)
        pool_name = pool or None
        # Inserting even when some files failed finds the duplicates among the rest too, so one
        # call reports every failing item; the rollback then leaves the store untouched.
        with self.store.transaction() as tx:
            pool_id = self._find_or_create_pool(tx, pool_name, now) if pool_name else None
            added: list[License] = []
            for index, label, file in loaded:
                new = NewLicense(file.guid, file.raw, file.key, file.expires_at)
                try:
                    added.append(tx.insert_license(new, pool_id, now))
                except DuplicateLicenseError as exc:
                    errors.append((index, label, exc))
            if errors:
                raise BulkError(
                    [(label, error) for _, label, error in sorted(errors, key=lambda e: e[0])]
                )
            self._audit(
                tx,
                [
                    AuditEntry(EventType.LICENSE_ADDED, EntityType.LICENSE, lic.id, pool_id, now)
                    for lic in added
                ],
            )
        self.seats_freed(pool_name)
        return added

    def add_license(
        self, source: LicenseSource, key: str, *, public_key: str, pool: str | None = None
    ) -> License:
        """Add one license file; raises its own error rather than a `BulkError`."""
        try:
            return self.add_licenses([(source, key)], public_key=public_key, pool=pool)[0]
        except BulkError as exc:
            raise exc.errors[0][1] from None

    def _find_or_create_pool(self, tx: Transaction, name: str, now: int) -> int:
        found = tx.get_pool(name)
        if found is not None:
            return found.id
        created = tx.create_pool(name, now)
        self._audit(tx, [AuditEntry(EventType.POOL_ADDED, EntityType.POOL, created.id, None, now)])
        return created.id

    def remove_licenses(self, guids: Sequence[str], *, pool: str | None = None) -> list[License]:
        """Delete licenses by GUID, all or nothing; a leased license is released first.

        With `pool`, only licenses in that pool match. Returns the removed licenses. Runs as
        combinable work, so a store that retries deadlocks retries it: it locks the holders'
        nodes in the order of `guids`, which other writers do not share.
        """
        now = self._now()

        def work(tx: Transaction) -> list[License]:
            pool_filter: PoolFilter = ANY_POOL
            if pool:
                pool_filter = self._pool_id(tx, pool)
            errors: list[tuple[str, RelayError]] = []
            found: list[License] = []
            seen: set[int] = set()
            for guid in guids:
                lic = tx.get_license(guid)
                if lic is None or (pool_filter is not ANY_POOL and lic.pool_id != pool_filter):
                    errors.append((guid, LicenseNotFoundError(guid)))
                elif lic.id not in seen:
                    seen.add(lic.id)
                    found.append(lic)
            if errors:
                raise BulkError(errors)
            entries: list[AuditEntry] = []
            for lic in found:
                if lic.node_id is not None:
                    tx.release_license(lic.id, now)
                    tx.deactivate_node(lic.node_id, now)
                    entries += self._release_events(lic.id, lic.node_id, lic.pool_id, now)
                tx.delete_license(lic.id)
                entries.append(
                    AuditEntry(
                        EventType.LICENSE_REMOVED, EntityType.LICENSE, lic.id, lic.pool_id, now
                    )
                )
            self._audit(tx, entries)
            return found

        return self._run(work)

    def list_licenses(self, pool: str | None = None) -> list[License]:
        """Licenses in insertion order: all pools when `pool` is None, else that pool's."""
        with self.store.transaction() as tx:
            pool_filter: PoolFilter = ANY_POOL if not pool else self._pool_id(tx, pool)
            return tx.list_licenses(pool_filter)

    def get_license(self, guid: str) -> License:
        """The license with this GUID, in any pool."""
        with self.store.transaction() as tx:
            lic = tx.get_license(guid)
        if lic is None:
            raise LicenseNotFoundError(guid)
        return lic

    def list_pools(self) -> list[Pool]:
        """Every pool, in creation order."""
        with self.store.transaction() as tx:
            return tx.list_pools()

    def get_node(self, node_id: int) -> Node | None:
        """The node with this row id, active or not."""
        with self.store.transaction() as tx:
            return tx.get_node(node_id)

    def audit_log(
        self,
        *,
        limit: int = 100,
        pool: str | None = None,
        events: Sequence[EventType] = (),
        since: int | None = None,
    ) -> list[AuditRecord]:
        """Audit rows, newest first, optionally for one pool, some events, or since a time."""
        with self.store.transaction() as tx:
            pool_filter: PoolFilter = ANY_POOL if not pool else self._pool_id(tx, pool)
            query = AuditQuery(limit=limit, pool_id=pool_filter, events=tuple(events), since=since)
            return tx.read_audit(query)

    # -- reports ----------------------------------------------------------------------------

    def usage_report(
        self, *, since: int, until: int, every: int | None = None, pool: str | None = None
    ) -> list[PoolUsage]:
        """Per pool and period: seats used, peaks, grants, expiries, nodes and denials.

        Replays the audit log's lifecycle rows in pages, one short transaction each, so a
        running server is never held up. When the log began before `since`, the rows before it
        are skipped: a first pass over the rows after it finds the leases open at `since`
        (`OpeningState`), so a dashboard's last day costs a day of rows, not the log's life.
        With `pool`, only that pool; otherwise every named pool, and the global pool when it
        has licenses or history. The report ends now at the latest (the current second
        included): leases open now are not counted into periods that have not happened.
        """
        until = min(until, self._now() + 1)
        replay = UsageReplay(period_bounds(since, until, every))
        with self.store.transaction() as tx:
            first = tx.scan_audit(LIFECYCLE_EVENTS, None, 1)
        start: int | None = None
        if first and first[0][3] < since:
            start = since - 1
            opening = OpeningState()
            holders = self._scan(start, opening.feed)
            replay.seed(*opening.finish(holders), at=since)
        holders = self._scan(start, replay.feed)
        with self.store.transaction() as tx:
            pools = tx.list_pools()
            denials = tx.read_denials(since - since % 60, until)
            wanted = self._pool_id(tx, pool)
        counts: dict[int | None, int] = {}
        for _, pool_id, _ in holders:
            counts[pool_id] = counts.get(pool_id, 0) + 1
        names: dict[int | None, str | None] = {}
        if pool:
            names[wanted] = pool
        else:
            if None in counts or None in replay.seen() or any(d.pool_id is None for d in denials):
                names[None] = None
            names.update({p.id: p.name for p in pools})
        return replay.finish(counts, denials, names)

    def _scan(
        self, start: int | None, feed: Callable[[list[AuditRow]], None]
    ) -> list[tuple[int, int | None, int | None]]:
        """Feed every lifecycle row stamped after `start`, a page per transaction; return the
        license holders as of the last page (so they match the rows fed)."""
        after = start
        while True:
            with self.store.transaction() as tx:
                rows = tx.scan_audit(LIFECYCLE_EVENTS, after, REPORT_PAGE)
                holders = tx.license_holders() if len(rows) < REPORT_PAGE else []
            feed(rows)
            if len(rows) < REPORT_PAGE:
                return holders
            after = rows[-1][3]

    def flush_denials(self) -> int:
        """Write the 410s counted since the last flush to the store; returns how many.

        On failure the counts are kept for the next flush. Counts for a pool that no longer
        exists are dropped.
        """
        counts = self.denials.drain()
        if not counts:
            return 0

        def write(tx: Transaction) -> None:
            ids: dict[str, int | None] = {}
            rows: list[DenialCount] = []
            for (name, minute), count in counts.items():
                if name is None:
                    rows.append(DenialCount(None, minute, count))
                    continue
                if name not in ids:
                    found = tx.get_pool(name)
                    ids[name] = found.id if found else None
                pool_id = ids[name]
                if pool_id is not None:
                    rows.append(DenialCount(pool_id, minute, count))
            if rows:
                tx.add_denials(rows)

        try:
            self._run(write)
        except BaseException:
            self.denials.restore(counts)
            raise
        return sum(counts.values())

    # -- leases -----------------------------------------------------------------------------

    @staticmethod
    def _pool_id(tx: Transaction, name: str | None) -> int | None:
        if not name:
            return None
        found = tx.get_pool(name)
        if found is None:
            raise PoolNotFoundError(name)
        return found.id

    def claim(
        self,
        fingerprint: str,
        pool: str | None = None,
        *,
        admit: Callable[[], None] | None = None,
        ticket: Ticket | None = None,
        waits: bool = False,
    ) -> Lease:
        """Lease a free license to the node, or extend the lease it already holds in this pool.

        Raises `PoolNotFoundError`, `ClaimConflictError` (heartbeats off and already leased, or a
        lease held in another pool while this one has a free license), or
        `NoLicensesAvailableError` (also when the free seat is owed to a waiting node of
        `queue`: only the claim holding the pool's head `ticket` may take it). `admit`, when
        given, is called inside the transaction once a node without a lease has been given a new
        one (never for an extension, nor when no license is free); whatever it raises rolls the
        claim back, so an adapter can gate new seats (e.g. a rate limit).

        A refusal for want of a seat counts once as a denial and an `exhausted` event, unless
        the caller will wait for a seat (`waits`, or a retry holding a `ticket`): it then calls
        `refused` once if its wait ends without one, so a claim that waited counts as one answer.
        """
        now = self._now()
        try:
            lease = self._run(
                lambda tx: self._claim(tx, fingerprint, pool, now, admit=admit, ticket=ticket)
            )
        except ClaimConflictError:
            self.events.on_claim(pool, ClaimResult.CONFLICT)
            raise
        except NoLicensesAvailableError:
            if not waits and ticket is None:
                self.refused(pool)
            raise
        self.events.on_claim(pool, _CLAIM_RESULT[lease.status])
        return lease

    def refused(self, pool: str | None) -> None:
        """Count one claim answered "no licenses available" (see `claim`)."""
        self.denials.record(pool, self._now())
        self.events.on_claim(pool, ClaimResult.EXHAUSTED)

    def seats_freed(self, pool: str | AnyPool | None = ANY_POOL) -> None:
        """Tell the wait queue that seats of `pool` may be free; every use case that frees or
        adds seats (release, cull, add, force release) calls this after its commit."""
        if self.queue is not None:
            self.queue.freed(pool)

    def _claim(
        self,
        tx: Transaction,
        fingerprint: str,
        pool: str | None,
        now: int,
        *,
        admit: Callable[[], None] | None = None,
        ticket: Ticket | None = None,
    ) -> Lease:
        pool_id = self._pool_id(tx, pool)
        found = tx.get_node_lease(fingerprint)
        entries: list[AuditEntry] = []
        if found is not None:
            node, held = found
            if held is not None:
                if held.pool_id != pool_id:
                    if tx.has_free_license(pool_id, now):
                        raise ClaimConflictError()
                    raise NoLicensesAvailableError()
                if not self.heartbeats:
                    raise ClaimConflictError()
                tx.heartbeat_node(node.id, now)
                self._audit(
                    tx,
                    [
                        AuditEntry(
                            EventType.LICENSE_LEASE_EXTENDED,
                            EntityType.LICENSE,
                            held.id,
                            pool_id,
                            now,
                        ),
                        AuditEntry(
                            EventType.NODE_HEARTBEAT_PING,
                            EntityType.NODE,
                            node.id,
                            pool_id,
                            now,
                        ),
                    ],
                )
                node = attrs.evolve(node, last_heartbeat_at=now)
                return Lease(ClaimStatus.EXTENDED, held, node, now + self.ttl, self.ttl)
        else:
            node = tx.activate_node(fingerprint, now)
            entries.append(
                AuditEntry(EventType.NODE_ACTIVATED, EntityType.NODE, node.id, pool_id, now)
            )
        queue = self.queue
        if queue is not None and not queue.may_lease(pool or None, ticket, self.clock.now()):
            raise NoLicensesAvailableError()
        lic = tx.lease_free_license(pool_id, node.id, self.strategy, now, self.rng)
        if lic is None:
            raise NoLicensesAvailableError()
        if admit is not None:
            admit()
        tx.heartbeat_node(node.id, now)
        entries += [
            AuditEntry(EventType.LICENSE_LEASED, EntityType.LICENSE, lic.id, pool_id, now),
            AuditEntry(EventType.NODE_HEARTBEAT_PING, EntityType.NODE, node.id, pool_id, now),
        ]
        self._audit(tx, entries)
        node = attrs.evolve(node, last_heartbeat_at=now)
        return Lease(ClaimStatus.CREATED, lic, node, now + self.ttl, self.ttl)

    def _cull_batch(self, tx: Transaction, cutoff: int, now: int) -> list[Culled]:
        batch = tx.cull_batch(cutoff, now, CULL_BATCH)
        entries = [
            AuditEntry(
                EventType.LICENSE_LEASE_EXPIRED, EntityType.LICENSE, c.license_id, c.pool_id, now
            )
            for c in batch
            if c.license_id is not None
        ]
        entries += [
            AuditEntry(EventType.NODE_CULLED, EntityType.NODE, c.node_id, c.pool_id, now)
            for c in batch
        ]
        self._audit(tx, entries)
        return batch

    @staticmethod
    def _release_events(
        license_id: int, node_id: int, pool_id: int | None, now: int
    ) -> list[AuditEntry]:
        return [
            AuditEntry(EventType.LICENSE_RELEASED, EntityType.LICENSE, license_id, pool_id, now),
            AuditEntry(EventType.NODE_DEACTIVATED, EntityType.NODE, node_id, pool_id, now),
        ]

    def release(self, fingerprint: str, pool: str | None = None) -> License:
        """End the node's lease in this pool and deactivate the node; returns the freed license.

        Raises `ClaimNotFoundError` (checked first, as Keygen Relay does) or `PoolNotFoundError`.
        """
        now = self._now()
        try:
            held = self._run(lambda tx: self._release(tx, fingerprint, pool, now))
        except ClaimNotFoundError:
            self.events.on_release(pool, ReleaseResult.NOT_FOUND)
            raise
        self.seats_freed(pool or None)
        self.events.on_release(pool, ReleaseResult.RELEASED)
        return attrs.evolve(held, node_id=None, last_released_at=now)

    def _release(self, tx: Transaction, fingerprint: str, pool: str | None, now: int) -> License:
        found = tx.get_node_lease(fingerprint)
        if found is None:
            raise ClaimNotFoundError()
        pool_id = self._pool_id(tx, pool)
        node, held = found
        if held is None or held.pool_id != pool_id:
            raise ClaimNotFoundError()
        tx.release_license(held.id, now)
        tx.deactivate_node(node.id, now)
        self._audit(tx, self._release_events(held.id, node.id, pool_id, now))
        return held

    def cull(self) -> CullReport:
        """Free every lease whose node missed heartbeats for the TTL, and deactivate those nodes.

        One cutoff is used for the whole pass; work is done in batches of `CULL_BATCH` nodes,
        one transaction each, so other requests interleave.
        """
        now = self._now()
        cutoff = now - self.ttl
        released = culled = 0
        while True:
            batch = self._run(lambda tx: self._cull_batch(tx, cutoff, now))
            released += sum(1 for c in batch if c.license_id is not None)
            culled += len(batch)
            if len(batch) < CULL_BATCH:
                if released:
                    self.seats_freed(ANY_POOL)
                self.events.on_cull(culled, released)
                return CullReport(released=released, culled=culled)

    # -- the operator's view ----------------------------------------------------------------

    def _expires_at(self, node: Node) -> int | None:
        if not self.heartbeats or node.last_heartbeat_at is None:
            return None
        return node.last_heartbeat_at + self.ttl

    def list_leases(self, pool: str | None = None) -> list[ActiveLease]:
        """Every license held by an active node, in license order: all pools when `pool` is
        None, else that pool's (`PoolNotFoundError` if it does not exist)."""

        def work(tx: Transaction) -> tuple[list[tuple[Node, License]], dict[int, str]]:
            pool_filter: PoolFilter = ANY_POOL if not pool else self._pool_id(tx, pool)
            held = tx.list_leases(pool_filter)
            names = {p.id: p.name for p in tx.list_pools()} if held else {}
            return held, names

        held, names = self._run(work)
        return [
            ActiveLease(
                fingerprint=node.fingerprint,
                node_id=node.id,
                license=lic.guid,
                pool=None if lic.pool_id is None else names.get(lic.pool_id),
                claimed_at=lic.last_claimed_at,
                last_heartbeat_at=node.last_heartbeat_at,
                expires_at=self._expires_at(node),
            )
            for node, lic in held
        ]

    def pool_stats(self) -> list[PoolStats]:
        """Counts for the global pool, then every named pool in creation order."""
        now = self._now()

        def work(tx: Transaction) -> tuple[list[Pool], list[PoolCounts]]:
            return tx.list_pools(), tx.count_by_pool(now)

        pools, counts = self._run(work)
        by_id = {c.pool_id: c for c in counts}
        named: list[tuple[int | None, str | None]] = [(p.id, p.name) for p in pools]
        stats = []
        for pool_id, name in [(None, None), *named]:
            c = by_id.get(pool_id) or PoolCounts(pool_id, 0, 0, 0, 0, 0)
            waiting = None if self.queue is None else self.queue.waiting(name)
            stats.append(
                PoolStats(name, c.licenses, c.leased, c.free, c.expired, c.nodes_active, waiting)
            )
        return stats

    def force_release(self, fingerprint: str, pool: str | None = None) -> License:
        """An operator ends the node's lease at once: the license is freed and the node
        deactivated, with the audit rows of a release. With `pool`, only a lease in that pool
        matches. Raises `LeaseNotFoundError` (or `PoolNotFoundError`)."""
        now = self._now()

        def work(tx: Transaction) -> tuple[License, str | None]:
            pool_id: PoolFilter = self._pool_id(tx, pool) if pool else ANY_POOL
            found = tx.get_node_lease(fingerprint)
            held = found[1] if found is not None else None
            if found is None or held is None:
                raise LeaseNotFoundError(fingerprint, pool)
            if pool_id is not ANY_POOL and held.pool_id != pool_id:
                raise LeaseNotFoundError(fingerprint, pool)
            node = found[0]
            tx.release_license(held.id, now)
            tx.deactivate_node(node.id, now)
            self._audit(tx, self._release_events(held.id, node.id, held.pool_id, now))
            name = None
            if held.pool_id is not None:
                name = pool or next(p.name for p in tx.list_pools() if p.id == held.pool_id)
            return held, name

        held, name = self._run(work)
        self.seats_freed(name)
        self.events.on_release(name, ReleaseResult.FORCED)
        return attrs.evolve(held, node_id=None, last_released_at=now)

    def license_rows(self, pool: str | None = None) -> list[LicenseRow]:
        """`list_licenses` as `relay ls --json` shows them, with pool names."""
        with self.store.transaction() as tx:
            pool_filter: PoolFilter = ANY_POOL if not pool else self._pool_id(tx, pool)
            licenses = tx.list_licenses(pool_filter)
            names = {p.id: p.name for p in tx.list_pools()} if licenses else {}
        return [
            LicenseRow.of(lic, None if lic.pool_id is None else names.get(lic.pool_id, "<n/a>"))
            for lic in licenses
        ]
