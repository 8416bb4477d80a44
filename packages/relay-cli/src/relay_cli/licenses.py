"""The license commands: `add`, `del`, `ls`, `stat`. Thin: validate flags, call `Relay`, print."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter
from relay_core.small_files import FileError, check_regular_file

from .publickey import PublicKeyFileFlag, PublicKeyFlag, resolve_public_key
from .runtime import Runtime, UsageError
from .tables import Layout, choose_layout, render, rfc3339
from .values import UnsetFlag, env_str, split_csv

if TYPE_CHECKING:
    from relay_core import License, Relay

__all__ = ["LICENSE_HEADERS", "add", "delete", "ls", "stat"]

LICENSE_HEADERS = (
    "id",
    "pool",
    "claims",
    "node_id",
    "last_claimed_at",
    "last_released_at",
    "file_expires_at",
)
"""Keygen Relay's six columns, then ours."""

Injected = Annotated[Runtime, Parameter(parse=False)]


def require(**flags: object) -> None:
    """Raise cobra's one-line message naming every missing required flag, sorted."""
    missing = sorted(name.replace("_", "-") for name, value in flags.items() if value is None)
    if missing:
        names = ", ".join(f'"{name}"' for name in missing)
        raise UsageError(f"required flag(s) {names} not set")


MAX_LICENSE_FILE = 1024 * 1024
"""A Keygen license file is a few KB; a larger "license" is the wrong file."""


def _unusable_files(paths: Sequence[str]) -> list[str]:
    """One message per path that names a device, a FIFO, a directory or a huge file (relay-core
    reads the path whole, so it must not be given one), in relay-core's wording."""
    messages = []
    for path in dict.fromkeys(paths):
        try:
            check_regular_file(path, limit=MAX_LICENSE_FILE)
        except FileError as exc:
            messages.append(f"failed to read license file: read {path}: {exc}")
    return messages


def add(
    *,
    file: Annotated[list[str] | None, Parameter(negative="")] = None,
    key: Annotated[list[str] | None, Parameter(negative="")] = None,
    public_key: PublicKeyFlag = None,
    pool: str | None = None,
    public_key_file: PublicKeyFileFlag = None,
    runtime: Injected,
) -> int:
    """push license(s) to the local relay server's pool

    All files are verified and decrypted first; if any fails, each failure is reported and
    nothing is stored.

    Parameters
    ----------
    file
        path to a signed and encrypted license file (repeatable; comma-separated) [required]
    key
        license key for decryption, one per --file (repeatable; comma-separated) [required]
    public_key
        your keygen.sh public key for verification: Ed25519 hex or RSA PEM, e.g.
        "$(cat pub.pem)" [$RELAY_PUBLIC_KEY] [required unless --public-key-file or a variable
        gives it]
    pool
        pool to add the license to [$RELAY_POOL=prod]
    public_key_file
        read the public key (Ed25519 hex or RSA PEM) from this file instead of --public-key
        [$RELAY_PUBLIC_KEY_FILE]
    """
    env = runtime.environ
    if runtime.lock is not None:  # node-locked: the flags are removed, the locked key is used
        public_key = runtime.lock.public_key
    else:
        public_key = resolve_public_key(public_key, public_key_file, env)
    require(file=file, key=key, public_key=public_key)
    assert public_key is not None
    files, keys = split_csv(file or [], "--file"), split_csv(key or [], "--key")
    if len(files) != len(keys):
        from relay_core import RelayError

        # Keygen Relay reports this as the command's own failure (lowercase `error:`).
        raise RelayError("number of key and file flags must match")
    if not files:
        return 0
    pool = pool if pool is not None else env_str(env, "RELAY_POOL")

    from relay_core import BulkError
    from relay_core.keygen import KeygenVerifier

    KeygenVerifier(public_key.strip())  # a bad key is reported before the database is created
    unusable = _unusable_files(files)
    for message in unusable:
        runtime.out.error(message)
    if unusable:
        return 1
    relay = runtime.relay()
    try:
        added = relay.add_licenses(
            zip(files, keys, strict=True), public_key=public_key.strip(), pool=pool
        )
    except BulkError as exc:
        for label, error in exc.errors:
            message = str(error)
            if len(files) > 1 and label not in message:
                message = f"{message} (file: {label})"
            runtime.out.error(message)
        return 1
    for lic in added:
        runtime.out.success(f"license added successfully: {lic.guid}")
    return 0


