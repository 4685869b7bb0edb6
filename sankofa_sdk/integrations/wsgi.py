"""WSGI middleware: a fresh identity context for every request (any WSGI framework or server).

>>> from sankofa_sdk.integrations.wsgi import SankofaWSGIMiddleware
>>> application = SankofaWSGIMiddleware(application, client, anonymous_id_cookie="sk_anon")

Inside a request, ``identify``/``reset`` and calls without ``distinct_id`` act on that request's
identity only. The identity covers the application call *and* the iteration of the response body
(a streaming response that tracks while it streams still sees its request's identity), because
both run inside one ``contextvars.Context`` made for the request. A body that is a list or a
tuple, or the server's ``wsgi.file_wrapper``, needs no identity once the application returned
and is handed to the server as it is. Standard library only.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Optional

from ._common import (
    RequestIdentityMiddleware,
    resolve_client,
    seed_request_identity,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["SankofaWSGIMiddleware"]


if TYPE_CHECKING:
    _Base = RequestIdentityMiddleware[WSGIApplication]
else:  # the WSGI types exist only for type checkers
    _Base = RequestIdentityMiddleware


class SankofaWSGIMiddleware(_Base):
    """Wrap a WSGI application so each request has its own Sankofa identity.

    Options (``client``, ``anonymous_id_cookie``, ``anonymous_id_header``,
    ``anonymous_id_validator``): see :class:`~sankofa_sdk.integrations._common.RequestIdentityMiddleware`.
    """

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        client = resolve_client(self.client)
        if client is None:
            return self.app(environ, start_response)
        anonymous_id = self._source.read(lambda name: _environ_header(environ, name))
        # A context made for this request alone: the identity is set in it without a token, so
        # nothing has to be undone, in any thread, when the request ends; it ends with the body.
        request_context = contextvars.copy_context()
        request_context.run(seed_request_identity, client, anonymous_id)
        body = request_context.run(self.app, environ, start_response)
        if type(body) in (list, tuple) or _is_file_wrapper(body, environ):
            # Made already, or a file read as it is sent: no identity is needed any more, and
            # the server sees the object itself (Content-Length from len(), sendfile()).
            return body
        return _ScopedBody(body, request_context)


class _ScopedBody:
    """The application's response body, iterated and closed inside the request's context."""

    def __init__(self, body: Iterable[bytes], request_context: contextvars.Context) -> None:
        self._body = body
        self._context = request_context
        self._iterator: Optional[Iterator[bytes]] = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self._body)
        return self._context.run(next, self._iterator)

    def close(self) -> None:
        """Close the application's body (PEP 3333), in the request's context when possible.

        A server may close the body from another thread while its serving thread is inside
        ``next()`` (a client that went away from a stream); the context is then in use, and the
        body is closed outside it rather than not at all.
        """
        close = getattr(self._body, "close", None)
        if close is None:
            return
        started = False

        def close_in_context() -> None:
            nonlocal started
            started = True
            close()

        try:
            self._context.run(close_in_context)
        except RuntimeError:
            if started:  # raised by the body's close()
                raise
            close()  # "cannot enter context: ... is already entered"


def _is_file_wrapper(body: Iterable[bytes], environ: WSGIEnvironment) -> bool:
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and isinstance(body, wrapper)


def _environ_header(environ: WSGIEnvironment, name: str) -> Optional[str]:
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    value = environ.get(key)
    if not isinstance(value, str):
        return None
    # PEP 3333: header values are bytes decoded as ISO-8859-1; ids are UTF-8.
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
