"""super_properties and before_send: what the app does to each operation before it is queued."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Callable, NoReturn, Optional

import pytest
import responses

from sankofa_sdk import Client, ConfigurationError, SankofaError, ValidationError

from ..conftest import API_KEY, HOST, sent_operations
from .test_client_delivery import ok

MakeClient = Callable[..., Client]


def test_super_properties_go_with_every_event_under_its_own(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    supers = {"app": "web", "release": "1.2"}
    client = make_client(super_properties=supers)
    supers["app"] = "changed later"  # a copy was taken
    client.track("A", {"release": "call's own"}, distinct_id="user_1")
    client.track("B", distinct_id="user_1")
    client.people_set({"plan": "pro"}, distinct_id="user_1")
    assert client.flush(10)
    ops = sent_operations(rsps)
    props = [op["payload"]["properties"] for op in ops]
    assert {k: props[0][k] for k in ("app", "release")} == {"app": "web", "release": "call's own"}
    assert {k: props[1][k] for k in ("app", "release")} == {"app": "web", "release": "1.2"}
    assert props[2] == {"plan": "pro"}  # people updates are not events


def test_before_send_can_scrub_and_drop(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    seen: list[dict[str, Any]] = []

    def scrub(op: dict[str, Any]) -> Optional[dict[str, Any]]:
        seen.append(dict(op))
        if op.get("event_name") == "Internal":
            return None
        op["properties"].pop("email", None)
        return op

    client = make_client(before_send=scrub, super_properties={"app": "web"})
    client.track("Signed Up", {"email": "ada@example.com", "plan": "pro"}, distinct_id="user_1")
    client.track("Internal", distinct_id="user_1")
    client.people_set({"email": "ada@example.com", "name": "Ada"}, distinct_id="user_1")
    client.alias("anon_1234", distinct_id="user_1")
    assert client.flush(10)
    ops = sent_operations(rsps)
    assert [op["type"] for op in ops] == ["track", "people", "alias"]
    assert "email" not in ops[0]["payload"]["properties"]
    assert ops[0]["payload"]["properties"]["app"] == "web"  # super properties come first
    assert ops[1]["payload"]["properties"] == {"name": "Ada"}
    assert client.stats()["dropped"] == {"before_send": 1}
    assert client.stats()["failed"] == 0  # the app's own choice is not a failure
    assert seen[0]["type"] == "track" and seen[0]["timestamp"].endswith("Z")
    assert len(seen) == 3  # aliases carry nothing of the app's: not shown


@pytest.mark.parametrize(
    "hook",
    [
        lambda op: 1 / 0,
        lambda op: "not a dict",
        lambda op: {**op, "event_name": ""},
        lambda op: {**op, "properties": ["a", "list"]},
    ],
    ids=["raises", "not a dict", "empty name", "properties not a mapping"],
)
def test_a_before_send_that_fails_drops_the_operation_and_says_why(
    rsps: responses.RequestsMock, make_client: MakeClient, hook: Callable[..., Any]
) -> None:
    ok(rsps)
    errors: list[SankofaError] = []
    client = make_client(before_send=hook, on_error=lambda e, op: errors.append(e))
    client.track("Event", {"a": 1}, distinct_id="user_1")  # never raises into the app
    assert client.flush(10)
    assert sent_operations(rsps) == []
    assert client.stats()["dropped"] == {"invalid": 1}
    assert len(errors) == 1 and getattr(errors[0], "reason", None) == "before_send"


class _Odd(Mapping[Any, Any]):
    """A mapping of ``items`` (a dict, or pairs: keys need not hash) whose named methods raise
    RuntimeError."""

    def __init__(self, items: Any, *raising: str) -> None:
        self._pairs = list(items.items() if isinstance(items, dict) else items)
        self._raising = raising

    def _check(self, method: str) -> None:
        if method in self._raising:
            raise RuntimeError(f"{method} fails")

    def __getitem__(self, key: Any) -> Any:
        self._check("__getitem__")
        for k, v in self._pairs:
            if k is key or (type(k) is type(key) and k == key):
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        self._check("__iter__")
        return iter([k for k, _ in self._pairs])

    def __len__(self) -> int:
        self._check("__len__")
        return len(self._pairs)

    def keys(self) -> Any:
        self._check("keys")
        return super().keys()

    def items(self) -> Any:
        self._check("items")
        return super().items()


class _NoText(str):
    def __str__(self) -> NoReturn:
        raise RuntimeError("no text")


class _NoHash:
    def __hash__(self) -> NoReturn:
        raise RuntimeError("no hash")


class _NoRepr(Exception):
    def __repr__(self) -> NoReturn:
        raise RuntimeError("no repr")


def _raise_no_repr(op: dict[str, Any]) -> NoReturn:
    raise _NoRepr("hook failed")


@pytest.mark.parametrize(
    "hook",
    [
        lambda op: {**op, "properties": _Odd({"a": 1}, "__iter__")},
        lambda op: {**op, "properties": _Odd({"a": 1}, "__iter__", "keys", "items")},
        lambda op: _Odd(op, "__getitem__"),
        lambda op: {**op, "event_name": _NoText("Event")},
        lambda op: {**op, "default_properties": _Odd({"b": 2}, "keys")},
        lambda op: {**op, "properties": _Odd([(_NoHash(), 1)])},
        lambda op: {1: "x", ("a",): "y"},
        lambda op: [("event_name", "Event")],
        _raise_no_repr,
    ],
    ids=[
        "properties whose iteration raises",
        "properties whose keys() and items() raise",
        "a mapping whose lookups raise",
        "an event name whose str() raises",
        "default_properties whose keys() raises",
        "properties with a key whose hash raises",
        "keys that are not strings",
        "not a mapping",
        "raises an exception whose repr raises",
    ],
)
def test_a_before_send_returning_what_cannot_be_read_drops_the_call_without_raising(
    rsps: responses.RequestsMock, make_client: MakeClient, hook: Callable[..., Any]
) -> None:
    ok(rsps)
    errors: list[SankofaError] = []
    client = make_client(before_send=hook, on_error=lambda e, op: errors.append(e))
    client.track("Event", {"a": 1}, distinct_id="user_1")  # must not raise into the app
    assert client.flush(10)
    assert sent_operations(rsps) == []
    assert client.stats()["dropped"] == {"invalid": 1}
    assert len(errors) == 1 and getattr(errors[0], "reason", None) == "before_send"


@pytest.mark.parametrize(
    "hook",
    [
        lambda op: _Odd(op, "__iter__", "keys", "items", "__len__"),
        lambda op: {**op, "properties": _Odd({"a": 1}, "__len__")},
    ],
    ids=["a mapping that cannot be iterated or sized", "properties whose len() raises"],
)
def test_a_before_send_mapping_read_by_key_is_sent(
    rsps: responses.RequestsMock, make_client: MakeClient, hook: Callable[..., Any]
) -> None:
    # The client reads what it needs by key (and copies properties by iterating them), so
    # methods it does not use may raise: nothing to drop.
    ok(rsps)
    client = make_client(before_send=hook)
    client.track("Event", {"a": 1}, distinct_id="user_1")
    assert client.flush(10)
    (sent,) = sent_operations(rsps)
    assert sent["payload"]["properties"]["a"] == 1
    assert client.stats()["dropped"] == {}


class _Unprintable:
    def __str__(self) -> NoReturn:
        raise RuntimeError("no text")


def test_a_property_value_from_before_send_whose_str_raises_is_cut_as_without_the_hook(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    # A value is converted on the delivery thread, as every property value is: only it is cut.
    ok(rsps)
    client = make_client(before_send=lambda op: {**op, "properties": {"odd": _Unprintable()}})
    client.track("Event", {"a": 1}, distinct_id="user_1")
    assert client.flush(10)
    (sent,) = sent_operations(rsps)
    assert sent["payload"]["properties"]["odd"] is None
    assert client.stats()["dropped"] == {}


def test_with_strict_a_failing_before_send_raises(make_client: MakeClient) -> None:
    client = make_client(before_send=lambda op: 1 / 0, strict=True, send=False)
    with pytest.raises(ValidationError) as raised:
        client.track("Event", distinct_id="user_1")
    assert isinstance(raised.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("before_send", "not callable"),
        ("super_properties", ["a"]),
        ("super_properties", {1: "non-str key"}),
        ("proxies", "http://proxy:3128"),
        ("proxies", {"https": 3128}),
    ],
)
def test_bad_hook_options_are_refused_by_name(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=option):
        Client(API_KEY, HOST, **{option: value})


def test_proxies_are_used_for_the_engine(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client(proxies={"https": "http://proxy.internal:3128"})
    client.track("Event", distinct_id="user_1")
    assert client.flush(10)
    assert rsps.calls[0].request.req_kwargs["proxies"]["https"] == "http://proxy.internal:3128"


def test_client_without_a_key_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANKOFA_API_KEY", API_KEY)
    monkeypatch.setenv("SANKOFA_HOST", "https://engine.example")
    client = Client(send=False)
    try:
        assert client.host == "https://engine.example"
        assert API_KEY not in repr(client) and "engine.example" in repr(client)
    finally:
        client.shutdown()
    monkeypatch.delenv("SANKOFA_API_KEY")
    with pytest.raises(ConfigurationError, match="SANKOFA_API_KEY"):
        Client()


def test_hooks_cost_nothing_when_unset(make_client: MakeClient) -> None:
    client = make_client(send=False)
    assert client._hooks is None  # the queue path tests one attribute, nothing more
