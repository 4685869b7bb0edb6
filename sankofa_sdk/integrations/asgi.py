"""ASGI middleware: a fresh identity context for every HTTP request and WebSocket connection.

Works with any ASGI 3 application or framework (Starlette, FastAPI, Django's ASGI handler,
Quart, ...). Standard library only.

>>> from sankofa_sdk.integrations.asgi import SankofaASGIMiddleware
>>> app.add_middleware(SankofaASGIMiddleware, client=client, anonymous_id_cookie="sk_anon")

The identity is opened around the whole call of the application, so everything the request or
connection does in its task, and in the tasks and threads it starts (which copy the context),
uses the request's identity. ``identify``/``reset`` stay inside the request but act on all of
it, wherever they run: in a sync (``def``) endpoint or dependency, which Starlette runs in a
thread pool on a copy of the context, they still hold for the rest of the request and its
background tasks.

The server's ``lifespan`` shutdown also delivers what the client has queued (within its
shutdown budget, without closing it) before the server is told the app is done: uvicorn raises
SIGTERM again after its graceful shutdown, so without this a process stopped by SIGTERM would
die with the queue unsent and no ``atexit`` hook run. The client stays open, so a test client
can start the same app again. ``deliver_on_lifespan=False`` leaves that to the app. Other scope
types pass through untouched.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable, MutableMapping
from typing import Any, Callable, Optional
from urllib.parse import quote

from .._client import Client
from .._health import QUEUE_THRESHOLD
from .._identity import Held
from .._log import logger
from ._common import (
    RequestIdentityMiddleware,
    RequestOptions,
    call_user_id,
    cookie_value,
    existing_client,
    request_identity,
    request_properties,
    request_properties_var,
    resolve_client,
    sign_in_request,
)
from ._health_view import HEADERS, health_answer

__all__ = ["ASGIApp", "Receive", "SankofaASGIMiddleware", "Scope", "Send", "health_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SankofaASGIMiddleware(RequestIdentityMiddleware[ASGIApp]):
    """Wrap an ASGI application so each request or WebSocket has its own Sankofa identity.

    Options (``client``, ``anonymous_id_cookie``, ``anonymous_id_header``,
    ``anonymous_id_validator``, ``set_anonymous_id_cookie``, ``user_id``,
    ``request_properties``, ``request_ip``): see
    :class:`~sankofa_sdk.integrations._common.RequestIdentityMiddleware`. Here ``user_id`` is
    called with the ASGI scope and may be a coroutine function; the cookie is written on
    ``http`` responses only. ``deliver_on_lifespan`` (True): deliver the client's queue when the
    server ends the app's lifespan (see the module's docstring).
    """

    def __init__(self, app: ASGIApp, *args: Any, deliver_on_lifespan: bool = True, **options: Any):
        super().__init__(app, *args, **options)
        self.deliver_on_lifespan = deliver_on_lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            if scope.get("type") == "lifespan" and self.deliver_on_lifespan:
                send = _delivering_first(send, self.client)
            await self.app(scope, receive, send)
            return
        client = resolve_client(self.client)
        if client is None:
            await self.app(scope, receive, send)
            return
        options = self._options
        headers = _Headers(scope.get("headers") or ())
        anonymous_id = self._source.read(headers.get, headers.cookie) if self._source else None
        user = None
        if options.user_id is not None:
            user = call_user_id(options.user_id, scope, "ASGI")
            if inspect.isawaitable(user):
                try:
                    user = await user
                except Exception:
                    logger.exception("the ASGI user_id hook raised; request left anonymous")
                    user = None
        var = request_properties_var(client) if options.properties else None
        with request_identity(client, anonymous_id):
            sign_in_request(client, user, "ASGI")
            if options.set_cookie and scope["type"] == "http":
                send = _setting_cookie(send, options, client._identity.held(), anonymous_id, scope)
            if var is None:
                await self.app(scope, receive, send)
                return
            token = var.set(_request_properties(scope, headers, options.ip))
            try:
                await self.app(scope, receive, send)
            finally:
                var.reset(token)


def _delivering_first(send: Send, client: Optional[Client]) -> Send:
    """``send`` that delivers the client's queue (off the event loop) before it tells the
    server the app's lifespan ended, so the server's exit comes after delivery."""

    async def sending(message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            current = client if client is not None else existing_client()
            if current is not None:
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(None, current._deliver_before_exit)
                except Exception:
                    logger.exception("delivering the queue at the lifespan's end failed")
        await send(message)

    return sending


def health_app(
    client: Optional[Client] = None,
    *,
    queue_threshold: float = QUEUE_THRESHOLD,
    fail_when_degraded: bool = False,
) -> ASGIApp:
    """An ASGI app answering ``client.health()`` as JSON (200, or 503 when failing), for a
    readiness probe or a dashboard: ``app.mount("/healthz/sankofa", health_app(client))`` in
    Starlette or FastAPI. ``client``: by default the module-level one, resolved per request.
    Other scope types (``lifespan``, ``websocket``) are not answered."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            return
        status, body = health_answer(
            client, queue_threshold=queue_threshold, fail_when_degraded=fail_when_degraded
        )
        headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _setting_cookie(
    send: Send,
    options: RequestOptions,
    held: Optional[Held],
    came_with: Optional[str],
    scope: Scope,
) -> Send:
    """``send`` adding the anonymous-id cookie to the response's start, decided then."""
    secure = scope.get("scheme") == "https"

    async def sending(message: Message) -> None:
        if message.get("type") == "http.response.start":
            cookie = options.cookie_to_set(held, came_with, secure)
            if cookie is not None:
                message = dict(message)
                message["headers"] = [
                    *(message.get("headers") or ()),
                    (b"set-cookie", cookie.encode("latin-1")),
                ]
        await send(message)

    return sending


def _request_properties(scope: Scope, headers: _Headers, ip: bool) -> dict[str, str]:
    """``$current_url`` and the rest from an http or websocket scope."""
    scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else ""
    path = quote(str(scope.get("root_path") or "") + str(scope.get("path") or ""), safe=_PATH_SAFE)
    query = scope.get("query_string") or b""
    url = f"{scheme}://{host}{path}" + (f"?{query.decode('latin-1')}" if query else "")
    client = scope.get("client")
    return request_properties(
        url,
        path,
        headers.get("referer"),
        headers.get("user-agent"),
        str(client[0]) if ip and client else None,
    )


_PATH_SAFE = "/;=,@:!$&'()*+~"


class _Headers:
    """Case-insensitive lookup in an ASGI scope's ``[(name, value), ...]`` byte pairs."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def _values(self, name: str) -> list[str]:
        wanted = name.lower().encode("latin-1")
        found = []
        for key, value in self._raw:
            if key.lower() == wanted:
                try:
                    found.append(value.decode("utf-8"))
                except UnicodeDecodeError:
                    continue
        return found

    def get(self, name: str) -> Optional[str]:
        values = self._values(name)
        return values[0] if values else None

    def cookie(self, name: str) -> Optional[str]:
        # HTTP/2 may split cookies over several headers.
        for header in self._values("cookie"):
            value = cookie_value(header, name)
            if value is not None:
                return value
        return None
