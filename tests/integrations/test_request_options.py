"""What a developer without a front-end SDK needs from the middleware (issue 13).

- ``set_anonymous_id_cookie``: the browser keeps the request's anonymous id, so sign-in stitches;
- ``user_id``: a signed-in request is its user's, with nothing sent;
- ``request_properties`` / ``request_ip``: the request's URL, referrer, user agent (and IP) on
  the events tracked in it.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

from sankofa_sdk import Client
from sankofa_sdk.integrations import (
    SankofaASGIMiddleware,
    SankofaWSGIMiddleware,
    looks_like_anonymous_id,
)
from sankofa_sdk.integrations.asgi import Receive, Scope, Send

from .conftest import Backend, deliver, event_names

COOKIE = "sankofa_anon"
BROWSER = "7b1c2d3e-0000-4a5b-8c9d-000000000001"


@pytest.fixture
def hooked(backend: Backend) -> Iterator[Client]:
    client = Client(backend.api_key, host=backend.url, flush_interval=0.05)
    yield client
    client.shutdown(timeout=5)


def cookie_headers(headers: Any) -> list[str]:
    """The anonymous-id cookies a response sets (not the app's session cookie)."""
    return [
        value
        for name, value in headers
        if name.lower() == "set-cookie" and value.startswith(f"{COOKIE}=")
    ]


# --- Flask: a sign-in across two requests, the browser keeping its cookies -----------------


def flask_app(client: Client, **options: Any) -> Any:
    flask = pytest.importorskip("flask")
    from sankofa_sdk.integrations.flask import Sankofa, current_client

    app = flask.Flask("t")
    app.secret_key = "test-only"
    Sankofa(
        app,
        client=client,
        anonymous_id_cookie=COOKIE,
        user_id=lambda: flask.session.get("user_id"),
        **options,
    )

    @app.get("/pricing")
    def pricing() -> str:
        current_client().track("Viewed Pricing")
        return current_client().distinct_id

    @app.post("/login")
    def login() -> str:
        flask.session["user_id"] = "user_42"
        current_client().identify("user_42", {"email": "ada@example.com"})
        return current_client().distinct_id

    @app.post("/logout")
    def logout() -> str:
        flask.session.pop("user_id")
        current_client().reset()
        return current_client().distinct_id

    return app


def test_flask_sign_in_stitches_the_visit_when_the_middleware_keeps_the_cookie(
    client: Client, backend: Backend
) -> None:
    browser = flask_app(client, set_anonymous_id_cookie=True).test_client()

    visitor = browser.get("/pricing").get_data(as_text=True)
    cookie = browser.get_cookie(COOKIE)
    signed_in = browser.post("/login").get_data(as_text=True)

    assert cookie is not None and cookie.value == visitor and looks_like_anonymous_id(visitor)
    assert signed_in == "user_42"
    deliver(client, backend)
    assert backend.aliases() == [(visitor, "user_42")]
    assert event_names(backend, "user_42") == ["Viewed Pricing"]


def test_flask_without_the_option_nothing_keeps_the_visitor(
    client: Client, backend: Backend
) -> None:
    browser = flask_app(client).test_client()

    browser.get("/pricing")
    browser.post("/login")

    assert browser.get_cookie(COOKIE) is None
    deliver(client, backend)
    assert backend.aliases() == []  # the README's snippet alone: an orphan visitor


def test_flask_cookie_has_secure_defaults(client: Client) -> None:
    app = flask_app(client, set_anonymous_id_cookie=True)

    plain = app.test_client().get("/pricing")
    tls = app.test_client().get("/pricing", base_url="https://shop.test")

    (header,) = cookie_headers(plain.headers.items())
    attributes = [part.strip() for part in header.split(";")]
    assert attributes[0] == f"{COOKIE}={plain.get_data(as_text=True)}"
    assert sorted(attributes[1:]) == ["HttpOnly", "Max-Age=31536000", "Path=/", "SameSite=Lax"]
    (secure,) = cookie_headers(tls.headers.items())
    assert secure.endswith("; Secure")


def test_flask_cookie_is_written_only_while_signed_out(client: Client) -> None:
    browser = flask_app(client, set_anonymous_id_cookie=True).test_client()

    first = browser.get("/pricing")
    again = browser.get("/pricing")
    login = browser.post("/login")
    signed_in = browser.get("/pricing")
    logout = browser.post("/logout")

    assert cookie_headers(first.headers.items())
    assert cookie_headers(again.headers.items()) == []  # it came with the id already
    assert cookie_headers(login.headers.items()) == []
    assert cookie_headers(signed_in.headers.items()) == []
    assert signed_in.get_data(as_text=True) == "user_42"
    (new_visitor,) = cookie_headers(logout.headers.items())
    assert new_visitor.startswith(f"{COOKIE}={logout.get_data(as_text=True)};")


# --- ASGI: the same flow through a cookie jar ----------------------------------------------


def asgi_shop(client: Client) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain")]
        if scope["path"] == "/pricing":
            client.track("Viewed Pricing")
        elif scope["path"] == "/login":
            client.identify("user_42", {"email": "ada@example.com"})
            headers.append((b"set-cookie", b"session=user_42; Path=/"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": client.distinct_id.encode()})

    return app


async def session_user(scope: Scope) -> Optional[str]:
    for name, value in scope["headers"]:
        if name == b"cookie" and b"session=" in value:
            return value.split(b"session=")[1].split(b";")[0].decode()
    return None


def test_asgi_sign_in_stitches_the_visit_when_the_middleware_keeps_the_cookie(
    client: Client, backend: Backend
) -> None:
    pytest.importorskip("httpx")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx.*", category=Warning)
        from starlette.testclient import TestClient

    app = SankofaASGIMiddleware(
        asgi_shop(client),
        client,
        anonymous_id_cookie=COOKIE,
        set_anonymous_id_cookie=True,
        user_id=session_user,
    )
    browser = TestClient(app)  # no lifespan: the app serves http only
    visitor = browser.get("/pricing").text
    kept = browser.cookies.get(COOKIE)
    signed_in = browser.post("/login").text
    later = browser.get("/pricing")

    assert kept == visitor and looks_like_anonymous_id(visitor)
    assert signed_in == "user_42" and later.text == "user_42"
    assert "set-cookie" not in later.headers
    deliver(client, backend)
    assert backend.aliases() == [(visitor, "user_42")]
    assert event_names(backend, "user_42") == ["Viewed Pricing", "Viewed Pricing"]


# --- user_id on WSGI and ASGI -----------------------------------------------------------------


def wsgi_app(client: Client) -> Callable[..., Any]:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        client.track("Opened")
        client.identify(environ.get("HTTP_X_USER") or "user_42")  # repeated sign-in: no alias
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [client.distinct_id.encode()]

    return app


def call_wsgi(app: Any, path: str = "/", **environ: Any) -> tuple[str, list[Any], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        answer.update(status=status, headers=headers)

    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "shop.test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        **environ,
    }
    body = b"".join(app(env, start_response))
    return answer["status"], answer["headers"], body


def test_wsgi_user_id_makes_the_request_the_users_with_nothing_sent(
    client: Client, backend: Backend
) -> None:
    app = SankofaWSGIMiddleware(
        wsgi_app(client), client, anonymous_id_cookie=COOKIE, user_id=lambda e: e.get("HTTP_X_USER")
    )

    _, _, body = call_wsgi(app, HTTP_X_USER="user_42", HTTP_COOKIE=f"{COOKIE}={BROWSER}")

    assert body == b"user_42"
    deliver(client, backend)
    assert backend.aliases() == []
    assert [e["distinct_id"] for e in backend.events()] == ["user_42"]


@pytest.mark.parametrize("hook", ["raises", "unusable"])
def test_wsgi_user_id_that_fails_leaves_the_request_anonymous(
    client: Client, hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    def user_id(environ: Any) -> Any:
        if hook == "raises":
            raise KeyError("no session store")
        return "a"  # the engine would discard it

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [client.distinct_id.encode()]

    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        _, _, body = call_wsgi(SankofaWSGIMiddleware(app, client, user_id=user_id))

    assert looks_like_anonymous_id(body.decode())
    assert "user_id hook" in caplog.text


def test_asgi_user_id_may_be_sync_or_async(client: Client) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": client.distinct_id.encode()})

    async def ask(middleware: Any) -> str:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "http.request"}

        scope = {"type": "http", "path": "/", "headers": [], "query_string": b""}
        await middleware(scope, receive, send)
        return sent[-1]["body"].decode()  # type: ignore[no-any-return]

    async def async_user(scope: Scope) -> str:
        return "user_async"

    sync = SankofaASGIMiddleware(app, client, user_id=lambda scope: "user_sync")
    asynchronous = SankofaASGIMiddleware(app, client, user_id=async_user)

    assert asyncio.run(ask(sync)) == "user_sync"
    assert asyncio.run(ask(asynchronous)) == "user_async"


# --- request properties ---------------------------------------------------------------------


def test_wsgi_events_in_a_request_carry_its_url_referrer_and_user_agent(
    hooked: Client, backend: Backend
) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        hooked.track("Viewed Pricing", distinct_id="user_1")
        hooked.track(
            "Shared",
            {"$referrer": "https://news.test/"},
            distinct_id="user_1",
            default_properties={"$user_agent": "given"},
        )
        start_response("200 OK", [])
        return []

    call_wsgi(
        SankofaWSGIMiddleware(app, hooked),
        "/pricing/pläne".encode().decode("latin-1"),  # PEP 3333: bytes as ISO-8859-1
        SCRIPT_NAME="/shop",
        QUERY_STRING="plan=team",
        HTTP_HOST="shop.test:8080",
        HTTP_REFERER="https://search.test/?q=shop",
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64)",
        REMOTE_ADDR="203.0.113.9",
    )
    hooked.track("Nightly Job", distinct_id="user_1")  # outside any request

    deliver(hooked, backend)
    viewed, shared, job = reversed(backend.events("user_1"))
    assert {k: v for k, v in viewed["default_properties"].items() if k not in SERVER} == {
        "$current_url": "http://shop.test:8080/shop/pricing/pl%C3%A4ne?plan=team",
        "$pathname": "/shop/pricing/pl%C3%A4ne",
        "$referrer": "https://search.test/?q=shop",
        "$user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    }
    assert shared["properties"]["$referrer"] == "https://news.test/"  # the caller's wins
    assert "$referrer" not in shared["default_properties"]
    assert shared["default_properties"]["$user_agent"] == "given"
    assert not any(k.startswith(("$current", "$path", "$ip")) for k in job["default_properties"])


SERVER = {"$lib", "$lib_version", "$os", "$browser", "$device_model"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"$current_url", "$pathname"}),
        ({"request_ip": True}, {"$current_url", "$pathname", "$ip"}),
        ({"request_properties": False}, set()),
    ],
)
def test_request_properties_can_be_turned_off_and_ip_on(
    hooked: Client, backend: Backend, options: dict[str, Any], expected: set[str]
) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        hooked.track("Opened", distinct_id="user_1")
        start_response("200 OK", [])
        return []

    call_wsgi(SankofaWSGIMiddleware(app, hooked, **options), REMOTE_ADDR="203.0.113.9")

    deliver(hooked, backend)
    (event,) = backend.events("user_1")
    assert set(event["default_properties"]) - SERVER == expected


