"""Node fingerprints: how a machine (or container) names itself to the relay.

Fingerprints are global across pools and one fingerprint holds at most one lease, so Keygen
Relay's README recommends ``HMAC-SHA256(key=machine-id, msg=pool)``: stable per machine, distinct
per pool, and it does not reveal the machine id. `machine` is that recipe; `from_env` is for
containers whose machine id is not stable; any other string works as well.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["MACHINE_ID_PATHS", "MAX_LENGTH", "from_env", "machine", "validate"]

MACHINE_ID_PATHS = ("/var/lib/dbus/machine-id", "/etc/machine-id")
"""Where the machine id is read from, first readable non-empty file wins (the README's order)."""

MAX_LENGTH = 1024
"""The relay answers 400 to fingerprints longer than this many UTF-8 bytes."""


def machine(
    pool: str | None = None, *, paths: Sequence[str | os.PathLike[str]] = MACHINE_ID_PATHS
) -> str:
    """``HMAC-SHA256(key=machine id, msg=pool name)`` as 64 lowercase hex digits.

    The global pool (`pool` None) uses the empty message.
    """
    machine_id = _read_machine_id(paths)
    return hmac.new(machine_id.encode(), (pool or "").encode(), hashlib.sha256).hexdigest()


def from_env(name: str, *, environ: Mapping[str, str] | None = None) -> str:
    """The fingerprint stored in environment variable `name` (set per container or instance)."""
    env = os.environ if environ is None else environ
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(
            f"environment variable {name} is not set or empty: set it to this instance's "
            "fingerprint (unique per running instance), or pass fingerprint= explicitly"
        )
    return validate(value)


def validate(fingerprint: str) -> str:
    """Return `fingerprint` if the relay can route it, else raise `ConfigurationError`."""
    if not fingerprint:
        raise ConfigurationError("the fingerprint is empty: pass a non-empty string")
    if "/" in fingerprint:
        raise ConfigurationError(
            "the fingerprint contains '/', which the relay cannot route: use another string, "
            "for example fingerprint.machine(pool=...)"
        )
    try:
        size = len(fingerprint.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: not sendable in a URL
        raise ConfigurationError(
            "the fingerprint is not valid Unicode text (a lone surrogate): pass a proper string"
        ) from None
    if size > MAX_LENGTH:
        raise ConfigurationError(
            f"the fingerprint is {size} bytes, the relay accepts at most {MAX_LENGTH}: "
            "hash it, for example with hashlib.sha256"
        )
    return fingerprint


def _read_machine_id(paths: Sequence[str | os.PathLike[str]]) -> str:
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    tried = ", ".join(os.fspath(p) for p in paths)
    raise ConfigurationError(
        f"no machine id found (tried {tried}): pass fingerprint= explicitly or use "
        "fingerprint.from_env(VAR) in containers"
    )
