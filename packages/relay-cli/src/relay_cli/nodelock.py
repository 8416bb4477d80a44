"""`relay fingerprint` (run on the customer's machine) and `relay lock build` (run by the vendor).

The lock is a wheel, ``relay-lock``, whose module holds the constants and whose ``relay.lock``
entry point makes every `relay` in the same environment node-locked (see docs/node-locking.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter

from . import __version__
from .locking import FIELDS, LockConfig, LockConfigError
from .machine import Machine, MachineError
from .publickey import PublicKeyFileFlag, PublicKeyFlag, resolve_public_key
from .runtime import Runtime, UsageError

__all__ = [
    "LOCK_DISTRIBUTION",
    "build_lock_wheel",
    "fingerprint_command",
    "lock_app",
    "lock_source",
]

LOCK_DISTRIBUTION = "relay-lock"
LOCK_MODULE = "relay_lock"


def lock_source(lock: LockConfig) -> str:
    """The generated ``relay_lock/__init__.py``: the constants as Python literals."""
    values = lock.as_values()
    lines = [
        '"""Node lock for Relay, written by `relay lock build`.',
        "",
        "Installed next to relay-cli, its `relay.lock` entry point makes every `relay` command",
        "check the machine file first (docs/node-locking.md). Editing it voids the lock.",
        '"""',
        "",
        "LOCK = {",
        *(f"    {name!r}: {values[name]!r}," for name in FIELDS if name in values),
        "}",
        "",
    ]
    return "\n".join(lines)


def lock_version(lock: LockConfig) -> str:
    """relay-cli's version with a digest of the constants as local label, so that a new lock
    for the same machine replaces the old one on `pip install` and the same one is a no-op."""
    digest = hashlib.sha256(json.dumps(lock.as_values(), sort_keys=True).encode()).hexdigest()
    return f"{__version__}+{digest[:12]}"


def build_lock_wheel(lock: LockConfig, output: Path) -> Path:
    """Write the ``relay-lock`` wheel for `lock` into `output`; return the wheel's path."""
    from .wheel import write_wheel

    return write_wheel(
        output,
        name=LOCK_DISTRIBUTION,
        version=lock_version(lock),
        summary="Node lock for Relay: binds relay to one machine",
        files={f"{LOCK_MODULE}/__init__.py": lock_source(lock).encode()},
        entry_points={"relay.lock": {"node": f"{LOCK_MODULE}:LOCK"}},
        requires=["relay-cli"],
    )


def fingerprint_command(machine: Callable[[], Machine]) -> Callable[[], int]:
    def fingerprint() -> int:
        """print this machine's fingerprint, for the vendor to build a node lock

        The lowercase hex HMAC-SHA256 of "keygen-relay" keyed by the machine id
        (/var/lib/dbus/machine-id, then /etc/machine-id); the id itself is not printed.
        """
        try:
            value = machine().fingerprint()
        except MachineError as exc:
            raise UsageError(f"machine could not determine fingerprint: {exc}") from None
        print(value)
        return 0

    return fingerprint


def build(
    *,
    public_key: PublicKeyFlag = None,
    fingerprint: str | None = None,
    platform: str | None = None,
    hostname: str | None = None,
    ip: str | None = None,
    addr: str | None = None,
    port: Annotated[int | None, Parameter(name=["--port"])] = None,
    signing_secret: str | None = None,
    signing_key_file: Path | None = None,
    output: Path | None = None,
    public_key_file: PublicKeyFileFlag = None,
    binary: Path | None = None,
    runtime: Annotated[Runtime, Parameter(parse=False)],
) -> int:
    """write a relay-lock wheel that binds relay to one customer machine

    Install the wheel next to relay on that machine (pip install --no-deps --no-index
    relay_lock-*.whl) and ship a Keygen machine file for it; see docs/node-locking.md.

    Parameters
    ----------
    public_key
        your Keygen account's public key, Ed25519 hex or RSA PEM (e.g. "$(cat pub.pem)");
        verifies machine and license files [required, or --public-key-file]
    fingerprint
        the machine's fingerprint, as `relay fingerprint` prints it there [required]
    platform
        lock to this platform in Go's names, e.g. linux/amd64
    hostname
        lock to this hostname
    ip
        lock to this private IPv4 address (the first one on an up, non-loopback interface)
    addr
        force `serve` to bind this address and remove --bind
    port
        force `serve` to use this port and remove --port
    signing_secret
        force `serve` to sign responses with this secret and remove --signing-secret
    signing_key_file
        force `serve` to sign responses with this Ed25519 key (from `relay signing-key new`) and remove --signing-key-file; the key is stored in the wheel
    output
        directory to write the wheel into (created if missing) [required]
    public_key_file
        read the public key (Ed25519 hex or RSA PEM) from this file instead of --public-key
    binary
        the one-file relay (dist/relay of ./dev dist) to lock: also writes OUTPUT/relay, a
        copy with this lock baked in, which needs no Python on the customer's machine
    """
    from .licenses import require

    public_key = resolve_public_key(public_key, public_key_file, {})
    require(public_key=public_key, fingerprint=fingerprint, output=output)
    assert output is not None
    signing_key = None
    if signing_key_file is not None:
        from relay_core.signing import private_key_pem

        from .trust import read_signing_key

        signing_key = private_key_pem(read_signing_key(signing_key_file)).decode("ascii")
    try:
        lock = LockConfig.from_values(
            {
                "public_key": public_key,
                "fingerprint": fingerprint,
                "platform": platform,
                "hostname": hostname,
                "ip": ip,
                "addr": addr,
                "port": port,
                "signing_secret": signing_secret,
                "signing_key": signing_key,
            }
        )
    except LockConfigError as exc:
        raise UsageError(str(exc)) from None
    if binary is not None:
        from .embeddedlock import EmbedError, unlocked_build

        try:
            unlocked_build(binary)  # before anything is written
        except EmbedError as exc:
            raise UsageError(str(exc)) from None
        target = output / "relay"
        if target.exists() and target.samefile(binary):
            raise UsageError(f"refusing to overwrite {binary} with its locked copy")
    try:
        path = build_lock_wheel(lock, output)
    except OSError as exc:
        raise UsageError(
            f"cannot write the lock wheel into {output}: {exc.strerror or exc}"
        ) from None
    runtime.out.plain(str(path))
    if binary is not None:
        from .embeddedlock import EmbedError, embed_lock_wheel

        try:
            runtime.out.plain(embed_lock_wheel(binary, path, output / "relay"))
        except EmbedError as exc:
            raise UsageError(str(exc)) from None
    return 0


def lock_app() -> App:
    """The `relay lock` command group."""
    group = App(name="lock", help="build node locks that bind relay to one machine")
    group.command(build)
    return group
