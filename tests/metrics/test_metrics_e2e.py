"""The metrics after a real run: the reference server in its own process, with 429s, a 503
outage and a 400 (a poison operation), and a call refused as invalid.

One client runs the faults once for the module, wired to both integrations at once: the
OpenTelemetry SDK's in-memory reader and a Prometheus registry read back from its text
exposition must both say what ``stats()`` says, and the histograms must count one value per
request and one per delivered batch. Then ``health()`` goes ok -> failing -> ok through an outage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sankofa_sdk import Client, ClientStats, HealthStatus

from ..e2e.external_server import ExternalServer
from .conftest import need

otel_sdk = need("opentelemetry.sdk.metrics")
otel_export = need("opentelemetry.sdk.metrics.export")
prometheus = need("prometheus_client")
prometheus_parser = need("prometheus_client.parser")

from sankofa_sdk.integrations.opentelemetry import instrument  # noqa: E402
from sankofa_sdk.integrations.prometheus import SankofaCollector  # noqa: E402

FAST: dict[str, Any] = dict(
    flush_interval=0.05,
    backoff_base=0.02,
    backoff_max=0.25,
    max_retries=60,
    max_retry_time=60.0,
    timeout=5.0,
    rate_limit=(500, 2),  # paced (the allowance gauge has a value), well above what is sent
)
LABELS = {"app": "e2e"}


class Run:
    """What the module's faulty run left: the client's stats and both exports of its metrics."""

    def __init__(self, stats: ClientStats, otel: dict[str, Any], prometheus: dict[str, Any]):
        self.stats = stats
        self.otel = otel
        self.prometheus = prometheus


def send(client: Client, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        client.track("Seq", {"seq": n}, distinct_id="user_seq")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    server = ExternalServer(Path(log), "--rate-limit", "off")
    reader = otel_export.InMemoryMetricReader()
    provider = otel_sdk.MeterProvider(metric_readers=[reader])
    registry = prometheus.CollectorRegistry()
    client = Client(server.api_key, server.url, flush_at=20, **FAST)
    try:
        instrument(client, meter_provider=provider, attributes=LABELS)
        registry.register(SankofaCollector(client, labels=LABELS))
        server.faults(fail_next=2, status=429, retry_after=0.2)
        send(client, 60)
        assert client.flush(60)
        server.faults(fail_next=4, status=503)  # an outage of four requests
        send(client, 60, start=60)
        assert client.flush(60)
        send(client, 10, start=120)
        # A timestamp in year 33658 passes no public call, but a bypass could queue it: the
        # engine answers its batch 400, and the halves go until it is alone (reported).
        client._worker.submit(("track", "user_seq", "Poison", {"seq": -1}, None, 1e12))
        send(client, 10, start=130)
        assert client.flush(60)
        client.track("Too Short", distinct_id="u")  # refused at the call: invalid
        assert server.wait_until_applied(30)
        stats = client.stats()
        yield Run(stats, _otel_points(reader), _prometheus_samples(registry))
    finally:
        client.shutdown(timeout=5)
        provider.shutdown()
        server.stop()


def test_the_run_met_every_fault(run: Run) -> None:
    stats = run.stats
    assert stats["delivered"] == 140 and stats["accepted"] == 141
    assert stats["rate_limited"] == 2 and stats["retried"] == 4
    assert stats["dropped"] == {"rejected": 1, "invalid": 1} and stats["failed"] == 1


def test_every_opentelemetry_instrument_equals_stats(run: Run) -> None:
    stats, points = run.stats, run.otel
    assert points["sankofa.operations.accepted"] == {(): stats["accepted"]}
    assert points["sankofa.operations.delivered"] == {(): stats["delivered"]}
    assert points["sankofa.operations.skipped"] == {(): stats["skipped"]}
    unknown = dict(stats).get("unknown_fate", 0)  # counted by clients that cut at shutdown
    assert points["sankofa.operations.unknown_fate"] == {(): unknown}
    failed = points["sankofa.operations.failed"]
    assert failed == {("rejected",): 1} and sum(failed.values()) == stats["failed"]
    dropped = points["sankofa.operations.dropped"]
    assert dropped == {("before_send",): 0, ("closed",): 0, ("invalid",): 1, ("queue_full",): 0}
    requests = points["sankofa.requests"]
    assert requests[("429",)] == stats["rate_limited"]
    assert requests[("5xx",)] == stats["retried"]  # every 503 was retried, none given up
    assert requests[("network_error",)] == 0
    assert requests[("4xx",)] >= 1  # the 400s of the poison operation's batches
    assert points["sankofa.queue.operations"] == {(): stats["queued"]} == {(): 0}
    assert points["sankofa.queue.size"] == {(): 0}
    assert points["sankofa.queue.utilization"] == {(): 0}
    assert points["sankofa.health"] == {(): 0}
    assert "sankofa.spool.size" not in points  # no spool_dir
    (allowance,) = points["sankofa.pacer.allowance"].values()
    assert 0 < allowance <= 250
    # One duration per request, by outcome; one delay per delivered batch (one per 2xx).
    durations = points["sankofa.request.duration"]
    assert {k: count for k, (count, _, _) in durations.items()} == {
        k: n for k, n in requests.items() if n
    }
    delay_count, delay_sum, delay_buckets = points["sankofa.delivery.delay"][()]
    assert delay_count == requests[("2xx",)] and sum(delay_buckets) == delay_count
    assert delay_sum > 0


def test_prometheus_exposition_parsed_back_equals_stats(run: Run) -> None:
    stats, samples, otel = run.stats, run.prometheus, run.otel
    assert samples["sankofa_operations_accepted_total"] == {(): stats["accepted"]}
    assert samples["sankofa_operations_delivered_total"] == {(): stats["delivered"]}
    assert samples["sankofa_operations_failed_total"] == {("rejected",): 1}
    assert samples["sankofa_operations_dropped_total"][("invalid",)] == 1
    assert samples["sankofa_requests_total"] == otel["sankofa.requests"]
    assert samples["sankofa_queue_operations"] == {(): 0}
    assert samples["sankofa_health_status"] == {(): 0}
    counts = samples["sankofa_request_duration_seconds_count"]
    assert counts == {k: n for k, n in otel["sankofa.requests"].items() if n}
    assert samples["sankofa_delivery_delay_seconds_count"] == {
        (): otel["sankofa.requests"][("2xx",)]
    }
    infinite = samples["sankofa_delivery_delay_seconds_bucket"][("+Inf",)]
    assert infinite == samples["sankofa_delivery_delay_seconds_count"][()]


def test_health_goes_ok_then_failing_then_ok_through_an_outage(tmp_path: Path) -> None:
    server = ExternalServer(tmp_path / "server.log", "--rate-limit", "off")
    client = Client(server.api_key, server.url, flush_at=1, **FAST)
    observer = client._worker.observer
    try:
        client.track("Before", distinct_id="user_42")
        assert client.flush(30)
        assert client.health().status is HealthStatus.OK
        server.faults(fail_for=3600, status=503)  # down until cleared
        seen = sum(observer.requests.values())
        client.track("During", distinct_id="user_42")
        assert observer.wait_for_answers(seen + 1, 30)
        health = client.health()
        assert health.status is HealthStatus.FAILING
        assert [issue.code for issue in health.issues] == ["engine_unreachable"]
        assert "HTTP 503" in health.reason
        server.faults(clear=True)
        assert client.flush(30)
        assert client.health().status is HealthStatus.OK
        assert client.stats()["delivered"] == 2
    finally:
        client.shutdown(timeout=5)
        server.stop()


# --- reading the exports back -----------------------------------------------------------------


def _otel_points(reader: Any) -> dict[str, Any]:
    """Instrument name -> {attribute values other than LABELS: value}; a histogram's value is
    (count, sum, bucket counts). Every point must carry the client's attributes."""
    found: dict[str, Any] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "sankofa_sdk"
            for metric in scope.metrics:
                values: dict[tuple[str, ...], Any] = {}
                for point in metric.data.data_points:
                    attributes = dict(point.attributes)
                    assert {k: attributes.pop(k) for k in LABELS} == LABELS
                    key = tuple(str(v) for _, v in sorted(attributes.items()))
                    if hasattr(point, "bucket_counts"):
                        values[key] = (point.count, point.sum, list(point.bucket_counts))
                    else:
                        values[key] = point.value
                found[metric.name] = values
    return found


def _prometheus_samples(registry: Any) -> dict[str, Any]:
    """Sample name -> {label values other than LABELS (le last): value}, from the text format."""
    text = prometheus.generate_latest(registry).decode()
    found: dict[str, Any] = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert {k: labels.pop(k) for k in LABELS} == LABELS
            le = labels.pop("le", None)
            key = tuple(v for _, v in sorted(labels.items())) + ((le,) if le is not None else ())
            found.setdefault(sample.name, {})[key] = sample.value
    return found
