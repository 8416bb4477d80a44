"""relay-core: the domain of Relay, an offline floating-license server, and its ports.

Import-light on purpose: no storage, HTTP, CLI or crypto module is loaded by ``import relay_core``;
the Keygen verifier (`relay_core.keygen`) is imported when a license file is first verified.
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    BulkError,
    ClaimConflictError,
    ClaimNotFoundError,
    DecryptionError,
    DuplicateLicenseError,
    FileReason,
    InvalidPublicKeyError,
    LeaseNotFoundError,
    LicenseFileError,
    LicenseFileNotFoundError,
    LicenseFileReadError,
    LicenseKeyMismatchError,
    LicenseNotFoundError,
    NoLicensesAvailableError,
    PoolNotFoundError,
    RelayError,
    SchemaVersionError,
    SignatureError,
    StorageAccessError,
    StorageBusyError,
    StorageCorruptError,
    StorageError,
    StorageUnavailableError,
    VerificationError,
)
from .events import ClaimResult, NoEvents, RelayEvents, ReleaseResult
from .model import (
    AuditEntry,
    AuditRecord,
    ClaimStatus,
    EntityType,
    EventType,
    Lease,
    License,
    LicenseFile,
    NewLicense,
    Node,
    Pool,
    Strategy,
)
from .ports import (
    ANY_POOL,
    AuditQuery,
    Clock,
    CombiningStore,
    Culled,
    LicenseVerifier,
    PoolCounts,
    Store,
    Transaction,
)
from .service import CullReport, LicenseSource, Relay, SystemClock
from .views import ActiveLease, LicenseRow, PoolStats
from .waiting import Ticket, WaitQueue

try:
    __version__ = version("relay-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ANY_POOL",
    "ActiveLease",
    "AuditEntry",
    "AuditQuery",
    "AuditRecord",
    "BulkError",
    "ClaimConflictError",
    "ClaimNotFoundError",
    "ClaimResult",
    "ClaimStatus",
    "Clock",
    "CombiningStore",
    "Culled",
    "CullReport",
    "DecryptionError",
    "DuplicateLicenseError",
    "EntityType",
    "EventType",
    "FileReason",
    "InvalidPublicKeyError",
    "Lease",
    "LeaseNotFoundError",
    "License",
    "LicenseFile",
    "LicenseFileError",
    "LicenseFileNotFoundError",
    "LicenseFileReadError",
    "LicenseKeyMismatchError",
    "LicenseNotFoundError",
    "LicenseRow",
    "LicenseSource",
    "LicenseVerifier",
    "NewLicense",
    "NoEvents",
    "NoLicensesAvailableError",
    "Node",
    "Pool",
    "PoolCounts",
    "PoolNotFoundError",
    "PoolStats",
    "Relay",
    "RelayError",
    "RelayEvents",
    "ReleaseResult",
    "SchemaVersionError",
    "SignatureError",
    "StorageAccessError",
    "StorageBusyError",
    "StorageCorruptError",
    "StorageError",
    "StorageUnavailableError",
    "Store",
    "Strategy",
    "SystemClock",
    "Ticket",
    "Transaction",
    "VerificationError",
    "WaitQueue",
    "__version__",
]
