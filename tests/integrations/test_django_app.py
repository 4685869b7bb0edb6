"""examples/django_app driven by Django's test clients (sync and async request paths)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sankofa_sdk import Client

from .conftest import EXAMPLES, Backend, app_traits, event_names

django = pytest.importorskip("django")

COOKIE = "sankofa_anon"
BROWSER_ID = "9e8d7c6b-0000-4d1a-8e0b-000000000001"
ADA_BROWSER = "9e8d7c6b-0000-4d1a-8e0b-0000000000a1"
GRACE_BROWSER = "9e8d7c6b-0000-4d1a-8e0b-0000000000b2"


@pytest.fixture(scope="module", autouse=True)
def django_project() -> None:
    from django.conf import settings

    if not settings.configured:
        if str(EXAMPLES) not in sys.path:
            sys.path.insert(0, str(EXAMPLES))
        os.environ["DJANGO_SETTINGS_MODULE"] = "django_app.settings"
        django.setup()
    assert settings.ROOT_URLCONF == "django_app.urls"


@pytest.fixture
def sankofa(backend: Backend) -> Iterator[Client]:
    """The example's settings pointed at the backend; yields the client the middleware made."""
    from django.test import override_settings

    from sankofa_sdk.integrations import django as sankofa_django

    config = {
        "api_key": backend.api_key,
        "host": backend.url,
        "flush_interval": 0.05,
        "anonymous_id_cookie": COOKIE,
    }
    with override_settings(SANKOFA=config):
        client = sankofa_django.get_client()
        assert client is not None and client.host == backend.url
        yield client
    # leaving override_settings shut that client down (it delivered what was queued)
    assert client.stats()["queued"] == 0


def deliver(client: Client, backend: Backend) -> None:
    assert client.flush(10)
    assert backend.wait_until_applied(10)


def test_a_visit_signed_in_and_out_lands_on_the_right_people(
    sankofa: Client, backend: Backend
) -> None:
    from django.test import Client as Browser

    import sankofa_sdk

    assert sankofa_sdk.get_client() is sankofa  # settings.SANKOFA made the module-level client
    outer = sankofa.distinct_id
    browser = Browser()
    browser.cookies[COOKIE] = BROWSER_ID
    assert browser.get("/pricing").json() == {"distinct_id": BROWSER_ID}
    login = browser.post("/login", {"email": "ada@example.com"}, content_type="application/json")
    assert login.json() == {"distinct_id": "user_42"}
    upgrade = browser.post("/upgrade", {"plan": "team"}, content_type="application/json")
    assert upgrade.json() == {"distinct_id": "user_42"}
    after = browser.post("/logout").json()["distinct_id"]
    assert after not in (BROWSER_ID, "user_42")
    assert sankofa.distinct_id == outer

    deliver(sankofa, backend)
    assert backend.aliases() == [(BROWSER_ID, "user_42")]
    person = backend.get_person("user_42")
    assert person is not None
    assert app_traits(person) == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "plan": "team",
    }
    assert BROWSER_ID in person["aliases"]
    assert event_names(backend, "user_42") == [
        "Viewed Pricing",
        "Signed In",
        "Plan Upgraded",
        "Signed Out",
    ]
    assert event_names(backend, after) == ["Viewed Home"]
    stranger = backend.get_person(after)
    assert stranger is not None and stranger["aliases"] == []


def test_the_async_request_path_scopes_identity_per_request(
    sankofa: Client, backend: Backend
) -> None:
    from django.test import AsyncClient

    async def main() -> list[Any]:
        ada, grace = AsyncClient(), AsyncClient()
        ada.cookies[COOKIE] = ADA_BROWSER
        grace.cookies[COOKIE] = GRACE_BROWSER
        answers = await asyncio.gather(
            ada.post("/login", {"email": "ada@example.com"}, content_type="application/json"),
            grace.post("/login", {"email": "grace@example.com"}, content_type="application/json"),
            ada.get("/status"),  # an async view; ada's cookie still names her browser
        )
        return [answer.json() for answer in answers]

    assert asyncio.run(main()) == [
        {"distinct_id": "user_42"},
        {"distinct_id": "user_43"},
        {"distinct_id": ADA_BROWSER},
    ]
    deliver(sankofa, backend)
    assert sorted(backend.aliases()) == [
        (ADA_BROWSER, "user_42"),
        (GRACE_BROWSER, "user_43"),
    ]
    assert sorted(event_names(backend, "user_42")) == ["Checked Status", "Signed In"]
    assert event_names(backend, "user_43") == ["Signed In"]


