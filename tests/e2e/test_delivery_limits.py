"""Delivery under the engine's real limits, with default settings, against the reference
server in its own process (issue: one request budget per key, outages, flaky networks).

Each client is a real process too: it tracks at a fixed rate for a while, flushes, and prints
its ``stats()`` as JSON. What arrived is read from the server's read API; every event carries
a unique ``$insert_id``, so "stored count == sent count and no duplicate insert ids" means every
operation was stored exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable

import pytest

from .external_server import ExternalServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

CLIENT = """
import json, sys, time
import sankofa_sdk

url, key, rate, seconds, name, method = sys.argv[1:7]
rate, seconds = int(rate), float(seconds)
client = sankofa_sdk.Client(key, url)
started = time.monotonic()
sent = 0
tick = 0.01  # send in small slices so the rate is steady, as a busy app's would be
total = max(1, round(rate * seconds))


def call(n):
    if method == "track":
        client.track("Load", {"process": name, "seq": n}, distinct_id="user_" + name)
    else:
        client.people_set({"seq": n}, distinct_id="user_%s_%d" % (name, n % 1000))


while sent < total:
    elapsed = time.monotonic() - started
    due = total if elapsed >= seconds else min(int(elapsed * rate) + int(tick * rate), total)
    while sent < due:
        call(sent)
        sent += 1
    if sent < total:
        time.sleep(tick)
last_call = time.monotonic()
flushed = client.flush(timeout=120)
done = time.monotonic()
stats = client.stats()
client.shutdown()
print(json.dumps({"sent": sent, "flushed": flushed, "drain_seconds": done - last_call,
                  "stats": stats}))
"""


def start_client(
    server: ExternalServer, rate: int, seconds: float, name: str, method: str = "track"
) -> subprocess.Popen[str]:
    args = [server.url, server.api_key, str(rate), str(seconds), name, method]
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CLIENT), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_of(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no result: {out!r} {err!r}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = err
    return result


def assert_all_delivered(result: dict[str, Any]) -> None:
    stats = result["stats"]
    assert result["flushed"], result
    assert stats["dropped"] == {} and stats["failed"] == 0, result
    assert stats["delivered"] == result["sent"], result


def test_a_fleet_of_eight_shares_one_request_budget(
    external: Callable[..., ExternalServer],
) -> None:
    # The engine's 500 requests per 60 s, ten times faster: 50 per 6 s. Eight processes at
    # 1,000 operations a second each need far more requests than that if batches stay small.
    server = external("--rate-limit", "50/6")
    started = time.monotonic()
    clients = [start_client(server, 1_000, 12, f"p{n}") for n in range(8)]
    results = [result_of(client, timeout=120) for client in clients]
    assert server.wait_until_applied(timeout=30)
    finished = time.monotonic() - started
    for result in results:
        assert_all_delivered(result)
    stats = server.stats()
    assert stats["events"] == 8 * 12_000 and stats["duplicate_insert_ids"] == 0, (
        stats,
        [r["stats"] for r in results],
        server.log(),
    )
    assert finished <= 45, f"everything stored only {finished:.1f}s after the start"


def test_an_eight_second_outage_loses_nothing(external: Callable[..., ExternalServer]) -> None:
    server = external()
    server.faults(fail_for=8, status=503)
    result = result_of(start_client(server, 5_000, 4, "outage"), timeout=120)
    assert_all_delivered(result)
    assert result["stats"]["retried"] > 0
    assert result["drain_seconds"] <= 30
    assert server.wait_until_applied(timeout=30)
    stats = server.stats()
    assert stats["events"] == 20_000 and stats["duplicate_insert_ids"] == 0


def test_a_flaky_network_loses_nothing(external: Callable[..., ExternalServer]) -> None:
    server = external()
    server.faults(flaky={"reset_share": 0.1, "error_share": 0.1, "seed": 7, "status": 500})
    result = result_of(start_client(server, 5_000, 4, "flaky"), timeout=120)
    assert_all_delivered(result)
    assert result["drain_seconds"] <= 30
    assert server.wait_until_applied(timeout=30)
    stats = server.stats()
    assert stats["events"] == 20_000 and stats["duplicate_insert_ids"] == 0


def test_a_scripts_tight_loop_is_not_dropped_at_the_queue(
    external: Callable[..., ExternalServer],
) -> None:
    # 200,000 people_set calls as fast as a loop can make them (the rate is out of reach).
    server = external()
    result = result_of(start_client(server, 10_000_000, 0.0001, "loop", "people"), timeout=180)
    assert result["sent"] == 1_000
    result = result_of(start_client(server, 200_000_000, 0.001, "loop", "people"), timeout=180)
    assert result["sent"] == 200_000
    assert_all_delivered(result)
