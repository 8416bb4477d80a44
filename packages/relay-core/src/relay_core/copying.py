"""Copying a whole Relay database into another store: how a site moves from SQLite to
PostgreSQL (several replicas), or back.

The store side is a port of its own, `CopyTransaction`: a `Transaction` that can also list every
node, read the audit log in id order a page at a time, tell whether it holds anything, and write
rows exactly as given (ids and timestamps kept). Denial counters need nothing more: read with
`read_denials` and added to an empty target with `add_denials`, they arrive as they were. `StorageContract` checks it for every backend.
`copy_store` runs the copy in one transaction on the target (all or nothing) while holding one
transaction, hence one consistent view, on the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

import attrs

from .errors import RelayError
from .model import AuditRecord, License, Node, Pool
from .ports import ANY_POOL, Store, Transaction

__all__ = ["AUDIT_PAGE", "CopyCounts", "CopyTransaction", "TargetNotEmptyError", "copy_store"]

AUDIT_PAGE = 5000
"""Audit rows read and written per round, so a long log never sits in memory whole."""


class CopyTransaction(Transaction, Protocol):
    """The primitives a store offers for copying whole databases."""

    def list_nodes(self) -> list[Node]:
        """Every node, active or not, by ascending id."""
        ...

    def audit_page(self, after_id: int, limit: int) -> list[AuditRecord]:
        """Up to `limit` audit rows with `id > after_id`, by ascending id, labelled as
        `read_audit` labels them."""
        ...

    def is_empty(self) -> bool:
        """True when the store holds no pool, license, node, audit row or denial counter."""
        ...

    def import_rows(
        self,
        *,
        pools: Sequence[Pool] = (),
        nodes: Sequence[Node] = (),
        licenses: Sequence[License] = (),
        audit: Sequence[AuditRecord] = (),
    ) -> None:
        """Write the rows exactly as given: ids, timestamps, holders and counters kept (audit
        labels are ignored). Rows inserted later get ids above every imported one."""
        ...


class TargetNotEmptyError(RelayError):
    """Raised when the database to copy into already holds data."""

    def __init__(self, target: str) -> None:
        super().__init__(f"database {target} is not empty: copy into a new, empty database")
        self.target = target


@attrs.frozen
class CopyCounts:
    """How many rows of each table were copied."""

    pools: int
    licenses: int
    nodes: int
    audit: int
    denials: int


def copy_store(source: Store, target: Store, *, target_name: str = "target") -> CopyCounts:
    """Copy every pool, license (with its file), node, audit row and denial counter from
    `source` into `target`.

    Raises `TargetNotEmptyError` if `target` holds anything; on any error nothing is written.
    """
    with target.transaction() as out_tx:
        out = cast(CopyTransaction, out_tx)
        if not out.is_empty():
            raise TargetNotEmptyError(target_name)
        with source.transaction() as src_tx:
            src = cast(CopyTransaction, src_tx)
            pools = src.list_pools()
            nodes = src.list_nodes()
            licenses = src.list_licenses(ANY_POOL)
            out.import_rows(pools=pools, nodes=nodes, licenses=licenses)
            denials = src.read_denials(None, None)
            out.add_denials(denials)
            audit = 0
            after = 0
            while page := src.audit_page(after, AUDIT_PAGE):
                out.import_rows(audit=page)
                audit += len(page)
                after = page[-1].id
    return CopyCounts(
        pools=len(pools),
        licenses=len(licenses),
        nodes=len(nodes),
        audit=audit,
        denials=len(denials),
    )
