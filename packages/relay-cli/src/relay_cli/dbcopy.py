"""`relay db copy`: move a whole Relay database between backends (SQLite <-> PostgreSQL).

The copy is `relay_core.copying.copy_store`: one transaction on the target, which must be empty,
ids and timestamps kept. Both databases are opened through the ``relay.storage`` entry points,
as `--database` is.
"""

from __future__ import annotations

import os
import re
from typing import Annotated

from cyclopts import App, Parameter

from .runtime import Runtime, UsageError

__all__ = ["db_app", "display_name"]

_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@")


def display_name(database: str) -> str:
    """`database` as printed: a URL's password is left out."""
    return _PASSWORD.sub(r"\1@", database)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def copy(
    *,
    from_: Annotated[str, Parameter(name="--from")],
    to: str,
    runtime: Annotated[Runtime, Parameter(parse=False)],
) -> int:
    """copy a whole relay database (pools, licenses, nodes, audit log, denials) into a new, empty one

    Ids and timestamps are kept, so `relay ls` and `relay logs` read the same on both sides.
    The copy is one transaction on the target: on any error nothing is written there. Stop the
    relays using the source first, so that the copy is the last word.

    Parameters
    ----------
    from_
        the database to copy: a .sqlite path or postgresql://user@host:5432/name
    to
        the database to create or fill, which must be empty: a .sqlite path or a postgresql:// URL
    """
    if not from_:
        raise UsageError('invalid argument "" for "--from" flag: a database is required')
    if not to:
        raise UsageError('invalid argument "" for "--to" flag: a database is required')
    if from_ == to:
        raise UsageError("--from and --to name the same database")

    from relay_core import StorageError
    from relay_core.copying import copy_store

    from .storage import backend_name

    if backend_name(from_) == "sqlite":
        path = from_.removeprefix("sqlite://")
        if not os.path.isfile(path):
            raise StorageError(f"database {path} does not exist")

    source = runtime.open_store(from_, pragmas={})
    try:
        target = runtime.open_store(to, pragmas={})
        try:
            counts = copy_store(source, target, target_name=display_name(to))
        finally:
            target.close()
    finally:
        source.close()
    runtime.out.success(
        f"copied {_plural(counts.pools, 'pool')}, {_plural(counts.licenses, 'license')}, "
        f"{_plural(counts.nodes, 'node')}, {_plural(counts.audit, 'audit row')} and "
        f"{_plural(counts.denials, 'denial counter')} "
        f"from {display_name(from_)} to {display_name(to)}"
    )
    return 0


def db_app() -> App:
    """The `relay db` command group."""
    group = App(name="db", help="manage relay databases: copy one into another backend")
    group.command(copy)
    return group
