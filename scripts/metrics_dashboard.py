"""Regenerate the README's metrics picture: ``python -m scripts.metrics_dashboard``.

A real run, charted the way an operator's dashboard would chart it: the reference server in its
own process (``python -m sankofa_sdk.server``, the engine's request budget on), one client
tracking about 400 events a second for 45 s, and the faults of a bad day injected through the
server's fault switches: three 429s, an 8-second outage (every request answered 503), an
operation the engine refuses (400), calls refused as invalid. Every quarter second the script
scrapes the client's Prometheus collector (the text format, parsed back) and reads
``health()``; rates and quantiles are computed from the scraped counters and histogram buckets
as PromQL's ``rate()`` and ``histogram_quantile()`` would. The picture is drawn as plain SVG
(no plotting library) into ``docs/metrics-dashboard.svg``. Needs the prometheus extra.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional
from xml.sax.saxutils import escape

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sankofa_sdk import Client
from sankofa_sdk.integrations.prometheus import SankofaCollector
from tests.e2e.external_server import ExternalServer

DOCS = Path(__file__).resolve().parents[1] / "docs"
OUT = DOCS / "metrics-dashboard.svg"
SECONDS = 45.0
RATE = 400  # events a second, in 50 ms slices
STEP = 0.25  # seconds between scrapes
WINDOW = 2.0  # seconds of rate() and histogram_quantile()
FAULTS = [  # (at, label, end)
    (8.0, "429 x3", 11.0),
    (16.0, "503 outage", 24.0),
    (32.0, "400", 33.0),
    (36.0, "invalid", 37.0),
]
OPTIONS: dict[str, Any] = {"backoff_max": 4.0}
"""Defaults otherwise; a backoff capped at 4 s keeps the picture short after the outage."""


# --- the run -----------------------------------------------------------------------------------


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def run() -> tuple[list[float], list[dict[str, Any]], list[int]]:
    log = DOCS / ".metrics-dashboard-server.log"
    server = ExternalServer(log)
    client = Client(server.api_key, server.url, **OPTIONS)
    registry = CollectorRegistry()
    registry.register(SankofaCollector(client))
    stop = threading.Event()
    start = time.monotonic()

    def app() -> None:
        n = 0
        while not stop.is_set():
            for _ in range(RATE // 20):
                client.track("Page Viewed", {"n": n, "plan": "pro"}, distinct_id=f"user_{n % 500}")
                n += 1
            stop.wait(max(0.0, start + n / RATE - time.monotonic()))

    def faults() -> None:
        def at(when: float) -> bool:
            return not stop.wait(max(0.0, start + when - time.monotonic()))

        if at(8.0):
            server.faults(fail_next=3, status=429, retry_after=2)
        if at(16.0):
            server.faults(fail_for=8, status=503)
        if at(32.0):
            # A timestamp in year 33658 passes no public call; queued anyway, the engine answers
            # its batch 400 and the client splits it until the operation is alone (reported).
            client._worker.submit(("track", "user_1", "Poison", {}, None, 1e12))
        if at(36.0):
            for _ in range(25):
                client.track("Too Short", distinct_id="u")  # refused at the call: invalid

    threads = [threading.Thread(target=app), threading.Thread(target=faults)]
    for thread in threads:
        thread.start()
    times: list[float] = []
    snapshots: list[dict[str, Any]] = []
    health: list[int] = []
    try:
        while (now := time.monotonic() - start) < SECONDS:
            times.append(now)
            snapshots.append(scrape(registry))
            health.append(client.health().level)
            time.sleep(max(0.0, start + len(times) * STEP - time.monotonic()))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        client.shutdown(timeout=10)
        server.stop()
        log.unlink(missing_ok=True)
    print(client.stats(), file=sys.stderr)
    return times, snapshots, health


# --- PromQL, in small ---------------------------------------------------------------------------


def value(snapshot: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        v
        for key, v in snapshot.get(name, {}).items()
        if all(dict(key).get(k) == want for k, want in labels.items())
    )


def rate(
    times: Sequence[float], snaps: Sequence[dict[str, Any]], name: str, **labels: str
) -> list[float]:
    out = []
    for i, now in enumerate(times):
        j = i
        while j > 0 and now - times[j - 1] <= WINDOW:
            j -= 1
        span = now - times[j]
        delta = value(snaps[i], name, **labels) - value(snaps[j], name, **labels)
        out.append(delta / span if span > 0 else 0.0)
    return out


def quantile(
    times: Sequence[float], snaps: Sequence[dict[str, Any]], name: str, q: float
) -> list[Optional[float]]:
    """``histogram_quantile(q, rate(name_bucket[WINDOW]))``; None where nothing was observed."""
    out: list[Optional[float]] = []
    for i, now in enumerate(times):
        j = i
        while j > 0 and now - times[j - 1] <= WINDOW:
            j -= 1
        buckets: dict[float, float] = {}
        for key, v in snaps[i].get(name + "_bucket", {}).items():
            le = float(dict(key)["le"])
            before = snaps[j].get(name + "_bucket", {}).get(key, 0.0)
            buckets[le] = buckets.get(le, 0.0) + v - before
        bounds = sorted(buckets)
        total = buckets.get(float("inf"), 0.0)
        if total <= 0:
            out.append(None)
            continue
        rank, lower, below = q * total, 0.0, 0.0
        answer = bounds[-2] if len(bounds) > 1 else 0.0
        for bound in bounds:
            if buckets[bound] >= rank:
                if bound == float("inf"):
                    break
                inside = buckets[bound] - below
                answer = lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
                break
            lower, below = bound, buckets[bound]
        out.append(answer)
    return out


# --- SVG ----------------------------------------------------------------------------------------

BACKGROUND, PANEL, GRID, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e"
GREEN, YELLOW, RED, BLUE, ORANGE, PURPLE = (
    "#73bf69",
    "#fade2a",
    "#f2495c",
    "#5794f2",
    "#ff9830",
    "#b877d9",
)
WIDTH, PANEL_W, PANEL_H, GAP, TOP = 1200, 585, 230, 10, 64


class Panel:
    def __init__(self, x: float, y: float, title: str, unit: str) -> None:
        self.x, self.y, self.title, self.unit = x, y, title, unit
        self.left, self.right, self.top, self.bottom = (
            x + 58,
            x + PANEL_W - 12,
            y + 34,
            y + PANEL_H - 44,
        )
        self.series: list[tuple[str, str, Sequence[Optional[float]], bool]] = []

    def line(
        self, label: str, color: str, values: Sequence[Optional[float]], fill: bool = False
    ) -> None:
        self.series.append((label, color, values, fill))

    def svg(self, times: Sequence[float], labels: bool = False) -> list[str]:
        out = [
            f'<rect x="{self.x}" y="{self.y}" width="{PANEL_W}" height="{PANEL_H}" rx="3" fill="{PANEL}"/>',
            f'<text x="{self.x + 12}" y="{self.y + 21}" fill="{TEXT}" font-size="13" font-weight="600">{escape(self.title)}</text>',
        ]
        peak = max((v for _, _, vs, _ in self.series for v in vs if v is not None), default=0.0)
        ceiling = nice_ceiling(peak)
        x_of = lambda t: self.left + (self.right - self.left) * t / SECONDS  # noqa: E731
        y_of = lambda v: self.bottom - (self.bottom - self.top) * min(v, ceiling) / ceiling  # noqa: E731
        for at, label, end in FAULTS:
            out.append(
                f'<rect x="{x_of(at):.1f}" y="{self.top}" width="{max(2.0, x_of(end) - x_of(at)):.1f}" '
                f'height="{self.bottom - self.top}" fill="{RED}" fill-opacity="0.09"/>'
            )
            if labels:
                out.append(
                    f'<text x="{x_of(at) + 3:.1f}" y="{self.top + 11}" fill="{RED}" '
                    f'font-size="10">{escape(label)}</text>'
                )
        for k in range(5):
            v = ceiling * k / 4
            y = y_of(v)
            out.append(
                f'<line x1="{self.left}" x2="{self.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            )
            out.append(
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" fill="{MUTED}" font-size="10" text-anchor="end">{fmt(v)}{self.unit}</text>'
            )
        for t in range(0, int(SECONDS) + 1, 5):
            out.append(
                f'<text x="{x_of(t):.1f}" y="{self.bottom + 14}" fill="{MUTED}" font-size="10" text-anchor="middle">{t}s</text>'
            )
        for _, color, values, fill in self.series:
            for run in runs(times, values):
                points = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in run)
                if fill:
                    first, last = run[0][0], run[-1][0]
                    area = (
                        f"{x_of(first):.1f},{self.bottom} {points} {x_of(last):.1f},{self.bottom}"
                    )
                    out.append(f'<polygon points="{area}" fill="{color}" fill-opacity="0.18"/>')
                out.append(
                    f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.6"/>'
                )
        lx = self.left
        for label, color, _, _ in self.series:
            out.append(
                f'<rect x="{lx}" y="{self.bottom + 24}" width="14" height="3" fill="{color}"/>'
            )
            out.append(
                f'<text x="{lx + 19}" y="{self.bottom + 29}" fill="{TEXT}" font-size="11">{escape(label)}</text>'
            )
            lx += 26 + 6.4 * len(label)
        return out


def runs(
    times: Sequence[float], values: Sequence[Optional[float]]
) -> list[list[tuple[float, float]]]:
    """The series cut where it has no value."""
    out: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for t, v in zip(times, values, strict=True):
        if v is None:
            if current:
                out.append(current)
            current = []
        else:
            current.append((t, v))
    if current:
        out.append(current)
    return out


def nice_ceiling(peak: float) -> float:
    if peak <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(peak))) / 10 if peak >= 1 else 0.1
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * magnitude >= peak:
            return step * magnitude
    return peak


def fmt(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:.3g}"


def health_strip(times: Sequence[float], health: Sequence[int], y: float) -> list[str]:
    left, right = 58 + GAP, WIDTH - GAP - 12
    x_of = lambda t: left + (right - left) * t / SECONDS  # noqa: E731
    colors = {0: GREEN, 1: YELLOW, 2: RED}
    out = [
        f'<rect x="{GAP}" y="{y}" width="{WIDTH - 2 * GAP}" height="46" rx="3" fill="{PANEL}"/>',
        f'<text x="{GAP + 12}" y="{y + 19}" fill="{TEXT}" font-size="13" font-weight="600">client.health()</text>',
    ]
    for i, t in enumerate(times):
        end = times[i + 1] if i + 1 < len(times) else t + STEP
        out.append(
            f'<rect x="{x_of(t):.1f}" y="{y + 26}" width="{x_of(end) - x_of(t) + 0.5:.1f}" height="12" fill="{colors[health[i]]}"/>'
        )
    lx = WIDTH - 300
    for level, name in ((0, "ok"), (1, "degraded"), (2, "failing")):
        out.append(f'<rect x="{lx}" y="{y + 10}" width="10" height="10" fill="{colors[level]}"/>')
        out.append(f'<text x="{lx + 14}" y="{y + 19}" fill="{TEXT}" font-size="11">{name}</text>')
        lx += 80
    return out


def draw(times: list[float], snaps: list[dict[str, Any]], health: list[int]) -> str:
    col = [GAP, GAP * 2 + PANEL_W]
    row = [TOP, TOP + PANEL_H + GAP, TOP + 2 * (PANEL_H + GAP)]
    ops = Panel(col[0], row[0], "Operations / s", "")
    ops.line("accepted", BLUE, rate(times, snaps, "sankofa_operations_accepted_total"))
    ops.line("delivered", GREEN, rate(times, snaps, "sankofa_operations_delivered_total"))
    lost = [
        a + b
        for a, b in zip(
            rate(times, snaps, "sankofa_operations_failed_total"),
            rate(times, snaps, "sankofa_operations_dropped_total"),
            strict=True,
        )
    ]
    ops.line("failed + dropped", RED, lost)
    requests = Panel(col[1], row[0], "Requests / s by outcome", "")
    for outcome, color in (("2xx", GREEN), ("429", ORANGE), ("4xx", PURPLE), ("5xx", RED)):
        series = rate(times, snaps, "sankofa_requests_total", outcome=outcome)
        requests.line(outcome, color, series)
    net = rate(times, snaps, "sankofa_requests_total", outcome="network_error")
    if any(net):
        requests.line("network error", YELLOW, net)
    queue = Panel(col[0], row[1], "Queue (operations accepted, not finished)", "")
    queue.line("queued", YELLOW, [value(s, "sankofa_queue_operations") for s in snaps], fill=True)
    delay = Panel(col[1], row[1], "End-to-end delay, call to engine's 2xx (per batch)", " s")
    delay.line("p50", GREEN, quantile(times, snaps, "sankofa_delivery_delay_seconds", 0.5))
    delay.line("p99", ORANGE, quantile(times, snaps, "sankofa_delivery_delay_seconds", 0.99))
    duration = Panel(col[0], row[2], "Request duration p99 by outcome", " s")
    for outcome, color in (("2xx", GREEN), ("5xx", RED)):
        name = "sankofa_request_duration_seconds"
        duration.line(outcome, color, quantile_by(times, snaps, name, 0.99, outcome=outcome))
    pacer = Panel(col[1], row[2], "Pacer allowance (requests / s within the key's budget)", "")
    pacer.line(
        "allowance",
        BLUE,
        [value(s, "sankofa_pacer_allowance_requests_per_second") for s in snaps],
    )
    height = row[2] + PANEL_H + GAP + 46 + GAP
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Inter, Helvetica, Arial, sans-serif">',
        f'<rect width="{WIDTH}" height="{height}" fill="{BACKGROUND}"/>',
        f'<text x="{GAP + 2}" y="26" fill="{TEXT}" font-size="17" font-weight="600">'
        "sankofa_sdk delivery: a 45 s run against the reference server, faults injected</text>",
        f'<text x="{GAP + 2}" y="46" fill="{MUTED}" font-size="12">'
        f"{RATE} events/s from one client (defaults, backoff_max=4 s), scraped every {STEP:g} s "
        f"from its Prometheus collector; rate() and histogram_quantile() over {WINDOW:g} s. "
        "Shaded: 429 x3, a 503 outage, a 400, invalid calls.</text>",
    ]
    out += ops.svg(times, labels=True)
    out += requests.svg(times, labels=True)
    out += queue.svg(times)
    out += delay.svg(times)
    out += duration.svg(times)
    out += pacer.svg(times)
    out += health_strip(times, health, row[2] + PANEL_H + GAP)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def quantile_by(
    times: Sequence[float], snaps: Sequence[dict[str, Any]], name: str, q: float, **labels: str
) -> list[Optional[float]]:
    """``quantile`` over the samples of ``name`` with ``labels`` only."""
    picked = [
        {
            key: {
                k: v
                for k, v in samples.items()
                if all(dict(k).get(a) == b for a, b in labels.items())
            }
            for key, samples in snap.items()
        }
        for snap in snaps
    ]
    return quantile(times, picked, name, q)


def main() -> None:
    times, snaps, health = run()
    OUT.write_text(draw(times, snaps, health))
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
