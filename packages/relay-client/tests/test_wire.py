"""The protocol without I/O: requests built and responses read exactly as spec §3 says."""

from __future__ import annotations

import base64
import json
import time

import pytest
from relay_client import (
    LeaseConflictError,
    LicenseVerificationError,
    NoSeatError,
    PoolRejectedError,
    ResponseSignatureError,
    UnexpectedResponseError,
)
from relay_client.errors import ConfigurationError
from relay_client.wire import Endpoint, Extension, Grant, Request, Response, Wire
from relay_core import ClaimConflictError, NoLicensesAvailableError, SignatureError
from relay_core.keygen import KeygenVerifier
from relay_core.signing import sign
from relay_core.testing import LicenseWriter, tamper

T = 1764949490


def wire(**kwargs: object) -> Wire:
    options: dict[str, object] = {"pool": None, "signing_secret": None, "wall_clock": lambda: T}
    options.update(kwargs)
    return Wire(**options)  # type: ignore[arg-type]


def body(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def reply(status: int, doc: object = None, secret: str | None = None, t: int = T) -> Response:
    raw = b"" if doc is None else body(doc)
    headers = {"relay-clock": str(t)}
    if secret:
        headers["relay-signature"] = sign(secret, t, raw)
    return Response(status, headers, raw)


PUT = Request("PUT", "/v1/nodes/fp", {})


def test_endpoint_parses_host_port_and_prefix() -> None:
    """A URL gives scheme, host, port (scheme default when absent) and a path prefix."""
    assert Endpoint.parse("http://relay.internal:6349") == Endpoint(
        "http", "relay.internal", 6349, ""
    )
    assert Endpoint.parse("https://r.example/relay/") == Endpoint(
        "https", "r.example", 443, "/relay"
    )
    assert Endpoint.parse("http://[::1]:7000").url == "http://[::1]:7000"


@pytest.mark.parametrize("url", ["relay:6349", "ftp://x", "http://", "http://h:99999"])
def test_endpoint_rejects_non_relay_urls(url: str) -> None:
    """Anything but http(s)://host[:port] is a configuration error naming the fix."""
    with pytest.raises(ConfigurationError, match="http://"):
        Endpoint.parse(url)


def test_claim_request_encodes_the_fingerprint_and_sends_the_pool() -> None:
    """PUT /v1/nodes/{fp} with the fingerprint percent-encoded and Relay-Pool when a pool is set."""
    request = wire(pool="prod").claim("a b%c")
    assert (request.method, request.target) == ("PUT", "/v1/nodes/a%20b%25c")
    assert request.headers["Relay-Pool"] == "prod"
    assert "Relay-Pool" not in wire().release("x").headers
    assert wire().release("x").method == "DELETE"
    assert wire(endpoint=Endpoint.parse("http://h/p")).health().target == "/p/v1/health"


def test_201_is_a_grant_with_the_decoded_file() -> None:
    """A 201 body yields the key, the base64-decoded file and the expiry numbers."""
    raw = b"-----BEGIN LICENSE FILE-----\nabc\n-----END LICENSE FILE-----\n"
    doc = {
        "license_file": base64.b64encode(raw).decode(),
        "license_key": "K",
        "expires_at": T + 60,
        "expires_in": 60,
    }
    grant = wire().read_claim(PUT, reply(201, doc), "fp")
    assert grant == Grant("K", raw, T + 60, 60)


def test_202_is_an_extension() -> None:
    """A 202 body yields the new expiry."""
    assert wire().read_claim(PUT, reply(202, {"expires_at": T + 60, "expires_in": 60}), "fp") == (
        Extension(T + 60, 60)
    )


def test_error_statuses_map_to_the_client_tree() -> None:
    """410, 409 and 400 become errors that also match relay-core's domain errors."""
    w = wire(pool="prod")
    with pytest.raises(NoSeatError) as gone:
        w.read_claim(PUT, reply(410, {"error": "no licenses available"}), "fp")
    assert isinstance(gone.value, NoLicensesAvailableError)
    with pytest.raises(LeaseConflictError) as conflict:
        w.read_claim(PUT, reply(409, {"error": "failed to claim license due to conflict"}), "fp")
    assert isinstance(conflict.value, ClaimConflictError)
    with pytest.raises(PoolRejectedError, match="relay add --pool"):
        w.read_claim(PUT, reply(400, {"error": "invalid pool header"}), "fp")
    with pytest.raises(PoolRejectedError, match="fixed pool"):
        w.read_claim(PUT, reply(400, {"error": "unsupported pool header"}), "fp")


@pytest.mark.parametrize(
    ("status", "doc"),
    [
        (500, {"error": "failed to claim license"}),
        (201, {"license_key": "K"}),
        (201, {"license_file": "!!", "license_key": "K", "expires_at": 1, "expires_in": 1}),
        (202, {"expires_at": True, "expires_in": 60}),
        (202, ["not", "an", "object"]),
        (301, None),
    ],
)
def test_answers_outside_the_protocol_are_unexpected(status: int, doc: object) -> None:
    """A 500, a redirect or a malformed body is an UnexpectedResponseError naming the status."""
    with pytest.raises(UnexpectedResponseError, match=str(status)):
        wire().read_claim(PUT, reply(status, doc), "fp")


def test_release_204_is_true_404_is_false() -> None:
    """204 means given back; 404 'claim not found' means the relay held nothing for us."""
    w = wire()
    delete = w.release("fp")
    assert w.read_release(delete, reply(204)) is True
    assert w.read_release(delete, reply(404, {"error": "claim not found"})) is False
    with pytest.raises(UnexpectedResponseError):
        w.read_release(delete, Response(404, {}, b"404 page not found\n"))


def test_spec_signature_vectors_verify() -> None:
    """The spec's test vectors (secret hunter2) pass verification."""
    w = wire(signing_secret="hunter2")
    header = "t=1764949490,v1=83c288c276ae120962547049269cb09c8f984b9ae3d344242829fcb722f50256"
    w.check_signature(Response(204, {"relay-signature": header}, b""))
    header = "t=1764949490,v1=ccb3c09f694f343bdce38b96a71a32db7bbe15f068f88bbeb6050fd1db37ddf1"
    w.check_signature(Response(404, {"relay-signature": header}, b'{"error":"claim not found"}\n'))


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (reply(204), "not signed"),
        (reply(204, secret="other"), "does not match"),
        (reply(204, secret="hunter2", t=T - 301), "away from this clock"),
        (Response(204, {"relay-signature": "garbage"}, b""), "malformed"),
    ],
)
def test_missing_wrong_or_stale_signatures_are_errors(response: Response, reason: str) -> None:
    """With a secret, an unsigned, wrongly signed or stale response raises ResponseSignatureError."""
    with pytest.raises(ResponseSignatureError, match=reason) as error:
        wire(signing_secret="hunter2").read_release(wire().release("fp"), response)
    assert isinstance(error.value, SignatureError)
    assert "--signing-secret" in str(error.value)


def test_signature_tolerance_is_configurable() -> None:
    """A wider tolerance accepts a response whose t is 10 minutes old."""
    old = reply(204, secret="hunter2", t=T - 600)
    assert wire(signing_secret="hunter2", tolerance=900).read_release(wire().release("fp"), old)


def test_license_verification_decrypts_or_rejects() -> None:
    """With a verifier the grant carries the decrypted file; a tampered file is rejected."""
    writer = LicenseWriter.ed25519()
    raw = writer.license(key="KEY-1")
    w = wire(verifier=KeygenVerifier(writer.public_key), wall_clock=time.time)
    checked = w.verify_license(Grant("KEY-1", raw, 0, 60))
    assert checked.license is not None
    assert checked.license.key == "KEY-1"
    with pytest.raises(LicenseVerificationError, match="public_key"):
        w.verify_license(Grant("KEY-1", tamper(raw), 0, 60))
    with pytest.raises(LicenseVerificationError, match="wrong license key"):
        w.verify_license(Grant("KEY-2", raw, 0, 60))
