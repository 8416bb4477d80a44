"""Give held seats back when the process ends: on SIGTERM and at interpreter exit.

A process stopped by SIGTERM runs no ``finally`` blocks, so without this its seat would stay
taken for a whole TTL. The SIGTERM handler releases every held lease (each within its
`release_timeout`), then hands the signal on: to the handler that was installed before, or — if
that was the default — restores the default and re-sends SIGTERM, so the process still dies
exactly as it would have. The handler is installed only from the main thread, only when the
first lease is held, and never over a SIGTERM the application ignores.

A child made by ``fork`` holds no lease (`seatlock` closes its copies of the locks): it forgets
the parent's, so its exit or SIGTERM (``multiprocessing``'s ``terminate()``) never gives back the
parent's seat.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

__all__ = ["forget", "hold", "release_all"]

log = logging.getLogger("relay_client")


class Releasable(Protocol):
    @property
    def release_budget(self) -> float: ...
    def emergency_release(self, budget: float) -> None: ...


Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _ExitHooks:
    """The process-wide registry of held leases and the hooks that release them."""

    def __init__(self) -> None:
        self.held: dict[int, Releasable] = {}
        self.lock = threading.RLock()  # the SIGTERM handler may interrupt its holder
        self.atexit_installed = False
        self.signal_installed = False
        self.previous: Handler = signal.SIG_DFL

    def hold(self, lease: Releasable, *, signals: bool) -> None:
        with self.lock:
            self.held[id(lease)] = lease
            if not self.atexit_installed:
                atexit.register(release_all)
                self.atexit_installed = True
        if signals:
            self.install_signal()

    def install_signal(self) -> None:
        if self.signal_installed or threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        if current == signal.SIG_IGN or current is None:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
        self.previous = current
        self.signal_installed = True


_hooks = _ExitHooks()


def _after_fork_in_child() -> None:
    _hooks.held.clear()
    _hooks.lock = threading.RLock()  # the parent's may have been held by another thread


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def hold(lease: Releasable, *, signals: bool) -> None:
    """Remember `lease` until it is released; install the exit hooks on first use."""
    _hooks.hold(lease, signals=signals)


def forget(lease: Releasable) -> None:
    with _hooks.lock:
        _hooks.held.pop(id(lease), None)


def release_all() -> None:
    """Release every lease still held, each within its own budget; never raises."""
    with _hooks.lock:
        leases = list(_hooks.held.values())
    for lease in leases:
        try:
            lease.emergency_release(lease.release_budget)
        except Exception:
            log.exception("releasing a relay lease at exit failed")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    release_all()
    previous = _hooks.previous
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
