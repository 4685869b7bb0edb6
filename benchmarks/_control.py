"""Talking to the sink from the harness and from the measured processes; small shared helpers."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import socket
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

WIRE = {
    "sankofa-spool": "sankofa",
    "sankofa-base": "sankofa",
    "sankofa-spool-base": "sankofa",
    "sankofa-metrics": "sankofa",
}
"""Variants that speak another SDK's wire format: the sink counts them under that name."""


class SinkControl:
    """The sink's control routes over one keep-alive connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=600)

    def _request(self, method: str, path: str, body: bytes = b"") -> dict[str, Any]:
        for attempt in range(2):
            try:
                self._conn.request(method, path, body=body if method == "POST" else None)
                response = self._conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                self._conn.close()
                if attempt:
                    raise
        result: dict[str, Any] = json.loads(data or b"{}")
        if response.status != 200:
            raise RuntimeError(f"sink answered {response.status} to {method} {path}: {result}")
        return result

    def reset(self, sdk: str) -> None:
        self._request("POST", f"/reset?sdk={WIRE.get(sdk, sdk)}")

    def stats(self, sdk: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/stats")["sdks"][WIRE.get(sdk, sdk)]
        return result

    def wait(self, sdk: str, count: int, timeout: float) -> dict[str, Any]:
        """Block (without spending CPU) until the sink holds ``count`` unique ops, or ``timeout``."""
        wire = WIRE.get(sdk, sdk)
        result: dict[str, Any] = self._request(
            "GET", f"/wait?sdk={wire}&count={count}&timeout={timeout}"
        )["sdks"][wire]
        return result

    def faults(self, **switches: Any) -> None:
        """Set the sink's limiter and faults (``rate_limit``, ``outage``, ``flaky``, ``clear``)."""
        self._request("POST", "/faults", json.dumps(switches).encode())

    def all_stats(self) -> dict[str, Any]:
        return self._request("GET", "/stats")

    def close(self) -> None:
        self._conn.close()


def closed_port_url() -> str:
    """A loopback URL with nothing listening: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def thread_cpu_seconds() -> dict[str, float]:
    """CPU time so far of each live Python thread, by thread name (Linux ``/proc``)."""
    import threading

    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[thread.name] = (
            found.get(thread.name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
        )
    return found


def other_threads_cpu_ns() -> int:
    """CPU time so far of every thread of this process but the calling one, in nanoseconds
    (Linux ``/proc/self/task/*/schedstat``: finer than the 10 ms ticks of ``stat``)."""
    import threading

    own = str(threading.get_native_id())
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            if tid == own:
                continue
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended meanwhile
    return total


def idle_memory_penalty(pages: int = 100, idle_s: float = 0.3, rounds: int = 5) -> float:
    """How many times longer writing to ``pages`` pages takes after they sat untouched for
    ``idle_s`` than right after a write (median of ``rounds``).

    About 1 on ordinary hardware. Some virtual machines make memory left alone for a tenth of a
    second very slow to touch again (tens of microseconds a page): there, a background thread
    that wakes a few times a second pays that for its code and data on every wake, which is
    what the app-impact figure then measures.
    """
    buffer = bytearray(4096 * pages)

    def touch() -> float:
        started = time.perf_counter()
        for offset in range(0, len(buffer), 4096):
            buffer[offset] = 1
        return time.perf_counter() - started

    touch()
    ratios = []
    for _ in range(rounds):
        time.sleep(idle_s)
        idle = touch()
        warm = min(touch() for _ in range(3))
        ratios.append(idle / max(warm, 1e-9))
    return statistics.median(ratios)


def latency_summary(samples_ns: list[int]) -> dict[str, float]:
    """mean, p50, p99, p99.9 and max in µs (nearest-rank percentiles)."""
    ordered = sorted(samples_ns)
    n = len(ordered)

    def pct(q: float) -> float:
        rank = min(n - 1, max(0, math.ceil(q * n - 1e-9) - 1))
        return ordered[rank] / 1000

    return {
        "n": n,
        "mean": sum(ordered) / n / 1000,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "p99.9": pct(0.999),
        "max": ordered[-1] / 1000,
    }
