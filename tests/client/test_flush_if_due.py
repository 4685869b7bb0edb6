"""``flush_if_due()``, the end of a serverless invocation, over `responses`.

It waits for what goes at this moment (a request in flight, a batch due that the request budget
lets go now) and for nothing else: not for a batch that is not due, not for the budget. Where
something must wait (``flush_interval``, the budget), the client runs on the real clock: the
fake one jumps over a wait as soon as the delivery thread starts it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import pytest
import responses
from requests import PreparedRequest

import sankofa_sdk
from sankofa_sdk import Client
from sankofa_sdk._delivery import Clock

from ..conftest import BATCH_URL, FakeClock, sent_operations

MakeClient = Callable[..., Client]


@pytest.fixture(params=["memory", "spool"])
def make(request: pytest.FixtureRequest, make_client: MakeClient, tmp_path: Path) -> MakeClient:
    """A client in memory, or with a spool (the serverless pattern: a spool in the function's
    temporary directory)."""

    def build(**options: object) -> Client:
        if request.param == "spool":
            options.setdefault("spool_dir", str(tmp_path / "spool"))
        return make_client(**options)

    return build


def test_nothing_due_returns_at_once_and_keeps_it_queued(
    rsps: responses.RequestsMock, make: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL)
    client = make(flush_at=100, flush_interval=60, clock=Clock())
    client.track("First", distinct_id="user_1")
    assert client.flush_if_due() is True  # the first request of a fresh instance is due
    client.track("Next", distinct_id="user_1")
    assert client.flush_if_due() is False  # the last request went less than 60 s ago
    assert len(rsps.calls) == 1 and client.stats()["queued"] == 1
    assert client.flush(10)  # still there, and delivered by a later send
    assert len(sent_operations(rsps)) == 2


def test_invoked_less_often_than_flush_interval_every_invocation_sends(
    rsps: responses.RequestsMock, make: MakeClient, clock: FakeClock
) -> None:
    # Frozen for longer than flush_interval between invocations: the thread may look at the
    # queue after the thaw and before the call (here: a flush_if_due() with nothing queued),
    # so the call itself is young; the last request is not, and that makes it due.
    rsps.add(responses.POST, BATCH_URL)
    client = make(flush_at=100, flush_interval=60)
    for n in range(3):
        clock.advance(61)
        assert client.flush_if_due() is True  # nothing queued
        client.track("Invoked", {"n": n}, distinct_id="user_1")
        assert client.flush_if_due() is True
        assert len(sent_operations(rsps)) == n + 1


def test_a_due_batch_goes_in_one_request_before_it_returns(
    rsps: responses.RequestsMock, make: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL)
    client = make(flush_at=3, flush_interval=60, clock=Clock())
    for i in range(3):
        client.track("Invoked", {"i": i}, distinct_id="user_1")
    assert client.flush_if_due() is True
    assert len(rsps.calls) == 1 and len(sent_operations(rsps)) == 3
    assert client.stats()["delivered"] == 3


def test_a_batch_the_budget_holds_back_is_not_waited_for(
    rsps: responses.RequestsMock, make: MakeClient
) -> None:
    # The pace of a new process is about two requests a second: a second due batch right
    # after the first waits for the budget, and flush_if_due() does not.
    rsps.add(responses.POST, BATCH_URL)
    client = make(flush_at=1, flush_interval=60, clock=Clock())
    client.track("First", distinct_id="user_1")
    assert client.flush_if_due() is True
    client.track("Second", distinct_id="user_1")
    assert client.flush_if_due() is False
    assert len(rsps.calls) == 1
    assert client.flush(10)  # it goes when the budget allows
    assert len(rsps.calls) == 2


def test_a_request_in_flight_is_waited_for(rsps: responses.RequestsMock, make: MakeClient) -> None:
    # The thread sent a batch during the invocation: returning before its answer would leave
    # it to be frozen with the function (and resent, maybe twice, after the thaw).
    entered, release = threading.Event(), threading.Event()

    def slow(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        entered.set()
        release.wait(30)
        return 200, {}, "{}"

    rsps.add_callback(responses.POST, BATCH_URL, callback=slow)
    client = make(flush_at=1)
    client.track("Invoked", distinct_id="user_1")
    assert entered.wait(10)  # sent by the thread on its own (flush_interval 0.05 s here)
    returned: list[bool] = []
    caller = threading.Thread(target=lambda: returned.append(client.flush_if_due(timeout=30)))
    caller.start()
    caller.join(0.2)
    assert caller.is_alive()
    release.set()
    caller.join(30)
    assert returned == [True] and client.stats()["delivered"] == 1


def test_a_slow_engine_is_waited_for_at_most_timeout(
    rsps: responses.RequestsMock, make: MakeClient
) -> None:
    entered, release = threading.Event(), threading.Event()

    def stuck(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        entered.set()
        release.wait(30)
        return 200, {}, "{}"

    rsps.add_callback(responses.POST, BATCH_URL, callback=stuck)
    client = make(flush_at=1, flush_interval=60, clock=Clock())
    client.track("Invoked", distinct_id="user_1")
    assert client.flush_if_due(timeout=0.1) is False
    assert entered.is_set()
    release.set()
    assert client.flush(10)


@pytest.mark.parametrize("mode", [{"sync_mode": True}, {"send": False}, {"disabled": True}])
def test_modes_with_nothing_queued_return_true(
    rsps: responses.RequestsMock, make_client: MakeClient, mode: dict[str, bool]
) -> None:
    rsps.add(responses.POST, BATCH_URL)
    client = make_client(**mode)
    client.track("Invoked", distinct_id="user_1")
    assert client.flush_if_due() is True


def test_a_timeout_that_is_not_a_number_is_refused(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises((TypeError, ValueError)):
        client.flush_if_due(timeout="soon")  # type: ignore[arg-type]


def test_the_module_level_call_without_a_client_returns_true() -> None:
    assert sankofa_sdk.get_client() is None
    assert sankofa_sdk.flush_if_due() is True
