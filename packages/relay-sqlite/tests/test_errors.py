"""Failures of the file reach the user as one line of Relay's error tree, naming the path."""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
from pathlib import Path

import pytest
import relay_sqlite.store
from relay_core.errors import (
    DuplicateLicenseError,
    StorageAccessError,
    StorageBusyError,
    StorageCorruptError,
    StorageError,
)
from relay_core.model import NewLicense
from relay_sqlite import SqliteStore, open_store


def one_line(error: BaseException, path: Path | str) -> str:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    """A text file in place of the database gives StorageCorruptError."""
    path = tmp_path / "relay.sqlite"
    path.write_text("these are not the pages you are looking for\n" * 200)
    with pytest.raises(StorageCorruptError) as caught:
        SqliteStore(path)
    assert "is not a SQLite database" in one_line(caught.value, path)


def test_a_damaged_database_is_refused(tmp_path: Path) -> None:
    """A SQLite file whose schema page is overwritten gives StorageCorruptError."""
    path = tmp_path / "relay.sqlite"
    SqliteStore(path, pragmas={"journal_mode": "DELETE"}).close()
    data = bytearray(path.read_bytes())
    data[100:2000] = b"\xa5" * 1900
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorruptError) as caught:
        SqliteStore(path)
    assert "corrupt" in one_line(caught.value, path)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    """A database path in a directory that does not exist gives StorageAccessError."""
    path = tmp_path / "nowhere" / "relay.sqlite"
    with pytest.raises(StorageAccessError) as caught:
        SqliteStore(path)
    assert "does not exist" in one_line(caught.value, path)


def test_a_parent_that_is_a_file_is_named(tmp_path: Path) -> None:
    """A database path below a regular file gives StorageAccessError."""
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "relay.sqlite"
    with pytest.raises(StorageAccessError) as caught:
        SqliteStore(path)
    assert "not a directory" in one_line(caught.value, path)


def test_a_directory_in_place_of_the_file_is_named(tmp_path: Path) -> None:
    """A database path that is a directory gives StorageAccessError."""
    with pytest.raises(StorageAccessError) as caught:
        SqliteStore(tmp_path)
    assert "is a directory" in one_line(caught.value, tmp_path)


def test_an_unwritable_directory_is_named(tmp_path: Path) -> None:
    """A directory the user may not write to gives StorageAccessError, and no file appears."""
    if os.geteuid() == 0:
        # root may write to any ordinary directory; sysfs refuses new files even to root.
        locked = Path("/sys")
        if not locked.is_dir():
            pytest.skip("running as root without /sys: no directory root cannot write to")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
    path = locked / "relay-test.sqlite"
    try:
        with pytest.raises(StorageAccessError) as caught:
            SqliteStore(path)
        assert "not writable" in one_line(caught.value, path)
    finally:
        if locked != Path("/sys"):
            locked.chmod(0o755)
    assert not path.exists()


def test_a_lock_held_beyond_busy_timeout_gives_busy(db_path: Path) -> None:
    """Another connection holding the write lock past busy_timeout gives StorageBusyError."""
    store = SqliteStore(db_path, pragmas={"busy_timeout": "100"})
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageBusyError) as caught, store.transaction():
            pass
        assert "100 ms" in one_line(caught.value, db_path)
        other.execute("ROLLBACK")
        with store.transaction() as tx:
            assert tx.list_pools() == []
    finally:
        other.close()
        store.close()


def test_duplicates_raise_the_domain_error(store: SqliteStore) -> None:
    """A UNIQUE violation on insert is DuplicateLicenseError, and the transaction rolls back."""
    new = NewLicense("g", b"f", "k", None)
    with store.transaction() as tx:
        tx.insert_license(new, None, 1)

    def add_two() -> None:
        with store.transaction() as tx:
            tx.insert_license(NewLicense("g2", b"f2", "k2", None), None, 1)
            tx.insert_license(NewLicense("g3", b"f", "k3", None), None, 1)

    with pytest.raises(DuplicateLicenseError):
        add_two()
    with store.transaction() as tx:
        assert tx.get_license("g2") is None


@pytest.mark.parametrize(
    ("pragmas", "text"),
    [
        ({"cache size": "1"}, "failed to set pragma cache size=1: invalid pragma name"),
        ({"cache_size": "1 2"}, "failed to set pragma cache_size=1 2: "),
    ],
)
def test_a_rejected_pragma_is_reported(db_path: Path, pragmas: dict[str, str], text: str) -> None:
    """A pragma SQLite rejects gives Keygen Relay's `failed to set pragma k=v: <err>`."""
    with pytest.raises(StorageError) as caught:
        SqliteStore(db_path, pragmas=pragmas)
    assert str(caught.value).startswith(text)


def test_closed_store_refuses_work(store: SqliteStore) -> None:
    """A transaction after close() raises StorageError instead of touching a dead connection."""
    store.close()
    store.close()
    with pytest.raises(StorageError, match="is closed"), store.transaction():
        pass


def test_nested_transactions_are_refused(store: SqliteStore) -> None:
    """Opening a transaction inside another on the same thread fails instead of deadlocking."""
    with store.transaction(), pytest.raises(StorageError, match="nested"), store.transaction():
        pass


