"""Delivery defects the restructure into ``_delivery/`` fixed, and behaviour no test guarded.

Each test drives a client through its public calls against a ``RecordingTransport`` (it records
each batch and answers from a script; ``hold()`` keeps a request waiting until ``release()`` or
a shutdown's cut). Nothing here sleeps: tests wait with ``flush()``, ``wait_for_requests``,
events and joins with a timeout.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

from sankofa_sdk import Client, DeliveryError, SankofaError
from sankofa_sdk.testing import RecordingTransport, Reply

from ..conftest import API_KEY, FakeClock

Errors = list[tuple[str, dict[str, Any]]]
THREAD_NAMES = ("sankofa-sdk-worker", "sankofa-sdk-sender")


def recording_client(transport: RecordingTransport, **options: Any) -> Client:
    return Client(API_KEY, transport=transport, **options)


def event_names(ops: list[dict[str, Any]]) -> list[str]:
    return [op["payload"]["event_name"] for op in ops]


def collect(errors: Errors) -> Any:
    """An ``on_error`` that keeps (reason, operation) for each report."""

    def on_error(error: SankofaError, op: dict[str, Any]) -> None:
        errors.append((getattr(error, "reason", ""), op))

    return on_error


def join_all(threads: list[threading.Thread], timeout: float) -> list[threading.Thread]:
    """Join every thread against one deadline; the ones still alive after it."""
    end = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return [thread for thread in threads if thread.is_alive()]


# --- 1. a client dropped without shutdown() is freed, and its threads end -----------------


def test_dropped_clients_are_freed_and_their_threads_end() -> None:
    refs: list[weakref.ref[Client]] = []
    threads: list[threading.Thread] = []
    transports: list[RecordingTransport] = []
    for i in range(100):
        before = set(threading.enumerate())
        transport = RecordingTransport()
        client = recording_client(transport)
        client.track("Signed In", {"i": i}, distinct_id="user_42")
        assert client.flush(5)
        own = [t for t in threading.enumerate() if t not in before and t.name in THREAD_NAMES]
        assert sorted(t.name for t in own) == sorted(THREAD_NAMES)
        threads.extend(own)
        transports.append(transport)
        refs.append(weakref.ref(client))
        del client  # dropped without shutdown()
    gc.collect()
    alive = [ref for ref in refs if ref() is not None]
    assert alive == [], f"{len(alive)} of 100 dropped clients are still alive"
    still_running = join_all(threads, timeout=2.5)
    assert still_running == [], f"{len(still_running)} of {len(threads)} threads did not end"
    # Each client delivered its event before it was dropped, and nothing was sent twice.
    assert [len(t.applied_operations()) for t in transports] == [1] * 100


# --- 2. on_error calling shutdown() lets the thread deliver what is still queued ------------


def test_shutdown_from_on_error_still_delivers_what_is_queued() -> None:
    transport = RecordingTransport(Reply(400))  # the first batch is refused, the rest are 200
    errors: Errors = []
    shutdown_called = threading.Event()
    client: Client

    def on_error(error: SankofaError, op: dict[str, Any]) -> None:
        errors.append((getattr(error, "reason", ""), op))
        if not shutdown_called.is_set():
            client.shutdown()  # on the delivery thread, with three calls still queued
            shutdown_called.set()

    # rate_limit=None: no request budget spacing the second request (not under test here)
    client = recording_client(transport, flush_at=1, rate_limit=None, on_error=on_error)
    transport.hold()
    client.track("Refused", distinct_id="user_42")
    assert transport.wait_for_requests(1)  # the refused batch is in flight, alone
    for name in ("Second", "Third", "Fourth"):
        client.track(name, distinct_id="user_42")
    transport.release()
    assert shutdown_called.wait(5)
    client.shutdown()  # a second call: returns when the first (on the thread) is done

    assert [reason for reason, _ in errors] == ["rejected"]
    assert errors[0][1]["event_name"] == "Refused"
    assert event_names(transport.applied_operations()) == ["Second", "Third", "Fourth"]
    stats = client.stats()
    assert stats["dropped"] == {"rejected": 1}
    assert stats["delivered"] == 3
    assert transport.closed


def test_shutdown_from_on_error_cuts_a_request_in_flight_at_its_deadline() -> None:
    """on_error runs on the delivery thread while a request is in flight (an operation too
    large to send is reported while the thread encodes), and calls ``shutdown(timeout=0.3)``.
    The request must be cut at that deadline, as a shutdown from any other thread cuts it: a
    later ``shutdown()`` then finds the shutdown done (the held operation reported, the
    transport closed), not still waiting for the request's own ``timeout`` (10 s)."""
    transport = RecordingTransport()
    errors: Errors = []
    shutdown_called = threading.Event()
    client: Client

    def on_error(error: SankofaError, op: dict[str, Any]) -> None:
        errors.append((getattr(error, "reason", ""), op))
        if not shutdown_called.is_set():
            shutdown_called.set()
            client.shutdown(timeout=0.3)

    client = recording_client(transport, flush_at=1, on_error=on_error)
    transport.hold()  # the engine never answers
    try:
        client.track("Hung", distinct_id="user_42")
        assert transport.wait_for_requests(1)
        huge = {f"k{i}": "x" * 5_000 for i in range(1_000)}  # 5 MB of JSON: over the limit
        client.track("Huge", huge, distinct_id="user_42")
        assert shutdown_called.wait(5)
        client.shutdown()  # a second call: returns when the first is done (or 2 s after it)
        assert [(reason, op["event_name"]) for reason, op in errors] == [
            ("too_large", "Huge"),
            ("unknown_fate", "Hung"),  # sent, never answered: it may have been stored
        ]
        assert client.stats()["dropped"] == {"too_large": 1}
        assert client.stats()["unknown_fate"] == 1
        assert transport.closed
    finally:
        transport.release()


