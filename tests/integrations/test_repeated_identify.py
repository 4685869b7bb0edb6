"""``identify`` repeated for the same user sends the alias once; its traits go every time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sankofa_sdk import Client

from .conftest import Backend, deliver

BROWSER = "0c1d2e3f-0000-4a5b-8c9d-000000000013"


def received(backend: Backend, kind: str) -> int:
    """How many operations of ``kind`` ("aliases", "people", "events") the server received."""
    return sum(
        json.loads(record.answer)[f"{kind}_received"]
        for record in backend.requests
        if record.path == "/api/v1/batch" and record.status == 200
    )


def test_identify_in_a_context_already_that_user_sends_no_alias(
    client: Client, backend: Backend
) -> None:
    for _ in range(3):  # three requests whose user is known (e.g. from the session)
        with client.context("user_1"):
            client.identify("user_1", {"seen": True}, anonymous_id=BROWSER)

    deliver(client, backend)
    assert received(backend, "aliases") == 0
    assert received(backend, "people") == 3


def test_identify_per_request_from_the_same_browser_sends_one_alias(
    client: Client, backend: Backend
) -> None:
    for visit in range(3):  # three requests seeded from the browser's cookie, each identifying
        with client.context(anonymous_id=BROWSER):
            client.track("Viewed Page")
            client.identify("user_1", {"visit": visit})

    deliver(client, backend)
    assert received(backend, "aliases") == 1
    assert received(backend, "people") == 3
    assert backend.aliases() == [(BROWSER, "user_1")]
    person = backend.get_person("user_1")
    assert person is not None and person["traits"]["visit"] == 2


def test_a_browser_stitched_to_another_user_since_is_stitched_back(
    client: Client, backend: Backend
) -> None:
    for user in ("user_1", "user_2", "user_1"):  # one shared computer, two people in turn
        with client.context(anonymous_id=BROWSER):
            client.identify(user, {"name": user})

    deliver(client, backend)
    assert received(backend, "aliases") == 3
    assert backend.aliases() == [(BROWSER, "user_1")]


def test_flask_identify_on_every_request_sends_one_alias(client: Client, backend: Backend) -> None:
    flask = pytest.importorskip("flask")
    from sankofa_sdk.integrations.flask import Sankofa, current_client

    app = flask.Flask("t")
    Sankofa(app, client=client, anonymous_id_cookie="anon")

    @app.get("/")
    def index() -> Any:
        current_client().identify("user_1", {"plan": "pro"})  # the posthog-python habit
        current_client().track("Viewed Home")
        return current_client().distinct_id

    browser = app.test_client()
    browser.set_cookie("anon", BROWSER)
    for _ in range(3):
        assert browser.get("/").get_data(as_text=True) == "user_1"

    deliver(client, backend)
    assert received(backend, "aliases") == 1
    assert received(backend, "people") == 3
    assert backend.aliases() == [(BROWSER, "user_1")]


def test_the_remembered_aliases_are_bounded(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sankofa_sdk import _identity

    monkeypatch.setattr(_identity, "MAX_REMEMBERED_ALIASES", 2)
    scope = _identity.IdentityScope()
    for anon in ("anon_1", "anon_2", "anon_3"):
        scope.reset()  # a new visitor
        assert scope.identify("user_1", anon) == anon

    assert list(scope._aliased) == ["anon_2", "anon_3"]
    scope.reset()
    assert scope.identify("user_1", "anon_1") == "anon_1"  # forgotten: sent again
