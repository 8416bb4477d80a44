"""Parking claims that wait for a seat: the Prefer header, the wait room and the worker handoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import falcon.testing
import pytest
from relay_core import ClaimStatus, Lease, NoLicensesAvailableError, Relay, WaitQueue
from relay_core.events import ClaimResult, NoEvents
from relay_core.testing import LicenseWriter
from relay_http import WaitingFullError, WaitRoom, create_app
from relay_http.waiting import WaitStoppedError, WorkerHandoff, applied_wait

from .conftest import T0, Call


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("wait=10", 10),
        ("WAIT = 7", 7),
        ('wait="5"', 5),
        ("respond-async, wait=3", 3),
        ("wait=3;foo=bar", 3),
        ("wait=100", 60),
        ("wait=0", 0),
        ("wait=abc", None),
        ("wait=-1", None),
        ("wait=1.5", None),
        ("wait=", None),
        ("wait=٣", None),
        ("return=minimal", None),
        ("wait=abc, wait=5", None),
        ("wait=5, wait=9", 5),
    ],
)
def test_applied_wait(header: str | None, expected: int | None) -> None:
    """The first wait preference counts, capped at the maximum; a malformed one is ignored."""
    assert applied_wait(header, 60) == expected


def test_max_wait_zero_ignores_the_header() -> None:
    """A server maximum of 0 disables waiting."""
    assert applied_wait("wait=10", 0) is None


@pytest.fixture
def room_relay(
    make_relay: Callable[..., Relay], writer: LicenseWriter
) -> Callable[..., tuple[Relay, WaitRoom]]:
    def build(seats: int = 1, **room: int) -> tuple[Relay, WaitRoom]:
        relay = make_relay(queue=WaitQueue())
        files = [
            (writer.license(key=f"K{n}", issued=T0 - 60), f"K{n}")  # type: ignore[arg-type]
            for n in range(seats)
        ]
        relay.add_licenses(files, public_key=writer.public_key)
        return relay, WaitRoom(relay, max_wait=room.pop("max_wait", 30), **room)

    return build


class Waiter(threading.Thread):
    """One `WaitRoom.claim` on its own thread; `result` is the lease or the exception."""

    def __init__(self, room: WaitRoom, fingerprint: str, wait: int, **kwargs: object) -> None:
        super().__init__(daemon=True)
        self.room, self.fingerprint, self.wait, self.kwargs = room, fingerprint, wait, kwargs
        self.result: Lease | BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.room.claim(self.fingerprint, None, self.wait, **self.kwargs)  # type: ignore[arg-type]
        except BaseException as exc:
            self.result = exc


class Recorder(NoEvents):
    """Events that note each claim's result."""

    def __init__(self, results: list[str]) -> None:
        self.results = results

    def on_claim(self, pool: str | None, result: ClaimResult) -> None:
        self.results.append(result.value)


def parked(room: WaitRoom, count: int) -> None:
    deadline = time.monotonic() + 5
    while room.parked != count:
        assert time.monotonic() < deadline, f"{room.parked} parked, expected {count}"
        time.sleep(0.01)


def test_release_wakes_the_parked_claim(room_relay: Callable[..., tuple[Relay, WaitRoom]]) -> None:
    """A parked claim gets the seat as soon as the holder releases it."""
    relay, room = room_relay()
    waited: list[tuple[str | None, float, bool]] = []
    room.on_waited = lambda pool, seconds, granted: waited.append((pool, seconds, granted))
    relay.claim("holder")
    applied: list[bool] = []
    waiter = Waiter(room, "waiter", 30, applied=lambda: applied.append(True))
    waiter.start()
    parked(room, 1)
    relay.release("holder")
    waiter.join(5)
    assert isinstance(waiter.result, Lease)
    assert waiter.result.status is ClaimStatus.CREATED
    assert applied == [True]
    assert room.parked == 0
    assert len(waited) == 1
    assert waited[0][0] is None
    assert 0 < waited[0][1] < 30
    assert waited[0][2] is True
    assert relay.queue is not None
    assert len(relay.queue) == 0


def test_deadline_answers_no_licenses(room_relay: Callable[..., tuple[Relay, WaitRoom]]) -> None:
    """Nothing freed within the wait: NoLicensesAvailableError, and the ticket is gone."""
    relay, room = room_relay()
    relay.claim("holder")
    with pytest.raises(NoLicensesAvailableError):
        room.claim("waiter", None, 1)
    assert relay.queue is not None
    assert len(relay.queue) == 0


def test_a_wait_counts_one_denial_however_often_it_retried(
    room_relay: Callable[..., tuple[Relay, WaitRoom]],
) -> None:
    """A waiting claim retries about once a second; only its answer counts: one denial (and
    one `exhausted` event) for a wait that ends in 410, none for one that gets the seat."""
    relay, room = room_relay()
    results: list[str] = []
    relay.events = Recorder(results)
    relay.claim("holder")
    with pytest.raises(NoLicensesAvailableError):
        room.claim("waiter", None, 2)  # the head ticket retries at least once meanwhile
    assert sum(relay.denials.drain().values()) == 1
    assert results.count("exhausted") == 1

    waiter = Waiter(room, "second", 30)
    waiter.start()
    parked(room, 1)
    relay.release("holder")
    waiter.join(5)
    assert isinstance(waiter.result, Lease)
    assert relay.denials.drain() == {}
    assert results.count("exhausted") == 1