def test_entry_point_opens_plain_paths_and_sqlite_urls(tmp_path: Path) -> None:
    """`relay.storage` names `sqlite` → open_store, which takes a path or sqlite://path."""
    from importlib.metadata import entry_points

    (found,) = entry_points(group="relay.storage", name="sqlite")
    assert found.load() is open_store
    for database in (str(tmp_path / "a.sqlite"), f"sqlite://{tmp_path / 'b.sqlite'}"):
        store = open_store(database, pragmas={"synchronous": "FULL"})
        with store.transaction() as tx:
            tx.create_pool("p", 1)
        store.close()
    assert (tmp_path / "a.sqlite").exists()
    assert (tmp_path / "b.sqlite").exists()


def test_checkpoint_copies_the_wal_while_transactions_continue(store: SqliteStore) -> None:
    """checkpoint() moves every committed frame into the file and leaves the store usable."""
    with store.transaction() as tx:
        for n in range(20):
            tx.insert_license(NewLicense(f"g{n}", bytes(4000) + bytes([n]), f"k{n}", None), None, 1)
    frames, done = store.checkpoint()
    assert frames > 0
    assert done == frames
    with store.transaction() as tx:
        assert len(tx.list_licenses(None)) == 20
    store.close()
    assert store.checkpoint() == (0, 0)


def test_store_checkpoints_on_its_own_so_the_wal_stays_small(
    store: SqliteStore, db_path: Path
) -> None:
    """~42 MB of WAL frames leave a WAL file under 20 MB: the store checkpoints as it goes."""
    for batch in range(40):
        with store.transaction() as tx:
            for n in range(50):
                serial = batch * 50 + n
                raw = serial.to_bytes(4, "big") * 1024
                tx.insert_license(NewLicense(f"g{serial}", raw, f"k{serial}", None), None, 1)
    wal = Path(f"{db_path}-wal")
    assert wal.stat().st_size < 20_000_000  # 42.8 MB measured with checkpoints off
    with store.transaction() as tx:
        assert len(tx.list_licenses(None)) == 2000


def test_the_wal_rewinds_though_commits_land_during_every_checkpoint(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under steady load another thread commits while each checkpoint copies the log, so no
    checkpoint alone ever copies all of it, and SQLite only rewinds a log copied in full.
    The store then finishes the copy holding its lock: ~42 MB written leave the log small
    (it grew to all 42 MB when the store did not)."""
    monkeypatch.setattr(relay_sqlite.store, "CHECKPOINT_AFTER_CHANGES", 50)
    monkeypatch.setattr(relay_sqlite.store, "RESTART_AFTER_FRAMES", 256)
    serials = itertools.count()

    def write(licenses: int, begun: threading.Event | None = None) -> None:
        with store.transaction() as tx:
            if begun is not None:  # the commit begins before the checkpoint ends
                begun.set()
                go.wait()
            for _ in range(licenses):
                serial = next(serials)
                raw = serial.to_bytes(4, "big") * 1024
                tx.insert_license(NewLicense(f"g{serial}", raw, f"k{serial}", None), None, 1)

    go = threading.Event()
    copying = False
    overtaken = 0
    real_checkpoint, real_checkpoint_fully = store._checkpoint, store._checkpoint_fully

    def checkpoint() -> tuple[int, int]:
        nonlocal copying, overtaken
        if not copying:  # the pass with the store's lock held
            return real_checkpoint()
        copying = False  # the pass outside it: another thread's commit overlaps it
        begun = threading.Event()
        go.clear()
        other = threading.Thread(target=write, args=(1, begun))
        other.start()
        begun.wait()
        try:
            return real_checkpoint()
        finally:
            go.set()
            other.join()
            overtaken += 1

    def checkpoint_fully() -> tuple[int, int]:
        nonlocal copying
        copying = True
        return real_checkpoint_fully()

    monkeypatch.setattr(store, "_checkpoint", checkpoint)
    monkeypatch.setattr(store, "_checkpoint_fully", checkpoint_fully)
    for _ in range(40):
        write(50)
    assert overtaken >= 3
    wal = Path(f"{db_path}-wal")
    assert wal.stat().st_size < 12_000_000
    with store.transaction() as tx:
        assert len(tx.list_licenses(None)) == 2000 + overtaken


def _add_pool(store: SqliteStore, name: str) -> None:
    with store.transaction() as tx:
        tx.create_pool(name, 1)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_file_deleted_or_replaced_while_open_stops_every_write(db_path: Path, how: str) -> None:
    """Once the file at the path is not the one opened, both ways in refuse work, naming it,
    and the old write-ahead log is emptied so it cannot be replayed into a new file."""
    store = SqliteStore(db_path)
    try:
        _add_pool(store, "before")
        wal = Path(f"{db_path}-wal")
        assert wal.stat().st_size > 0
        db_path.unlink()
        if how == "replaced":
            SqliteStore(db_path).close()  # someone starts afresh at the same path
        with pytest.raises(StorageAccessError) as caught:
            _add_pool(store, "after")
        assert "was deleted or replaced while in use" in one_line(caught.value, db_path)
        with pytest.raises(StorageAccessError):
            store.run(lambda tx: tx.create_pool("after", 1))
        if how == "deleted":
            assert not wal.exists() or wal.stat().st_size == 0
    finally:
        store.close()
    if how == "replaced":
        reopened = SqliteStore(db_path)
        try:
            with reopened.transaction() as tx:
                assert [p.name for p in tx.list_pools()] == []
        finally:
            reopened.close()
