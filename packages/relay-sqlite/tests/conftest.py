"""Shared fixtures: a store in a fresh directory and a raw view of its file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from relay_core.testing import LicenseWriter
from relay_sqlite import SqliteStore


@pytest.fixture(scope="session")
def writer() -> LicenseWriter:
    return LicenseWriter.ed25519()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "relay.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(db_path)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def raw(db_path: Path, store: SqliteStore) -> Iterator[sqlite3.Connection]:
    """A second, plain connection to the store's file (as an operator's `sqlite3` would be)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()
