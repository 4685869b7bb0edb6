"""Profiles of sankofa_sdk's two costs: ``bash benchmarks/run profile [N]``.

1. The hot path: ``N`` ``track`` calls under cProfile (the caller's thread only).
2. The worker alone: ``N`` operations put on the queue before the worker thread exists, then
   the worker's drain loop run on this thread (so cProfile sees it), against the sink; first
   without the profiler for a clean rate, then with it.

Reads sankofa_sdk's private worker (``client._worker``); this is a diagnostic, not an API.
Writes the reports to ``benchmarks/results/profile-<UTC time>.txt`` and prints the summary.
"""

from __future__ import annotations

import cProfile
import datetime
import io
import pstats
import sys
import time
from typing import Any

from . import __main__ as harness
from ._control import SinkControl
from ._workload import DISTINCT_IDS, EVENT_NAME, event_properties


def _report(profile: cProfile.Profile, sort: str, limit: int = 30) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats(sort).print_stats(limit)
    return out.getvalue()


def _prefilled_client(url: str, n: int) -> Any:
    import sankofa_sdk

    client = sankofa_sdk.Client("sk_test_benchmark0001", host=url, max_queue_size=n + 10)
    worker = client._worker
    for i in range(n):
        props = dict(event_properties(i))
        worker._queue.append(
            ("track", DISTINCT_IDS[i % 1000], EVENT_NAME, props, None, time.time())
        )
    return client


def worker_alone(url: str, n: int, profile: bool) -> tuple[dict[str, float], str]:
    control = SinkControl(url)
    control.reset("sankofa")
    client = _prefilled_client(url, n)
    worker = client._worker
    # Nothing was submitted through the client, so its worker thread never started: this
    # thread runs the drain loop instead.
    profiler = cProfile.Profile()
    cpu0, t0 = time.process_time(), time.perf_counter()
    if profile:
        profiler.enable()
    worker._drain()
    if profile:
        profiler.disable()
    cpu1, t1 = time.process_time(), time.perf_counter()
    got = control.wait("sankofa", n, 30)
    client.shutdown(timeout=5)
    rate = {
        "ops_per_s": n / (t1 - t0),
        "cpu_us_per_op": (cpu1 - cpu0) / n * 1e6,
        "delivered": got["unique"],
    }
    text = _report(profiler, "tottime") + _report(profiler, "cumulative") if profile else ""
    return rate, text


def hot_path(url: str, n: int) -> str:
    import sankofa_sdk

    client = sankofa_sdk.Client("sk_test_benchmark0001", host=url, max_queue_size=n + 10)
    track = client.track
    props = [event_properties(i) for i in range(n)]
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        track(EVENT_NAME, props[i], distinct_id=DISTINCT_IDS[i % 1000])
    profiler.disable()
    client.shutdown(timeout=30)
    return _report(profiler, "tottime", 15)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with harness._sink() as url:
        plain, _ = worker_alone(url, n, profile=False)
        _, worker_text = worker_alone(url, n, profile=True)
        hot_text = hot_path(url, n)
    summary = (
        f"worker alone, no profiler: {plain['ops_per_s']:,.0f} ops/s, "
        f"{plain['cpu_us_per_op']:.1f} µs CPU per op, delivered {plain['delivered']}/{n}"
    )
    print(summary)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = harness.RESULTS / f"profile-{stamp}.txt"
    harness.RESULTS.mkdir(exist_ok=True)
    path.write_text(
        f"{summary}\n\n== worker (cProfile) ==\n{worker_text}\n== hot path: track (cProfile) ==\n{hot_text}"
    )
    print(f"wrote {path.relative_to(harness.REPO)}")


if __name__ == "__main__":
    main()