def test_without_settings_the_module_level_client_is_used(backend: Backend) -> None:
    from django.test import Client as Browser
    from django.test import override_settings

    import sankofa_sdk

    with override_settings():
        from django.conf import settings

        del settings.SANKOFA
        client = sankofa_sdk.init(api_key=backend.api_key, host=backend.url, flush_interval=0.05)
        try:
            assert Browser().get("/pricing").status_code == 200
            deliver(client, backend)
        finally:
            sankofa_sdk.shutdown()
    assert [e["event_name"] for e in backend.events()] == ["Viewed Pricing"]


def only_digits(value: str) -> bool:
    return value.isdigit()


@pytest.mark.parametrize("validator", [only_digits, f"{__name__}.only_digits", None])
def test_settings_name_which_cookie_values_are_taken(backend: Backend, validator: Any) -> None:
    from django.test import Client as Browser
    from django.test import override_settings

    config = {"api_key": backend.api_key, "host": backend.url, "anonymous_id_cookie": COOKIE}
    if validator is not None:
        config["anonymous_id_validator"] = validator
    with override_settings(SANKOFA=config):
        browser = Browser()
        answers = []
        for value in ("4242", "user_43", BROWSER_ID):
            browser.cookies[COOKIE] = value
            answers.append(browser.get("/pricing").json()["distinct_id"] == value)
    # by default only anonymous-looking ids (UUIDs) are taken, never a known id like user_43
    assert answers == ([True, False, False] if validator else [False, False, True])


# --- streamed responses: the body is iterated after the middleware returned ------------------


def _stream_view(request: Any) -> Any:
    """/stream?identify=<user>: a streamed body that tracks (and identifies) while it streams."""
    from django.http import StreamingHttpResponse

    import sankofa_sdk

    def rows() -> Iterator[bytes]:
        user = request.GET.get("identify")
        if user:
            sankofa_sdk.identify(user)
        for part in ("a", "b"):
            sankofa_sdk.track("Export Row Sent", {"part": part})
            client = sankofa_sdk.get_client()
            yield f"{client.distinct_id if client else None}:{part}\n".encode()

    return StreamingHttpResponse(rows())


async def _astream_view(request: Any) -> Any:
    """/astream?identify=<user>: the same with an asynchronous body."""
    from django.http import StreamingHttpResponse

    import sankofa_sdk

    async def rows() -> Any:
        user = request.GET.get("identify")
        if user:
            sankofa_sdk.identify(user)
        for part in ("a", "b"):
            await asyncio.sleep(0)  # let other tasks run between rows
            sankofa_sdk.track("Export Row Sent", {"part": part})
            client = sankofa_sdk.get_client()
            yield f"{client.distinct_id if client else None}:{part}\n".encode()

    return StreamingHttpResponse(rows())


def _file_view(request: Any) -> Any:
    import io

    from django.http import FileResponse

    return FileResponse(io.BytesIO(b"report"))


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [
        path("stream", _stream_view),
        path("astream", _astream_view),
        path("file", _file_view),
    ]


class _StreamingUrls:
    """A ROOT_URLCONF for the streaming views (Django reads ``urlpatterns`` from it)."""

    @property
    def urlpatterns(self) -> list[Any]:
        return _urlpatterns()


@pytest.fixture
def streaming_urls() -> Iterator[None]:
    from django.test import override_settings

    with override_settings(ROOT_URLCONF=_StreamingUrls()):
        yield


