"""One measurement in a process of its own: ``python -m benchmarks._child '<json spec>'``.

Each SDK is measured in a fresh interpreter so that one SDK's threads, queues and heap never
colour another's numbers. The last line on stdout is ``RESULT <json>``.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time
from typing import Any, Callable

from ._control import (
    SinkControl,
    latency_summary,
    other_threads_cpu_ns,
    rss_bytes,
    thread_cpu_seconds,
)
from ._sdks import ADAPTERS, BASE_ENV
from ._workload import DISTINCT_IDS, EVENT_NAME, event_properties, people_traits

KINDS = ("track", "identify", "people_set")
WARMUP = 1000


def _builder(kind: str) -> Callable[[int], dict[str, Any]]:
    return event_properties if kind == "track" else people_traits


def _timed_calls(
    call: Callable[[str, dict[str, Any]], Any], kind: str, samples: list[int]
) -> list[int]:
    """Time each call with ``perf_counter_ns``, into ``samples`` (one call per slot)."""
    build = _builder(kind)
    ids = DISTINCT_IDS
    clock = time.perf_counter_ns
    for i in range(len(samples)):
        user = ids[i % 1000]
        props = build(i)
        start = clock()
        call(user, props)
        samples[i] = clock() - start
    return samples


def _untimed_calls(call: Callable[[str, dict[str, Any]], Any], kind: str, n: int) -> None:
    build = _builder(kind)
    for i in range(n):
        call(DISTINCT_IDS[i % 1000], build(i))


def hot_path(spec: dict[str, Any]) -> dict[str, Any]:
    """Figure 1: the caller's time per call, with delivery to the sink going on meanwhile."""
    sdk, n = spec["sdk"], spec["n"]
    control = SinkControl(spec["sink"])
    control.reset(sdk)
    # Room for every call: in a tight loop the callers outrun every SDK's single sender thread,
    # and a call that is dropped for a full queue takes another path than one that is queued.
    adapter = ADAPTERS[sdk](spec["sink"], spec["config"], queue_size=(WARMUP + n) * len(KINDS))
    calls = {kind: adapter.call(kind) for kind in KINDS}
    for kind in KINDS:
        _untimed_calls(calls[kind], kind, WARMUP)
    overhead = latency_summary(_timed_calls(lambda user, props: None, "track", [0] * 20_000))
    result: dict[str, Any] = {"timer_overhead_us": overhead["p50"]}
    for kind in KINDS:
        result[kind] = latency_summary(_timed_calls(calls[kind], kind, [0] * n))
    expected = (WARMUP + n) * len(KINDS) - adapter.dropped()
    got = control.wait(sdk, expected, spec.get("timeout", 120))
    result.update(
        sent=(WARMUP + n) * len(KINDS), dropped=adapter.dropped(), delivered=got["unique"]
    )
    adapter.shutdown()
    return result


def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """Figures 2 and 3: ``n`` tracks as fast as the caller can, until the sink has them all."""
    sdk, n = spec["sdk"], spec["n"]
    control = SinkControl(spec["sink"])
    control.reset(sdk)
    # ``options``: sankofa_sdk's own settings for a variant (``rate_limit=None``: pacing off).
    extra = {"options": spec["options"]} if spec.get("options") else {}
    adapter = ADAPTERS[sdk](spec["sink"], spec["config"], queue_size=n + 2 * WARMUP, **extra)
    track = adapter.call("track")
    _untimed_calls(track, "track", WARMUP)  # starts threads and connections
    control.wait(sdk, WARMUP, 30)
    control.reset(sdk)
    dropped_before = adapter.dropped()
    gc.collect()
    threads0 = thread_cpu_seconds()
    cpu0, t0 = time.process_time(), time.perf_counter()
    _untimed_calls(track, "track", n)
    cpu_enqueued, t_enqueued = time.process_time(), time.perf_counter()
    dropped = adapter.dropped() - dropped_before
    got = control.wait(sdk, n - dropped, spec.get("timeout", 300))
    cpu1, t1 = time.process_time(), time.perf_counter()
    delivered = got["unique"]
    elapsed = t1 - t0
    result = {
        "n": n,
        "delivered": delivered,
        "dropped_by_sdk": dropped,
        "missing": n - dropped - delivered,
        "duplicates": got["duplicates"],
        "requests": got["requests"],
        "seconds": elapsed,
        "ops_per_s": delivered / elapsed,
        "enqueue_ops_per_s": n / (t_enqueued - t0),
        "drain_after_enqueue_s": t1 - t_enqueued,
        "cpu_s": cpu1 - cpu0,
        "cpu_enqueue_s": cpu_enqueued - cpu0,
        "cpu_ms_per_1000": (cpu1 - cpu0) / max(delivered, 1) * 1e6,
        "bytes_per_op": got["json_bytes"] / max(got["received"], 1),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # Which thread spent it (µs per delivered operation): the caller, the SDK's threads.
        "thread_us_per_op": {
            name: (cpu - threads0.get(name, 0.0)) / max(delivered, 1) * 1e6
            for name, cpu in thread_cpu_seconds().items()
        },
    }
    adapter.shutdown()
    return result


