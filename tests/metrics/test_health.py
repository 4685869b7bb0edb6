"""``Client.health()``: each reason, from what the client saw (scripted answers; no server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from sankofa_sdk import Client, Health, HealthStatus
from sankofa_sdk.testing import RecordingTransport, Reply

MakeClient = Callable[..., Client]
FAST: dict[str, Any] = dict(flush_interval=0.01, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def make() -> Iterator[MakeClient]:
    clients: list[Client] = []

    def make(transport: RecordingTransport, **options: Any) -> Client:
        client = Client("sk_test_health_0123456789", transport=transport, **{**FAST, **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=1)


def codes(health: Health) -> list[str]:
    return [issue.code for issue in health.issues]


def answered(client: Client, count: int) -> None:
    assert client._worker.observer.wait_for_answers(count, 10), "no answer in time"


def test_a_client_that_delivers_is_ok(make: MakeClient) -> None:
    client = make(RecordingTransport())
    assert client.health().ok
    client.track("Signed In", distinct_id="user_42")
    assert client.flush(5)
    health = client.health()
    assert health.status is HealthStatus.OK and health.issues == () and health.reason == "ok"
    assert health.as_dict()["status"] == "ok" and health.level == 0


def test_failed_requests_make_it_failing_since_the_first_and_a_2xx_makes_it_ok(
    make: MakeClient,
) -> None:
    transport = RecordingTransport(503, Reply.reset(), 500)
    client = make(transport, backoff_base=0.2, backoff_max=0.2)
    client.track("Signed In", distinct_id="user_42")
    answered(client, 2)
    health = client.health()
    assert health.status is HealthStatus.FAILING and codes(health) == ["engine_unreachable"]
    issue = health.issues[0]
    assert "HTTP 503" in issue.message and issue.since is not None
    assert "1 operation(s) waiting" in issue.message
    answered(client, 3)
    assert client.health().issues[0].since == issue.since  # the first failure of the run
    assert client.flush(5)
    assert client.health().ok


def test_a_refused_key_is_failing_and_a_poison_batch_only_degraded(make: MakeClient) -> None:
    client = make(RecordingTransport(403))
    client.track("Signed In", distinct_id="user_42")
    assert client.flush(5)
    health = client.health()
    assert health.status is HealthStatus.FAILING and codes(health) == ["engine_refuses"]
    assert "HTTP 403" in health.reason

    # Both refused: the batch, then each half alone (reported); the last answer was a 400.
    client = make(RecordingTransport(400, 400, 400), flush_at=2)
    client.track("A", distinct_id="user_42")
    client.track("B", distinct_id="user_42")
    assert client.flush(5)
    health = client.health()
    assert health.status is HealthStatus.DEGRADED and codes(health) == ["engine_rejects"]
    assert client.stats()["dropped"] == {"rejected": 2}


def test_a_rate_limited_client_is_degraded_while_the_budget_is_exhausted(
    make: MakeClient,
) -> None:
    transport = RecordingTransport(Reply(429, headers={"Retry-After": "30"}))
    client = make(transport, max_retry_after=30)
    client.track("Signed In", distinct_id="user_42")
    answered(client, 1)
    health = client.health()
    assert health.status is HealthStatus.DEGRADED and codes(health) == ["budget_exhausted"]
    assert "HTTP 429" in health.reason and "sending again in" in health.reason


def test_a_spent_quota_is_failing(make: MakeClient) -> None:
    quota = Reply(429, body=b'{"error":"quota_exceeded"}')
    client = make(RecordingTransport(quota))
    client.track("Signed In", distinct_id="user_42")
    assert client.flush(5)
    health = client.health()
    assert health.status is HealthStatus.FAILING and "quota_exceeded" in codes(health)


def test_the_queue_above_the_threshold_is_degraded_until_it_drains(make: MakeClient) -> None:
    transport = RecordingTransport()
    # Nothing wakes the worker before 1,000 calls or a minute: the calls stay queued.
    client = make(transport, flush_at=1_000, flush_interval=60, max_queue_size=10)
    for n in range(7):
        client.track("Seq", {"n": n}, distinct_id="user_42")
    assert client.health().ok  # 70% of the bound
    client.track("Seq", {"n": 7}, distinct_id="user_42")
    health = client.health()
    assert health.status is HealthStatus.DEGRADED and codes(health) == ["queue_high"]
    assert "80%" in health.reason
    assert client.health(queue_threshold=0.9).ok
    assert client.flush(5)
    assert client.health().ok


def test_queue_threshold_must_be_a_share(make: MakeClient) -> None:
    client = make(RecordingTransport())
    for bad in (0, -0.5, 1.5, True):
        with pytest.raises(ValueError, match="queue_threshold"):
            client.health(queue_threshold=bad)


def test_a_spool_that_cannot_be_made_is_degraded(make: MakeClient, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")  # a directory cannot be made under a file, even as root
    client = make(RecordingTransport(), spool_dir=str(tmp_path / "a-file" / "spool"))
    health = client.health()
    assert health.status is HealthStatus.DEGRADED and codes(health) == ["spool_unwritable"]


def test_a_spool_that_stops_being_writable_is_degraded(make: MakeClient, tmp_path: Path) -> None:
    client = make(RecordingTransport(), spool_dir=str(tmp_path))
    assert client.health().ok
    source = client._worker._source
    source.failed(OSError("No space left on device"))  # type: ignore[attr-defined]
    health = client.health()
    assert health.status is HealthStatus.DEGRADED and codes(health) == ["spool_unwritable"]


def test_a_shut_down_client_is_failing_and_a_disabled_one_ok(make: MakeClient) -> None:
    client = make(RecordingTransport())
    client.shutdown(timeout=1)
    health = client.health()
    assert health.status is HealthStatus.FAILING and codes(health) == ["closed"]
    disabled = Client(disabled=True)
    assert disabled.health().ok
    disabled.shutdown()
