"""Shutdown counts time without progress, not total time, and says what it could not deliver
in the words that fit: never sent (``dropped["shutdown"]``) or sent without an answer
(``unknown_fate``, with the batch's Idempotency-Key).

The transport here takes a fixed time per request, like an engine across a network; the
outcomes are counts (how much got through), never timings.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from sankofa_sdk import Client, DeliveryError, SankofaError
from sankofa_sdk.testing import RecordingTransport, Reply

from ..conftest import API_KEY

PER_REQUEST = 0.05


class SlowEngine(RecordingTransport):
    """Each request takes ``PER_REQUEST`` seconds to answer (a network round trip)."""

    def send(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(PER_REQUEST)
        return super().send(*args, **kwargs)


def slow_client(transport: RecordingTransport, **options: Any) -> Client:
    errors: list[SankofaError] = options.pop("errors", [])
    return Client(
        API_KEY,
        transport=transport,
        rate_limit=None,  # pacing is not what this is about
        flush_at=10,
        max_batch_size=10,
        on_error=lambda error, op: errors.append(error),
        **options,
    )


def test_a_queue_that_drains_is_delivered_past_the_shutdown_timeout() -> None:
    """40 requests of 0.05 s each take 2 s; each brings progress well within the 0.5 s
    without progress that shutdown allows, so all of it goes (before: cut at 0.5 s)."""
    transport = SlowEngine()
    client = slow_client(transport, shutdown_timeout=0.5, flush_interval=60)
    for i in range(400):
        client.people_set({"i": i}, distinct_id=f"user_{i}")
    client.shutdown()
    stats = client.stats()
    assert stats["delivered"] == 400, stats
    assert stats["dropped"] == {} and stats["unknown_fate"] == 0
    assert len(transport.requests) == 40


def test_max_shutdown_time_bounds_it_even_while_progress_is_made() -> None:
    """1,000 operations at 10 a request would take 5 s; max_shutdown_time=0.5 ends it early
    and every operation is accounted for: delivered, never sent, or sent without answer."""
    transport = SlowEngine()
    errors: list[SankofaError] = []
    client = slow_client(
        transport, shutdown_timeout=0.4, max_shutdown_time=0.5, flush_interval=60, errors=errors
    )
    for i in range(1_000):
        client.track("Backfilled", {"i": i}, distinct_id="user_1")
    client.shutdown()
    stats = client.stats()
    never_sent = stats["dropped"].get("shutdown", 0)
    assert 0 < stats["delivered"] < 1_000
    assert never_sent > 0
    assert stats["delivered"] + never_sent + stats["unknown_fate"] == 1_000
    assert len(errors) == never_sent + stats["unknown_fate"]


def test_an_engine_that_only_fails_ends_shutdown_after_the_quiet_time() -> None:
    """503 after 503 is no progress: shutdown ends after shutdown_timeout. The batch that got
    503s may have been stored in part (a full buffer keeps what it took): unknown fate, with
    its key. What never left is dropped by the shutdown."""
    transport = RecordingTransport(then=503)
    errors: list[SankofaError] = []
    client = slow_client(transport, shutdown_timeout=0.3, backoff_base=0.01, errors=errors)
    for i in range(30):
        client.track("Queued", {"i": i}, distinct_id="user_1")
    client.shutdown()
    stats = client.stats()
    assert stats["delivered"] == 0
    unknown = [e for e in errors if isinstance(e, DeliveryError) and e.reason == "unknown_fate"]
    keys = {request.key for request in transport.requests}
    assert {e.idempotency_key for e in unknown} <= keys
    assert len(unknown) == stats["unknown_fate"] >= 10
    assert stats["unknown_fate"] + stats["dropped"].get("shutdown", 0) == 30
    assert stats["failed"] == stats["dropped"].get("shutdown", 0)  # unknown is not failed


def test_a_refused_connection_is_never_of_unknown_fate() -> None:
    """A request that never reached the engine cannot have been stored: dropped, not unknown."""
    transport = RecordingTransport(then=Reply.refused())
    errors: list[SankofaError] = []
    client = slow_client(transport, shutdown_timeout=0.3, backoff_base=0.01, errors=errors)
    for i in range(10):
        client.track("Queued", {"i": i}, distinct_id="user_1")
    client.shutdown()
    stats = client.stats()
    assert stats["unknown_fate"] == 0, stats
    assert stats["dropped"] == {"shutdown": 10}


def test_the_retry_line_during_shutdown_names_the_deadline_not_max_retry_time(
    caplog: Any,
) -> None:
    transport = RecordingTransport(then=503)
    client = slow_client(transport, shutdown_timeout=0.3, backoff_base=0.01)
    client.track("Queued", distinct_id="user_1")
    with caplog.at_level("WARNING", logger="sankofa_sdk"):
        client.shutdown()
    lines = [r.getMessage() for r in caplog.records if "could not deliver" in r.getMessage()]
    assert lines and all("max_retry_time" not in line for line in lines), lines
    assert "while shutting down; retrying until the shutdown's deadline" in lines[0]


def test_an_engine_that_is_down_over_http_is_never_of_unknown_fate() -> None:
    """The HTTP transport tells a refused connection (nothing sent) from a lost answer."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = Client(
        API_KEY,
        f"http://127.0.0.1:{port}",
        rate_limit=None,
        shutdown_timeout=0.3,
        backoff_base=0.01,
        flush_at=1,
    )
    for i in range(5):
        client.track("Queued", {"i": i}, distinct_id="user_1")
    client.shutdown()
    stats = client.stats()
    assert stats["unknown_fate"] == 0, stats
    assert stats["dropped"] == {"shutdown": 5}


@pytest.mark.parametrize("timeout", ["5", b"5", True, [1]])
def test_a_timeout_that_is_not_a_number_is_refused_clearly(timeout: Any) -> None:
    client = Client(API_KEY, transport=RecordingTransport())
    client.track("Queued", distinct_id="user_1")
    for call in (client.flush, client.flush_if_due, client.shutdown):
        with pytest.raises(TypeError, match="timeout must be a number of seconds"):
            call(timeout)
    client.shutdown()
    assert client.stats()["delivered"] == 1  # nothing lost by the refused calls
