"""What the delivery pipeline shows the outside: ``health()``, the metrics integrations.

Two kinds of numbers, both cheap where it matters:

- Per answer (never per call), the worker tells the ``DeliveryObserver``: it counts requests by
  outcome and remembers since when the engine is unreachable, refuses or rate-limits, which is
  all ``health()`` needs. Only once a metrics integration asked for them does it also time each
  request and measure each delivered batch's end-to-end delay (from the call of its oldest
  operation to the engine's 2xx, with ``Encoded.called_at``), for listeners and histograms.
- At the moment they are read, from any thread: ``PipelineState``, the queue, the spool and the
  pacer as they stand (``Worker.pipeline_state``). Nothing is kept up to date for them.

Values read from another thread may be a moment apart from each other; a gauge or a health
check can live with that, and no lock is taken on the delivery thread for them.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

from .._answers import Answer, Verdict
from .._log import logger
from .._options import Options
from .._pacer import Pacer
from .._queue import Backlog
from .sources import Source
from .spool_source import SpoolSource

if TYPE_CHECKING:
    from .batch import Batch

OUTCOMES = ("2xx", "429", "4xx", "5xx", "network_error")
"""What a request's answer was, as the metrics count it (``3xx`` too, should one come)."""

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the request-duration histogram: a loopback answer to a timeout."""
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
"""Upper bounds (seconds) of the end-to-end delay histogram: ``flush_interval`` to an outage
ridden out on the spool."""


def outcome_of(status: Optional[int]) -> str:
    if status is None:
        return "network_error"
    if 200 <= status < 300:
        return "2xx"
    if status == 429:
        return "429"
    if 400 <= status < 500:
        return "4xx"
    if status >= 500:
        return "5xx"
    return "3xx"


class Exchange(NamedTuple):
    """One request and its answer, as the listeners of the observer see it."""

    outcome: str
    status: Optional[int]
    duration: float
    """Seconds from the start of the request to its answer (or its failure)."""
    operations: int
    delay: Optional[float]
    """For a 2xx: seconds from the call of the batch's oldest operation to now; None when no
    call time is known (sync mode, a batch a dead process left)."""


Listener = Callable[[Exchange], None]


class Histogram:
    """Counts per bucket, written by one thread (the delivery thread), read by any."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def clear(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def record(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def snapshot(self) -> HistogramSnapshot:
        counts = tuple(self.counts)  # one copy: the count is their sum, so always agrees
        return HistogramSnapshot(self.bounds, counts, self.total, sum(counts))


class HistogramSnapshot(NamedTuple):
    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    """Per bucket: ``counts[i]`` values were at most ``bounds[i]`` (and above the previous
    bound); the last is above every bound."""
    total: float
    observations: int


class EngineState(NamedTuple):
    """What the answers lately said about the engine (wall-clock times), for ``health()``."""

    unreachable_since: Optional[float]
    """First of the failed requests in a row (no answer, 5xx, 408, 425), if the last failed."""
    unreachable_detail: str
    refused_since: Optional[float]
    """First of the refusals in a row (4xx other than 429), if the last was one."""
    refused_status: Optional[int]
    refused_verdict: Optional[Verdict]
    rate_limited_since: Optional[float]
    """First of the 429s since the last 2xx."""
    delivered_at: Optional[float]
    """The last 2xx."""