def unreachable(spec: dict[str, Any]) -> dict[str, Any]:
    """Figures 4 and 5: memory per queued op and the hot path while the server refuses connections."""
    sdk, n = spec["sdk"], spec["n"]
    adapter = ADAPTERS[sdk](spec["down_url"], spec["config"])
    track = adapter.call("track")
    _untimed_calls(track, "track", 500)
    time.sleep(0.2)  # let the worker take its first batch and start failing
    samples = [0] * n  # allocated before the baseline so it is not counted
    gc.collect()
    rss0, queued0, dropped0 = rss_bytes(), adapter.queued(), adapter.dropped()
    _timed_calls(track, "track", samples)
    gc.collect()
    rss1, queued1, dropped1 = rss_bytes(), adapter.queued(), adapter.dropped()
    return {
        "n": n,
        "track": latency_summary(samples),
        "rss_growth_mb": (rss1 - rss0) / 2**20,
        "bytes_per_op": (rss1 - rss0) / n,
        "held": queued1 - queued0,
        "dropped_by_sdk": dropped1 - dropped0,
    }


def server_client_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Figure 6, first load: one sankofa_sdk client (defaults) sending to the reference server."""
    import sankofa_sdk

    n = spec["n"]
    client = sankofa_sdk.Client(spec["api_key"], host=spec["url"], max_queue_size=n + WARMUP)
    call = client.track
    t0 = time.monotonic()
    for i in range(n):
        call(EVENT_NAME, event_properties(i), distinct_id=DISTINCT_IDS[i % 1000])
    t_enqueued = time.monotonic()
    flushed = client.flush(spec.get("timeout", 120))
    t_flushed = time.monotonic()
    stats = client.stats()
    client.shutdown(timeout=5)
    return {
        "t0": t0,
        "t_enqueued": t_enqueued,
        "t_flushed": t_flushed,
        "flushed": flushed,
        "stats": stats,
    }


def delivery(spec: dict[str, Any]) -> dict[str, Any]:
    """One process of a delivery scenario: an app tracking at a steady rate, with defaults.

    From ``start_at`` (a ``time.monotonic()``, the same in every process) it makes ``rate``
    track calls a second for ``seconds``, in 10 ms slices as a busy app would, then waits for
    the SDK's own flush until ``drain_s`` after its last call, or until ``deadline`` when one
    is given (a fleet shares one deadline). It never shuts the SDK down: a shutdown could drop
    or hurry what is still queued, and the sink's count is the measurement.
    """
    sdk, rate, seconds = spec["sdk"], spec["rate"], spec["seconds"]
    total = int(rate * seconds)
    # Production defaults, queue bound included; ``options`` only where a scenario says so.
    extra = {"options": spec["options"]} if spec.get("options") else {}
    adapter = ADAPTERS[sdk](spec["sink"], "defaults", **extra)
    track = adapter.call("track")
    build, ids = event_properties, DISTINCT_IDS
    offset = spec.get("index", 0) * total  # distinct request_n across a fleet's processes
    tick = 0.01
    start_at = spec["start_at"]
    # Bound the call phase: an SDK whose calls cannot keep the pace stops at this point, and
    # the calls not made are reported (``sent`` < ``total``).
    calls_until = start_at + max(3 * seconds, seconds + 10)
    ready_at = time.monotonic()
    time.sleep(max(0.0, start_at - ready_at))
    started = time.monotonic()
    sent = 0
    while sent < total:
        now = time.monotonic()
        if now >= calls_until:
            break
        due = min(int((now - started) * rate) + int(tick * rate), total)
        while sent < due:
            track(ids[sent % 1000], build(offset + sent))
            sent += 1
        pause = started + (sent / rate) - tick - time.monotonic()
        if pause > 0:
            time.sleep(min(pause, tick))
    last_call = time.monotonic()
    deadline = spec.get("deadline") or last_call + spec["drain_s"]
    flusher = threading.Thread(target=adapter.drain, daemon=True)
    flusher.start()
    flusher.join(max(0.0, deadline - time.monotonic()))
    drained_at = None if flusher.is_alive() else time.monotonic()
    stats = adapter.client.stats() if sdk.startswith("sankofa") else None
    return {
        "total": total,
        "sent": sent,
        "refused": adapter.dropped(),
        "failed": adapter.failed(),
        "queued_at_end": adapter.held(),
        "ready_at": ready_at,
        "started": started,
        "last_call": last_call,
        "drained_at": drained_at,
        "deadline": deadline,
        "stats": stats,
    }


def _request_work(iterations: int) -> int:
    """What a request handler's own code costs: pure Python, holding the GIL throughout."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def app_impact(spec: dict[str, Any]) -> dict[str, Any]:
    """Figure 7: a CPU-bound request loop in the main thread that tracks one event per request
    (about 1,000 a second), timed whole; ``sdk`` "none" is the same loop without an SDK.

    The loop's slowdown against "none" is what the SDK's background work costs the app: its
    thread competes with the handlers for the GIL. Delivery is checked afterwards, untimed.
    """
    sdk, n, work = spec["sdk"], spec["requests"], spec["work"]
    control = SinkControl(spec["sink"])
    adapter = None
    track: Callable[[str, dict[str, Any]], Any] = lambda user, props: None  # noqa: E731
    if sdk != "none":
        control.reset(sdk)
        adapter = ADAPTERS[sdk](spec["sink"], "defaults")
        track = adapter.call("track")
    build, ids = event_properties, DISTINCT_IDS
    for i in range(200):  # warm-up: threads, connections, the interpreter's caches
        _request_work(work)
        track(ids[i % 1000], build(i))
    gc.collect()
    background0 = other_threads_cpu_ns()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        _request_work(work)
        track(ids[i % 1000], build(i))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    background = other_threads_cpu_ns() - background0
    result = {
        "requests": n,
        "seconds": elapsed,
        "per_request_us": elapsed / n * 1e6,
        "events_per_s": n / elapsed,
        "cpu_s": cpu,
        # The SDK's own threads while the loop ran: what the slowdown is made of, measured
        # directly (the slowdown is a difference of two noisy wall times).
        "background_us_per_event": background / n / 1000,
    }
    if adapter is not None:
        expected = n + 200 - adapter.dropped()
        result["delivered"] = control.wait(sdk, expected, 60)["unique"]
        result["expected"] = expected
        adapter.shutdown()
    return result


def workload_only(spec: dict[str, Any]) -> dict[str, Any]:
    """The CPU the workload itself costs (building the dicts), with no SDK at all."""
    n = spec["n"]
    gc.collect()
    cpu0 = time.process_time()
    _untimed_calls(lambda user, props: None, "track", n)
    return {"cpu_ms_per_1000": (time.process_time() - cpu0) / n * 1e6}


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "hot_path": hot_path,
    "throughput": throughput,
    "throughput_unpaced": throughput,
    "unreachable": unreachable,
    "workload_only": workload_only,
    "app_impact": app_impact,
    "server_client_load": server_client_load,
    "delivery": delivery,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    if str(spec.get("sdk", "")).endswith("-base"):
        # sankofa_sdk from the other checkout (--base): imported lazily by the adapters, so
        # putting it first on the path is enough.
        sys.path.insert(0, os.environ[BASE_ENV])
    result = TASKS[spec["task"]](spec)
    print("RESULT " + json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)  # never wait at exit for an SDK still retrying against a dead server


if __name__ == "__main__":
    main()
