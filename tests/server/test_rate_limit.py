"""The fixed-window rate limiter (spec section 10)."""

from __future__ import annotations

import pytest

from sankofa_sdk.server import ReferenceServer
from sankofa_sdk.server._ratelimit import FixedWindowLimiter

from .conftest import JSON, batch, post, request, track

RATE_LIMITED = b'{"error":"Rate limit exceeded. Please wait a moment."}'


def test_headers_count_down_then_429(limited: ReferenceServer) -> None:
    for remaining in ("2", "1", "0"):
        reply = post(limited, "/api/v1/batch", batch(track()))
        assert reply.status == 200
        assert reply.header("X-RateLimit-Limit") == "3"
        assert reply.header("X-RateLimit-Remaining") == remaining
        assert 1 <= int(reply.header("X-RateLimit-Reset") or 0) <= 60
    reply = post(limited, "/api/v1/batch", batch(track()))
    assert reply.status == 429
    assert reply.content_type == JSON
    assert reply.body == RATE_LIMITED
    assert 1 <= int(reply.header("Retry-After") or 0) <= 60
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert reply.header(name) is None
    assert limited.wait_until_applied()
    stats = limited.stats()
    assert stats["events"] == 3
    # What a client sent, and how much of it the limiter refused, without the reads.
    assert (stats["ingest_requests"], stats["rate_limited"]) == (4, 1)


def test_all_ingest_routes_share_one_counter_per_key(limited: ReferenceServer) -> None:
    event = {"distinct_id": "user_1", "event_name": "x"}
    assert post(limited, "/api/v1/track", event).status == 200
    assert post(limited, "/api/v1/people", {"distinct_id": "user_1"}).status == 200
    assert post(limited, "/api/v1/alias", {"distinct_id": "user_1"}).status == 200
    assert post(limited, "/api/v1/batch", batch(track())).status == 429


def test_every_api_v1_answer_counts(limited: ReferenceServer) -> None:
    key = limited.api_key
    replies = [
        post(limited, "/api/v1/nowhere", b"{}"),  # 404
        request(limited, "GET", "/api/v1/track", b"", {"x-api-key": key}),  # 405
        post(limited, "/api/v1/track", b"junk", content_type=None),  # 400
    ]
    assert [r.status for r in replies] == [404, 405, 400]
    assert [r.header("X-RateLimit-Remaining") for r in replies] == ["2", "1", "0"]
    assert post(limited, "/api/v1/batch", batch(track())).status == 429


def test_rate_limit_comes_before_key_and_route_checks(limited: ReferenceServer) -> None:
    for _ in range(3):
        assert post(limited, "/api/v1/batch", b"", key="sk_bad").status == 403
    for path in ("/api/v1/batch", "/api/v1/nowhere", "/API/V1/TRACK/"):
        reply = post(limited, path, b"x", key="sk_bad")
        assert (reply.status, reply.body) == (429, RATE_LIMITED)


def test_buckets_are_per_key_value(limited: ReferenceServer) -> None:
    for _ in range(3):
        assert post(limited, "/api/v1/batch", batch(track())).status == 200
    assert post(limited, "/api/v1/batch", batch(track())).status == 429
    # Another key, valid or not, has its own window.
    reply = post(limited, "/api/v1/batch", batch(track()), key=limited.test_api_key)
    assert (reply.status, reply.header("X-RateLimit-Remaining")) == (200, "2")
    reply = post(limited, "/api/v1/batch", batch(track()), key="sk_unknown")
    assert (reply.status, reply.header("X-RateLimit-Remaining")) == (403, "2")


def test_requests_without_key_share_the_peer_ip_bucket(limited: ReferenceServer) -> None:
    for remaining in ("2", "1", "0"):
        reply = post(limited, "/api/v1/batch", batch(track()), key=None)
        assert (reply.status, reply.header("X-RateLimit-Remaining")) == (401, remaining)
    assert post(limited, "/api/v1/batch", batch(track()), key="").status == 429
    assert post(limited, "/api/v1/batch", batch(track())).status == 200  # keyed bucket


def test_health_preflight_and_read_api_are_not_counted(limited: ReferenceServer) -> None:
    preflight = {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}
    for _ in range(5):
        assert request(limited, "GET", "/health").status == 200
        assert request(limited, "OPTIONS", "/api/v1/batch", b"", preflight).status == 204
        assert post(limited, "/nowhere", b"").status == 404
        reply = request(limited, "GET", "/reference/v1/stats", b"", {"x-api-key": limited.api_key})
        assert reply.status == 200
    reply = post(limited, "/api/v1/batch", batch(track()))
    assert (reply.status, reply.header("X-RateLimit-Remaining")) == (200, "2")


def test_health_has_no_rate_limit_headers(limited: ReferenceServer) -> None:
    assert request(limited, "GET", "/health").header("X-RateLimit-Limit") is None


