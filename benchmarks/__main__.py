"""Side-by-side benchmarks: ``bash benchmarks/run [--quick]`` (or ``python -m benchmarks``).

Starts the counting sink, then for each run and each configuration measures every figure for
every SDK, each in a fresh subprocess, rotating the order of the SDKs from run to run. Then,
once, the delivery scenarios of issue 9 (a fleet through a request budget, an outage, a flaky
network), each SDK with its production defaults, in fresh processes against the same sink with
its limiter or faults on. Prints min/median/max and the ratio to posthog-python, checks the
targets of issue 5, and writes everything (raw results included) to
``benchmarks/results/<UTC time>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from . import _report, _serverless
from ._control import WIRE, SinkControl, closed_port_url, idle_memory_penalty
from ._sdks import BASE_ENV, BASE_SDKS, CONFIGS, EXTRA_SDKS, SDKS

DELIVERY_SDKS = ("sankofa", "sankofa-base", "posthog", "segment")
"""The delivery scenarios compare the SDKs as shipped (and sankofa_sdk from ``--base``); the
spool variant is measured on speed."""

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

FULL = {
    "runs": 3,
    "hot_n": 10_000,
    "throughput_n": 200_000,
    "throughput_n_equal": 50_000,
    "down_n": 9_000,
    "server_n": 200_000,
    "app_requests": 8_000,
}
QUICK = {
    "runs": 1,
    "hot_n": 2_000,
    "throughput_n": 10_000,
    "throughput_n_equal": 10_000,
    "down_n": 2_000,
    "server_n": 20_000,
    "app_requests": 2_000,
}
APP_WORK = 20_000
"""Iterations of pure-Python work per request in the app-impact figure: about 1 ms here, so the
loop tracks about 1,000 events a second."""
UNPACED = {"rate_limit": None}
"""sankofa_sdk with pacing off, as against a self-hosted engine without the 500/min limit: the
throughput one process and one core can deliver when the key's budget is not the limit."""

# The delivery scenarios of issue 9, each SDK with its production defaults. The engine's budget
# is 500 requests per 60 s per key; the fleet runs it 10x faster in time (50 per 6 s), as the
# end-to-end tests do, so a run takes a minute rather than ten. ``limit_s``: how long after the
# start (fleet) or after the last call (the others) the scenario waits for everything.
DELIVERY: dict[str, dict[str, Any]] = {
    "fleet": {
        "procs": 8,
        "rate": 1_000,
        "seconds": 12,
        "rate_limit": {"limit": 50, "window": 6, "headers": True},
        "limit_s": 60,
    },
    "fleet_blind": {
        "procs": 8,
        "rate": 1_000,
        "seconds": 12,
        "rate_limit": {"limit": 50, "window": 6, "headers": False},
        "limit_s": 60,
    },
    # Answers without headers cannot teach a client that the window is 6 s rather than the
    # engine's 60: sankofa_sdk's defaults then wait a whole 60 s window after a 429. This is
    # the same fleet with sankofa_sdk told the scaled budget, as a user of such an engine would.
    "fleet_blind_told": {
        "procs": 8,
        "rate": 1_000,
        "seconds": 12,
        "rate_limit": {"limit": 50, "window": 6, "headers": False},
        "limit_s": 60,
        "sdks": ["sankofa", "sankofa-base"],
        "options": {"rate_limit": [50, 6]},
    },
    "outage": {"procs": 1, "rate": 5_000, "seconds": 4, "outage_s": 8, "limit_s": 45},
    "flaky": {
        "procs": 1,
        "rate": 5_000,
        "seconds": 4,
        "flaky": {"reset_share": 0.1, "error_share": 0.1, "seed": 7, "status": 500},
        "limit_s": 45,
    },
}
# A smoke run of the same paths: a budget small enough that the quick fleet meets 429s too.
_QUICK_FLEET = {"procs": 2, "rate": 500, "seconds": 3, "limit_s": 6}
DELIVERY_QUICK: dict[str, dict[str, Any]] = {
    "fleet": {
        **DELIVERY["fleet"],
        **_QUICK_FLEET,
        "rate_limit": {"limit": 10, "window": 6, "headers": True},
    },
    "fleet_blind": {
        **DELIVERY["fleet_blind"],
        **_QUICK_FLEET,
        "rate_limit": {"limit": 10, "window": 6, "headers": False},
    },
    "fleet_blind_told": {
        **DELIVERY["fleet_blind_told"],
        **_QUICK_FLEET,
        "rate_limit": {"limit": 10, "window": 6, "headers": False},
        "options": {"rate_limit": [10, 6]},
    },
    "outage": {**DELIVERY["outage"], "rate": 1_000, "seconds": 1, "outage_s": 2, "limit_s": 5},
    "flaky": {**DELIVERY["flaky"], "rate": 1_000, "seconds": 1, "limit_s": 5},
}
FIGURES = (
    "sink",
    "hot_path",
    "throughput",
    "throughput_unpaced",
    "unreachable",
    "app_impact",
    "server",
    *DELIVERY,
    "serverless",
)
# The equal-settings throughput run is shorter: posthog-python's caller alone needs ~60 s for
# 200,000 captures here, and at full load its batches fill long before any interval expires,
# so its equal settings (flush_interval 0.5 s instead of 5 s) change nothing there.
# 9,000 timed calls plus 500 warm-up calls fit every SDK's default queue (10,000), so the
# server-down figures run with production defaults, queue bound included.


