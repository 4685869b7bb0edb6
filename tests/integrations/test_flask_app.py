"""examples/flask_app.py driven by Flask's test client, checked on the backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any, Optional

import pytest

from sankofa_sdk import Client, ConfigurationError
from sankofa_sdk.integrations.flask import Sankofa, current_client

from .conftest import EXAMPLES, Backend, app_traits, deliver, event_names, load_example

flask = pytest.importorskip("flask")

ADA = {"email": "ada@example.com"}
GRACE = {"email": "grace@example.com"}
# Browsers' anonymous ids: the extension takes only anonymous-looking ids (UUIDs) by default.
ADA_BROWSER = "ada0b0e1-4242-4e5e-9a5c-0000000000a1"
GRACE_BROWSER = "9ace0b0e-4343-4e5e-9a5c-0000000000b2"
HEADER_BROWSER = "4ead0000-0001-4a1e-8e1d-000000000001"
EXIT_BROWSER = "e0170000-0001-4a1e-8e1d-000000000002"


@pytest.fixture
def example() -> Any:
    return load_example("flask_app")


def test_a_visit_signed_in_and_out_lands_on_the_right_people(
    example: Any, client: Client, backend: Backend
) -> None:
    app = example.create_app(client)
    browser = app.test_client()

    first = browser.get("/pricing?plan=team").get_json()["distinct_id"]
    cookie = browser.get_cookie(example.ANONYMOUS_ID_COOKIE)
    assert cookie is not None and cookie.value == first  # the app handed the id to the browser
    assert browser.get("/pricing").get_json()["distinct_id"] == first  # and it came back

    assert browser.post("/login", json=ADA).get_json()["distinct_id"] == "user_42"
    assert browser.post("/upgrade", json={"plan": "team"}).get_json()["distinct_id"] == "user_42"
    after_logout = browser.post("/logout").get_json()["distinct_id"]
    assert after_logout not in (first, "user_42")
    assert browser.get("/pricing").get_json()["distinct_id"] == after_logout

    deliver(client, backend)
    assert backend.aliases() == [(first, "user_42")]  # sign-in stitched once; later requests not
    person = backend.get_person("user_42")
    assert person is not None
    assert app_traits(person) == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "plan": "team",
    }
    assert first in person["aliases"]
    assert event_names(backend, "user_42") == [
        "Viewed Pricing",
        "Viewed Pricing",
        "Signed In",
        "Plan Upgraded",
        "Signed Out",
    ]
    assert event_names(backend, after_logout) == ["Viewed Pricing"]
    stranger = backend.get_person(after_logout)
    assert stranger is not None and stranger["aliases"] == [] and app_traits(stranger) == {}


class GatedClient(Client):
    """A client whose identify waits until every concurrent request has identified."""

    barrier: Optional[threading.Barrier] = None

    def identify(self, distinct_id: str, traits: Any = None, **kwargs: Any) -> None:
        super().identify(distinct_id, traits, **kwargs)
        if self.barrier is not None:
            self.barrier.wait(10)


def test_two_concurrent_sign_ins_never_mix(example: Any, backend: Backend) -> None:
    client = GatedClient(backend.api_key, host=backend.url, flush_interval=0.05)
    client.barrier = threading.Barrier(2)
    app = example.create_app(client)
    browsers = {"user_42": (ADA_BROWSER, ADA), "user_43": (GRACE_BROWSER, GRACE)}
    answers: dict[str, Any] = {}

    def sign_in(user: str) -> None:
        anon, form = browsers[user]
        browser = app.test_client()
        browser.set_cookie(example.ANONYMOUS_ID_COOKIE, anon)
        answers[user] = browser.post("/login", json=form).get_json()["distinct_id"]

    try:
        threads = [threading.Thread(target=sign_in, args=(user,)) for user in browsers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert answers == {"user_42": "user_42", "user_43": "user_43"}
        deliver(client, backend)
    finally:
        client.shutdown()
    assert sorted(backend.aliases()) == sorted(
        [(ADA_BROWSER, "user_42"), (GRACE_BROWSER, "user_43")]
    )
    for user in browsers:
        assert [e["distinct_id"] for e in backend.events(user)] == [user]
    ada, grace = backend.get_person("user_42"), backend.get_person("user_43")
    assert ada is not None and ada["traits"]["email"] == "ada@example.com"
    assert grace is not None and grace["traits"]["email"] == "grace@example.com"


def test_the_extension_stores_the_client_and_refuses_a_second_setup(client: Client) -> None:
    app = flask.Flask("t")
    ext = Sankofa(app, client=client)
    assert app.extensions["sankofa"] is client and ext.client is client
    with app.app_context():
        assert current_client() is client
    with pytest.raises(ConfigurationError, match="already"):
        ext.init_app(app)


def test_the_extension_builds_a_client_from_app_config(backend: Backend) -> None:
    app = flask.Flask("t")
    app.config["SANKOFA"] = {
        "api_key": backend.api_key,
        "host": backend.url,
        "flush_interval": 0.05,
        "anonymous_id_header": "X-Anonymous-Id",
    }

    @app.post("/login")
    def login() -> str:
        current_client().identify("user_config", {"plan": "pro"})
        return current_client().distinct_id

    client = Sankofa().init_app(app)
    try:
        assert client.host == backend.url
        answer = app.test_client().post("/login", headers={"X-Anonymous-Id": HEADER_BROWSER})
        assert answer.get_data(as_text=True) == "user_config"
        deliver(client, backend)
    finally:
        client.shutdown()
    assert backend.aliases() == [(HEADER_BROWSER, "user_config")]


def test_a_user_id_callback_that_fails_leaves_the_request_anonymous(client: Client) -> None:
    app = flask.Flask("t")

    def broken() -> Optional[str]:
        raise KeyError("no session store")

    Sankofa(app, client=client, user_id=broken)
    app.get("/")(lambda: current_client().distinct_id)
    response = app.test_client().get("/")
    assert response.status_code == 200 and len(response.get_data(as_text=True)) == 36


def test_queued_calls_are_delivered_when_the_process_exits(backend: Backend) -> None:
    # No flush, no shutdown in the script: the client's atexit hook delivers.
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        os.environ["SANKOFA_API_KEY"] = {backend.api_key!r}
        os.environ["SANKOFA_HOST"] = {backend.url!r}
        import flask_app
        app = flask_app.create_app()
        browser = app.test_client()
        browser.set_cookie(flask_app.ANONYMOUS_ID_COOKIE, {EXIT_BROWSER!r})
        assert browser.post("/login", json={{"email": "ada@example.com"}}).status_code == 200
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # the process exited, so its atexit hook has delivered already
    assert backend.wait_until_applied(10)
    assert backend.aliases() == [(EXIT_BROWSER, "user_42")]
    assert event_names(backend, "user_42") == ["Signed In"]
