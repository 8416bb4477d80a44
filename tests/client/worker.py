"""A vendor's application in miniature: hold a seat with `RelayClient(...).lease()` and work.

Run as a subprocess by the tests. Prints one line per event (``held KEY``, ``lost REASON``,
``released HEARTBEATS``) so the test can follow it; exits 3 if the lease was lost.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from relay_client import LeaseLostError, RelayClient


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("fingerprint")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds of licensed work")
    parser.add_argument("--wait", type=float, default=None)
    parser.add_argument("--secret", default=None)
    parser.add_argument("--pool", default=None)
    parser.add_argument("--own-sigterm", action="store_true", help="install a handler first")
    args = parser.parse_args()
    if args.own_sigterm:

        def on_term(signum: int, frame: object) -> None:
            print("own handler", flush=True)
            raise SystemExit(7)

        signal.signal(signal.SIGTERM, on_term)

    client = RelayClient(
        args.url, pool=args.pool, fingerprint=args.fingerprint, signing_secret=args.secret
    )
    with client.lease(
        wait=args.wait, on_lost=lambda e: print("lost", e.reason, flush=True)
    ) as lease:
        print("held", lease.license_key, flush=True)
        end = time.monotonic() + args.hold
        try:
            while time.monotonic() < end:
                lease.check()
                time.sleep(0.05)
        except LeaseLostError:
            return 3
        heartbeats = lease.heartbeats
    print("released", heartbeats, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
