"""The store's lock is granted first come, first served."""

from __future__ import annotations

import threading
import time

import pytest
from relay_sqlite.fairlock import FairLock


def test_waiters_get_the_lock_in_arrival_order() -> None:
    """Threads queued behind the holder acquire in the order they arrived."""
    lock = FairLock()
    order: list[int] = []
    lock.acquire()
    threads = []
    for n in range(5):
        t = threading.Thread(target=lambda n=n: (lock.acquire(), order.append(n), lock.release()))
        t.start()
        threads.append(t)
        while len(lock._waiters) < n + 1:  # wait until thread n is queued
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join(timeout=10)
    assert order == [0, 1, 2, 3, 4]
    with lock:
        assert lock._held


def test_releasing_an_unheld_lock_is_an_error() -> None:
    """release() without acquire() raises instead of corrupting the queue."""
    with pytest.raises(RuntimeError):
        FairLock().release()
