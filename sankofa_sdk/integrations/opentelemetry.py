"""OpenTelemetry metrics: a client's delivery pipeline on the app's ``MeterProvider``.

>>> from sankofa_sdk.integrations.opentelemetry import instrument
>>> instrument(client)  # the global MeterProvider; or instrument(client, meter_provider=provider)

Needs ``opentelemetry-api`` only (``pip install 'sankofa-sdk[opentelemetry]'``): the app brings
the SDK, its readers and exporters. The instruments (README "Metrics and health" lists them, with
units and attributes) are made once per ``MeterProvider`` under the meter ``sankofa_sdk``, and
every client instrumented on it reports through them. Counters and gauges are observable: they
read ``stats()`` and the pipeline when the app's reader collects, so calls cost nothing more.
The two histograms are recorded on the delivery thread, once per request or delivered batch.

Two clients on one provider are told apart by ``attributes`` (e.g. ``{"sankofa.client":
"billing"}``); clients with the same attributes add up. A client stops reporting when it is
garbage collected, or on :func:`uninstrument`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "sankofa_sdk.integrations.opentelemetry needs opentelemetry-api: "
        "pip install 'sankofa-sdk[opentelemetry]'"
    ) from exc

from .._client import Client
from .._default import get_client
from .._delivery.observe import DELAY_BUCKETS, DURATION_BUCKETS, Exchange
from .._errors import ConfigurationError
from .._metrics import METRICS, Metric, Readings, read
from .._version import __version__

__all__ = ["METER_NAME", "instrument", "uninstrument"]

METER_NAME = "sankofa_sdk"
"""The instrumentation scope of every instrument (a view can select them by it)."""
ATTRIBUTE_NAMES = {"reason": "sankofa.reason", "outcome": "sankofa.outcome"}
"""The attribute each split metric uses, as OpenTelemetry names it."""

Attributes = dict[str, Any]


def instrument(
    client: Optional[Client] = None,
    *,
    meter_provider: Optional[MeterProvider] = None,
    attributes: Optional[Mapping[str, Any]] = None,
) -> None:
    """Report ``client``'s metrics through ``meter_provider``.

    Args:
        client: the client; by default the module-level one (``sankofa_sdk.init()``).
        meter_provider: by default the global one (``opentelemetry.metrics``), which may be
            set after this call: until then the API's proxy forwards to it once it is.
        attributes: fixed attributes on every value of this client, to tell clients apart.

    Calling it again for the same client and provider replaces the attributes.
    """
    if client is None:
        client = get_client()
        if client is None:
            raise ConfigurationError(
                "no client to instrument: pass one, or call sankofa_sdk.init() first"
            )
    if not isinstance(client, Client):
        raise TypeError(f"client must be a sankofa_sdk.Client, not {type(client).__name__}")
    fixed = _checked_attributes(attributes)
    provider = meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
    _instruments_for(provider).add(client, fixed)


def uninstrument(client: Client, *, meter_provider: Optional[MeterProvider] = None) -> None:
    """Stop reporting ``client`` through ``meter_provider`` (the global one by default)."""
    provider = meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
    with _lock:
        instruments = _by_provider.get(provider)
    if instruments is not None:
        instruments.remove(client)


def _checked_attributes(attributes: Optional[Mapping[str, Any]]) -> Attributes:
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise TypeError("attributes must be a mapping of names to str, bool, int or float")
    fixed: Attributes = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not isinstance(value, (str, bool, int, float)):
            raise TypeError("attributes must be a mapping of names to str, bool, int or float")
        if key in ATTRIBUTE_NAMES.values():
            raise ValueError(f"attribute {key!r} is set by the metrics themselves")
        fixed[key] = value
    return fixed


class _Reported:
    """One instrumented client: its attributes, and the listener recording its histograms."""

    def __init__(self, attributes: Attributes, listener: Callable[[Exchange], None]) -> None:
        self.attributes = attributes
        self.listener = listener


class _Instruments:
    """The instruments on one ``MeterProvider``, shared by every client reported through it."""

    def __init__(self, meter: Meter) -> None:
        self._clients: weakref.WeakKeyDictionary[Client, _Reported] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        by_name = {metric.otel: metric for metric in METRICS}
        for metric in METRICS:
            if metric.kind == "counter":
                meter.create_observable_counter(
                    metric.otel, [self._callback(metric)], metric.unit, metric.description
                )
            elif metric.kind == "gauge":
                meter.create_observable_gauge(
                    metric.otel, [self._callback(metric)], metric.unit, metric.description
                )
        duration = by_name["sankofa.request.duration"]
        self._duration = meter.create_histogram(
            duration.otel,
            duration.unit,
            duration.description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        delay = by_name["sankofa.delivery.delay"]
        self._delay = meter.create_histogram(
            delay.otel,
            delay.unit,
            delay.description,
            explicit_bucket_boundaries_advisory=DELAY_BUCKETS,
        )

    def add(self, client: Client, attributes: Attributes) -> None:
        with self._lock:
            known = self._clients.get(client)
            if known is not None:
                known.attributes = attributes
                return
            reported = _Reported(attributes, self._listener(attributes))
            self._clients[client] = reported
        client._worker.observer.listen(reported.listener)

    def remove(self, client: Client) -> None:
        with self._lock:
            reported = self._clients.pop(client, None)
        if reported is not None:
            client._worker.observer.unlisten(reported.listener)

    def _listener(self, attributes: Attributes) -> Callable[[Exchange], None]:
        """Records one client's histograms (on its delivery thread); holds no client."""
        duration, delay = self._duration, self._delay
        by_outcome = {
            outcome: {**attributes, "sankofa.outcome": outcome}
            for outcome in ("2xx", "429", "4xx", "5xx", "network_error", "3xx")
        }

        def listener(exchange: Exchange) -> None:
            duration.record(exchange.duration, by_outcome[exchange.outcome])
            if exchange.delay is not None:
                delay.record(exchange.delay, attributes)

        return listener

    def _callback(self, metric: Metric) -> Callable[[CallbackOptions], Iterable[Observation]]:
        attribute = ATTRIBUTE_NAMES.get(metric.attribute or "")

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            # Clients with the same attributes add up (one value per attribute set).
            totals: dict[tuple[tuple[str, Any], ...], float] = {}
            for readings, attributes in self._readings():
                if attribute is None:
                    value = readings.value(metric)
                    if value is not None:
                        key = tuple(sorted(attributes.items()))
                        totals[key] = totals.get(key, 0) + value
                    continue
                for label, count in readings.split(metric).items():
                    key = tuple(sorted({**attributes, attribute: label}.items()))
                    totals[key] = totals.get(key, 0) + count
            return [Observation(value, dict(key)) for key, value in totals.items()]

        return callback

    def _readings(self) -> list[tuple[Readings, Attributes]]:
        with self._lock:
            clients = list(self._clients.items())
        return [(read(client), reported.attributes) for client, reported in clients]


_lock = threading.Lock()
_by_provider: weakref.WeakKeyDictionary[MeterProvider, _Instruments] = weakref.WeakKeyDictionary()


def _instruments_for(provider: MeterProvider) -> _Instruments:
    with _lock:
        instruments = _by_provider.get(provider)
        if instruments is None:
            meter = provider.get_meter(METER_NAME, __version__)
            instruments = _by_provider[provider] = _Instruments(meter)
        return instruments
