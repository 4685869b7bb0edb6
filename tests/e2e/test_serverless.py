"""The serverless pattern against the reference server in its own process: ``spool_dir`` in the
function's temporary directory, ``flush_if_due()`` at the end of each invocation.

A warm instance is a process that makes one track call per invocation, then
``flush_if_due()``, and ends with ``os._exit`` after its last one (the platform reclaims it: no
shutdown, no ``atexit``). Time runs ten times faster than in production, rates and budget
alike: 500 requests per 6 s (the engine's 8.3 a second), ``flush_interval`` 0.2 s (2 s), so
3,000 invocations at 500 a second (50 a second) take 6 s instead of 60.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

from .external_server import ExternalServer
from .test_spool import events

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

INSTANCE = """
import json, os, sys, time
import sankofa_sdk

url, key, spool, name, invocations, rate, start_at, interval, window = sys.argv[1:10]
client = sankofa_sdk.Client(
    key, url, spool_dir=spool, flush_interval=float(interval), rate_limit=(500, float(window))
)
returned = []
started = float(start_at)
time.sleep(max(0.0, started - time.monotonic()))
for seq in range(int(invocations)):
    pause = started + seq / float(rate) - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    client.track("Invoked", {"instance": name, "seq": seq}, distinct_id="user_" + name)
    returned.append(client.flush_if_due())
elapsed = time.monotonic() - started
print(json.dumps({"returned": returned, "stats": client.stats(), "seconds": elapsed}), flush=True)
os._exit(0)  # reclaimed: what is still queued stays in the spool
"""


def start_instance(
    server: ExternalServer,
    spool: Path,
    name: str,
    invocations: int,
    rate: float,
    start_at: float,
    flush_interval: float = 0.2,
    window: int = 6,
) -> subprocess.Popen[str]:
    args = [server.url, server.api_key, str(spool), name, str(invocations), str(rate)]
    args += [str(start_at), str(flush_interval), str(window)]
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(INSTANCE), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def cadence(results: Any, flush_interval: float) -> float:
    """Requests the instances may have sent: one per ``flush_interval`` each (and a first)."""
    return sum(r["seconds"] / flush_interval + 1 for r in results)


def stored(server: ExternalServer) -> dict[str, Counter[int]]:
    assert server.wait_until_applied(timeout=30)
    found: dict[str, Counter[int]] = {}
    for event in events(server):
        props = event["properties"]
        found.setdefault(props["instance"], Counter())[props["seq"]] += 1
    return found


def adopt(server: ExternalServer, spool: Path) -> dict[str, Any]:
    """A later runtime in the same sandbox (after a crash or a timeout): a client on the same
    spool directory adopts what the reclaimed one left and delivers it."""
    code = (
        "import json, sys, sankofa_sdk\n"
        "c = sankofa_sdk.Client(sys.argv[2], sys.argv[1], spool_dir=sys.argv[3])\n"
        "c.shutdown(timeout=30)\n"
        "print(json.dumps(c.stats()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, server.url, server.api_key, str(spool)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("headers", [True, False], ids=["engine", "hosted-no-headers"])
def test_fifty_invocations_a_second_on_one_key_meet_no_429(
    external: Callable[..., ExternalServer], tmp_path: Path, headers: bool
) -> None:
    # Five warm instances, 600 invocations each, 3,000 in all at 50 a second (scaled). Each
    # sends at most one request per flush_interval: 5 x 0.5 a second against the budget's 8.3,
    # within it even for an engine that sends no rate-limit headers.
    server = external("--rate-limit", "500/6", *([] if headers else ["--no-rate-limit-headers"]))
    requests_before = server.stats()["requests"]
    start_at = time.monotonic() + 1.5  # every instance imported and ready by then
    names = [f"i{n}" for n in range(5)]
    instances = {
        name: start_instance(server, tmp_path / name, name, 600, 100.0, start_at) for name in names
    }
    results = {name: result_of(proc) for name, proc in instances.items()}
    requests = server.stats()["requests"] - requests_before - 1  # (that read counts itself)
    assert sum(r["stats"]["rate_limited"] for r in results.values()) == 0
    assert sum(r["stats"]["accepted"] for r in results.values()) == 3_000
    # At most one request per flush_interval per instance, not one per invocation.
    assert requests <= cadence(results.values(), 0.2), requests

    # Reclaimed after their last invocation, each lost no more than it said was still queued,
    # and only calls made after its last flush_if_due() that returned True (nothing queued).
    before = stored(server)
    for name, result in results.items():
        returned = result["returned"]
        last_true = max((seq for seq, ok in enumerate(returned) if ok), default=-1)
        missing = {seq for seq in range(600) if seq not in before.get(name, Counter())}
        assert len(missing) <= result["stats"]["queued"], (name, len(missing), result["stats"])
        assert all(seq > last_true for seq in missing), (name, sorted(missing)[:10], last_true)
        print(f"{name}: {len(missing)} not delivered when reclaimed (about flush_interval's worth)")

    # With the spool in a sandbox that a later runtime reuses, it delivers them: each call once.
    for name in names:
        assert adopt(server, tmp_path / name)["rate_limited"] == 0
    after = stored(server)
    for name in names:
        assert sorted(after[name]) == list(range(600)), name
        assert set(after[name].values()) == {1}, name
    assert server.stats()["duplicate_insert_ids"] == 0


def test_a_lone_warm_instance_sends_one_request_per_flush_interval_at_most(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    # Back to back (as fast as the process can), then ten invocations a second, against an
    # engine that sends no rate-limit headers: flush_if_due() never waits for the budget, so
    # no invocation pays for more than the one request it may carry.
    server = external("--no-rate-limit-headers")
    requests_before = server.stats()["requests"]
    back_to_back = start_instance(
        server, tmp_path / "fast", "fast", 1_000, 1e9, time.monotonic(), 0.5, 60
    )
    fast = result_of(back_to_back)
    paced = result_of(
        start_instance(server, tmp_path / "paced", "paced", 10, 10.0, time.monotonic(), 0.5, 60)
    )
    requests = server.stats()["requests"] - requests_before - 1
    assert fast["stats"]["rate_limited"] == paced["stats"]["rate_limited"] == 0
    assert requests <= cadence([fast, paced], 0.5), requests
    adopt(server, tmp_path / "fast")
    adopt(server, tmp_path / "paced")
    after = stored(server)
    assert sorted(after["fast"]) == list(range(1_000))
    assert sorted(after["paced"]) == list(range(10))
