"""A transport wrapper that holds one request back until the test opens the gate."""

from __future__ import annotations

import threading
from collections.abc import Callable

from relay_client.wire import Request, Response


class Gate:
    """Sends like `send`, but the `nth` request with `method` waits at the gate until `opened`.

    `entered` is set once that request is held; `log` records (method, status) of each answer.
    """

    def __init__(self, send: Callable[[Request], Response], method: str, nth: int) -> None:
        self._send = send
        self._method = method
        self._nth = nth
        self._count = 0
        self._lock = threading.Lock()
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.log: list[tuple[str, int]] = []

    def __call__(self, request: Request) -> Response:
        if request.method == self._method:
            with self._lock:
                self._count += 1
                held = self._count == self._nth
            if held:
                self.entered.set()
                self.opened.wait(10)
        response = self._send(request)
        with self._lock:
            self.log.append((request.method, response.status))
        return response
