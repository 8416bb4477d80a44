"""The wait queue's rules over MemoryStore and a FrozenClock: FIFO per pool, no overtaking."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)
from relay_core import ClaimStatus, NoLicensesAvailableError, Relay, Ticket, WaitQueue
from relay_core.testing import FrozenClock, LicenseWriter, MemoryStore

NOW = 1_790_000_000.0
_WRITER = LicenseWriter.ed25519()


def _files(count: int) -> list[tuple[bytes, str]]:
    return [
        (_WRITER.license(key=f"KEY-{n}", issued=NOW - 60), f"KEY-{n}")  # type: ignore[arg-type]
        for n in range(count)
    ]


FILES = _files(3)


def make(*, seats: int = 1, pool: str | None = None) -> tuple[Relay, WaitQueue, list[Ticket]]:
    """A relay with `seats` licenses and a queue that records every wake."""
    woken: list[Ticket] = []
    queue = WaitQueue(wake=woken.append)
    relay = Relay(MemoryStore(), clock=FrozenClock(NOW), queue=queue)
    relay.add_licenses(FILES[:seats], public_key=_WRITER.public_key, pool=pool)
    woken.clear()
    return relay, queue, woken


def test_head_ticket_takes_the_freed_seat_before_a_plain_claim() -> None:
    """A seat freed while a node waits goes to the waiter; a plain claim gets 410 meanwhile."""
    relay, queue, woken = make()
    relay.claim("holder")
    ticket = queue.join(None, "waiter", deadline=NOW + 30)
    relay.release("holder")
    assert woken == [ticket]
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("plain")
    assert relay.claim("waiter", ticket=ticket).status is ClaimStatus.CREATED
    queue.leave(ticket)
    assert len(queue) == 0


def test_later_ticket_cannot_overtake_the_head() -> None:
    """Only the head ticket may lease; the second one waits its turn even with a free seat."""
    relay, queue, woken = make()
    first = queue.join(None, "a", deadline=NOW + 30)
    second = queue.join(None, "b", deadline=NOW + 30)
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("b", ticket=second)
    relay.claim("a", ticket=first)
    queue.leave(first)
    assert woken == [second]
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("b", ticket=second)


def test_leaving_head_wakes_the_next_ticket_which_gets_the_seat() -> None:
    """A head that gives up (deadline, disconnect) hands its reservation to the next ticket."""
    relay, queue, woken = make()
    relay.claim("holder")
    first = queue.join(None, "a", deadline=NOW + 30)
    second = queue.join(None, "b", deadline=NOW + 30)
    relay.release("holder")
    queue.leave(first)
    assert woken == [first, second]
    assert relay.claim("b", ticket=second).status is ClaimStatus.CREATED


def test_expired_head_is_owed_nothing() -> None:
    """A ticket past its deadline no longer blocks the line, even before it leaves."""
    relay, queue, _ = make()
    clock = relay.clock
    assert isinstance(clock, FrozenClock)
    queue.join(None, "late", deadline=NOW + 5)
    second = queue.join(None, "b", deadline=NOW + 60)
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("b", ticket=second)
    clock.advance(6)
    assert relay.claim("b", ticket=second).status is ClaimStatus.CREATED


def test_extension_is_never_blocked_by_waiters() -> None:
    """A node that holds its lease extends it while others wait."""
    relay, queue, _ = make()
    relay.claim("holder")
    queue.join(None, "waiter", deadline=NOW + 30)
    assert relay.claim("holder").status is ClaimStatus.EXTENDED


def test_pools_have_separate_lines() -> None:
    """A waiter in one pool does not stop a plain claim in another."""
    relay, queue, woken = make(pool="p")
    relay.add_licenses(FILES[1:2], public_key=_WRITER.public_key)
    queue.join("p", "waiter", deadline=NOW + 30)
    assert relay.claim("plain").status is ClaimStatus.CREATED
    assert queue.waiting("p") == 1
    assert queue.waiting(None) == 0
    assert queue.counts() == {"p": 1}
    relay.release("plain")
    assert woken == []


def test_cull_and_add_wake_every_head() -> None:
    """A cull that frees seats and an added license wake the heads of the lines."""
    relay, queue, woken = make()
    relay.claim("holder")
    ticket = queue.join(None, "waiter", deadline=NOW + 300)
    clock = relay.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(61)
    assert relay.cull().released == 1
    assert woken == [ticket]
    relay.add_licenses(FILES[1:2], public_key=_WRITER.public_key)
    assert woken == [ticket, ticket]


def test_leave_is_idempotent_and_a_left_ticket_cannot_lease() -> None:
    """Leaving twice is harmless, and a ticket that left is never handed a seat."""
    _, queue, _ = make()
    ticket = queue.join(None, "a", deadline=NOW + 30)
    queue.leave(ticket)
    queue.leave(ticket)
    assert not queue.may_lease(None, ticket, NOW)
    assert queue.may_lease(None, None, NOW)
    assert len(queue) == 0


class QueueMachine(RuleBasedStateMachine):
    """Random joins, leaves, claims, releases and clock moves against a reference model.

    The model: a pool's seat may go to a plain claim only when no live ticket waits, and to a
    ticket only when it is the oldest live ticket of its pool; every release wakes the head.
    """

    tickets = Bundle("tickets")

    def __init__(self) -> None:
        super().__init__()
        self.relay, self.queue, self.woken = make(seats=2)
        clock = self.relay.clock
        assert isinstance(clock, FrozenClock)
        self.clock = clock
        self.holders: set[str] = set()
        self.line: list[Ticket] = []
        self.names = 0

    def _name(self) -> str:
        self.names += 1
        return f"n{self.names}"

    def _live(self) -> list[Ticket]:
        return [t for t in self.line if t.deadline >= self.clock.now()]

    @rule(target=tickets, wait=st.integers(1, 30))
    def join(self, wait: int) -> Ticket:
        ticket = self.queue.join(None, self._name(), deadline=self.clock.now() + wait)
        self.line.append(ticket)
        return ticket

    @rule()
    def plain_claim(self) -> None:
        name = self._name()
        expected = len(self.holders) < 2 and not self._live()
        try:
            self.relay.claim(name)
        except NoLicensesAvailableError:
            assert not expected
        else:
            assert expected
            self.holders.add(name)

    @rule(ticket=consumes(tickets))
    def ticket_claim(self, ticket: Ticket) -> None:
        live = self._live()
        expected = len(self.holders) < 2 and (not live or live[0] is ticket)
        try:
            self.relay.claim(ticket.fingerprint, ticket=ticket)
        except NoLicensesAvailableError:
            assert not expected
        else:
            assert expected
            self.holders.add(ticket.fingerprint)
        self._leave(ticket)

    @rule(ticket=consumes(tickets))
    def leave(self, ticket: Ticket) -> None:
        self._leave(ticket)

    def _leave(self, ticket: Ticket) -> None:
        was_head = bool(self.line) and self.line[0] is ticket
        self.woken.clear()
        self.queue.leave(ticket)
        self.line.remove(ticket)
        assert self.woken == ([self.line[0]] if was_head and self.line else [])

    @precondition(lambda self: bool(self.holders))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.holders)))
        self.woken.clear()
        self.relay.release(name)
        self.holders.discard(name)
        assert self.woken == self.line[:1]

    @rule(seconds=st.integers(1, 20))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def counts_match(self) -> None:
        assert self.queue.waiting(None) == len(self.line) == len(self.queue)


QueueMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestQueueMachine = QueueMachine.TestCase
