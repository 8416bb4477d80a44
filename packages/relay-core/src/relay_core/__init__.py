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
    LicenseFileError,
    LicenseFileNotFoundError,
    LicenseFileReadError,
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
    Store,
    Transaction,
)
from .service import CullReport, LicenseSource, Relay, SystemClock

try:
    __version__ = version("relay-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ANY_POOL",
    "AuditEntry",
    "AuditQuery",
    "AuditRecord",
    "BulkError",
    "ClaimConflictError",
    "ClaimNotFoundError",
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
    "License",
    "LicenseFile",
    "LicenseFileError",
    "LicenseFileNotFoundError",
    "LicenseFileReadError",
    "LicenseNotFoundError",
    "LicenseSource",
    "LicenseVerifier",
    "NewLicense",
    "NoLicensesAvailableError",
    "Node",
    "Pool",
    "PoolNotFoundError",
    "Relay",
    "RelayError",
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
    "Transaction",
    "VerificationError",
    "__version__",
]
