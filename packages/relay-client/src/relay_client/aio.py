"""`AsyncRelayClient`: the same client for asyncio programs.

It drives the very same flows as `RelayClient` (`engine.Engine`); only the driver differs: the
blocking `http.client` exchange runs in a worker thread (`asyncio.to_thread`) and the heartbeat
is a task on the running loop.

    client = AsyncRelayClient("http://relay.internal:6349", pool="prod")
    async with client.lease() as lease:
        await run(lease.license_key)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TypeVar, cast

from .client import ClientBase
from .engine import Flow, Sleep
from .errors import ClientError, RelayUnavailableError
from .lease import LeaseBase, OnLost, warn_release_failed
from .transport import run_blocking
from .wire import Grant, Request, Response

__all__ = ["AsyncLease", "AsyncRelayClient", "run_async"]

log = logging.getLogger("relay_client")

T = TypeVar("T")

AsyncSleep = Callable[[float], Awaitable[None]]


async def run_async(
    flow: Flow[T],
    send: Callable[[Request], Awaitable[Response]],
    sleep: AsyncSleep,
    abandoned: Callable[[], bool] = lambda: False,
) -> T:
    """Drive `flow` to its result; stop before the next sleep once `abandoned()` is true."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                if abandoned():
                    flow.close()
                    raise asyncio.CancelledError
                await sleep(step.seconds)
                step = flow.send(None)
                continue
            try:
                response = await send(step)
            except RelayUnavailableError as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(response)
    except StopIteration as stop:
        return cast(T, stop.value)


class AsyncLease(LeaseBase):
    """A lease kept alive by a task on the event loop until `await release()`."""

    _task: asyncio.Task[None]
    _loop: asyncio.AbstractEventLoop
    _async_sleep: AsyncSleep

    def _start(self, sleep: AsyncSleep) -> None:
        self._async_sleep = sleep
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._heartbeat(), name="relay-heartbeat")

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(self._task.cancel)

    async def _heartbeat(self) -> None:
        flow = self._engine.heartbeat(self)
        try:
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    await self._async_sleep(step.seconds)
                    step = flow.send(None)
                    continue
                try:
                    response = await asyncio.to_thread(
                        self.send_guarded, self._transport.send, step
                    )
                except RelayUnavailableError as exc:
                    step = flow.throw(exc)
                    continue
                if response is None:
                    return
                step = flow.send(response)
        except StopIteration:
            return
        except Exception as exc:  # never die silently: a dead heartbeat is a lost lease
            log.exception("the relay heartbeat task failed")
            self.mark_lost(f"the heartbeat task failed: {exc!r}")
        finally:
            flow.close()

    async def release(self) -> bool:
        """Give the seat back now; see `Lease.release`."""
        try:
            return await asyncio.to_thread(self._release_blocking, self._release_timeout)
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class AsyncRelayClient(ClientBase[AsyncSleep]):
    """`RelayClient` for asyncio: ``async with client.lease() as lease``. Same options."""

    def _default_sleep(self) -> AsyncSleep:
        return asyncio.sleep

    async def _send(self, request: Request) -> Response:
        return await asyncio.to_thread(self._transport.send, request)

    async def health(self) -> None:
        """Return if the relay answers its health check (signed, when a secret is set); else raise."""
        await run_async(self._engine.health(), self._send, self._sleep)

    async def acquire(
        self, *, wait: float | timedelta | None = None, on_lost: OnLost | None = None
    ) -> AsyncLease:
        """Claim a seat and start the heartbeat task; the caller must `await release()` it."""
        wait = self._check_wait(wait)
        self._reserve()
        grant, sent_at = await self._claim(wait)
        lease = AsyncLease(
            engine=self._engine,
            transport=self._transport,
            fingerprint=self.fingerprint,
            grant=grant,
            sent_at=sent_at,
            heartbeat_fraction=self.heartbeat_fraction,
            release_timeout=self.release_timeout,
            on_lost=on_lost,
            sleep=time.sleep,
        )
        self._held(lease)
        lease._start(self._sleep)
        return lease

    async def _claim(self, wait: float | None) -> tuple[Grant, float]:
        # Cancelling the caller must not leak a seat: a request already in flight completes in
        # its thread, so the claim runs shielded and, once abandoned, gives back what it got.
        abandoned = threading.Event()
        flow = self._engine.acquire(self.fingerprint, wait)
        inner = asyncio.ensure_future(run_async(flow, self._send, self._sleep, abandoned.is_set))
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            abandoned.set()
            inner.add_done_callback(self._give_back_if_granted)
            raise

    def _give_back_if_granted(self, inner: asyncio.Future[tuple[Grant, float]]) -> None:
        if inner.cancelled() or inner.exception() is not None:
            return
        give_back = self._engine.give_back(self.fingerprint)
        threading.Thread(
            target=run_blocking,
            args=(give_back, self._transport.send, time.sleep),
            name="relay-give-back",
            daemon=True,
        ).start()

    @contextlib.asynccontextmanager
    async def lease(
        self, *, wait: float | timedelta | None = None, on_lost: OnLost | None = None
    ) -> AsyncIterator[AsyncLease]:
        """``async with client.lease() as lease:`` — claimed on entry, released on any exit."""
        held = await self.acquire(wait=wait, on_lost=on_lost)
        try:
            yield held
        finally:
            try:
                await held.release()
            except ClientError as exc:
                warn_release_failed(exc)

    async def __aenter__(self) -> AsyncRelayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
