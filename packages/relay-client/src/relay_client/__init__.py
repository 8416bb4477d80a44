"""relay-client: hold a Relay floating-license lease in three lines.

    from relay_client import RelayClient
    client = RelayClient("http://relay.internal:6349", pool="prod", signing_secret=...)
    with client.lease() as lease:
        ...  # lease.license_key, lease.license_file, lease.license

The lease is claimed on entry, kept alive by a heartbeat, checked for loss (`lease.lost`,
`lease.check()`, `on_lost`), and given back on exit, on exceptions, on SIGTERM and at interpreter
exit. `AsyncRelayClient` is the same for asyncio.
"""

from . import fingerprint
from .__about__ import VERSION as __version__
from .aio import AsyncLease, AsyncRelayClient
from .client import RelayClient
from .errors import (
    ClientError,
    ConfigurationError,
    LeaseConflictError,
    LeaseLostError,
    LicenseVerificationError,
    NodeRefusedError,
    NoSeatError,
    PoolRejectedError,
    RateLimitedError,
    RelayUnavailableError,
    ResponseSignatureError,
    UnexpectedResponseError,
)
from .lease import Lease, OnLost

__all__ = [
    "AsyncLease",
    "AsyncRelayClient",
    "ClientError",
    "ConfigurationError",
    "Lease",
    "LeaseConflictError",
    "LeaseLostError",
    "LicenseVerificationError",
    "NoSeatError",
    "NodeRefusedError",
    "OnLost",
    "PoolRejectedError",
    "RateLimitedError",
    "RelayClient",
    "RelayUnavailableError",
    "ResponseSignatureError",
    "UnexpectedResponseError",
    "__version__",
    "fingerprint",
]