class DeliveryObserver:
    """Told by the worker about every answer (``answered``); read by ``health()`` and metrics."""

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()
        self._timing = False
        self._histograms_lock = threading.Lock()
        self._durations: dict[str, Histogram] = {}
        self._delays: Optional[Histogram] = None
        self._answered: Optional[threading.Condition] = None
        self.reset()

    def reset(self) -> None:
        """From zero (a new client, or a forked child: the parent's requests are the parent's).
        Listeners stay: the child's metrics go where the parent's went."""
        self.requests = dict.fromkeys(OUTCOMES, 0)
        self.engine = EngineState(None, "", None, None, None, None, None)
        # In place: the metrics integrations hold these objects.
        for histogram in list(self._durations.values()):
            histogram.clear()
        if self._delays is not None:
            self._delays.clear()

    # --- wiring (any thread, rarely) --------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        """Call ``listener(exchange)`` on the delivery thread after every answer. It must be
        quick and must not raise (what it raises is logged, and it is not called again)."""
        self._listeners = (*self._listeners, listener)
        self._timing = True

    def unlisten(self, listener: Listener) -> None:
        self._listeners = tuple(f for f in self._listeners if f is not listener)
        self._timing = bool(self._listeners) or self._delays is not None

    def histograms(self) -> tuple[dict[str, Histogram], Histogram]:
        """Request durations by outcome and end-to-end delays, kept from this call on."""
        with self._histograms_lock:
            if self._delays is None:
                self._delays = Histogram(DELAY_BUCKETS)
                self._timing = True
            return self._durations, self._delays

    def wait_for_answers(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` answers in all were handled (tests wait with it, not sleep)."""
        with self._histograms_lock:
            if self._answered is None:
                self._answered = threading.Condition()
            answered = self._answered
        with answered:
            return answered.wait_for(lambda: sum(self.requests.values()) >= count, timeout)

    # --- the delivery thread ----------------------------------------------------------------

    def answered(self, batch: Batch, answer: Answer, verdict: Verdict, duration: float) -> None:
        status = answer.status
        outcome = outcome_of(status)
        requests = self.requests
        requests[outcome] = requests.get(outcome, 0) + 1
        now = time.time()
        self._learn(verdict, answer, now)
        waiting = self._answered
        if waiting is not None:
            with waiting:
                waiting.notify_all()
        if not self._timing:
            return
        delay = None
        if verdict is Verdict.DELIVERED:
            called = [run.called_at for run in batch.items if run.called_at]
            if called:
                delay = max(0.0, now - min(called))
        delays = self._delays
        if delays is not None:
            durations = self._durations
            histogram = durations.get(outcome)
            if histogram is None:
                histogram = durations[outcome] = Histogram(DURATION_BUCKETS)
            histogram.record(duration)
            if delay is not None:
                delays.record(delay)
        if self._listeners:
            exchange = Exchange(outcome, status, duration, batch.count, delay)
            for listener in self._listeners:
                try:
                    listener(exchange)
                except Exception:
                    logger.exception("a metrics listener raised; it is removed")
                    self.unlisten(listener)

    def _learn(self, verdict: Verdict, answer: Answer, now: float) -> None:
        engine = self.engine
        if verdict is Verdict.RETRY:
            if engine.unreachable_since is None:
                said = f"HTTP {answer.status}" if answer.status is not None else answer.detail
                engine = engine._replace(unreachable_since=now, unreachable_detail=said)
            self.engine = engine._replace(refused_since=None, refused_status=None)
            return
        engine = engine._replace(unreachable_since=None, unreachable_detail="")
        if verdict is Verdict.DELIVERED:
            engine = engine._replace(
                refused_since=None, refused_status=None, rate_limited_since=None, delivered_at=now
            )
        elif verdict is Verdict.RATE_LIMITED:
            engine = engine._replace(refused_since=None, refused_status=None)
            if engine.rate_limited_since is None:
                engine = engine._replace(rate_limited_since=now)
        else:
            if engine.refused_since is None or engine.refused_status != answer.status:
                engine = engine._replace(refused_since=now)
            engine = engine._replace(refused_status=answer.status, refused_verdict=verdict)
        self.engine = engine


class PipelineState(NamedTuple):
    """The queue, the spool and the pacer at one moment (``Worker.pipeline_state``)."""

    queued: int
    """Accepted and not finished, as ``stats()["queued"]`` (on disk included)."""
    queue_bytes: int
    """What the in-memory queue holds, in bytes as ``max_queue_bytes`` counts them."""
    queue_utilization: float
    """How full the in-memory queue is, 0 to 1: the fuller of its two bounds."""
    spool_bytes: Optional[int]
    """Bytes on disk; None without a spool."""
    spool_utilization: Optional[float]
    """This client's own spool directory against ``max_spool_bytes``; None without a spool."""
    spool_writable: Optional[bool]
    """False once the disk refused (calls then go to memory); None without a spool."""
    allowance: Optional[float]
    """Requests per second the pacer allows now; None with pacing off."""
    paused_for: float
    """Seconds the pacer still holds every request back (a 429, a spent window)."""
    quota_for: float
    """Seconds until a spent plan quota is tried again."""


def read_pipeline(
    options: Options,
    backlog: Backlog,
    source: Source,
    pacer: Pacer,
    *,
    queued: int,
    now: float,
    quota_until: float,
) -> PipelineState:
    """``PipelineState`` from the worker's parts (``now`` on the pipeline's clock)."""
    in_memory = backlog.raw_count() + backlog.in_hand + backlog.encoded_ops + backlog.held_count
    queue_bytes = backlog.bytes_estimate()
    utilization = max(
        in_memory / options.max_queue_size, queue_bytes / max(1, options.max_queue_bytes)
    )
    spool_bytes = spool_utilization = writable = None
    if isinstance(source, SpoolSource):
        spool_bytes = source.disk_bytes()
        own = source.own
        spool_utilization = (own.written_bytes if own is not None else 0) / max(
            1, options.max_spool_bytes
        )
        writable = source.writable
    elif options.spool_dir is not None and not options.sync_mode and options.send:
        writable = False  # asked for, but the directory could not be made: all in memory
        spool_bytes, spool_utilization = 0, 0.0
    return PipelineState(
        queued=queued,
        queue_bytes=queue_bytes,
        queue_utilization=min(1.0, utilization),
        spool_bytes=spool_bytes,
        spool_utilization=spool_utilization,
        spool_writable=writable,
        allowance=pacer.allowance_now(now) if pacer.enabled else None,
        paused_for=max(0.0, pacer.paused_until - now),
        quota_for=max(0.0, quota_until - now),
    )
