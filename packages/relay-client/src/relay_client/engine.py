"""The lease protocol as I/O-free flows, shared by the threaded and the asyncio client.

A flow is a generator that yields what it needs done — a `Request` to send or a `Sleep` — and is
sent back the `Response` (or has the transport's `RelayUnavailableError` thrown in). Its return
value is the result. A driver (`transport.run_blocking`, `aio.run_async`) performs the steps, so
retries, backoff, takeover, give-back and loss detection are written once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from .errors import (
    ClientError,
    LeaseConflictError,
    LicenseVerificationError,
    NodeRefusedError,
    NoSeatError,
    PoolRejectedError,
    RelayUnavailableError,
    ResponseSignatureError,
    UnexpectedResponseError,
)
from .wire import Extension, Grant, Request, Response, Wire

__all__ = ["Engine", "Flow", "HeldLease", "Sleep", "Step"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this many seconds before the next step."""

    seconds: float


Step = Request | Sleep
Flow = Generator[Step, Response | None, T]

WAIT_TIMEOUT_MARGIN = 10.0
"""A claim that asks the relay to wait N seconds allows N + this for the answer (only for the
answer: connecting and sending stay within the client's `timeout`)."""

FIRST_ASKED_WAIT = 60
"""The first claim asks for at most the relay's default ``--max-wait``, so a relay that accepts
the connection and then hangs is noticed within this plus the margin, not within an hour."""

MAX_ASKED_WAIT = 3600
"""The longest wait one claim asks for. While the relay applies all it is asked, the next ask
doubles, up to this; once it applies less (its ``--max-wait``), the client asks for that."""


class _NoSeatYet(NoSeatError):
    """A 410 with what it says about waiting: the wait the relay applied (``Preference-Applied:
    wait=N``, None if it did not wait) and its ``Retry-After`` (every waiting place taken)."""

    def __init__(self, pool: str | None, applied: int | None, retry_after: float | None) -> None:
        super().__init__(pool, 0.0)
        self.applied = applied
        self.retry_after = retry_after


def _header_number(response: Response, name: str, prefix: str = "") -> int | None:
    value = response.headers.get(name, "").strip()
    if not value.lower().startswith(prefix):
        return None
    value = value[len(prefix) :].strip()
    return int(value) if value.isascii() and value.isdigit() else None


RETRYABLE = (RelayUnavailableError, UnexpectedResponseError, ResponseSignatureError)
"""Heartbeat failures that may pass (relay restarting, busy, or briefly misconfigured)."""

FATAL = (NoSeatError, LeaseConflictError, PoolRejectedError, NodeRefusedError)
"""Heartbeat answers that mean the relay no longer holds this lease for us (or refuses this
node now: its token was withdrawn, or its fingerprint left the allow-list)."""


def _permanent(exc: ClientError) -> bool:
    """A 4xx answer to a heartbeat will not change on retry; only 408 and 429 may pass."""
    status = getattr(exc, "status", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)


def _refusal(exc: ClientError) -> str:
    """Why a refused heartbeat lost the lease, without the advice meant for a claim."""
    if isinstance(exc, NoSeatError):
        return "410, it holds no seat for this fingerprint any more (culled or force-released)"
    if isinstance(exc, LeaseConflictError):
        return "409, the fingerprint holds a lease in another pool, or heartbeats are off"
    if isinstance(exc, PoolRejectedError | NodeRefusedError):
        return str(exc)
    if isinstance(exc, UnexpectedResponseError):
        return f"{exc.status} {exc.detail}"
    return str(exc)


