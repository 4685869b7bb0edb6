"""The pure policies, table by table: options, retries, what an answer means, the pacer.

No threads, no sockets, no clock but the numbers passed in.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sankofa_sdk import Client, ConfigurationError
from sankofa_sdk._answers import Answer, Verdict, classify, skipped_operations
from sankofa_sdk._options import Options, check_host
from sankofa_sdk._pacer import Pacer, read_rate_limit
from sankofa_sdk._queue import batch_due
from sankofa_sdk._retry import Failure, RetryPolicy, parse_retry_after

# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("flush_at", 0, "flush_at"),
        ("flush_at", True, "flush_at"),
        ("flush_interval", -1, "flush_interval"),
        ("flush_interval", float("nan"), "flush_interval"),
        ("max_batch_size", 20_000, "max_batch_size"),
        ("max_batch_bytes", 10 * 1024 * 1024, "max_batch_bytes"),
        ("max_queue_size", 0, "max_queue_size"),
        ("max_queue_bytes", 10, "max_queue_bytes"),
        ("block_when_full", -0.5, "block_when_full"),
        ("gzip", "yes", "gzip"),
        ("timeout", 0, "timeout"),
        ("shutdown_timeout", "5", "shutdown_timeout"),
        ("backoff_base", -1, "backoff_base"),
        ("backoff_max", 0, "backoff_max"),
        ("max_retries", -1, "max_retries"),
        ("max_retries", 2.5, "max_retries"),
        ("max_retry_after", float("inf"), "max_retry_after"),
        ("rate_limit", (0, 60), "rate_limit"),
        ("rate_limit", "500/60", "rate_limit"),
        ("sync_mode", "no", "sync_mode"),
        ("on_error", 42, "on_error"),
    ],
)
def test_every_bad_option_is_refused_by_name(option: str, value: Any, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Options.from_kwargs(**{option: value})


def test_all_bad_options_are_listed_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Options.from_kwargs(flush_at=0, timeout=-1, backoff_base=-1)
    message = str(caught.value)
    assert "flush_at" in message and "timeout" in message and "backoff_base" in message


def test_unknown_options_are_named() -> None:
    with pytest.raises(ConfigurationError, match="flush_att"):
        Options.from_kwargs(flush_att=10)


def test_flush_at_cannot_exceed_the_batch_size() -> None:
    with pytest.raises(ConfigurationError, match="flush_at"):
        Options.from_kwargs(flush_at=500, max_batch_size=100)


def test_options_are_frozen_and_normalised() -> None:
    options = Options.from_kwargs(flush_interval=1, rate_limit=[50, 6], backoff_base=1)
    assert options.flush_interval == 1.0 and isinstance(options.flush_interval, float)
    assert options.rate_limit == (50, 6.0)
    assert options.retry.backoff_base == 1
    with pytest.raises(AttributeError):
        options.flush_at = 5  # type: ignore[misc]


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "retries", "jitter", "wait"),
    [
        (Failure.RESET, 1, 0.0, 0.025),  # a reset is a blip: the first retry goes at once
        (Failure.RESET, 1, 0.999, 0.05),
        (Failure.RESET, 2, 0.5, 0.5),  # then it backs off like any failure
        (Failure.SERVER, 1, 0.5, 0.25),
        (Failure.SERVER, 2, 0.5, 0.5),
        (Failure.SERVER, 3, 1.0, 2.0),
        (Failure.TIMEOUT, 10, 1.0, 30.0),  # capped by backoff_max
        (Failure.SERVER, 10_000, 1.0, 30.0),  # no overflow on absurd counts
        (Failure.SERVER, 5, 0.0, 0.0),  # full jitter reaches down to zero
    ],
)
def test_waits_grow_exponentially_with_full_jitter(
    failure: Failure, retries: int, jitter: float, wait: float
) -> None:
    assert RetryPolicy().wait(failure, retries, jitter) == pytest.approx(wait, rel=0.01)


@given(st.integers(1, 100), st.floats(0, 1, exclude_max=True), st.sampled_from(list(Failure)))
def test_a_wait_is_never_negative_nor_past_the_cap(
    retries: int, jitter: float, failure: Failure
) -> None:
    policy = RetryPolicy(backoff_base=0.3, backoff_max=7)
    assert 0 <= policy.wait(failure, retries, jitter) <= 7


@pytest.mark.parametrize(
    ("retries", "elapsed", "wait", "gives_up"),
    [
        (1, 0, 1, False),
        (10, 0, 1, False),
        (11, 0, 1, True),  # max_retries = 10
        (2, 299, 0.5, False),
        (2, 299, 2, True),  # would start after max_retry_time
    ],
)
def test_give_up_rules(retries: int, elapsed: float, wait: float, gives_up: bool) -> None:
    assert RetryPolicy().gives_up(retries, elapsed, wait) is gives_up


@pytest.mark.parametrize(
    ("value", "now", "seconds"),
    [
        ("7", None, 7.0),
        (" 2.5 ", None, 2.5),
        ("-3", None, 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0, 10.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 1445412500.0, 0.0),  # in the past
        (None, None, None),
        ("", None, None),
        ("soon", None, None),
        ("nan", None, None),
    ],
)
def test_retry_after_seconds_or_http_date(
    value: Optional[str], now: Optional[float], seconds: Optional[float]
) -> None:
    assert parse_retry_after(value, now) == seconds


def test_a_huge_or_far_future_retry_after_waits_the_cap() -> None:
    policy = RetryPolicy(max_retry_after=60)
    assert policy.retry_after("86400") == 60
    assert policy.retry_after("Fri, 01 Jan 2100 00:00:00 GMT") == 60
    assert policy.retry_after("1e400") == 60


# --- answers ---------------------------------------------------------------------------------


def answer(status: Optional[int], body: bytes = b"", failure: Optional[Failure] = None) -> Answer:
    return Answer(status, {}, body, failure)


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, b"", Verdict.DELIVERED),
        (201, b"", Verdict.DELIVERED),
        (202, b"", Verdict.DELIVERED),
        (204, b"", Verdict.DELIVERED),
        (400, b"", Verdict.REJECTED),
        (413, b"", Verdict.TOO_LARGE),
        (401, b"", Verdict.MISCONFIGURED),
        (403, b"", Verdict.MISCONFIGURED),
        (404, b"", Verdict.MISCONFIGURED),
        (405, b"", Verdict.MISCONFIGURED),
        (301, b"", Verdict.MISCONFIGURED),
        (408, b"", Verdict.RETRY),
        (425, b"", Verdict.RETRY),
        (429, b'{"error":"Rate limit exceeded. Please wait a moment."}', Verdict.RATE_LIMITED),
        (429, b'{"error":{"code":"quota_exceeded"}}', Verdict.QUOTA_EXCEEDED),
        (429, b'{"error":"Quota_Exceeded"}', Verdict.QUOTA_EXCEEDED),
        (500, b"", Verdict.RETRY),
        (502, b"", Verdict.RETRY),
        (503, b"", Verdict.RETRY),
        (None, b"", Verdict.RETRY),
        # Any 2xx is success, whatever its body: an engine branch may add keys or answer
        # something else entirely.
        (200, b'{"ok":true,"accepted":2,"commands":[{"op":"pause"}]}', Verdict.DELIVERED),
        (200, b'{"status":"queued"}', Verdict.DELIVERED),
        (200, b"OK", Verdict.DELIVERED),
        (200, b"\xff\x00<html>garbage", Verdict.DELIVERED),
        (200, b"[" * 50_000, Verdict.DELIVERED),
        (202, b'{"status":"queued","quota_exceeded":false}', Verdict.DELIVERED),
        (299, b"rate limit", Verdict.DELIVERED),
    ],
)
def test_classify_follows_the_engine(status: Optional[int], body: bytes, verdict: Verdict) -> None:
    assert classify(answer(status, body)) is verdict


@pytest.mark.parametrize(
    ("status", "body", "sent", "skipped"),
    [
        (
            200,
            b'{"aliases_received":0,"environment":"live","events_received":8,"ok":true,'
            b'"operations_received":10,"people_received":1,"project_id":"p","project_name":"n"}',
            10,
            1,
        ),
        (
            200,
            b'{"aliases_received":1,"events_received":8,"operations_received":10,'
            b'"people_received":1}',
            10,
            0,
        ),
        (202, b'{"ok":true,"status":"discarded_all"}', 4, 4),
        (200, b"not json", 10, 0),
        (200, b'{"operations_received":"x"}', 10, 0),
        (204, b"", 10, 0),
        # Bodies of other shapes skip nothing, and reading them never raises.
        (200, b'{"ok":true,"accepted":2,"commands":[{"op":"pause"}]}', 2, 0),
        (
            200,
            b'{"aliases_received":0,"events_received":2,"operations_received":2,'
            b'"people_received":0,"commands":["discarded"]}',
            2,
            0,
        ),
        (200, b'{"status":"queued"}', 2, 0),
        (200, b"OK", 2, 0),
        (200, b"", 2, 0),
        (200, b"\xff\x00<html>garbage", 2, 0),
        (200, b"[1, 2]", 2, 0),
        (200, b"null", 2, 0),
        (200, b"[" * 50_000, 2, 0),  # nested deeper than the JSON reader can go
        (200, b'{"a":' * 20_000, 2, 0),
        (
            200,
            b'{"aliases_received":0,"events_received":1e400,"operations_received":2,'
            b'"people_received":0}',
            2,
            0,
        ),
        (
            200,
            b'{"aliases_received":0,"events_received":0,"operations_received":Infinity,'
            b'"people_received":0}',
            2,
            0,
        ),
        (202, b'{"status":"queued","commands":["discarded nothing"]}', 2, 0),
        (202, b"discarded", 2, 0),
        (202, b'{"ok":true,"status":"discarded_all","commands":[]}', 2, 2),
    ],
)
def test_skipped_operations_are_read_from_the_counts(
    status: int, body: bytes, sent: int, skipped: int
) -> None:
    assert skipped_operations(answer(status, body), sent) == skipped


# --- batching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "since", "urgent", "due"),
    [
        (0, None, False, float("inf")),
        (0, None, True, float("inf")),
        (100, 50.0, False, 100.0),  # flush_at reached: now
        (10, 99.8, False, 100.3),  # flush_interval after the oldest arrived
        (10, 99.8, True, 100.0),  # a flush or a shutdown does not wait
    ],
)
def test_when_a_batch_is_due(count: int, since: Optional[float], urgent: bool, due: float) -> None:
    assert batch_due(count, since, 100.0, Options(), urgent) == due


# --- the pacer -------------------------------------------------------------------------------


def headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset),
    }


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        (headers(500, 499, 60), (500, 499, 60.0)),
        (headers(500, -3, 60), (500, 0, 60.0)),
        ({"X-RateLimit-Limit": "500"}, None),
        (headers(0, 0, 60), None),
        ({**headers(500, 1, 60), "X-RateLimit-Reset": "soon"}, None),
    ],
)
def test_rate_limit_headers(raw: dict[str, str], read: Any) -> None:
    assert read_rate_limit(raw) == read


def test_a_lone_process_never_outpaces_the_budget() -> None:
    pacer = Pacer((500, 60), seed=1)
    now, starts = 0.0, []
    remaining = 500
    for _ in range(2_000):
        now = max(now, pacer.ready_at())
        pacer.started(now, held_back=True, fullness=1.0)
        starts.append(now)
        remaining -= 1
        reset = 60 - int(now) % 60
        if reset == 60:
            remaining = 499
        pacer.answered(now, 200, headers(500, max(0, remaining), reset), None)
        now += 0.01
    in_first_minute = sum(1 for t in starts if t < 60)
    assert in_first_minute <= 500


def test_a_429_with_retry_after_waits_that_long() -> None:
    pacer = Pacer((500, 60), seed=1)
    pacer.started(10.0, held_back=False)
    pacer.answered(10.0, 429, {}, 7.0)
    assert 17.0 <= pacer.ready_at() <= 19.0


def test_a_429_without_retry_after_waits_a_whole_window() -> None:
    pacer = Pacer((500, 60), seed=1)
    pacer.started(10.0, held_back=False)
    pacer.answered(10.0, 429, {}, None)
    assert 70.0 <= pacer.ready_at() <= 76.0


def test_429s_in_a_row_shrink_the_pace_once() -> None:
    pacer = Pacer((500, 60), seed=1)
    before = pacer.rate
    for n in range(5):
        pacer.started(10.0 + n, held_back=False)
        pacer.answered(10.0 + n, 429, {}, 1.0)
    assert pacer.rate == pytest.approx(before * 0.7)


def test_a_spent_window_is_waited_out() -> None:
    pacer = Pacer((500, 60), seed=1)
    pacer.started(5.0, held_back=False)
    pacer.answered(5.0, 200, headers(500, 3, 12), None)
    assert pacer.ready_at() >= 17.0


def test_the_engine_s_window_replaces_the_assumed_one() -> None:
    pacer = Pacer((500, 60), seed=1)
    pacer.started(0.0, held_back=False)
    pacer.answered(0.0, 200, headers(50, 49, 6), None)
    assert pacer.window == 6.0


def test_a_fleet_seen_spending_too_fast_slows_this_process() -> None:
    pacer = Pacer((500, 60), seed=1)
    pacer.started(0.0, held_back=True)
    pacer.answered(0.0, 200, headers(500, 499, 60), None)
    before = pacer.rate
    # One second later 100 requests are gone, of which one was ours: the fleet spends 100/s.
    pacer.started(1.0, held_back=True)
    pacer.answered(1.0, 200, headers(500, 399, 59), None)
    assert pacer.rate < before / 10


def test_a_flush_in_a_fresh_process_goes_at_once_the_pace_waits() -> None:
    # Nothing says the key is shared yet: what someone waits for goes at the budget's pace
    # (450 a minute), the rest at a quarter of it, to fill bigger batches.
    pacer = Pacer((500, 60), seed=1)
    pacer.started(10.0, held_back=False, urgent=True)
    pacer.answered(10.0, 200, {}, None)
    assert pacer.ready_at(urgent=True) == pytest.approx(10.0 + 60 / 450)
    assert pacer.ready_at() == pytest.approx(10.0 + 60 / 125)


def test_after_a_429_without_headers_a_flush_waits_the_pace_too() -> None:
    pacer = Pacer((500, 60), seed=1)
    pacer.started(10.0, held_back=False, urgent=True)
    pacer.answered(10.0, 429, {}, None)
    pacer.pause(10.0, -100)  # (only the spacing is looked at here)
    pacer.started(80.0, held_back=True, urgent=True)
    assert pacer.ready_at(urgent=True) == pacer.ready_at() > 80.0 + 60 / 125


@pytest.mark.parametrize(("remaining", "goes_at_once"), [(497, True), (400, False)])
def test_with_headers_a_flush_goes_at_once_while_the_others_leave_room(
    remaining: int, goes_at_once: bool
) -> None:
    # Two answers a second apart: 3 requests (ours among them) or 100 went meanwhile.
    pacer = Pacer((500, 60), seed=1)
    pacer.started(0.0, held_back=False, urgent=True)
    pacer.answered(0.0, 200, headers(500, 500 - 1, 60), None)
    pacer.started(1.0, held_back=False, urgent=True)
    pacer.answered(1.0, 200, headers(500, remaining - 1, 59), None)
    assert (pacer.ready_at(urgent=True) < pacer.ready_at()) is goes_at_once


def test_a_young_process_refused_once_resumes_at_its_own_recent_pace() -> None:
    # Three requests in its first two seconds, then a 429 with Retry-After 1: it resumes
    # within seconds, not at three requests a minute (its successes over a whole window).
    pacer = Pacer((500, 60), seed=1)
    for n, t in enumerate((0.0, 1.0, 2.0)):
        pacer.started(t, held_back=False)
        pacer.answered(t, 200, headers(500, 499 - n, 60 - n), None)
    pacer.started(2.5, held_back=True)
    pacer.answered(2.5, 429, {}, 1.0)
    assert pacer.ready_at() <= 2.5 + 3.0


def test_a_process_joining_a_window_others_spent_from_is_not_slowed_for_it() -> None:
    # 61 requests went in the first 10 s of this window, before this process existed: its
    # first answer must not read them as spent in the last half second.
    pacer = Pacer((500, 60), seed=1)
    before = pacer.rate
    pacer.started(0.0, held_back=False, urgent=True)
    pacer.answered(0.0, 200, headers(500, 500 - 62, 50), None)
    assert pacer.rate == before
    pacer.started(1.0, held_back=False, urgent=True)
    pacer.answered(1.0, 200, headers(500, 500 - 63, 49), None)
    assert pacer.ready_at(urgent=True) < 1.2  # nobody else sends now: a flush goes at once


def test_pacing_off_never_waits() -> None:
    pacer = Pacer(None)
    pacer.started(0.0, held_back=True)
    pacer.answered(0.0, 429, {}, 30.0)
    assert pacer.ready_at() == 0.0


# --- host ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "http://",
        "https://",
        "not a url",
        "https://api.sankofa .dev",
        "https://api.sankofa.dev/ingest path",
        "https://api.sankofa\n.dev",
        "https://api\tsankofa.dev",
        "https://api.sankofa.dev:port",
        "https://api.sankofa.dev:99999",
        "https://api.sankofa.dev/?key=1",
        "https://api.sankofa.dev/#top",
        "https://user:secret@api.sankofa.dev",
        "https://api_sankofa!.dev",
        "https://[::1",
        "ftp://example.com",
        "",
        "   ",
        None,
        42,
    ],
)
def test_a_host_that_can_never_work_is_refused_by_name(host: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^host"):
        check_host(host)


@pytest.mark.parametrize(
    ("host", "normalised"),
    [
        ("https://api.sankofa.dev", "https://api.sankofa.dev"),
        ("https://api.sankofa.dev/", "https://api.sankofa.dev"),
        ("  https://api.sankofa.dev/  ", "https://api.sankofa.dev"),
        ("https://api.sankofa.dev\n", "https://api.sankofa.dev"),
        ("HTTPS://API.Sankofa.dev", "HTTPS://API.Sankofa.dev"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("https://engine.example.com/sankofa", "https://engine.example.com/sankofa"),
        ("api.sankofa.dev", "https://api.sankofa.dev"),
        ("localhost:8080", "https://localhost:8080"),
        ("https://bücher.example", "https://bücher.example"),
    ],
)
def test_a_usable_host_is_kept(host: str, normalised: str) -> None:
    assert check_host(host) == normalised


def test_configuration_errors_are_value_errors() -> None:
    assert issubclass(ConfigurationError, ValueError)
    with pytest.raises(ValueError, match="host"):
        Client("sk_test_0123456789abcdef", "not a url", disabled=True)
