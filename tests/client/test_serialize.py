"""Value conversion: whatever the caller passes becomes valid JSON; nothing of theirs is mutated."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import itertools
import json
import math
import os
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sankofa_sdk import _serialize
from sankofa_sdk._serialize import (
    MAX_DEPTH,
    Operation,
    _insert_ids,
    encode_operation,
    new_insert_id,
    to_json,
)
from sankofa_sdk._spool.calls import pack_call, unpack_call

from ..conftest import local_time


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Plan:
    name: str
    seats: int


def roundtrip(value: Any) -> Any:
    data, _ = to_json(value)
    return json.loads(data)


def test_known_types_are_converted() -> None:
    aware = dt.datetime(2026, 5, 9, 15, 32, 1, 482000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    value = {
        "when": aware,
        "day": dt.date(2026, 5, 9),
        "price": Decimal("49.99"),
        "whole": Decimal("3"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "color": Color.RED,
        "tags": {"b", "a"},
        "pair": (1, 2),
        "raw": b"hello",
        "binary": b"\xff\x00",
        "plan": Plan("pro", 3),
        "nan": float("nan"),
        "inf": -math.inf,
        "dnan": Decimal("NaN"),
        1: "int key",
        None: "none key",
    }
    assert roundtrip(value) == {
        "when": "2026-05-09T14:32:01.482Z",
        "day": "2026-05-09",
        "price": 49.99,
        "whole": 3,
        "id": "12345678-1234-5678-1234-567812345678",
        "color": "red",
        "tags": ["a", "b"],
        "pair": [1, 2],
        "raw": "hello",
        "binary": "/wA=",
        "plan": {"name": "pro", "seats": 3},
        "nan": None,
        "inf": None,
        "dnan": None,
        "1": "int key",
        "null": "none key",
    }


def test_absurd_nesting_is_cut_with_a_note() -> None:
    deep: Any = "bottom"
    for _ in range(5000):  # far deeper than the C encoder can go
        deep = {"d": deep}
    data, problems = to_json(deep)
    assert any("nested deeper" in p for p in problems)
    depth, node = 0, json.loads(data)
    while isinstance(node, dict):
        depth, node = depth + 1, node["d"]
    assert depth == MAX_DEPTH and node is None


def test_lone_surrogates_become_replacement_characters() -> None:
    data, _ = to_json({"bad\ud800key": "x\udfffy"})
    assert json.loads(data) == {"bad\ufffdkey": "x\ufffdy"}


def test_object_keys_that_are_not_strings_become_strings() -> None:
    assert roundtrip({(1, 2): "tuple", dt.date(2026, 1, 2): "date"}) == {
        "(1, 2)": "tuple",
        "2026-01-02": "date",
    }


naive_or_utc_datetimes = st.datetimes(timezones=st.none() | st.just(dt.timezone.utc))
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.decimals(),
    naive_or_utc_datetimes,
    st.dates(),
    st.uuids(),
    st.binary(max_size=20),
    st.sampled_from(list(Color)),
)
any_keys = st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.floats())
nested = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(any_keys, inner, max_size=4),
        st.tuples(inner, inner),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), nested, max_size=8))
def test_any_value_becomes_strict_json_and_is_not_mutated(properties: dict[str, Any]) -> None:
    before = copy.deepcopy(properties)
    data, _ = to_json(properties)
    # Strict JSON: the engine (Go) rejects NaN and Infinity, so must a strict parser here.
    parsed = json.loads(data, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert isinstance(parsed, dict)
    assert set(parsed) == set(properties)
    assert _same(properties, before)


def _same(a: Any, b: Any) -> bool:
    """Equal, type for type and in order, with NaN equal to NaN (``==`` says NaN != NaN, so a
    plain comparison could not check any example that holds one)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Decimal) and a.is_nan():
        return bool(b.is_nan())
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _same(ka, kb) and _same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- datetimes: their millisecond, cut like isoformat(timespec="milliseconds") cuts it --------

needs_tzset = pytest.mark.skipif(not hasattr(time, "tzset"), reason="needs time.tzset (Unix)")


def _written(value: dt.datetime) -> list[str]:
    """The text a datetime property is sent as by each path: the encoder alone, a call kept in
    memory, and a call kept in the spool (its values packed on the caller's thread)."""
    op: Operation = ("track", "user_1", "E", {"when": value}, None, 1_767_225_600.0)
    packed = pack_call(op)
    assert packed is not None
    unpacked = unpack_call(packed)
    assert unpacked is not None
    return [
        json.loads(to_json({"when": value})[0])["when"],
        json.loads(encode_operation(op, "0.1.0")[0])["payload"]["properties"]["when"],
        json.loads(encode_operation(unpacked, "0.1.0")[0])["payload"]["properties"]["when"],
    ]


