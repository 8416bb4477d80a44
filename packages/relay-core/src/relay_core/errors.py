"""The one exception tree of Relay.

Every message is a single line meant for a user; adapters translate foreign exceptions into these
at their edge (``raise StorageError(...) from exc``), so callers never see ``sqlite3.Error``.

::

    RelayError
    ├── LicenseFileError            a license or machine file cannot be used
    │   ├── LicenseFileNotFoundError
    │   ├── LicenseFileReadError
    │   ├── LicenseKeyMismatchError "license key does not match the license file"
    │   ├── VerificationError       "license verification failed: license file is invalid"
    │   └── DecryptionError         "license decryption failed: <reason>"
    ├── InvalidPublicKeyError
    ├── DuplicateLicenseError
    ├── LicenseNotFoundError
    ├── PoolNotFoundError
    ├── ClaimConflictError          HTTP 409
    ├── NoLicensesAvailableError    HTTP 410
    ├── ClaimNotFoundError          HTTP 404
    │   └── LeaseNotFoundError      a force-release names a fingerprint holding nothing
    ├── BulkError                   several item errors of one all-or-nothing call
    ├── SignatureError              a Relay-Signature header is missing, malformed or wrong
    └── StorageError                the backend failed
        ├── StorageBusyError        locked beyond the busy timeout
        ├── StorageCorruptError     not a database, or a damaged one
        ├── StorageAccessError      the path cannot be created, read or written
        ├── StorageUnavailableError the database server cannot be reached (HTTP 503)
        └── SchemaVersionError      written by a newer Relay than this one
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

__all__ = [
    "BulkError",
    "ClaimConflictError",
    "ClaimNotFoundError",
    "DecryptionError",
    "DuplicateLicenseError",
    "FileReason",
    "InvalidPublicKeyError",
    "LicenseFileError",
    "LicenseFileNotFoundError",
    "LicenseFileReadError",
    "LicenseKeyMismatchError",
    "LeaseNotFoundError",
    "LicenseNotFoundError",
    "NoLicensesAvailableError",
    "PoolNotFoundError",
    "RelayError",
    "SchemaVersionError",
    "SignatureError",
    "StorageAccessError",
    "StorageBusyError",
    "StorageCorruptError",
    "StorageError",
    "StorageUnavailableError",
    "VerificationError",
]


class RelayError(Exception):
    """Raised for every failure Relay reports to a user; `str()` is the one-line message."""


class FileReason(enum.Enum):
    """Why a license or machine file was rejected; values are keygen-go's texts for licenses."""

    INVALID = "is invalid"
    NOT_ENCRYPTED = "is not encrypted"
    NOT_SUPPORTED = "is not supported"
    CLOCK_DESYNC = "clock"
    EXPIRED = "is expired"


class LicenseFileError(RelayError):
    """Raised when a license or machine file cannot be read, verified or decrypted."""


class LicenseFileNotFoundError(LicenseFileError):
    """Raised when the path of a license file does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"license file not found at '{path}'")
        self.path = path


class LicenseFileReadError(LicenseFileError):
    """Raised when a license file exists but cannot be read (a directory, no permission)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"failed to read license file: {reason}")
        self.path = path


class LicenseKeyMismatchError(LicenseFileError):
    """Raised when the key given with a license file is not the key the file itself holds.

    An encrypted file proves its key by decrypting; an unencrypted (``base64+``) one does not,
    so a wrong key would be stored and handed to nodes with the file.
    """

    def __init__(self, path: str | None = None) -> None:
        where = "" if path is None else f" '{path}'"
        super().__init__(f"license key does not match the license file{where}")
        self.path = path


def _file_text(kind: str, reason: FileReason) -> str:
    if reason is FileReason.CLOCK_DESYNC:
        return "system clock is out of sync"
    return f"{kind} file {reason.value}"


class VerificationError(LicenseFileError):
    """Raised when a file's signature does not verify (or the file cannot be parsed at all)."""

    def __init__(self, detail: str, *, kind: str = "license") -> None:
        prefix = (
            f"{kind} verification failed"
            if kind == "license"
            else f"{kind} file could not be verified"
        )
        super().__init__(f"{prefix}: {kind} file is invalid ({detail})")
        self.reason = FileReason.INVALID
        self.detail = detail
        self.kind = kind


class DecryptionError(LicenseFileError):
    """Raised when a verified file cannot be decrypted or fails its clock checks."""

    def __init__(
        self, reason: FileReason, detail: str | None = None, *, kind: str = "license"
    ) -> None:
        text = _file_text(kind, reason)
        if kind == "license":
            message = f"license decryption failed: {text}"
        elif reason is FileReason.CLOCK_DESYNC:
            message = f"{kind} file is desynced with system clock: {text}"
        else:
            message = f"{kind} file could not be decrypted: {text}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)
        self.reason = reason
        self.detail = detail
        self.kind = kind


class InvalidPublicKeyError(RelayError):
    """Raised when a public key is empty or not a usable Ed25519 hex or RSA PEM key."""


class DuplicateLicenseError(RelayError):
    """Raised when a license's GUID, key or file is already stored."""

    def __init__(self, guid: str | None = None) -> None:
        super().__init__("license with the provided key already exists")
        self.guid = guid


class LicenseNotFoundError(RelayError):
    """Raised when no stored license has the given GUID (in the given pool)."""

    def __init__(self, guid: str) -> None:
        super().__init__(f"license {guid}: license not found")
        self.guid = guid


class PoolNotFoundError(RelayError):
    """Raised when a named pool does not exist (pools are created only by adding licenses)."""

    def __init__(self, name: str) -> None:
        super().__init__("pool not found")
        self.name = name


class ClaimConflictError(RelayError):
    """Raised when a node re-claims with heartbeats off, or holds a lease in another pool."""

    def __init__(self) -> None:
        super().__init__("failed to claim license due to conflict")


class NoLicensesAvailableError(RelayError):
    """Raised when the pool has no free license whose file is still valid."""

    def __init__(self) -> None:
        super().__init__("no licenses available")


class ClaimNotFoundError(RelayError):
    """Raised when a release names a node that holds no lease in that pool."""

    def __init__(self) -> None:
        super().__init__("claim not found")


class LeaseNotFoundError(ClaimNotFoundError):
    """Raised when an operator force-releases a fingerprint that holds no lease (in that pool)."""

    def __init__(self, fingerprint: str, pool: str | None = None) -> None:
        RelayError.__init__(
            self,
            f"no lease held by node {fingerprint}" + (f" in pool {pool}" if pool else ""),
        )
        self.fingerprint = fingerprint
        self.pool = pool


class BulkError(RelayError):
    """Raised when any item of an all-or-nothing bulk call fails; nothing was changed.

    `errors` holds one (item, error) pair per failing item, in input order.
    """

    def __init__(self, errors: Sequence[tuple[str, RelayError]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(error) for _, error in self.errors))


class SignatureError(RelayError):
    """Raised when a response's Relay-Signature is missing, malformed, stale or wrong."""


class StorageError(RelayError):
    """Raised when the storage backend fails for a reason other than the ones below."""


class StorageBusyError(StorageError):
    """Raised when the store stays locked by another writer beyond its busy timeout."""


class StorageCorruptError(StorageError):
    """Raised when the database file is not a database or is damaged."""


class StorageAccessError(StorageError):
    """Raised when the database path cannot be created, opened or written."""


class StorageUnavailableError(StorageError):
    """Raised when a database server cannot be reached or dropped the connection; transient."""


class SchemaVersionError(StorageError):
    """Raised when the database was written by a newer, unknown schema version."""
