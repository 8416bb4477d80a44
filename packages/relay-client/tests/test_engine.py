"""The shared flows, driven by hand with scripted answers and a fake clock: no sockets, no sleep."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from relay_client import (
    LeaseConflictError,
    LeaseLostError,
    NoSeatError,
    RelayUnavailableError,
)
from relay_client.engine import Engine, Flow, Sleep
from relay_client.wire import Extension, Request, Response, Wire


@dataclass
class Tick:
    """A monotonic clock that only `Sleep` steps move."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(status: int, doc: object = None) -> Response:
    raw = b"" if doc is None else json.dumps(doc).encode() + b"\n"
    return Response(status, {}, raw)


GRANT = answer(
    201,
    {
        "license_file": base64.b64encode(b"FILE").decode(),
        "license_key": "K",
        "expires_at": 9,
        "expires_in": 30,
    },
)
EXTEND = answer(202, {"expires_at": 9, "expires_in": 30})
GONE = answer(410, {"error": "no licenses available"})
RELEASED = answer(204)
DOWN = RelayUnavailableError("http://127.0.0.1:1", "connection refused")


def drive(flow: Flow[Any], tick: Tick, script: list[Response | Exception]) -> tuple[Any, list[Any]]:
    """Run `flow` against `script` (one entry per request); return its result and the steps."""
    steps: list[Any] = []
    result: Any = None
    try:
        step = next(flow)
        while True:
            steps.append(step)
            if isinstance(step, Sleep):
                tick.now += step.seconds
                step = flow.send(None)
                continue
            entry = script.pop(0)
            step = flow.throw(entry) if isinstance(entry, Exception) else flow.send(entry)
    except StopIteration as stop:
        result = stop.value
    assert not script, "the flow stopped before using every scripted answer"
    return result, steps


def engine(tick: Tick, pool: str | None = None) -> Engine:
    return Engine(Wire(pool=pool, signing_secret=None), clock=tick, rng=random.Random(7))


def methods(steps: list[Any]) -> list[str]:
    return [s.method if isinstance(s, Request) else "sleep" for s in steps]


