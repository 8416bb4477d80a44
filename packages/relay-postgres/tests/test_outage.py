"""The database going away: quick, one-line `StorageUnavailableError`s, then recovery on its own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from relay_core import Relay, StorageError, StorageUnavailableError
from relay_core.testing import LicenseWriter
from relay_postgres import PostgresStore
from relay_postgres.testing import PostgresServer, start_server
from relay_postgres.testing.server import free_port


@pytest.fixture
def own_server(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A server of this test's own, so stopping it disturbs no other test."""
    if not postgres_server.owned:
        pytest.fail("the outage tests need a server they can stop: unset RELAY_TEST_POSTGRES_URL")
    server = start_server()
    try:
        yield server
    finally:
        server.close()


def test_nothing_listening_fails_at_once_in_one_line() -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as caught:
        PostgresStore(f"postgresql://relay@127.0.0.1:{free_port()}/relay")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("database postgresql://relay@127.0.0.1:")
    assert "unreachable" in message


def test_unknown_option_is_refused(schema_url: str) -> None:
    with pytest.raises(StorageError, match="unknown postgresql option 'mmap_size'"):
        PostgresStore(schema_url, pragmas={"mmap_size": "1"})


def test_password_is_never_shown() -> None:
    with pytest.raises(StorageError) as caught:
        PostgresStore(f"postgresql://relay:s3cret@127.0.0.1:{free_port()}/relay")
    assert "s3cret" not in str(caught.value)


def test_stop_then_start_fails_quickly_then_recovers(
    own_server: PostgresServer, writer: LicenseWriter
) -> None:
    url = own_server.create_database()
    store = PostgresStore(url, pragmas={"pool_timeout": "2"})
    try:
        relay = Relay(store)
        relay.add_license(
            writer.license(key="K-OUT", issued=time.time() - 60),
            "K-OUT",
            public_key=writer.public_key,
        )
        assert relay.claim("before").license.key == "K-OUT"
        store.check()
        own_server.stop()
        for call in (lambda: relay.claim("before"), store.check, relay.list_licenses):
            started = time.monotonic()
            with pytest.raises(StorageUnavailableError) as caught:
                call()
            assert time.monotonic() - started < 10
            assert "\n" not in str(caught.value)
        own_server.start()
        back = time.monotonic()
        while True:
            try:
                store.check()
                lease = relay.claim("before")
                break
            except StorageUnavailableError:
                assert time.monotonic() - back < 5, "no recovery within 5 s of the server's return"
                time.sleep(0.1)
        assert lease.license.key == "K-OUT"
    finally:
        store.close()
