"""A held lease: its license, its liveness, and how it ends.

`LeaseBase` holds the state both clients share (and is what `on_lost`, `check()` and the exit
hooks work on); `Lease` keeps itself alive with a daemon heartbeat thread.

A lease is *lost* the moment the relay refuses a heartbeat (410, 409, or any other 4xx but 408
and 429, or a 201 showing it had already forgotten the lease) or the local deadline passes
without a successful heartbeat.
The deadline is measured on the monotonic clock from when the last successful request was
*sent*, minus one second for the relay's whole-second timestamps, so it never trusts the
relay's wall clock and is never later than the relay's own cull.

Ending: a release stops new heartbeats, waits (within half its budget) for one in flight, then
sends the DELETE. A heartbeat still in flight after that is left to finish on its own; if the
relay answers it with 201 (it arrived after the DELETE and took a seat again), the heartbeat
gives that seat straight back. The fingerprint's `SeatLock` is held until both are done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from relay_core import LicenseFile

from . import exits
from .engine import Engine, Flow, Sleep
from .errors import ClientError, LeaseLostError, RelayUnavailableError
from .seatlock import SeatLock
from .transport import HttpTransport, run_blocking
from .wire import Extension, Grant, Request, Response

__all__ = ["Lease", "LeaseBase", "OnLost"]

log = logging.getLogger("relay_client")

OnLost = Callable[[LeaseLostError], None]
"""Called once when a lease is lost: for a `Lease`, in the thread that noticed (usually the
heartbeat thread); for an `AsyncLease`, on its event loop."""

DEADLINE_MARGIN = 1.0
"""The relay stores heartbeats in whole seconds, so it may cull up to 1 s before sent+TTL."""


class LeaseBase:
    """A seat held by one fingerprint; thread-safe."""

    def __init__(
        self,
        *,
        engine: Engine,
        transport: HttpTransport,
        fingerprint: str,
        grant: Grant,
        sent_at: float,
        heartbeat_fraction: float,
        release_timeout: float,
        on_lost: OnLost | None,
        sleep: Callable[[float], None],
        seat_lock: SeatLock,
    ) -> None:
        self._engine = engine
        self._sleep = sleep
        self._transport = transport
        self._fingerprint = fingerprint
        self._grant = grant
        self._fraction = heartbeat_fraction
        self._release_timeout = release_timeout
        self._on_lost = on_lost
        self._seat_lock = seat_lock
        # Re-entrant: the SIGTERM handler runs on the main thread, possibly inside these locks.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)  # notified when a heartbeat request ends
        self._in_flight = 0
        self._stopping = False
        self._worker_done = False  # the heartbeat thread (task) will send nothing more
        self._release_done = False
        self._released = False
        self._lost: LeaseLostError | None = None
        self._expires_at = grant.expires_at
        self._expires_in = grant.expires_in
        self._deadline = _deadline(sent_at, grant.expires_in)
        self._heartbeats = 0

    # -- what the application reads ----------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def pool(self) -> str | None:
        return self._engine.wire.pool

    @property
    def license_key(self) -> str:
        return self._grant.license_key

    @property
    def license_file(self) -> bytes:
        """The license file exactly as stored on the relay (armoured text, as bytes)."""
        return self._grant.license_file

    @property
    def license(self) -> LicenseFile | None:
        """The verified, decrypted `relay_core.LicenseFile`; None unless `public_key` was given."""
        return self._grant.license

    @property
    def expires_at(self) -> int:
        """When the relay would cull the lease without another heartbeat (relay's clock)."""
        with self._lock:
            return self._expires_at

    @property
    def expires_in(self) -> int:
        """The relay's lease TTL in seconds."""
        with self._lock:
            return self._expires_in

    @property
    def heartbeats(self) -> int:
        """How many heartbeats the relay has accepted for this lease."""
        with self._lock:
            return self._heartbeats

    @property
    def lost(self) -> bool:
        """True once the lease ended without this client releasing it."""
        self._refresh()
        with self._lock:
            return self._lost is not None

    @property
    def lost_error(self) -> LeaseLostError | None:
        """Why the lease was lost, or None."""
        self._refresh()
        with self._lock:
            return self._lost

    @property
    def released(self) -> bool:
        with self._lock:
            return self._released

    def check(self) -> None:
        """Raise `LeaseLostError` if the lease was lost; call it before each unit of licensed work."""
        self._refresh()
        with self._lock:
            lost, released = self._lost, self._released
        if lost is not None:
            raise lost
        if released:
            raise ClientError(
                "this lease was already released: claim a new one with client.lease()"
            )

    # -- what the heartbeat flow uses (engine.HeldLease) -------------------------------------

    @property
    def interval(self) -> float:
        with self._lock:
            return max(self._expires_in * self._fraction, 0.05)

    @property
    def deadline(self) -> float:
        with self._lock:
            return self._deadline

    @property
    def done(self) -> bool:
        with self._lock:
            return self._stopping or self._released or self._lost is not None

    def renew(self, extension: Extension, sent_at: float) -> None:
        with self._lock:
            self._expires_at = extension.expires_at
            self._expires_in = extension.expires_in
            self._deadline = _deadline(sent_at, extension.expires_in)
            self._heartbeats += 1

    def mark_lost(self, reason: str) -> None:
        with self._lock:
            if self._lost is not None or self._released:
                return
            error = self._lost = LeaseLostError(self._fingerprint, reason)
        log.warning("%s", error)
        if self._on_lost is not None:
            self._call_on_lost(self._on_lost, error)

    def _call_on_lost(self, on_lost: OnLost, error: LeaseLostError) -> None:
        """Run `on_lost` (each client's way: here, in the thread that noticed the loss)."""
        try:
            on_lost(error)
        except Exception:
            log.exception("the on_lost callback of a relay lease failed")

    def _refresh(self) -> None:
        with self._lock:
            expired = not self._released and self._engine.clock() >= self._deadline
        if expired:
            self.mark_lost("no successful heartbeat before the lease expired")

    # -- ending ------------------------------------------------------------------------------

    def send_guarded(
        self, send: Callable[[Request], Response], request: Request
    ) -> Response | None:
        """Send a heartbeat request; None for a PUT once releasing began: never a PUT after the
        DELETE. A give-back (DELETE) always goes out."""
        with self._lock:
            if request.method == "PUT" and self._stopping:
                return None
            self._in_flight += 1
        try:
            return send(request)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._idle.notify_all()

    def _beat(self, flow: Flow[None], step: Sleep | None) -> Sleep | None:
        """Run the heartbeat flow from its sleep `step` (None: its start) to its next sleep.

        Returns that sleep, or None once the flow ended. All of one beat's requests and the
        handling of their answers (a give-back included) happen here, in one thread.
        """
        try:
            next_step = next(flow) if step is None else flow.send(None)
            while not isinstance(next_step, Sleep):
                try:
                    response = self.send_guarded(self._transport.send, next_step)
                except RelayUnavailableError as exc:
                    next_step = flow.throw(exc)
                    continue
                if response is None:
                    return None
                next_step = flow.send(response)
            return next_step
        except StopIteration:
            return None

    def _stop_heartbeats(self, budget: float) -> None:
        """No PUT after this; wait up to `budget` seconds for one in flight to finish."""
        with self._lock:
            self._stopping = True
        self._wake()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=max(budget, 0.0))

    def _wake(self) -> None:
        """Interrupt the heartbeat's sleep (each client's way)."""

    def _worker_exited(self) -> None:
        with self._lock:
            self._worker_done = True
        self._maybe_unlock()

    def _maybe_unlock(self) -> None:
        """Free the fingerprint once the release and the heartbeat's last request are done."""
        with self._lock:
            done = self._worker_done and self._release_done
        if done:
            self._seat_lock.release()

    def _release_blocking(self, budget: float) -> bool:
        """Stop heartbeating, then DELETE within `budget` seconds; False if already released."""
        with self._lock:
            if self._released:
                return False
            self._released = True
        self._seat_lock.ending = True
        clock = self._engine.clock
        start = clock()
        try:
            self._stop_heartbeats(budget / 2)
            remaining = budget - (clock() - start)
            flow = self._engine.release(self._fingerprint, max(remaining, 0.1))
            return run_blocking(flow, self._transport.send, self._sleep)
        finally:
            exits.forget(self)
            with self._lock:
                self._release_done = True
            self._maybe_unlock()

    @property
    def release_budget(self) -> float:
        """Seconds a release may take (`release_timeout`)."""
        return self._release_timeout

    def emergency_release(self, budget: float) -> None:
        """Release from a signal handler or at interpreter exit; never raises."""
        try:
            self._release_blocking(budget)
        except ClientError as exc:
            log.warning("could not release the relay lease on exit: %s", exc)

    def __repr__(self) -> str:
        state = "released" if self.released else "lost" if self.lost else "held"
        return f"<{type(self).__name__} {self._fingerprint[:16]!r} pool={self.pool!r} {state}>"


