"""The client's exceptions: one tree under `relay_core.RelayError`.

Every message says what happened and what to do about it, in one line. Where a client error is
the remote twin of a relay-core domain error (410, 409, a bad signature) it also subclasses that
error, so ``except relay_core.NoLicensesAvailableError`` works on both sides of the wire.

::

    RelayError (relay_core)
    └── ClientError                     anything relay_client raises
        ├── ConfigurationError          bad URL, fingerprint, machine id, option
        ├── RelayUnavailableError       the relay cannot be reached or timed out
        ├── UnexpectedResponseError     an answer outside the protocol (500, 3xx, bad JSON)
        │   └── RateLimitedError        429: too many new nodes from this host (Retry-After)
        ├── PoolRejectedError           400: pool unknown or not the one the relay serves
        ├── NoSeatError                 410 (+ relay_core.NoLicensesAvailableError)
        ├── LeaseConflictError          409, or the fingerprint's lease is held by another live
        │                               process (+ relay_core.ClaimConflictError)
        ├── NodeRefusedError            401/403: no or a wrong node token, fingerprint not allowed
        ├── ResponseSignatureError      missing or bad Relay-Signature (+ relay_core.SignatureError)
        ├── LicenseVerificationError    the license file fails verification with `public_key`
        └── LeaseLostError              the lease ended without this client releasing it
"""

from __future__ import annotations

from relay_core import (
    ClaimConflictError,
    NoLicensesAvailableError,
    RelayError,
    SignatureError,
)

__all__ = [
    "ClientError",
    "ConfigurationError",
    "LeaseConflictError",
    "LeaseLostError",
    "LicenseVerificationError",
    "NoSeatError",
    "NodeRefusedError",
    "PoolRejectedError",
    "RateLimitedError",
    "RelayUnavailableError",
    "ResponseSignatureError",
    "UnexpectedResponseError",
]


class ClientError(RelayError):
    """Raised for every failure of the client; `str()` is one line: what happened, what to do."""

    def __init__(self, message: str) -> None:
        # Called explicitly: some subclasses also inherit relay-core errors whose __init__
        # takes no message.
        RelayError.__init__(self, message)


class ConfigurationError(ClientError):
    """Raised when the client is given an unusable URL, fingerprint, machine id or option."""


class RelayUnavailableError(ClientError):
    """Raised when the relay cannot be reached, drops the connection, or does not answer in time."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the relay at {url} ({reason}): "
            "check the URL and that `relay serve` is running and reachable"
        )
        self.url = url
        self.reason = reason


class UnexpectedResponseError(ClientError):
    """Raised when the relay answers outside the protocol (500, a redirect, a malformed body)."""

    def __init__(self, what: str, status: int, detail: str) -> None:
        super().__init__(
            f"the relay answered {what} with {status} {detail}: "
            "see the relay's log, and check the URL points at a relay"
        )
        self.status = status
        self.detail = detail


class RateLimitedError(UnexpectedResponseError):
    """Raised on 429: this host took the relay's limit of new seats per minute.

    An `UnexpectedResponseError`, so `lease(wait=...)` retries it like a busy relay.
    """

    def __init__(self, what: str, retry_after: int | None) -> None:
        when = f"in {retry_after}s" if retry_after is not None else "later"
        ClientError.__init__(
            self,
            f"the relay answered {what} with 429 (too many new nodes from this address): retry "
            f"{when}, or ask the operator to raise --max-new-nodes-per-minute",
        )
        self.status = 429
        self.detail = "too many new nodes from this address"
        self.retry_after = retry_after


class NodeRefusedError(ClientError):
    """Raised on 401 (no or a wrong node token) and 403 (fingerprint not on the allow-list)."""

    def __init__(self, status: int, fingerprint: str | None, reason: str) -> None:
        if status == 401:
            advice = "set node_token to a token from the relay's --node-token-file"
        else:
            name = _short(fingerprint) if fingerprint is not None else "this fingerprint"
            advice = f"ask the operator to add {name} to the relay's --allow-fingerprints file"
        super().__init__(f"the relay refused this node ({status} {reason}): {advice}")
        self.status = status
        self.reason = reason


class PoolRejectedError(ClientError):
    """Raised on 400: the pool does not exist, or differs from the pool the relay is serving."""

    def __init__(self, pool: str | None, reason: str) -> None:
        name = repr(pool) if pool else "(the global pool)"
        if reason == "unsupported pool header":
            advice = "the relay serves one fixed pool (--pool): use that pool name, or no pool"
        else:
            advice = "add licenses to that pool first (`relay add --pool NAME`), or fix the name"
        super().__init__(f"the relay rejected pool {name} ({reason}): {advice}")
        self.pool = pool
        self.reason = reason


class NoSeatError(ClientError, NoLicensesAvailableError):
    """Raised on 410 when no license is free, after waiting `wait` seconds if that was asked for."""

    def __init__(self, pool: str | None, waited: float) -> None:
        name = repr(pool) if pool else "the global pool"
        how = f"after waiting {waited:.0f}s" if waited > 0 else "and lease() was not asked to wait"
        super().__init__(
            f"no licenses available in {name} {how}: "
            "retry later, pass lease(wait=SECONDS), or add licenses to the relay"
        )
        self.pool = pool
        self.waited = waited


class LeaseConflictError(ClientError, ClaimConflictError):
    """Raised on 409 (the fingerprint holds a lease in another pool, or the relay has heartbeats
    off), and when another live process holds the fingerprint's lease (`in_use` says who)."""

    def __init__(self, fingerprint: str, in_use: str | None = None) -> None:
        if in_use is not None:
            super().__init__(f"fingerprint {_short(fingerprint)} is in use: {in_use}")
        else:
            super().__init__(
                f"failed to claim license due to conflict for fingerprint {_short(fingerprint)}: "
                "it already holds a lease in another pool (use a per-pool fingerprint such as "
                "fingerprint.machine(pool=...)) or the relay runs with --no-heartbeats"
            )
        self.fingerprint = fingerprint
        self.in_use = in_use


class ResponseSignatureError(ClientError, SignatureError):
    """Raised when a response's Relay-Signature is missing, malformed, stale or wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"untrusted response from the relay: {reason}; check that signing_secret equals the "
            "relay's --signing-secret, that signing_public_key is what `relay signing-key show` "
            "prints there, and that nothing else answers at that address"
        )
        self.reason = reason


class LicenseVerificationError(ClientError):
    """Raised when the license file handed out fails verification with the client's `public_key`."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the relay handed out a license file this client cannot trust ({reason}): check "
            "that public_key is your Keygen account's key; the seat was given back"
        )
        self.reason = reason


class LeaseLostError(ClientError):
    """Raised by `Lease.check()` (and passed to `on_lost`) once the lease ended without release."""

    def __init__(self, fingerprint: str, reason: str) -> None:
        super().__init__(
            f"the lease of fingerprint {_short(fingerprint)} was lost ({reason}): another node "
            "may hold the seat now; stop the licensed work and claim a new lease"
        )
        self.fingerprint = fingerprint
        self.reason = reason


def _short(fingerprint: str) -> str:
    """Fingerprints may be 64-hex HMACs or 1 KB strings: keep messages one readable line."""
    return repr(fingerprint if len(fingerprint) <= 24 else fingerprint[:20] + "...")
