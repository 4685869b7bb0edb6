"""``ReferenceServer.clear()`` forgets everything its docstring names, and counting is safe."""

from __future__ import annotations

import threading

from sankofa_sdk.server import ReferenceServer
from sankofa_sdk.server._app import Request

from .conftest import applied, send_batch, track


def test_clear_forgets_data_requests_counters_windows_answers_and_faults() -> None:
    with ReferenceServer(rate_limit=(2, 60)) as server:
        assert send_batch(server, track(), headers={"Idempotency-Key": "k1"}).status == 200
        assert send_batch(server, track("user_2")).status == 200
        assert send_batch(server, track("user_3")).status == 429  # the window is used up
        server.faults.fail_next(1)
        applied(server)
        server.clear()
        stats = server.stats()
        assert stats["events"] == 0
        assert stats["requests"] == 0
        assert stats["idempotent_replays"] == 0
        assert stats["faults_injected"] == 0
        assert server.requests == []
        # A new rate-limit window: the first request after clear() has the whole limit left.
        reply = send_batch(server, track(), headers={"Idempotency-Key": "k1"})
        assert reply.status == 200  # not the injected fault, not a replay, not 429
        assert reply.header("X-RateLimit-Remaining") == "1"
        assert server.stats()["idempotent_replays"] == 0
        assert server.stats()["requests"] == 1


def test_the_request_counter_loses_no_update_under_concurrency(server: ReferenceServer) -> None:
    app = server._app
    request = Request("GET", "/health", {}, b"", "127.0.0.1")
    threads_n, per_thread = 8, 2000
    before = app.request_count
    start = threading.Barrier(threads_n)

    def hammer() -> None:
        start.wait()
        for _ in range(per_thread):
            app.handle(request)

    threads = [threading.Thread(target=hammer) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert app.request_count - before == threads_n * per_thread