def test_prefix_must_be_a_whole_segment(limited: ReferenceServer) -> None:
    for _ in range(4):
        reply = post(limited, "/api/v10/batch", b"")
        assert reply.status == 404
        assert reply.header("X-RateLimit-Limit") is None


def test_429_to_an_origin_request_carries_allow_origin(limited: ReferenceServer) -> None:
    for _ in range(3):
        post(limited, "/api/v1/batch", batch(track()))
    reply = post(limited, "/api/v1/batch", batch(track()), {"Origin": "https://a.example"})
    assert reply.status == 429
    assert reply.header("Access-Control-Allow-Origin") == "*"


def test_rate_limit_none_sends_no_headers(server: ReferenceServer) -> None:
    reply = post(server, "/api/v1/batch", batch(track()))
    assert reply.header("X-RateLimit-Limit") is None


def test_default_is_500_per_60_seconds() -> None:
    with ReferenceServer() as srv:
        reply = post(srv, "/api/v1/batch", batch(track()))
        assert reply.header("X-RateLimit-Limit") == "500"
        assert reply.header("X-RateLimit-Remaining") == "499"
        assert reply.header("X-RateLimit-Reset") in ("59", "60")


def test_integer_rate_limit_means_per_60_seconds() -> None:
    with ReferenceServer(rate_limit=7) as srv:
        reply = post(srv, "/api/v1/batch", batch(track()))
        assert reply.header("X-RateLimit-Limit") == "7"
        assert reply.header("X-RateLimit-Reset") in ("59", "60")


# --- the limiter itself, on an injected clock ---------------------------------------------------


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers(verdict: object) -> dict[str, str]:
    return dict(verdict.headers)  # type: ignore[attr-defined]


def test_window_starts_at_first_request_and_lasts_window_seconds() -> None:
    clock = Clock(1_000_000.7)
    limiter = FixedWindowLimiter(2, 60, clock=clock)
    first = limiter.hit("k", "1.2.3.4")
    assert first.allowed
    assert headers(first) == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "60",
    }
    clock.now += 25
    second = limiter.hit("k", "1.2.3.4")
    assert headers(second)["X-RateLimit-Reset"] == "35"
    assert headers(second)["X-RateLimit-Remaining"] == "0"
    clock.now += 34  # one second before the window ends
    third = limiter.hit("k", "1.2.3.4")
    assert not third.allowed
    assert third.headers == (("Retry-After", "1"),)
    clock.now += 1  # the window has ended: a new one starts
    fourth = limiter.hit("k", "1.2.3.4")
    assert fourth.allowed
    assert headers(fourth) == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "60",
    }


def test_retry_after_counts_down_to_the_window_end() -> None:
    clock = Clock()
    limiter = FixedWindowLimiter(1, 60, clock=clock)
    assert limiter.hit("k", "ip").allowed
    for elapsed, expected in ((0, "60"), (1, "59"), (30, "30"), (59, "1")):
        clock.now = 1_000_000.0 + elapsed
        verdict = limiter.hit("k", "ip")
        assert not verdict.allowed
        assert verdict.headers == (("Retry-After", expected),)


def test_limiter_uses_whole_seconds() -> None:
    clock = Clock(1_000_000.9)
    limiter = FixedWindowLimiter(5, 10, clock=clock)
    limiter.hit("k", "ip")
    clock.now = 1_000_009.99  # int: 1_000_009, one second left
    assert headers(limiter.hit("k", "ip"))["X-RateLimit-Reset"] == "1"
    clock.now = 1_000_010.0
    assert headers(limiter.hit("k", "ip"))["X-RateLimit-Remaining"] == "4"


def test_limiter_keys_empty_api_key_by_ip() -> None:
    limiter = FixedWindowLimiter(1, 60, clock=Clock())
    assert limiter.hit(None, "1.1.1.1").allowed
    assert not limiter.hit("", "1.1.1.1").allowed
    assert limiter.hit(None, "2.2.2.2").allowed
    assert limiter.hit("1.1.1.1", "9.9.9.9").allowed  # a key equal to an IP is another bucket


def test_limiter_forgets_many_ended_windows_without_losing_live_ones() -> None:
    clock = Clock()
    limiter = FixedWindowLimiter(1, 60, clock=clock)
    for i in range(100_002):
        limiter.hit(f"k{i}", "ip")
    clock.now += 30
    live = limiter.hit("live", "ip")
    assert live.allowed
    clock.now += 31
    limiter.hit("new", "ip")  # triggers the cleanup of ended windows
    clock.now += 1
    assert not limiter.hit("live", "ip").allowed  # its window (started at +30) goes on


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (5, 0), (-1, 10)])
def test_limiter_rejects_non_positive_settings(limit: int, window: int) -> None:
    with pytest.raises(ValueError):
        FixedWindowLimiter(limit, window)
