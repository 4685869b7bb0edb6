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
background tasks. ``lifespan`` and other scope types pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, MutableMapping
from typing import Any, Callable, Optional

from ._common import (
    RequestIdentityMiddleware,
    cookie_value,
    request_identity,
    resolve_client,
)

__all__ = ["ASGIApp", "Receive", "SankofaASGIMiddleware", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SankofaASGIMiddleware(RequestIdentityMiddleware[ASGIApp]):
    """Wrap an ASGI application so each request or WebSocket has its own Sankofa identity.

    Options (``client``, ``anonymous_id_cookie``, ``anonymous_id_header``,
    ``anonymous_id_validator``): see :class:`~sankofa_sdk.integrations._common.RequestIdentityMiddleware`.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = resolve_client(self.client)
        if client is None:
            await self.app(scope, receive, send)
            return
        anonymous_id = self._anonymous_id(scope) if self._source else None
        with request_identity(client, anonymous_id):
            await self.app(scope, receive, send)

    def _anonymous_id(self, scope: Scope) -> Optional[str]:
        headers = _Headers(scope.get("headers") or ())
        return self._source.read(headers.get, headers.cookie)


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