def test_a_streamed_body_runs_in_its_request_identity_and_leaks_into_no_later_request(
    sankofa: Client, backend: Backend, streaming_urls: None
) -> None:
    from django.test import Client as Browser

    outer = sankofa.distinct_id
    first = Browser()
    response = first.get("/stream", {"identify": "user_alice"})
    assert b"".join(response.streaming_content) == b"user_alice:a\nuser_alice:b\n"
    assert sankofa.distinct_id == outer  # the body's identify stayed in its request
    second = Browser()
    second.cookies[COOKIE] = BROWSER_ID
    response = second.get("/stream")
    assert b"".join(response.streaming_content) == f"{BROWSER_ID}:a\n{BROWSER_ID}:b\n".encode()
    deliver(sankofa, backend)
    assert event_names(backend, "user_alice") == ["Export Row Sent"] * 2
    assert event_names(backend, BROWSER_ID) == ["Export Row Sent"] * 2


def test_a_streamed_body_served_by_a_real_server_thread_keeps_its_request_identity(
    sankofa: Client, backend: Backend, streaming_urls: None
) -> None:
    # One server thread serves both requests, one after the other, as a WSGI server's worker
    # thread does: the first body's identify must not be the second body's identity.
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.handlers.wsgi import WSGIHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with urllib.request.urlopen(url + "/stream?identify=user_alice", timeout=10) as answer:
            assert answer.read() == b"user_alice:a\nuser_alice:b\n"
        request = urllib.request.Request(
            url + "/stream", headers={"Cookie": f"{COOKIE}={BROWSER_ID}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.read() == f"{BROWSER_ID}:a\n{BROWSER_ID}:b\n".encode()
    finally:
        server.shutdown()
        server.server_close()
    deliver(sankofa, backend)
    assert event_names(backend, BROWSER_ID) == ["Export Row Sent"] * 2


def test_an_async_streamed_body_runs_in_its_request_identity(
    sankofa: Client, backend: Backend, streaming_urls: None
) -> None:
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    async def read(browser: Any, path: str, **params: str) -> bytes:
        response = await browser.get(path, params)
        if not response.is_async:  # a sync body: Django's ASGI handler reads it in a thread
            return await sync_to_async(b"".join)(response.streaming_content)  # type: ignore[no-any-return]
        return b"".join([chunk async for chunk in response.streaming_content])

    async def main() -> list[bytes]:
        outer = sankofa.distinct_id
        ada, grace = AsyncClient(), AsyncClient()
        ada.cookies[COOKIE] = ADA_BROWSER
        grace.cookies[COOKIE] = GRACE_BROWSER
        answers = await asyncio.gather(
            read(ada, "/astream", identify="user_42"),
            read(grace, "/astream"),
            read(grace, "/stream"),  # a sync body on the async path
        )
        assert sankofa.distinct_id == outer
        return list(answers)

    assert asyncio.run(main()) == [
        b"user_42:a\nuser_42:b\n",
        f"{GRACE_BROWSER}:a\n{GRACE_BROWSER}:b\n".encode(),
        f"{GRACE_BROWSER}:a\n{GRACE_BROWSER}:b\n".encode(),
    ]
    deliver(sankofa, backend)
    assert backend.aliases() == [(ADA_BROWSER, "user_42")]
    assert event_names(backend, "user_42") == ["Export Row Sent"] * 2


def test_a_file_response_is_left_for_the_server_to_send(
    sankofa: Client, streaming_urls: None
) -> None:
    # Reading a file needs no identity; wrapping it would stop wsgi.file_wrapper (sendfile).
    from wsgiref.util import FileWrapper, setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    environ: dict[str, Any] = {"PATH_INFO": "/file", "wsgi.file_wrapper": FileWrapper}
    setup_testing_defaults(environ)
    body = WSGIHandler()(environ, lambda *args: lambda data: None)
    try:
        assert isinstance(body, FileWrapper)
        assert b"".join(body) == b"report"
    finally:
        body.close()


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"api_key": None}, "api_key is required"),  # e.g. an unset environment variable
        ({"api_key": "sk_test_1", "flush_at": 0}, "flush_at"),
        ({"api_key": "sk_test_1", "flush_every": 5}, "flush_every"),
        ({"disabled": True, "anonymous_id_validator": 42}, "anonymous_id_validator"),
        ({"disabled": True, "anonymous_id_validator": "no.such.module.check"}, "no.such"),
        ("sk_test_1", "dict"),
    ],
)
def test_a_bad_sankofa_setting_stops_the_start_with_a_clear_message(bad: Any, why: str) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import Client as Browser
    from django.test import override_settings

    from sankofa_sdk.integrations.django import SankofaMiddleware

    with override_settings(SANKOFA=bad):
        # when Django loads its middleware (at start-up), not as a 500 on every request
        with pytest.raises(ImproperlyConfigured, match=r"settings\.SANKOFA") as raised:
            SankofaMiddleware(lambda request: None)
        assert why in str(raised.value)
        with pytest.raises(ImproperlyConfigured, match=r"settings\.SANKOFA"):
            Browser().get("/pricing")