# --- 3. a request cut at the shutdown deadline: its fate is unknown, even with max_retries=0 --


def test_a_request_cut_at_the_deadline_is_of_unknown_fate_not_dropped() -> None:
    transport = RecordingTransport()
    errors: list[SankofaError] = []
    client = recording_client(
        transport, flush_at=1, max_retries=0, on_error=lambda error, op: errors.append(error)
    )
    transport.hold()  # the engine never answers
    try:
        client.track("Hung", distinct_id="user_42")
        assert transport.wait_for_requests(1)
        client.shutdown(timeout=0.3)
    finally:
        transport.release()
    stats = client.stats()
    assert stats["dropped"] == {} and stats["failed"] == 0
    assert stats["unknown_fate"] == 1
    assert [
        (error.reason, error.idempotency_key)
        for error in errors
        if isinstance(error, DeliveryError)
    ] == [("unknown_fate", transport.requests[0].key)]
    assert len(transport.requests) == 1  # cut, not retried


# --- 4. stats()["accepted"] counts spooled calls after shutdown ------------------------------


def test_accepted_counts_spooled_calls_after_shutdown(tmp_path: Path) -> None:
    transport = RecordingTransport()
    client = recording_client(transport, spool_dir=tmp_path)
    for i in range(7):
        client.track("Spooled", {"i": i}, distinct_id="user_42")
    client.shutdown()
    stats = client.stats()
    assert stats["accepted"] == 7
    assert stats["delivered"] == 7
    assert stats["dropped"] == {}
    assert sorted(op["payload"]["properties"]["i"] for op in transport.applied_operations()) == (
        list(range(7))
    )


# --- 5. a busy delivery thread at shutdown: each queued call reported once -------------------


@pytest.mark.parametrize("held_in", ["on_error", "request"])
def test_calls_queued_behind_a_busy_delivery_thread_are_reported_once_at_shutdown(
    held_in: str,
) -> None:
    """``on_error``: the delivery thread itself is blocked (in the app's on_error for a refused
    first call), so the N calls are never taken from the queue. ``request``: the thread waits for
    an answer that never comes, the first of the N calls in flight and the rest queued behind."""
    n = 25
    errors: Errors = []
    blocked = threading.Event()
    unblock = threading.Event()
    delivery_threads: list[threading.Thread] = []

    def on_error(error: SankofaError, op: dict[str, Any]) -> None:
        errors.append((getattr(error, "reason", ""), op))
        if getattr(error, "reason", "") == "rejected":
            delivery_threads.append(threading.current_thread())
            blocked.set()
            unblock.wait(5)

    if held_in == "on_error":
        transport = RecordingTransport(Reply(400))
        client = recording_client(transport, flush_at=1, on_error=on_error)
        client.track("Refused", distinct_id="user_42")
        assert blocked.wait(5)
    else:
        transport = RecordingTransport()
        transport.hold()
        client = recording_client(transport, flush_at=1, on_error=on_error)
    try:
        for i in range(n):
            client.track("Queued", {"i": i}, distinct_id="user_42")
            if i == 0 and held_in == "request":
                assert transport.wait_for_requests(1)  # the first is in flight
        client.shutdown(timeout=0.2)
    finally:
        unblock.set()
        transport.release()
    assert join_all(delivery_threads, timeout=2) == []  # nothing more is reported after this

    shutdown = [op for reason, op in errors if reason in ("shutdown", "unknown_fate")]
    assert sorted(op["properties"]["i"] for op in shutdown) == list(range(n))  # each once
    if held_in == "request":  # the first was sent and never answered: not dropped
        unknown = [op["properties"]["i"] for reason, op in errors if reason == "unknown_fate"]
        assert unknown == [0]
    dropped = client.stats()["dropped"]
    if held_in == "on_error":
        assert [reason for reason, _ in errors if reason != "shutdown"] == ["rejected"]
        assert dropped == {"rejected": 1, "shutdown": n}
        assert len(transport.requests) == 1  # the N calls were never taken from the queue
    else:
        assert len(errors) == n
        assert dropped == {"shutdown": n - 1}
        assert client.stats()["unknown_fate"] == 1
        assert len(transport.requests) == 1  # cut at the deadline, not sent again


