"""One adapter per SDK: how to build its client against the sink and make the three calls.

``config="defaults"`` is each SDK's production defaults (only the host changes, plus the queue
size where a figure needs room for all of its operations); ``config="equal"`` gives all three
the same batch settings (:data:`EQUAL`).

What each call is in each SDK:

| call       | sankofa_sdk                         | posthog-python                                   | analytics-python (Segment)  |
|------------|-------------------------------------|--------------------------------------------------|-----------------------------|
| track      | ``track(name, props, distinct_id=)``| ``capture(name, distinct_id=, properties=)``     | ``track(user_id, name, props)`` |
| identify   | ``identify(user, traits)``          | ``capture("$identify", properties={"$set": t})`` | ``identify(user_id, traits)`` |
| people_set | ``people_set(traits, distinct_id=)``| ``set(distinct_id=, properties=)``               | ``identify(user_id, traits)`` |
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ._workload import EVENT_NAME

SDKS = ("sankofa", "sankofa-spool", "posthog", "segment")
"""``sankofa-spool`` is sankofa_sdk with ``spool_dir``: every call written to disk first."""
EXTRA_SDKS = ("sankofa-metrics",)
"""Measured only when named in ``--sdks``: ``sankofa-metrics`` is sankofa_sdk with both metrics
integrations on and read every second (an OpenTelemetry reader and a Prometheus scrape)."""
BASE_SDKS = ("sankofa-base", "sankofa-spool-base")
"""The same two, from another checkout (``--base TREE``): a change's A/B in one run."""
BASE_ENV = "SANKOFA_BENCH_BASE"
CONFIGS = ("defaults", "equal")
EQUAL = {"flush_at": 100, "flush_interval_s": 0.5, "max_queue_size": 10_000, "gzip": False}
"""The equal batch settings: the same batch size, interval, queue bound and compression."""

Call = Callable[[str, dict[str, Any]], Any]
QUEUE_BYTES_PER_OP = 4096
"""Room per operation when a figure sizes sankofa_sdk's queue: well above the workload's ~1 KB."""


class Adapter:
    name = ""
    client: Any

    def call(self, kind: str) -> Call:
        """A function ``(distinct_id, properties)`` making one ``kind`` call."""
        raise NotImplementedError

    def queued(self) -> int:
        raise NotImplementedError

    def dropped(self) -> int:
        """Operations the SDK itself refused (queue full, closed) since it was created."""
        raise NotImplementedError

    def failed(self) -> int:
        """Operations the SDK accepted, then gave up on and reported (``on_error``, stats)."""
        raise NotImplementedError

    def held(self) -> int:
        """Operations accepted and not finished: queued, in a batch being sent or retried."""
        return self.queued()

    def drain(self) -> None:
        """Block until the SDK says everything queued was sent or given up (its own flush).

        Unbounded in some SDKs: the delivery scenarios call it on a thread they stop waiting
        for at their deadline.
        """
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    @staticmethod
    def version() -> str:
        raise NotImplementedError


def _options(
    config: str, queue_size: Optional[int], gzip: Optional[bool], names: dict[str, str]
) -> dict[str, Any]:
    """Keyword arguments for one SDK's client; ``names`` maps our option names to its own."""
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {CONFIGS}")
    opts: dict[str, Any] = dict(EQUAL) if config == "equal" else {}
    if queue_size is not None:
        opts["max_queue_size"] = queue_size
    if gzip is not None:
        opts["gzip"] = gzip
    return {names.get(key, key): value for key, value in opts.items()}