def _cut_to_milliseconds(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


_UTC = dt.timezone.utc


@needs_tzset
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime.max, "9999-12-31T23:59:59.999Z"),
        (dt.datetime.max.replace(tzinfo=_UTC), "9999-12-31T23:59:59.999Z"),
        (dt.datetime(2026, 12, 31, 23, 59, 59, 999999, _UTC), "2026-12-31T23:59:59.999Z"),
        (dt.datetime(1969, 12, 31, 23, 59, 59, 999500), "1969-12-31T23:59:59.999Z"),
        (dt.datetime(2026, 5, 9, 14, 32, 1, 482999, _UTC), "2026-05-09T14:32:01.482Z"),
        (dt.datetime.min, "0001-01-01T00:00:00.000Z"),
    ],
    ids=["max", "max UTC", "last microsecond of 2026", "before 1970", "482.999 ms", "min"],
)
def test_a_datetime_is_cut_to_its_millisecond_not_rounded_into_the_next_year(
    value: dt.datetime, text: str
) -> None:
    # Rounding wrote datetime.max as "10000-01-01T00:00:00.000Z", which is not RFC 3339.
    with local_time("UTC"):
        assert _written(value) == [text] * 3


@needs_tzset
@settings(deadline=None)
@given(naive_or_utc_datetimes)
def test_a_datetime_parses_back_to_its_millisecond_in_its_own_year(value: dt.datetime) -> None:
    with local_time("UTC"):  # a naive datetime is local time
        texts = _written(value)
    expected = _cut_to_milliseconds(value.replace(tzinfo=_UTC))
    for text in texts:
        assert text.endswith("Z")
        parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00")
        assert parsed == expected
        assert parsed.year == value.year
        assert text == expected.isoformat(timespec="milliseconds").replace("+00:00", "Z")


offsets = st.timedeltas(
    min_value=dt.timedelta(hours=-24) + dt.timedelta.resolution,
    max_value=dt.timedelta(hours=24) - dt.timedelta.resolution,
).map(dt.timezone)


@needs_tzset
@settings(deadline=None)
@given(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.none() | st.just(_UTC) | offsets,
    )
)
def test_a_datetime_in_any_zone_is_written_as_its_utc_millisecond(value: dt.datetime) -> None:
    with local_time("America/New_York"):  # a naive datetime is local time
        texts = _written(value)
        instant = _cut_to_milliseconds(value.astimezone(_UTC))
    for text in texts:
        parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00")
        assert parsed == instant and parsed.year == instant.year
        assert text == instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("count", [1, 31, 32, 1000])
def test_insert_ids_are_random_version_4_uuids(count: int) -> None:
    ids = [new_insert_id() for _ in range(2000)] + _insert_ids(count) + _insert_ids(count)

    assert len(set(ids)) == len(ids) == 2000 + 2 * count
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_insert_ids_made_together_use_every_random_digit() -> None:
    ids = _insert_ids(1000)

    for column in range(36):
        seen = {text[column] for text in ids}
        if column in (8, 13, 18, 23):
            assert seen == {"-"}
        elif column == 14:
            assert seen == {"4"}
        elif column == 19:
            assert seen == set("89ab")
        else:
            assert seen == set("0123456789abcdef")


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text today")


class _Unreadable(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("no items today")


def test_an_integer_too_long_to_write_is_cut_with_a_note() -> None:
    data, problems = to_json({"n": 10**5000, "m": -(10**5000), "ok": 2**100})

    assert json.loads(data) == {"n": None, "m": None, "ok": 2**100}
    assert len(problems) == 2 and all("too many digits to write" in p for p in problems)


def test_a_key_that_cannot_be_made_text_loses_its_entry_with_a_note() -> None:
    data, problems = to_json({"a": 1, _Unprintable(): 2, 10**5000: 3, "b": 4})

    assert json.loads(data) == {"a": 1, "b": 4}
    assert len(problems) == 2 and all("its entry cut" in p for p in problems)


def test_a_mapping_that_cannot_be_read_is_cut_with_a_note() -> None:
    data, problems = to_json({"a": _Unreadable(x=1), "b": [1]})

    assert json.loads(data) == {"a": None, "b": [1]}
    assert problems == ["$.a: could not read _Unreadable (RuntimeError('no items today')), cut"]


def test_without_the_c_encoder_the_same_text_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"when": dt.datetime(2026, 5, 9, 14, 32, 1, 482000), "n": [1, 2.5, None], "é": "\u2028"}
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)

    encode, encode_str = _serialize._make_encoders()

    assert encode(value) == _serialize._encode(value)
    assert encode_str('é"\n') == _serialize._encode_str('é"\n')


