"""MemoryStore, the reference adapter, passes the storage contract."""

from pathlib import Path

from relay_core.testing import MemoryStore, StorageContract


class TestMemoryStore(StorageContract):
    def make_store(self, path: Path) -> MemoryStore:
        return MemoryStore()
