"""The metrics a client exports, named once for both integrations, and how they are read.

:mod:`sankofa_sdk.integrations.opentelemetry` and :mod:`sankofa_sdk.integrations.prometheus`
export the same numbers under each system's naming rules (OpenTelemetry: dotted names and UCUM
units; Prometheus: ``snake_case`` with the unit and ``_total`` in the name). Counters and gauges
are read when the metrics are collected (``read``): ``stats()``, the observer's request counts
and the pipeline's state as they stand, so a call costs nothing more with metrics on. The two
histograms are the only numbers recorded as they happen, once per request or delivered batch.

Attributes stay few and bounded: the reason of a drop or failure (a fixed set), a request's
outcome (``2xx``, ``429``, ``4xx``, ``5xx``, ``network_error``), and whatever fixed attributes the
app gives a client (to tell two clients apart). Never a user, an event name or a host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, cast

from ._delivery.observe import PipelineState
from ._health import check_health
from ._stats import NOT_ACCEPTED

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["METRICS", "Metric", "Readings", "read"]


class Metric(NamedTuple):
    otel: str
    """The OpenTelemetry instrument's name."""
    prometheus: str
    """The Prometheus metric family's name (a counter's samples add ``_total``)."""
    kind: str
    """``counter``, ``histogram`` or ``gauge``."""
    unit: str
    """UCUM, as OpenTelemetry wants it."""
    attribute: Optional[str]
    """The one attribute it is split by (``reason``, ``outcome``), if any."""
    description: str


METRICS = (
    Metric(
        "sankofa.operations.accepted",
        "sankofa_operations_accepted",
        "counter",
        "{operation}",
        None,
        "Calls taken into the queue (or spool): stats()['accepted'].",
    ),
    Metric(
        "sankofa.operations.delivered",
        "sankofa_operations_delivered",
        "counter",
        "{operation}",
        None,
        "Operations the engine answered 2xx for: stats()['delivered'].",
    ),
    Metric(
        "sankofa.operations.failed",
        "sankofa_operations_failed",
        "counter",
        "{operation}",
        "reason",
        "Accepted, then not delivered and reported to on_error, by reason (retries_exhausted, "
        "rejected, shutdown, ...): they add up to stats()['failed'].",
    ),
    Metric(
        "sankofa.operations.dropped",
        "sankofa_operations_dropped",
        "counter",
        "{operation}",
        "reason",
        "Calls refused before they were accepted, by reason (invalid, queue_full, closed, "
        "before_send): stats()['dropped'] for those reasons.",
    ),
    Metric(
        "sankofa.operations.unknown_fate",
        "sankofa_operations_unknown_fate",
        "counter",
        "{operation}",
        None,
        "Sent in a request cut at shutdown before its answer: the engine may or may not have "
        "applied them (stats()['unknown_fate'], where the client counts it).",
    ),
    Metric(
        "sankofa.operations.skipped",
        "sankofa_operations_skipped",
        "counter",
        "{operation}",
        None,
        "Delivered operations the engine discarded (ids it treats as garbage): stats()['skipped'].",
    ),
    Metric(
        "sankofa.requests",
        "sankofa_requests",
        "counter",
        "{request}",
        "outcome",
        "Requests to the engine by outcome: 2xx, 429, 4xx, 5xx, network_error (no answer).",
    ),
    Metric(
        "sankofa.request.duration",
        "sankofa_request_duration_seconds",
        "histogram",
        "s",
        "outcome",
        "Time from the start of a request to its answer, by outcome.",
    ),
    Metric(
        "sankofa.delivery.delay",
        "sankofa_delivery_delay_seconds",
        "histogram",
        "s",
        None,
        "Per delivered batch: time from the call of its oldest operation to the engine's 2xx.",
    ),
    Metric(
        "sankofa.queue.operations",
        "sankofa_queue_operations",
        "gauge",
        "{operation}",
        None,
        "Accepted and not finished yet (queued, in flight, waiting to retry, on disk): "
        "stats()['queued'].",
    ),
    Metric(
        "sankofa.queue.size",
        "sankofa_queue_bytes",
        "gauge",
        "By",
        None,
        "Bytes the in-memory queue holds, as max_queue_bytes counts them.",
    ),
    Metric(
        "sankofa.queue.utilization",
        "sankofa_queue_utilization_ratio",
        "gauge",
        "1",
        None,
        "How full the in-memory queue is, 0 to 1 (the fuller of max_queue_size and "
        "max_queue_bytes); calls are dropped at 1.",
    ),
    Metric(
        "sankofa.spool.size",
        "sankofa_spool_bytes",
        "gauge",
        "By",
        None,
        "Bytes of the spool on disk (only with spool_dir).",
    ),
    Metric(
        "sankofa.pacer.allowance",
        "sankofa_pacer_allowance_requests_per_second",
        "gauge",
        "{request}/s",
        None,
        "Requests per second the pacer lets this process start now, within the key's budget "
        "(not with rate_limit=None).",
    ),
    Metric(
        "sankofa.health",
        "sankofa_health_status",
        "gauge",
        "1",
        None,
        "client.health() as a number: 0 ok, 1 degraded, 2 failing.",
    ),
)


class Readings(NamedTuple):
    """Everything but the histograms, read at one moment."""

    accepted: int
    delivered: int
    skipped: int
    unknown_fate: int
    failed: dict[str, int]
    dropped: dict[str, int]
    requests: dict[str, int]
    state: PipelineState
    health: int

    def value(self, metric: Metric) -> Optional[float]:
        """The value of a gauge or a counter without an attribute (None: not applicable)."""
        state = self.state
        return {
            "sankofa.operations.accepted": self.accepted,
            "sankofa.operations.delivered": self.delivered,
            "sankofa.operations.skipped": self.skipped,
            "sankofa.operations.unknown_fate": self.unknown_fate,
            "sankofa.queue.operations": state.queued,
            "sankofa.queue.size": state.queue_bytes,
            "sankofa.queue.utilization": state.queue_utilization,
            "sankofa.spool.size": state.spool_bytes,
            "sankofa.pacer.allowance": state.allowance,
            "sankofa.health": self.health,
        }[metric.otel]

    def split(self, metric: Metric) -> dict[str, int]:
        """The values of a counter with an attribute, by the attribute's value."""
        return {
            "sankofa.operations.failed": self.failed,
            "sankofa.operations.dropped": self.dropped,
            "sankofa.requests": self.requests,
        }[metric.otel]


def read(client: Client) -> Readings:
    """The client's counters and gauges now (any thread)."""
    stats = client.stats()
    worker = client._worker
    dropped = stats["dropped"]
    requests = dict(worker.observer.requests)
    state = worker.pipeline_state()
    health = check_health(worker, closed=client._closed, disabled=client._disabled, state=state)
    return Readings(
        accepted=stats["accepted"],
        delivered=stats["delivered"],
        skipped=stats["skipped"],
        # Read by name: a client that does not count it (an older one) reports 0.
        unknown_fate=int(cast("Mapping[str, Any]", stats).get("unknown_fate", 0)),
        failed={r: n for r, n in dropped.items() if r not in NOT_ACCEPTED},
        # Every refusal reason from the start (a fixed set), so a rate is there before the first.
        dropped={r: dropped.get(r, 0) for r in sorted(NOT_ACCEPTED)},
        requests=requests,
        state=state,
        health=health.level,
    )