class HeldLease(Protocol):
    """What the heartbeat flow needs from a lease."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def interval(self) -> float: ...
    @property
    def deadline(self) -> float: ...
    @property
    def done(self) -> bool: ...
    def renew(self, extension: Extension, sent_at: float) -> None: ...
    def mark_lost(self, reason: str) -> None: ...


@dataclass(frozen=True)
class Engine:
    """One client's protocol settings plus its injected clock and randomness."""

    wire: Wire
    clock: Callable[[], float]
    rng: random.Random
    retry_base: float = 0.5
    retry_max: float = 5.0

    def backoff(self, attempt: int) -> float:
        """Jittered exponential delay before retry number `attempt` (1, 2, ...)."""
        ceiling = min(self.retry_max, self.retry_base * 2.0 ** min(attempt - 1, 30))
        return ceiling * self.rng.uniform(0.5, 1.0)

    # -- claim -------------------------------------------------------------------------------

    def acquire(self, fingerprint: str, wait: float | None) -> Flow[tuple[Grant, float]]:
        """Claim a seat; with `wait`, retry 410s and unreachable relays until `wait` runs out.

        With `wait`, each claim asks the relay to hold it in its queue (``Prefer: wait=N``) for
        the time left; a relay that does not say ``Preference-Applied`` is polled instead, with
        backoff. Returns the grant and the monotonic time its request was sent (the lease's
        start).
        """
        start = self.clock()
        attempt = 0
        queued = bool(wait)  # until the relay shows it does not wait for us
        cap, capped = FIRST_ASKED_WAIT, False  # capped: the relay showed its --max-wait
        while True:
            left = (wait or 0.0) - (self.clock() - start)
            asked = math.ceil(min(left, cap)) if queued and left > 0 else None
            sent = self.clock()
            try:
                return (yield from self._claim_once(fingerprint, asked))
            except (NoSeatError, RelayUnavailableError, UnexpectedResponseError) as exc:
                elapsed = self.clock() - start
                remaining = (wait or 0.0) - elapsed
                if remaining <= 0:
                    if isinstance(exc, NoSeatError):
                        raise NoSeatError(self.wire.pool, elapsed if wait else 0.0) from None
                    raise
                delay = self.backoff(attempt + 1)
                if isinstance(exc, _NoSeatYet) and asked is not None:
                    if exc.retry_after is not None:
                        delay = float(exc.retry_after)  # every waiting place taken
                    elif exc.applied is None:
                        queued = False  # a relay without a wait queue: poll it
                    else:
                        if exc.applied < asked:
                            cap, capped = max(1, exc.applied), True
                        elif not capped and asked >= cap:
                            cap = min(cap * 2, MAX_ASKED_WAIT)
                        if self.clock() - sent >= exc.applied / 2:
                            attempt, delay = -1, 0.0  # it waited its maximum: ask again at once
            attempt += 1
            if delay > 0:
                yield Sleep(min(delay, remaining))

    def _claim_once(self, fingerprint: str, wait: int | None = None) -> Flow[tuple[Grant, float]]:
        request = self.wire.claim(fingerprint)
        if wait is not None:
            request = replace(
                request,
                headers={**request.headers, "Prefer": f"wait={wait}"},
                read_timeout=wait + WAIT_TIMEOUT_MARGIN,
            )
        sent_at = self.clock()
        outcome = yield from self._read_claim(request, fingerprint)
        if isinstance(outcome, Extension):
            # The relay says this fingerprint already holds a seat. No live lease of this user on
            # this machine holds it (the client holds the fingerprint's lock, see seatlock), so it
            # is a dead run's: take it over, give it back and claim anew to get the file.
            yield from self.give_back(fingerprint)
            request = self.wire.claim(fingerprint)  # a fresh nonce: never reuse one
            sent_at = self.clock()
            outcome = yield from self._read_claim(request, fingerprint)
            if isinstance(outcome, Extension):
                raise LeaseConflictError(
                    fingerprint,
                    "a process on another machine (or of another user, or using another relay "
                    "URL) is renewing its lease: give each process its own fingerprint",
                )
        try:
            grant = self.wire.verify_license(outcome)
        except LicenseVerificationError:
            yield from self.give_back(fingerprint)
            raise
        return grant, sent_at

    def _read_claim(self, request: Request, fingerprint: str) -> Flow[Grant | Extension]:
        response = yield request
        assert response is not None
        try:
            return self.wire.read_claim(request, response, fingerprint)
        except NoSeatError:
            raise _NoSeatYet(
                self.wire.pool,
                _header_number(response, "preference-applied", "wait="),
                _header_number(response, "retry-after"),
            ) from None
        except ResponseSignatureError:
            # Untrusted answer: the relay may have granted a seat; do not keep it.
            yield from self.give_back(fingerprint)
            raise

    # -- release -----------------------------------------------------------------------------

    def give_back(self, fingerprint: str) -> Flow[None]:
        """Best-effort release whose failure is ignored (the TTL frees the seat anyway)."""
        request = self.wire.release(fingerprint)
        try:
            response = yield request
            assert response is not None
            self.wire.read_release(request, response)
        except ClientError:
            return

    def release(self, fingerprint: str, budget: float) -> Flow[bool]:
        """Release, retrying transport failures for at most `budget` seconds.

        True when the seat was given back, False when the relay held none for us (404).
        """
        start = self.clock()
        attempt = 0
        while True:
            remaining = budget - (self.clock() - start)
            request = replace(self.wire.release(fingerprint), timeout=max(remaining, 0.05))
            try:
                response = yield request
                assert response is not None
                return self.wire.read_release(request, response)
            except (RelayUnavailableError, UnexpectedResponseError):
                attempt += 1
                remaining = budget - (self.clock() - start)
                delay = self.backoff(attempt)
                if remaining <= delay + 0.05:
                    raise
            yield Sleep(delay)

    def health(self) -> Flow[None]:
        request = self.wire.health()
        response = yield request
        assert response is not None
        self.wire.read_health(request, response)

    # -- heartbeat ---------------------------------------------------------------------------

    def heartbeat(self, lease: HeldLease) -> Flow[None]:
        """Keep `lease` alive until it is done; mark it lost the moment that becomes true.

        Heartbeats every `lease.interval`; on a transport or server failure retries with
        jittered backoff, never sleeping past the lease's deadline.
        """
        delay = lease.interval
        attempt = 0
        last_error = ""
        while True:
            yield Sleep(delay)
            if lease.done:
                return
            if self.clock() >= lease.deadline:
                why = f"; last error: {last_error}" if last_error else ""
                lease.mark_lost(f"no successful heartbeat before the lease expired{why}")
                return
            request = self.wire.claim(lease.fingerprint)
            sent_at = self.clock()
            try:
                response = yield request
                assert response is not None
                outcome = self.wire.read_claim(request, response, lease.fingerprint)
            except RETRYABLE as exc:
                if _permanent(exc):
                    lease.mark_lost(f"the relay refused the heartbeat: {_refusal(exc)}")
                    return
                attempt += 1
                last_error = str(exc)
                delay = min(self.backoff(attempt), max(lease.deadline - self.clock(), 0.0))
                continue
            except FATAL as exc:
                lease.mark_lost(f"the relay refused the heartbeat: {_refusal(exc)}")
                return
            if isinstance(outcome, Grant):
                lease.mark_lost(
                    "the relay no longer knew it (culled after missed heartbeats, or its "
                    "database was replaced); the new seat it offered was given back"
                )
                yield from self.give_back(lease.fingerprint)
                return
            lease.renew(outcome, sent_at)
            attempt = 0
            last_error = ""
            delay = lease.interval
