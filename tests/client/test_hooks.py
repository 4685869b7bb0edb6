"""super_properties and before_send: what the app does to each operation before it is queued."""

from __future__ import annotations

from typing import Any, Callable, Optional

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
