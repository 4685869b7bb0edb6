"""Calls given objects that misbehave: they are refused or cut, never raised into the caller."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

import pytest
import responses

from sankofa_sdk import Client, ValidationError

from ..conftest import BATCH_URL, refused_call, sent_operations

MakeClient = Callable[..., Client]


class Boom(Exception):
    pass


class UnreadableMapping(Mapping[str, Any]):
    """A mapping whose items cannot be read: ``__getitem__`` or ``__iter__`` raises."""

    def __init__(self, fail_in: str) -> None:
        self._fail_in = fail_in

    def __getitem__(self, key: str) -> Any:
        if self._fail_in == "getitem":
            raise Boom("no item today")
        return 1

    def __iter__(self) -> Iterator[str]:
        if self._fail_in == "iter":
            raise Boom("no iteration today")
        return iter(["a"])

    def __len__(self) -> int:
        return 1


class TextlessStr(str):
    def __str__(self) -> str:
        raise Boom("no text today")


class TextlessInt(int):
    def __str__(self) -> str:
        raise Boom("no text today")

    __repr__ = __str__


class RaisingZone(dt.tzinfo):
    def utcoffset(self, value: Optional[dt.datetime]) -> dt.timedelta:
        raise Boom("no offset today")


def _failing_keys() -> Iterator[str]:
    yield "plan"
    raise Boom("no more keys today")


UNREADABLE_CALLS: list[tuple[str, Callable[[Client], None]]] = [
    ("track, __getitem__ raises", lambda c: c.track("E", UnreadableMapping("getitem"))),
    ("track, __iter__ raises", lambda c: c.track("E", UnreadableMapping("iter"))),
    (
        "track, default_properties raise",
        lambda c: c.track("E", distinct_id="user_1", default_properties=UnreadableMapping("iter")),
    ),
    ("identify, traits raise", lambda c: c.identify("user_1", UnreadableMapping("getitem"))),
    ("people_set raises", lambda c: c.people_set(UnreadableMapping("iter"))),
    ("track, str subclass id", lambda c: c.track("E", distinct_id=TextlessStr("user_1"))),
    ("track, int subclass id", lambda c: c.track("E", distinct_id=TextlessInt(42))),
    ("track, str subclass event name", lambda c: c.track(TextlessStr("Event"))),
    ("identify, int subclass id", lambda c: c.identify(TextlessInt(42))),
    ("alias, int subclass alias", lambda c: c.alias(TextlessInt(42), "user_1")),
    (
        "identify, int subclass anonymous id",
        lambda c: c.identify("user_1", anonymous_id=TextlessInt(42)),
    ),
    (
        "track, tzinfo raises",
        lambda c: c.track("E", timestamp=dt.datetime(2026, 1, 5, tzinfo=RaisingZone())),
    ),
    (
        "alias, tzinfo raises",
        lambda c: c.alias(
            "anon_1", "user_1", timestamp=dt.datetime(2026, 1, 5, tzinfo=RaisingZone())
        ),
    ),
    ("people_unset, iterable raises", lambda c: c.people_unset(_failing_keys())),
]


@pytest.mark.parametrize(
    ("name", "call"), UNREADABLE_CALLS, ids=[name for name, _ in UNREADABLE_CALLS]
)
def test_an_unreadable_argument_is_counted_and_reported_not_raised(
    rsps: responses.RequestsMock,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    name: str,
    call: Callable[[Client], None],
) -> None:
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        errors = refused_call(make_client, rsps, call)
    error = errors[0][0]
    assert isinstance(error, ValidationError) and isinstance(error.__cause__, Boom)
    assert "Boom" in str(error) and "dropped" in caplog.text


@pytest.mark.parametrize(
    ("name", "call"), UNREADABLE_CALLS, ids=[name for name, _ in UNREADABLE_CALLS]
)
def test_strict_mode_raises_a_validation_error_from_the_cause(
    make_client: MakeClient, name: str, call: Callable[[Client], None]
) -> None:
    client = make_client(strict=True)
    with pytest.raises(ValidationError) as info:
        call(client)
    assert isinstance(info.value.__cause__, Boom)
    assert client.stats()["accepted"] == 0


def test_a_key_that_cannot_be_made_text_is_cut_and_the_event_kept(
    rsps: responses.RequestsMock, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    class TextlessKey:
        def __str__(self) -> str:
            raise Boom("no text today")

    rsps.add(responses.POST, BATCH_URL, json={"ok": True})
    client = make_client()
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        client.track("Kept", {TextlessKey(): 1, "plan": "pro"}, distinct_id="user_1")
        client.people_set({TextlessKey(): 1, "name": "Ada"}, distinct_id="user_1")
        assert client.flush(5)
    track, people = sent_operations(rsps)
    assert track["payload"]["event_name"] == "Kept"
    assert {k: v for k, v in track["payload"]["properties"].items() if k != "$insert_id"} == {
        "plan": "pro"
    }
    assert people["payload"]["properties"] == {"name": "Ada"}
    assert client.stats()["delivered"] == 2 and client.stats()["dropped"] == {}
    assert "TextlessKey key could not be made text" in caplog.text
