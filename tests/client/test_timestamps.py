"""Timestamps: naive datetimes are local time, text the engine would refuse is read or reported,
and times outside what RFC 3339 or the engine can hold are written or refused clearly."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st

from sankofa_sdk import Client, SankofaError, ValidationError
from sankofa_sdk._operations import datetime_epoch, format_datetime, format_epoch
from sankofa_sdk._serialize import to_json

from ..conftest import BATCH_URL, local_time, sent_operations

MakeClient = Callable[..., Client]
pytestmark = pytest.mark.skipif(not hasattr(time, "tzset"), reason="needs time.tzset (Unix)")


@pytest.fixture
def kolkata() -> Iterator[None]:
    """Local time is UTC+05:30 (no daylight saving) for the test."""
    with local_time("Asia/Kolkata"):
        yield


def _sent(rsps: responses.RequestsMock, client: Client) -> list[dict[str, Any]]:
    assert client.flush(5)
    return sent_operations(rsps)


@pytest.fixture
def ok(rsps: responses.RequestsMock) -> responses.RequestsMock:
    rsps.add(responses.POST, BATCH_URL, json={"ok": True})
    return rsps


# --- naive datetimes are local time ----------------------------------------------------------


def test_a_naive_datetime_property_is_local_time(kolkata: None) -> None:
    data, _ = to_json({"at": dt.datetime(2026, 1, 5, 10, 0)})
    assert b'"2026-01-05T04:30:00.000Z"' in data


def test_a_naive_timestamp_is_local_time(
    kolkata: None, ok: responses.RequestsMock, make_client: MakeClient
) -> None:
    client = make_client()
    client.track("E", distinct_id="user_1", timestamp=dt.datetime(2026, 1, 5, 10, 0))
    client.alias("anon_1", "user_1", timestamp=dt.datetime(2026, 1, 5, 10, 0, 0, 250000))
    track, alias = _sent(ok, client)
    assert track["payload"]["timestamp"] == "2026-01-05T04:30:00.000Z"
    assert alias["payload"]["timestamp"] == "2026-01-05T04:30:00.250Z"


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)))
def test_the_spool_s_epoch_gives_the_same_text_as_the_encoder(value: dt.datetime) -> None:
    # _spool_calls writes a datetime as datetime_epoch() and later formats it with format_epoch.
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        assert format_datetime(value) == format_epoch(datetime_epoch(value))
    finally:
        os.environ.pop("TZ")
        time.tzset()


# --- years RFC 3339 can write ----------------------------------------------------------------


def test_years_before_1000_are_written_with_four_digits() -> None:
    utc = dt.timezone.utc
    assert format_datetime(dt.datetime(850, 3, 1, tzinfo=utc)) == "0850-03-01T00:00:00.000Z"
    assert format_datetime(dt.datetime(1, 1, 1, tzinfo=utc)) == "0001-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("timestamp", "said"),
    [
        (dt.datetime(999, 1, 1, tzinfo=dt.timezone.utc), "before 1970"),
        (dt.date(850, 1, 1), "before 1970"),
        ("0999-01-01T00:00:00Z", "before 1970"),
        ("2200-01-01T00:00:00Z", "after 2106"),
        (dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc), "after 2106"),
        (1746801121482, "milliseconds"),
    ],
)
def test_a_timestamp_the_engine_cannot_store_is_refused_with_the_reason(
    make_client: MakeClient, timestamp: Any, said: str
) -> None:
    errors: list[SankofaError] = []
    client = make_client(on_error=lambda e, op: errors.append(e))
    client.track("E", distinct_id="user_1", timestamp=timestamp)
    assert client.stats()["dropped"] == {"invalid": 1}
    assert len(errors) == 1 and said in str(errors[0])


# --- text the engine would refuse ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("2026-01-05T10:00:00+0530", "2026-01-05T04:30:00.000Z"),
        ("2026-01-05T10:00:00+05", "2026-01-05T05:00:00.000Z"),
        ("2026-01-05T10:00:00.25-0100", "2026-01-05T11:00:00.250Z"),
        ("2026-01-05 10:00:00Z", "2026-01-05T10:00:00.000Z"),
        ("2026-01-05t10:00:00z", "2026-01-05T10:00:00.000Z"),
        ("2026-01-05T10:00Z", "2026-01-05T10:00:00.000Z"),
        ("2026-01-05", "2026-01-05T00:00:00.000Z"),
        ("2026-01-05T10:00:00.123456789+05:30", "2026-01-05T04:30:00.123Z"),
    ],
)
def test_text_that_means_one_moment_is_read(
    ok: responses.RequestsMock, make_client: MakeClient, text: str, sent: str
) -> None:
    errors: list[SankofaError] = []
    client = make_client(on_error=lambda e, op: errors.append(e))
    client.people_set({"plan": "pro"}, distinct_id="user_1", timestamp=text)
    (people,) = _sent(ok, client)
    assert people["payload"]["timestamp"] == sent
    assert errors == []


UNREADABLE = ["2026-05-09 14:32:01", "2026-01-05T10:00:00", "yesterday", "2026-13-05T10:00Z", ""]


@pytest.mark.parametrize("text", UNREADABLE)
def test_unreadable_text_keeps_the_call_with_the_time_of_the_call(
    ok: responses.RequestsMock,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    text: str,
) -> None:
    errors: list[tuple[SankofaError, dict[str, Any]]] = []
    client = make_client(on_error=lambda e, op: errors.append((e, op)))
    before = time.time()
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        client.track("Kept", distinct_id="user_1", timestamp=text)
    after = time.time()
    (track,) = _sent(ok, client)
    stamp = dt.datetime.fromisoformat(track["payload"]["timestamp"].replace("Z", "+00:00"))
    assert before - 0.001 <= stamp.timestamp() <= after + 0.001
    assert client.stats()["dropped"] == {} and client.stats()["delivered"] == 1
    (error, operation), *_ = errors
    assert isinstance(error, ValidationError) and error.reason == "unread_timestamp"
    assert operation == {"type": "track", "timestamp": text}
    assert repr(text) in caplog.text


@pytest.mark.parametrize("text", UNREADABLE)
def test_strict_mode_refuses_unreadable_text(make_client: MakeClient, text: str) -> None:
    client = make_client(strict=True)
    with pytest.raises(ValidationError, match="timestamp"):
        client.identify("user_1", {"plan": "pro"}, timestamp=text)
    assert client.stats()["accepted"] == 0
