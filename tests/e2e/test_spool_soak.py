"""Soak: processes sharing one spool_dir track without pause while faults rotate and they die.

Four processes, each its own round, track about 300 calls a second each into one
``spool_dir``, against a server in its own process that applies every request as the engine
does (``--no-dedup``: a batch sent twice is stored twice). A driver rotates the server's
faults every few seconds (a 503 outage, connection resets, 0.2 s of latency, 429 bursts with
``Retry-After: 1``, 500s, normal service) and every few seconds ends a random process (mostly
SIGKILL, sometimes SIGTERM under Python's default handler, sometimes a clean end: flush for
up to 3 s, then shutdown) and starts a new one, a new round, in its place. At the end the
faults are cleared, the last processes end, and a last process on the same ``spool_dir``
delivers what is left. Then, from the server's read API:

- every call known to have returned is stored (nothing lost);
- a call stored more than once comes from a batch sent again after an ending cut its request
  in flight (a kill, or a clean shutdown whose flush did not finish): each such stretch of
  calls is at most one batch, there are at most as many stretches as such endings, and at
  most as many batches the server had answered 2xx came again. (The resend of a cut batch
  may also arrive while the server still handles the first request, in a 0.2 s latency for
  instance: then both are applied, and the server's ``repeated_after_success`` does not count
  it, since the first had no answer yet.)
- every stored copy of a call carries the call's one ``$insert_id``, and every stored event
  belongs to a round;
- the spool directory is empty.

The default test runs about 25 s (CI); ``pytest -m stress`` runs ``SANKOFA_SOAK_SECONDS``
(600 by default). Run with ``-s`` for the one-line summary.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from .external_server import ExternalServer
from .test_spool import Child, drain

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

TRACKER = """
import json, signal, sys, time
stop = []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(True))  # end cleanly: flush, shutdown
import sankofa_sdk

url, key, spool, round_id, rate = sys.argv[1:6]
rate = float(rate)
errors = []
client = sankofa_sdk.Client(key, url, spool_dir=spool, on_error=lambda e, op: errors.append(e))
print("started", flush=True)
started = time.monotonic()
n = 0
while not stop:
    due = int((time.monotonic() - started) * rate)
    while n < due and not stop:
        client.track("Spooled", {"round": round_id, "seq": n}, distinct_id="user_" + round_id)
        n += 1
    print("returned", n, flush=True)  # a lower bound of the calls that returned
    time.sleep(0.05)
print("returned", n, flush=True)
ok = client.flush(timeout=3)  # as an exit handler might: briefly, then shut down
stats = client.stats()
client.shutdown(timeout=2)
print("result", json.dumps({"flushed": ok, "stats": stats,
      "errors": [getattr(e, "reason", str(e)) for e in errors]}), flush=True)
