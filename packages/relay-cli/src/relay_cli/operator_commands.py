"""`relay leases` and `relay release`: the operator's view of who holds what, and a forced end.

Both work on the database directly, so they run beside a live `relay serve` (SQLite serialises
the writes; the server sees a release on its next transaction). JSON output goes through the
one converter (`Runtime.converter`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from .licenses import Injected, require
from .runtime import UsageError
from .server import resolve_ttl
from .tables import choose_layout, render, rfc3339
from .values import UnsetFlag, env_str

if TYPE_CHECKING:
    from relay_core import ActiveLease

__all__ = ["LEASE_HEADERS", "leases", "read_secret_file", "release", "resolve_admin_token"]

LEASE_HEADERS = (
    "fingerprint",
    "node_id",
    "license",
    "pool",
    "claimed_at",
    "last_heartbeat_at",
    "expires_at",
)


def _row(lease: ActiveLease) -> list[str | int | None]:
    return [
        lease.fingerprint,
        lease.node_id,
        lease.license,
        lease.pool,
        rfc3339(lease.claimed_at),
        rfc3339(lease.last_heartbeat_at),
        rfc3339(lease.expires_at),
    ]


def leases(
    *,
    pool: str | None = None,
    ttl: Annotated[str | None, Parameter(name=["--ttl", "-t"])] = None,
    plain: UnsetFlag = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    runtime: Injected,
) -> int:
    """print the active leases: which node holds which license, and until when

    Reads the database directly; works while `relay serve` runs. Times are UTC (Unix seconds
    with --json).

    Parameters
    ----------
    pool
        only leases of this pool (default: every pool) [$RELAY_POOL=prod]
    ttl
        the server's time-to-live, to compute expires_at: 30s to 87600h (default 1m0s)
        [$RELAY_LEASE_TTL=60s]
    plain
        display the table in plain text format [$RELAY_PLAIN=1]; the default off a terminal
    as_json
        print a JSON array instead of a table
    """
    env = runtime.environ
    ttl_s = resolve_ttl(env, ttl)
    pool = pool if pool is not None else env_str(env, "RELAY_POOL")
    found = runtime.relay(ttl=ttl_s).list_leases(pool or None)
    if as_json:
        runtime.out.plain(json.dumps(runtime.converter.unstructure(found), indent=2))
        return 0
    if not found:
        runtime.out.success("no active leases")
        return 0
    layout = choose_layout(plain=plain, as_json=False, environ=env, out=runtime.out)
    render(LEASE_HEADERS, [_row(lease) for lease in found], layout, runtime.out)
    return 0


def release(
    *,
    fingerprint: str | None = None,
    pool: str | None = None,
    runtime: Injected,
) -> int:
    """force-release a node's lease: the license is free at once and the node deactivated

    Writes the audit rows of a release (license.released, node.deactivated). Works while
    `relay serve` runs; the node's next heartbeat is a new claim (201 if a seat is free), which
    relay-client gives back and reports as a lost lease.

    Parameters
    ----------
    fingerprint
        the node whose lease to end [required]
    pool
        only if its lease is in this pool
    """
    require(fingerprint=fingerprint)
    if not fingerprint:
        raise UsageError('invalid argument "" for "--fingerprint" flag: a fingerprint is required')
    freed = runtime.relay().force_release(fingerprint, pool or None)
    runtime.out.success(f"lease released successfully: {freed.guid} (node {fingerprint})")
    return 0


def read_secret_file(path: str, flag: str) -> str:
    """The secret in a file (e.g. a mounted Kubernetes secret), without surrounding whitespace;
    `UsageError` when it cannot be read or is empty."""
    from relay_core.small_files import FileError, read_text

    try:
        text = read_text(path).strip()
    except FileError as exc:
        raise UsageError(f'invalid argument "{path}" for "{flag}" flag: {exc}') from None
    if not text:
        raise UsageError(f'invalid argument "{path}" for "{flag}" flag: the file is empty')
    return text


def resolve_admin_token(
    environ: Mapping[str, str], *, admin_token: str | None, admin_token_file: str | None
) -> str | None:
    """--admin-token, else --admin-token-file, else $RELAY_ADMIN_TOKEN, else
    $RELAY_ADMIN_TOKEN_FILE; None (no admin API) when none is set. Both flags at once is an
    error: which one was meant cannot be known."""
    if admin_token is not None and admin_token_file is not None:
        raise UsageError('flags "--admin-token" and "--admin-token-file" cannot be used together')
    if admin_token is not None:
        if not admin_token.strip():
            raise UsageError('invalid argument "" for "--admin-token" flag: the token is empty')
        return admin_token
    if admin_token_file is not None:
        return read_secret_file(admin_token_file, "--admin-token-file")
    token = env_str(environ, "RELAY_ADMIN_TOKEN")
    if token:
        return token
    path = env_str(environ, "RELAY_ADMIN_TOKEN_FILE")
    return read_secret_file(path, "RELAY_ADMIN_TOKEN_FILE") if path else None