def delete(
    *,
    license: Annotated[list[str] | None, Parameter(negative="")] = None,
    pool: str | None = None,
    runtime: Injected,
) -> int:
    """delete license(s) from the local relay server's pool

    All ids must exist (in --pool, if given) or nothing is deleted. A leased license is released
    first.

    Parameters
    ----------
    license
        license ID to remove (repeatable; comma-separated) [required]
    pool
        only match licenses in this pool
    """
    require(license=license)
    guids = list(dict.fromkeys(split_csv(license or [], "--license")))
    if not guids:
        return 0

    from relay_core import BulkError, LicenseNotFoundError

    relay = runtime.relay()
    try:
        relay.remove_licenses(guids, pool=pool or None)
    except BulkError as exc:
        for guid, error in exc.errors:
            is_missing = isinstance(error, LicenseNotFoundError)
            runtime.out.error(f"license {guid} not found" if is_missing else str(error))
        return 1
    for guid in guids:
        runtime.out.success(f"license deleted successfully: {guid}")
    return 0


def _rows(relay: Relay, licenses: Sequence[License]) -> list[list[str | int | None]]:
    names = (
        {pool.id: pool.name for pool in relay.list_pools()}
        if any(lic.pool_id is not None for lic in licenses)
        else {}
    )
    return [
        [
            lic.guid,
            None if lic.pool_id is None else names.get(lic.pool_id, "<n/a>"),
            lic.claims,
            lic.node_id,
            rfc3339(lic.last_claimed_at),
            rfc3339(lic.last_released_at),
            rfc3339(lic.file_expires_at),
        ]
        for lic in licenses
    ]


def _show(
    runtime: Runtime,
    relay: Relay,
    licenses: Sequence[License],
    *,
    plain: bool | None,
    as_json: bool,
) -> None:
    layout = choose_layout(plain=plain, as_json=as_json, environ=runtime.environ, out=runtime.out)
    rows = _rows(relay, licenses)
    if layout is Layout.JSON:
        from relay_core import LicenseRow

        # The same rows through the one converter (GET /v1/admin/licenses answers these too).
        records = [
            LicenseRow.of(lic, row[1] if isinstance(row[1], str) else None)
            for lic, row in zip(licenses, rows, strict=True)
        ]
        render(
            LICENSE_HEADERS,
            rows,
            layout,
            runtime.out,
            records=runtime.converter.unstructure(records),
        )
        return
    render(LICENSE_HEADERS, rows, layout, runtime.out)


def ls(
    *,
    plain: UnsetFlag = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    pool: str | None = None,
    runtime: Injected,
) -> int:
    """print the local relay server's license pool, with stats for each license

    Parameters
    ----------
    plain
        display the table in plain text format [$RELAY_PLAIN=1]; the default off a terminal
    as_json
        print a JSON array instead of a table
    pool
        pool to list licenses from (default: every pool) [$RELAY_POOL=prod]
    """
    pool = pool if pool is not None else env_str(runtime.environ, "RELAY_POOL")
    relay = runtime.relay()
    licenses = relay.list_licenses(pool or None)
    if not licenses and not as_json:
        runtime.out.success("license pool is empty")
        return 0
    _show(runtime, relay, licenses, plain=plain, as_json=as_json)
    return 0


def stat(
    *,
    license: str | None = None,
    plain: UnsetFlag = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    runtime: Injected,
) -> int:
    """print stats for a license in the local relay server's pool

    Parameters
    ----------
    license
        license ID to print stats for [required]
    plain
        display the table in plain text format [$RELAY_PLAIN=1]; the default off a terminal
    as_json
        print a JSON array instead of a table
    """
    require(license=license)
    assert license is not None
    relay = runtime.relay()
    found = relay.get_license(license)
    _show(runtime, relay, [found], plain=plain, as_json=as_json)
    return 0