def warn_release_failed(exc: ClientError) -> None:
    """A failed release at the end of a `with` block is logged, not raised: the work is done."""
    log.warning("%s; the relay frees the seat when the lease's TTL passes", exc)


def _deadline(sent_at: float, expires_in: int) -> float:
    return sent_at + max(expires_in - DEADLINE_MARGIN, expires_in / 2)


class Lease(LeaseBase):
    """A lease kept alive by a daemon heartbeat thread until `release()`."""

    _stop: threading.Event
    _thread: threading.Thread

    def _start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"relay-heartbeat-{self.fingerprint[:12]}", daemon=True
        )
        self._thread.start()

    def _wake(self) -> None:
        self._stop.set()

    def _heartbeat(self) -> None:
        flow = self._engine.heartbeat(self)
        try:
            step = self._beat(flow, None)
            while step is not None and not self._stop.wait(step.seconds):
                step = self._beat(flow, step)
        except Exception as exc:  # never die silently: a dead heartbeat is a lost lease
            log.exception("the relay heartbeat thread failed")
            self.mark_lost(f"the heartbeat thread failed: {exc!r}")
        finally:
            flow.close()
            self._worker_exited()

    def release(self) -> bool:
        """Give the seat back now: True if released, False if the relay held none (or done before).

        Returns within `release_timeout`. Raises `ClientError` (e.g. `RelayUnavailableError`)
        if the relay could not be told within it; the relay then frees the seat when the TTL
        passes.
        """
        start = time.monotonic()
        try:
            return self._release_blocking(self._release_timeout)
        finally:
            if threading.current_thread() is not self._thread:  # on_lost may release
                # Within the budget: a heartbeat still in flight finishes (and gives back a
                # seat it re-took) on its own, holding the fingerprint's lock until then.
                left = self._release_timeout - (time.monotonic() - start)
                self._thread.join(timeout=max(left, 0.0))
