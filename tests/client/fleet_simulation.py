"""A deterministic simulation of processes sharing one API key, for the pacer.

Each simulated process runs the client's own batching rule (``_queue.batch_due``) and its own
``Pacer`` against one model of the engine's fixed-window limiter (spec section 10: the window
starts at the key's first request, whole-second resolution, every request counts, the 501st gets
429). Time is a fake clock stepped in ``STEP`` seconds; arrivals are a fluid of operations at
each process's rate, so a run is the same every time. No threads, no sockets.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from sankofa_sdk._options import Options
from sankofa_sdk._pacer import Pacer
from sankofa_sdk._queue import batch_due

STEP = 0.05
ROUND_TRIP = 0.05  # one step: a request started at t is answered at t + ROUND_TRIP


class EngineLimiter:
    """The engine's limiter for one key; ``headers=False`` is the hosted engine (none at all)."""

    def __init__(self, limit: int, window: int, *, headers: bool) -> None:
        self.limit = limit
        self.window = window
        self.headers = headers
        self._window_end: Optional[int] = None
        self._hits = 0

    def hit(self, t: float) -> tuple[int, dict[str, str]]:
        now = int(t)
        if self._window_end is None or now >= self._window_end:
            self._window_end, self._hits = now + self.window, 0
        self._hits += 1
        reset = self._window_end - now
        remaining = self.limit - self._hits
        if remaining < 0:
            return 429, ({"Retry-After": str(reset)} if self.headers else {})
        if not self.headers:
            return 200, {}
        return 200, {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }


Load = Callable[[float], float]
"""Operations per second a process produces at time t."""


@dataclass
class _Process:
    load: Load
    pacer: Pacer
    queue: deque[list[float]] = field(default_factory=deque)  # [arrival time, count] chunks
    queued: int = 0
    fraction: float = 0.0
    waiting_since: Optional[float] = None
    held_back: bool = False
    in_flight: Optional[tuple[float, float, list[list[float]], int, dict[str, str]]] = None

    def arrive(self, t: float) -> int:
        self.fraction += self.load(t) * STEP
        n = int(self.fraction)
        if n:
            self.fraction -= n
            if not self.queued:
                self.waiting_since = t
            self.queue.append([t, n])
            self.queued += n
        return n

    def take(self, limit: int) -> list[list[float]]:
        taken: list[list[float]] = []
        left = limit
        while self.queue and left:
            chunk = self.queue[0]
            n = int(min(chunk[1], left))
            if n == chunk[1]:
                self.queue.popleft()
            else:
                chunk[1] -= n
            taken.append([chunk[0], n])
            left -= n
        self.queued -= limit - left
        return taken

    def put_back(self, chunks: list[list[float]]) -> None:
        for chunk in reversed(chunks):
            self.queue.appendleft(chunk)
            self.queued += int(chunk[1])


@dataclass
class Result:
    processes: int
    generated: int
    delivered: int
    requests: list[float]
    """Start times of every request, in order (429s included)."""
    accepted: list[float]
    """Start times of the requests the limiter let through."""
    rejected: int
    latencies: list[tuple[float, int, float]]
    """(latency, operations, arrival time) of each delivered chunk."""
    duration: float
    load_seconds: float
    worst_latency: list[float]
    """The longest wait of any operation, per process."""

    @property
    def share_429(self) -> float:
        return self.rejected / max(1, len(self.requests))

    def max_in_any_window(self, window: float, *, accepted_only: bool = False) -> int:
        """Requests started in the busiest ``window`` seconds (sliding, not aligned)."""
        best = lo = 0
        times = self.accepted if accepted_only else self.requests
        for hi, t in enumerate(times):
            while times[lo] <= t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def latency_percentile(self, p: float, *, arrived_after: float = 0.0) -> float:
        """The ``p`` quantile of the operations' latencies (of those that arrived after
        ``arrived_after`` seconds, to leave a fleet's first windows out)."""
        ordered = sorted(item for item in self.latencies if item[2] >= arrived_after)
        total = sum(n for _, n, _ in ordered)
        seen = 0
        for latency, n, _ in ordered:
            seen += n
            if seen >= total * p:
                return latency
        return 0.0

    def summary(self) -> str:
        return (
            f"{self.processes} processes: {len(self.requests)} requests, "
            f"max {self.max_in_any_window(60)} in any 60 s "
            f"({self.max_in_any_window(60, accepted_only=True)} accepted), "
            f"429 share {self.share_429:.1%}, "
            f"delivered {self.delivered}/{self.generated} "
            f"({self.delivered / self.load_seconds:,.0f} ops/s over the load), latency p50 "
            f"{self.latency_percentile(0.5):.1f}s p99 {self.latency_percentile(0.99):.1f}s, "
            f"drained {self.duration - self.load_seconds:.0f}s after the load"
        )


