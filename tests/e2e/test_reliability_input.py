"""Issue 4, scenario 10: generated bad input through the public API, against the reference server.

The client never raises into the caller (strict=False), its thread never dies, and every accepted
operation is either delivered or reported.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sankofa_sdk import Client, SankofaError
from sankofa_sdk.server import ReferenceServer

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(max_size=16),
    st.decimals(),
    st.datetimes(),
    st.dates(),
    st.uuids(),
    st.just(math.nan),
    st.just(object()),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
        st.sets(st.integers(), max_size=3),
        st.tuples(inner),
    ),
    max_leaves=12,
)
ids = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.booleans(),
    st.just("identity"),
    st.just("user_ok_1"),
    st.binary(max_size=4),
)
names = st.one_of(st.text(max_size=20), st.none(), st.integers(), st.just("Valid Event"))
timestamps = st.one_of(
    st.none(),
    st.datetimes(),
    st.text(max_size=30),
    st.floats(),
    st.integers(),
    st.just("2026-05-09T14:32:01Z"),
    st.just(dt.date(2026, 1, 1)),
)
calls = st.lists(
    st.tuples(
        st.sampled_from(["track", "identify", "alias", "people_set", "people_unset", "reset"]),
        names,
        ids,
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), values, max_size=6),
        timestamps,
    ),
    min_size=1,
    max_size=25,
)


def invoke(client: Client, kind: str, name: Any, uid: Any, props: Any, stamp: Any) -> None:
    if kind == "track":
        client.track(name, props, distinct_id=uid, timestamp=stamp)
    elif kind == "identify":
        client.identify(uid, props, timestamp=stamp)
    elif kind == "alias":
        client.alias(name, uid, timestamp=stamp)
    elif kind == "people_set":
        client.people_set(props, distinct_id=uid, timestamp=stamp)
    elif kind == "people_unset":
        client.people_unset(list(props) or name, distinct_id=uid, timestamp=stamp)
    else:
        client.reset()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=calls)
def test_generated_calls_never_raise_and_everything_accepted_is_accounted_for(
    server: ReferenceServer, batch: list[tuple[str, Any, Any, Any, Any]]
) -> None:
    errors: list[SankofaError] = []
    with Client(
        server.api_key, server.url, flush_interval=0.05, on_error=lambda e, op: errors.append(e)
    ) as client:
        for call in batch:
            invoke(client, *call)
        assert client.flush(timeout=30)
        stats = client.stats()
        assert stats["accepted"] == stats["delivered"] + stats["failed"]
        assert stats["failed"] == 0, stats  # validation on the caller's side means no 400s
        # Timestamp text that cannot be read is reported, but its call is kept (not dropped).
        dropped = [e for e in errors if getattr(e, "reason", None) != "unread_timestamp"]
        assert len(dropped) == stats["dropped"].get("invalid", 0)
        assert client._worker._thread is None or client._worker._thread.is_alive()
    assert server.wait_until_applied(timeout=30)
    assert server.stats()["discarded"] == 0  # nothing we sent was silently thrown away


def test_decimal_and_datetime_properties_arrive_as_numbers_and_strings(
    server: ReferenceServer,
) -> None:
    with Client(server.api_key, server.url, flush_interval=0.05) as client:
        client.track(
            "Typed",
            {"price": Decimal("49.99"), "at": dt.datetime(2026, 5, 9, 14, 32, 1)},
            distinct_id="user_t",
        )
        assert client.flush(10)
    assert server.wait_until_applied(10)
    (event,) = server.events("user_t")
    assert event["properties"]["price"] == 49.99
    assert event["properties"]["at"] == "2026-05-09T14:32:01.000Z"
