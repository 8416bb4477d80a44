"""The wait queue's rules: who is owed the next free seat of a pool.

Nodes that asked to wait (``Prefer: wait=N``) hold a `Ticket` in their pool's first-in first-out
line. The rules, applied by `Relay.claim` inside the claim's transaction:

- while a pool has a live ticket, only the head ticket (the one that has waited longest) may
  take a free seat: a freed seat is reserved for it, and neither a plain claim nor a later
  ticket can overtake it;
- a ticket past its deadline is owed nothing: it is skipped as if it had left;
- when the head leaves (it got its seat, gave up, or its client went away), the next live
  ticket becomes head and is woken.

Extending a lease a node already holds is never affected: the rules only guard new leases.

The queue does not block or park anything: waking a ticket means calling the `wake` callback
given to the constructor, and the adapter that parks requests (relay-http) decides what a wake
does. A store or a listener that learns that seats were freed elsewhere (another process,
another replica) calls `freed(pool)`; that is the whole interface a backend needs.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable

import attrs

from .ports import ANY_POOL, AnyPool

__all__ = ["Ticket", "WaitQueue"]


@attrs.define(eq=False)
class Ticket:
    """One waiting claim: a place in its pool's line until `deadline` (Unix seconds)."""

    pool: str | None
    fingerprint: str
    number: int
    """Arrival order within this queue; lower numbers arrived first."""
    deadline: float
    left: bool = False


def _no_wake(ticket: Ticket) -> None:
    """The default `wake`: nobody parks, so there is nobody to wake."""


@attrs.define
class WaitQueue:
    """Per-pool first-in first-out lines of tickets; thread-safe.

    `wake(ticket)` is called (outside the queue's lock) for the head ticket of a pool whenever a
    seat of that pool may have been freed, and for a ticket that has just become head.
    """

    wake: Callable[[Ticket], None] = attrs.field(default=_no_wake)
    _lines: dict[str | None, deque[Ticket]] = attrs.field(factory=dict, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _numbers: itertools.count[int] = attrs.field(factory=itertools.count, init=False)

    def join(self, pool: str | None, fingerprint: str, *, deadline: float) -> Ticket:
        """Put a ticket at the end of the pool's line."""
        with self._lock:
            ticket = Ticket(pool, fingerprint, next(self._numbers), deadline)
            self._lines.setdefault(pool, deque()).append(ticket)
            return ticket

    def leave(self, ticket: Ticket) -> None:
        """Take the ticket out of its line (idempotent); wake the new head if it was the head."""
        with self._lock:
            if ticket.left:
                return
            ticket.left = True
            line = self._lines.get(ticket.pool)
            if line is None:
                return
            was_head = bool(line) and line[0] is ticket
            line.remove(ticket)
            if not line:
                del self._lines[ticket.pool]
            head = line[0] if was_head and line else None
        if head is not None:
            self.wake(head)

    def _live_head(self, pool: str | None, now: float) -> Ticket | None:
        """The first ticket of the pool's line whose deadline has not passed (lock held)."""
        for ticket in self._lines.get(pool, ()):
            if ticket.deadline >= now:
                return ticket
        return None

    def may_lease(self, pool: str | None, ticket: Ticket | None, now: float) -> bool:
        """Whether a claim holding `ticket` (None: a plain claim) may take a free seat now."""
        with self._lock:
            head = self._live_head(pool, now)
        if head is None:
            return ticket is None or not ticket.left
        return head is ticket

    def is_head(self, ticket: Ticket, now: float) -> bool:
        """Whether the ticket is the live head of its pool's line."""
        with self._lock:
            return self._live_head(ticket.pool, now) is ticket

    def freed(self, pool: str | AnyPool | None = ANY_POOL) -> None:
        """Seats of `pool` (every pool with `ANY_POOL`) may be free: wake each line's head."""
        with self._lock:
            if pool is ANY_POOL:
                heads = [line[0] for line in self._lines.values() if line]
            else:
                line = self._lines.get(pool)
                heads = [line[0]] if line else []
        for head in heads:
            self.wake(head)

    def waiting(self, pool: str | None) -> int:
        """How many tickets wait in the pool's line (for a ``relay_waiting{pool}`` gauge)."""
        with self._lock:
            return len(self._lines.get(pool, ()))

    def counts(self) -> dict[str | None, int]:
        """Waiting tickets per pool that has any."""
        with self._lock:
            return {pool: len(line) for pool, line in self._lines.items()}

    def __len__(self) -> int:
        with self._lock:
            return sum(len(line) for line in self._lines.values())
