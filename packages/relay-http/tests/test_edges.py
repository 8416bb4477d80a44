"""Health, unknown routes, wrong methods, Relay-Clock and Relay-Signature (spec §3.1, §3.2, A.11)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from relay_core import License, Relay, StorageError
from relay_core.signing import verify
from relay_core.testing import MemoryStore
from relay_http import create_app

T0 = 1764949490
AddLicense = Callable[..., License]


class TickingClock:
    """A clock that moves one second forward each time it is read."""

    def __init__(self, start: int) -> None:
        self.t = start

    def now(self) -> float:
        self.t += 1
        return float(self.t - 1)


# -- health ------------------------------------------------------------------------------------


def test_health_is_empty_200_without_content_type(relay: Relay, call) -> None:
    """GET /v1/health is 200 with Content-Length 0, no Content-Type, and Relay-Clock."""
    resp = call(create_app(relay), "GET", "/v1/health")
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["content-length"] == "0"
    assert "content-type" not in resp.headers
    assert resp.headers["relay-clock"] == str(T0)
    assert "relay-signature" not in resp.headers


def test_health_does_not_touch_the_store(failing_relay, call) -> None:
    """The health check answers 200 even when the store is failing."""
    resp = call(create_app(failing_relay(StorageError("down"))), "GET", "/v1/health")
    assert resp.status_code == 200


# -- unknown routes and wrong methods ----------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/v1", "/v1/nodes", "/v1/nodes/x/", "/v1/health/", "/v2/nodes/x", "/V1/health"]
)
def test_unknown_route_is_json_404(relay: Relay, call, path: str) -> None:
    """A path no route matches is 404 with a JSON error body and Relay-Clock."""
    resp = call(create_app(relay), "PUT", path)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.text == '{"error":"not found"}\n'
    assert resp.headers["relay-clock"] == str(T0)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/nodes/x", "DELETE, PUT, OPTIONS"),
        ("POST", "/v1/nodes/x", "DELETE, PUT, OPTIONS"),
        ("PATCH", "/v1/nodes/x", "DELETE, PUT, OPTIONS"),
        ("POST", "/v1/health", "GET, OPTIONS"),
        ("PUT", "/v1/health", "GET, OPTIONS"),
        ("DELETE", "/v1/health", "GET, OPTIONS"),
    ],
)
def test_wrong_method_is_json_405_with_allow(
    relay: Relay, call, method: str, path: str, allow: str
) -> None:
    """A route answered for another method is 405 with Allow, a JSON body and Relay-Clock."""
    resp = call(create_app(relay), method, path)
    assert resp.status_code == 405
    assert resp.headers["allow"] == allow
    assert resp.headers["content-type"] == "application/json"
    assert resp.text == '{"error":"method not allowed"}\n'
    assert resp.headers["relay-clock"] == str(T0)


def test_head_is_405_without_body(relay: Relay, call) -> None:
    """HEAD /v1/health is 405 (only GET is served) and, being HEAD, has no body."""
    resp = call(create_app(relay), "HEAD", "/v1/health")
    assert resp.status_code == 405
    assert resp.content == b""
    assert resp.headers["allow"] == "GET, OPTIONS"


def test_unknown_method_on_a_known_path_is_405_with_allow(relay: Relay, call) -> None:
    """A made-up method on a known path is a wrong method like any other: 405 with `Allow`
    (Part A §11, and Keygen Relay's router), not Falcon's 400."""
    for path, allow in (("/v1/health", "GET, OPTIONS"), ("/v1/nodes/x", "DELETE, PUT, OPTIONS")):
        resp = call(create_app(relay), "FROB", path)
        assert resp.status_code == 405
        assert resp.headers["allow"] == allow
        assert resp.text == '{"error":"method not allowed"}\n'


def test_the_websocket_method_is_a_client_error_with_clock_and_signature(
    relay: Relay, call
) -> None:
    """Falcon refuses WEBSOCKET before any middleware's process_request runs; the answer is
    still a 4xx (it was a 500 with a traceback) stamped like every other."""
    resp = call(create_app(relay, signing_secret="hunter2"), "WEBSOCKET", "/v1/health")
    assert resp.status_code == 400
    assert resp.headers["relay-clock"] == str(T0)
    assert verify(resp.headers["relay-signature"], resp.content, "hunter2", now=T0) == T0


def test_unknown_method_on_an_unknown_path_is_404(relay: Relay, call) -> None:
    """Without a route, the method does not matter."""
    resp = call(create_app(relay), "FROB", "/v1/nope")
    assert resp.status_code == 404
    assert resp.text == '{"error":"not found"}\n'


def test_options_allow_is_the_405_allow(relay: Relay, call) -> None:
    """OPTIONS and a 405 on the same path name the same methods, OPTIONS included."""
    app = create_app(relay, admin_token="t")
    auth = {"Authorization": "Bearer t"}
    for path in ("/v1/health", "/v1/nodes/x", "/v1/admin/leases/x", "/v1/openapi.json"):
        options = call(app, "OPTIONS", path, auth)
        wrong = call(app, "PATCH", path, auth)
        assert options.status_code == 200
        assert wrong.status_code == 405
        assert options.headers["allow"] == wrong.headers["allow"]
        assert options.headers["allow"].endswith(", OPTIONS")
        assert "relay-clock" in options.headers


# -- Relay-Clock -------------------------------------------------------------------------------


def test_relay_clock_is_request_start(add: AddLicense, call) -> None:
    """Relay-Clock is the relay clock read when the request starts, not when it ends."""
    relay = Relay(MemoryStore(), clock=TickingClock(T0))
    add("KEY-1", into=relay)
    start = relay.clock.now() + 1
    resp = call(create_app(relay), "PUT", "/v1/nodes/n")
    assert resp.status_code == 201
    assert resp.headers["relay-clock"] == str(int(start))
    assert resp.json["expires_at"] > start + 60


# -- Relay-Signature ---------------------------------------------------------------------------

VECTORS = {
    b'{"error":"claim not found"}\n': (
        "ccb3c09f694f343bdce38b96a71a32db7bbe15f068f88bbeb6050fd1db37ddf1"
    ),
    b"": "83c288c276ae120962547049269cb09c8f984b9ae3d344242829fcb722f50256",
    b'{"expires_at":1764949550,"expires_in":60}\n': (
        "af9e6d14e90681b376508fdaa7d110482e465c825492556d32e24c9d52d45c79"
    ),
}


def test_signature_vectors(relay: Relay, add: AddLicense, call) -> None:
    """404, 204, health and 202 responses carry exactly the spec's test-vector signatures."""
    add("KEY-1")
    app = create_app(relay, signing_secret="hunter2")
    responses = [
        call(app, "DELETE", "/v1/nodes/n"),
        call(app, "GET", "/v1/health"),
        call(app, "PUT", "/v1/nodes/n"),
        call(app, "PUT", "/v1/nodes/n"),
        call(app, "DELETE", "/v1/nodes/n"),
    ]
    assert [r.status_code for r in responses] == [404, 200, 201, 202, 204]
    for resp in (responses[0], responses[1], responses[3], responses[4]):
        assert resp.headers["relay-clock"] == str(T0)
        assert resp.headers["relay-signature"] == f"t={T0},v1={VECTORS[resp.content]}"


@pytest.mark.parametrize(
    "case",
    [
        ("PUT", "/v1/nodes/n", {}, 201),
        ("PUT", "/v1/nodes/n", {"Relay-Pool": "nope"}, 400),
        ("PUT", "/v1/nodes/" + "x" * 1025, {}, 400),
        ("PUT", "/nowhere", {}, 404),
        ("GET", "/v1/nodes/n", {}, 405),
        ("DELETE", "/v1/nodes/n", {}, 404),
    ],
)
def test_every_response_is_signed(
    relay: Relay, add: AddLicense, call, case: tuple[str, str, dict[str, str], int]
) -> None:
    """With a secret every response, errors included, carries a signature that verifies."""
    method, path, headers, status = case
    add("KEY-1")
    resp = call(create_app(relay, signing_secret="hunter2"), method, path, headers)
    assert resp.status_code == status
    assert verify(resp.headers["relay-signature"], resp.content, "hunter2", now=T0) == T0


@pytest.mark.parametrize("error", [StorageError("down"), RuntimeError("bug")])
def test_server_errors_are_signed(failing_relay, call, error: Exception) -> None:
    """500 responses are signed too."""
    resp = call(create_app(failing_relay(error), signing_secret="hunter2"), "PUT", "/v1/nodes/n")
    assert resp.status_code == 500
    assert verify(resp.headers["relay-signature"], resp.content, "hunter2", now=T0) == T0


@pytest.mark.parametrize("secret", [None, ""])
def test_no_secret_no_signature(relay: Relay, add: AddLicense, call, secret: str | None) -> None:
    """Without a (non-empty) secret there is no Relay-Signature, but Relay-Clock is still sent."""
    add("KEY-1")
    resp = call(create_app(relay, signing_secret=secret), "PUT", "/v1/nodes/n")
    assert resp.status_code == 201
    assert "relay-signature" not in resp.headers
    assert resp.headers["relay-clock"] == str(T0)


# -- robustness of the middleware and the path ------------------------------------------------


def test_bad_nonce_at_info_level_is_400_and_logged(
    relay: Relay, call, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed Relay-Nonce raised before the access log's `process_request` ran: still a
    signed 400 and one ``HTTP request`` line (not a 500 from the log's missing start time)."""
    import logging

    app = create_app(relay, signing_secret="hunter2")
    with caplog.at_level(logging.INFO, logger="relay"):
        resp = call(app, "PUT", "/v1/nodes/p15", {"Relay-Nonce": "a b"})
    assert resp.status_code == 400
    assert resp.text == '{"error":"invalid nonce header"}\n'
    assert verify(resp.headers["relay-signature"], resp.content, "hunter2", now=T0) == T0
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP request")]
    assert "status=400" in line


def _raw_call(app, method: str, raw_target: str) -> tuple[int, bytes]:
    """One request as waitress passes it: PATH_INFO the percent-decoded bytes as latin-1,
    REQUEST_URI the target as sent."""
    import urllib.parse

    import falcon.testing
    from falcon.testing.helpers import closed_wsgi_iterable

    env = falcon.testing.create_environ(path="/", method=method)
    path = raw_target.partition("?")[0]
    env["PATH_INFO"] = urllib.parse.unquote_to_bytes(path).decode("latin-1")
    env["REQUEST_URI"] = raw_target
    env.pop("RAW_URI", None)
    start = falcon.testing.StartResponseMock()
    body = b"".join(closed_wsgi_iterable(app(env, start)))
    assert start.status is not None
    return int(start.status[:3]), body


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("/v1/nodes/%FF%FE", "path is not valid utf-8"),
        ("/v1/nodes/%FE%FF", "path is not valid utf-8"),
        ("/v1/nodes/%C0%C1", "path is not valid utf-8"),
        ("/v1/nodes/%ED%A0%80", "path is not valid utf-8"),  # a UTF-16 surrogate
        ("/v1/nodes/%", "invalid percent-encoding in path"),
        ("/v1/nodes/%zz", "invalid percent-encoding in path"),
        ("/v1/nodes/a%2", "invalid percent-encoding in path"),
    ],
)
def test_fingerprints_that_are_not_one_utf8_string_are_400(
    add: AddLicense, relay: Relay, target: str, error: str
) -> None:
    """Invalid UTF-8 is not replaced by U+FFFD (which made %FF%FE and %FE%FF one node), and a
    malformed escape is refused as Go's server refuses it, for PUT and DELETE alike."""
    add("KEY-1")
    add("KEY-2")
    app = create_app(relay)
    for method in ("PUT", "DELETE"):
        assert _raw_call(app, method, target) == (400, f'{{"error":"{error}"}}\n'.encode())
    assert relay.list_leases(None) == []
    # Valid escapes of valid UTF-8 are fingerprints as before.
    assert _raw_call(app, "PUT", "/v1/nodes/caf%C3%A9")[0] == 201
    assert _raw_call(app, "PUT", "/v1/nodes/a%20b")[0] == 201
    assert sorted(lease.fingerprint for lease in relay.list_leases(None)) == ["a b", "café"]
