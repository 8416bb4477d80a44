"""A held lease: its license, its liveness, and how it ends.

`LeaseBase` holds the state both clients share (and is what `on_lost`, `check()` and the exit
hooks work on); `Lease` keeps itself alive with a daemon heartbeat thread.

A lease is *lost* the moment the relay refuses a heartbeat (404/409/410/400, or a 201 showing it
had already forgotten the lease) or the local deadline passes without a successful heartbeat.
The deadline is measured on the monotonic clock from when the last successful request was
*sent*, minus one second for the relay's whole-second timestamps, so it never trusts the
relay's wall clock and is never later than the relay's own cull.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from relay_core import LicenseFile

from . import exits
from .engine import Engine, Sleep
from .errors import ClientError, LeaseLostError, RelayUnavailableError
from .transport import HttpTransport, run_blocking
from .wire import Extension, Grant, Request, Response

__all__ = ["Lease", "LeaseBase", "OnLost"]

log = logging.getLogger("relay_client")

OnLost = Callable[[LeaseLostError], None]
"""Called once, from the thread that noticed, when a lease is lost."""

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
    ) -> None:
        self._engine = engine
        self._sleep = sleep
        self._transport = transport
        self._fingerprint = fingerprint
        self._grant = grant
        self._fraction = heartbeat_fraction
        self._release_timeout = release_timeout
        self._on_lost = on_lost
        # Re-entrant: the SIGTERM handler runs on the main thread, possibly inside these locks.
        self._lock = threading.RLock()
        self._io = threading.RLock()  # held around each heartbeat request; see _stop_heartbeats
        self._stopping = False
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
            try:
                self._on_lost(error)
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
        """Send a heartbeat unless the lease is being released (then None): never after a DELETE."""
        with self._io:
            if self._stopping:
                return None
            return send(request)

    def _stop_heartbeats(self, budget: float) -> None:
        acquired = self._io.acquire(timeout=max(budget, 0.0))
        try:
            with self._lock:
                self._stopping = True
        finally:
            if acquired:
                self._io.release()
        self._wake()

    def _wake(self) -> None:
        """Interrupt the heartbeat's sleep (each client's way)."""

    def _release_blocking(self, budget: float) -> bool:
        """Stop heartbeating, then DELETE within `budget` seconds; False if already released."""
        with self._lock:
            if self._released:
                return False
            self._released = True
        clock = self._engine.clock
        start = clock()
        try:
            self._stop_heartbeats(budget / 2)
            remaining = budget - (clock() - start)
            flow = self._engine.release(self._fingerprint, max(remaining, 0.1))
            return run_blocking(flow, self._transport.send, self._sleep)
        finally:
            exits.forget(self)

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
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    if self._stop.wait(step.seconds):
                        return
                    step = flow.send(None)
                    continue
                try:
                    response = self.send_guarded(self._transport.send, step)
                except RelayUnavailableError as exc:
                    step = flow.throw(exc)
                    continue
                if response is None:
                    return
                step = flow.send(response)
        except StopIteration:
            return
        except Exception as exc:  # never die silently: a dead heartbeat is a lost lease
            log.exception("the relay heartbeat thread failed")
            self.mark_lost(f"the heartbeat thread failed: {exc!r}")
        finally:
            flow.close()

    def release(self) -> bool:
        """Give the seat back now: True if released, False if the relay held none (or done before).

        Raises `ClientError` (e.g. `RelayUnavailableError`) if the relay could not be told within
        `release_timeout`; the relay then frees the seat when the TTL passes.
        """
        try:
            return self._release_blocking(self._release_timeout)
        finally:
            if threading.current_thread() is not self._thread:  # on_lost may release
                self._thread.join(timeout=self._release_timeout)
