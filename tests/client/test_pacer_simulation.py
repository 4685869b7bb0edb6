"""The pacer against a model of the engine's limiter: many processes, one API key, fake time.

What a fleet must get from the request budget (issue: deliver under the engine's real limits):
every operation delivered, few 429s, and no more requests than the budget allows. The loads are
uneven on purpose: log-normal shares, bursts at 3x, a quarter of the processes starting late.
Run ``pytest -s`` to see each fleet's figures (requests per window, 429 share, ops/s, latency).
"""

from __future__ import annotations

import pytest

from sankofa_sdk._options import Options

from .fleet_simulation import ROUND_TRIP, STEP, simulate, steady_loads, uneven_loads

FLEETS = [(8, 1_000.0), (32, 200.0), (64, 100.0)]
"""(processes, mean operations per second per process): 6,400 to 8,000 ops/s per key."""
LOAD_SECONDS = 600.0


@pytest.mark.parametrize(("processes", "mean_ops"), FLEETS, ids=lambda v: str(v))
def test_with_rate_limit_headers_the_fleet_stays_inside_the_budget(
    processes: int, mean_ops: float
) -> None:
    result = simulate(uneven_loads(processes, mean_ops), headers=True, load_seconds=LOAD_SECONDS)
    print(result.summary())
    # Every request counts against the budget, refused ones too, and no sliding minute (not
    # only the engine's own windows) holds more than the engine allows.
    assert result.max_in_any_window(60) <= 500
    assert result.share_429 <= 0.01
    assert result.delivered == result.generated
    assert result.latency_percentile(0.5) <= 10


@pytest.mark.parametrize(("processes", "mean_ops"), FLEETS, ids=lambda v: str(v))
def test_without_headers_429s_alone_are_enough(processes: int, mean_ops: float) -> None:
    # The hosted engine sends no X-RateLimit headers and no Retry-After: a 429 is all a
    # process learns. The first window of a fleet starting together is spent blind; after
    # that the fleet settles under the budget and probes it rarely.
    result = simulate(uneven_loads(processes, mean_ops), headers=False, load_seconds=LOAD_SECONDS)
    print(result.summary())
    assert result.share_429 <= 0.05
    assert result.delivered == result.generated
    assert _accepted_per_engine_window(result.accepted) <= 500


def test_a_lone_process_keeps_its_latency_and_never_hits_the_limit() -> None:
    for headers in (True, False):
        result = simulate(uneven_loads(1, 2_000.0), headers=headers, load_seconds=300)
        assert result.rejected == 0 and result.delivered == result.generated
        assert result.latency_percentile(0.99) <= 1.0
        assert result.max_in_any_window(60) <= 450


def test_a_fleet_far_larger_than_its_share_of_the_budget_still_delivers() -> None:
    # 200 quiet processes starting together: their flush_interval cadence alone would be
    # 24,000 requests a minute, and each one's first request goes out before it knows.
    result = simulate(uneven_loads(200, 5.0), headers=True, load_seconds=300)
    print(result.summary())
    assert result.share_429 <= 0.05
    assert result.delivered == result.generated


# --- flush-heavy: every operation followed by a flush (a task, an invocation) -----------------
# `python -m tests.client.fleet_simulation` prints the table for 1 to 64 processes.

TARGET_PER_SECOND = 0.9 * 500 / 60
"""What the fleet aims to spend: 90% of the budget."""


@pytest.mark.parametrize("headers", [True, False], ids=["headers", "blind"])
@pytest.mark.parametrize("processes", [1, 8, 64])
def test_a_flush_per_task_is_prompt_alone_and_fairly_paced_in_a_fleet(
    processes: int, headers: bool
) -> None:
    # Five tasks a second per process, each flushing its one event: one process alone needs
    # 300 requests a minute, which the budget allows; 8 or 64 need far more than it has.
    result = simulate(
        steady_loads(processes, 5.0), headers=headers, load_seconds=300, flush_each=True
    )
    print(result.summary())
    assert result.delivered == result.generated
    if processes == 1:
        # Every flush comes back after its own round trip, with headers or without.
        assert result.rejected == 0
        assert result.latency_percentile(1.0) == pytest.approx(ROUND_TRIP)
        return
    if headers:
        assert result.rejected == 0
        assert result.max_in_any_window(60) <= 500
    else:
        # Blind, the first window is spent before anyone knows (one 429 per process).
        assert result.share_429 <= 0.05
        assert _accepted_per_engine_window(result.accepted) <= 500
    # Paced, and evenly: after the first two windows, a flush waits about the time between
    # two requests of one process at an even share of the target, and none much longer.
    even_gap = processes / TARGET_PER_SECOND
    assert result.latency_percentile(0.5, arrived_after=120) <= even_gap
    assert result.latency_percentile(0.99, arrived_after=120) <= 3 * even_gap


@pytest.mark.parametrize("headers", [True, False], ids=["headers", "blind"])
def test_processes_well_under_their_share_deliver_within_flush_interval(headers: bool) -> None:
    # Three quiet processes (20 operations a second each: a batch per flush_interval, 6
    # requests a second in all, under the 7.5 the fleet aims at).
    result = simulate(steady_loads(3, 20.0), headers=headers, load_seconds=300)
    assert result.rejected == 0 and result.delivered == result.generated
    # flush_interval, then a round trip (and a step of the simulation's clock).
    assert max(result.worst_latency) <= Options().flush_interval + ROUND_TRIP + STEP + 1e-9


def _accepted_per_engine_window(accepted: list[float], window: int = 60) -> int:
    """The most requests the limiter let through in one of its windows (first request + 60 s,
    whole seconds), i.e. what the engine itself counts."""
    best = count = 0
    end = None
    for t in accepted:
        now = int(t)
        if end is None or now >= end:
            end, count = now + window, 0
        count += 1
        best = max(best, count)
    return best
