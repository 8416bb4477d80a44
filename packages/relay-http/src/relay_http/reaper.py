"""The background loop: frees leases whose nodes stopped heartbeating, and writes the counts of
refused claims."""

from __future__ import annotations

import logging
import threading

from relay_core import Relay

__all__ = ["Reaper"]

logger = logging.getLogger("relay")


class Reaper:
    """Calls `relay.cull()` every `interval` seconds on a thread until `stop()`.

    The first pass runs one interval after `start()`, as Keygen Relay's ticker does. With
    `cull=False` (heartbeats off) it only writes the denial counts. Each pass, and `stop()`,
    writes the 410s counted since the last (`Relay.flush_denials`). A store
    with a ``checkpoint()`` method (SQLite's WAL) gets it called after each pass, so the
    checkpoint work happens here rather than inside some request's commit.
    """

    def __init__(self, relay: Relay, interval: float, *, cull: bool = True) -> None:
        if interval <= 0:
            raise ValueError("cull interval must be positive")
        self._relay = relay
        self._interval = interval
        self._cull = cull
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="relay-reaper", daemon=True)

    def start(self) -> None:
        logger.debug("starting reaper ttl=%ss interval=%ss", self._relay.ttl, self._interval)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop and wait for a pass in progress to finish."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._flush_denials()

    def _flush_denials(self) -> None:
        try:
            self._relay.flush_denials()
        except Exception as exc:
            logger.warning("failed to write denial counts error=%s", exc)

    def run_once(self) -> None:
        """One cull pass, denial counts and checkpoint; failures are logged and retried on the
        next tick."""
        self._flush_denials()
        if self._cull:
            self._cull_once()
        checkpoint = getattr(self._relay.store, "checkpoint", None)
        if callable(checkpoint):
            try:
                checkpoint()
            except Exception as exc:
                logger.warning("store checkpoint failed error=%s", exc)

    def _cull_once(self) -> None:
        try:
            report = self._relay.cull()
        except Exception as exc:
            logger.error("reaper failed to cull dead nodes error=%s", exc)
        else:
            if report.culled or report.released:
                logger.debug(
                    "reaper successfully culled dead nodes count=%d released=%d",
                    report.culled,
                    report.released,
                )
            else:
                logger.debug("reaper has nothing to cull")

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            self.run_once()
