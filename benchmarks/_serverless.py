"""The serverless figure: what the end of an invocation costs one warm instance.

One process plays a warm instance: each invocation makes two calls, then what the variant does
at the end of a handler, and is timed whole (``perf_counter``). Back to back, then ten
invocations a second. The sink plays the engine's budget of 500 requests per 60 s per key,
answering like the hosted engine (no rate-limit headers, no ``Retry-After``), and then with the
open-source engine's headers. Each variant in a fresh process:

| variant | end of the handler |
|---|---|
| ``flush_if_due`` | ``client.flush_if_due()``, ``spool_dir`` in a temporary directory |
| ``flush`` | ``client.flush(2.0)`` |
| ``sync_mode`` | nothing: ``sync_mode=True`` sends each call before it returns |
| ``posthog flush`` | posthog-python's ``client.flush()`` |

``python -m benchmarks --figures serverless --sdks sankofa,posthog`` runs it alone.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

from ._control import SinkControl
from ._sdks import ADAPTERS
from ._workload import DISTINCT_IDS, event_properties

VARIANTS: dict[str, str] = {
    "flush_if_due": "sankofa",
    "flush": "sankofa",
    "sync_mode": "sankofa",
    "posthog flush": "posthog",
}
"""Variant -> the adapter (and the sink's counter) it uses."""
GAPS = (0.0, 0.1)
"""Seconds between the end of an invocation and the next: back to back, and 0.1 s (about ten a
second when an invocation takes a few ms)."""
MODES = {"no headers": False, "headers": True}
WARMUP = 5
"""Invocations before the timed ones: the first opens a connection."""
SIZES = {"full": {0.0: 200, 0.1: 50}, "quick": {0.0: 30, 0.1: 10}}


def invocations(spec: dict[str, Any]) -> dict[str, Any]:
    """One warm instance: ``n`` timed invocations, ``gap`` seconds between one's end and the
    next one's start, two calls each."""
    variant, gap, n = spec["variant"], spec["gap"], spec["n"]
    sdk = VARIANTS[variant]
    control = SinkControl(spec["sink"])
    control.reset(sdk)
    control.faults(rate_limit={"limit": 500, "window": 60, "headers": spec["headers"]})
    options: dict[str, Any] = {}
    if variant == "flush_if_due":
        options["spool_dir"] = tempfile.mkdtemp(prefix="sankofa-serverless-")
    if variant == "sync_mode":
        options["sync_mode"] = True
    extra = {"options": options} if sdk == "sankofa" else {}
    adapter = ADAPTERS[sdk](spec["sink"], "defaults", **extra)
    track = adapter.call("track")
    end = _end_of_handler(variant, adapter.client)
    samples: list[float] = []
    for i in range(WARMUP + n):
        started = time.perf_counter()
        track(DISTINCT_IDS[i % 1000], event_properties(2 * i))
        track(DISTINCT_IDS[i % 1000], event_properties(2 * i + 1))
        end()
        took = time.perf_counter() - started
        if i >= WARMUP:
            samples.append(took * 1000)
        if gap:
            time.sleep(gap)  # the function is idle (or frozen) between invocations
    sent = 2 * (WARMUP + n)
    adapter.drain()  # untimed: everything goes before the count
    got = control.wait(sdk, sent, 60)
    adapter.shutdown()
    ordered = sorted(samples)
    return {
        "variant": variant,
        "gap": gap,
        "headers": spec["headers"],
        "n": n,
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
        "max_ms": ordered[-1],
        "requests": got["requests"],
        "requests_429": got["statuses"].get("429", 0),
        "invocations": WARMUP + n,
        "stored": got["unique"],
        "sent": sent,
    }


def _end_of_handler(variant: str, client: Any) -> Callable[[], Any]:
    if variant == "flush_if_due":
        return client.flush_if_due  # type: ignore[no-any-return]
    if variant == "flush":
        return lambda: client.flush(2.0)
    if variant == "posthog flush":
        return client.flush  # type: ignore[no-any-return]
    return lambda: None  # sync_mode: the calls themselves sent everything


def measure(harness: Any, sdks: list[str], quick: bool) -> None:
    """Every variant whose SDK is among ``sdks``, in each mode and at each gap, into
    ``harness.records`` (task ``serverless``)."""
    sizes = SIZES["quick" if quick else "full"]
    for mode, headers in MODES.items():
        for gap in GAPS:
            for variant, sdk in VARIANTS.items():
                if sdk not in sdks:
                    continue
                name = f"serverless-{variant.replace(' ', '_')}-{mode.replace(' ', '_')}-{gap}"
                spec = {
                    "variant": variant,
                    "gap": gap,
                    "n": sizes[gap],
                    "headers": headers,
                    "sink": harness.sink_url,
                }
                try:
                    result = harness.child("benchmarks._serverless", spec, 300, name)
                except Exception as exc:  # report it, measure the rest
                    harness.failures.append(f"{name}: {exc!r}")
                    print(f"  {name:<48} FAILED: {exc!r}", flush=True)
                    continue
                harness.records.append(
                    {
                        "run": 0,
                        "config": "defaults",
                        "task": "serverless",
                        "sdk": sdk,
                        "result": result,
                    }
                )
                print(
                    f"  {name:<48} median {result['median_ms']:.1f} ms, "
                    f"p90 {result['p90_ms']:.1f} ms, {result['requests']} requests "
                    f"for {result['invocations']} invocations",
                    flush=True,
                )


def markdown(records: list[dict[str, Any]]) -> str:
    """The figure's table: per invocation (two calls and the end of the handler)."""
    rows = [r["result"] for r in records if r["task"] == "serverless"]
    if not rows:
        return ""
    lines = [
        "One warm instance, two calls per invocation, then the end of the handler; time per "
        "invocation in ms, median / p90 / max, and requests per invocation (429s). The sink "
        "allows 500 requests per 60 s per key.",
        "",
        "| engine's answers | between invocations | " + " | ".join(VARIANTS) + " |",
        "|---|---|" + "---|" * len(VARIANTS),
    ]
    for mode, headers in MODES.items():
        for gap in GAPS:
            cells = []
            for variant in VARIANTS:
                found = [
                    r
                    for r in rows
                    if r["variant"] == variant and r["gap"] == gap and r["headers"] == headers
                ]
                if not found:
                    cells.append("-")
                    continue
                r = found[0]
                cells.append(
                    f"{r['median_ms']:.1f} / {r['p90_ms']:.1f} / {r['max_ms']:.0f}; "
                    f"{r['requests'] / r['invocations']:.2f} ({r['requests_429']})"
                )
            when = "back to back" if gap == 0 else f"{gap:g} s (about 10 a second)"
            lines.append(f"| {mode} | {when} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    result = invocations(json.loads(sys.argv[1]))
    print("RESULT " + json.dumps(result), flush=True)
    sys.stderr.flush()
    import os

    os._exit(0)  # never wait at exit for an SDK still retrying


if __name__ == "__main__":
    main()
