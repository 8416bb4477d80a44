"""relay-client against a real `relay serve` with a signing key, a secret and node tokens."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from relay_client import (
    AsyncRelayClient,
    NodeRefusedError,
    RelayClient,
    ResponseSignatureError,
)
from relay_core.signing import new_private_key, private_key_pem, public_key_hex, public_key_pem

if TYPE_CHECKING:  # pytest's importlib mode: conftest is not importable at run time
    from conftest import Relays


def test_verified_lease_with_a_node_token(relays: Relays) -> None:
    """Both clients claim, heartbeat and release with ed25519 + v2 verified and a token sent."""
    key = new_private_key()
    (relays.tmp / "key.pem").write_bytes(private_key_pem(key))
    (relays.tmp / "tokens").write_text("t0k3n\n")
    extra = ["--signing-key-file", str(relays.tmp / "key.pem"), "--signing-secret", "s"]
    extra += ["--node-token-file", str(relays.tmp / "tokens")]
    relay = relays.serve(seats=2, extra=extra)

    client = RelayClient(
        relay.url,
        fingerprint="node-1",
        signing_secret="s",
        signing_public_key=public_key_hex(key),
        node_token="t0k3n",
        heartbeat_fraction=0.01,  # a heartbeat every 0.3 s of the 30 s TTL
    )
    with client.lease() as lease:
        assert relay.leased() == 1
        heartbeats = lease.expires_at
        for _ in range(100):
            if lease.expires_at != heartbeats or lease.lost:
                break
            time.sleep(0.05)
        assert lease.expires_at != heartbeats, "no heartbeat got through in 5 s"
        assert not lease.lost
    assert relay.leased() == 0

    async def run_async() -> None:
        aclient = AsyncRelayClient(
            relay.url,
            fingerprint="node-2",
            signing_public_key=public_key_pem(key),
            node_token="t0k3n",
        )
        async with aclient.lease():
            assert relay.leased() == 1

    asyncio.run(run_async())
    assert relay.leased() == 0

    wrong = RelayClient(relay.url, fingerprint="node-3", node_token="nope")
    with pytest.raises(NodeRefusedError, match="401 missing or invalid node token"), wrong.lease():
        pytest.fail("the block must not run")


def test_wrong_public_key_is_a_signature_error_and_frees_the_seat(relays: Relays) -> None:
    key = new_private_key()
    (relays.tmp / "key.pem").write_bytes(private_key_pem(key))
    relay = relays.serve(extra=["--signing-key-file", str(relays.tmp / "key.pem")])
    client = RelayClient(
        relay.url, fingerprint="node-1", signing_public_key=public_key_hex(new_private_key())
    )
    with pytest.raises(ResponseSignatureError, match="wrong public key"), client.lease():
        pytest.fail("the block must not run")
    assert relay.leased() == 0
