"""`acquire(wait=...)` queues at a relay that applies ``Prefer: wait`` and polls one that does not."""

from __future__ import annotations

import math
from typing import Any

import pytest
from relay_client import NoSeatError
from relay_client.engine import FIRST_ASKED_WAIT, MAX_ASKED_WAIT, WAIT_TIMEOUT_MARGIN, Flow, Sleep
from relay_client.wire import Request, Response

from .test_engine import GONE, GRANT, Tick, engine


def gone(**headers: str) -> Response:
    return Response(410, {k.replace("_", "-"): v for k, v in headers.items()}, GONE.body)


def drive(
    flow: Flow[Any], tick: Tick, script: list[tuple[Response, float]]
) -> tuple[Any, list[Any]]:
    """Run `flow`; each scripted answer arrives after its number of seconds on the fake clock."""
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
            response, took = script.pop(0)
            tick.now += took
            step = flow.send(response)
    except StopIteration as stop:
        result = stop.value
    assert not script
    return result, steps


def prefers(steps: list[Any]) -> list[str | None]:
    return [s.headers.get("Prefer") if isinstance(s, Request) else "sleep" for s in steps]


def test_wait_is_asked_of_the_relay_with_a_longer_timeout() -> None:
    """The first claim carries ``Prefer: wait=N`` and allows N plus a margin for the answer only:
    connecting and sending keep the client's timeout (the request sets none of its own)."""
    tick = Tick()
    (grant, _), steps = drive(engine(tick).acquire("fp", 30), tick, [(GRANT, 2.0)])
    assert grant.license_key == "K"
    assert prefers(steps) == ["wait=30"]
    assert steps[0].read_timeout == 30 + WAIT_TIMEOUT_MARGIN
    assert steps[0].timeout is None


def test_relay_that_waited_its_maximum_is_asked_again_at_once() -> None:
    """A 410 after the relay's capped wait (Preference-Applied) asks again at once, capped."""
    tick = Tick()
    script = [(gone(preference_applied="wait=10"), 10.0), (GRANT, 1.0)]
    _, steps = drive(engine(tick).acquire("fp", 25), tick, script)
    assert prefers(steps) == ["wait=25", "wait=10"]


def test_relay_without_a_queue_is_polled() -> None:
    """A 410 without Preference-Applied: later claims poll without the header, with backoff."""
    tick = Tick()
    script = [(GONE, 0.0), (GONE, 0.0), (GRANT, 0.0)]
    _, steps = drive(engine(tick).acquire("fp", 60), tick, script)
    assert prefers(steps) == ["wait=60", "sleep", None, "sleep", None]


def test_full_relay_is_retried_after_retry_after() -> None:
    """Every waiting place taken (410 + Retry-After): sleep that long, then queue again."""
    tick = Tick()
    script = [(gone(retry_after="1"), 0.0), (GRANT, 0.0)]
    _, steps = drive(engine(tick).acquire("fp", 60), tick, script)
    assert prefers(steps) == ["wait=60", "sleep", "wait=59"]
    assert steps[1] == Sleep(1.0)


def test_queued_wait_that_runs_out_says_how_long_it_waited() -> None:
    """The relay's own deadline ends the wait: NoSeatError after the whole wait."""
    tick = Tick()
    with pytest.raises(NoSeatError, match="after waiting 20s"):
        drive(engine(tick).acquire("fp", 20), tick, [(gone(preference_applied="wait=20"), 20.0)])


def test_no_wait_sends_no_preference() -> None:
    """Without wait the claim is a plain PUT, as Keygen Relay's clients send it."""
    tick = Tick()
    _, steps = drive(engine(tick).acquire("fp", None), tick, [(GRANT, 0.0)])
    assert prefers(steps) == [None]


def test_endless_wait_asks_for_at_most_what_the_relay_applies() -> None:
    """wait=math.inf first asks for the relay's default maximum, more only while the relay
    applies all it is asked, and sticks to the relay's cap once it shows one: a relay that
    hangs after accepting the claim is never waited for an hour."""
    tick = Tick()
    waits = (60, 120, 200, 200)  # what the relay applies, and waits, each time
    script = [(gone(preference_applied=f"wait={n}"), float(n)) for n in waits] + [(GRANT, 1.0)]
    _, steps = drive(engine(tick).acquire("fp", math.inf), tick, script)
    assert prefers(steps) == [
        f"wait={FIRST_ASKED_WAIT}",
        "wait=120",
        "wait=240",
        "wait=200",
        "wait=200",
    ]
    assert [s.read_timeout for s in steps] == [
        n + WAIT_TIMEOUT_MARGIN for n in (FIRST_ASKED_WAIT, 120, 240, 200, 200)
    ]
    assert MAX_ASKED_WAIT >= 240
