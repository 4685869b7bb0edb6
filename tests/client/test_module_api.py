"""The module-level API: init(), the default client, and calls before init."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import responses

import sankofa_sdk

from ..conftest import API_KEY, BATCH_URL, HOST, sent_operations


@pytest.fixture(autouse=True)
def no_default_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SANKOFA_API_KEY", raising=False)
    monkeypatch.delenv("SANKOFA_HOST", raising=False)
    sankofa_sdk.shutdown()  # also lets the next "call sankofa_sdk.init" warning through
    yield
    sankofa_sdk.shutdown()


def test_module_calls_act_on_the_client_init_made(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    client = sankofa_sdk.init(api_key=API_KEY, host=HOST)
    assert sankofa_sdk.get_client() is client
    sankofa_sdk.track("Anonymous Visit")
    sankofa_sdk.identify("user_42", {"plan": "free"})
    sankofa_sdk.people_set({"plan": "pro"})
    sankofa_sdk.people_unset(["coupon"])
    sankofa_sdk.alias("legacy_42", "user_42")
    with sankofa_sdk.context("other_user"):
        sankofa_sdk.track("In Context")
    sankofa_sdk.reset()
    assert sankofa_sdk.flush(10)
    kinds = [(op["type"], op["payload"]["distinct_id"]) for op in sent_operations(rsps)]
    assert kinds[1:] == [
        ("alias", "user_42"),
        ("people", "user_42"),
        ("people", "user_42"),
        ("people", "user_42"),
        ("alias", "user_42"),
        ("track", "other_user"),
    ]


def test_init_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANKOFA_API_KEY", API_KEY)
    monkeypatch.setenv("SANKOFA_HOST", "http://127.0.0.1:9")
    client = sankofa_sdk.init(send=False)
    assert client.host == "http://127.0.0.1:9"


def test_init_without_a_key_is_a_clear_error() -> None:
    with pytest.raises(sankofa_sdk.ConfigurationError, match="api_key is required"):
        sankofa_sdk.init()


def test_calls_before_init_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        sankofa_sdk.track("Too Early")
        sankofa_sdk.identify("user_1")
    assert "sankofa_sdk.init" in caplog.text
    assert sankofa_sdk.flush() is True


def test_default_client_is_created_lazily_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, rsps: responses.RequestsMock
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    monkeypatch.setenv("SANKOFA_API_KEY", API_KEY)
    monkeypatch.setenv("SANKOFA_HOST", HOST)
    sankofa_sdk.track("Lazy", distinct_id="user_1")
    assert sankofa_sdk.flush(10)
    assert [op["payload"]["event_name"] for op in sent_operations(rsps)] == ["Lazy"]
