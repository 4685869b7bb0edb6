"""Breaking a server from another process (``POST /reference/v1/faults``) and the hosted
engine's limiter, which answers without rate-limit headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer

from .conftest import batch, post, request, track

RATE_LIMITED = b'{"error":"Rate limit exceeded. Please wait a moment."}'


def faults(server: ReferenceServer, body: Any, key: Any = None) -> Any:
    return post(server, "/reference/v1/faults", body, key=key or server.api_key)


def test_fail_next_answers_the_next_requests_with_the_status(server: ReferenceServer) -> None:
    reply = faults(server, {"fail_next": 2, "status": 429, "retry_after": 3})
    assert reply.status == 200 and reply.json() == {"ok": True}
    for _ in range(2):
        failed = post(server, "/api/v1/batch", batch(track()))
        assert failed.status == 429 and failed.header("Retry-After") == "3"
    assert post(server, "/api/v1/batch", batch(track())).status == 200


def test_fail_for_answers_every_request_for_a_while(server: ReferenceServer) -> None:
    faults(server, {"fail_for": 60, "status": 503})
    assert post(server, "/api/v1/batch", batch(track())).status == 503
    faults(server, {"clear": True})
    assert post(server, "/api/v1/batch", batch(track())).status == 200


def test_flaky_resets_and_fails_a_share_reproducibly(server: ReferenceServer) -> None:
    faults(server, {"flaky": {"reset_share": 0.5, "error_share": 0.5, "seed": 3}})
    outcomes = set()
    for _ in range(12):
        try:
            outcomes.add(post(server, "/api/v1/batch", batch(track())).status)
        except (ConnectionError, OSError):
            outcomes.add("reset")
    assert outcomes == {500, "reset"}


def test_reset_connections_and_buffer_full(server: ReferenceServer) -> None:
    faults(server, {"reset_connections": 1})
    with pytest.raises((ConnectionError, OSError)):
        post(server, "/api/v1/batch", batch(track()))
    faults(server, {"buffer_full": True})
    assert post(server, "/api/v1/batch", batch(track())).status == 503


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        {},
        {"fail_next": -1},
        {"fail_next": True},
        {"fail_for": "long"},
        {"fail_for": 1, "status": 200},
        {"flaky": 1},
        {"flaky": {"reset_share": 0.8, "error_share": 0.8}},
        {"latency": 1, "n": "all"},
    ],
)
def test_bad_switches_are_refused_with_a_reason(server: ReferenceServer, body: Any) -> None:
    reply = faults(server, body)
    assert reply.status == 400 and reply.json()["error"]


def test_faults_need_the_project_key(server: ReferenceServer) -> None:
    assert faults(server, {"fail_next": 1}, key="sk_live_not_a_key_0000000000").status == 403
    reply = request(server, "POST", "/reference/v1/faults", b'{"fail_next":1}')
    assert reply.status == 401
    assert post(server, "/api/v1/batch", batch(track())).status == 200


@pytest.fixture
def hosted() -> Iterator[ReferenceServer]:
    with ReferenceServer(rate_limit=(2, 60), rate_limit_headers=False) as srv:
        yield srv


def test_the_hosted_engine_mode_sends_no_rate_limit_headers(hosted: ReferenceServer) -> None:
    for _ in range(2):
        reply = post(hosted, "/api/v1/batch", batch(track()))
        assert reply.status == 200
        assert reply.header("X-RateLimit-Remaining") is None
    refused = post(hosted, "/api/v1/batch", batch(track()))
    assert refused.status == 429 and refused.body == RATE_LIMITED
    assert refused.header("Retry-After") is None