# --- 6. bytes in flight count against max_queue_bytes ----------------------------------------


def test_a_held_batch_in_flight_counts_against_max_queue_bytes() -> None:
    transport = RecordingTransport()
    errors: Errors = []
    blob = "x" * 12_000
    client = recording_client(
        transport,
        flush_at=100,
        max_queue_bytes=64 * 1024,  # the smallest bound allowed
        rate_limit=None,
        on_error=collect(errors),
    )
    transport.hold()
    try:
        for i in range(4):  # about 48 KB: one batch, held in flight
            client.track("Big", {"i": i, "blob": blob}, distinct_id="user_42")
        assert not client.flush(0)  # send it now, as one batch
        assert transport.wait_for_requests(1)
        assert len(transport.requests[0].operations) == 4
        for i in range(4, 10):  # only about one more fits beside the batch in flight
            client.track("Big", {"i": i, "blob": blob}, distinct_id="user_42")
        refused = client.stats()["dropped"].get("queue_full", 0)
        assert refused > 0
        assert [reason for reason, _ in errors] == ["queue_full"] * refused
    finally:
        transport.release()
    assert client.flush(5)
    client.shutdown()
    stats = client.stats()
    assert stats["dropped"] == {"queue_full": refused}
    assert stats["delivered"] == 10 - refused == len(transport.applied_operations())


# --- 7. sync mode through a transport ----------------------------------------------------------


def test_sync_mode_retries_with_one_key_reports_a_refusal_once_and_waits_out_a_429(
    clock: FakeClock,
) -> None:
    # 503, 503, then 200: delivered once, in three requests under one Idempotency-Key.
    transport = RecordingTransport(503, 503)
    errors: Errors = []
    client = recording_client(transport, sync_mode=True, clock=clock, on_error=collect(errors))
    client.track("Retried", distinct_id="user_42")
    assert len(transport.requests) == 3
    assert len({request.key for request in transport.requests}) == 1
    assert event_names(transport.applied_operations()) == ["Retried"]
    stats = client.stats()
    assert (stats["delivered"], stats["retried"], stats["dropped"]) == (1, 2, {})
    client.shutdown()

    # A 400: reported once as rejected, not retried.
    transport = RecordingTransport(400)
    client = recording_client(transport, sync_mode=True, clock=clock, on_error=collect(errors))
    errors.clear()
    client.track("Refused", distinct_id="user_42")
    assert len(transport.requests) == 1
    assert [(reason, op["event_name"]) for reason, op in errors] == [("rejected", "Refused")]
    assert client.stats()["dropped"] == {"rejected": 1}
    assert transport.applied_operations() == []
    client.shutdown()

    # A 429 with Retry-After, then 200: waited out (on the fake clock), then delivered.
    transport = RecordingTransport(Reply(429, headers={"Retry-After": "2"}))
    client = recording_client(transport, sync_mode=True, clock=clock, on_error=collect(errors))
    errors.clear()
    waits_before = len(clock.waits)
    client.track("Limited", distinct_id="user_42")
    assert len(transport.requests) == 2
    assert transport.requests[0].key == transport.requests[1].key
    assert event_names(transport.applied_operations()) == ["Limited"]
    assert errors == []
    stats = client.stats()
    assert (stats["delivered"], stats["rate_limited"], stats["dropped"]) == (1, 1, {})
    assert sum(clock.waits[waits_before:]) >= 2  # Retry-After honoured
    client.shutdown()
