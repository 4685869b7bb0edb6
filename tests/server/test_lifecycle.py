"""ReferenceServer as a Python object: start/stop, ports, records, persistence, HTTP details."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer

from .conftest import applied, batch, people, post, raw_exchange, request, send_batch, track


def test_start_stop_are_idempotent_and_final() -> None:
    server = ReferenceServer(rate_limit=None)
    assert "stopped" in repr(server)
    assert server.start() is server
    port = server.port
    assert port != 0
    assert server.start().port == port
    assert "running" in repr(server)
    assert send_batch(server, track()).status == 200
    assert server.stop() is True
    assert server.stop() is True
    with pytest.raises(RuntimeError):
        server.start()
    with pytest.raises(OSError):
        socket.create_connection((server.host, port), timeout=2).close()


def test_given_port_is_used() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with ReferenceServer(rate_limit=None, port=free) as server:
        assert server.port == free
        assert server.url == f"http://127.0.0.1:{free}"
        assert request(server, "GET", "/health").status == 200


def test_keys_stay_out_of_reprs(server: ReferenceServer) -> None:
    for text in (repr(server), repr(server.project), str(server.requests)):
        assert server.api_key not in text
        assert server.test_api_key not in text


def test_stop_applies_everything_accepted(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    keys: dict[str, Any] = {"api_key": "sk_live_stop", "test_api_key": "sk_test_stop"}
    with ReferenceServer(rate_limit=None, db_path=db, **keys) as first:
        for n in range(5):
            operations = [track(f"user_{n}_{i}") for i in range(1000)]
            assert send_batch(first, *operations).status == 200
        assert send_batch(first, people("user_0_0", {"plan": "pro"})).status == 200
    with ReferenceServer(rate_limit=None, db_path=db, **keys) as second:
        applied(second)
        assert second.stats()["events"] == 5000
        person = second.get_person("user_0_0")
        assert person is not None and person["traits"]["plan"] == "pro"


def test_in_memory_data_is_per_server() -> None:
    with ReferenceServer(rate_limit=None) as one, ReferenceServer(rate_limit=None) as two:
        send_batch(one, track())
        applied(one)
        applied(two)
        assert (one.stats()["events"], two.stats()["events"]) == (1, 0)


def test_requests_are_recorded_without_keys(server: ReferenceServer) -> None:
    send_batch(server, track(), headers={"Idempotency-Key": "idem-1"})
    post(server, "/api/v1/batch?api_key=secret", batch(track()), key=server.test_api_key)
    post(server, "/api/v1/track", b"{}", key=None)
    records = server.requests
    assert [(r.method, r.path, r.status, r.environment) for r in records] == [
        ("POST", "/api/v1/batch", 200, "live"),
        ("POST", "/api/v1/batch", 200, "test"),
        ("POST", "/api/v1/track", 401, None),
    ]
    assert [r.idempotency_key for r in records] == ["idem-1", None, None]
    assert not any(r.replayed or r.fault for r in records)
    assert server.stats()["requests"] >= 3


def test_expect_100_continue(server: ReferenceServer) -> None:
    body = b'{"operations":[{"type":"track","payload":{"distinct_id":"user_1"}}]}'
    head = (
        f"POST /api/v1/batch HTTP/1.1\r\nHost: x\r\nx-api-key: {server.api_key}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head)
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 100")
        while stream.readline() not in (b"\r\n", b""):
            pass
        sock.sendall(body)
        assert stream.readline().startswith(b"HTTP/1.1 200")


def test_size_errors_have_no_cors_or_rate_limit_headers() -> None:
    with ReferenceServer(rate_limit=(5, 60), max_body_bytes=10) as srv:
        reply = post(srv, "/api/v1/batch", b"x" * 11, {"Origin": "https://a.example"})
        assert reply.status == 413
        assert reply.header("Access-Control-Allow-Origin") is None
        assert reply.header("X-RateLimit-Limit") is None
        big = {"Origin": "https://a.example", "X-Big": "b" * 5000}
        reply = post(srv, "/api/v1/batch", b"{}", big)
        assert reply.status == 431
        assert reply.header("Access-Control-Allow-Origin") is None


def test_http_10_request_is_answered_and_closed(server: ReferenceServer) -> None:
    body = b'{"operations":[{"type":"track","payload":{"distinct_id":"user_1"}}]}'
    data = (
        f"POST /api/v1/batch HTTP/1.0\r\nx-api-key: {server.api_key}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reply = raw_exchange(server, data)
    assert reply.status == 200
