"""Where sankofa_sdk's CPU goes: ``bash benchmarks/run profile [N]``.

1. **Whole process, every thread**: the throughput figure (``N`` ten-property ``track`` calls as
   fast as the caller can, production defaults, until the sink has them all) in a child
   process sampled by py-spy (``--gil``: whichever thread holds the GIL, so waiting for it is
   not counted; ``--nonblocking``, so the process is never paused). Each sample's
   innermost frame of this package or of a library it calls is put in a category (the call,
   encoding, HTTP, gzip, ...); the shares are applied to the CPU per delivered operation that
   the same child measured, giving microseconds per operation by category, and the functions
   that cost most.
2. **The hot path**: ``N`` ``track`` calls under cProfile (the caller's thread only).

Writes the report to ``benchmarks/results/profile-<UTC time>.txt`` and prints it. Needs py-spy
(installed by ``benchmarks/run``) and the right to trace a child process (as on most Linux
machines for one's own children).
"""

from __future__ import annotations

import cProfile
import datetime
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from . import __main__ as harness
from ._workload import DISTINCT_IDS, EVENT_NAME, event_properties

# (category, what a frame's "function (file:line)" text contains); the first match wins, and
# a sample goes to the innermost frame that matches any of them.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("gzip", ("zlib", "gzip.py", "_compress")),
    (
        "HTTP: requests, urllib3, sockets",
        ("requests/", "urllib3/", "http/client.py", "socket.py", "ssl.py", "selectors.py"),
    ),
    ("JSON encoding", ("_serialize.py", "json/", "_operations.py")),
    ("the call (validation, stamping, queueing)", ("_client.py", "_validate.py", "_identity.py")),
    ("request pacing", ("_pacer.py",)),
    ("answers and retries", ("_answers.py", "_retry.py")),
    ("transport (building the request)", ("_transport.py",)),
    ("queue and batching", ("_queue.py", "_worker.py", "_stats.py")),
    ("threading and waiting", ("threading.py", "queue.py")),
    ("the benchmark's own loop", ("benchmarks/",)),
]


def categorise(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def _leaf_function(frames: list[str]) -> str:
    for frame in reversed(frames):
        if "sankofa_sdk" in frame or any(
            lib in frame for lib in ("requests/", "urllib3/", "http/client", "zlib", "gzip")
        ):
            return frame
    return frames[-1] if frames else "?"


def whole_process(url: str, n: int) -> tuple[dict[str, Any], str]:
    spec = {"task": "throughput", "sdk": "sankofa", "config": "defaults", "sink": url, "n": n}
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.txt"
        py_spy = Path(sys.executable).with_name("py-spy")
        command = [
            str(py_spy),
            "record",
            "--gil",  # only the thread holding the GIL: time spent waiting for it is not CPU
            "--nonblocking",
            "--threads",
            "--rate",
            "500",
            "--format",
            "raw",
            "--output",
            str(samples),
            "--",
            sys.executable,
            "-m",
            "benchmarks._child",
            json.dumps(spec),
        ]
        proc = subprocess.run(
            command, cwd=harness.REPO, capture_output=True, text=True, check=False
        )
        result: Optional[dict[str, Any]] = None
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
                break
        if result is None or not samples.exists():
            raise RuntimeError(f"the profiled child failed: {proc.stderr[-2000:]}")
        by_category: Counter[str] = Counter()
        by_function: Counter[str] = Counter()
        total = 0
        for line in samples.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            weight = int(count)
            total += weight
            by_category[categorise(frames)] += weight
            by_function[_leaf_function(frames)] += weight
    us_per_op = result["cpu_ms_per_1000"]  # ms per 1,000 is µs per one
    lines = [
        f"throughput run, production defaults: {n:,} tracks, {result['ops_per_s']:,.0f} ops/s, "
        f"{us_per_op:.1f} µs CPU per delivered operation (whole process), "
        f"{result['requests']} requests, {total:,} samples",
        "",
        "| where | share of samples | µs per operation |",
        "|---|---|---|",
    ]
    for name, count in by_category.most_common():
        share = count / total
        lines.append(f"| {name} | {share:.0%} | {share * us_per_op:.2f} |")
    threads = result.get("thread_us_per_op", {})
    lines += [
        "",
        "By thread (CPU time from /proc, µs per delivered operation; work done without the GIL,",
        "such as compressing and writing to the socket, counts here but not in the samples):",
        "",
    ]
    lines += [f"- {name}: {us:.2f}" for name, us in sorted(threads.items(), key=lambda t: -t[1])]
    lines += ["", "Functions that cost most (innermost frame of this package or a library):", ""]
    for name, count in by_function.most_common(15):
        lines.append(f"- {count / total:5.1%}  {name}")
    return result, "\n".join(lines)


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
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(15)
    return out.getvalue()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with harness._sink() as url:
        _, whole = whole_process(url, n)
        hot_text = hot_path(url, min(n, 20_000))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = harness.RESULTS / f"profile-{stamp}.txt"
    harness.RESULTS.mkdir(exist_ok=True)
    text = f"{whole}\n\n== hot path: track (cProfile, caller's thread) ==\n{hot_text}"
    path.write_text(text)
    print(text)
    print(f"wrote {path.relative_to(harness.REPO)}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