def test_backoff_is_jittered_exponential_and_capped() -> None:
    """Delays double from retry_base, stay within [half, full] of that, and never pass retry_max."""
    e = engine(Tick())
    for attempt in range(1, 12):
        ceiling = min(5.0, 0.5 * 2 ** (attempt - 1))
        delay = e.backoff(attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_acquire_without_wait_fails_at_the_first_410() -> None:
    """No wait: a 410 is raised at once as NoSeatError, after exactly one request."""
    tick = Tick()
    with pytest.raises(NoSeatError, match="not asked to wait"):
        drive(engine(tick).acquire("fp", None), tick, [GONE])


def test_acquire_with_wait_retries_410_until_a_seat_frees() -> None:
    """With wait, 410s and transport errors are retried with sleeps until the 201 comes."""
    tick = Tick()
    (grant, sent_at), steps = drive(engine(tick).acquire("fp", 60), tick, [GONE, DOWN, GONE, GRANT])
    assert grant.license_key == "K"
    assert grant.license_file == b"FILE"
    assert methods(steps) == ["PUT", "sleep", "PUT", "sleep", "PUT", "sleep", "PUT"]
    assert sent_at == tick.now


def test_acquire_gives_up_when_the_wait_runs_out() -> None:
    """After `wait` seconds of 410s the error says how long it waited; no sleep passes the end."""
    tick = Tick()
    start = tick.now
    with pytest.raises(NoSeatError, match="after waiting 3s"):
        drive(engine(tick).acquire("fp", 3), tick, [GONE] * 5)
    assert tick.now - start == pytest.approx(3)


def test_acquire_takes_over_a_seat_this_fingerprint_still_holds() -> None:
    """A 202 at claim time (a crashed earlier run) is released and claimed anew to get the file."""
    tick = Tick()
    (grant, _), steps = drive(engine(tick).acquire("fp", None), tick, [EXTEND, RELEASED, GRANT])
    assert methods(steps) == ["PUT", "DELETE", "PUT"]
    assert grant.license_key == "K"


def test_acquire_refuses_a_fingerprint_shared_with_a_live_process() -> None:
    """Two 202s in a row mean another process keeps renewing this fingerprint: a conflict."""
    tick = Tick()
    with pytest.raises(LeaseConflictError, match="own fingerprint"):
        drive(engine(tick).acquire("fp", None), tick, [EXTEND, RELEASED, EXTEND])


def test_release_retries_transport_errors_within_its_budget() -> None:
    """A release retries an unreachable relay, and gives up once the budget is spent."""
    tick = Tick()
    released, steps = drive(engine(tick).release("fp", 2.0), tick, [DOWN, RELEASED])
    assert released is True
    assert methods(steps) == ["DELETE", "sleep", "DELETE"]
    tick = Tick()
    with pytest.raises(RelayUnavailableError):
        drive(engine(tick).release("fp", 2.0), tick, [DOWN] * 3)


@dataclass
class FakeLease:
    """The lease side of the heartbeat flow, recording what happened to it."""

    tick: Tick
    fingerprint: str = "fp"
    expires_in: int = 30
    deadline: float = 0.0
    renewals: list[Extension] = field(default_factory=list)
    lost_reason: str | None = None

    def __post_init__(self) -> None:
        self.deadline = self.tick.now + self.expires_in - 1

    @property
    def interval(self) -> float:
        return self.expires_in / 3

    @property
    def done(self) -> bool:
        return self.lost_reason is not None or len(self.renewals) >= 3

    def renew(self, extension: Extension, sent_at: float) -> None:
        self.renewals.append(extension)
        self.deadline = sent_at + extension.expires_in - 1

    def mark_lost(self, reason: str) -> None:
        self.lost_reason = reason


def test_heartbeat_renews_every_third_of_the_ttl() -> None:
    """Each accepted heartbeat moves the deadline; they are sent every expires_in/3 seconds."""
    tick = Tick()
    lease = FakeLease(tick)
    _, steps = drive(engine(tick).heartbeat(lease), tick, [EXTEND, EXTEND, EXTEND])
    assert [s.seconds for s in steps if isinstance(s, Sleep)] == [10, 10, 10, 10]
    assert len(lease.renewals) == 3
    assert lease.lost_reason is None
    assert lease.deadline == tick.now - 10 + 29  # sent at the last heartbeat, then slept


def test_heartbeat_retries_then_recovers_after_a_relay_restart() -> None:
    """Transport errors are retried quickly; a later 202 keeps the lease."""
    tick = Tick()
    lease = FakeLease(tick)
    _, steps = drive(engine(tick).heartbeat(lease), tick, [DOWN, DOWN, EXTEND, EXTEND, EXTEND])
    sleeps = [s.seconds for s in steps if isinstance(s, Sleep)]
    assert sleeps[0] == 10
    assert all(s <= 1.0 for s in sleeps[1:3])
    assert lease.lost_reason is None


def test_heartbeat_marks_the_lease_lost_at_the_deadline() -> None:
    """When no heartbeat succeeds before the deadline, the lease is lost with the last error."""
    tick = Tick()
    lease = FakeLease(tick)
    start = tick.now
    _, _ = drive(engine(tick).heartbeat(lease), tick, [DOWN] * 9)
    assert lease.lost_reason is not None
    assert "before the lease expired" in lease.lost_reason
    assert "connection refused" in lease.lost_reason
    assert tick.now - start == pytest.approx(29)


def test_heartbeat_410_is_an_immediate_loss() -> None:
    """A 410 to a heartbeat means the relay no longer holds the lease: lost at once."""
    tick = Tick()
    lease = FakeLease(tick)
    drive(engine(tick).heartbeat(lease), tick, [GONE])
    assert lease.lost_reason is not None
    assert "refused the heartbeat: 410" in lease.lost_reason
    assert "wait" not in lease.lost_reason  # advice for a claim, not for a lost lease


@pytest.mark.parametrize(
    ("status", "error"), [(400, "invalid nonce header"), (404, "not found"), (418, "teapot")]
)
def test_heartbeat_other_4xx_is_an_immediate_loss(status: int, error: str) -> None:
    """A 4xx will not change on retry: the lease is lost at once, not at the deadline."""
    tick = Tick()
    lease = FakeLease(tick)
    _, steps = drive(engine(tick).heartbeat(lease), tick, [answer(status, {"error": error})])
    assert methods(steps) == ["sleep", "PUT"]
    assert lease.lost_reason is not None
    assert f"refused the heartbeat: {status} '{error}'" in lease.lost_reason


@pytest.mark.parametrize("status", [408, 429, 500])
def test_heartbeat_busy_answers_are_retried(status: int) -> None:
    """408, 429 and 5xx may pass: retried with backoff, and a later 202 keeps the lease."""
    tick = Tick()
    lease = FakeLease(tick)
    busy = answer(status, {"error": "busy"})
    drive(engine(tick).heartbeat(lease), tick, [busy, EXTEND, EXTEND, EXTEND])
    assert lease.lost_reason is None
    assert len(lease.renewals) == 3


def test_heartbeat_201_means_culled_and_the_new_seat_is_given_back() -> None:
    """A 201 shows the relay forgot the lease: lost, and the seat it offered is released."""
    tick = Tick()
    lease = FakeLease(tick)
    _, steps = drive(engine(tick).heartbeat(lease), tick, [GRANT, RELEASED])
    assert methods(steps) == ["sleep", "PUT", "DELETE"]
    assert lease.lost_reason is not None
    assert "given back" in lease.lost_reason


def test_lease_lost_error_says_what_to_do() -> None:
    """The loss error names the fingerprint and tells the application to stop and claim again."""
    error = LeaseLostError("a" * 64, "culled")
    assert "'aaaaaaaaaaaaaaaaaaaa...'" in str(error)
    assert "claim a new lease" in str(error)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(403, "fingerprint is not allowed"), (401, "missing or invalid node token")],
)
def test_heartbeat_refused_node_is_an_immediate_loss(status: int, reason: str) -> None:
    """A fingerprint taken off the allow-list, or a withdrawn token, ends the lease at once."""
    tick = Tick()
    lease = FakeLease(tick)
    drive(engine(tick).heartbeat(lease), tick, [answer(status, {"error": reason})])
    assert lease.lost_reason is not None
    assert f"refused the heartbeat: the relay refused this node ({status} {reason})" in (
        lease.lost_reason
    )


def test_acquire_does_not_retry_a_refused_node() -> None:
    """401/403 will not pass by waiting: raised after one request even with `wait`."""
    from relay_client import NodeRefusedError

    tick = Tick()
    with pytest.raises(NodeRefusedError, match="403"):
        drive(
            engine(tick).acquire("fp", wait=60),
            tick,
            [answer(403, {"error": "fingerprint is not allowed"})],
        )
