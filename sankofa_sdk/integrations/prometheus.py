"""Prometheus: a collector that reads a client's delivery pipeline when it is scraped.

>>> from prometheus_client import REGISTRY
>>> from sankofa_sdk.integrations.prometheus import SankofaCollector
>>> REGISTRY.register(SankofaCollector(client))

Needs ``prometheus_client`` (``pip install 'sankofa-sdk[prometheus]'``). Nothing is recorded per
call: a scrape reads ``stats()``, the requests counted by outcome and the queue, spool and pacer
as they stand; the two histograms are counted on the delivery thread, once per request or
delivered batch, from the moment the collector is made. The metric families are those of
README "Metrics and health" (the OpenTelemetry instruments' Prometheus names).

One collector may report several clients, told apart by their ``labels`` (the same label names
for each): ``SankofaCollector(web, labels={"client": "web"}).add(jobs, {"client": "jobs"})``.

Several processes (gunicorn): a collector reports the process it lives in. prometheus_client's
multiprocess mode aggregates only its own metric types from files, so it does not see a custom
collector; README "Metrics and health" says what to do instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Optional

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "sankofa_sdk.integrations.prometheus needs prometheus_client: "
        "pip install 'sankofa-sdk[prometheus]'"
    ) from exc

from .._client import Client
from .._default import get_client
from .._delivery.observe import Histogram, HistogramSnapshot
from .._errors import ConfigurationError
from .._metrics import METRICS, Readings, read

__all__ = ["SankofaCollector", "register"]

Labels = dict[str, str]


class _Watched:
    def __init__(self, client: Client, labels: Labels) -> None:
        self.client = client
        self.labels = labels
        self.durations, self.delays = client._worker.observer.histograms()


class SankofaCollector(Collector):
    """Reports one or more clients' metrics at each scrape; register it on any registry."""

    def __init__(
        self, client: Optional[Client] = None, *, labels: Optional[Mapping[str, str]] = None
    ) -> None:
        """``client``: by default the module-level one (``sankofa_sdk.init()``), resolved now.
        ``labels``: fixed labels on every sample of this client."""
        self._lock = threading.Lock()
        self._watched: list[_Watched] = []
        self._label_names: Optional[tuple[str, ...]] = None
        if client is None:
            client = get_client()
            if client is None:
                raise ConfigurationError(
                    "no client for the collector: pass one, or call sankofa_sdk.init() first"
                )
        self.add(client, labels)

    def add(self, client: Client, labels: Optional[Mapping[str, str]] = None) -> SankofaCollector:
        """Also report ``client``, with ``labels`` (the same names as the first client's)."""
        if not isinstance(client, Client):
            raise TypeError(f"client must be a sankofa_sdk.Client, not {type(client).__name__}")
        fixed = dict(labels or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in fixed.items()):
            raise TypeError("labels must be a mapping of str to str")
        if {"reason", "outcome", "le"} & set(fixed):
            raise ValueError("the labels reason, outcome and le are set by the metrics themselves")
        names = tuple(sorted(fixed))
        with self._lock:
            if self._label_names is not None and names != self._label_names:
                raise ValueError(
                    f"every client of one collector needs the same label names: "
                    f"{list(self._label_names)}, not {list(names)}"
                )
            if any(w.labels == fixed for w in self._watched):
                raise ValueError(f"a client with the labels {fixed} is already reported")
            self._label_names = names
            self._watched.append(_Watched(client, fixed))
        return self

    def describe(self) -> Iterator[Metric]:
        """The families (no samples), so a registry refuses a second collector of the same
        names instead of exposing them twice."""
        names = list(self._label_names or ())
        yield from _families(names)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            watched = list(self._watched)
        names = list(self._label_names or ())
        families = {family.name: family for family in _families(names)}
        for one in watched:
            values = [one.labels[name] for name in names]
            _add_readings(families, read(one.client), values)
            durations = families["sankofa_request_duration_seconds"]
            for outcome, histogram in sorted(dict(one.durations).items()):
                _add_histogram(durations, [*values, outcome], histogram)
            _add_histogram(families["sankofa_delivery_delay_seconds"], values, one.delays)
        yield from families.values()


def register(
    client: Optional[Client] = None,
    *,
    registry: Optional[CollectorRegistry] = None,
    labels: Optional[Mapping[str, str]] = None,
) -> SankofaCollector:
    """Make a :class:`SankofaCollector` and register it (on the default ``REGISTRY``)."""
    collector = SankofaCollector(client, labels=labels)
    (registry if registry is not None else REGISTRY).register(collector)
    return collector


def _families(label_names: list[str]) -> list[Metric]:
    families: list[Metric] = []
    for metric in METRICS:
        labels = [*label_names, *([metric.attribute] if metric.attribute else [])]
        if metric.kind == "counter":
            families.append(
                CounterMetricFamily(metric.prometheus, metric.description, labels=labels)
            )
        elif metric.kind == "gauge":
            families.append(GaugeMetricFamily(metric.prometheus, metric.description, labels=labels))
        else:
            families.append(
                HistogramMetricFamily(metric.prometheus, metric.description, labels=labels)
            )
    return families


def _add_readings(families: dict[str, Metric], readings: Readings, values: list[str]) -> None:
    for metric in METRICS:
        family = families[metric.prometheus]
        if metric.kind == "histogram":
            continue
        if metric.attribute is not None:
            for label, count in sorted(readings.split(metric).items()):
                family.add_metric([*values, label], count)  # type: ignore[attr-defined]
            continue
        value = readings.value(metric)
        if value is not None:
            family.add_metric(values, value)  # type: ignore[attr-defined]


def _add_histogram(family: Metric, values: list[str], histogram: Histogram) -> None:
    snapshot: HistogramSnapshot = histogram.snapshot()
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(snapshot.bounds, snapshot.counts, strict=False):
        cumulative += count
        buckets.append((_float_text(bound), cumulative))
    buckets.append(("+Inf", snapshot.observations))
    family.add_metric(values, buckets, snapshot.total)  # type: ignore[attr-defined]


def _float_text(value: float) -> str:
    return repr(float(value))
