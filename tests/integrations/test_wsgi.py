"""The WSGI middleware on a plain WSGI app, behind a real threaded server on 127.0.0.1."""

from __future__ import annotations

import gc
import io
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import FileWrapper, setup_testing_defaults

import pytest

import sankofa_sdk
from sankofa_sdk import Client
from sankofa_sdk.integrations import SankofaWSGIMiddleware

from .conftest import Backend, app_traits, deliver, event_names

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

COOKIE = "sk_anon"
BROWSER_ID = "6f1c9a7e-3b2d-4c55-9a0e-000000000001"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def shop_app(client: Client, barrier: Optional[threading.Barrier] = None) -> Callable[..., Any]:
    """A plain WSGI app: /pricing (anonymous), /login?user=, /logout, /export (streams)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/pricing":
            client.track("Viewed Pricing")
        elif path == "/login":
            client.identify(query["user"], {"email": f"{query['user']}@example.com"})
            if barrier is not None:
                barrier.wait(10)  # both requests are identified before either tracks
            client.track("Checked Out", {"user": query["user"]})
        elif path == "/logout":
            client.identify(query["user"])
            client.track("Signed Out")
            client.reset()
            client.track("Viewed Home")
        elif path == "/export":
            client.identify(query["user"])
            start_response("200 OK", [("Content-Type", "text/plain")])
            return _export(client)
        elif path == "/boom":
            client.identify("user_boom")
            raise RuntimeError("boom")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [client.distinct_id.encode()]

    return app


def _export(client: Client) -> Iterator[bytes]:
    # Runs while the server iterates the body, after the app call returned.
    for part in ("a", "b"):
        client.track("Export Chunk Sent", {"part": part})
        yield f"{client.distinct_id}:{part}\n".encode()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[..., Any]], str]]:
    servers: list[WSGIServer] = []

    def start(app: Callable[..., Any]) -> str:
        server = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(url: str, headers: Optional[dict[str, str]] = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


def test_sign_in_with_an_anonymous_cookie_stitches_the_browser_id(
    client: Client, backend: Backend, serve: Callable[..., str]
) -> None:
    url = serve(SankofaWSGIMiddleware(shop_app(client), client, anonymous_id_cookie=COOKIE))
    cookie = {"Cookie": f"theme=dark; {COOKIE}={BROWSER_ID}; other=1"}
    assert get(url + "/pricing", cookie) == BROWSER_ID
    assert get(url + "/login?user=user_wsgi_1", cookie) == "user_wsgi_1"
    deliver(client, backend)
    assert backend.aliases() == [(BROWSER_ID, "user_wsgi_1")]
    person = backend.get_person("user_wsgi_1")
    assert person is not None
    assert app_traits(person) == {"email": "user_wsgi_1@example.com"}
    assert BROWSER_ID in person["aliases"]
    assert event_names(backend, "user_wsgi_1") == ["Viewed Pricing", "Checked Out"]


def test_two_concurrent_requests_identifying_different_users_never_mix(
    client: Client, backend: Backend, serve: Callable[..., str]
) -> None:
    barrier = threading.Barrier(2)
    url = serve(SankofaWSGIMiddleware(shop_app(client, barrier), client))
    answers: dict[str, str] = {}

    def sign_in(user: str) -> None:
        answers[user] = get(f"{url}/login?user={user}")

    threads = [threading.Thread(target=sign_in, args=(u,)) for u in ("user_wsgi_a", "user_wsgi_b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert answers == {"user_wsgi_a": "user_wsgi_a", "user_wsgi_b": "user_wsgi_b"}
    deliver(client, backend)
    for user in ("user_wsgi_a", "user_wsgi_b"):
        events = backend.events(user)
        assert [(e["distinct_id"], e["properties"]["user"]) for e in events] == [(user, user)]
        person = backend.get_person(user)
        assert person is not None and app_traits(person) == {"email": f"{user}@example.com"}
    assert backend.aliases() == []  # fresh anonymous contexts were never used: nothing to stitch


def test_sign_out_reset_gives_a_new_anonymous_id_for_the_rest_of_the_request(
    client: Client, backend: Backend, serve: Callable[..., str]
) -> None:
    url = serve(SankofaWSGIMiddleware(shop_app(client), client, anonymous_id_cookie=COOKIE))
    after = get(url + "/logout?user=user_wsgi_out", {"Cookie": f"{COOKIE}={BROWSER_ID}"})
    assert after not in (BROWSER_ID, "user_wsgi_out")
    deliver(client, backend)
    assert event_names(backend, "user_wsgi_out") == ["Signed Out"]
    assert event_names(backend, after) == ["Viewed Home"]
    stranger = backend.get_person(after)
    assert stranger is not None
    assert (stranger["distinct_id"], stranger["aliases"], stranger["event_count"]) == (after, [], 1)


def test_the_identity_covers_iterating_a_streamed_body(
    client: Client, backend: Backend, serve: Callable[..., str]
) -> None:
    url = serve(SankofaWSGIMiddleware(shop_app(client), client))
    assert get(url + "/export?user=user_wsgi_stream") == (
        "user_wsgi_stream:a\nuser_wsgi_stream:b\n"
    )
    deliver(client, backend)
    assert event_names(backend, "user_wsgi_stream") == ["Export Chunk Sent"] * 2


def call(app: Callable[..., Any], path: str = "/", **environ: str) -> tuple[str, bytes]:
    """Call a WSGI app in this thread, iterate and close its body as a server does."""
    env: dict[str, Any] = {"PATH_INFO": path, **environ}
    setup_testing_defaults(env)
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = app(env, start_response)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return statuses[0], data


def test_the_request_identity_never_leaks_into_the_server_thread(client: Client) -> None:
    outer = client.distinct_id
    app = SankofaWSGIMiddleware(shop_app(client), client)
    assert call(app, "/login", QUERY_STRING="user=user_wsgi_leak")[1] == b"user_wsgi_leak"
    assert call(app, "/export", QUERY_STRING="user=user_wsgi_leak2")[1].startswith(
        b"user_wsgi_leak2"
    )
    with pytest.raises(RuntimeError, match="boom"):
        call(app, "/boom")
    assert client.distinct_id == outer


def test_the_body_is_closed_and_the_identity_ended_when_iteration_stops_early(
    client: Client,
) -> None:
    closed: list[str] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        client.identify("user_wsgi_early")
        start_response("200 OK", [])
        try:
            yield client.distinct_id.encode()
            yield b"never read"
        finally:
            closed.append(client.distinct_id)

    outer = client.distinct_id
    env: dict[str, Any] = {}
    setup_testing_defaults(env)
    body = SankofaWSGIMiddleware(app, client)(env, lambda *a: lambda data: None)
    assert next(iter(body)) == b"user_wsgi_early"
    body.close()  # type: ignore[attr-defined]
    assert closed == ["user_wsgi_early"]  # the generator's cleanup ran in the request's identity
    assert client.distinct_id == outer


@pytest.mark.parametrize(
    "cookie_value",
    [
        "a",  # shorter than the engine keeps
        "gzip",  # a garbage id to the engine
        "x" * 201,  # too long
        "two words",
        "%ff%fe",  # not UTF-8 once decoded
        "",
    ],
)
def test_an_unusable_cookie_value_is_ignored(client: Client, cookie_value: str) -> None:
    app = SankofaWSGIMiddleware(shop_app(client), client, anonymous_id_cookie=COOKIE)
    _, body = call(app, "/pricing", HTTP_COOKIE=f"{COOKIE}={cookie_value}")
    assert body.decode() != cookie_value and len(body) == 36  # a fresh uuid4


def test_header_is_read_before_the_cookie_and_values_are_unquoted(client: Client) -> None:
    app = SankofaWSGIMiddleware(
        shop_app(client),
        client,
        anonymous_id_cookie=COOKIE,
        anonymous_id_header="X-Anonymous-Id",
    )
    from_cookie, from_header = BROWSER_ID, BROWSER_ID[:-1] + "2"
    both = {"HTTP_COOKIE": f"{COOKIE}={from_cookie}", "HTTP_X_ANONYMOUS_ID": from_header}
    assert call(app, "/pricing", **both)[1] == from_header.encode()
    bad_header = {"HTTP_COOKIE": f"{COOKIE}={from_cookie}", "HTTP_X_ANONYMOUS_ID": "a"}
    assert call(app, "/pricing", **bad_header)[1] == from_cookie.encode()
    quoted = f'{COOKIE}="{from_cookie}"'
    assert call(app, "/pricing", HTTP_COOKIE=quoted)[1] == from_cookie.encode()
    encoded = f"{COOKIE}=%24device%3A{from_cookie}"
    assert call(app, "/pricing", HTTP_COOKIE=encoded)[1] == f"$device:{from_cookie}".encode()
    # with a validator that takes any shape, values are still decoded as UTF-8
    anything = SankofaWSGIMiddleware(
        shop_app(client), client, anonymous_id_cookie=COOKIE, anonymous_id_validator=bool
    )
    assert call(anything, "/pricing", HTTP_COOKIE=f"{COOKIE}=anon%3Aid%C3%A9")[1] == (
        "anon:idé".encode()
    )


def test_without_a_client_the_module_level_client_is_used(backend: Backend) -> None:
    seen: list[Optional[str]] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        sankofa_sdk.identify("user_wsgi_default")
        sankofa_sdk.track("Used Default Client")
        start_response("200 OK", [])
        return [b""]

    middleware = SankofaWSGIMiddleware(app, anonymous_id_cookie=COOKIE)
    sankofa_sdk.init(api_key=backend.api_key, host=backend.url, flush_interval=0.05)
    try:
        default = sankofa_sdk.get_client()
        assert default is not None
        outer = default.distinct_id
        call(middleware, "/", HTTP_COOKIE=f"{COOKIE}={BROWSER_ID}")
        seen.append(default.distinct_id)
        assert sankofa_sdk.flush(10)
    finally:
        sankofa_sdk.shutdown()
    assert backend.wait_until_applied(10)
    assert seen == [outer]
    assert backend.aliases() == [(BROWSER_ID, "user_wsgi_default")]
    assert event_names(backend, BROWSER_ID) == ["Used Default Client"]


def test_without_any_client_requests_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANKOFA_API_KEY", raising=False)
    sankofa_sdk.shutdown()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("204 No Content", [])
        return [b""]

    assert call(SankofaWSGIMiddleware(app), "/")[0] == "204 No Content"


def test_a_body_that_is_never_closed_ends_its_identity_cleanly(client: Client) -> None:
    # Some test clients drop the body without close(); that must not raise from the GC.
    outer = client.distinct_id
    app = SankofaWSGIMiddleware(shop_app(client), client)
    env: dict[str, Any] = {"PATH_INFO": "/login", "QUERY_STRING": "user=user_wsgi_unclosed"}
    setup_testing_defaults(env)
    body = app(env, lambda *a: lambda data: None)
    assert b"".join(body) == b"user_wsgi_unclosed"
    del body
    gc.collect()
    assert client.distinct_id == outer


def test_a_body_closed_from_another_thread_while_it_streams_is_closed(client: Client) -> None:
    # A server closing a long-lived response (server-sent events) from another thread when the
    # client went away, while the serving thread is blocked in next() of the body.
    waiting, released = threading.Event(), threading.Event()
    closed: list[str] = []

    class EventStream:
        def __iter__(self) -> EventStream:
            return self

        def __next__(self) -> bytes:
            if released.is_set() or waiting.is_set():
                raise StopIteration  # one event only, even if close() never comes
            waiting.set()
            released.wait(10)  # until the next event, or close()
            return client.distinct_id.encode()

        def close(self) -> None:
            closed.append("closed")
            released.set()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        client.identify("user_wsgi_sse")
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return EventStream()

    outer = client.distinct_id
    env: dict[str, Any] = {}
    setup_testing_defaults(env)
    body = SankofaWSGIMiddleware(app, client)(env, lambda *a: lambda data: None)
    chunks: list[bytes] = []
    serving = threading.Thread(target=chunks.extend, args=(body,), daemon=True)
    serving.start()
    assert waiting.wait(10)
    body.close()  # type: ignore[attr-defined]
    serving.join(10)
    assert not serving.is_alive()
    assert closed == ["closed"]
    assert chunks == [b"user_wsgi_sse"]  # the serving thread kept the request's identity
    assert client.distinct_id == outer
    del body
    gc.collect()  # no unraisable "Token ... created in a different Context" either


def test_a_list_body_reaches_the_server_as_it_is(client: Client, serve: Callable[..., str]) -> None:
    # A server sets Content-Length from a one-item list (it needs len()); a list needs no
    # identity while it is iterated, so the middleware hands it over as it is.
    url = serve(SankofaWSGIMiddleware(shop_app(client), client))
    with urllib.request.urlopen(url + "/pricing", timeout=10) as response:
        body = response.read()
        assert response.headers["Content-Length"] == str(len(body)) == "36"
    for made in ([b"a", b"b"], (b"one",)):

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            start_response("200 OK", [])
            return made  # noqa: B023  (called before the next loop turn)

        env: dict[str, Any] = {}
        setup_testing_defaults(env)
        assert SankofaWSGIMiddleware(app, client)(env, lambda *a: lambda data: None) is made


def test_a_file_wrapper_body_reaches_the_server_as_it_is(client: Client) -> None:
    # Servers send a wsgi.file_wrapper with sendfile() only if they recognise their own class.
    wrapped: list[Any] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        client.identify("user_wsgi_file")
        start_response("200 OK", [])
        wrapped.append(environ["wsgi.file_wrapper"](io.BytesIO(b"report"), 4))
        return wrapped[-1]  # type: ignore[no-any-return]

    env: dict[str, Any] = {"wsgi.file_wrapper": FileWrapper}
    setup_testing_defaults(env)
    body = SankofaWSGIMiddleware(app, client)(env, lambda *a: lambda data: None)
    assert body is wrapped[0]
    assert b"".join(body) == b"report"
    # another server's wrapper class, or none at all: an ordinary iterable, wrapped
    env["wsgi.file_wrapper"] = lambda filelike, size=8192: FileWrapper(filelike, size)
    body = SankofaWSGIMiddleware(app, client)(env, lambda *a: lambda data: None)
    assert body is not wrapped[-1] and b"".join(body) == b"report"