def test_hung_up_client_is_never_given_the_seat(
    room_relay: Callable[..., tuple[Relay, WaitRoom]],
) -> None:
    """A waiter whose client left gives up; the next waiter gets the seat."""
    relay, room = room_relay()
    relay.claim("holder")
    hung_up = threading.Event()
    first = Waiter(room, "first", 30, disconnected=hung_up.is_set)
    first.start()
    parked(room, 1)
    second = Waiter(room, "second", 30)
    second.start()
    parked(room, 2)
    hung_up.set()
    relay.release("holder")
    first.join(5)
    second.join(5)
    assert isinstance(first.result, NoLicensesAvailableError)
    assert isinstance(second.result, Lease)
    assert relay.claim("second").status is ClaimStatus.EXTENDED


def test_full_room_refuses_at_once(room_relay: Callable[..., tuple[Relay, WaitRoom]]) -> None:
    """Beyond max_waiting parked claims the next one is refused without waiting or applying."""
    relay, room = room_relay(max_waiting=1)
    relay.claim("holder")
    waiter = Waiter(room, "waiter", 30)
    waiter.start()
    parked(room, 1)
    applied: list[bool] = []
    with pytest.raises(WaitingFullError):
        room.claim("extra", None, 30, applied=lambda: applied.append(True))
    assert applied == []
    room.close()
    waiter.join(5)
    assert isinstance(waiter.result, NoLicensesAvailableError)


def test_close_answers_every_parked_claim(
    room_relay: Callable[..., tuple[Relay, WaitRoom]],
) -> None:
    """Stopping the server answers parked claims at once and refuses new waits."""
    relay, room = room_relay()
    relay.claim("holder")
    waiters = [Waiter(room, f"w{n}", 30) for n in range(3)]
    for waiter in waiters:
        waiter.start()
    parked(room, 3)
    room.close()
    for waiter in waiters:
        waiter.join(5)
        assert isinstance(waiter.result, WaitStoppedError)
    with pytest.raises(WaitStoppedError):
        room.claim("late", None, 30)


def test_room_needs_a_queue(make_relay: Callable[..., Relay]) -> None:
    """A relay without a wait queue cannot park claims."""
    with pytest.raises(ValueError, match="wait queue"):
        WaitRoom(make_relay(), max_wait=30)


class FakeDispatcher:
    def __init__(self) -> None:
        self.counts: list[int] = []

    def set_thread_count(self, count: int) -> None:
        self.counts.append(count)


def test_handoff_adds_a_thread_per_parked_request() -> None:
    """Each parked request grows the pool by one until it resumes; after close, no resizing."""
    dispatcher = FakeDispatcher()
    handoff = WorkerHandoff(dispatcher, 16)
    with handoff.parked({}), handoff.parked({}):
        pass
    assert dispatcher.counts == [17, 18, 17, 16]
    handoff.close()
    with handoff.parked({}):
        pass
    assert dispatcher.counts == [17, 18, 17, 16]


class FakeServer:
    def __init__(self) -> None:
        self.triggers = 0

    def pull_trigger(self) -> None:
        self.triggers += 1


class FakeChannel:
    def __init__(self) -> None:
        self.parked = False
        self.server = FakeServer()


def test_handoff_marks_the_channel_parked_and_wakes_the_loop() -> None:
    """While parked the channel is watched for a hang-up; afterwards it is not."""
    channel = FakeChannel()
    handoff = WorkerHandoff(FakeDispatcher(), 16)
    with handoff.parked({"relay.channel": channel}):
        assert channel.parked
        assert channel.server.triggers == 1
    assert not channel.parked


def test_app_applies_the_preference(
    room_relay: Callable[..., tuple[Relay, WaitRoom]], call: Call
) -> None:
    """201 with Preference-Applied for a capped wait; wait=abc and no room answer without it."""
    relay, room = room_relay(max_wait=5)
    app = create_app(relay, waiting=room)
    got = call(app, "PUT", "/v1/nodes/a", {"Prefer": "wait=99"})
    assert got.status_code == 201
    assert got.headers["Preference-Applied"] == "wait=5"
    refused = call(app, "PUT", "/v1/nodes/b", {"Prefer": "wait=abc"})
    assert refused.status_code == 410
    assert "Preference-Applied" not in refused.headers
    plain = create_app(relay)
    assert (
        "Preference-Applied" not in call(plain, "PUT", "/v1/nodes/a", {"Prefer": "wait=5"}).headers
    )


def test_a_claim_cut_short_by_a_stop_gets_retry_after_and_no_preference_applied(
    room_relay: Callable[..., tuple[Relay, WaitRoom]], call: Call
) -> None:
    """A waiting claim answered because the server stops is not a wait served in full: 410 with
    ``Retry-After`` and without ``Preference-Applied`` (as the OpenAPI document says), so a
    client retries after a moment rather than reading it as "waited the whole time"."""
    relay, room = room_relay(max_wait=5)
    relay.claim("holder")
    app = create_app(relay, waiting=room)
    answers: list[falcon.testing.Result] = []
    client = threading.Thread(
        target=lambda: answers.append(call(app, "PUT", "/v1/nodes/w", {"Prefer": "wait=5"}))
    )
    client.start()
    parked(room, 1)
    room.close()
    client.join(5)
    (got,) = answers
    assert got.status_code == 410
    assert got.text == '{"error":"no licenses available"}\n'
    assert got.headers["Retry-After"] == "1"
    assert "Preference-Applied" not in got.headers
