"""Node-locking (spec Part B §6): the lock's constants and the unlock check run before a command.

A lock pins Relay to one machine: the machine file (a Keygen machine file signed by the
vendor's key, encrypted with license key + this machine's fingerprint) must verify, decrypt,
and name the same fingerprint, platform, hostname and private IPv4 as the lock and as this
machine. relay-core (and so `cryptography`) is imported only when a check runs.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .machine import PRIVATE_NETWORKS, Machine, MachineError

__all__ = ["LockConfig", "LockConfigError", "MachineRecord", "UnlockError", "unlock"]

log = logging.getLogger("relay.cli")

GOOS = frozenset(
    [
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
        "zos",
    ]
)
GOARCH = frozenset(
    [
        "386",
        "amd64",
        "arm",
        "arm64",
        "loong64",
        "mips",
        "mips64",
        "mips64le",
        "mipsle",
        "ppc64",
        "ppc64le",
        "riscv64",
        "s390x",
        "sparc64",
        "wasm",
    ]
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
FIELDS = (
    "public_key",
    "fingerprint",
    "platform",
    "hostname",
    "ip",
    "addr",
    "port",
    "signing_secret",
    "signing_key",
)


class LockConfigError(ValueError):
    """A lock constant is malformed; the message is one line naming the value and the rule."""


class UnlockError(Exception):
    """The machine file does not unlock Relay here; `str()` is spec §6.2's reason."""


def _text(values: Mapping[str, object], name: str) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LockConfigError(f"invalid {name.replace('_', '-')} {value!r}: expected a string")
    return value.strip()


def check_public_key(value: str) -> str:
    """Ed25519 hex (returned lowercase) or a PEM block that `relay_core.keygen` can load."""
    if value.startswith("-----"):
        return _check_pem_public_key(value)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise LockConfigError(
            f'invalid public key "{value}": expected 64 hex digits (an Ed25519 public key)'
        ) from None
    if len(raw) != 32:
        raise LockConfigError(
            f"invalid public key: {len(raw)} bytes, an Ed25519 public key has 32 (64 hex digits)"
        )
    return raw.hex()


def _check_pem_public_key(value: str) -> str:
    from relay_core.errors import InvalidPublicKeyError
    from relay_core.keygen import KeygenVerifier

    try:
        KeygenVerifier(value, kind="machine")
    except InvalidPublicKeyError as exc:
        raise LockConfigError(str(exc)) from None
    return value.strip() + "\n"


def check_fingerprint(value: str) -> str:
    if not _HEX64.match(value):
        raise LockConfigError(
            f'invalid fingerprint "{value}": expected the 64 lowercase hex digits that '
            "`relay fingerprint` prints on the customer's machine"
        )
    return value


def check_platform(value: str) -> str:
    goos, sep, goarch = value.partition("/")
    if not sep or goos not in GOOS or goarch not in GOARCH:
        raise LockConfigError(
            f'invalid platform "{value}": expected <os>/<arch> in Go\'s names, '
            "e.g. linux/amd64, linux/arm64, darwin/arm64, windows/amd64"
        )
    return value


def check_hostname(value: str) -> str:
    if len(value) > 253 or not _HOSTNAME.match(value):
        raise LockConfigError(f'invalid hostname "{value}": expected a host name like relay-01')
    return value


