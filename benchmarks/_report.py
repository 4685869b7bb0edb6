"""Turning the raw per-run results into min/median/max, ratios to posthog-python, and targets."""

from __future__ import annotations

import statistics
from typing import Any, Callable, Optional

Record = dict[str, Any]

# (key, label, task, how to read it from a result, lower is better)
METRICS: list[tuple[str, str, str, Callable[[Record], float], bool]] = [
    ("track_p50", "track p50 (µs)", "hot_path", lambda r: r["track"]["p50"], True),
    ("track_p99", "track p99 (µs)", "hot_path", lambda r: r["track"]["p99"], True),
    ("track_p999", "track p99.9 (µs)", "hot_path", lambda r: r["track"]["p99.9"], True),
    ("track_mean", "track mean (µs)", "hot_path", lambda r: r["track"]["mean"], True),
    ("identify_p50", "identify p50 (µs)", "hot_path", lambda r: r["identify"]["p50"], True),
    ("identify_p99", "identify p99 (µs)", "hot_path", lambda r: r["identify"]["p99"], True),
    ("people_p50", "people_set p50 (µs)", "hot_path", lambda r: r["people_set"]["p50"], True),
    ("people_p99", "people_set p99 (µs)", "hot_path", lambda r: r["people_set"]["p99"], True),
    (
        "cpu_per_1000",
        "CPU per 1,000 delivered (ms)",
        "throughput",
        lambda r: r["cpu_ms_per_1000"],
        True,
    ),
    ("throughput", "throughput (ops/s)", "throughput", lambda r: r["ops_per_s"], False),
    (
        "throughput_unpaced",
        "throughput, pacing off (ops/s)",
        "throughput_unpaced",
        lambda r: r["ops_per_s"],
        False,
    ),
    (
        "cpu_per_1000_unpaced",
        "  CPU per 1,000 delivered, pacing off (ms)",
        "throughput_unpaced",
        lambda r: r["cpu_ms_per_1000"],
        True,
    ),
    (
        "throughput_lost",
        "  dropped or missing of the ops",
        "throughput",
        lambda r: r["dropped_by_sdk"] + r["missing"],
        True,
    ),
    (
        "bytes_per_op",
        "memory per queued op (bytes)",
        "unreachable",
        lambda r: r["bytes_per_op"],
        True,
    ),
    ("down_p50", "track p50, server down (µs)", "unreachable", lambda r: r["track"]["p50"], True),
    (
        "app_slowdown",
        "app impact: request loop slowdown (%)",
        "app_impact",
        lambda r: r["slowdown_pct"],
        True,
    ),
    (
        "app_cpu_overhead",
        "  the same in CPU time, all threads (%)",
        "app_impact",
        lambda r: r["cpu_overhead_pct"],
        True,
    ),
    (
        "app_background",
        "  the SDK's threads' CPU per event (µs)",
        "app_impact",
        lambda r: r["background_us_per_event"],
        True,
    ),
    ("down_p99", "track p99, server down (µs)", "unreachable", lambda r: r["track"]["p99"], True),
]


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "values": values,
    }


def summarise(records: list[Record], sdks: list[str], configs: list[str]) -> dict[str, Any]:
    """``{config: {metric: {sdk: {min, median, max, values, ratio_to_posthog}}}}``."""
    summary: dict[str, Any] = {}
    for config in configs:
        table: dict[str, Any] = {}
        for key, _label, task, read, _lower in METRICS:
            row: dict[str, Any] = {}
            for sdk in sdks:
                values = [
                    read(r["result"])
                    for r in records
                    if r["task"] == task and r["config"] == config and r["sdk"] == sdk
                ]
                if values:
                    row[sdk] = spread(values)
            base = row.get("posthog", {}).get("median")
            for cell in row.values():
                cell["ratio_to_posthog"] = cell["median"] / base if base else None
            table[key] = row
        summary[config] = table
    return summary


