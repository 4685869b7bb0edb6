"""What reading the metrics costs, and does a scrape hold up the callers?
``bash benchmarks/run scrape``

First the CPU of one Prometheus scrape and of one OpenTelemetry collection (a client idle, and
one holding 100,000 calls its thread has not taken yet), and the delivery thread's extra work
per answer with metrics on. Then the callers:

Eight threads call ``track`` as fast as they can (each call timed), first with nothing else
going on, then while another thread scrapes the client's collector (``generate_latest``) in a
loop, as fast as it can: thousands of scrapes where Prometheus makes one every 15 s. Delivery
goes to ``RecordingTransport`` answering 200, so only the client's own threads and the scraper
share the machine. Each case runs ``--runs`` times in turn; the medians of each case are
printed with their ratio. A scrape takes no lock a caller takes, so the ratios should stay near
1 (the scraper competes for the interpreter lock, not for the queue).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

THREADS = 8


def one_case(calls_per_thread: int, scrape: bool) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry, generate_latest

    from sankofa_sdk import Client
    from sankofa_sdk.integrations.prometheus import SankofaCollector
    from sankofa_sdk.testing import RecordingTransport

    total = THREADS * calls_per_thread
    client = Client(
        "sk_test_scrape_0123456789",
        transport=RecordingTransport(),
        rate_limit=None,
        max_queue_size=total + 1,
        max_queue_bytes=total * 16_384,  # room for all of them from the first call
    )
    registry = CollectorRegistry()
    registry.register(SankofaCollector(client))
    props = {"plan": "pro", "seats": 3, "trial": False}
    timings: list[list[int]] = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS + 1)
    stop = threading.Event()
    scrapes = 0

    def caller(index: int) -> None:
        track, clock, mine = client.track, time.perf_counter_ns, timings[index]
        user = f"user_{index:03d}"
        start.wait()
        for _ in range(calls_per_thread):
            t0 = clock()
            track("Bench", props, distinct_id=user)
            mine.append(clock() - t0)

    def scraper() -> None:
        nonlocal scrapes
        while not stop.is_set():
            generate_latest(registry)
            scrapes += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    scraping = threading.Thread(target=scraper) if scrape else None
    if scraping is not None:
        scraping.start()
    t0 = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    stop.set()
    if scraping is not None:
        scraping.join()
    assert client.flush(60)
    delivered = client.stats()["delivered"]
    client.shutdown()
    every = sorted(t for mine in timings for t in mine)
    return {
        "calls": total,
        "delivered": delivered,
        "wall_s": wall,
        "calls_per_s": total / wall,
        "p50_us": every[len(every) // 2] / 1000,
        "p99_us": every[int(len(every) * 0.99)] / 1000,
        "max_us": every[-1] / 1000,
        "scrapes": scrapes,
    }


def read_cost(raw: int, reads: int = 200) -> dict[str, float]:
    """CPU microseconds of one Prometheus scrape and one OpenTelemetry collection of a client
    holding ``raw`` calls not yet taken by its thread, and of the work per answer once metrics
    are on (a listener recording both histograms)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    from sankofa_sdk import Client
    from sankofa_sdk._delivery.observe import Exchange
    from sankofa_sdk.integrations.opentelemetry import instrument
    from sankofa_sdk.integrations.prometheus import SankofaCollector

    client = Client("sk_test_scrape_0123456789", flush_interval=3600)
    for n in range(raw):  # no thread is started: they stay raw (the worst case for a read)
        client._worker._raw.append(("track", "user_1", "Bench", {"n": n}, None, 0.0))
    registry = CollectorRegistry()
    registry.register(SankofaCollector(client))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(client, meter_provider=provider)
    listeners = client._worker.observer._listeners
    exchange = Exchange("2xx", 200, 0.01, 100, 0.5)
    costs = {}
    for name, action in (
        ("scrape_us", lambda: generate_latest(registry)),
        ("otel_collect_us", reader.get_metrics_data),
        ("per_answer_us", lambda: [listener(exchange) for listener in listeners]),
    ):
        action()
        t0 = time.process_time()
        for _ in range(reads):
            action()
        costs[name] = (time.process_time() - t0) / reads * 1e6
    client._worker._raw.clear()
    client.shutdown(timeout=1)
    provider.shutdown()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(prog="bash benchmarks/run scrape", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="track calls per thread")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for raw in (0, 100_000):
        costs = read_cost(raw)
        print(
            f"one read, {raw:,} calls queued: Prometheus scrape {costs['scrape_us']:,.0f} us, "
            f"OpenTelemetry collection {costs['otel_collect_us']:,.0f} us; per answer "
            f"(both histograms) {costs['per_answer_us']:.1f} us",
            flush=True,
        )
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for run in range(args.runs):
        for scrape in (False, True) if run % 2 == 0 else (True, False):
            result = one_case(args.calls, scrape)
            results[scrape].append(result)
            print(
                f"run {run + 1} {'scraping' if scrape else 'quiet   '}: "
                f"{result['calls_per_s']:>9,.0f} calls/s, p50 {result['p50_us']:.1f} us, "
                f"p99 {result['p99_us']:.1f} us, max {result['max_us'] / 1000:.1f} ms, "
                f"{result['scrapes']} scrapes, {result['delivered']:,} delivered",
                flush=True,
            )
    print(f"medians over {args.runs} runs, {THREADS} threads x {args.calls:,} calls:")
    for key in ("calls_per_s", "p50_us", "p99_us"):
        quiet = statistics.median(r[key] for r in results[False])
        busy = statistics.median(r[key] for r in results[True])
        print(
            f"  {key:<12} quiet {quiet:>10,.1f}  scraping {busy:>10,.1f}  ratio {busy / quiet:.2f}"
        )
    scrapes = statistics.median(r["scrapes"] / r["wall_s"] for r in results[True])
    print(f"  scrapes per second while scraping: {scrapes:,.0f}")


if __name__ == "__main__":
    main()