"""

PROCESSES = 4
RATE = 300.0  # calls a second, each process
MAX_BATCH_SIZE = 5_000  # the client's default: the most calls one resent batch can carry
SIGNALS = {"kill": signal.SIGKILL, "sigterm": signal.SIGTERM, "clean": signal.SIGUSR1}


class Tracker(Child):
    """A process tracking at a steady rate until it is ended; its output goes to files (a
    process may live for minutes: a pipe nobody reads would fill)."""

    def __init__(self, server: ExternalServer, spool: Path, round_id: str, logs: Path) -> None:
        self.round_id = round_id
        self.ending = ""
        self.out_path = logs / f"{round_id}.out"
        self.err_path = logs / f"{round_id}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    textwrap.dedent(TRACKER),
                    server.url,
                    server.api_key,
                    str(spool),
                    round_id,
                    str(RATE),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                text=True,
            )

    def started(self) -> bool:
        """Its SIGUSR1 handler is in place."""
        return self.out_path.read_text(errors="replace").startswith("started\n")

    def end(self, how: str) -> None:
        if how == "clean" and not self.started():
            how = "kill"  # SIGUSR1 before the handler would kill it anyway: say so
        self.ending = how
        self.proc.send_signal(SIGNALS[how])

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        code = self.proc.wait(timeout)
        return (
            code,
            self.out_path.read_text(errors="replace"),
            self.err_path.read_text(errors="replace"),
        )


def test_soak_processes_sharing_a_spool_dir_under_rotating_faults(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    soak(external, tmp_path, seconds=25, seed=1)


@pytest.mark.stress
def test_stress_soak(external: Callable[..., ExternalServer], tmp_path: Path) -> None:
    soak(external, tmp_path, seconds=float(os.environ.get("SANKOFA_SOAK_SECONDS", 600)), seed=2)


def fault_phases(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """One of each fault, in a random order; each lasts 2 to 4 s."""
    phases: list[tuple[str, dict[str, Any]]] = [
        ("normal", {}),
        ("503 outage", {"fail_for": rng.uniform(2, 4), "status": 503}),
        ("resets", {"reset_connections": rng.randint(2, 6)}),
        ("latency", {"latency": 0.2}),
        ("429 burst", {"fail_next": rng.randint(2, 8), "status": 429, "retry_after": 1}),
        ("500s", {"fail_next": rng.randint(1, 4), "status": 500}),
    ]
    rng.shuffle(phases)
    return phases


def soak(
    external: Callable[..., ExternalServer], tmp_path: Path, *, seconds: float, seed: int
) -> None:
    began = time.monotonic()
    # A request budget the processes never spend (the engine's 500 a minute, shared by all of
    # them, would make them wait out 60 s windows): its headers keep their pacing informed, and
    # the 429s come from the bursts below.
    server = external("--no-dedup", "--rate-limit", "6000/60")
    spool = tmp_path / "spool"
    logs = tmp_path / "processes"
    logs.mkdir()
    rng = random.Random(seed)
    rounds = iter(f"r{n}" for n in range(1_000_000))
    live = [Tracker(server, spool, next(rounds), logs) for _ in range(PROCESSES)]
    ended: list[Tracker] = []
    phases_seen: Counter[str] = Counter()
    phases: list[tuple[str, dict[str, Any]]] = []
    injected = 0

    # The workload: the driver sleeps between its steps (the schedule), then acts.
    work_until = began + max(5.0, seconds - 9.0)  # the rest: the ending, the drain, the checks
    now = time.monotonic()
    next_fault, next_end = now, now + rng.uniform(1.5, 3.5)
    while now < work_until:
        if now >= next_fault:
            phases = phases or fault_phases(rng)
            name, switch = phases.pop()
            injected += server.stats()["faults_injected"]  # clear() sets it back to 0
            server.faults(clear=True)
            if switch:
                server.faults(**switch)
            phases_seen[name] += 1
            next_fault = now + rng.uniform(2, 4)
        if now >= next_end:
            victim = live.pop(rng.randrange(len(live)))
            victim.end(rng.choices(["kill", "sigterm", "clean"], [6, 2, 2])[0])
            ended.append(victim)
            live.append(Tracker(server, spool, next(rounds), logs))
            next_end = now + rng.uniform(1.5, 3.5)
        time.sleep(max(0.0, min(next_fault, next_end, work_until) - time.monotonic()))
        now = time.monotonic()

    # The ending: normal service, each way of ending once more, then a last process drains.
    ending_began = time.monotonic()
    injected += server.stats()["faults_injected"]
    server.faults(clear=True)
    for tracker, how in zip(
        live, ["clean", "sigterm", "kill", *["kill"] * len(live)], strict=False
    ):
        tracker.end(how)
        ended.append(tracker)
    returned: dict[str, int] = {}
    flushed: dict[str, bool] = {}
    for tracker in ended:
        code, out, err = tracker.finish()
        returned[tracker.round_id] = tracker.returned(out)
        if tracker.ending == "clean":
            assert code == 0, f"{tracker.round_id}: {err[-3000:]}"
            flushed[tracker.round_id] = bool(tracker.result(out)["flushed"])
    drain_began = time.monotonic()
    drained = drain(server, spool)

    # The checks, from the server's read API.
    read_began = time.monotonic()
    assert server.wait_until_applied(timeout=60)
    copies = {round_id: stored_copies(server, round_id) for round_id in returned}
    stats = server.stats()
    read_seconds = time.monotonic() - read_began
    stored = {
        r: Counter({seq: len(ids) for seq, ids in calls.items()}) for r, calls in copies.items()
    }
    ending = {tracker.round_id: tracker.ending for tracker in ended}
    endings = Counter(ending.values())
    kills = endings["kill"] + endings["sigterm"]
    cuts = kills + sum(not ok for ok in flushed.values())  # endings that may cut a request
    lost: dict[str, list[int]] = {}
    for round_id, at_least in returned.items():
        seqs = stored[round_id]
        top = max(at_least, max(seqs, default=-1) + 1)  # a stored call: all before it returned
        missing = [seq for seq in range(top) if seq not in seqs]
        if missing:
            lost[round_id] = missing
    rows = sum(sum(seqs.values()) for seqs in stored.values())
    extra = rows - sum(len(seqs) for seqs in stored.values())
    doubled = {r: sorted(s for s, n in seqs.items() if n > 1) for r, seqs in stored.items()}
    doubled = {r: s for r, s in doubled.items() if s}
    doubled_runs = {r: runs_of(s) for r, s in doubled.items()}
    stretches = sum(map(len, doubled_runs.values()))
    several_ids = [
        (r, seq, sorted(set(ids)))
        for r, calls in copies.items()
        for seq, ids in calls.items()
        if len(set(ids)) > 1
    ]
    print(
        f"\nsoak {seconds:.0f}s seed={seed}: {time.monotonic() - began:.1f}s in all"
        f" (work {ending_began - began:.1f}s, ending {drain_began - ending_began:.1f}s,"
        f" drain {read_began - drain_began:.1f}s, read {read_seconds:.1f}s)"
        f" processes={len(ended)} returned={sum(returned.values())}"
        f" stored={sum(len(seqs) for seqs in stored.values())} events={stats['events']}"
        f" lost={sum(map(len, lost.values()))} extra_copies={extra} in {stretches} stretches"
        f" (of {', '.join(f'{r} ({ending[r]}) {ranges(s)}' for r, s in doubled.items()) or '-'})"
        f" kills={kills} (sigkill {endings['kill']}, sigterm {endings['sigterm']})"
        f" clean={endings['clean']} (unflushed {cuts - kills})"
        f" repeated_after_success={stats['repeated_after_success']}"
        f" repeated_keys={stats['repeated_keys']} requests={stats['requests']}"
        f" faults_injected={injected} phases={dict(phases_seen)}"
    )

    def tails() -> str:
        rounds_of_interest = list(lost)[:3] or list(doubled)[:3]
        parts = [f"server log:\n{server.log()}"]
        for tracker in ended:
            if tracker.round_id in rounds_of_interest:
                err = tracker.err_path.read_text(errors="replace")[-2000:]
                parts.append(f"{tracker.round_id} ({tracker.ending}) stderr:\n{err}")
        return "\n".join(parts)

    assert drained["flushed"], drained
    assert rows == stats["events"], "events stored that no tracked round explains"
    assert not lost, (
        "calls that returned and were not stored: "
        + "; ".join(
            f"{r} (ended by {ending[r]}, returned {returned[r]}): {ranges(s)}"
            for r, s in lost.items()
        )
        + "\n"
        + tails()
    )
    # Copies beyond the first: only from batches sent again after an ending cut them in
    # flight, one stretch of one round's calls each, at most one per such ending.
    assert stats["repeated_after_success"] <= cuts, tails()
    assert stretches <= cuts, (
        f"{stretches} stretches of calls stored twice, {cuts} endings that could cut: "
        f"{ {r: (ending[r], ranges(s)) for r, s in doubled.items()} }\n{tails()}"
    )
    assert all(b - a < MAX_BATCH_SIZE for runs in doubled_runs.values() for a, b in runs)
    assert extra <= stats["repeated_keys"] * MAX_BATCH_SIZE, tails()
    assert extra == stats["duplicate_insert_ids"]
    assert not several_ids, f"calls stored under several $insert_ids: {several_ids[:5]}"
    assert not any(spool.iterdir()), f"left in the spool: {sorted(spool.rglob('*'))[:20]}"


def stored_copies(server: ExternalServer, round_id: str) -> dict[int, list[str]]:
    """The stored copies of one round's calls: seq -> the $insert_id of each copy.

    Read for the round's person alone: the read API pages every event newest first, and at a
    soak's hundreds of thousands of events each page of all of them costs seconds.
    """
    calls: dict[int, list[str]] = {}
    with requests.Session() as session:
        session.headers["x-api-key"] = server.api_key
        while True:
            response = session.get(
                f"{server.url}/reference/v1/people/user_{round_id}/events",
                params={"limit": 500, "offset": sum(map(len, calls.values()))},
                timeout=60,
            )
            if response.status_code == 404:
                return calls  # nothing of this round was stored
            response.raise_for_status()
            page = response.json()["events"]
            for event in page:
                props = event["properties"]
                assert props["round"] == round_id, props
                calls.setdefault(props["seq"], []).append(props["$insert_id"])
            if len(page) < 500:
                return calls


def runs_of(seqs: list[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7]`` as ``[(1, 3), (7, 7)]`` (sorted numbers)."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return [(a, b) for a, b in runs]


def ranges(seqs: list[int]) -> str:
    """``[1, 2, 3, 7]`` as ``1-3,7``."""
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in runs_of(seqs))
