"""Which cookie or header values the middleware take as the browser's anonymous id.

The id a request is seeded with is stitched to whoever signs in during that request, so a value
the visitor chose (a victim's known id) must never be taken: by default only anonymous-looking
ids (a UUID, optionally ``anon_`` or ``$device:`` prefixed) are; ``anonymous_id_validator``
accepts another shape.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any, Callable

import pytest

from sankofa_sdk import Client, ConfigurationError
from sankofa_sdk.integrations import (
    SankofaASGIMiddleware,
    SankofaWSGIMiddleware,
    looks_like_anonymous_id,
)
from sankofa_sdk.integrations._common import AnonymousIdSource

from .conftest import Backend, deliver, event_names, load_example
from .test_asgi import make_app, request
from .test_wsgi import call, shop_app

COOKIE = "sk_anon"
UUID = "3f2c1b0a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"


@pytest.mark.parametrize(
    "value",
    [
        UUID,
        UUID.upper(),
        "anon_" + UUID,
        "$device:" + UUID,
        "00000000-0000-0000-0000-000000000000",  # any version
        str(uuid.uuid1()),
    ],
)
def test_anonymous_looking_ids_are_taken(client: Client, value: str) -> None:
    assert looks_like_anonymous_id(value)
    app = SankofaWSGIMiddleware(shop_app(client), client, anonymous_id_cookie=COOKIE)
    assert call(app, "/pricing", HTTP_COOKIE=f"{COOKIE}={value}")[1] == value.encode()


@pytest.mark.parametrize(
    "value",
    [
        "user_43",  # a known id: taking it would hand its profile to whoever signs in
        "42",
        "ada@example.com",
        UUID.replace("-", ""),  # not the canonical form
        "{" + UUID + "}",
        UUID + "0",
        UUID[:-1],
        "user_" + UUID,
        "ANON_" + UUID,
        UUID.replace("a", "g"),
    ],
)
def test_other_ids_are_ignored_by_default(client: Client, value: str) -> None:
    assert not looks_like_anonymous_id(value)
    app = SankofaWSGIMiddleware(
        shop_app(client), client, anonymous_id_cookie=COOKIE, anonymous_id_header="X-Anon"
    )
    for where in ({"HTTP_COOKIE": f"{COOKIE}={value}"}, {"HTTP_X_ANON": value}):
        answer = call(app, "/pricing", **where)[1].decode()
        assert answer != value.strip() and looks_like_anonymous_id(answer)  # a fresh uuid4


def test_a_cookie_naming_a_known_user_cannot_take_over_their_profile(
    client: Client, backend: Backend
) -> None:
    # The review's reproduction: examples/flask_app.py, a victim user_43 with a history, and an
    # attacker who sets sankofa_anon=user_43 in their browser and signs in as user_42.
    example = load_example("flask_app")
    client.identify("user_43", {"email": "grace@example.com"})
    client.track("Victim Event", distinct_id="user_43")
    app = example.create_app(client)
    attacker = app.test_client()
    attacker.set_cookie(example.ANONYMOUS_ID_COOKIE, "user_43")
    before = attacker.get("/pricing").get_json()["distinct_id"]
    assert before != "user_43" and looks_like_anonymous_id(before)
    assert attacker.post("/login", json={"email": "ada@example.com"}).status_code == 200
    deliver(client, backend)
    victim = backend.get_person("user_43")
    assert victim is not None
    assert (victim["distinct_id"], victim["aliases"]) == ("user_43", [])
    assert event_names(backend, "user_43") == ["Victim Event"]
    assert backend.aliases() == [(before, "user_42")]
    attacker_person = backend.get_person("user_42")
    assert attacker_person is not None and "user_43" not in attacker_person["aliases"]


def test_a_validator_accepts_another_shape_on_wsgi(client: Client, backend: Backend) -> None:
    seen: list[str] = []

    def legacy_ids(value: str) -> bool:
        seen.append(value)
        return value.startswith("legacy-")

    app = SankofaWSGIMiddleware(
        shop_app(client), client, anonymous_id_cookie=COOKIE, anonymous_id_validator=legacy_ids
    )
    assert call(app, "/pricing", HTTP_COOKIE=f"{COOKIE}=legacy-0042")[1] == b"legacy-0042"
    assert call(app, "/login", QUERY_STRING="user=user_v1", HTTP_COOKIE=f"{COOKIE}=legacy-0042")
    # the validator replaces the default check: a UUID is not a legacy id
    assert call(app, "/pricing", HTTP_COOKIE=f"{COOKIE}={UUID}")[1] != UUID.encode()
    assert seen == ["legacy-0042", "legacy-0042", UUID]
    deliver(client, backend)
    assert backend.aliases() == [("legacy-0042", "user_v1")]


def test_a_validator_is_not_asked_about_values_that_are_never_usable(client: Client) -> None:
    seen: list[str] = []
    source = AnonymousIdSource(COOKIE, anonymous_id_validator=lambda v: seen.append(v) or True)
    for raw in ("", "a", "gzip-1", "two words", "x" * 201):
        assert source.read(lambda name: None, {COOKIE: raw}.get) is None
    assert seen == []


def test_a_compiled_pattern_can_be_the_validator_on_asgi(client: Client) -> None:
    pattern = re.compile(r"mp_[0-9a-f]{16}")
    app = SankofaASGIMiddleware(
        make_app(client),
        client,
        anonymous_id_header="X-Anon",
        anonymous_id_validator=pattern.fullmatch,
    )

    def ask(value: str) -> str:
        return asyncio.run(request(app, "/pricing", [(b"x-anon", value.encode())]))

    assert ask("mp_0123456789abcdef") == "mp_0123456789abcdef"
    assert ask("user_43") != "user_43"


def test_asgi_ignores_a_known_id_by_default(client: Client) -> None:
    app = SankofaASGIMiddleware(make_app(client), client, anonymous_id_cookie=COOKIE)
    cookie = [(b"cookie", f"{COOKIE}=user_43".encode())]
    answer = asyncio.run(request(app, "/pricing", cookie))
    assert answer != "user_43" and looks_like_anonymous_id(answer)


def test_a_validator_that_raises_rejects_the_value(client: Client) -> None:
    def broken(value: str) -> bool:
        raise KeyError("no lookup table")

    app = SankofaWSGIMiddleware(
        shop_app(client), client, anonymous_id_cookie=COOKIE, anonymous_id_validator=broken
    )
    status, body = call(app, "/pricing", HTTP_COOKIE=f"{COOKIE}={UUID}")
    assert status == "200 OK" and body != UUID.encode()


@pytest.mark.parametrize("bad", ["^anon_", 42])
def test_a_validator_must_be_callable(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="anonymous_id_validator"):
        SankofaWSGIMiddleware(lambda e, s: [], anonymous_id_validator=bad)


def test_the_flask_extension_takes_a_validator(
    make_client: Callable[..., Client], backend: Backend
) -> None:
    flask = pytest.importorskip("flask")
    from sankofa_sdk.integrations.flask import Sankofa, current_client

    client = make_client()
    apps = []
    for how in ("argument", "config"):
        app = flask.Flask(how)
        app.get("/")(lambda: current_client().distinct_id)
        if how == "argument":
            Sankofa(
                app,
                client=client,
                anonymous_id_cookie=COOKIE,
                anonymous_id_validator=lambda v: v.isdigit(),
            )
        else:
            app.config["SANKOFA"] = {"anonymous_id_validator": lambda v: v.isdigit()}
            Sankofa(app, client=client, anonymous_id_cookie=COOKIE)
        apps.append(app)
    for app in apps:
        browser = app.test_client()
        browser.set_cookie(COOKIE, "4242")
        assert browser.get("/").get_data(as_text=True) == "4242"
        browser.set_cookie(COOKIE, UUID)
        assert browser.get("/").get_data(as_text=True) != UUID