class Harness:
    def __init__(self, args: argparse.Namespace, sizes: dict[str, int], out: Path) -> None:
        self.args = args
        self.sizes = sizes
        self.logs = out.with_suffix("")  # a folder of child logs next to the JSON
        self.logs.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.sink_url = ""

    def child(
        self, module: str, spec: dict[str, Any], timeout: float, log_name: str
    ) -> dict[str, Any]:
        """Run one measurement process; its last ``RESULT`` line is the answer."""
        with open(self.logs / f"{log_name}.log", "w") as log:
            proc = subprocess.run(
                [sys.executable, "-m", module, json.dumps(spec)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=timeout,
                check=False,
            )
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[7:])
                return result
        raise RuntimeError(
            f"{module} {spec.get('task', '')} {spec.get('sdk', '')} failed "
            f"(exit {proc.returncode}); see {self.logs / log_name}.log"
        )

    def measure(
        self, run: int, config: str, task: str, sdk: str, spec: dict[str, Any], timeout: float
    ) -> None:
        name = f"r{run}-{config}-{task}-{sdk}"
        started = time.monotonic()
        base = {"task": task, "sdk": sdk, "config": config, "sink": self.sink_url}
        try:
            result = self.child("benchmarks._child", {**base, **spec}, timeout, name)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:  # report it, measure the rest
            self.failures.append(f"{name}: {exc}")
            print(f"  {name:<40} FAILED: {exc}", flush=True)
            return
        seconds = time.monotonic() - started
        self.records.append(
            {
                "run": run,
                "config": config,
                "task": task,
                "sdk": sdk,
                "seconds": seconds,
                "result": result,
            }
        )
        print(f"  {name:<40} {seconds:6.1f}s  {_headline(task, result)}", flush=True)

    # --- figure 7: what the SDK costs an app's own request loop -------------------------------

    def app_impact(self, run: int, order: list[str]) -> None:
        """The loop without an SDK before and after the SDKs (so drift in the machine's speed
        during the run cancels out), each in a fresh process; slowdowns against their mean."""
        spec = {"requests": self.sizes["app_requests"], "work": APP_WORK}
        first = len(self.records)
        for sdk in ["none", *order, "none"]:
            self.measure(run, "defaults", "app_impact", sdk, spec, 300)
        measured = self.records[first:]
        nones = [r["result"] for r in measured if r["sdk"] == "none"]
        if not nones:
            return
        base = sum(r["per_request_us"] for r in nones) / len(nones)
        base_cpu = sum(r["cpu_s"] / r["requests"] for r in nones) / len(nones)
        for record in measured:
            result = record["result"]
            result["baseline_us"] = base
            result["slowdown_pct"] = (result["per_request_us"] / base - 1) * 100
            # The same from CPU time (all threads): steadier on a busy machine than wall time.
            result["cpu_overhead_pct"] = (result["cpu_s"] / result["requests"] / base_cpu - 1) * 100
            if record["sdk"] != "none":
                print(
                    f"  r{run}-app_impact-{record['sdk']:<28} {result['slowdown_pct']:+.2f}% "
                    f"wall, {result['cpu_overhead_pct']:+.2f}% CPU",
                    flush=True,
                )

    # --- the delivery scenarios (issue 9) ------------------------------------------------------

    def delivery(self, scenario: str, sdk: str) -> None:
        """One scenario for one SDK: its processes, the sink's limiter or faults, the count."""
        spec = (DELIVERY_QUICK if self.args.quick else DELIVERY)[scenario]
        name = f"delivery-{scenario}-{sdk}"
        started = time.monotonic()
        control = SinkControl(self.sink_url)
        try:
            result = self._delivery(control, scenario, sdk, spec, name)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            self.failures.append(f"{name}: {exc!r}")
            print(f"  {name:<40} FAILED: {exc!r}", flush=True)
            return
        finally:
            with contextlib.suppress(RuntimeError, OSError):
                control.faults(clear=True)  # never leave a fault on for the next measurement
            control.close()
        seconds = time.monotonic() - started
        self.records.append(
            {
                "run": 0,
                "config": "defaults",
                "task": scenario,
                "sdk": sdk,
                "seconds": seconds,
                "result": result,
            }
        )
        print(f"  {name:<40} {seconds:6.1f}s  {_report.delivery_headline(result)}", flush=True)

    def _delivery(
        self, control: SinkControl, scenario: str, sdk: str, spec: dict[str, Any], name: str
    ) -> dict[str, Any]:
        procs, limit_s = spec["procs"], spec["limit_s"]
        control.faults(clear=True)
        control.reset(sdk)  # also forgets this SDK's rate-limit windows
        # Time to start the processes and import the SDK (~0.15 s each here), so that every
        # process makes its first call at the same instant.
        startup = (1.0 if self.args.quick else 2.0) + 0.25 * procs
        start_at = time.monotonic() + startup
        if "rate_limit" in spec:
            control.faults(rate_limit=spec["rate_limit"])
        if "outage_s" in spec:
            control.faults(outage={"from": start_at, "seconds": spec["outage_s"], "status": 503})
        if "flaky" in spec:
            control.faults(flaky=spec["flaky"])
        # A fleet shares one deadline from the start; a single process waits limit_s after
        # its own last call (a slow caller's calls take longer than the scenario's seconds).
        deadline = start_at + limit_s if procs > 1 else None
        child = {
            "task": "delivery",
            "sdk": sdk,
            "sink": self.sink_url,
            "rate": spec["rate"],
            "seconds": spec["seconds"],
            "start_at": start_at,
            "deadline": deadline,
            "drain_s": limit_s,
            "options": spec.get("options"),
        }
        calls_bound = max(3 * spec["seconds"], spec["seconds"] + 10)
        timeout = startup + calls_bound + limit_s + 30
        children = [self._spawn({**child, "index": i}, f"{name}-p{i}") for i in range(procs)]
        results = [self._collect(proc, log, timeout) for proc, log in children]
        sent = sum(r["sent"] for r in results)
        refused = sum(r["refused"] for r in results)
        failed = sum(r["failed"] for r in results)
        queued = sum(r["queued_at_end"] for r in results)
        last_call = max(r["last_call"] for r in results)
        end = deadline if deadline is not None else last_call + limit_s
        # Everything the SDKs did not give up on should be there; a silent loss waits out the end.
        control.wait(sdk, sent - refused - failed, max(0.0, end - time.monotonic()))
        everything = control.all_stats()
        got = everything["sdks"][WIRE.get(sdk, sdk)]
        stored = got["unique"]
        since = start_at if procs > 1 else last_call
        all_stored_s = got["grew_at"] - since if stored >= sent and got["grew_at"] else None
        windows = [w for key, w in everything["windows"].items() if key.startswith(f"{sdk}:")]
        statuses = got["statuses"]
        requests = got["requests"]
        return {
            "scenario": scenario,
            "spec": spec,
            "procs": procs,
            "total": sum(r["total"] for r in results),
            "sent": sent,
            "stored": stored,
            "lost": sent - stored,
            "refused": refused,
            "failed": failed,
            "queued_at_end": queued,
            "unaccounted": max(0, sent - stored - refused - failed - queued),
            "duplicates": got["duplicates"],
            "replayed_ops": got["replayed_ops"],
            "requests": requests,
            "statuses": statuses,
            "share_429": statuses.get("429", 0) / requests if requests else 0.0,
            "max_requests_per_window": max((max(w) for w in windows if w), default=None),
            "windows": windows[0] if len(windows) == 1 else windows,
            "all_stored_s": all_stored_s,
            "measured_from": "start" if procs > 1 else "last call",
            "limit_s": limit_s,
            "last_stored_s": got["grew_at"] - since if got["grew_at"] else None,
            "calls_s": last_call - start_at,
            "late_start_s": max(r["started"] - start_at for r in results),
            "drained": sum(1 for r in results if r["drained_at"] is not None),
            "children": results,
            "sink": got,
        }

    def _spawn(self, spec: dict[str, Any], log_name: str) -> tuple[subprocess.Popen[str], Path]:
        log = self.logs / f"{log_name}.log"
        with open(log, "w") as err:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks._child", json.dumps(spec)],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        return proc, log

    @staticmethod
    def _collect(proc: subprocess.Popen[str], log: Path, timeout: float) -> dict[str, Any]:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # only this child, which we started; its result is lost
            proc.communicate()
            raise
        for line in reversed(out.splitlines()):
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[7:])
                return result
        raise RuntimeError(f"delivery child failed (exit {proc.returncode}); see {log}")

    # --- the sink's own capacity --------------------------------------------------------------

    def sink_capacity(self, run: int, procs: int = 2) -> None:
        total = self.sizes["server_n"]
        control = SinkControl(self.sink_url)
        control.reset("sankofa")
        start_at = time.monotonic() + 2.0
        loads = _start_loadgens(self.sink_url, "sk_test_sink", total, procs, f"sink{run}", start_at)
        results = [_finish(p, 120) for p in loads]
        got = control.wait("sankofa", sum(r["sent_ops"] for r in results), 60)
        elapsed = got["last_at"] - min(r["t_start"] for r in results)
        result = {
            "ops": got["unique"],
            "seconds": elapsed,
            "ops_per_s": got["unique"] / elapsed,
            "mb_per_s": got["json_bytes"] / elapsed / 1e6,
            "procs": procs,
        }
        self.records.append(
            {"run": run, "config": "-", "task": "sink", "sdk": "-", "result": result}
        )
        print(f"  r{run}-sink capacity {'':<24} {result['ops_per_s']:>10,.0f} ops/s", flush=True)

    # --- figure 6: the reference server -------------------------------------------------------

    def reference_server(self, run: int) -> None:
        n = self.sizes["server_n"]
        with _server_host(self.logs / f"r{run}-server-client.log") as (info, ask):
            load = self.child(
                "benchmarks._child",
                {
                    "task": "server_client_load",
                    "url": info["url"],
                    "api_key": info["api_key"],
                    "n": n,
                },
                300,
                f"r{run}-server-client-load",
            )
            applied = ask({"op": "wait", "timeout": 120})
        result = {
            "n": n,
            "ops_per_s": n / (applied["t"] - load["t0"]),
            "client_flushed_s": load["t_flushed"] - load["t0"],
            "client_stats": load["stats"],
            "server": applied,
        }
        self._server_record(run, "server_client", result)
        with _server_host(self.logs / f"r{run}-server-raw.log") as (info, ask):
            start_at = time.monotonic() + 3.0
            loads = _start_loadgens(info["url"], info["api_key"], n, 3, f"raw{run}", start_at)
            results = [_finish(p, 300) for p in loads]
            applied = ask({"op": "wait", "timeout": 120})
        sent = sum(r["sent_ops"] for r in results)
        statuses: dict[str, int] = {}
        for r in results:
            for status, count in r["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        t0 = min(r["t_start"] for r in results)
        result = {
            "n": n,
            "sent": sent,
            "ops_per_s": sent / (applied["t"] - t0),
            "accepted_ops_per_s": sent / (max(r["t_end"] for r in results) - t0),
            "statuses": statuses,
            "server": applied,
        }
        self._server_record(run, "server_raw", result)

    def _server_record(self, run: int, task: str, result: dict[str, Any]) -> None:
        self.records.append(
            {"run": run, "config": "-", "task": task, "sdk": "sankofa", "result": result}
        )
        print(f"  r{run}-{task:<36} {result['ops_per_s']:>10,.0f} ops/s applied", flush=True)


def _headline(task: str, r: dict[str, Any]) -> str:
    if task == "hot_path":
        return f"track p50 {r['track']['p50']:.1f} µs p99 {r['track']['p99']:.1f} µs"
    if task == "app_impact":
        return f"{r['per_request_us']:.1f} µs per request, {r['events_per_s']:,.0f} events/s"
    if task in ("throughput", "throughput_unpaced"):
        return (
            f"{r['ops_per_s']:,.0f} ops/s, {r['cpu_ms_per_1000']:.0f} ms CPU/1000, "
            f"lost {r['dropped_by_sdk'] + r['missing']}"
        )
    if task == "unreachable":
        return f"{r['bytes_per_op']:.0f} B/op, track p99 {r['track']['p99']:.1f} µs (down)"
    return ""


def _start_loadgens(
    url: str, api_key: str, total: int, procs: int, seed: str, start_at: float
) -> list[subprocess.Popen[str]]:
    share = total // procs
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks._loadgen",
                json.dumps(
                    {
                        "url": url,
                        "api_key": api_key,
                        "ops": share,
                        "seed": f"{seed}-{i}",
                        "start_at": start_at,
                    }
                ),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(procs)
    ]


