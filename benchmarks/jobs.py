"""Celery task throughput with and without sankofa_sdk (issue 20): the same prefork worker (2
children, ``max_tasks_per_child=100``, Redis broker) runs the same one-event tasks.

    bash benchmarks/run jobs                  # 3 runs of each variant, ~2 minutes
    bash benchmarks/run jobs --tasks 1000 --runs 1

Variants (rotated from run to run, each in fresh processes):

- ``off``: the task does its work and no analytics (no client, no hooks);
- ``sdk``: ``setup_celery()`` and one ``track`` per task, the defaults (no flush per task);
- ``spool``: the same with ``spool_dir`` (the recommended setting for workers);
- ``flush``: ``setup_celery(flush_after_task=True)``, the old default, with fewer tasks (a
  request per task at the key's pace is slow), once;
- ``client``, ``hooks`` and ``unpaced`` (only when named in ``--variants``): a client made and
  nothing tracked; then ``setup_celery()`` too; and ``sdk`` with ``rate_limit=None``, which
  shows what the pacer's wait before a child's last request costs (a child recycled every 100
  tasks ends by delivering what it holds, and today a lone process's request waits its turn).

Two measures: throughput (wall time, which other load on the machine disturbs a lot) and the
worker's CPU time per task (the worker process and its children, the recycled ones included:
``/proc``, whose ticks are 10 ms), which it disturbs less. ``MAX_TASKS_PER_CHILD=0`` in the
environment runs the children without recycling.

Each variant run starts its own reference server (``python -m sankofa_sdk.server``, the engine's
default limit of 500 requests per 60 s, rate-limit headers on), a fresh key, and a fresh worker,
warmed with 200 tasks. Timed: from the first task sent until every result is back (the producer
sends them all at once; the worker runs them as they come). Then the worker gets SIGTERM (a warm
shutdown), and the server's counts say what arrived: events stored, requests, 429s. Needs
``redis-server`` on the PATH and the ``integrations`` extra (``celery[redis]``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 200

APP = """
import os
from celery import Celery

redis = os.environ["REDIS_URL"]
app = Celery("bench_jobs", broker=redis + "/0", backend=redis + "/1")
app.conf.worker_hijack_root_logger = False
app.conf.worker_max_tasks_per_child = int(os.environ.get("MAX_TASKS_PER_CHILD", "100")) or None
VARIANT = os.environ["VARIANT"]
if VARIANT != "off":
    import sankofa_sdk
    from sankofa_sdk.integrations.celery import setup_celery

    # SANKOFA_API_KEY / SANKOFA_HOST (/ SANKOFA_SPOOL_DIR); "unpaced": no request budget
    sankofa_sdk.init(**({"rate_limit": None} if VARIANT == "unpaced" else {}))
    if VARIANT != "client":
        setup_celery(flush_after_task=VARIANT == "flush")
    track = sankofa_sdk.track
if VARIANT in ("off", "client", "hooks"):
    def track(*args, **kwargs):
        pass


@app.task
def work(n):
    order = {"id": n, "total": n * 3 % 997, "items": n % 7 + 1}  # the task's own work
    track("Order Synced", order, distinct_id=f"user_{n % 1000}")
    return n
"""

PRODUCER = """
import json, sys, time
from celery import group
import bench_jobs

