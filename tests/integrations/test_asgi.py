"""The ASGI middleware on a plain ASGI app, driven by hand-made scopes (no framework)."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from sankofa_sdk import Client
from sankofa_sdk.integrations import SankofaASGIMiddleware
from sankofa_sdk.integrations.asgi import Message, Receive, Scope, Send
from sankofa_sdk.testing import RecordingTransport

from .conftest import Backend, deliver, event_names

BROWSER_ID = "2a4b6c8d-0000-4a5b-8c9d-000000000001"
WS_BROWSER_ID = "2a4b6c8d-0000-4a5b-8c9d-0000000000f5"


class Gate:
    """All ``parties`` coroutines wait here until every one arrived (asyncio.Barrier is 3.11+)."""

    def __init__(self, parties: int) -> None:
        self._left = parties
        self._open = asyncio.Event()

    async def wait(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._open.set()
        await asyncio.wait_for(self._open.wait(), 10)


def make_app(client: Client, gate: Optional[Gate] = None) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                client.track("Lifespan " + message["type"].rsplit(".", 1)[-1].title())
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            message = await receive()
            client.identify(message["text"])
            client.track("Chat Message Sent")
            await send({"type": "websocket.send", "text": client.distinct_id})
            await send({"type": "websocket.close", "code": 1000})
            return
        path = scope["path"]
        if path.startswith("/login/"):
            user = path.rsplit("/", 1)[-1]
            client.identify(user)
            if gate is not None:
                await gate.wait()
            client.track("Checked Out", {"user": user})
        elif path == "/pricing":
            client.track("Viewed Pricing")
        elif path == "/logout":
            client.track("Signed Out")
            client.reset()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": client.distinct_id.encode()})

    return app


async def request(app: Any, path: str, headers: Optional[list[tuple[bytes, bytes]]] = None) -> str:
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers or []}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return str(sent[-1]["body"].decode())


def test_sign_in_with_an_anonymous_cookie_stitches_and_requests_never_mix(
    client: Client, backend: Backend
) -> None:
    gate = Gate(2)
    app = SankofaASGIMiddleware(make_app(client, gate), client, anonymous_id_cookie="sk_anon")
    other_browser = "2a4b6c8d-0000-4a5b-8c9d-000000000002"

    async def main() -> list[str]:
        outer = client.distinct_id
        answers = await asyncio.gather(
            request(app, "/login/user_asgi_a", [(b"cookie", f"sk_anon={BROWSER_ID}".encode())]),
            # HTTP/2 can split cookies over several headers
            request(
                app,
                "/login/user_asgi_b",
                [(b"cookie", b"a=1"), (b"Cookie", f"sk_anon={other_browser}".encode())],
            ),
        )
        assert client.distinct_id == outer
        return answers

    assert asyncio.run(main()) == ["user_asgi_a", "user_asgi_b"]
    deliver(client, backend)
    assert sorted(backend.aliases()) == [
        (BROWSER_ID, "user_asgi_a"),
        (other_browser, "user_asgi_b"),
    ]
    for user in ("user_asgi_a", "user_asgi_b"):
        assert [(e["distinct_id"], e["properties"]["user"]) for e in backend.events(user)] == [
            (user, user)
        ]


def test_sign_out_reset_gives_a_new_anonymous_id(client: Client, backend: Backend) -> None:
    app = SankofaASGIMiddleware(make_app(client), client, anonymous_id_header="X-Anonymous-Id")
    after = asyncio.run(request(app, "/logout", [(b"x-anonymous-id", BROWSER_ID.encode())]))
    assert after != BROWSER_ID
    deliver(client, backend)
    assert event_names(backend, BROWSER_ID) == ["Signed Out"]
    assert backend.get_person(after) is None  # nothing was sent under the new id yet


def test_a_websocket_connection_has_its_own_identity(client: Client, backend: Backend) -> None:
    app = SankofaASGIMiddleware(make_app(client), client, anonymous_id_cookie="sk_anon")
    inbox = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "user_asgi_ws"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [(b"cookie", f"sk_anon={WS_BROWSER_ID}".encode())],
    }
    outer = client.distinct_id
    asyncio.run(app(scope, receive, send))
    assert client.distinct_id == outer
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "user_asgi_ws"
    deliver(client, backend)
    assert backend.aliases() == [(WS_BROWSER_ID, "user_asgi_ws")]
    assert event_names(backend, "user_asgi_ws") == ["Chat Message Sent"]


def test_lifespan_passes_through_without_a_request_identity(
    client: Client, backend: Backend
) -> None:
    app = SankofaASGIMiddleware(make_app(client), client)
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> str:
        client.track("Before Startup")
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        return client.distinct_id

    outer = asyncio.run(main())
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    deliver(client, backend)
    # the lifespan ran in the caller's identity, not in a fresh one
    assert event_names(backend, outer) == [
        "Before Startup",
        "Lifespan Startup",
        "Lifespan Shutdown",
    ]


def test_identify_in_a_thread_of_the_request_holds_for_the_rest_of_it(
    client: Client, backend: Backend
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # asyncio.to_thread (like a framework's thread pool) runs on a copy of the context
        await asyncio.to_thread(client.identify, "user_asgi_thread")
        client.track("Tracked After The Thread")
        with client.context("user_asgi_job"):  # a private identity inside the request
            await asyncio.to_thread(client.identify, "user_asgi_job_2")
            assert client.distinct_id == "user_asgi_job"
        assert client.distinct_id == "user_asgi_thread"
        await asyncio.to_thread(client.reset)
        after_reset = client.distinct_id
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": after_reset.encode()})

    middleware = SankofaASGIMiddleware(app, client, anonymous_id_header="X-Anonymous-Id")

    async def main() -> tuple[str, str]:
        outer = client.distinct_id
        answer = await request(middleware, "/", [(b"x-anonymous-id", BROWSER_ID.encode())])
        assert client.distinct_id == outer  # nothing leaked out of the request
        return outer, answer

    outer, after_reset = asyncio.run(main())
    assert after_reset not in (outer, BROWSER_ID, "user_asgi_thread")
    deliver(client, backend)
    assert backend.aliases() == [(BROWSER_ID, "user_asgi_thread")]
    assert event_names(backend, "user_asgi_thread") == ["Tracked After The Thread"]


def lifespan_once(app: Any, on_send: Any = None) -> list[str]:
    """Run one lifespan (startup, then shutdown) through ``app``; the messages it sent.
    ``on_send(message)`` runs as the server receives each."""
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        if on_send is not None:
            on_send(message)
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    return sent


def test_the_lifespan_end_delivers_the_queue_before_the_server_is_told_and_keeps_the_client() -> (
    None
):
    """uvicorn raises SIGTERM again once the lifespan ended: the queue must be delivered
    before ``lifespan.shutdown.complete`` reaches it. The client stays open, so a test client
    can start the same app again."""
    transport = RecordingTransport()
    client = Client("sk_test", transport=transport, flush_interval=60, flush_at=5_000)
    seen_at_complete: list[int] = []

    def server_receives(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            seen_at_complete.append(len(transport.applied_operations()))

    app = SankofaASGIMiddleware(make_app(client), client)
    for round_ in range(2):
        client.track("Webhook", {"round": round_}, distinct_id="customer_1")
        lifespan_once(app, server_receives)
    # Each round's three operations (its webhook and the two lifespan events) were delivered
    # before the server heard the app was done.
    assert seen_at_complete == [3, 6]
    assert client.stats()["dropped"] == {}
    client.track("Still Open", distinct_id="customer_1")
    assert client.flush(5)
    client.shutdown()


def test_deliver_on_lifespan_false_leaves_the_queue(backend: Backend) -> None:
    transport = RecordingTransport()
    client = Client("sk_test", transport=transport, flush_interval=60, flush_at=5_000)
    client.track("Webhook", distinct_id="customer_1")
    app = SankofaASGIMiddleware(make_app(client), client, deliver_on_lifespan=False)
    assert lifespan_once(app)[-1] == "lifespan.shutdown.complete"
    assert transport.requests == []
    client.shutdown()