# --- iterables: only the finite kinds are read ------------------------------------------------


def test_finite_collections_are_sent_as_lists() -> None:
    import array
    from collections import deque

    counts = {"a": 1, "b": 2}
    value = {
        "deque": deque([1, 2]),
        "keys": counts.keys(),
        "values": counts.values(),
        "items": counts.items(),
        "frozen": frozenset([3]),
        "array": array.array("i", [4, 5]),
    }
    data, notes = to_json(value)
    assert json.loads(data) == {
        "deque": [1, 2],
        "keys": ["a", "b"],
        "values": [1, 2],
        "items": [["a", 1], ["b", 2]],
        "frozen": [3],
        "array": [4, 5],
    }
    assert notes == []


class EndlessIterable:
    """Iterable but not a known finite collection: reading it would never end."""

    def __iter__(self) -> Any:
        return itertools.count()

    def __str__(self) -> str:
        return "all the numbers"


def test_an_iterable_of_unknown_kind_is_never_read() -> None:
    data, notes = to_json({"n": EndlessIterable(), "ok": 1})
    assert json.loads(data) == {"n": "all the numbers", "ok": 1}
    assert len(notes) == 1 and "$.n" in notes[0] and "EndlessIterable" in notes[0]


def test_iterators_and_generators_are_never_read() -> None:
    def numbers() -> Iterator[int]:
        yield 1
        raise AssertionError("a generator must not be read")

    endless = itertools.count()
    shared = iter([1, 2])
    data, notes = to_json({"gen": numbers(), "count": endless, "it": shared})
    sent = json.loads(data)
    assert sent == {"gen": None, "count": None, "it": None}
    assert next(endless) == 0 and next(shared) == 1  # nothing was consumed
    assert len(notes) == 3 and all("not read" in note for note in notes)


def test_a_file_object_is_not_read() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(write_end, "wb"):
        data, notes = to_json({"body": pipe})  # reading would block: nobody writes
    assert json.loads(data) == {"body": None} and len(notes) == 1


# --- models: sent as objects ------------------------------------------------------------------


class V2Model:
    """Shaped like a pydantic v2 model: ``model_dump()``, and iterating gives (name, value)."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def model_dump(self) -> dict[str, Any]:
        return dict(self._fields)

    def dict(self) -> dict[str, Any]:  # deprecated in v2; model_dump() must win
        raise AssertionError("dict() called on a v2 model")

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._fields.items())


class V1Model:
    """Shaped like a pydantic v1 model: ``dict()``, and iterating gives (name, value)."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def dict(self) -> dict[str, Any]:
        return dict(self._fields)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._fields.items())


class Record:
    """Not a tuple, but with ``_asdict()`` like a named tuple."""

    def _asdict(self) -> dict[str, Any]:
        return {"x": 1, "y": V1Model(z=2)}


class NotAModel:
    """A ``dict`` attribute that is not a method giving a mapping: not taken for a model."""

    def dict(self) -> str:
        return "not a mapping"

    def __str__(self) -> str:
        return "plain object"


def test_models_are_sent_as_objects() -> None:
    value = {
        "v2": V2Model(plan="pro", seats=3, when=dt.date(2026, 1, 5)),
        "v1": V1Model(plan="free", nested=V2Model(a=1)),
        "record": Record(),
        "odd": NotAModel(),
    }
    data, notes = to_json(value)
    assert json.loads(data) == {
        "v2": {"plan": "pro", "seats": 3, "when": "2026-01-05"},
        "v1": {"plan": "free", "nested": {"a": 1}},
        "record": {"x": 1, "y": {"z": 2}},
        "odd": "plain object",
    }
    assert notes == []


def test_real_pydantic_models_are_sent_as_objects() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Plan(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        name: str
        seats: int

    data, notes = to_json({"plan": Plan(name="pro", seats=3)})
    assert json.loads(data) == {"plan": {"name": "pro", "seats": 3}} and notes == []
