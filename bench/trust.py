"""What the trust settings (issue 19) cost a heartbeat, measured in-process, side by side.

    .venv/bin/python bench/trust.py [--nodes 2000] [--rounds 5]

Builds a SQLite database with `--nodes` licenses, claims every one, then, round after round
(configurations interleaved in slices of 50 nodes), sends one heartbeat per node straight into the WSGI app
(no sockets, so the middleware's share is not hidden behind waitress and the network) under:

- ``plain``: no signing, no access checks (Keygen Relay's default);
- ``v1``: `--signing-secret` (HMAC), as today;
- ``ed25519``: `--signing-key-file`, requests without a nonce;
- ``ed25519+nonce``: the same, every request with a fresh `Relay-Nonce` (relay-client's way);
- ``access``: no signing; node token + allow-list pattern + new-node limit;
- ``hardened``: key + secret + nonce + node token + allow-list pattern + new-node limit.

Prints the median microseconds per heartbeat of each and its ratio to ``plain`` (median of the
per-round ratios, min-max). Over HTTP each request also pays waitress and the socket, so the
percentage a real heartbeat pays is lower than the in-process one printed here.
"""

from __future__ import annotations

import argparse
import io
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/http.py would shadow the standard library's `http`: keep this directory last on sys.path.
if sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    sys.path.append(sys.path.pop(0))

from harness import build_database


def configurations(tmp: Path) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """name -> (create_app keyword arguments, extra request headers)."""
    from relay_core.signing import new_private_key
    from relay_http.access import (
        NewNodeLimit,
        NodeAccess,
        WatchedFile,
        read_allow_list,
        read_tokens,
    )

    key = new_private_key()
    (tmp / "tokens").write_text("old-token\nbench-token\n")
    (tmp / "allow").write_text("node-*\n")
    access = NodeAccess(
        tokens=WatchedFile(tmp / "tokens", read_tokens, what="node token file"),
        allow=WatchedFile(tmp / "allow", read_allow_list, what="allow-list"),
        limit=NewNodeLimit(60),
    )
    return {
        "plain": ({}, {}),
        "v1": ({"signing_secret": "hunter2"}, {}),
        "ed25519": ({"signing_key": key}, {}),
        "ed25519+nonce": ({"signing_key": key}, {"Relay-Nonce": ""}),
        "access": ({"access": access}, {"Authorization": "Bearer bench-token"}),
        "hardened": (
            {"signing_key": key, "signing_secret": "hunter2", "access": access},
            {"Relay-Nonce": "", "Authorization": "Bearer bench-token"},
        ),
    }


def requests(nodes: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    """One WSGI environ per node's heartbeat (a fresh nonce each where asked for)."""
    import falcon.testing

    envs = []
    for n in range(nodes):
        extra = {
            k: (secrets.token_hex(16) if k == "Relay-Nonce" else v) for k, v in headers.items()
        }
        env = falcon.testing.create_environ(path=f"/v1/nodes/node-{n}", method="PUT", headers=extra)
        env["REQUEST_URI"] = f"/v1/nodes/node-{n}"
        envs.append(env)
    return envs


def _start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
    assert status.startswith("202"), status


def timed(app: Callable[..., Any], envs: list[dict[str, Any]]) -> float:
    """Seconds to answer every environ in `envs`."""
    started = time.perf_counter()
    for env in envs:
        env["wsgi.input"] = io.BytesIO(b"")
        for _ in app(env, _start_response):
            pass
    return time.perf_counter() - started


def heartbeat_round(
    apps: dict[str, Callable[..., Any]], envs: dict[str, list[dict[str, Any]]], offset: int
) -> dict[str, float]:
    """Seconds per configuration for one heartbeat of every node, interleaved in slices of 50
    nodes (configurations in rotating order), so that drift in the machine's load hits all."""
    names = list(apps)
    took = dict.fromkeys(names, 0.0)
    nodes = len(next(iter(envs.values())))
    for i, start in enumerate(range(0, nodes, 50)):
        k = (offset + i) % len(names)
        for name in names[k:] + names[:k]:
            took[name] += timed(apps[name], envs[name][start : start + 50])
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from relay_core import Relay
    from relay_http import create_app
    from relay_sqlite import open_store

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        build_database(tmp / "relay.sqlite", args.nodes, "trust")
        store = open_store(str(tmp / "relay.sqlite"))
        try:
            relay = Relay(store, ttl=3600)
            for n in range(args.nodes):
                relay.claim(f"node-{n}")
            configs = configurations(tmp)
            apps = {name: create_app(relay, **kwargs) for name, (kwargs, _) in configs.items()}
            names = list(configs)
            warm = {name: requests(min(200, args.nodes), configs[name][1]) for name in names}
            heartbeat_round(apps, warm, 0)
            per_request: dict[str, list[float]] = {name: [] for name in names}
            ratios: dict[str, list[float]] = {name: [] for name in names}
            for r in range(args.rounds):
                envs = {name: requests(args.nodes, configs[name][1]) for name in names}
                took = heartbeat_round(apps, envs, r)
                for name in names:
                    per_request[name].append(took[name] / args.nodes * 1e6)
                    ratios[name].append(took[name] / took["plain"])
        finally:
            store.close()
    print(f"{args.nodes} heartbeats per round, {args.rounds} rounds, in-process WSGI")
    for name in names:
        r = ratios[name]
        print(
            f"{name:15} {statistics.median(per_request[name]):7.1f} us/heartbeat   "
            f"x{statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f}) of plain"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
