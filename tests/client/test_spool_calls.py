"""A call kept in the spool as its values is sent exactly as the same call kept in memory.

``pack_call`` runs on the caller's thread with a spool; the delivery thread unpacks and encodes.
Whatever it packs must come back as an operation that encodes to the same bytes and the same
notes; whatever it cannot keep exactly (types whose encoding depends on more than their
value, such as a numpy array that ``marshal`` would write as raw bytes) it refuses, and the
caller encodes that call as JSON instead. The operation it was given is left as it was.
"""

from __future__ import annotations

import array
import datetime as dt
import marshal
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sankofa_sdk import _serialize
from sankofa_sdk._serialize import Operation, encode_operation
from sankofa_sdk._spool.calls import pack_call, unpack_call
from tests.client.test_serialize_unchanged import (
    FIXED_ID,
    BadOffset,
    _copy,
    datetimes,
    floats,
    ids,
    integers,
    lib_versions,
    odd_keys,
    operations,
    stamps,
    texts,
)

plain_leaves = st.one_of(st.none(), st.booleans(), integers, floats, texts)
plain_values = st.recursive(
    plain_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(texts, odd_keys), inner, max_size=4),
    ),
    max_leaves=20,
)
plain_properties = st.dictionaries(
    st.one_of(texts, texts, odd_keys, st.just("$insert_id")),
    st.one_of(plain_values, plain_values, datetimes),
    max_size=8,
)
plain_operations = st.one_of(
    st.tuples(
        st.just("track"),
        ids,
        ids,
        st.none() | plain_properties,
        st.none() | plain_properties,
        stamps,
    ),
    st.tuples(st.just("people"), ids, st.none(), st.none() | plain_properties, st.none(), stamps),
    st.tuples(st.just("alias"), ids, ids, st.none(), st.none(), stamps),
)


def _encoded(op: Operation, lib_version: str) -> tuple[bytes, list[str]]:
    with mock.patch.object(_serialize, "new_insert_id", lambda: FIXED_ID):
        return encode_operation(op, lib_version, FIXED_ID)


def _unchanged(after: Any, before: Any) -> bool:
    """The same keys in the same order, each holding the very same object."""
    if after is None or before is None:
        return after is before
    return list(after) == list(before) and all(after[k] is before[k] for k in before)


def _check_round_trip(op: Operation, lib_version: str) -> bool:
    """True when the call was packed; either way what is sent is what memory would send."""
    given = _copy(op)
    packed = pack_call(given)
    assert _unchanged(given[3], op[3]), "pack_call changed the properties it was given"
    assert _unchanged(given[4], op[4])
    if packed is None:
        return False
    unpacked = unpack_call(packed)
    assert unpacked is not None
    assert _encoded(_copy(unpacked), lib_version) == _encoded(_copy(op), lib_version)
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_operations, lib_versions)
def test_plain_calls_come_back_as_the_same_bytes(op: Operation, lib_version: str) -> None:
    _check_round_trip(op, lib_version)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, lib_versions)
def test_any_call_is_either_refused_or_comes_back_as_the_same_bytes(
    op: Operation, lib_version: str
) -> None:
    # Every kind of value the serializer converts or cuts: cycles, deep nesting, subclasses,
    # objects with hooks that raise. Most are refused; what is packed must round-trip.
    _check_round_trip(op, lib_version)


def test_the_benchmark_event_is_packed() -> None:
    # The common shape, a datetime and containers among scalars, takes the fast path.
    op: Operation = (
        "track",
        "user_1",
        "Viewed Pricing",
        {
            "plan": "pro",
            "price": 49.99,
            "tags": ["pricing", "b"],
            "meta": {"source": "ads", "depth": 2},
            "at": dt.datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=dt.timezone.utc),
        },
        None,
        1_780_000_000.25,
    )
    assert _check_round_trip(op, "0.1.0")


@pytest.mark.parametrize(
    "value",
    [
        array.array("d", [1.5, 2.5]),  # marshal would write its raw bytes
        [array.array("i", [1])],
        {"nested": array.array("i", [1])},
        b"bytes",
        bytearray(b"x"),
        memoryview(b"x"),
        Decimal("1.5"),
        dt.date(2026, 1, 1),
        [dt.datetime(2026, 1, 1)],  # a datetime below the top level
        type("Name", (str,), {})("subclass"),
        {1, 2},
        object(),
    ],
    ids=repr,
)
def test_values_whose_encoding_depends_on_their_type_are_refused(value: Any) -> None:
    op: Operation = ("track", "user_1", "Viewed", {"v": value}, None, 1.0)
    assert pack_call(op) is None
    assert op[3] == {"v": value} or op[3]["v"] is value


def test_a_key_that_marshal_refuses_leaves_the_properties_as_they_were() -> None:
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    key = type("Key", (str,), {})("k")
    props = {"at": moment, key: 1}
    assert pack_call(("track", "user_1", "Viewed", props, None, 1.0)) is None
    assert props == {"at": moment, key: 1} and props["at"] is moment


def test_a_tzinfo_that_raises_is_refused_not_raised() -> None:
    props = {"at": dt.datetime(2026, 1, 1, tzinfo=BadOffset())}
    assert pack_call(("track", "user_1", "Viewed", props, None, 1.0)) is None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x01\x02",
        marshal.dumps((1, "track"), 4),
        marshal.dumps([1, "track", "u", "e", {}, (), None, (), 1.0], 4),
        marshal.dumps((2, "track", "user_1", "e", {}, (), None, (), 1.0), 4),  # a later format
        marshal.dumps((1, "batch", "user_1", "e", {}, (), None, (), 1.0), 4),
        marshal.dumps((1, "track", 5, "e", {}, (), None, (), 1.0), 4),
        marshal.dumps((1, "track", "user_1", "e", [], (), None, (), 1.0), 4),
        marshal.dumps((1, "track", "user_1", "e", {}, ("missing",), None, (), 1.0), 4),
        marshal.dumps((1, "track", "user_1", "e", {}, (), None, (), "1.0"), 4),
    ],
)
def test_a_payload_that_is_not_a_packed_call_unpacks_to_none(payload: bytes) -> None:
    assert unpack_call(payload) is None