count, warm = int(sys.argv[1]), int(sys.argv[2])
group(bench_jobs.work.s(n) for n in range(warm)).apply_async().join_native(timeout=120)
print("warm", flush=True)
sys.stdin.readline()  # the harness reads the worker's CPU time, then says go
started = time.perf_counter()
result = group(bench_jobs.work.s(n) for n in range(count)).apply_async()
result.join_native(timeout=600)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Celery task throughput with and without the SDK")
    parser.add_argument("--tasks", type=int, default=3_000, help="timed tasks per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flush-tasks", type=int, default=300, help="tasks of the flush variant")
    parser.add_argument("--variants", default="off,sdk,spool,flush", help="also: client,hooks")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if shutil.which("redis-server") is None:
        print("redis-server is needed: apt-get install redis-server", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    load_before = os.getloadavg()
    with redis_server() as redis_url:
        for run in range(args.runs):
            order = [v for v in variants if v != "flush"]
            shift = run % max(1, len(order))
            order = order[shift:] + order[:shift]
            if run == 0 and "flush" in variants:
                order.append("flush")
            for variant in order:
                tasks = args.flush_tasks if variant == "flush" else args.tasks
                result = measure(variant, tasks, redis_url)
                results[variant].append(result)
                print(f"run {run + 1} {variant:6} {headline(result)}", flush=True)
    report = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "args": vars(args),
        "results": results,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out / f"jobs-{stamp}.json").write_text(json.dumps(report, indent=1))
    print()
    print(table(results))
    print(f"\nload average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    return 0


def measure(variant: str, tasks: int, redis_url: str) -> dict[str, Any]:
    flush_redis(redis_url)
    with tempfile.TemporaryDirectory(prefix="sankofa-jobs-") as tmp:
        folder = Path(tmp)
        (folder / "bench_jobs.py").write_text(textwrap.dedent(APP))
        with reference_server(folder) as (url, key):
            env = {k: v for k, v in os.environ.items() if not k.startswith("SANKOFA_")}
            env.update(
                PYTHONPATH=f"{folder}{os.pathsep}{ROOT}",
                REDIS_URL=redis_url,
                VARIANT=variant,
                SANKOFA_API_KEY=key,
                SANKOFA_HOST=url,
            )
            if variant == "spool":
                env["SANKOFA_SPOOL_DIR"] = str(folder / "spool")
            log = open(folder / "worker.log", "wb")  # noqa: SIM115 - closed below
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "bench_jobs",
                    "worker",
                    "--pool=prefork",
                    "--concurrency=2",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel=warning",
                ],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
            producer = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(PRODUCER), str(tasks), str(WARM_UP)],
                cwd=folder,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert producer.stdin is not None and producer.stdout is not None
                ready = producer.stdout.readline()
                cpu_before = tree_cpu(worker.pid)
                producer.stdin.write("go\n")
                producer.stdin.flush()
                out, err = producer.communicate(timeout=900)
                cpu = tree_cpu(worker.pid) - cpu_before
            finally:
                if producer.poll() is None:
                    producer.kill()
                worker.send_signal(signal.SIGTERM)
                worker.wait(120)
                log.close()
            if producer.returncode != 0 or ready.strip() != "warm":
                raise RuntimeError(err[-3000:] + (folder / "worker.log").read_text())
            seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
            stats = server_stats(url, key)
    return {
        "tasks": tasks,
        "seconds": seconds,
        "tasks_per_s": tasks / seconds,
        "cpu_ms_per_task": cpu * 1000 / tasks,
        "stored": stats["events"],
        "expected": 0 if variant == "off" else tasks + WARM_UP,
        "requests": stats["ingest_requests"],
        "rate_limited": stats["rate_limited"],
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its descendants, the ended ones it
    reaped included (a prefork child recycled after 100 tasks counts in its parent's
    ``cutime``). Linux ``/proc``."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 1-based 3..
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(v) for v in fields[11:15])
    tree = {pid}
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return sum(times.get(p, 0) for p in tree) / tick


def headline(r: dict[str, Any]) -> str:
    return (
        f"{r['tasks_per_s']:8.0f} tasks/s, {r['cpu_ms_per_task']:.3f} ms CPU/task "
        f"({r['tasks']} in {r['seconds']:.2f} s); stored "
        f"{r['stored']}/{r['expected']}, {r['requests']} requests, {r['rate_limited']} answered 429"
    )


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    base = [r["tasks_per_s"] for r in results.get("off", [])]
    base_median = statistics.median(base) if base else None
    cpu_base = [r["cpu_ms_per_task"] for r in results.get("off", [])]
    cpu_base_median = statistics.median(cpu_base) if cpu_base else None
    lines = [
        "| variant | tasks/s median [min-max] | vs off | worker CPU per task (ms) | vs off "
        "| stored / expected | requests | 429s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, runs in results.items():
        if not runs:
            continue
        rates = [r["tasks_per_s"] for r in runs]
        median = statistics.median(rates)
        ratio = f"{median / base_median:.3f}x" if base_median else "-"
        cpus = [r["cpu_ms_per_task"] for r in runs]
        cpu = statistics.median(cpus)
        cpu_ratio = f"{cpu / cpu_base_median:.3f}x" if cpu_base_median else "-"
        stored = ", ".join(f"{r['stored']}/{r['expected']}" for r in runs)
        requests = ", ".join(str(r["requests"]) for r in runs)
        limited = ", ".join(str(r["rate_limited"]) for r in runs)
        lines.append(
            f"| {variant} | {median:,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] | {ratio} "
            f"| {cpu:.3f} [{min(cpus):.3f}-{max(cpus):.3f}] | {cpu_ratio} "
            f"| {stored} | {requests} | {limited} |"
        )
    return "\n".join(lines)


@contextmanager
def redis_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            break
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def flush_redis(url: str) -> None:
    import redis

    with redis.Redis.from_url(url) as connection:
        connection.flushall()


@contextmanager
def reference_server(folder: Path) -> Iterator[tuple[str, str]]:
    key = "sk_live_bench_jobs_0123456789abcdef0123"
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "sankofa_sdk.server", "--port", "0", "--quiet", "--api-key", key],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().decode()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
    try:
        if match is None:
            raise RuntimeError(f"the reference server did not start: {first!r}")
        yield match.group(1), key
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        log.close()


def server_stats(url: str, key: str) -> dict[str, int]:
    def call(method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{url}/reference/v1/{path}", method=method, headers={"x-api-key": key}
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())

    call("POST", "wait?timeout=60")
    stats: dict[str, int] = call("GET", "stats")
    return stats


if __name__ == "__main__":
    sys.exit(main())
