"""`RelayClient`: hold a Relay lease from a threaded (ordinary) Python program.

client = RelayClient("http://relay.internal:6349", pool="prod", signing_secret=...)
with client.lease() as lease:
    run(lease.license_key)
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Generic, TypeVar, cast

from relay_core import InvalidPublicKeyError, LicenseVerifier
from relay_core.signing import DEFAULT_TOLERANCE

from . import exits, seatlock
from . import fingerprint as fingerprints
from .engine import Engine
from .errors import ClientError, ConfigurationError
from .failover import FailoverTransport, parse_endpoints
from .lease import Lease, LeaseBase, OnLost, warn_release_failed
from .seatlock import SeatLock
from .transport import HttpTransport, run_blocking
from .wire import Wire, header_value, sendable

__all__ = ["ClientBase", "RelayClient"]

SleepT = TypeVar("SleepT")


def _positive(name: str, value: float) -> float:
    if not value > 0 or math.isnan(value):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class ClientBase(Generic[SleepT]):
    """Configuration and protocol shared by `RelayClient` and `AsyncRelayClient`."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        pool: str | None = None,
        fingerprint: str | None = None,
        signing_secret: str | None = None,
        public_key: str | None = None,
        signing_public_key: str | None = None,
        node_token: str | None = None,
        timeout: float = 5.0,
        heartbeat_fraction: float = 1 / 3,
        signature_tolerance: float = DEFAULT_TOLERANCE,
        release_timeout: float = 2.0,
        retry_base: float = 0.5,
        retry_max: float = 5.0,
        release_on_signal: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sleep: SleepT | None = None,
    ) -> None:
        """Check every option now, so a misconfiguration fails at start-up, not at first claim.

        `fingerprint` defaults to `fingerprint.machine(pool=pool)`. `public_key` (Ed25519 hex or
        RSA PEM, as given to `relay add`) turns on license-file verification.
        `signing_public_key` (the relay's key, as `relay signing-key new` prints it: hex or PEM)
        makes every response's ``ed25519`` signature, bound to a fresh `Relay-Nonce`, required.
        `node_token` is sent as ``Authorization: Bearer <token>`` (`serve --node-token-file`).
        `url` may be a list of replicas sharing one database (relay-postgres): each request goes
        to the one that answered last, and to the next on a connection error or a 5xx answer.
        """
        if not 0 < heartbeat_fraction < 1:
            raise ConfigurationError(
                f"heartbeat_fraction must be between 0 and 1 (default 1/3), got {heartbeat_fraction!r}"
            )
        self.endpoints = parse_endpoints(url)
        self.endpoint = self.endpoints[0]
        if pool and not header_value(pool):
            raise ConfigurationError(
                f"pool {pool!r} cannot be sent in the Relay-Pool header, which carries printable "
                "ASCII only, without outer spaces: name the pool that way (`relay add --pool`)"
            )
        self.pool = pool or None
        self.fingerprint = fingerprints.validate(
            fingerprint if fingerprint is not None else fingerprints.machine(pool=self.pool)
        )
        self.heartbeat_fraction = heartbeat_fraction
        self.release_timeout = _positive("release_timeout", release_timeout)
        self.release_on_signal = release_on_signal
        verifier: LicenseVerifier | None = None
        if public_key:
            from relay_core.keygen import KeygenVerifier  # the crypto stack, only when asked for

            try:
                verifier = KeygenVerifier(public_key)
            except InvalidPublicKeyError as exc:
                raise ConfigurationError(
                    f"public_key is not usable ({exc}): pass your Keygen account's public key, "
                    "Ed25519 as 64 hex digits or RSA as PEM, as given to `relay add`"
                ) from None
        response_key = None
        if signing_public_key:
            from relay_core.signing import load_public_key

            try:
                response_key = load_public_key(signing_public_key)
            except ValueError as exc:
                raise ConfigurationError(
                    f"signing_public_key is not usable ({exc}): pass the relay's public key as "
                    "`relay signing-key show` prints it, 64 hex digits or PEM"
                ) from None
        if node_token is not None and not (node_token and sendable(node_token)):
            raise ConfigurationError(
                "node_token must be one line of printable ASCII without spaces, as in the relay's "
                "node token file"
            )
        wire = Wire(
            signing_public_key=response_key,
            node_token=node_token,
            pool=self.pool,
            signing_secret=signing_secret or None,
            tolerance=_positive("signature_tolerance", signature_tolerance),
            verifier=verifier,
            wall_clock=wall_clock,
            endpoint=self.endpoint,
        )
        self._engine = Engine(
            wire=wire,
            clock=clock,
            rng=rng if rng is not None else random.Random(),
            retry_base=_positive("retry_base", retry_base),
            retry_max=max(_positive("retry_max", retry_max), retry_base),
        )
        self.timeout = _positive("timeout", timeout)
        self._transport = (
            HttpTransport(self.endpoint, timeout=self.timeout)
            if len(self.endpoints) == 1
            else FailoverTransport(self.endpoints, timeout=self.timeout)
        )
        self._sleep: SleepT = sleep if sleep is not None else self._default_sleep()
        self._holding: LeaseBase | None = None
        self._claiming = False  # a claim is in flight: a second one would take over its seat
        self._holding_lock = threading.Lock()

    def _default_sleep(self) -> SleepT:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return self.endpoint.url

    def _check_wait(self, wait: float | timedelta | None) -> float | None:
        if wait is None:
            return None
        if isinstance(wait, timedelta):
            wait = wait.total_seconds()
        if wait < 0 or math.isnan(wait):
            raise ConfigurationError(
                f"wait must be a number of seconds >= 0 (or None), got {wait!r}"
            )
        return wait

    def _reserve(self) -> LeaseBase | None:
        """Mark a claim as started, or raise if a claim or a live lease holds the fingerprint.

        Returns a lost lease still to be released before the new claim (its seat lock with it).
        """
        with self._holding_lock:
            first = self._holding
        lost = first is not None and first.lost  # outside the lock: may run on_lost
        with self._holding_lock:
            if self._claiming:
                raise ConfigurationError(
                    f"this client is already claiming a lease for fingerprint "
                    f"{self.fingerprint[:16]!r} in another thread or task, and one fingerprint "
                    "holds one seat: use that lease, or another client with another fingerprint"
                )
            held = self._holding
            if held is not None and not held.released and not (lost and held is first):
                raise ConfigurationError(
                    f"this client already holds a lease for fingerprint {self.fingerprint[:16]!r}, "
                    "and one fingerprint holds one seat: release it first, or use another client "
                    "with another fingerprint"
                )
            self._claiming = True
            self._holding = None
        return held if held is not None and not held.released else None

    def _unreserve(self) -> None:
        with self._holding_lock:
            self._claiming = False

    def _take_seat(self) -> SeatLock:
        # A lease of this process still ending has at most a heartbeat and a give-back to finish.
        urls = [e.url for e in self.endpoints]
        return seatlock.take(urls, self.pool, self.fingerprint, patience=2 * self.timeout)

    def _held(self, lease: LeaseBase) -> None:
        with self._holding_lock:
            self._holding = lease
            self._claiming = False
        exits.hold(lease, signals=self.release_on_signal)

    def close(self) -> None:
        """Close idle connections. Held leases stay held; release them first."""
        self._transport.close()

    def __repr__(self) -> str:
        urls = " ".join(e.url for e in self.endpoints)
        return f"<{type(self).__name__} {urls} pool={self.pool!r}>"


