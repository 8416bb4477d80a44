"""Ed25519 response verification, nonces and the node token, without I/O."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_client import RelayClient, ResponseSignatureError
from relay_client.errors import ConfigurationError
from relay_client.wire import Request, Response, Wire
from relay_core.signing import header, public_key_hex, public_key_pem, sign

T = 1764949490
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
BODY = b'{"expires_at":1764949550,"expires_in":60}\n'


def wire(**kwargs: object) -> Wire:
    options: dict[str, object] = {"pool": None, "signing_secret": None, "wall_clock": lambda: T}
    nonces = iter(f"nonce-{n}" for n in range(100))
    options["nonce"] = lambda: next(nonces)
    options.update(kwargs)
    return Wire(**options)  # type: ignore[arg-type]


def answer(
    request: Request, *, key: object = KEY, secret: str | None = None, **override: str
) -> Response:
    """The relay's signed 202 for `request` (fields overridable to forge a mismatch)."""
    bound = {
        "nonce": request.headers.get("Relay-Nonce"),
        "method": request.method,
        "path": request.target,
        **override,
    }
    value = header(T, BODY, secret=secret, key=key, **bound)  # type: ignore[arg-type]
    headers = {"relay-signature": value}
    if bound["nonce"] is not None:
        headers["relay-nonce"] = bound["nonce"]
    return Response(202, headers, BODY)


def test_each_request_gets_a_fresh_nonce_only_when_verifying() -> None:
    assert "Relay-Nonce" not in wire().claim("fp").headers
    w = wire(signing_public_key=KEY.public_key())
    assert [w.claim("fp").headers["Relay-Nonce"] for _ in range(2)] == ["nonce-0", "nonce-1"]
    assert "Relay-Nonce" in wire(signing_secret="s").release("fp").headers


def test_node_token_is_sent_as_bearer() -> None:
    w = wire(node_token="t0k3n")
    for request in (w.claim("fp"), w.release("fp"), w.health()):
        assert request.headers["Authorization"] == "Bearer t0k3n"
    assert "Authorization" not in wire().claim("fp").headers


def test_a_bound_ed25519_answer_verifies() -> None:
    w = wire(signing_public_key=KEY.public_key())
    request = w.claim("fp")
    assert w.read_claim(request, answer(request), "fp").expires_in == 60


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"nonce": "other"}, "another request|another Relay-Nonce"),
        ({"path": "/v1/nodes/b"}, "another request"),
        ({"method": "DELETE"}, "another request"),
    ],
)
def test_an_answer_for_another_request_is_refused(override: dict[str, str], reason: str) -> None:
    w = wire(signing_public_key=KEY.public_key())
    request = w.claim("fp")
    with pytest.raises(ResponseSignatureError, match=reason):
        w.read_claim(request, answer(request, **override), "fp")


def test_missing_or_foreign_signatures_are_refused() -> None:
    w = wire(signing_public_key=KEY.public_key())
    request = w.claim("fp")
    with pytest.raises(ResponseSignatureError, match="not signed"):
        w.read_claim(request, Response(202, {}, BODY), "fp")
    with pytest.raises(ResponseSignatureError, match="no ed25519 pair"):
        w.read_claim(request, answer(request, key=None, secret="s"), "fp")
    other = Ed25519PrivateKey.from_private_bytes(bytes(32))
    with pytest.raises(ResponseSignatureError, match="wrong public key"):
        w.read_claim(request, answer(request, key=other), "fp")


def test_secret_checks_v2_when_sent_and_v1_from_keygen_relay() -> None:
    w = wire(signing_secret="s")
    request = w.claim("fp")
    w.read_claim(request, answer(request, key=None, secret="s"), "fp")
    with pytest.raises(ResponseSignatureError, match="v2 does not match"):
        w.read_claim(request, answer(request, key=None, secret="s", path="/v1/nodes/x"), "fp")
    keygen = Response(202, {"relay-signature": sign("s", T, BODY)}, BODY)  # v1 only, no echo
    w.read_claim(request, keygen, "fp")


def test_client_options() -> None:
    """Hex or PEM keys are accepted; a bad key or token fails at construction."""
    for text in (public_key_hex(KEY), public_key_pem(KEY)):
        RelayClient("http://127.0.0.1:1", fingerprint="fp", signing_public_key=text)
    with pytest.raises(ConfigurationError, match="signing_public_key is not usable"):
        RelayClient("http://127.0.0.1:1", fingerprint="fp", signing_public_key="abc")
    with pytest.raises(ConfigurationError, match="node_token must be one line"):
        RelayClient("http://127.0.0.1:1", fingerprint="fp", node_token="a b")


def _error(status: int, message: str, **headers: str) -> Response:
    return Response(status, headers, b'{"error":"%s"}\n' % message.encode())


def test_refusals_are_clear_errors() -> None:
    """401 and 403 say what to set or ask for; 429 carries Retry-After and is retryable."""
    from relay_client import NodeRefusedError, RateLimitedError, UnexpectedResponseError

    w = wire()
    put = w.claim("node-7")
    with pytest.raises(NodeRefusedError, match="401 missing or invalid node token.*node_token"):
        w.read_claim(put, _error(401, "missing or invalid node token"), "node-7")
    with pytest.raises(NodeRefusedError, match="403 fingerprint is not allowed.*'node-7'"):
        w.read_claim(put, _error(403, "fingerprint is not allowed"), "node-7")
    with pytest.raises(NodeRefusedError, match="401"):
        w.read_release(w.release("node-7"), _error(401, "missing or invalid node token"))
    with pytest.raises(RateLimitedError, match="retry in 42s") as limited:
        w.read_claim(
            put, _error(429, "too many new nodes from this address", **{"retry-after": "42"}), "n"
        )
    assert isinstance(limited.value, UnexpectedResponseError)
    assert limited.value.retry_after == 42
    assert limited.value.status == 429
