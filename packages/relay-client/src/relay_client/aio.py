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
from .errors import ClientError, LeaseLostError, RelayUnavailableError
from .lease import LeaseBase, OnLost, warn_release_failed
from .seatlock import SeatLock
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
    _woken: asyncio.Event

    def _start(self, sleep: AsyncSleep) -> None:
        self._async_sleep = sleep
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        self._task = self._loop.create_task(self._heartbeat(), name="relay-heartbeat")

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(self._woken.set)

    def _call_on_lost(self, on_lost: OnLost, error: LeaseLostError) -> None:
        """On the event loop, as all of the application's async code runs (the heartbeat's
        requests run in worker threads): called at once on the loop's thread, else scheduled."""
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            try:
                self._loop.call_soon_threadsafe(super()._call_on_lost, on_lost, error)
                return
            except RuntimeError:  # the loop is closed: nothing runs on it any more
                pass
        super()._call_on_lost(on_lost, error)

    async def _nap(self, seconds: float) -> bool:
        """Sleep `seconds` with the client's sleep; True if a release woke us first."""
        sleeper = asyncio.ensure_future(self._async_sleep(seconds))
        woken = asyncio.ensure_future(self._woken.wait())
        try:
            await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()
        return self._woken.is_set()

    async def _heartbeat(self) -> None:
        flow = self._engine.heartbeat(self)
        handed_off = False
        try:
            step = self._beat(flow, None)  # no I/O: the flow starts with a sleep
            while step is not None and not await self._nap(step.seconds):
                # A beat runs to its end in its thread even if this task is cancelled (the loop
                # closing), so an answer in flight is never dropped: a re-taken seat is given back.
                # So: an executor future, not a task (the loop's shutdown cancels every task).
                beat = self._loop.run_in_executor(None, self._beat, flow, step)
                try:
                    step = await asyncio.shield(beat)
                except asyncio.CancelledError:
                    handed_off = True
                    beat.add_done_callback(lambda done: self._end_heartbeat(flow, done))
                    raise
        except Exception as exc:  # never die silently: a dead heartbeat is a lost lease
            log.exception("the relay heartbeat task failed")
            self.mark_lost(f"the heartbeat task failed: {exc!r}")
        finally:
            if not handed_off:
                self._end_heartbeat(flow)

    def _end_heartbeat(
        self, flow: Flow[None], beat: asyncio.Future[Sleep | None] | None = None
    ) -> None:
        if beat is not None and not beat.cancelled() and beat.exception() is not None:
            log.error("the relay heartbeat failed while the loop closed: %r", beat.exception())
        flow.close()
        self._worker_exited()

    async def release(self) -> bool:
        """Give the seat back now, within `release_timeout`; see `Lease.release`."""
        start = time.monotonic()
        try:
            return await asyncio.to_thread(self._release_blocking, self._release_timeout)
        finally:
            if asyncio.current_task() is not self._task:  # on_lost may release
                left = self._release_timeout - (time.monotonic() - start)
                await asyncio.wait({self._task}, timeout=max(left, 0.0))


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
        """Claim a seat and start the heartbeat task; the caller must `await release()` it.

        Refuses a second claim as `RelayClient.acquire` does; a lost lease is released first.
        """
        wait = self._check_wait(wait)
        lost = self._reserve()
        try:
            if lost is not None:
                with contextlib.suppress(ClientError):  # it is lost: only its lock matters
                    await cast(AsyncLease, lost).release()
            seat_lock = await self._take_seat_async()
            grant, sent_at = await self._claim(wait, seat_lock)
        except BaseException:
            self._unreserve()
            raise
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
            seat_lock=seat_lock,
        )
        self._held(lease)
        lease._start(self._sleep)
        return lease

    async def _take_seat_async(self) -> SeatLock:
        """`_take_seat` in a thread; if the caller is cancelled meanwhile, the thread's take
        still completes, and the lock it took is released there (never held by nobody)."""
        guard = threading.Lock()
        abandoned = False
        taken: list[SeatLock] = []  # what the thread handed over before the caller gave up

        def take() -> SeatLock:
            seat_lock = self._take_seat()
            with guard:
                if not abandoned:
                    taken.append(seat_lock)
                    return seat_lock
            seat_lock.release()
            return seat_lock

        try:
            return await asyncio.shield(asyncio.ensure_future(asyncio.to_thread(take)))
        except asyncio.CancelledError:
            with guard:
                abandoned = True
                handed_over = list(taken)
            for seat_lock in handed_over:  # taken just before; its result never reached us
                seat_lock.release()
            raise

    async def _claim(self, wait: float | None, seat_lock: SeatLock) -> tuple[Grant, float]:
        """Claim under `seat_lock`, which this releases if the claim fails.

        Cancelling the caller must not leak a seat: a request already in flight completes in
        its thread, so the claim runs shielded and, once abandoned, gives back what it got.
        The lock is held until then: another client taking it meanwhile would get the
        abandoned seat (202), take it over, and lose it to the late give-back.
        """
        abandoned = threading.Event()
        try:
            flow = self._engine.acquire(self.fingerprint, wait)
            inner = asyncio.ensure_future(
                run_async(flow, self._send, self._sleep, abandoned.is_set)
            )
        except BaseException:
            seat_lock.release()
            raise
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            abandoned.set()
            inner.add_done_callback(lambda done: self._give_back_if_granted(done, seat_lock))
            raise
        except BaseException:
            seat_lock.release()
            raise

    def _give_back_if_granted(
        self, inner: asyncio.Future[tuple[Grant, float]], seat_lock: SeatLock
    ) -> None:
        """Once an abandoned claim ends: give back a seat it got, then free the fingerprint."""
        if inner.cancelled() or inner.exception() is not None:
            seat_lock.release()
            return
        give_back = self._engine.give_back(self.fingerprint)

        def run() -> None:
            try:
                run_blocking(give_back, self._transport.send, time.sleep)
            except Exception as exc:
                log.warning("could not give back an abandoned claim's seat: %r", exc)
            finally:
                seat_lock.release()

        threading.Thread(target=run, name="relay-give-back", daemon=True).start()

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
