"""``deduplicate=False``: every request is applied as the engine applies it (no Idempotency-Key
deduplication), while ``stats()["repeated_keys"]`` and the request log still show the resends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer

from .conftest import applied, batch_ok, get, people, post, send_batch, track


@pytest.fixture(scope="module")
def _engine_like_server() -> Iterator[ReferenceServer]:
    with ReferenceServer(rate_limit=None, deduplicate=False) as srv:
        yield srv


@pytest.fixture
def engine_like(_engine_like_server: ReferenceServer) -> ReferenceServer:
    _engine_like_server.clear()
    return _engine_like_server


def keyed(server: ReferenceServer, idem: str, *operations: Any, **kw: Any) -> Any:
    return send_batch(server, *operations, headers={"Idempotency-Key": idem}, **kw)


def event(distinct_id: str, insert_id: str) -> dict[str, Any]:
    return track(distinct_id, properties={"$insert_id": insert_id})


def test_the_default_is_to_deduplicate(server: ReferenceServer) -> None:
    assert server.deduplicate is True
    keyed(server, "k", event("user_1", "i-1"))
    keyed(server, "k", event("user_1", "i-1"))
    stats = applied(server).stats()
    assert (stats["events"], stats["idempotent_replays"], stats["repeated_keys"]) == (1, 1, 1)


def test_a_batch_sent_twice_under_one_key_is_stored_twice(engine_like: ReferenceServer) -> None:
    operations = (event("user_1", "i-1"), people("user_1", {"plan": "pro"}))
    first = keyed(engine_like, "batch-1", *operations)
    again = keyed(engine_like, "batch-1", *operations)
    expected = batch_ok(engine_like, n=2, events=1, people_=1)
    assert (first.status, first.body) == (again.status, again.body) == (200, expected)
    stats = applied(engine_like).stats()
    assert stats["events"] == 2
    assert stats["duplicate_insert_ids"] == 1
    assert stats["idempotent_replays"] == 0
    assert stats["repeated_keys"] == 1
    person = engine_like.get_person("user_1")
    assert person is not None and person["event_count"] == 2
    assert [e["properties"]["$insert_id"] for e in engine_like.events("user_1")] == ["i-1"] * 2
    records = [r for r in engine_like.requests if r.path == "/api/v1/batch"]
    assert [(r.idempotency_key, r.replayed, r.repeated_key) for r in records] == [
        ("batch-1", False, False),
        ("batch-1", False, True),
    ]


def test_a_repeat_with_another_body_applies_the_new_body(engine_like: ReferenceServer) -> None:
    keyed(engine_like, "k", track("user_1"))
    again = keyed(engine_like, "k", track("user_1"), track("user_2"), track("user_3"))
    assert again.body == batch_ok(engine_like, n=3, events=3)
    assert applied(engine_like).stats()["events"] == 4


def test_single_routes_are_applied_again(engine_like: ReferenceServer) -> None:
    headers = {"Idempotency-Key": "single-1"}
    payload = {"distinct_id": "user_1", "event_name": "x"}
    replies = [post(engine_like, "/api/v1/track", payload, headers) for _ in range(3)]
    assert {(r.status, r.body) for r in replies} == {(200, b"OK")}
    stats = applied(engine_like).stats()
    assert (stats["events"], stats["repeated_keys"]) == (3, 2)


def test_concurrent_repeats_are_all_applied(engine_like: ReferenceServer) -> None:
    operations = [track(f"user_{i}") for i in range(20)]
    start = threading.Barrier(6)
    statuses: list[int] = []

    def send() -> None:
        start.wait()
        statuses.append(keyed(engine_like, "same", *operations).status)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 6
    stats = applied(engine_like).stats()
    assert (stats["events"], stats["repeated_keys"], stats["idempotent_replays"]) == (120, 5, 0)


def test_resends_after_a_failure_count_as_repeated_in_either_mode(
    server: ReferenceServer, engine_like: ReferenceServer
) -> None:
    for srv in (server, engine_like):
        srv.faults.fail_next(2, status=503)
        replies = [keyed(srv, "k", track()).status for _ in range(3)]
        assert replies == [503, 503, 200]
        stats = applied(srv).stats()
        assert (stats["events"], stats["repeated_keys"], stats["idempotent_replays"]) == (1, 2, 0)
        assert [r.repeated_key for r in srv.requests] == [False, True, True]


def test_a_resend_after_a_2xx_is_counted_apart(
    server: ReferenceServer, engine_like: ReferenceServer
) -> None:
    # A retry after a 503 is what a client must do; a batch sent again after a 2xx is a resend
    # only a lost answer (or a bookkeeping bug) explains: tests count those apart.
    for srv in (server, engine_like):
        srv.faults.fail_next(1, status=503)
        replies = [keyed(srv, "k", track()).status for _ in range(4)]
        assert replies == [503, 200, 200, 200]
        stats = applied(srv).stats()
        assert (stats["repeated_keys"], stats["repeated_after_success"]) == (3, 2)


def test_what_counts_as_a_repeated_key(engine_like: ReferenceServer) -> None:
    keyed(engine_like, "k", track())
    keyed(engine_like, "k", track(), key=engine_like.test_api_key)  # another environment
    keyed(engine_like, "k", track(), key="sk_live_unknown")  # 403: no scope, not counted
    post(engine_like, "/api/v1/track", {}, {"Idempotency-Key": "k"}, key=None)  # 401
    get(engine_like, "/api/v1/batch", {"Idempotency-Key": "k"})  # 405: nothing was sent
    post(engine_like, "/api/v1/nowhere", {}, {"Idempotency-Key": "k"})  # 404
    send_batch(engine_like, track())  # no key
    keyed(engine_like, "", track())  # an empty key is no key
    keyed(engine_like, "", track())
    assert engine_like.stats()["repeated_keys"] == 0
    keyed(engine_like, "k", track(), key=engine_like.test_api_key)
    assert engine_like.stats()["repeated_keys"] == 1


def test_http_stats_carry_the_counters(engine_like: ReferenceServer) -> None:
    keyed(engine_like, "k", track())
    keyed(engine_like, "k", track())
    applied(engine_like)
    reply = get(engine_like, "/reference/v1/stats")
    stats = json.loads(reply.body)
    assert (stats["events"], stats["repeated_keys"], stats["idempotent_replays"]) == (2, 1, 0)
    assert stats == {**engine_like.stats(), "requests": stats["requests"]}


def test_clear_forgets_the_keys_seen(engine_like: ReferenceServer) -> None:
    keyed(engine_like, "k", track())
    keyed(engine_like, "k", track())
    assert engine_like.stats()["repeated_keys"] == 1
    engine_like.clear()
    assert engine_like.stats()["repeated_keys"] == 0
    keyed(engine_like, "k", track())
    assert engine_like.stats()["repeated_keys"] == 0
    assert [r.repeated_key for r in engine_like.requests] == [False]


def test_no_answer_is_remembered_nor_replayed_across_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "store.db")
    keys: dict[str, Any] = {"api_key": "sk_live_restart", "test_api_key": "sk_test_restart"}
    with ReferenceServer(rate_limit=None, db_path=db, deduplicate=True, **keys) as first:
        assert keyed(first, "remembered", track()).status == 200
    with ReferenceServer(rate_limit=None, db_path=db, deduplicate=False, **keys) as second:
        # An answer remembered by a deduplicating run is not replayed...
        assert keyed(second, "remembered", track()).status == 200
        # ...and this run remembers none.
        assert keyed(second, "fresh", track()).status == 200
        assert applied(second).stats()["events"] == 3
        assert second.stats()["idempotent_replays"] == 0
    with ReferenceServer(rate_limit=None, db_path=db, **keys) as third:
        assert keyed(third, "fresh", track()).status == 200
        assert applied(third).stats()["events"] == 4
        assert third.stats()["idempotent_replays"] == 0