def server_summary(records: list[Record]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for load in ("client", "raw"):
        values = [r["result"]["ops_per_s"] for r in records if r["task"] == f"server_{load}"]
        if values:
            out[load] = spread(values)
    return out


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(cell: Optional[dict[str, Any]], with_ratio: bool = True) -> str:
    if not cell:
        return "-"
    if all(float(v).is_integer() for v in cell["values"]):
        if cell["min"] == cell["max"]:
            return f"{cell['median']:,.0f}"
        return f"{cell['median']:,.0f} [{cell['min']:,.0f}-{cell['max']:,.0f}]"
    text = f"{_fmt(cell['median'])} [{_fmt(cell['min'])}-{_fmt(cell['max'])}]"
    ratio = cell.get("ratio_to_posthog")
    if with_ratio and ratio is not None:
        text += f" ({ratio:.2g}x)" if ratio < 10 else f" ({ratio:.0f}x)"
    return text


def markdown(summary: dict[str, Any], servers: dict[str, Any], sdks: list[str], sink: Any) -> str:
    """The results as Markdown tables: median [min-max] (ratio to posthog-python's median)."""
    lines = []
    for config, table in summary.items():
        if not any(table.values()):
            continue
        lines.append(
            f"**{config}** ({'production defaults' if config == 'defaults' else 'equal batch settings'})"
        )
        lines.append("")
        lines.append("| figure | " + " | ".join(sdks) + " |")
        lines.append("|---|" + "---|" * len(sdks))
        for key, label, _task, _read, _lower in METRICS:
            row = table.get(key, {})
            if not row:
                continue
            lines.append(
                f"| {label} | "
                + " | ".join(_cell(row.get(sdk), key != "throughput_lost") for sdk in sdks)
                + " |"
            )
        lines.append("")
    if servers:
        lines.append(
            "| reference server, ops/s applied to SQLite (100-op batches) | median [min-max] |"
        )
        lines.append("|---|---|")
        labels = {
            "client": "load: one sankofa_sdk client",
            "raw": "load: raw keep-alive HTTP generator",
        }
        for load, cell in servers.items():
            lines.append(f"| {labels[load]} | {_cell(cell, False)} |")
        lines.append("")
    if sink:
        lines.append(
            f"The sink absorbs {_cell(sink, False)} ops/s (Sankofa format, 100-op batches)."
        )
        lines.append("")
    return "\n".join(lines)


def targets(
    summary: dict[str, Any], servers: dict[str, Any], config: str = "defaults"
) -> list[dict[str, Any]]:
    """Each target of issue 5 against the medians of ``config``: met, and by how much."""
    table = summary.get(config, {})
    found: list[dict[str, Any]] = []

    def median(key: str, sdk: str) -> Optional[float]:
        cell = table.get(key, {}).get(sdk)
        return None if cell is None else float(cell["median"])

    def check(
        name: str, value: Optional[float], limit: Optional[float], lower: bool = True
    ) -> None:
        if value is None or limit is None:
            found.append({"target": name, "met": None, "value": value, "limit": limit})
            return
        met = value <= limit if lower else value >= limit
        miss = (value / limit - 1) if lower else (1 - value / limit)
        found.append(
            {"target": name, "met": met, "value": value, "limit": limit, "miss": 0 if met else miss}
        )

    peers = ["posthog", "segment"]

    def best(key: str, lower: bool) -> Optional[float]:
        values = [v for v in (median(key, p) for p in peers) if v is not None]
        if not values:
            return None
        return min(values) if lower else max(values)

    p50, p99 = median("track_p50", "sankofa"), median("track_p99", "sankofa")
    check("track p50 <= 8 µs", p50, 8.0)
    check("track p99 <= 40 µs", p99, 40.0)
    posthog_p50, segment_p50 = median("track_p50", "posthog"), median("track_p50", "segment")
    check("track p50 <= 1/10 of posthog's", p50, posthog_p50 / 10 if posthog_p50 else None)
    check("track p50 <= 1/5 of Segment's", p50, segment_p50 / 5 if segment_p50 else None)
    best_cpu = best("cpu_per_1000", True)
    check(
        "CPU per 1,000 delivered <= 1/2 of the best peer",
        median("cpu_per_1000", "sankofa"),
        best_cpu / 2 if best_cpu else None,
    )
    check("throughput >= 40,000 ops/s", median("throughput", "sankofa"), 40_000.0, lower=False)
    best_rate = best("throughput", False)
    check(
        "throughput >= 3x the best peer",
        median("throughput", "sankofa"),
        best_rate * 3 if best_rate else None,
        lower=False,
    )
    best_mem = best("bytes_per_op", True)
    check(
        "memory per queued op <= 1/2 of the best peer",
        median("bytes_per_op", "sankofa"),
        best_mem / 2 if best_mem else None,
    )
    up_p99 = table.get("track_p99", {}).get("sankofa")
    # "Within noise": no worse than 1.25x the median p99 with the server up, or the worst up run.
    noise = None if up_p99 is None else max(up_p99["median"] * 1.25, up_p99["max"])
    check("track p99 while down ~ while up", median("down_p99", "sankofa"), noise)
    raw = servers.get("raw")
    check(
        "reference server >= 30,000 ops/s applied",
        raw["median"] if raw else None,
        30_000.0,
        lower=False,
    )
    return found


def targets_text(found: list[dict[str, Any]]) -> str:
    lines = []
    for t in found:
        if t["met"] is None:
            state = "not measured"
        elif t["met"]:
            state = f"met ({_fmt(t['value'])} vs {_fmt(t['limit'])})"
        else:
            state = f"MISSED by {t['miss']:.0%} ({_fmt(t['value'])} vs {_fmt(t['limit'])})"
        lines.append(f"- {t['target']}: {state}")
    return "\n".join(lines)


COMPARED = ("track_p50", "track_p99", "cpu_per_1000", "throughput", "bytes_per_op", "down_p99")


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Medians of an earlier results file next to this run's, with the change in percent."""
    labels = {key: label for key, label, *_ in METRICS}
    lines = [
        f"Compared with {old['machine']['date']} ({old['machine'].get('commit', '')}):",
        "",
        "| configuration | figure | SDK | then | now | change |",
        "|---|---|---|---|---|---|",
    ]
    for config, table in new["summary"].items():
        for key in COMPARED:
            for sdk, cell in table.get(key, {}).items():
                before = old["summary"].get(config, {}).get(key, {}).get(sdk)
                if not before:
                    continue
                change = cell["median"] / before["median"] - 1 if before["median"] else 0.0
                lines.append(
                    f"| {config} | {labels[key]} | {sdk} | {_fmt(before['median'])} | "
                    f"{_fmt(cell['median'])} | {change:+.0%} |"
                )
    return "\n".join(lines) + "\n"


# --- the delivery scenarios (issue 9) ---------------------------------------------------------

DELIVERY_TITLES = {
    "fleet": "Fleet through a request budget",
    "fleet_blind": "The same fleet, answers without rate-limit headers or Retry-After",
    "fleet_blind_told": "The same fleet without headers, sankofa_sdk told the budget",
    "outage": "Outage",
    "flaky": "Flaky network",
}


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f} s"