def simulate(
    loads: list[Load],
    *,
    headers: bool,
    load_seconds: float,
    options: Optional[Options] = None,
    limit: int = 500,
    window: int = 60,
    drain_limit: float = 600.0,
    seed: int = 1,
    flush_each: bool = False,
) -> Result:
    """Run ``loads`` (one per process) for ``load_seconds``, then until every queue is empty.

    ``flush_each``: every operation is followed by a ``flush()`` (a task or an invocation that
    flushes at its end), so a process is urgent whenever anything is queued, and an operation's
    latency is how long that flush takes.
    """
    options = options or Options()
    limiter = EngineLimiter(limit, window, headers=headers)
    processes = [
        _Process(
            load,
            Pacer(options.rate_limit, batch_size=options.max_batch_size, seed=seed * 1000 + i),
        )
        for i, load in enumerate(loads)
    ]
    requests: list[float] = []
    accepted: list[float] = []
    latencies: list[tuple[float, int, float]] = []
    worst = [0.0] * len(processes)
    generated = delivered = rejected = 0
    step = 0
    t = 0.0
    while True:
        t = step * STEP
        loading = t < load_seconds
        if not loading and t > load_seconds + drain_limit:
            break
        if not loading and all(p.queued == 0 and p.in_flight is None for p in processes):
            break
        for index, process in enumerate(processes):
            if loading:
                arrived = process.arrive(t)
                if arrived:
                    generated += arrived
                    process.pacer.arrived(t, arrived)
            flight = process.in_flight
            if flight is not None:
                started, answer_at, chunks, status, answer_headers = flight
                if t < answer_at - 1e-9:  # (float steps: t + ROUND_TRIP is the next step)
                    continue
                process.in_flight = None
                retry_after = answer_headers.get("Retry-After")
                process.pacer.answered(
                    started, status, answer_headers, float(retry_after) if retry_after else None
                )
                if status == 200:
                    for arrived, n in chunks:
                        delivered += int(n)
                        latencies.append((t - arrived, int(n), arrived))
                    worst[index] = max(worst[index], t - chunks[0][0])
                else:
                    rejected += 1
                    process.put_back(chunks)
                    process.waiting_since = t
            urgent = not loading or (flush_each and process.queued > 0)
            due = batch_due(process.queued, process.waiting_since, t, options, urgent=urgent)
            ready = process.pacer.ready_at(urgent)
            if due <= t < ready:
                process.held_back = True
            if max(due, ready) > t:
                continue
            chunks = process.take(options.max_batch_size)
            process.waiting_since = t if process.queued else None
            fullness = sum(n for _, n in chunks) / options.max_batch_size
            process.pacer.started(
                t,
                held_back=process.held_back,
                fullness=fullness,
                backlog=process.queued,
                urgent=urgent,
            )
            process.held_back = False
            status, answer_headers = limiter.hit(t)
            requests.append(t)
            if status != 429:
                accepted.append(t)
            process.in_flight = (t, t + ROUND_TRIP, chunks, status, answer_headers)
        step += 1
    return Result(
        len(loads),
        generated,
        delivered,
        requests,
        accepted,
        rejected,
        latencies,
        t,
        load_seconds,
        worst,
    )


def uneven_loads(count: int, mean_ops: float, seed: int = 7) -> list[Load]:
    """``count`` processes averaging ``mean_ops`` ops/s: skewed shares, bursts, late starters.

    Shares follow a log-normal spread (a few busy processes, many quiet ones); every process
    has bursts at 3x its rate for 20 s in each 120 s, at its own phase; a quarter of them start
    up to 90 s late (a rolling deploy).
    """
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1) for _ in range(count)]
    scale = mean_ops * count / sum(weights)
    loads: list[Load] = []
    for weight in weights:
        rate = weight * scale
        phase = rng.uniform(0, 120)
        start = rng.uniform(0, 90) if rng.random() < 0.25 else 0.0

        def load(t: float, rate: float = rate, phase: float = phase, start: float = start) -> float:
            if t < start:
                return 0.0
            return rate * (3.0 if math.fmod(t + phase, 120.0) < 20.0 else 1.0)

        loads.append(load)
    return loads


def steady_loads(count: int, per_second: float) -> list[Load]:
    """``count`` processes at ``per_second`` operations each, their arrivals spread evenly over
    one period (processes of a fleet do not run in step)."""
    loads: list[Load] = []
    for index in range(count):
        start = (index / count) / per_second

        def load(t: float, start: float = start) -> float:
            return per_second if t >= start else 0.0

        loads.append(load)
    return loads


FLEET_SIZES = (1, 2, 4, 8, 16, 32, 64)


def flush_heavy_table(load_seconds: float = 600.0, per_second: float = 5.0) -> str:
    """A Markdown table: fleets whose every operation is followed by a flush (a task or an
    invocation that flushes as it ends), with and without rate-limit headers."""
    lines = [
        f"Each process: {per_second:g} operations a second, each followed by a flush; "
        f"{load_seconds:g} s of load; round trip {ROUND_TRIP * 1000:g} ms; budget 500 per 60 s.",
        "Flush latency in seconds (p50 / p90 / p99 over the whole run; p99 after the first "
        "two windows), and the share of requests answered 429.",
        "",
        "| processes | headers | requests | 429 share | busiest 60 s | p50 | p90 | p99 "
        "| p99 after 120 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for headers in (True, False):
        for count in FLEET_SIZES:
            result = simulate(
                steady_loads(count, per_second),
                headers=headers,
                load_seconds=load_seconds,
                flush_each=True,
            )
            assert result.delivered == result.generated
            p = result.latency_percentile
            lines.append(
                f"| {count} | {'yes' if headers else 'no'} | {len(result.requests):,} "
                f"| {result.share_429:.1%} | {result.max_in_any_window(60)} "
                f"| {p(0.5):.2f} | {p(0.9):.2f} | {p(0.99):.2f} "
                f"| {p(0.99, arrived_after=120):.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m tests.client.fleet_simulation: the flush-heavy table (about 10 s).
    print(flush_heavy_table())
