"""The vendor's public key as the commands take it: `--public-key`, `--public-key-file`, or env.

An RSA key is a PEM block, which begins with ``-----``; `PublicKeyFlag` lets cyclopts take such a
value for the flag instead of reading it as another flag. The key itself (Ed25519 hex or PEM) is
checked by whoever uses it, so this module only picks the source and reads the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from cyclopts import Parameter
from relay_core.small_files import FileError, read_bytes

from .runtime import UsageError
from .values import env_str

__all__ = ["PublicKeyFileFlag", "PublicKeyFlag", "read_public_key_file", "resolve_public_key"]


def _not_a_flag(type_: object, value: str | None) -> None:
    """Refuse a value that is the next flag: allowing PEM's leading ``-----`` also lets
    ``--public-key --file x.lic`` take ``--file`` as the key (and then trip over ``x.lic``)."""
    if value is not None and value.startswith("-") and not value.startswith("-----"):
        raise ValueError(
            "--public-key needs the key after it (Ed25519 hex, or a whole PEM block: "
            '--public-key "$(cat pub.pem)"), or use --public-key-file PATH'
        )


PublicKeyFlag = Annotated[str | None, Parameter(allow_leading_hyphen=True, validator=_not_a_flag)]
"""`--public-key`: 64 hex digits, or a whole PEM block (``"$(cat pub.pem)"``)."""

PublicKeyFileFlag = Annotated[str | None, Parameter(name="--public-key-file", metavar="PATH")]
"""`--public-key-file PATH`: a file holding the hex key or the PEM block."""

MAX_KEY_FILE = 64 * 1024
"""A PEM public key is under 2 KB even for RSA-8192; anything far larger is the wrong file."""


def read_public_key_file(path: str) -> str:
    """The text of a public key file; a one-line `UsageError` if it cannot be read as one."""
    if not path:
        raise UsageError("invalid --public-key-file: empty path")
    try:
        data = read_bytes(path, limit=MAX_KEY_FILE)
    except FileError as exc:
        raise UsageError(f"cannot read public key file {path}: {str(exc).lower()}") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(
            f"public key file {path} is not text (expected Ed25519 hex or a PEM block)"
        ) from None
    if not text.strip():
        raise UsageError(f"public key file {path} is empty")
    return text.strip()


def resolve_public_key(
    flag: str | None,
    file: str | None,
    environ: Mapping[str, str],
) -> str | None:
    """The public key from `--public-key` or `--public-key-file`, else `RELAY_PUBLIC_KEY` or
    `RELAY_PUBLIC_KEY_FILE`; None when none is set. Two sources at one level is an error."""
    if flag is not None and file is not None:
        raise UsageError("--public-key and --public-key-file cannot be used together")
    if flag is not None:
        return flag.strip()
    if file is not None:
        return read_public_key_file(file)
    env_key = env_str(environ, "RELAY_PUBLIC_KEY")
    env_file = env_str(environ, "RELAY_PUBLIC_KEY_FILE")
    if env_key is not None and env_file is not None:
        raise UsageError("RELAY_PUBLIC_KEY and RELAY_PUBLIC_KEY_FILE cannot be used together")
    if env_key is not None:
        return env_key.strip()
    if env_file is not None:
        return read_public_key_file(env_file)
    return None
