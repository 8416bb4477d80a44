"""Ed25519 and request-bound signatures, node tokens, the allow-list and the new-node limit."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import falcon
import falcon.testing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from falcon.testing.helpers import closed_wsgi_iterable
from relay_core import License, Relay
from relay_core.signing import verify, verify_ed25519, verify_v2
from relay_http import create_app
from relay_http.access import (
    AccessFileError,
    NewNodeLimit,
    NodeAccess,
    WatchedFile,
    read_allow_list,
    read_tokens,
)

T0 = 1764949490
AddLicense = Callable[..., License]
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def request(
    app: falcon.App[falcon.Request, falcon.Response],
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    remote_addr: str = "127.0.0.1",
) -> falcon.testing.Result:
    env = falcon.testing.create_environ(
        path=path, method=method, headers=dict(headers or {}), remote_addr=remote_addr
    )
    env["REQUEST_URI"] = path  # as waitress sets it: the raw target
    start = falcon.testing.StartResponseMock()
    data = closed_wsgi_iterable(app(env, start))
    assert start.status is not None
    assert start.headers is not None
    return falcon.testing.Result(data, start.status, start.headers)


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- signatures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/v1/nodes/a", 201),
        ("PUT", "/v1/nodes/a", 202),
        ("DELETE", "/v1/nodes/zzz", 404),
        ("GET", "/v1/health", 200),
        ("GET", "/nope", 404),
        ("POST", "/v1/health", 405),
    ],
)
def test_every_response_carries_an_ed25519_signature(
    relay: Relay, add: AddLicense, method: str, path: str, status: int
) -> None:
    add("K1")
    app = create_app(relay, signing_secret="hunter2", signing_key=KEY)
    if status == 202:
        request(app, "PUT", path)
    resp = request(app, method, path)
    assert resp.status_code == status
    value = resp.headers["relay-signature"]
    assert value.startswith(f"t={T0},v1=")
    assert verify_ed25519(value, resp.content, KEY.public_key(), now=T0) == T0
    assert verify(value, resp.content, "hunter2", now=T0) == T0
    assert "v2=" not in value  # no nonce, nothing to bind


def test_a_nonce_binds_v2_and_ed25519_to_the_request(relay: Relay, add: AddLicense) -> None:
    add("K1")
    app = create_app(relay, signing_secret="hunter2", signing_key=KEY)
    resp = request(app, "PUT", "/v1/nodes/a%20b", {"Relay-Nonce": "n-1"})
    assert resp.status_code == 201
    assert resp.headers["relay-nonce"] == "n-1"
    value = resp.headers["relay-signature"]
    bound = {"nonce": "n-1", "method": "PUT", "path": "/v1/nodes/a%20b"}
    verify_ed25519(value, resp.content, KEY.public_key(), now=T0, **bound)  # type: ignore[arg-type]
    verify_v2(value, resp.content, "hunter2", now=T0, **bound)  # type: ignore[arg-type]
    verify(value, resp.content, "hunter2", now=T0)  # v1 is still the unbound HMAC


def test_key_without_secret_has_no_v1(relay: Relay) -> None:
    resp = request(create_app(relay, signing_key=KEY), "GET", "/v1/health")
    assert resp.headers["relay-signature"].split(",")[1].startswith("ed25519=")


@pytest.mark.parametrize("nonce", ["", "a b", "x" * 129])
def test_a_bad_nonce_is_400_and_signed_unbound(relay: Relay, nonce: str) -> None:
    resp = request(create_app(relay, signing_key=KEY), "GET", "/v1/health", {"Relay-Nonce": nonce})
    assert resp.status_code == 400
    assert resp.json == {"error": "invalid nonce header"}
    assert "relay-nonce" not in resp.headers
    verify_ed25519(resp.headers["relay-signature"], resp.content, KEY.public_key(), now=T0)


def test_nonce_is_ignored_without_signing(relay: Relay) -> None:
    resp = request(create_app(relay), "GET", "/v1/health", {"Relay-Nonce": "a b"})
    assert resp.status_code == 200
    assert "relay-signature" not in resp.headers
    assert "relay-nonce" not in resp.headers


# -- node tokens -------------------------------------------------------------------------------


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_node_tokens(relay: Relay, add: AddLicense, tmp_path: Path) -> None:
    add("K1")
    tokens = WatchedFile(_file(tmp_path, "t", "# nodes\nalpha\n\nbeta\n"), read_tokens, what="t")
    app = create_app(relay, signing_key=KEY, access=NodeAccess(tokens=tokens))
    for headers in [{}, {"Authorization": "Bearer gamma"}, {"Authorization": "Basic alpha"}]:
        resp = request(app, "PUT", "/v1/nodes/a", headers)
        assert resp.status_code == 401
        assert resp.json == {"error": "missing or invalid node token"}
        assert resp.headers["www-authenticate"] == "Bearer"
        verify_ed25519(resp.headers["relay-signature"], resp.content, KEY.public_key(), now=T0)
    assert request(app, "DELETE", "/v1/nodes/a").status_code == 401
    assert request(app, "GET", "/v1/health").status_code == 200
    assert (
        request(app, "PUT", "/v1/nodes/a", {"Authorization": "Bearer alpha"}).status
        == "201 Created"
    )
    assert request(app, "PUT", "/v1/nodes/a", {"Authorization": "bearer beta"}).status_code == 202


@pytest.mark.parametrize(
    ("text", "reason"), [("", "no tokens"), ("# x\n\n", "no tokens"), ("a b\n", "spaces")]
)
def test_bad_token_files(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(AccessFileError, match=reason):
        WatchedFile(_file(tmp_path, "t", text), read_tokens, what="node token file")


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AccessFileError, match=r"cannot read allow-list .*nope: No such file"):
        WatchedFile(tmp_path / "nope", read_allow_list, what="allow-list")


# -- allow-list --------------------------------------------------------------------------------


def test_allow_list_exact_and_patterns(relay: Relay, add: AddLicense, tmp_path: Path) -> None:
    for key in ("K1", "K2", "K3"):
        add(key)
    path = _file(tmp_path, "allow", "node-1\nrack-?-*\n")
    clock = Ticker()
    allow = WatchedFile(path, read_allow_list, what="allow-list", monotonic=clock)
    app = create_app(relay, access=NodeAccess(allow=allow))
    assert request(app, "PUT", "/v1/nodes/node-1").status_code == 201
    assert request(app, "PUT", "/v1/nodes/rack-7-x").status_code == 201
    resp = request(app, "PUT", "/v1/nodes/node-2")
    assert resp.status_code == 403
    assert resp.json == {"error": "fingerprint is not allowed"}
    assert [lic.node_id is not None for lic in relay.list_licenses()].count(True) == 2
    assert request(app, "DELETE", "/v1/nodes/node-2").status_code == 404  # releases not checked

    path.write_text("node-1\nrack-?-*\nnode-2\n")
    assert request(app, "PUT", "/v1/nodes/node-2").status_code == 403  # not looked at yet
    clock.t += 1.0
    assert request(app, "PUT", "/v1/nodes/node-2").status_code == 201


def test_broken_reload_keeps_the_last_good_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _file(tmp_path, "allow", "a\n")
    allow = WatchedFile(path, read_allow_list, what="allow-list")
    path.write_bytes(b"\xff\xfe")
    allow.reload()
    assert allow.value.allows("a")
    assert "is not UTF-8 text; keeping the previous one" in caplog.text
    os.remove(path)
    allow.reload()
    assert allow.value.allows("a")
    path.write_text("b\n")
    allow.reload()
    assert allow.value.allows("b")
    assert not allow.value.allows("a")


def test_empty_allow_list_denies_every_claim(tmp_path: Path) -> None:
    allow = read_allow_list("# nobody yet\n")
    assert len(allow) == 0
    assert not allow.allows("x")


# -- new-node limit ----------------------------------------------------------------------------


def test_limit_window_slides() -> None:
    clock = Ticker()
    limit = NewNodeLimit(3, clock=clock)
    assert [limit.take("a") for _ in range(3)] == [None, None, None]
    assert limit.take("a") == pytest.approx(60.0)
    assert limit.take("b") is None  # another address has its own budget
    clock.t += 59.5
    assert limit.take("a") == pytest.approx(0.5)
    clock.t += 0.5
    assert limit.take("a") is None
    clock.t += 200
    limit.take("c")
    assert len(limit) == 1  # idle addresses are forgotten


def test_limit_counts_only_new_seats(relay: Relay, add: AddLicense) -> None:
    """Heartbeats and releases pass when the budget is spent; refused claims take no seat."""
    for n in range(10):
        add(f"K{n}")
    clock = Ticker()
    app = create_app(relay, signing_key=KEY, access=NodeAccess(limit=NewNodeLimit(3, clock=clock)))
    statuses = [request(app, "PUT", f"/v1/nodes/n{n}").status_code for n in range(6)]
    assert statuses == [201, 201, 201, 429, 429, 429]
    refused = request(app, "PUT", "/v1/nodes/n9")
    assert refused.json == {"error": "too many new nodes from this address"}
    assert refused.headers["retry-after"] == "60"
    verify_ed25519(refused.headers["relay-signature"], refused.content, KEY.public_key(), now=T0)
    for _ in range(5):
        assert request(app, "PUT", "/v1/nodes/n0").status_code == 202
    assert request(app, "DELETE", "/v1/nodes/n1").status_code == 204
    assert request(app, "PUT", "/v1/nodes/x", remote_addr="10.0.0.2").status_code == 201
    assert sum(lic.node_id is not None for lic in relay.list_licenses()) == 3
    clock.t += 60
    assert request(app, "PUT", "/v1/nodes/n1").status_code == 201


def test_checks_guard_only_the_node_routes(relay: Relay, tmp_path: Path) -> None:
    """Another route with a fingerprint parameter (e.g. an admin API mounted beside) is not
    asked for a node token: the operator's routes have their own authentication."""

    class Other:
        def on_delete(self, req: falcon.Request, resp: falcon.Response, fingerprint: str) -> None:
            resp.status = falcon.HTTP_204

    tokens = WatchedFile(_file(tmp_path, "t", "alpha\n"), read_tokens, what="t")
    app = create_app(relay, access=NodeAccess(tokens=tokens))
    app.add_route("/v1/admin/nodes/{fingerprint}", Other())
    assert request(app, "DELETE", "/v1/admin/nodes/a").status_code == 204
    assert request(app, "DELETE", "/v1/nodes/a").status_code == 401


def test_token_is_checked_before_a_wrong_method_is_answered(relay: Relay, tmp_path: Path) -> None:
    tokens = WatchedFile(_file(tmp_path, "t", "alpha\n"), read_tokens, what="t")
    app = create_app(relay, access=NodeAccess(tokens=tokens))
    assert request(app, "GET", "/v1/nodes/a").status_code == 401
    assert request(app, "GET", "/v1/nodes/a", {"Authorization": "Bearer alpha"}).status_code == 405


def test_a_fifo_swapped_in_while_serving_is_refused_not_waited_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file is re-read on every change, on a request thread holding the watcher's lock: a
    FIFO nobody writes to (or a device, or a huge file) is refused at once, the last good list
    kept, instead of blocking every claim behind that read."""
    path = _file(tmp_path, "allow", "a\n")
    allow = WatchedFile(path, read_allow_list, what="allow-list")
    os.remove(path)
    os.mkfifo(path)
    allow.reload()  # blocked for ever in open() before
    assert allow.value.allows("a")
    assert "not a regular file; keeping the previous one" in caplog.text
