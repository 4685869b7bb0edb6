"""``set_host_guard``: a test runner's say over which hosts clients made from then on send to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest
import responses

from sankofa_sdk import Client
from sankofa_sdk.testing import HostGuard, RecordingTransport, set_host_guard

from ..conftest import API_KEY, BATCH_URL, HOST


@pytest.fixture
def guard() -> Iterator[Callable[[HostGuard], None]]:
    """Set a guard for the test; the one before (the plugin's, in this suite) is put back."""
    before: list[HostGuard | None] = []

    def use(new: HostGuard) -> None:
        before.append(set_host_guard(new))

    yield use
    if before:
        set_host_guard(before[0])


@pytest.mark.parametrize("sync_mode", [False, True])
def test_a_refused_host_gets_nothing_and_the_calls_are_counted(
    rsps: responses.RequestsMock, guard: Callable[[HostGuard], None], sync_mode: bool
) -> None:
    rsps.add(responses.POST, BATCH_URL, json={"success": True})
    seen: list[str] = []
    guard(lambda host: seen.append(host) is not None)  # refuses, noting what it was asked
    client = Client(API_KEY, HOST + "/", sync_mode=sync_mode)

    client.track("Signed Up", distinct_id="user_1")

    assert client.flush(5)
    client.shutdown()
    assert seen == [HOST]  # asked once, with the host as the client has it
    assert len(rsps.calls) == 0
    assert client.stats()["not_sent"] == 1


def test_an_allowed_host_and_a_client_with_its_own_transport_send(
    rsps: responses.RequestsMock, guard: Callable[[HostGuard], None]
) -> None:
    rsps.add(responses.POST, BATCH_URL, json={"success": True})
    guard(lambda host: host == HOST)
    allowed = Client(API_KEY, HOST, sync_mode=True)
    transport = RecordingTransport()
    guard(lambda host: False)  # a transport of the client's own is not the network
    own = Client(API_KEY, "https://elsewhere.test", transport=transport, sync_mode=True)

    allowed.track("Signed Up", distinct_id="user_1")
    own.track("Signed Up", distinct_id="user_1")

    allowed.shutdown()
    own.shutdown()
    assert len(rsps.calls) == 1 and len(transport.requests) == 1


def test_a_guard_that_raises_refuses(
    rsps: responses.RequestsMock, guard: Callable[[HostGuard], None]
) -> None:
    def broken(host: str) -> bool:
        raise RuntimeError("bug in the guard")

    guard(broken)
    client = Client(API_KEY, HOST, sync_mode=True)
    client.track("Signed Up", distinct_id="user_1")
    client.shutdown()
    assert len(rsps.calls) == 0 and client.stats()["not_sent"] == 1


def test_clients_made_before_the_guard_are_not_asked(
    rsps: responses.RequestsMock, guard: Callable[[HostGuard], None]
) -> None:
    rsps.add(responses.POST, BATCH_URL, json={"success": True})
    client = Client(API_KEY, HOST, sync_mode=True)
    guard(lambda host: False)
    client.track("Signed Up", distinct_id="user_1")
    client.shutdown()
    assert len(rsps.calls) == 1