class Sankofa(Adapter):
    name = "sankofa"

    def __init__(
        self,
        host: str,
        config: str,
        queue_size: Optional[int] = None,
        gzip: Optional[bool] = None,
        options: Optional[dict[str, Any]] = None,
    ) -> None:
        import sankofa_sdk

        kwargs = _options(config, queue_size, gzip, {"flush_interval_s": "flush_interval"})
        if queue_size is not None:
            # The queue is also bounded by bytes (128 MiB by default): 200,000 of the workload's
            # events would not fit, so a figure that sizes the queue for every call sizes both.
            kwargs["max_queue_bytes"] = max(queue_size * QUEUE_BYTES_PER_OP, 128 * 1024 * 1024)
        kwargs.update(options or {})  # a scenario's own settings (the delivery scenarios)
        self.client = sankofa_sdk.Client("sk_test_benchmark0001", host=host, **kwargs)

    def call(self, kind: str) -> Call:
        client = self.client
        if kind == "track":
            track = client.track
            return lambda user, props: track(EVENT_NAME, props, distinct_id=user)
        if kind == "identify":
            return client.identify  # type: ignore[no-any-return]
        if kind == "people_set":
            people_set = client.people_set
            return lambda user, traits: people_set(traits, distinct_id=user)
        raise ValueError(kind)

    def queued(self) -> int:
        return int(self.client.stats()["queued"])

    def dropped(self) -> int:
        dropped = self.client.stats()["dropped"]
        return int(sum(dropped.get(r, 0) for r in ("queue_full", "closed", "invalid")))

    def failed(self) -> int:
        return int(self.client.stats()["failed"])

    def drain(self) -> None:
        self.client.flush(None)

    def shutdown(self) -> None:
        self.client.shutdown(timeout=30)

    @staticmethod
    def version() -> str:
        import sankofa_sdk

        return str(sankofa_sdk.__version__)


class Posthog(Adapter):
    name = "posthog"

    def __init__(
        self,
        host: str,
        config: str,
        queue_size: Optional[int] = None,
        gzip: Optional[bool] = None,
    ) -> None:
        from posthog import Posthog as Client

        kwargs = _options(config, queue_size, gzip, {"flush_interval_s": "flush_interval"})
        self._refused = 0
        self._failed = 0
        # on_error only counts what the SDK gives up on; it changes nothing in its delivery.
        self.client = Client("phc_benchmark0001", host=host, on_error=self._on_error, **kwargs)

    def _on_error(self, error: Exception, batch: list[Any]) -> None:
        self._failed += len(batch)

    def call(self, kind: str) -> Call:
        client = self.client
        if kind == "track":
            capture = client.capture

            def track(user: str, props: dict[str, Any]) -> Any:
                if capture(EVENT_NAME, distinct_id=user, properties=props) is None:
                    self._refused += 1

            return track
        if kind == "identify":
            capture = client.capture

            def identify(user: str, traits: dict[str, Any]) -> Any:
                if capture("$identify", distinct_id=user, properties={"$set": traits}) is None:
                    self._refused += 1

            return identify
        if kind == "people_set":
            set_ = client.set

            def people_set(user: str, traits: dict[str, Any]) -> Any:
                if set_(distinct_id=user, properties=traits) is None:
                    self._refused += 1

            return people_set
        raise ValueError(kind)

    def queued(self) -> int:
        lane = getattr(self.client, "_analytics_lane", None)  # posthog 7; 6 has one queue
        return int((lane.queue if lane is not None else self.client.queue).qsize())

    def dropped(self) -> int:
        return self._refused

    def failed(self) -> int:
        return self._failed

    def held(self) -> int:
        # A queue.Queue counts an item until task_done(), which posthog calls once the batch
        # holding it was sent or given up: this includes the batch its sender thread holds.
        lane = getattr(self.client, "_analytics_lane", None)
        return int((lane.queue if lane is not None else self.client.queue).unfinished_tasks)

    def drain(self) -> None:
        try:
            self.client.flush(timeout_seconds=None)  # posthog 7: its default gives up after 10 s
        except TypeError:
            self.client.flush()  # posthog 6: no timeout

    def shutdown(self) -> None:
        self.client.shutdown()

    @staticmethod
    def version() -> str:
        from posthog.version import VERSION

        return str(VERSION)


