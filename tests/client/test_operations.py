"""The shared wire rules: garbage ids and timestamps, as the engine applies them."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sankofa_sdk import _validate
from sankofa_sdk._errors import ValidationError
from sankofa_sdk._operations import (
    GARBAGE_ID_MARKERS,
    MIN_ID_BYTES,
    format_datetime,
    format_epoch,
    garbage_id_reason,
    is_garbage_id,
    is_zero_time,
    parse_property_timestamp,
    parse_rfc3339,
    to_epoch,
)
from sankofa_sdk._validate import check_distinct_id


@pytest.mark.parametrize(
    ("distinct_id", "garbage"),
    [
        ("", True),
        ("a", True),
        (" ", True),
        ("ab", False),
        ("  ", False),
        ("é", False),
        ("user_identity_9", True),
        ("accepted_invite_42", True),
        ("ACCEPT-1", True),
        ("x-gzip", True),
        ("*/*", True),
        ("DEFLATE", True),
        ("user_42", False),
        ("5f0c2a4e-8a8e-4a59-9b8e-0d2f6c1e7a10", False),
        ("42", False),
    ],
)
def test_garbage_id_rule_matches_the_engine(distinct_id: str, garbage: bool) -> None:
    assert is_garbage_id(distinct_id) is garbage


def _reason_as_the_rule_reads(distinct_id: str) -> str | None:
    """The engine's rule written out plainly, marker by marker."""
    if len(distinct_id.encode("utf-8", "surrogatepass")) < MIN_ID_BYTES:
        return f"shorter than {MIN_ID_BYTES} bytes"
    lowered = distinct_id.replace("\u0130", "i").lower()
    for marker in GARBAGE_ID_MARKERS:
        if marker in lowered:
            return f"contains {marker!r}, which the engine treats as a garbage id"
    return None


_id_pieces = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        [*GARBAGE_ID_MARKERS, "GZIP", "Accept", "ACCEPT", "Identİty", "İdentity", "*/", "gzi"]
    ),
    st.characters(),  # one character: 1 to 4 UTF-8 bytes, or a lone surrogate
)


@given(st.lists(_id_pieces, max_size=4).map("".join))
def test_garbage_id_reason_is_the_rule(distinct_id: str) -> None:
    # garbage_id_reason runs on every call, so it is written for speed; this holds it to the
    # rule itself, reason included (the first marker in the engine's order).
    assert garbage_id_reason(distinct_id) == _reason_as_the_rule_reads(distinct_id)


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-09T14:32:01Z",
        "2026-05-09T14:32:01.482Z",
        "2026-05-09T14:32:01.123456789+05:30",
        "2026-05-09T14:32:01-00:00",
        "0001-01-01T00:00:00Z",
    ],
)
def test_engine_accepts_rfc3339_with_zone(text: str) -> None:
    assert parse_rfc3339(text).tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-09 14:32:01",
        "2026-05-09T14:32:01",
        "2026-05-09t14:32:01Z",
        "",
        "1746801121",
        "2026-02-30T00:00:00Z",
        "2026-05-09T24:00:00Z",
        "2026-05-09T14:32:01.Z",
        "2026-05-09T14:32:01+5:30",
    ],
)
def test_engine_rejects_other_top_level_timestamps(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_property_timestamps_also_accept_zoneless_layouts_as_utc() -> None:
    parsed = parse_property_timestamp("2026-05-09 14:32:01.250")
    assert parsed == dt.datetime(2026, 5, 9, 14, 32, 1, 250000, tzinfo=dt.timezone.utc)
    assert parse_property_timestamp("yesterday") is None


def test_zero_time_counts_as_not_sent() -> None:
    assert is_zero_time(parse_rfc3339("0001-01-01T00:00:00Z"))
    assert not is_zero_time(parse_rfc3339("2026-01-01T00:00:00Z"))


def test_format_datetime_reads_naive_as_utc() -> None:
    assert format_datetime(dt.datetime(2026, 5, 9, 14, 32, 1, 482999)) == "2026-05-09T14:32:01.483Z"


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(2106, 2, 7),
        timezones=st.just(dt.timezone.utc),
    )
)
def test_stamps_parse_back_to_the_same_millisecond(moment: dt.datetime) -> None:
    text = format_epoch(to_epoch(moment))
    assert abs(to_epoch(parse_rfc3339(text)) - to_epoch(moment)) <= 0.0005 + 1e-6
    assert text.endswith("Z") and len(text) == 24


def test_stamps_of_many_different_seconds_in_turn_each_keep_their_own_date() -> None:
    # More distinct seconds than are cached, each formatted twice, interleaved.
    moments = [
        dt.datetime(2026, 5, 9, 14, 32, 1, 482000, tzinfo=dt.timezone.utc) + dt.timedelta(days=i)
        for i in range(600)
    ]

    texts = [format_epoch(to_epoch(moment)) for moment in moments + moments]

    expected = [moment.strftime("%Y-%m-%dT%H:%M:%S.482Z") for moment in moments]
    assert texts == expected + expected


@given(st.lists(st.lists(_id_pieces, max_size=3).map("".join), max_size=30))
def test_checking_an_id_again_gives_the_same_verdict(distinct_ids: list[str]) -> None:
    # check_distinct_id remembers ids it kept; a repeated id, kept or not, is judged the same.
    for distinct_id in [*distinct_ids, *distinct_ids]:
        why = garbage_id_reason(distinct_id)
        if why is None:
            assert check_distinct_id(distinct_id) == distinct_id
        else:
            with pytest.raises(ValidationError, match="silently discarded"):
                check_distinct_id(distinct_id)


def test_remembered_ids_stay_few() -> None:
    for i in range(3 * _validate._KEPT_IDS_MAX):
        check_distinct_id(f"user_{i}")
    assert 0 < len(_validate._KEPT_IDS) <= _validate._KEPT_IDS_MAX
    check_distinct_id("x" * 10_000)  # long ids are checked every time, not remembered
    assert "x" * 10_000 not in _validate._KEPT_IDS
