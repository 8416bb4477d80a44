"""`relay signing-key new|show`, and loading `serve`'s trust settings (docs/security.md).

Loading reads every file before the server starts, so a missing key or token file is one
error line and exit 1, never a server that runs without the protection it was asked for.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from cyclopts import App, Parameter
from relay_core.small_files import FileError, read_bytes

from .runtime import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from relay_http.access import NodeAccess

__all__ = [
    "TrustError",
    "load_access",
    "load_signing_key",
    "locked_signing_key",
    "read_signing_key",
    "signing_key_app",
]

log = logging.getLogger("relay.cli")


class TrustError(UsageError):
    """A signing key, node token file or allow-list given to `serve` is unusable."""


def read_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file; raise `TrustError` with a one-line reason."""
    from relay_core.signing import load_private_key

    try:
        pem = read_bytes(path)
    except FileError as exc:
        raise TrustError(f"cannot read signing key file {path}: {exc}") from None
    try:
        return load_private_key(pem)
    except ValueError as exc:
        raise TrustError(f"signing key file {path} is unusable: {exc}") from None


def load_signing_key(path: str) -> Ed25519PrivateKey:
    """`read_signing_key`, warning when other users may read the file."""
    key = read_signing_key(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0
    if mode & 0o077:
        log.warning(
            "signing key file %s is readable by other users (mode %04o): chmod 600 it", path, mode
        )
    return key


def locked_signing_key(pem: str) -> Ed25519PrivateKey:
    """The signing key a node lock carries; a broken one fails closed."""
    from relay_core.signing import load_private_key

    try:
        return load_private_key(pem.encode("ascii", "replace"))
    except ValueError as exc:
        raise TrustError(f"the node lock's signing key is unusable: {exc}") from None


def load_access(
    *,
    node_token_file: str | None,
    allow_fingerprints: str | None,
    max_new_nodes_per_minute: int | None,
) -> NodeAccess | None:
    """The `NodeAccess` middleware for the settings given, or None when all three are off."""
    if node_token_file is None and allow_fingerprints is None and max_new_nodes_per_minute is None:
        return None
    from relay_http.access import (
        AccessFileError,
        NewNodeLimit,
        NodeAccess,
        WatchedFile,
        read_allow_list,
        read_tokens,
    )

    try:  # WatchedFile reads through relay_core.small_files: no device, FIFO or huge file
        tokens = (
            WatchedFile(node_token_file, read_tokens, what="node token file")
            if node_token_file is not None
            else None
        )
        allow = (
            WatchedFile(allow_fingerprints, read_allow_list, what="allow-list")
            if allow_fingerprints is not None
            else None
        )
    except AccessFileError as exc:
        raise TrustError(str(exc)) from None
    if allow is not None and len(allow.value) == 0:
        log.warning("the allow-list %s is empty: every claim is refused", allow_fingerprints)
    limit = NewNodeLimit(max_new_nodes_per_minute) if max_new_nodes_per_minute else None
    return NodeAccess(tokens=tokens, allow=allow, limit=limit)


def _print_public(key: Ed25519PrivateKey) -> None:
    from relay_core.signing import public_key_hex, public_key_pem

    print(public_key_hex(key))
    print(public_key_pem(key), end="")


def new(
    *,
    out: Annotated[str | None, Parameter(name=["--out", "-o"])] = None,
) -> int:
    """write a new Ed25519 signing key for `serve --signing-key-file`

    Writes the private key as PEM (mode 0600; an existing file is never overwritten) and prints
    the public key, as 64 hex digits and as PEM, for your application to verify responses with.

    Parameters
    ----------
    out
        file to write the private key to, e.g. key.pem [required]
    """
    from relay_core.signing import new_private_key, private_key_pem

    from .licenses import require

    require(out=out)
    if not out:  # Path("") is ".", which "already exists"
        raise UsageError('invalid argument "" for "-o, --out" flag: a file name is required')
    key = new_private_key()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{out} already exists: choose another --out or remove it") from None
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        Path(out).unlink(missing_ok=True)
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    _print_public(key)
    return 0


def show(file: Path, /) -> int:
    """print the public key of a signing key file, as hex and as PEM

    Parameters
    ----------
    file
        the private key file written by `relay signing-key new`
    """
    _print_public(read_signing_key(file))
    return 0


def signing_key_app() -> App:
    """The `relay signing-key` command group."""
    group = App(
        name="signing-key",
        help="create and inspect the Ed25519 key that signs responses (docs/security.md)",
    )
    group.command(new)
    group.command(show)
    return group
