"""How the metrics integrations are wired: several clients, the libraries only when asked, what
the delay measures, a listener that fails. Scripted answers (``RecordingTransport``)."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from sankofa_sdk import Client
from sankofa_sdk.testing import RecordingTransport

from .conftest import need

otel_sdk = need("opentelemetry.sdk.metrics")
otel_export = need("opentelemetry.sdk.metrics.export")
prometheus = need("prometheus_client")

from sankofa_sdk.integrations import opentelemetry as sankofa_otel  # noqa: E402
from sankofa_sdk.integrations.prometheus import SankofaCollector, register  # noqa: E402

MakeClient = Callable[..., Client]


@pytest.fixture
def make() -> Iterator[MakeClient]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("transport", RecordingTransport())
        client = Client("sk_test_wiring_0123456789", flush_interval=0.01, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=1)


def deliver(client: Client, count: int, **call: Any) -> None:
    for n in range(count):
        client.track("Seq", {"n": n}, distinct_id="user_42", **call)
    assert client.flush(5)


def accepted_points(reader: Any) -> dict[tuple[tuple[str, Any], ...], int]:
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "sankofa.operations.accepted":
                    return {
                        tuple(sorted(p.attributes.items())): p.value
                        for p in metric.data.data_points
                    }
    return {}


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60
    )


def test_a_client_and_the_integrations_import_neither_library_unless_asked() -> None:
    done = run(
        """
        import sys
        import sankofa_sdk
        from sankofa_sdk.integrations import asgi, django, flask, wsgi
        client = sankofa_sdk.Client("sk_test_x", send=False)
        client.track("Signed In", distinct_id="user_42")
        client.health()
        client.shutdown()
        loaded = sorted(n for n in sys.modules if n.startswith(("opentelemetry", "prometheus")))
        assert not loaded, loaded
        """
    )
    assert done.returncode == 0, done.stderr


def test_without_its_library_an_integration_says_which_extra_to_install() -> None:
    done = run(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed
        sys.modules["prometheus_client"] = None
        for name, extra in (("opentelemetry", "opentelemetry"), ("prometheus", "prometheus")):
            try:
                __import__(f"sankofa_sdk.integrations.{name}")
            except ImportError as exc:
                assert f"sankofa-sdk[{extra}]" in str(exc), exc
            else:
                raise AssertionError(name)
        """
    )
    assert done.returncode == 0, done.stderr


def test_clients_on_one_provider_are_told_apart_by_their_attributes(make: MakeClient) -> None:
    reader = otel_export.InMemoryMetricReader()
    provider = otel_sdk.MeterProvider(metric_readers=[reader])
    web, jobs, more_jobs = make(), make(), make()
    sankofa_otel.instrument(web, meter_provider=provider, attributes={"app": "web"})
    sankofa_otel.instrument(jobs, meter_provider=provider, attributes={"app": "jobs"})
    sankofa_otel.instrument(more_jobs, meter_provider=provider, attributes={"app": "jobs"})
    deliver(web, 3)
    deliver(jobs, 2)
    deliver(more_jobs, 4)
    assert accepted_points(reader) == {(("app", "web"),): 3, (("app", "jobs"),): 6}
    sankofa_otel.uninstrument(more_jobs, meter_provider=provider)
    assert accepted_points(reader) == {(("app", "web"),): 3, (("app", "jobs"),): 2}
    sankofa_otel.instrument(web, meter_provider=provider, attributes={"app": "front"})
    assert accepted_points(reader)[(("app", "front"),)] == 3
    provider.shutdown()


def test_a_client_garbage_collected_stops_reporting(make: MakeClient) -> None:
    reader = otel_export.InMemoryMetricReader()
    provider = otel_sdk.MeterProvider(metric_readers=[reader])
    client = Client("sk_test_wiring_0123456789", transport=RecordingTransport())
    sankofa_otel.instrument(client, meter_provider=provider)
    deliver(client, 1)
    assert accepted_points(reader) == {(): 1}
    client.shutdown(timeout=1)
    del client
    gc.collect()
    assert accepted_points(reader) == {}
    provider.shutdown()


def test_bad_attributes_are_refused(make: MakeClient) -> None:
    client = make()
    provider = otel_sdk.MeterProvider()
    with pytest.raises(TypeError, match="attributes"):
        sankofa_otel.instrument(client, meter_provider=provider, attributes={"app": object()})
    with pytest.raises(ValueError, match=r"sankofa\.outcome"):
        sankofa_otel.instrument(client, meter_provider=provider, attributes={"sankofa.outcome": 1})
    with pytest.raises(TypeError, match=r"sankofa_sdk\.Client"):
        sankofa_otel.instrument("not a client", meter_provider=provider)  # type: ignore[arg-type]
    provider.shutdown()


def test_one_collector_reports_several_clients_and_a_registry_refuses_a_duplicate(
    make: MakeClient,
) -> None:
    web, jobs = make(), make()
    registry = prometheus.CollectorRegistry()
    collector = register(web, registry=registry, labels={"client": "web"})
    collector.add(jobs, {"client": "jobs"})
    deliver(web, 3)
    deliver(jobs, 2)
    assert registry.get_sample_value("sankofa_operations_accepted_total", {"client": "web"}) == 3
    assert registry.get_sample_value("sankofa_operations_accepted_total", {"client": "jobs"}) == 2
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(SankofaCollector(web, labels={"client": "web"}))
    with pytest.raises(ValueError, match="same label names"):
        collector.add(make(), {"name": "other"})
    with pytest.raises(ValueError, match="already reported"):
        collector.add(make(), {"client": "web"})
    with pytest.raises(ValueError, match="set by the metrics"):
        SankofaCollector(web, labels={"reason": "x"})


def test_the_delay_is_from_the_call_not_from_a_backfills_timestamp(make: MakeClient) -> None:
    client = make()
    registry = prometheus.CollectorRegistry()
    registry.register(SankofaCollector(client))
    three_days_ago = time.time() - 3 * 86_400
    deliver(client, 5, timestamp=three_days_ago)
    deliver(client, 5, timestamp=time.time() + 3_600)  # an hour ahead of our clock
    count = registry.get_sample_value("sankofa_delivery_delay_seconds_count")
    total = registry.get_sample_value("sankofa_delivery_delay_seconds_sum")
    assert count == 2 and total is not None and 0 <= total < 60


def test_a_listener_that_raises_is_removed_and_delivery_goes_on(
    make: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make()
    calls: list[object] = []

    def broken(exchange: object) -> None:
        calls.append(exchange)
        raise RuntimeError("exporter bug")

    client._worker.observer.listen(broken)
    with caplog.at_level(logging.ERROR, logger="sankofa_sdk"):
        deliver(client, 1)
        deliver(client, 1)
    assert len(calls) == 1 and client.stats()["delivered"] == 2
    assert "metrics listener raised" in caplog.text
