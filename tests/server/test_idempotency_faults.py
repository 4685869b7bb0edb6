"""Decision D4 (Idempotency-Key), the write buffer's 503, and fault injection."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer
from sankofa_sdk.server._idempotency import IdempotencyCache
from sankofa_sdk.server._responses import Response

from .conftest import (
    JSON,
    applied,
    batch,
    batch_ok,
    people,
    post,
    request,
    send_batch,
    track,
)

BUFFER_FULL = b'{"error":"Buffer full","ok":false}'
INJECTED = b'{"error":"injected fault","ok":false}'
RATE_LIMITED = b'{"error":"Rate limit exceeded. Please wait a moment."}'


def keyed(server: ReferenceServer, idem: str, *operations: Any, **kw: Any) -> Any:
    return send_batch(server, *operations, headers={"Idempotency-Key": idem}, **kw)


# --- Idempotency-Key -----------------------------------------------------------------------------


def test_repeat_gets_the_same_answer_and_is_applied_once(server: ReferenceServer) -> None:
    first = keyed(server, "batch-1", track("user_1"), track("user_2"))
    again = keyed(server, "batch-1", track("user_1"), track("user_2"))
    assert first.status == again.status == 200
    assert first.body == again.body == batch_ok(server, n=2, events=2)
    assert again.content_type == JSON
    applied(server)
    stats = server.stats()
    assert stats["events"] == 2
    assert stats["idempotent_replays"] == 1
    records = [r for r in server.requests if r.path == "/api/v1/batch"]
    assert [(r.idempotency_key, r.replayed) for r in records] == [
        ("batch-1", False),
        ("batch-1", True),
    ]


def test_repeat_with_another_body_still_gets_the_first_answer(server: ReferenceServer) -> None:
    keyed(server, "k", track("user_1"))
    again = keyed(server, "k", track("user_1"), track("user_2"), track("user_3"))
    assert again.body == batch_ok(server, n=1, events=1)
    applied(server)
    assert server.stats()["events"] == 1


def test_different_keys_and_no_key_are_applied_each_time(server: ReferenceServer) -> None:
    keyed(server, "k1", track())
    keyed(server, "k2", track())
    send_batch(server, track())
    send_batch(server, track())
    applied(server)
    assert server.stats()["events"] == 4
    assert server.stats()["idempotent_replays"] == 0


def test_single_route_answers_are_replayed(server: ReferenceServer) -> None:
    headers = {"Idempotency-Key": "single-1"}
    event = {"distinct_id": "user_1", "event_name": "x"}
    first = post(server, "/api/v1/track", event, headers)
    again = post(server, "/api/v1/track", event, headers)
    assert (first.status, first.body, first.content_type) == (
        200,
        b"OK",
        "text/plain; charset=utf-8",
    )
    assert (again.status, again.body, again.content_type) == (
        200,
        b"OK",
        "text/plain; charset=utf-8",
    )
    applied(server)
    assert server.stats()["events"] == 1


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        (batch(track("a")), 202, b'{"ok":true,"status":"discarded_all"}'),
        (b"{", 400, b'{"error":"Invalid batch payload"}'),
    ],
)
def test_202_and_400_are_remembered(
    server: ReferenceServer, body: Any, status: int, answer: bytes
) -> None:
    headers = {"Idempotency-Key": "k"}
    assert post(server, "/api/v1/batch", body, headers).body == answer
    again = post(server, "/api/v1/batch", batch(track("user_1")), headers)
    assert (again.status, again.body) == (status, answer)
    applied(server)
    assert server.stats()["events"] == 0


def test_buffer_full_answer_is_not_remembered(server: ReferenceServer) -> None:
    server.faults.buffer_full()
    refused = keyed(server, "k", track())
    assert (refused.status, refused.body) == (503, BUFFER_FULL)
    server.faults.buffer_full(False)
    accepted = keyed(server, "k", track())
    assert accepted.body == batch_ok(server, n=1, events=1)
    applied(server)
    assert server.stats()["events"] == 1


@pytest.mark.parametrize(
    ("status", "answer"), [(503, BUFFER_FULL), (429, RATE_LIMITED), (500, INJECTED)]
)
def test_injected_failures_are_not_remembered(
    server: ReferenceServer, status: int, answer: bytes
) -> None:
    server.faults.fail_next(status=status)
    refused = keyed(server, "k", track())
    assert (refused.status, refused.body) == (status, answer)
    assert keyed(server, "k", track()).status == 200
    assert keyed(server, "k", track()).status == 200
    applied(server)
    assert server.stats()["events"] == 1


def test_key_errors_are_not_remembered(server: ReferenceServer) -> None:
    assert keyed(server, "k", track(), key="sk_wrong").status == 403
    assert keyed(server, "k", track()).status == 200
    applied(server)
    assert server.stats()["events"] == 1


def test_keys_are_scoped_to_project_and_environment(server: ReferenceServer) -> None:
    live = keyed(server, "k", track())
    test = keyed(server, "k", track(), key=server.test_api_key)
    assert live.body == batch_ok(server, n=1, events=1)
    assert test.body == batch_ok(server, n=1, events=1, environment="test")
    applied(server)
    assert server.stats()["events"] == 1
    assert server.stats(environment="test")["events"] == 1


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_empty_or_overlong_keys_are_ignored(server: ReferenceServer, key: str) -> None:
    keyed(server, key, track())
    keyed(server, key, track())
    applied(server)
    assert server.stats()["events"] == 2


def test_255_character_key_is_used(server: ReferenceServer) -> None:
    keyed(server, "x" * 255, track())
    keyed(server, "x" * 255, track())
    applied(server)
    assert server.stats()["events"] == 1


def test_concurrent_repeats_apply_once(server: ReferenceServer) -> None:
    replies: list[Any] = []
    lock = threading.Lock()

    def send() -> None:
        reply = keyed(server, "same", *(track(f"user_{i}") for i in range(50)))
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(replies) == 8
    assert {(r.status, r.body) for r in replies} == {(200, batch_ok(server, n=50, events=50))}
    applied(server)
    assert server.stats()["events"] == 50
    assert server.stats()["idempotent_replays"] == 7


def test_remembered_answers_survive_a_restart(tmp_path: Any) -> None:
    db = str(tmp_path / "store.db")
    keys: dict[str, Any] = {"api_key": "sk_live_restart", "test_api_key": "sk_test_restart"}
    with ReferenceServer(rate_limit=None, db_path=db, **keys) as first:
        reply = keyed(first, "k", track(), people("user_1", {"plan": "pro"}))
        assert reply.status == 200
    with ReferenceServer(rate_limit=None, db_path=db, **keys) as second:
        again = keyed(second, "k", track(), people("user_1", {"plan": "pro"}))
        assert again.body == reply.body
        applied(second)
        assert second.stats()["events"] == 1
        assert second.stats()["idempotent_replays"] == 1


def test_clear_forgets_remembered_answers(server: ReferenceServer) -> None:
    keyed(server, "k", track())
    server.clear()
    keyed(server, "k", track())
    applied(server)
    assert server.stats()["events"] == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_forgets_after_the_window() -> None:
    clock = Clock()
    cache = IdempotencyCache(window=60, clock=clock)
    answer = Response(200, b"OK")
    assert cache.claim("scope", "k") is None
    cache.release("scope", "k", answer)
    clock.now += 60
    assert cache.claim("scope", "k") == answer
    clock.now += 0.5
    assert cache.claim("scope", "k") is None  # 60.5 s old: forgotten, the caller owns it
    cache.release("scope", "k", None)
    assert cache.claim("other", "k") is None


def test_cache_keeps_at_most_max_entries() -> None:
    cache = IdempotencyCache(window=60, max_entries=2, clock=Clock())
    for key in ("a", "b", "c"):
        assert cache.claim("s", key) is None
        cache.release("s", key, Response(200, key.encode()))
    assert cache.claim("s", "a") is None  # the oldest went first
    assert cache.claim("s", "c") == Response(200, b"c")


# --- the write buffer -----------------------------------------------------------------------------


def test_buffer_full_fault_is_503_without_retry_after(server: ReferenceServer) -> None:
    server.faults.buffer_full()
    reply = send_batch(server, track())
    assert (reply.status, reply.body, reply.content_type) == (503, BUFFER_FULL, JSON)
    assert reply.header("Retry-After") is None
    reply = post(server, "/api/v1/people", {"distinct_id": "user_1"})
    assert (reply.status, reply.body) == (503, BUFFER_FULL)


def test_buffer_full_after_the_garbage_check(server: ReferenceServer) -> None:
    server.faults.buffer_full()
    reply = post(server, "/api/v1/track", {"distinct_id": "a"})
    assert (reply.status, reply.body) == (202, b'{"ok":true,"status":"discarded"}')
    reply = send_batch(server, track("a"))
    assert (reply.status, reply.body) == (202, b'{"ok":true,"status":"discarded_all"}')
    reply = send_batch(server, {"type": "bogus"})
    assert reply.status == 400
    server.faults.buffer_full(False)
    assert send_batch(server, track()).status == 200
    applied(server)
    assert server.stats()["events"] == 1


@pytest.fixture
def small_buffer() -> Iterator[ReferenceServer]:
    with ReferenceServer(rate_limit=None, buffer_size=4) as srv:
        yield srv


def test_request_larger_than_the_buffer_is_503_and_stores_nothing(
    small_buffer: ReferenceServer,
) -> None:
    reply = send_batch(small_buffer, *(track(f"user_{i}") for i in range(5)))
    assert (reply.status, reply.body) == (503, BUFFER_FULL)
    applied(small_buffer)
    assert small_buffer.stats()["events"] == 0
    # Each kind has its own buffer: four of each fit.
    operations = [track("user_1")] * 4 + [people("user_1")] * 4
    reply = send_batch(small_buffer, *operations)
    assert reply.body == batch_ok(small_buffer, n=8, events=4, people_=4)
    applied(small_buffer)
    assert small_buffer.stats()["events"] == 4


def _waits_for_room(capacity: int, join: float) -> bool:
    from sankofa_sdk.server._store import PeopleStore
    from sankofa_sdk.server._writer import Writer

    writer = Writer(PeopleStore(), capacity)
    waiter = threading.Thread(target=writer.wait_for_room, args=(300,), daemon=True)
    waiter.start()
    waiter.join(join)
    waiting = waiter.is_alive()
    writer.close(5)  # the waiter is a daemon thread: a wait still going on is left behind
    return waiting


@pytest.mark.parametrize("capacity", [1, 2, 3, 10])
def test_empty_buffer_does_not_hold_requests_back(capacity: int) -> None:
    assert not _waits_for_room(capacity, join=10)


# --- fault injection ------------------------------------------------------------------------


def test_fail_next_with_status_and_retry_after(server: ReferenceServer) -> None:
    server.faults.fail_next(2, status=500)
    server.faults.fail_next(1, status=503, retry_after=2)
    server.faults.fail_next(1, status=429, retry_after=1.5)
    replies = [send_batch(server, track()) for _ in range(5)]
    assert [(r.status, r.body) for r in replies] == [
        (500, INJECTED),
        (500, INJECTED),
        (503, BUFFER_FULL),
        (429, RATE_LIMITED),
        (200, batch_ok(server, n=1, events=1)),
    ]
    assert [r.header("Retry-After") for r in replies] == [None, None, "2", "1.5", None]
    assert all(r.content_type == JSON for r in replies)
    applied(server)
    assert server.stats()["events"] == 1
    assert server.stats()["faults_injected"] == 4
    assert [r.fault for r in server.requests] == [True, True, True, True, False]


def test_faults_hit_any_ingest_path_before_other_checks(server: ReferenceServer) -> None:
    server.faults.fail_next(3, status=503)
    assert post(server, "/api/v1/nowhere", b"").status == 503
    assert post(server, "/api/v1/batch", b"junk", key="sk_bad").status == 503
    assert request(server, "GET", "/api/v1/track").status == 503
    assert post(server, "/api/v1/nowhere", b"").status == 404


def test_faults_spare_health_and_the_read_api(server: ReferenceServer) -> None:
    server.faults.fail_for(60, status=500)
    server.faults.reset_connections(3)
    assert request(server, "GET", "/health").status == 200
    assert (
        request(server, "GET", "/reference/v1/stats", b"", {"x-api-key": server.api_key}).status
        == 200
    )
    assert request(server, "GET", "/nowhere").status == 404
    assert server.stats()["faults_injected"] == 0


def test_fail_for_then_clear(server: ReferenceServer) -> None:
    server.faults.fail_for(60, status=503, retry_after=3)
    for _ in range(3):
        reply = send_batch(server, track())
        assert (reply.status, reply.body, reply.header("Retry-After")) == (503, BUFFER_FULL, "3")
    server.faults.clear()
    assert send_batch(server, track()).status == 200


def test_fail_for_ends(server: ReferenceServer) -> None:
    server.faults.fail_for(0)
    assert send_batch(server, track()).status == 200


def test_add_latency_for_n_requests(
    server: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(server._app, "_sleep", slept.append)
    server.faults.add_latency(0.25, n=2)
    for _ in range(4):
        assert send_batch(server, track()).status == 200
    request(server, "GET", "/health")
    assert slept == [0.25, 0.25]
    server.faults.add_latency(0.1)
    for _ in range(3):
        send_batch(server, track())
    assert slept == [0.25, 0.25, 0.1, 0.1, 0.1]
    applied(server)
    assert server.stats()["events"] == 7


def test_real_latency_still_answers(server: ReferenceServer) -> None:
    server.faults.add_latency(0.05, n=1)
    assert send_batch(server, track()).status == 200


def test_reset_connections(server: ReferenceServer) -> None:
    server.faults.reset_connections(2)
    for _ in range(2):
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            send_batch(server, track("user_reset"))
    assert send_batch(server, track("user_ok")).status == 200
    applied(server)
    assert server.stats()["events"] == 1
    assert server.get_person("user_reset") is None
    assert [r.status for r in server.requests] == [None, None, 200]


def _outcome(server: ReferenceServer) -> str:
    try:
        reply = send_batch(server, track())
    except (ConnectionError, http.client.HTTPException):
        return "reset"
    return str(reply.status)


def test_flaky_follows_its_seed(server: ReferenceServer) -> None:
    # The same seed gives the same outcomes, request by request; another seed others; and
    # only the requests answered 200 are stored.
    def run(seed: int) -> list[str]:
        server.faults.flaky(reset_share=0.3, error_share=0.3, seed=seed, status=502)
        return [_outcome(server) for _ in range(40)]

    first = run(7)
    applied(server)
    assert server.stats()["events"] == first.count("200")
    assert run(7) == first
    assert run(8) != first
    assert {"reset", "502", "200"} <= set(first)


def test_flaky_shares_are_kept_over_many_requests(server: ReferenceServer) -> None:
    server.faults.flaky(reset_share=0.2, error_share=0.3, seed=11, status=502)
    outcomes = [_outcome(server) for _ in range(600)]
    # Binomial bounds more than 4 standard deviations wide: a correct server never fails.
    assert 75 <= outcomes.count("reset") <= 165
    assert 130 <= outcomes.count("502") <= 230
    assert 240 <= outcomes.count("200") <= 360


@pytest.mark.parametrize(
    ("reset_share", "error_share", "outcome"), [(0, 1, "500"), (1, 0, "reset"), (0, 0, "200")]
)
def test_flaky_extremes(
    server: ReferenceServer, reset_share: float, error_share: float, outcome: str
) -> None:
    server.faults.flaky(reset_share, error_share)
    assert {_outcome(server) for _ in range(5)} == {outcome}


@pytest.mark.parametrize(("reset_share", "error_share"), [(-0.1, 0), (0, 1.1), (0.6, 0.6)])
def test_flaky_rejects_bad_shares(
    server: ReferenceServer, reset_share: float, error_share: float
) -> None:
    with pytest.raises(ValueError):
        server.faults.flaky(reset_share, error_share)


def test_clear_resets_everything(server: ReferenceServer) -> None:
    send_batch(server, track(), people())
    server.faults.fail_next(5)
    server.faults.buffer_full()
    server.faults.flaky(0, 1)
    server.clear()
    assert server.requests == []
    assert send_batch(server, track("user_2")).status == 200
    applied(server)
    stats = server.stats()
    assert (stats["events"], stats["people"], stats["faults_injected"]) == (1, 0, 0)
    assert server.get_person("user_1") is None
