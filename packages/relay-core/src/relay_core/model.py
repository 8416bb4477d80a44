"""Value objects of the domain.

Timestamps are integer Unix seconds (UTC), as in Keygen Relay's database, so every adapter can
store them unchanged and compare them numerically.
"""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "AuditEntry",
    "AuditRecord",
    "AuditRow",
    "ClaimStatus",
    "DenialCount",
    "EntityType",
    "EventType",
    "Lease",
    "License",
    "LicenseFile",
    "NewLicense",
    "Node",
    "Pool",
    "Strategy",
]


class Strategy(enum.StrEnum):
    """The order in which a free license is picked: earliest added, latest added, or at random."""

    FIFO = "fifo"
    LIFO = "lifo"
    RAND = "rand"


class EventType(enum.IntEnum):
    """Audit event ids, fixed by Keygen Relay's `event_types` table."""

    UNKNOWN = 0
    LICENSE_ADDED = 1
    LICENSE_REMOVED = 2
    LICENSE_LEASED = 3
    LICENSE_LEASE_EXTENDED = 4
    LICENSE_RELEASED = 5
    LICENSE_LEASE_EXPIRED = 6
    NODE_ACTIVATED = 7
    NODE_HEARTBEAT_PING = 8
    NODE_DEACTIVATED = 9
    NODE_CULLED = 10
    POOL_ADDED = 11

    @property
    def label(self) -> str:
        """The dotted name stored in `event_types.name`, e.g. ``license.leased``."""
        return _EVENT_LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> EventType:
        for event, text in _EVENT_LABELS.items():
            if text == label:
                return event
        raise ValueError(f"unknown event type: {label!r}")


_EVENT_LABELS: dict[EventType, str] = {
    EventType.UNKNOWN: "unknown",
    EventType.LICENSE_ADDED: "license.added",
    EventType.LICENSE_REMOVED: "license.removed",
    EventType.LICENSE_LEASED: "license.leased",
    EventType.LICENSE_LEASE_EXTENDED: "license.lease_extended",
    EventType.LICENSE_RELEASED: "license.released",
    EventType.LICENSE_LEASE_EXPIRED: "license.lease_expired",
    EventType.NODE_ACTIVATED: "node.activated",
    EventType.NODE_HEARTBEAT_PING: "node.heartbeat_ping",
    EventType.NODE_DEACTIVATED: "node.deactivated",
    EventType.NODE_CULLED: "node.culled",
    EventType.POOL_ADDED: "pool.added",
}


class EntityType(enum.IntEnum):
    """Audit entity ids, fixed by Keygen Relay's `entity_types` table."""

    UNKNOWN = 0
    LICENSE = 1
    NODE = 2
    POOL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class ClaimStatus(enum.Enum):
    """How a successful claim ended: a new lease (HTTP 201) or a heartbeat extension (202)."""

    CREATED = "created"
    EXTENDED = "extended"


@attrs.frozen
class LicenseFile:
    """A verified and decrypted Keygen license (or machine) file."""

    raw: bytes
    guid: str
    key: str
    issued: int | None
    expiry: int | None
    ttl: int
    dataset: dict[str, object] = attrs.field(eq=False, repr=False)

    @property
    def expires_at(self) -> int | None:
        """When the file stops being valid; None when it never does (`meta.ttl` is zero)."""
        return self.expiry if self.ttl else None


@attrs.frozen
class NewLicense:
    """What the store needs to insert a license row."""

    guid: str
    file: bytes
    key: str
    file_expires_at: int | None


@attrs.frozen
class Pool:
    id: int
    name: str
    created_at: int


@attrs.frozen
class License:
    """A stored license; `node_id` is the holder's row id when leased, `pool_id` None = global."""

    id: int
    guid: str
    file: bytes = attrs.field(repr=False)
    key: str
    claims: int
    last_claimed_at: int | None
    last_released_at: int | None
    node_id: int | None
    pool_id: int | None
    created_at: int
    file_expires_at: int | None = None

    @property
    def leased(self) -> bool:
        return self.node_id is not None

    def file_expired(self, now: int) -> bool:
        """True once the license file's own validity (`meta.expiry`) has passed."""
        return self.file_expires_at is not None and now > self.file_expires_at


@attrs.frozen
class Node:
    """A client machine, identified by its fingerprint; active while `deactivated_at` is None."""

    id: int
    fingerprint: str
    last_heartbeat_at: int | None
    created_at: int
    deactivated_at: int | None

    @property
    def active(self) -> bool:
        return self.deactivated_at is None


@attrs.frozen
class Lease:
    """The answer to a successful claim."""

    status: ClaimStatus
    license: License
    node: Node
    expires_at: int
    expires_in: int


@attrs.frozen
class AuditEntry:
    """One audit row to write."""

    event: EventType
    entity_type: EntityType
    entity_id: int
    pool_id: int | None
    created_at: int


@attrs.frozen
class AuditRecord:
    """One audit row as read back, with the entity and pool named for humans.

    `entity_label` is the license GUID, node fingerprint or pool name, or None when the entity
    row no longer exists (a removed license).
    """

    id: int
    event: EventType
    entity_type: EntityType
    entity_id: int
    entity_label: str | None
    pool_id: int | None
    pool_name: str | None
    created_at: int


AuditRow = tuple[int, int, int | None, int]
"""One audit row as a report reads it: ``(event, entity_id, pool_id, created_at)``, with
`event` an `EventType` value. A bare tuple, not an object, because a year of lease history is
millions of them: a store hands over its cursor's rows as they come, and the replay compares
plain ints (hashing or building objects per row would dominate the report's time). No row
id: every column costs about 0.13 us per row in CPython's `sqlite3`, and pages end on whole
seconds instead (`scan_audit`)."""


@attrs.frozen
class DenialCount:
    """Claims answered 410 (no free license) in one pool during the minute starting at `minute`.

    Kept apart from the audit log so that a node looping on an empty pool adds one counter per
    minute, not one row per request.
    """

    pool_id: int | None
    minute: int
    count: int
