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
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

from .._client import Client
from .._health import QUEUE_THRESHOLD
from .._identity import Held
from ._common import (
    RequestIdentityMiddleware,
    RequestOptions,
    RequestProperties,
    call_user_id,
    request_properties,
    request_properties_var,
    resolve_client,
    seed_request_identity,
    sign_in_request,
)
from ._health_view import HEADERS, health_answer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["SankofaWSGIMiddleware", "health_app"]


if TYPE_CHECKING:
    _Base = RequestIdentityMiddleware[WSGIApplication]
else:  # the WSGI types exist only for type checkers
    _Base = RequestIdentityMiddleware


class SankofaWSGIMiddleware(_Base):
    """Wrap a WSGI application so each request has its own Sankofa identity.

    Options (``client``, ``anonymous_id_cookie``, ``anonymous_id_header``,
    ``anonymous_id_validator``, ``set_anonymous_id_cookie``, ``user_id``,
    ``request_properties``, ``request_ip``): see
    :class:`~sankofa_sdk.integrations._common.RequestIdentityMiddleware`. Here ``user_id`` is
    called with the WSGI environ.
    """

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        client = resolve_client(self.client)
        if client is None:
            return self.app(environ, start_response)
        options = self._options
        anonymous_id = self._source.read(lambda name: _environ_header(environ, name))
        user = None if options.user_id is None else call_user_id(options.user_id, environ, "WSGI")
        properties = _request_properties(environ, options.ip) if options.properties else None
        # A context made for this request alone: the identity is set in it without a token, so
        # nothing has to be undone, in any thread, when the request ends; it ends with the body.
        request_context = contextvars.copy_context()
        held = request_context.run(_begin, client, anonymous_id, user, properties)
        if options.set_cookie:
            start_response = _setting_cookie(start_response, options, held, anonymous_id, environ)
        body = request_context.run(self.app, environ, start_response)
        if type(body) in (list, tuple) or _is_file_wrapper(body, environ):
            # Made already, or a file read as it is sent: no identity is needed any more, and
            # the server sees the object itself (Content-Length from len(), sendfile()).
            return body
        return _ScopedBody(body, request_context)


def health_app(
    client: Optional[Client] = None,
    *,
    queue_threshold: float = QUEUE_THRESHOLD,
    fail_when_degraded: bool = False,
) -> WSGIApplication:
    """A WSGI app answering ``client.health()`` as JSON (200, or 503 when failing), for a
    readiness probe or a dashboard; mount it where the app's router or server maps a path.
    ``client``: by default the module-level one, resolved at each request."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        status, body = health_answer(
            client, queue_threshold=queue_threshold, fail_when_degraded=fail_when_degraded
        )
        reason = "OK" if status == 200 else "Service Unavailable"
        headers = [*HEADERS, ("Content-Length", str(len(body)))]
        start_response(f"{status} {reason}", headers)
        return [body]

    return app


def _begin(
    client: Client,
    anonymous_id: Optional[str],
    user: object,
    properties: Optional[RequestProperties],
) -> Optional[Held]:
    """Set the request's identity and properties up; run in the request's own context."""
    seed_request_identity(client, anonymous_id)
    sign_in_request(client, user, "WSGI")
    var = request_properties_var(client) if properties is not None else None
    if var is not None:
        var.set(properties)
    return client._identity.held()


def _setting_cookie(
    start_response: StartResponse,
    options: RequestOptions,
    held: Optional[Held],
    came_with: Optional[str],
    environ: WSGIEnvironment,
) -> StartResponse:
    """``start_response`` adding the anonymous-id cookie, decided when the response starts."""
    secure = environ.get("wsgi.url_scheme") == "https"

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        cookie = options.cookie_to_set(held, came_with, secure)
        if cookie is not None:
            headers = [*headers, ("Set-Cookie", cookie)]
        return start_response(status, headers, exc_info)

    return start


def _request_properties(environ: WSGIEnvironment, ip: bool) -> dict[str, str]:
    """``$current_url`` and the rest from the environ, the URL rebuilt as PEP 3333 shows."""
    scheme = environ.get("wsgi.url_scheme") or "http"
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME") or ""
        port = str(environ.get("SERVER_PORT") or "")
        if port and port != ("443" if scheme == "https" else "80"):
            host = f"{host}:{port}"
    path = _quoted(environ.get("SCRIPT_NAME")) + _quoted(environ.get("PATH_INFO"))
    query = environ.get("QUERY_STRING")
    url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    return request_properties(
        url,
        path,
        _environ_header(environ, "referer"),
        _environ_header(environ, "user-agent"),
        environ.get("REMOTE_ADDR") if ip else None,
    )


def _quoted(value: object) -> str:
    # PEP 3333: the path is the request's bytes decoded as ISO-8859-1.
    if not isinstance(value, str) or not value:
        return ""
    try:
        return quote(value.encode("latin-1"), safe="/;=,@:!$&'()*+~")
    except UnicodeEncodeError:
        return quote(value, safe="/;=,@:!$&'()*+~")


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
