"""`relay serve --config` end to end: the file's settings take effect, flags win over them, and a
bad file stops the server with one line."""

from __future__ import annotations

import json

import pytest

from .conftest import ServerFactory, Workspace


def test_the_file_configures_the_server_and_flags_override_it(
    ws: Workspace, serve: ServerFactory
) -> None:
    ws.add(ws.license("lic"), database="other.sqlite")
    (ws.root / "token").write_text("file-token\n")
    (ws.root / "relay.toml").write_text(
        'port = 1\nttl = "2m"\ndatabase = "other.sqlite"\nadmin_token_file = "token"\n'
        "no_metrics = true\n"
    )
    server = serve("--config", "relay.toml")  # the factory's --port wins over port = 1
    resp = server.claim("node-1")
    assert resp.status == 201
    assert json.loads(resp.body)["expires_in"] == 120
    assert server.request("GET", "/metrics").status == 404
    server.stop()
    assert not ws.db.exists()  # database came from the file

    server = serve("--ttl", "90s", "--no-metrics", env={"RELAY_CONFIG": "relay.toml"})
    assert server.claim("node-2").status == 410  # the one license is node-1's
    server.stop()
    run = ws.relay("leases", "--json", "--database", "other.sqlite")
    assert [lease["fingerprint"] for lease in json.loads(run.out)] == ["node-1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('ttl = "2 minutes"', 'relay.toml: ttl: invalid duration "2 minutes"'),
        ("colour = 1", "relay.toml: colour: unknown key"),
        ('threads = "4"', 'relay.toml: threads: expected an integer, got "4"'),
    ],
)
def test_a_bad_file_exits_1_with_one_line(ws: Workspace, text: str, message: str) -> None:
    (ws.root / "relay.toml").write_text(text + "\n")
    run = ws.relay("serve", "--config", "relay.toml")
    assert (run.code, run.out, run.err) == (1, "", f"error: {message}\n")


def test_a_missing_file_exits_1(ws: Workspace) -> None:
    run = ws.relay("serve", "--config", "missing.toml")
    assert (run.code, run.err) == (1, "error: missing.toml: no such file\n")
    assert not ws.db.exists()


def test_print_config_masks_secrets(ws: Workspace) -> None:
    (ws.root / "relay.toml").write_text('signing_secret = "hunter2"\nadmin_token = "tok"\n')
    run = ws.relay("serve", "--config", "relay.toml", "--print-config", "--port", "7000")
    assert run.code == 0, run.err
    assert "hunter2" not in run.out
    assert 'tok"' not in run.out
    assert 'signing_secret = "********"' in run.out
    assert "port = 7000" in run.out
