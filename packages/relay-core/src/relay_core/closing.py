"""`close_at_exit`: a store that queues writes (heartbeats answered from memory) writes them at
interpreter exit even if the embedding application never called `close()`.

Only a weak reference is held, so registering does not keep a store alive; the returned function
takes the hook back, for `close()` to call first. A child made by `fork()` inherits the hook but
not the store: its connections are the parent's, so only the process that registered closes.
"""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from collections.abc import Callable
from typing import Protocol

from .errors import RelayError

__all__ = ["close_at_exit"]

log = logging.getLogger("relay")


class _Closable(Protocol):
    def close(self) -> None: ...


def close_at_exit(owner: _Closable) -> Callable[[], None]:
    """Call `owner.close()` at interpreter exit if it is still alive; returns the unregister."""
    ref = weakref.ref(owner)
    pid = os.getpid()

    def hook() -> None:
        target = ref()
        if target is None or os.getpid() != pid:
            return
        try:
            target.close()
        except RelayError as exc:  # nobody is left to raise to
            log.warning("closing %r at exit failed: %s", target, exc)

    atexit.register(hook)
    return lambda: atexit.unregister(hook)
