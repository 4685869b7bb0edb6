"""The client over `responses`: 429s, quotas, skipped operations, full queues, shutdown races.

The delivery thread runs on a fake clock (see tests/conftest.py), so waits for the request
budget and for backoffs take no real time.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

import pytest
import responses
from requests import PreparedRequest

from sankofa_sdk import Client, DeliveryError, SankofaError

from ..conftest import BATCH_URL, decode_body, sent_operations

MakeClient = Callable[..., Client]
Callback = Callable[[PreparedRequest], tuple[int, dict[str, str], str]]


def keys(rsps: responses.RequestsMock) -> list[str]:
    return [call.request.headers["Idempotency-Key"] for call in rsps.calls]


def test_a_429_puts_the_batch_back_and_it_goes_again_in_a_bigger_one(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=429, headers={"Retry-After": "3"})
    rsps.add(responses.POST, BATCH_URL, status=200, json={"ok": True})
    client = make_client(flush_at=10)
    for i in range(10):
        client.track("Item", {"i": i}, distinct_id="user_1")
    assert client.flush(10)
    for i in range(10, 20):
        client.track("Item", {"i": i}, distinct_id="user_1")
    assert client.flush(10)
    stats = client.stats()
    # A 429 is the budget speaking, not a failure: no retry is used up, nothing is dropped.
    assert stats["rate_limited"] == 1 and stats["retried"] == 0
    assert stats["delivered"] == 20 and stats["dropped"] == {}
    delivered = [
        op["payload"]["properties"]["i"]
        for call in rsps.calls[1:]
        for op in decode_body(call.request.body)["operations"]
    ]
    assert sorted(delivered) == list(range(20))
    assert keys(rsps)[0] not in keys(rsps)[1:]  # a new batch, a new key


def test_a_429_after_a_503_resends_the_same_body_with_the_same_key(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    # A 503 may have kept part of the batch: whatever follows must let the engine recognise it.
    # The first batch is answered 503, then 429, then 200, whatever else goes meanwhile (the
    # five calls may go in two batches, when the thread takes the first before the others).
    first_batch: list[str] = []
    answers = iter([(503, {}), (429, {"Retry-After": "1"})])

    def answer(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        key = request.headers["Idempotency-Key"]
        first_batch[:] = first_batch or [key]
        status, headers = next(answers, (200, {})) if key == first_batch[0] else (200, {})
        return status, headers, ""

    rsps.add_callback(responses.POST, BATCH_URL, callback=answer)
    client = make_client(flush_at=5)
    for i in range(5):
        client.track("Item", {"i": i}, distinct_id="user_1")
    assert client.flush(10)
    first = [call for call in rsps.calls if call.request.headers["Idempotency-Key"] in first_batch]
    assert [call.response.status_code for call in first] == [503, 429, 200]
    assert len({call.request.body for call in first}) == 1
    assert client.stats()["delivered"] == 5


def test_quota_exceeded_is_reported_with_its_reason_and_not_retried(
    rsps: responses.RequestsMock, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.add(
        responses.POST,
        BATCH_URL,
        status=429,
        json={"error": {"code": "quota_exceeded", "message": "Monthly quota exceeded"}},
    )
    errors: list[SankofaError] = []
    client = make_client(flush_at=3, on_error=lambda e, op: errors.append(e))
    with caplog.at_level(logging.ERROR, logger="sankofa_sdk"):
        for _ in range(3):
            client.track("Item", distinct_id="user_1")
        assert client.flush(10)
    assert len(set(keys(rsps))) == len(rsps.calls)  # no batch was sent twice
    stats = client.stats()
    assert stats["dropped"] == {"quota_exceeded": 3} and stats["retried"] == 0
    assert [getattr(e, "reason", None) for e in errors] == ["quota_exceeded"] * 3
    assert "quota" in caplog.text


@pytest.mark.parametrize("status", [201, 204])
def test_other_2xx_answers_are_success(
    rsps: responses.RequestsMock, make_client: MakeClient, status: int
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=status)
    client = make_client()
    client.track("Item", distinct_id="user_1")
    assert client.flush(10)
    assert client.stats()["delivered"] == 1 and client.stats()["dropped"] == {}


def test_operations_a_200_says_were_skipped_are_counted(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    def counting(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        # An engine that discards operations by a rule of its own (here: a marked property).
        ops = decode_body(request.body)["operations"]
        kept = [op for op in ops if not op["payload"]["properties"].get("discard")]
        counts = {
            "aliases_received": 0,
            "environment": "live",
            "events_received": len(kept),
            "ok": True,
            "operations_received": len(ops),
            "people_received": 0,
            "project_id": "p",
            "project_name": "n",
        }
        return 200, {}, json.dumps(counts)

    rsps.add_callback(responses.POST, BATCH_URL, callback=counting)
    client = make_client(flush_at=3)
    for n in range(3):
        client.track("Item", {"discard": n == 1}, distinct_id="user_1")
    assert client.flush(10)
    assert client.stats()["skipped"] == 1 and client.stats()["delivered"] == 3


def blocking_callback() -> tuple[Callback, threading.Event, threading.Event]:
    entered, release = threading.Event(), threading.Event()

    def callback(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        entered.set()
        release.wait(30)
        return 200, {}, "{}"

    return callback, entered, release


def test_the_queue_full_warning_names_the_option_and_the_count(
    rsps: responses.RequestsMock, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    callback, entered, release = blocking_callback()
    rsps.add_callback(responses.POST, BATCH_URL, callback=callback)
    client = make_client(flush_at=1, max_queue_size=3)
    client.track("First", distinct_id="user_1")
    assert entered.wait(10)
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        for _ in range(6):
            client.track("Next", distinct_id="user_1")
    release.set()
    assert client.flush(10)
    assert client.stats()["dropped"] == {"queue_full": 4}  # "First" in flight counts too
    assert "block_when_full" in caplog.text and "max_queue_size=3" in caplog.text
    assert "1 so far" in caplog.text


def test_block_when_full_waits_for_room_instead_of_dropping(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    callback, entered, release = blocking_callback()
    rsps.add_callback(responses.POST, BATCH_URL, callback=callback)
    client = make_client(flush_at=1, max_queue_size=4, block_when_full=30)
    client.track("First", distinct_id="user_1")
    assert entered.wait(10)
    for _ in range(3):  # with "First" in flight, the queue holds four
        client.track("Next", distinct_id="user_1")
    caller = threading.Thread(target=client.track, args=("Waits",), kwargs={"distinct_id": "u_1"})
    caller.start()
    caller.join(0.2)
    assert caller.is_alive()  # no room: the call waits
    release.set()
    caller.join(30)
    assert not caller.is_alive()
    assert client.flush(10)
    assert client.stats()["dropped"] == {} and client.stats()["delivered"] == 5


def test_a_block_when_full_wait_is_bounded(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    callback, entered, release = blocking_callback()
    rsps.add_callback(responses.POST, BATCH_URL, callback=callback)
    client = make_client(flush_at=1, max_queue_size=2, block_when_full=0.05)
    client.track("First", distinct_id="user_1")
    assert entered.wait(10)
    client.track("Second", distinct_id="user_1")
    client.track("Dropped", distinct_id="user_1")  # returns after 0.05 s, dropped
    release.set()
    assert client.flush(10)
    assert client.stats()["dropped"] == {"queue_full": 1}


def test_the_queue_is_bounded_by_bytes(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    callback, entered, release = blocking_callback()
    rsps.add_callback(responses.POST, BATCH_URL, callback=callback)
    client = make_client(flush_at=1, max_queue_bytes=64 * 1024)
    client.track("First", distinct_id="user_1")
    assert entered.wait(10)
    big = "x" * 10_000
    for n in range(200):  # 2 MB of properties into a 64 KiB queue
        client.track("Big", {"blob": big, "n": n}, distinct_id="user_1")
        if n % 20 == 0:
            client.flush(0.05)  # gives the thread a moment to encode and re-measure the room
    release.set()
    assert client.flush(10)
    stats = client.stats()
    assert stats["dropped"]["queue_full"] > 150
    assert stats["delivered"] + stats["dropped"]["queue_full"] == 201


def test_calls_racing_shutdown_are_delivered_or_reported(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    reported: list[dict[str, Any]] = []
    client = make_client(on_error=lambda e, op: reported.append(op))
    made = [0] * 4
    go = threading.Event()

    def caller(n: int) -> None:
        go.wait(10)
        for i in range(2_000):
            client.track("Race", {"i": i}, distinct_id=f"user_{n}")
            made[n] += 1

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    go.set()
    client.shutdown(timeout=5)
    for thread in threads:
        thread.join(30)
    stats = client.stats()
    delivered = len(sent_operations(rsps))
    assert stats["delivered"] == delivered
    # Every call that returned is delivered, or reported (refused at the call, or at shutdown).
    assert delivered + len(reported) == sum(made) == 8_000
    assert set(stats["dropped"]) <= {"closed", "shutdown"}


def test_a_second_shutdown_returns_only_when_the_first_is_done(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    callback, entered, release = blocking_callback()
    rsps.add_callback(responses.POST, BATCH_URL, callback=callback)
    errors: list[SankofaError] = []
    client = make_client(flush_at=1, on_error=lambda e, op: errors.append(e))
    client.track("Stuck", distinct_id="user_1")
    assert entered.wait(10)
    first = threading.Thread(target=client.shutdown, kwargs={"timeout": 0.3})
    first.start()
    client.shutdown(timeout=0)
    # The first shutdown cut the stuck request and reported it before the second returned.
    assert [getattr(e, "reason", None) for e in errors] == ["unknown_fate"]
    release.set()
    first.join(10)
    assert client.stats()["dropped"] == {}
    assert client.stats()["unknown_fate"] == 1


def test_a_sync_mode_send_in_flight_at_shutdown_is_reported(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    callback, entered, release = blocking_callback()
    rsps.add_callback(responses.POST, BATCH_URL, callback=callback)
    errors: list[SankofaError] = []
    client = make_client(sync_mode=True, on_error=lambda e, op: errors.append(e))
    caller = threading.Thread(target=client.track, args=("Sync",), kwargs={"distinct_id": "u_1"})
    caller.start()
    assert entered.wait(10)
    shutter = threading.Thread(target=client.shutdown, kwargs={"timeout": 0.2})
    shutter.start()
    release.set()  # `responses` cannot be cut like a socket: the answer comes after the deadline
    caller.join(30)
    shutter.join(30)
    assert not caller.is_alive() and not shutter.is_alive()
    stats = client.stats()
    assert stats["delivered"] + stats["failed"] == 1
    assert all(isinstance(e, DeliveryError) for e in errors)