# --- issue 13: the cookie, user_id and request properties through settings.SANKOFA ----------


def session_user(request: Any) -> Any:
    return request.session.get("user_id")


def test_settings_keep_the_cookie_so_sign_in_stitches_the_visit(backend: Backend) -> None:
    from django.test import Client as Browser
    from django.test import override_settings

    import sankofa_sdk

    config = {
        "api_key": backend.api_key,
        "host": backend.url,
        "flush_interval": 0.05,
        "anonymous_id_cookie": COOKIE,
        "set_anonymous_id_cookie": True,
        "user_id": f"{__name__}.session_user",
    }
    with override_settings(SANKOFA=config):
        browser = Browser()
        visitor = browser.get("/pricing").json()["distinct_id"]
        kept = browser.cookies[COOKIE]
        login = browser.post("/login", {"email": "ada@example.com"}, "application/json")
        later = browser.get("/pricing")
        client = sankofa_sdk.get_client()
        assert client is not None
        deliver(client, backend)

    assert kept.value == visitor and kept["httponly"] and kept["samesite"] == "Lax"
    assert kept["max-age"] == 31536000 and not kept["secure"]
    assert login.json() == {"distinct_id": "user_42"}
    assert later.json() == {"distinct_id": "user_42"}  # user_id: the session's user
    assert COOKIE not in later.cookies  # signed in: not written again
    assert backend.aliases() == [(visitor, "user_42")]
    assert event_names(backend, "user_42") == ["Viewed Pricing", "Signed In", "Viewed Pricing"]


async def async_session_user(request: Any) -> Any:
    return await request.session.aget("user_id")


@pytest.mark.parametrize("hook", [session_user, async_session_user])
def test_the_async_path_calls_user_id_off_the_event_loop_or_awaits_it(
    backend: Backend, hook: Any
) -> None:
    from django.test import AsyncClient, override_settings

    config = {"api_key": backend.api_key, "host": backend.url, "user_id": hook}

    async def main() -> Any:
        browser = AsyncClient()
        await browser.post("/login", {"email": "ada@example.com"}, "application/json")
        return (await browser.get("/status")).json()

    with override_settings(SANKOFA=config):
        assert asyncio.run(main()) == {"distinct_id": "user_42"}


def test_events_in_a_request_carry_its_url(backend: Backend) -> None:
    from django.test import Client as Browser
    from django.test import override_settings

    config = {"api_key": backend.api_key, "host": backend.url, "request_ip": True}
    with override_settings(SANKOFA=config):
        from sankofa_sdk.integrations.django import get_client

        client = get_client()
        assert client is not None
        Browser(HTTP_USER_AGENT="curl/8").get("/pricing?plan=team")
        deliver(client, backend)

    (event,) = backend.events()
    defaults = event["default_properties"]
    assert defaults["$current_url"] == "http://testserver/pricing?plan=team"
    assert defaults["$pathname"] == "/pricing"
    assert defaults["$user_agent"] == "curl/8"
    assert defaults["$ip"] == "127.0.0.1"


def test_the_health_view_answers_the_configured_clients_health(sankofa: Client) -> None:
    import json

    from django.test import RequestFactory

    from sankofa_sdk.integrations.django import health_view, make_health_view

    response = health_view(RequestFactory().get("/healthz/sankofa"))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert json.loads(response.content)["status"] == "ok"
    strict = make_health_view(queue_threshold=0.5, fail_when_degraded=True)
    assert strict(RequestFactory().get("/")).status_code == 200
