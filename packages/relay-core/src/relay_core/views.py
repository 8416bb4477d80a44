"""What an operator sees: the active leases and each pool's counts (`relay leases`, the admin
API, the Prometheus gauges). Values only; `Relay.list_leases` and `Relay.pool_stats` build them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import attrs

from .model import License

__all__ = ["ActiveLease", "LicenseRow", "PoolStats"]


@attrs.frozen
class ActiveLease:
    """A license held by an active node. Times are Unix seconds; `expires_at` is when the node
    is culled without another heartbeat (None when heartbeats are off: leases never expire)."""

    fingerprint: str
    node_id: int
    license: str
    """The license's id (its GUID), as `relay ls` shows it."""
    pool: str | None
    claimed_at: int | None
    last_heartbeat_at: int | None
    expires_at: int | None


@attrs.frozen
class PoolStats:
    """One pool's licenses by state; `pool` None is the global pool.

    `free` licenses can be leased now (not leased, file not expired); `expired` counts every
    license whose file has expired, leased or not; `nodes_active` the active nodes holding one of
    the pool's licenses.
    """

    pool: str | None
    licenses: int
    leased: int
    free: int
    expired: int
    nodes_active: int
    waiting: int | None = None
    """Claims waiting for a seat in this process (``Prefer: wait``); None without a queue."""


@attrs.frozen
class LicenseRow:
    """A license as `relay ls --json` and `GET /v1/admin/licenses` show it: Keygen Relay's
    columns, then ours; times as UTC datetimes (RFC 3339 on the wire)."""

    id: str
    pool: str | None
    claims: int
    node_id: int | None
    last_claimed_at: datetime | None
    last_released_at: datetime | None
    file_expires_at: datetime | None

    @classmethod
    def of(cls, lic: License, pool: str | None) -> LicenseRow:
        return cls(
            lic.guid,
            pool,
            lic.claims,
            lic.node_id,
            _utc(lic.last_claimed_at),
            _utc(lic.last_released_at),
            _utc(lic.file_expires_at),
        )


def _utc(timestamp: int | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
