"""Fixtures shared by the client tests: a client wired to `responses`, with a fake clock."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import pytest
import responses

from sankofa_sdk import Client, SankofaError
from sankofa_sdk._delivery import Clock

API_KEY = "sk_test_0123456789abcdef0123456789abcdef"
HOST = "https://engine.test"
BATCH_URL = HOST + "/api/v1/batch"


@contextmanager
def local_time(zone: str) -> Iterator[None]:
    """The process's local time zone is ``zone`` (``TZ`` plus ``time.tzset``) inside."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def decode_body(body: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else body.encode()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)  # type: ignore[no-any-return]


def sent_operations(rsps: responses.RequestsMock) -> list[dict[str, Any]]:
    """Every operation of every batch request, in the order sent (failed requests included)."""
    ops: list[dict[str, Any]] = []
    for call in rsps.calls:
        ops.extend(decode_body(call.request.body)["operations"])
    return ops


def refused_call(
    make_client: Callable[..., Client],
    rsps: responses.RequestsMock,
    call: Callable[[Client], None],
) -> list[tuple[SankofaError, dict[str, Any]]]:
    """Make ``call`` on a new client and check it was refused as invalid without raising:
    nothing sent, counted once in ``dropped["invalid"]``, reported once to ``on_error``.
    Returns what ``on_error`` got."""
    errors: list[tuple[SankofaError, dict[str, Any]]] = []
    client = make_client(on_error=lambda e, op: errors.append((e, op)))
    call(client)
    assert client.flush(5)
    assert len(rsps.calls) == 0
    assert client.stats()["dropped"] == {"invalid": 1}
    assert len(errors) == 1
    return errors


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


class FakeClock(Clock):
    """The delivery pipeline's time, jumping instead of sleeping; every jump is kept in ``waits``.

    Between jumps it runs as real time does, so waits for a caller or an answer (the idle wait,
    ``block_when_full``, a request's cut-off) take their real durations and an idle thread does
    not spin.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def now(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Time passes (a function frozen between two invocations)."""
        with self._lock:
            self._offset += seconds

    def sleep_until(self, when: float, wake: threading.Event) -> None:
        if wake.is_set():
            return
        with self._lock:
            left = when - (time.monotonic() + self._offset)
            if left > 0:
                self.waits.append(left)
                self._offset += left


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("clock", clock)
        options.setdefault("flush_interval", 0.05)
        client = Client(options.pop("api_key", API_KEY), options.pop("host", HOST), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=2)