class RelayClient(ClientBase[Callable[[float], None]]):
    """Claims, heartbeats and releases leases with blocking I/O and a heartbeat thread.

    Thread-safe. One client holds at most one lease at a time (one fingerprint, one seat).
    `clock` (monotonic), `wall_clock` (Unix seconds, for signatures), `sleep` and `rng` are
    injectable for tests.
    """

    def _default_sleep(self) -> Callable[[float], None]:
        return time.sleep

    def health(self) -> None:
        """Return if the relay answers its health check (signed, when a secret is set); else raise."""
        run_blocking(self._engine.health(), self._transport.send, self._sleep)

    def acquire(
        self, *, wait: float | timedelta | None = None, on_lost: OnLost | None = None
    ) -> Lease:
        """Claim a seat and start heartbeating; the caller must `release()` it.

        A lease of this client that was lost is released first. Raises `ConfigurationError`
        while this client holds a live lease or another thread is claiming, and
        `LeaseConflictError` while another live client or process holds the fingerprint.

        `wait`: seconds (or a `timedelta`) to keep trying while no seat is free (410) or the
        relay is unreachable, queued at the relay (``Prefer: wait``) when it supports that;
        None (the default) fails at once with `NoSeatError`.
        """
        wait = self._check_wait(wait)
        lost = self._reserve()
        try:
            if lost is not None:
                with contextlib.suppress(ClientError):  # it is lost: only its lock matters
                    cast(Lease, lost).release()
            seat_lock = self._take_seat()
            try:
                flow = self._engine.acquire(self.fingerprint, wait)
                grant, sent_at = run_blocking(flow, self._transport.send, self._sleep)
            except BaseException:
                seat_lock.release()
                raise
        except BaseException:
            self._unreserve()
            raise
        lease = Lease(
            engine=self._engine,
            transport=self._transport,
            fingerprint=self.fingerprint,
            grant=grant,
            sent_at=sent_at,
            heartbeat_fraction=self.heartbeat_fraction,
            release_timeout=self.release_timeout,
            on_lost=on_lost,
            sleep=self._sleep,
            seat_lock=seat_lock,
        )
        self._held(lease)
        lease._start()
        return lease

    @contextlib.contextmanager
    def lease(
        self, *, wait: float | timedelta | None = None, on_lost: OnLost | None = None
    ) -> Iterator[Lease]:
        """``with client.lease() as lease:`` — claimed on entry, released on any exit."""
        held = self.acquire(wait=wait, on_lost=on_lost)
        try:
            yield held
        finally:
            try:
                held.release()
            except ClientError as exc:
                warn_release_failed(exc)

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
