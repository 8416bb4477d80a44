"""Parking claims that asked to wait for a seat (``Prefer: wait=N``, RFC 7240), and waking them.

The rules of who is owed a seat live in `relay_core.WaitQueue`; this module moves requests:

- `applied_wait` reads the ``Prefer`` header: the first ``wait`` preference, a whole number of
  seconds, capped at the server's maximum; anything else (``wait=abc``) is ignored.
- `WaitRoom.claim` tries the claim at once; when the pool has no seat for it, it takes a ticket
  and parks the request's thread on an `threading.Event` until the queue wakes it (a seat was
  freed, or its ticket became head), a recheck is due (every `RECHECK_SECONDS`, which is how a
  seat freed by another process, e.g. ``relay add``, is noticed), the client hangs up, the
  deadline passes, or the server stops.
- At most `max_waiting` requests are parked per process; the next one is refused at once with
  `WaitingFullError` (410 with ``Retry-After``).
- While a request is parked its worker thread is replaced: `WorkerHandoff` grows waitress's
  thread pool by one for each parked request and shrinks it when the request resumes, so the
  configured number of threads always stays free for health checks, heartbeats and releases.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from relay_core import ClaimStatus, Lease, NoLicensesAvailableError, Relay, Ticket

__all__ = [
    "DEFAULT_MAX_WAITING",
    "RECHECK_SECONDS",
    "RETRY_AFTER_SECONDS",
    "Handoff",
    "WaitRoom",
    "WaitStoppedError",
    "WaitingFullError",
    "WorkerHandoff",
    "applied_wait",
]

logger = logging.getLogger("relay")

DEFAULT_MAX_WAITING = 256
"""Parked requests per process when the server is not told otherwise."""

RECHECK_SECONDS = 1.0
"""How often a parked request looks again without being woken: the head retries its claim
(seats freed by another process or replica), every waiter checks whether its client left."""

RETRY_AFTER_SECONDS = 1
"""The ``Retry-After`` of the 410 answered when every waiting place is taken."""

_DIGITS = re.compile(r"[0-9]+")


class WaitingFullError(NoLicensesAvailableError):
    """Raised when a claim would wait but the process already parks its maximum of requests."""


class WaitStoppedError(NoLicensesAvailableError):
    """Raised to a waiting claim when the server stops: answered 410 with ``Retry-After`` and
    without ``Preference-Applied``, as the wait was cut short (try again, e.g. after a
    restart), not served in full."""


def applied_wait(header: str | None, max_wait: int) -> int | None:
    """The seconds to wait for ``Prefer: <header>``, capped at `max_wait`; None to not wait.

    The first ``wait`` preference counts (RFC 7240 §2); a value that is not a whole number of
    seconds makes the header count as absent, and so does a `max_wait` of 0.
    """
    if not header or max_wait <= 0:
        return None
    for preference in header.split(","):
        name, _, value = preference.partition(";")[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not _DIGITS.fullmatch(value):
            return None
        return min(int(value), max_wait)
    return None


class Handoff(Protocol):
    """What a server does while one of its worker threads is parked (`environ`: the request's)."""

    def parked(self, environ: Mapping[str, Any]) -> contextlib.AbstractContextManager[None]: ...


class _StayOnThread:
    """No handoff: the parked request keeps its thread (an app mounted in another server)."""

    def parked(self, environ: Mapping[str, Any]) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class WorkerHandoff:
    """Keeps `threads` worker threads free of parked requests in a waitress task dispatcher.

    Each parked request adds one thread to the dispatcher (``set_thread_count``) and removes it
    when it resumes (the next idle thread exits), so parking never takes a worker away from
    the requests that do not wait. While parked, the request's channel (``relay.channel`` in
    its environ) is marked `parked` and the I/O loop woken, so the loop watches the connection
    for a hang-up. `close()` stops resizing, before the dispatcher shuts down.
    """

    def __init__(self, dispatcher: Any, threads: int) -> None:
        self._dispatcher = dispatcher
        self._threads = threads
        self._parked = 0
        self._closed = False
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def parked(self, environ: Mapping[str, Any]) -> Iterator[None]:
        channel = environ.get("relay.channel")
        if channel is not None:
            channel.parked = True
            channel.server.pull_trigger()  # the loop polls the socket for reading from now on
        self._resize(+1)
        try:
            yield
        finally:
            self._resize(-1)
            if channel is not None:
                channel.parked = False

    def _resize(self, delta: int) -> None:
        with self._lock:
            self._parked += delta
            if not self._closed:
                self._dispatcher.set_thread_count(self._threads + self._parked)

    def close(self) -> None:
        with self._lock:
            self._closed = True


Waited = Callable[[str | None, float, bool], None]
"""Told of each parked claim when it ends: its pool, the seconds it waited, whether it got a
seat (for a wait-time histogram)."""


class WaitRoom:
    """Parks waiting claims of one process and wakes them through `relay.queue`.

    `max_wait` caps ``Prefer: wait`` (0 disables waiting), `max_waiting` bounds the parked
    requests, `on_waited` observes each parked claim's wait. Registers itself as the queue's
    `wake` callback.
    """

    def __init__(
        self,
        relay: Relay,
        *,
        max_wait: int,
        max_waiting: int = DEFAULT_MAX_WAITING,
        on_waited: Waited | None = None,
    ) -> None:
        if relay.queue is None:
            raise ValueError("waiting needs a relay with a wait queue")
        if max_wait < 0 or max_waiting < 0:
            raise ValueError("max_wait and max_waiting must not be negative")
        self._relay = relay
        self._queue = relay.queue
        self.max_wait = max_wait
        self.max_waiting = max_waiting
        self.handoff: Handoff = _StayOnThread()
        self.on_waited = on_waited
        self._events: dict[Ticket, threading.Event] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._queue.wake = self._wake

    def applied_wait(self, header: str | None) -> int | None:
        """The seconds a claim with this ``Prefer`` header waits (see `applied_wait`)."""
        return applied_wait(header, self.max_wait)

    @property
    def parked(self) -> int:
        """Requests waiting right now."""
        with self._lock:
            return len(self._events)

    def _wake(self, ticket: Ticket) -> None:
        with self._lock:
            event = self._events.get(ticket)
        if event is not None:
            event.set()

    def close(self) -> None:
        """Refuse new waits and answer every parked request now (410): the server is stopping."""
        with self._lock:
            self._closed = True
            events = list(self._events.values())
        for event in events:
            event.set()

    def claim(
        self,
        fingerprint: str,
        pool: str | None,
        wait: int,
        *,
        disconnected: Callable[[], bool] | None = None,
        applied: Callable[[], None] | None = None,
        environ: Mapping[str, Any] | None = None,
        admit: Callable[[], None] | None = None,
    ) -> Lease:
        """Claim now, or wait up to `wait` seconds for this pool's next seat owed to us.

        `disconnected()` tells whether the client hung up (it is then never given a seat);
        `applied()` is called once the wait preference is honoured (any answer but the refusal
        for lack of a waiting place); `environ` (the request's) goes to the `handoff`; `admit` to every
        `Relay.claim`. Raises what `Relay.claim` raises, `NoLicensesAvailableError` at the
        deadline, `WaitingFullError` when `max_waiting` requests are parked, and
        `WaitStoppedError` when the room closes (the server stops).
        """
        try:
            lease = self._relay.claim(fingerprint, pool, admit=admit, waits=wait > 0)
        except NoLicensesAvailableError:
            if wait <= 0:
                if applied is not None:
                    applied()
                raise
        else:
            if applied is not None:
                applied()
            return lease
        try:
            return self._park(
                fingerprint,
                pool,
                wait,
                disconnected=disconnected,
                applied=applied,
                environ=environ,
                admit=admit,
            )
        except NoLicensesAvailableError:
            self._relay.refused(pool)  # one denial for the whole wait, however many retries
            raise

    def _park(
        self,
        fingerprint: str,
        pool: str | None,
        wait: int,
        *,
        disconnected: Callable[[], bool] | None,
        applied: Callable[[], None] | None,
        environ: Mapping[str, Any] | None,
        admit: Callable[[], None] | None,
    ) -> Lease:
        """Take a ticket and wait for the seat owed to it (see `claim`)."""
        gone = disconnected or _never
        event = threading.Event()
        deadline = time.monotonic() + wait
        with self._lock:
            if self._closed:
                raise WaitStoppedError()
            if len(self._events) >= self.max_waiting:
                raise WaitingFullError()
            ticket = self._queue.join(
                pool or None, fingerprint, deadline=self._relay.clock.now() + wait
            )
            self._events[ticket] = event
        if applied is not None:
            applied()
        granted = False
        try:
            with self.handoff.parked(environ or {}):
                lease = self._wait(ticket, event, deadline, gone, admit)
            granted = True
            return lease
        finally:
            with self._lock:
                del self._events[ticket]
            self._queue.leave(ticket)
            if self.on_waited is not None:
                self.on_waited(ticket.pool, time.monotonic() - deadline + wait, granted)

    def _wait(
        self,
        ticket: Ticket,
        event: threading.Event,
        deadline: float,
        gone: Callable[[], bool],
        admit: Callable[[], None] | None,
    ) -> Lease:
        while True:
            event.clear()
            if self._closed:
                raise WaitStoppedError()
            if gone():
                raise NoLicensesAvailableError()
            if self._queue.is_head(ticket, self._relay.clock.now()):
                lease = self._try(ticket, admit)
                if lease is not None:
                    if gone() and lease.status is ClaimStatus.CREATED:
                        # Hung up while the claim committed: the seat goes to the next waiter.
                        self._relay.release(ticket.fingerprint, ticket.pool)
                        raise NoLicensesAvailableError()
                    return lease
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoLicensesAvailableError()
            event.wait(min(remaining, RECHECK_SECONDS))

    def _try(self, ticket: Ticket, admit: Callable[[], None] | None) -> Lease | None:
        try:
            return self._relay.claim(ticket.fingerprint, ticket.pool, ticket=ticket, admit=admit)
        except NoLicensesAvailableError:
            return None


def _never() -> bool:
    return False