def _finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    raise RuntimeError(f"load generator failed (exit {proc.returncode})")


@contextlib.contextmanager
def _server_host(log_path: Path) -> Iterator[tuple[dict[str, Any], Any]]:
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._server"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def ask(command: dict[str, Any]) -> dict[str, Any]:
            stdin.write(json.dumps(command) + "\n")
            stdin.flush()
            answer: dict[str, Any] = json.loads(stdout.readline())
            return answer

        try:
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"the reference server did not start; see {log_path}")
            yield json.loads(line), ask
        finally:
            stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _sink() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._sink"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield json.loads(proc.stdout.readline())["url"]
    finally:
        proc.stdin.close()  # the sink stops when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    versions = {}
    for dist in (
        "sankofa-sdk",
        "posthog",
        "segment-analytics-python",
        "requests",
        "opentelemetry-sdk",
        "prometheus-client",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "commit": commit,
        "versions": versions,
    }


def _reference_server_available() -> bool:
    try:
        from sankofa_sdk.server import ReferenceServer  # noqa: F401
    except ImportError:
        return False
    return True


def _previous(out: Path, chosen: Optional[str]) -> Optional[Path]:
    """The results file to compare with: the one named, or the latest earlier run of this kind."""
    if chosen:
        return Path(chosen)
    kind = "-quick" if out.stem.endswith("-quick") else ""
    earlier = sorted(
        p
        for p in RESULTS.glob("*.json")
        if not p.name.startswith("profile") and p.stem.endswith("-quick") == bool(kind) and p < out
    )
    return earlier[-1] if earlier else None


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bash benchmarks/run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and one run: a smoke run")
    parser.add_argument("--runs", type=int, help="alternating runs (default 3, or 1 with --quick)")
    parser.add_argument(
        "--sdks",
        default=",".join(SDKS),
        help=f"comma-separated subset of SDKs (default {','.join(SDKS)}; also "
        f"{','.join(EXTRA_SDKS)}: sankofa_sdk with its metrics integrations on)",
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help="defaults,equal")
    parser.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help=f"comma-separated subset of {','.join(FIGURES)}",
    )
    parser.add_argument(
        "--base",
        metavar="TREE",
        help="another checkout of sankofa_sdk (e.g. a git worktree of the commit before a "
        "change): --sdks may then name sankofa-base and sankofa-spool-base, measured from it "
        "in the same run, in the same rotation",
    )
    parser.add_argument(
        "--compare",
        metavar="RESULTS.json",
        help="an earlier results file to compare with (default: the latest of the same kind)",
    )
    args = parser.parse_args(argv)
    sdks = SDKS + EXTRA_SDKS + (BASE_SDKS if args.base else ())
    for name, allowed in (("sdks", sdks), ("configs", CONFIGS), ("figures", FIGURES)):
        chosen = getattr(args, name).split(",")
        if not chosen or any(c not in allowed for c in chosen):
            parser.error(f"--{name} takes a subset of {','.join(allowed)}")
    if args.base:
        base = os.path.abspath(args.base)
        if not os.path.isfile(os.path.join(base, "sankofa_sdk", "__init__.py")):
            parser.error(f"--base {args.base}: no sankofa_sdk package there")
        os.environ[BASE_ENV] = base  # the measurement processes inherit it
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.runs:
        sizes["runs"] = args.runs
    sdks, configs, figures = args.sdks.split(","), args.configs.split(","), args.figures.split(",")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    harness = Harness(args, sizes, out)
    info = machine()
    info["load_before"] = os.getloadavg()
    info["idle_memory_penalty"] = idle_memory_penalty()
    print(
        f"{info['date']} · {info['cpu']} · {info['cores']} cores · Python {info['python']} · "
        f"load {info['load_before'][0]:.2f} · memory idle 0.3 s is "
        f"{info['idle_memory_penalty']:.0f}x slower to touch · {info['commit']}\n"
        f"sizes {sizes} · SDKs {info['versions']}",
        flush=True,
    )
    started = time.monotonic()
    down_url = closed_port_url()
    with _sink() as sink_url:
        harness.sink_url = sink_url
        for run in range(sizes["runs"]):
            order = sdks[run % len(sdks) :] + sdks[: run % len(sdks)]
            print(f"run {run + 1}/{sizes['runs']} (order {', '.join(order)})", flush=True)
            if "sink" in figures:
                harness.sink_capacity(run)
            for config in configs:
                for sdk in order if "hot_path" in figures else []:
                    harness.measure(run, config, "hot_path", sdk, {"n": sizes["hot_n"]}, 600)
                n = sizes["throughput_n" if config == "defaults" else "throughput_n_equal"]
                for sdk in order if "throughput" in figures else []:
                    harness.measure(run, config, "throughput", sdk, {"n": n}, 600)
                if "throughput_unpaced" in figures and config == "defaults":
                    for sdk in (s for s in order if s.startswith("sankofa")):
                        spec = {"n": n, "options": UNPACED}
                        harness.measure(run, config, "throughput_unpaced", sdk, spec, 600)
                for sdk in order if "unreachable" in figures else []:
                    spec = {"n": sizes["down_n"], "down_url": down_url}
                    harness.measure(run, config, "unreachable", sdk, spec, 300)
            if "app_impact" in figures:
                harness.app_impact(run, order)
            if "server" in figures:
                if _reference_server_available():
                    try:
                        harness.reference_server(run)
                    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                        harness.failures.append(f"r{run} reference server: {exc!r}")
                        print(f"  r{run} reference server FAILED: {exc!r}", flush=True)
                else:
                    print("  reference server: sankofa_sdk.server is not there yet; skipped")
        # The delivery scenarios run once, after the timed figures: each takes up to a minute
        # per SDK, and what they measure (operations stored, requests) varies little run to run.
        scenarios = [f for f in DELIVERY if f in figures]
        if scenarios:
            print("delivery under the engine's limits (production defaults)", flush=True)
        for scenario in scenarios:
            for sdk in sdks:
                if sdk in DELIVERY[scenario].get("sdks", DELIVERY_SDKS):
                    harness.delivery(scenario, sdk)
        if "serverless" in figures:
            print("serverless: one warm instance, the end of each invocation", flush=True)
            _serverless.measure(harness, sdks, args.quick)
        baseline = harness.child(
            "benchmarks._child", {"task": "workload_only", "n": 100_000}, 120, "workload-only"
        )
    info["load_after"] = os.getloadavg()
    info["seconds"] = time.monotonic() - started
    summary = _report.summarise(harness.records, sdks, configs)
    servers = _report.server_summary(harness.records)
    sink_values = [r["result"]["ops_per_s"] for r in harness.records if r["task"] == "sink"]
    sink = _report.spread(sink_values) if sink_values else None
    found = _report.targets(summary, servers)
    table = _report.markdown(summary, servers, sdks, sink)
    delivery = _report.delivery_markdown(harness.records, sdks)
    if delivery:
        table += "\nDelivery under the engine's limits (production defaults, one run):\n\n"
        table += delivery
    serverless = _serverless.markdown(harness.records)
    if serverless:
        table += "\nServerless, the end of an invocation (one run):\n\n" + serverless
    text = (
        f"{table}\n"
        f"Workload alone (building the dicts, no SDK): {baseline['cpu_ms_per_1000']:.1f} ms CPU per 1,000.\n"
        f"Load average {info['load_before'][0]:.2f} before, {info['load_after'][0]:.2f} after; "
        f"{info['seconds']:.0f} s in all.\n\nTargets (production defaults, medians):\n"
        f"{_report.targets_text(found)}\n"
    )
    if harness.failures:
        text += "\nFailed measurements:\n" + "".join(f"- {f}\n" for f in harness.failures)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    document = {
        "machine": info,
        "sizes": sizes,
        "sdks": sdks,
        "configs": configs,
        "summary": summary,
        "reference_server": servers,
        "sink": sink,
        "workload_only": baseline,
        "targets": found,
        "failures": harness.failures,
        "records": harness.records,
    }
    previous = _previous(out, args.compare)
    if previous is not None:
        comparison = _report.compare(json.loads(previous.read_text()), document)
        print(f"\n{comparison}")
        text += f"\n{comparison}"
    out.write_text(json.dumps(document, indent=1))
    header = f"{info['date']} · {info['cpu']}, {info['cores']} cores · Python {info['python']} · {info['commit']}\n\n"
    out.with_suffix(".md").write_text(header + text)
    print(f"wrote {out.relative_to(REPO)} and {out.with_suffix('.md').relative_to(REPO)}")
    return 1 if harness.failures else 0


if __name__ == "__main__":
    sys.exit(main())