def delivery_headline(r: Record) -> str:
    done = (
        f"all after {r['all_stored_s']:.1f} s"
        if r["all_stored_s"] is not None
        else f"not all within {r['limit_s']} s"
    )
    return (
        f"stored {r['stored']:,}/{r['total']:,}, lost {r['lost']:,}, "
        f"{r['requests']:,} requests ({r['share_429']:.0%} 429), dup {r['duplicates']:,}, {done}"
    )


def _scenario_line(spec: dict[str, Any]) -> str:
    procs = spec["procs"]
    fleet = f"{procs} processes x " if procs > 1 else ""
    load = f"{fleet}{spec['rate']:,} ops/s for {spec['seconds']} s"
    if "rate_limit" in spec:
        limit = spec["rate_limit"]
        how = (
            "429 with Retry-After, X-RateLimit-* on the others"
            if limit["headers"]
            else "429 without Retry-After, no X-RateLimit-* headers"
        )
        told = ""
        if spec.get("options", {}).get("rate_limit"):
            told = "; sankofa_sdk with rate_limit=({}, {})".format(*spec["options"]["rate_limit"])
        return f"{load}, one key, {limit['limit']} requests per {limit['window']} s ({how}){told}"
    if "outage_s" in spec:
        return f"{load}, every request answered 503 for the first {spec['outage_s']} s"
    flaky = spec["flaky"]
    return (
        f"{load}, {flaky['reset_share']:.0%} of requests stored then reset without an answer, "
        f"{flaky['error_share']:.0%} answered {flaky['status']} and not stored"
    )


def delivery_markdown(records: list[Record], sdks: list[str]) -> str:
    """One table per scenario: what each SDK got stored, lost, spent and how long it took."""
    lines: list[str] = []
    for scenario, title in DELIVERY_TITLES.items():
        by_sdk = {r["sdk"]: r["result"] for r in records if r["task"] == scenario}
        if not by_sdk:
            continue
        spec = next(iter(by_sdk.values()))["spec"]
        lines.append(f"**{title}**: {_scenario_line(spec)}.")
        lines.append("")
        lines.append("| | " + " | ".join(sdks) + " |")
        lines.append("|---|" + "---|" * len(sdks))

        def row(label: str, show: Callable[[Record], str], by_sdk: Record = by_sdk) -> None:
            cells = [show(by_sdk[s]) if s in by_sdk else "-" for s in sdks]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

        total = next(iter(by_sdk.values()))["total"]
        row(f"stored (of {total:,})", lambda r: f"{r['stored']:,}")
        row(
            "not stored: dropped at the queue / given up (reported) / still held at the end "
            "/ unaccounted",
            lambda r: (
                f"{r['lost']:,}: {r['refused']:,} / {r['failed']:,} / {r['queued_at_end']:,} "
                f"/ {r['unaccounted']:,}"
            ),
        )
        if scenario == "flaky":
            row(
                "duplicates stored (resent, absorbed by Idempotency-Key)",
                lambda r: f"{r['duplicates']:,} ({r['replayed_ops']:,})",
            )
        elif any(r["duplicates"] for r in by_sdk.values()):
            row("duplicates stored", lambda r: f"{r['duplicates']:,}")
        row(
            "requests (answered 429)",
            lambda r: f"{r['requests']:,} ({r['statuses'].get('429', 0):,}, {r['share_429']:.0%})",
        )
        if "rate_limit" in spec:
            row(
                f"most requests in one {spec['rate_limit']['window']} s window",
                lambda r: f"{r['max_requests_per_window'] or 0:,}",
            )
        since = "the start" if spec["procs"] > 1 else "the last call"
        row(
            f"all stored, seconds after {since}",
            lambda r: (
                f"{r['all_stored_s']:.1f}"
                if r["all_stored_s"] is not None
                else f"not within {r['limit_s']} s"
            ),
        )
        row("calls took (s, scheduled " + f"{spec['seconds']})", lambda r: f"{r['calls_s']:.1f}")
        row(
            "processes whose flush returned by then",
            lambda r: f"{r['drained']} of {r['procs']}",
        )
        lines.append("")
    return "\n".join(lines)