def check_ip(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise LockConfigError(f'invalid ip "{value}": expected an IPv4 address') from None
    if not any(address in net for net in PRIVATE_NETWORKS):
        raise LockConfigError(
            f'invalid ip "{value}": expected a private IPv4 address (10/8, 172.16/12 or '
            "192.168/16), the only kind a lock compares"
        )
    return str(address)


def check_addr(value: str) -> str:
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        if not _HOSTNAME.match(bare):
            raise LockConfigError(
                f'invalid addr "{value}": expected an IP address to bind to, e.g. 0.0.0.0'
            ) from None
    return value


def check_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LockConfigError(f"invalid port {value!r}: expected an integer from 1 to 65535")
    try:
        port = int(value)
    except ValueError:
        raise LockConfigError(
            f'invalid port "{value}": expected an integer from 1 to 65535'
        ) from None
    if not 1 <= port <= 65535:
        raise LockConfigError(f"invalid port {port}: expected an integer from 1 to 65535")
    return port


@attrs.frozen
class LockConfig:
    """The constants a lock wheel carries; "locked" means public key and fingerprint are set."""

    public_key: str
    fingerprint: str
    platform: str | None = None
    hostname: str | None = None
    ip: str | None = None
    addr: str | None = None
    port: int | None = None
    signing_secret: str | None = None
    signing_key: str | None = None
    """An Ed25519 private key (PKCS#8 PEM) `serve` must sign with (docs/security.md)."""

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> LockConfig:
        """Validate raw constants (flags of `relay lock build`, or an installed lock's mapping)."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise LockConfigError(f"unknown lock constant(s): {', '.join(unknown)}")
        public_key, fingerprint = _text(values, "public_key"), _text(values, "fingerprint")
        if public_key is None or fingerprint is None:
            raise LockConfigError("a lock needs both a public key and a fingerprint")
        platform, hostname, ip, addr = (
            _text(values, name) for name in ("platform", "hostname", "ip", "addr")
        )
        port = values.get("port")
        secret = values.get("signing_secret")
        if secret is not None and not isinstance(secret, str):
            raise LockConfigError("invalid signing-secret: expected a string")
        signing_key = values.get("signing_key")
        if signing_key is not None and (
            not isinstance(signing_key, str) or "-----BEGIN PRIVATE KEY-----" not in signing_key
        ):
            # Only the shape here: the key is parsed by `serve`, so other commands (and
            # `--help`) never import the crypto stack.
            raise LockConfigError("invalid signing-key: expected an Ed25519 private key in PEM")
        return cls(
            public_key=check_public_key(public_key),
            fingerprint=check_fingerprint(fingerprint),
            platform=None if platform is None else check_platform(platform),
            hostname=None if hostname is None else check_hostname(hostname),
            ip=None if ip is None else check_ip(ip),
            addr=None if addr is None else check_addr(addr),
            port=None if port is None or port == "" else check_port(port),
            signing_secret=secret or None,
            signing_key=signing_key or None,
        )

    def as_values(self) -> dict[str, Any]:
        """The constants as a plain mapping (what a lock wheel stores).

        `signing_key` is left out when unset, so a lock without one is byte for byte (and
        version for version) what it was before the constant existed.
        """
        values = attrs.asdict(self)
        if values["signing_key"] is None:
            del values["signing_key"]
        return values


@attrs.frozen
class MachineRecord:
    """What the decrypted machine file says about the machine it was issued for."""

    id: str
    fingerprint: str | None
    platform: str | None
    hostname: str | None
    ip: str | None


def _record(dataset: Mapping[str, Any]) -> MachineRecord:
    data = dataset.get("data")
    data = data if isinstance(data, Mapping) else {}
    attributes = data.get("attributes")
    attributes = attributes if isinstance(attributes, Mapping) else {}

    def text(name: str) -> str | None:
        value = attributes.get(name)
        return value if isinstance(value, str) else None

    return MachineRecord(
        id=str(data.get("id", "")),
        fingerprint=text("fingerprint"),
        platform=text("platform"),
        hostname=text("hostname"),
        ip=text("ip"),
    )


def unlock(
    lock: LockConfig,
    *,
    machine_file_path: str,
    license_key: str,
    machine: Machine,
    now: float,
) -> MachineRecord:
    """Run spec §6.2's checks in order; raise `UnlockError` with the first failing reason.

    One deliberate difference from Keygen Relay: this machine's fingerprint is compared with the
    lock's right after it is computed, so a copied installation reports a fingerprint mismatch
    instead of failing to decrypt a machine file that was encrypted for another machine.
    """
    log.info(
        "relay is node-locked fingerprint=%s platform=%s hostname=%s ip=%s",
        True,
        lock.platform is not None,
        lock.hostname is not None,
        lock.ip is not None,
    )
    log.debug(
        "locker config path=%s license_key=%s",
        machine_file_path,
        "<set>" if license_key else "<empty>",
    )
    if not machine_file_path:
        raise UnlockError("machine file path is required")
    if not license_key:
        raise UnlockError("license key is required")
    try:
        fingerprint = machine.fingerprint()
    except MachineError as exc:
        raise UnlockError(f"machine could not determine fingerprint: {exc}") from None
    if fingerprint != lock.fingerprint:
        raise UnlockError("machine file fingerprint mismatch")
    from relay_core.small_files import FileError, read_bytes

    try:
        raw = read_bytes(machine_file_path)
    except FileError as exc:
        # Go's `os.ReadFile` wording: ``open <path>: no such file or directory``.
        reason = f"open {machine_file_path}: {str(exc).lower()}"
        raise UnlockError(f"machine file could not be read: {reason}") from None

    from relay_core.errors import RelayError
    from relay_core.keygen import verify_machine_file

    try:
        verified = verify_machine_file(
            raw,
            public_key=lock.public_key,
            license_key=license_key,
            fingerprint=fingerprint,
            now=now,
        )
    except RelayError as exc:  # verification, decryption and clock errors, one line each
        raise UnlockError(str(exc)) from None

    record = _record(verified.dataset)
    log.debug(
        "machine file dataset id=%s fingerprint=%s platform=%s hostname=%s ip=%s",
        record.id,
        record.fingerprint,
        record.platform,
        record.hostname,
        record.ip,
    )
    if record.fingerprint != lock.fingerprint:
        raise UnlockError("machine file fingerprint mismatch")
    checks = (
        ("platform", lock.platform, machine.platform, record.platform),
        ("hostname", lock.hostname, machine.hostname, record.hostname),
        ("ip", lock.ip, machine.private_ip, record.ip),
    )
    for name, locked, read, recorded in checks:
        if locked is None:
            continue
        try:
            actual = read()
        except MachineError as exc:
            raise UnlockError(f"machine could not determine {name}: {exc}") from None
        if not recorded == actual == locked:
            raise UnlockError(f"machine file {name} mismatch")
    return record
