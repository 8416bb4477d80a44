from relay_core.testing import StorageContract
from relay_sqlite import SqliteStore


class TestSqliteStore(StorageContract):
    def make_store(self, path):
        return SqliteStore(path / "relay.sqlite")