def test_asgi_events_in_a_request_carry_its_url(hooked: Client, backend: Backend) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        hooked.track("Viewed Pricing", distinct_id="user_1")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run() -> None:
        async def send(message: Any) -> None:
            return None

        async def receive() -> Any:
            return {"type": "http.request"}

        scope = {
            "type": "http",
            "scheme": "https",
            "root_path": "/api",
            "path": "/pricing",
            "query_string": b"plan=team",
            "headers": [(b"host", b"shop.test"), (b"user-agent", b"curl/8")],
            "client": ("198.51.100.7", 50000),
        }
        await SankofaASGIMiddleware(app, hooked, request_ip=True)(scope, receive, send)

    asyncio.run(run())

    deliver(hooked, backend)
    (event,) = backend.events("user_1")
    assert {k: v for k, v in event["default_properties"].items() if k not in SERVER} == {
        "$current_url": "https://shop.test/api/pricing?plan=team",
        "$pathname": "/api/pricing",
        "$user_agent": "curl/8",
        "$ip": "198.51.100.7",
    }


def test_a_plain_client_adds_request_properties(client: Client, backend: Backend) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        client.track("Opened", distinct_id="user_1")
        start_response("200 OK", [])
        return []

    call_wsgi(SankofaWSGIMiddleware(app, client), "/pricing")

    deliver(client, backend)
    (event,) = backend.events("user_1")
    assert event["default_properties"]["$pathname"] == "/pricing"