class Segment(Adapter):
    name = "segment"

    def __init__(
        self,
        host: str,
        config: str,
        queue_size: Optional[int] = None,
        gzip: Optional[bool] = None,
    ) -> None:
        from segment.analytics import Client

        names = {"flush_at": "upload_size", "flush_interval_s": "upload_interval"}
        kwargs = _options(config, queue_size, gzip, names)
        self._refused = 0
        self._failed = 0
        # on_error only counts what the SDK gives up on; it changes nothing in its delivery.
        self.client = Client("wk_benchmark0001", host=host, on_error=self._on_error, **kwargs)

    def _on_error(self, error: Exception, batch: list[Any]) -> None:
        self._failed += len(batch)

    def call(self, kind: str) -> Call:
        client = self.client
        if kind == "track":
            track_ = client.track

            def track(user: str, props: dict[str, Any]) -> Any:
                if not track_(user, EVENT_NAME, props)[0]:
                    self._refused += 1

            return track
        if kind in ("identify", "people_set"):  # Segment has one call for both
            identify_ = client.identify

            def identify(user: str, traits: dict[str, Any]) -> Any:
                if not identify_(user, traits)[0]:
                    self._refused += 1

            return identify
        raise ValueError(kind)

    def queued(self) -> int:
        return int(self.client.queue.qsize())

    def dropped(self) -> int:
        return self._refused

    def failed(self) -> int:
        return self._failed

    def held(self) -> int:
        # As for posthog: counted until task_done(), so the batch being sent is included.
        return int(self.client.queue.unfinished_tasks)

    def drain(self) -> None:
        self.client.flush()

    def shutdown(self) -> None:
        self.client.shutdown()

    @staticmethod
    def version() -> str:
        from segment.analytics.version import VERSION

        return str(VERSION)


class SankofaSpool(Sankofa):
    """sankofa_sdk with a spool in a fresh temporary directory (removed at shutdown)."""

    name = "sankofa-spool"

    def __init__(
        self,
        host: str,
        config: str,
        queue_size: Optional[int] = None,
        gzip: Optional[bool] = None,
        options: Optional[dict[str, Any]] = None,
    ) -> None:
        import tempfile

        self._spool = tempfile.mkdtemp(prefix="sankofa-bench-spool-")
        spool = {"spool_dir": self._spool, "max_spool_bytes": 8 * 1024**3}
        super().__init__(host, config, queue_size, gzip, {**spool, **(options or {})})

    def shutdown(self) -> None:
        import shutil

        super().shutdown()
        shutil.rmtree(self._spool, ignore_errors=True)


class SankofaMetrics(Sankofa):
    """sankofa_sdk with both metrics integrations on, read more often than an app would: an
    OpenTelemetry SDK collecting every second (to an exporter that discards) and a Prometheus
    scrape of the collector every second."""

    name = "sankofa-metrics"
    READ_EVERY_S = 1.0

    def __init__(
        self,
        host: str,
        config: str,
        queue_size: Optional[int] = None,
        gzip: Optional[bool] = None,
        options: Optional[dict[str, Any]] = None,
    ) -> None:
        import threading

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            MetricExporter,
            MetricExportResult,
            PeriodicExportingMetricReader,
        )
        from prometheus_client import CollectorRegistry, generate_latest

        from sankofa_sdk.integrations.opentelemetry import instrument
        from sankofa_sdk.integrations.prometheus import SankofaCollector

        super().__init__(host, config, queue_size, gzip, options)

        class Discard(MetricExporter):  # type: ignore[misc]
            def export(self, metrics_data: Any, timeout_millis: float = 0, **kwargs: Any) -> Any:
                return MetricExportResult.SUCCESS

            def force_flush(self, timeout_millis: float = 0) -> bool:
                return True

            def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
                pass

        every_ms = self.READ_EVERY_S * 1000
        reader = PeriodicExportingMetricReader(Discard(), export_interval_millis=every_ms)
        self._provider = MeterProvider(metric_readers=[reader])
        instrument(self.client, meter_provider=self._provider)
        registry = CollectorRegistry()
        registry.register(SankofaCollector(self.client))
        self._stop = threading.Event()
        self.scrapes = 0

        def scrape() -> None:
            while not self._stop.wait(self.READ_EVERY_S):
                generate_latest(registry)
                self.scrapes += 1

        self._scraper = threading.Thread(target=scrape, name="bench-scrape", daemon=True)
        self._scraper.start()

    def shutdown(self) -> None:
        super().shutdown()
        self._stop.set()
        self._scraper.join(5)
        self._provider.shutdown()


ADAPTERS: dict[str, type[Adapter]] = {
    "sankofa": Sankofa,
    "sankofa-spool": SankofaSpool,
    "sankofa-base": Sankofa,
    "sankofa-spool-base": SankofaSpool,
    "sankofa-metrics": SankofaMetrics,
    "posthog": Posthog,
    "segment": Segment,
}
