"""Django: a middleware that scopes identity per request, configured by ``settings.SANKOFA``.

.. code-block:: python

    # settings.py
    SANKOFA = {
        "api_key": os.environ["SANKOFA_API_KEY"],
        "host": "https://api.sankofa.dev",
        "anonymous_id_cookie": "sankofa_anon",  # optional: the browser's anonymous id
        "set_anonymous_id_cookie": True,  # optional: keep it in that cookie (no front-end SDK)
        "user_id": "myapp.analytics.user_id",  # optional: request -> signed-in user's id or None
        # "request_properties": False,  # $current_url, $pathname, $referrer, $user_agent (on)
        # "request_ip": True,  # also $ip (off)
        # optional: which cookie values to take (default: UUIDs, optionally anon_/$device:)
        # "anonymous_id_validator": "myapp.analytics.is_our_anonymous_id",
        # any other Client option: "flush_at", "gzip", "sync_mode", "disabled", ...
    }
    # after the session and authentication middleware, which user_id reads
    MIDDLEWARE = [..., "sankofa_sdk.integrations.django.SankofaMiddleware"]

    # views.py
    import sankofa_sdk
    sankofa_sdk.identify(str(user.pk), {"email": user.email})   # on sign-in

The client is created from ``settings.SANKOFA`` when Django loads the middleware (a bad setting
raises ``ImproperlyConfigured`` then, at start-up) and becomes the module-level client, so
``sankofa_sdk.track(...)`` in views uses it. Without ``SANKOFA`` the module-level client is
used as it is (``sankofa_sdk.init()`` or ``SANKOFA_API_KEY``). The middleware works in both
Django's sync (WSGI) and async (ASGI) request paths. This module imports Django only when the
middleware or :func:`get_client` is used.

A ``StreamingHttpResponse`` body, iterated by the server after the middleware returned, still
runs in its request's identity (sync and async bodies): an ``identify`` while streaming stays
in that request, and never reaches the next request served by the same thread.
"""

from __future__ import annotations

import contextvars
import importlib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from inspect import iscoroutinefunction
from typing import Any, Callable, Optional
from urllib.parse import quote

from .. import _default
from .._client import Client
from .._errors import ConfigurationError
from .._health import QUEUE_THRESHOLD
from .._identity import Held
from .._log import logger
from ._common import (
    ANONYMOUS_ID_COOKIE_MAX_AGE,
    COOKIE_SAFE,
    IterateInContext,
    RequestOptions,
    RequestProperties,
    aiterate_in_identity,
    anonymous_id_to_keep,
    call_user_id,
    request_identity,
    request_properties,
    request_properties_var,
    sign_in_request,
)
from ._health_view import HEADERS, health_answer

__all__ = ["SankofaMiddleware", "get_client", "health_view", "make_health_view"]

_lock = threading.Lock()
_client: Optional[Client] = None
_options = RequestOptions()
_listening = False


def _require_django() -> Any:
    # import_module rather than an import statement: Django ships no type information.
    try:
        return importlib.import_module("django.conf").settings
    except ImportError as exc:
        raise ImportError(
            "sankofa_sdk.integrations.django needs Django: pip install django"
        ) from exc


def get_client() -> Optional[Client]:
    """The client configured by ``settings.SANKOFA`` (created once), else the module-level one."""
    if _client is not None:
        return _client
    settings = _require_django()
    config = getattr(settings, "SANKOFA", None)
    if config is None:
        return _default.get_client()
    return _client_from(config)


def _client_from(config: Any) -> Client:
    global _client, _options
    with _lock:
        if _client is None:
            _listen_for_setting_changes()
            if not isinstance(config, Mapping):
                raise ConfigurationError(
                    f"it must be a dict of Client options, not {type(config).__name__}"
                )
            options = dict(config)
            request_options = RequestOptions(
                options.pop("anonymous_id_cookie", None),
                options.pop("anonymous_id_header", None),
                _imported(options.pop("anonymous_id_validator", None), "anonymous_id_validator"),
                set_anonymous_id_cookie=options.pop("set_anonymous_id_cookie", False),
                user_id=_imported(options.pop("user_id", None), "user_id"),
                request_properties=options.pop("request_properties", True),
                request_ip=options.pop("request_ip", False),
            )
            try:
                _client = _default.init(**options)
            except TypeError as exc:  # an option Client does not have
                raise ConfigurationError(str(exc)) from exc
            _options = request_options
        return _client


def _imported(value: Any, what: str) -> Any:
    """A function given as itself or as its dotted path (``"myapp.analytics.user_id"``)."""
    if not isinstance(value, str):
        return value
    module_loading = importlib.import_module("django.utils.module_loading")
    try:
        return module_loading.import_string(value)
    except ImportError as exc:
        raise ConfigurationError(f"{what} {value!r} cannot be imported: {exc}") from exc


def _request_options() -> RequestOptions:
    return _options


def _listen_for_setting_changes() -> None:
    # Tests change settings with override_settings: start again from the new SANKOFA.
    global _listening
    if _listening:
        return
    signals = importlib.import_module("django.core.signals")
    signals.setting_changed.connect(_on_setting_changed, weak=False)
    _listening = True


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    global _client, _source
    if setting != "SANKOFA":
        return
    with _lock:
        client, _client = _client, None
        _options = RequestOptions()
    if client is not None:
        if _default._default is client:
            _default.shutdown()
        else:
            client.shutdown()


class SankofaMiddleware:
    """Give every Django request its own Sankofa identity (sync and async).

    The browser's anonymous id is read from the cookie or header named by
    ``SANKOFA["anonymous_id_cookie"]`` / ``SANKOFA["anonymous_id_header"]``, so ``identify`` on
    sign-in stitches it to the user. Only anonymous-looking values are taken (a UUID, optionally
    ``anon_``/``$device:`` prefixed) unless ``SANKOFA["anonymous_id_validator"]`` (a function of
    the value, or its dotted path) accepts another shape.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        settings = _require_django()

        # Build the client now, when Django loads its middleware: a bad setting stops the start
        # with a clear message instead of failing every request.
        config = getattr(settings, "SANKOFA", None)
        if config is not None:
            try:
                _client_from(config)
            except Exception as exc:
                improperly_configured = importlib.import_module(
                    "django.core.exceptions"
                ).ImproperlyConfigured
                raise improperly_configured(f"settings.SANKOFA is invalid: {exc}") from exc

        asgiref_sync = importlib.import_module("asgiref.sync")
        self._sync_to_async: Callable[..., Any] = asgiref_sync.sync_to_async
        self.get_response = get_response
        self._async = asgiref_sync.iscoroutinefunction(get_response)
        if self._async:
            asgiref_sync.markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._acall(request)
        client = get_client()
        if client is None:
            return self.get_response(request)
        options = _request_options()
        user = None
        if options.user_id is not None:
            user = call_user_id(options.user_id, request, "Django")
        return self._respond(client, options, request, user)

    async def _acall(self, request: Any) -> Any:
        client = get_client()
        if client is None:
            return await self.get_response(request)
        options = _request_options()
        user = None
        if options.user_id is not None:
            if iscoroutinefunction(options.user_id):
                user = await _awaited_user_id(options.user_id, request)
            else:  # request.user reads the database: not on the event loop
                user = await self._sync_to_async(call_user_id)(options.user_id, request, "Django")
        return await self._respond(client, options, request, user)

    def _respond(self, client: Client, options: RequestOptions, request: Any, user: object) -> Any:
        """The response within the request's identity and properties (awaitable when async)."""
        anonymous_id = None
        if options.source:
            anonymous_id = options.source.read(request.headers.get, request.COOKIES.get)
        var = request_properties_var(client) if options.properties else None
        properties = None if var is None else _request_properties(request, options.ip)
        if self._async:
            return self._arespond(client, options, request, user, anonymous_id, var, properties)
        with request_identity(client, anonymous_id), _holding(var, properties):
            sign_in_request(client, user, "Django")
            held = client._identity.held()
            response = self.get_response(request)
            _stream_in_request_identity(client, response)
        _set_cookie(options, response, held, anonymous_id, request)
        return response

    async def _arespond(
        self,
        client: Client,
        options: RequestOptions,
        request: Any,
        user: object,
        anonymous_id: Optional[str],
        var: Optional[ContextVar[Optional[RequestProperties]]],
        properties: Optional[RequestProperties],
    ) -> Any:
        with request_identity(client, anonymous_id), _holding(var, properties):
            sign_in_request(client, user, "Django")
            held = client._identity.held()
            response = await self.get_response(request)
            _stream_in_request_identity(client, response)
        _set_cookie(options, response, held, anonymous_id, request)
        return response


async def _awaited_user_id(user_id: Callable[[Any], Any], request: Any) -> Any:
    try:
        return await user_id(request)
    except Exception:
        logger.exception("the Django user_id hook raised; request left anonymous")
        return None


@contextmanager
def _holding(
    var: Optional[ContextVar[Optional[RequestProperties]]],
    properties: Optional[RequestProperties],
) -> Iterator[None]:
    if var is None:
        yield
        return
    token = var.set(properties)
    try:
        yield
    finally:
        var.reset(token)


def _set_cookie(
    options: RequestOptions,
    response: Any,
    held: Optional[Held],
    came_with: Optional[str],
    request: Any,
) -> None:
    if not options.set_cookie or options.source.cookie is None:
        return
    keep = anonymous_id_to_keep(held, came_with)
    if keep is not None:
        response.set_cookie(
            options.source.cookie,
            quote(keep, safe=COOKIE_SAFE),
            max_age=ANONYMOUS_ID_COOKIE_MAX_AGE,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )


def _request_properties(request: Any, ip: bool) -> dict[str, str]:
    """``$current_url`` and the rest from a Django request (sync or async)."""
    path = quote(request.path, safe="/;=,@:!$&'()*+~")
    try:
        host = request.get_host()
    except Exception:  # DisallowedHost: Django answers 400 itself; the URL names no host
        host = ""
    query = request.META.get("QUERY_STRING")
    url = f"{request.scheme}://{host}{path}" + (f"?{query}" if query else "")
    return request_properties(
        url,
        path,
        request.headers.get("referer"),
        request.headers.get("user-agent"),
        request.META.get("REMOTE_ADDR") if ip else None,
    )


def _stream_in_request_identity(client: Client, response: Any) -> None:
    """Make a streamed body, iterated after the middleware returned, run in the request's identity.

    Called inside the request's identity. A file (``FileResponse``) is left alone: reading it
    needs no identity, and the server may send it with ``wsgi.file_wrapper``.
    """
    if not getattr(response, "streaming", False) or getattr(response, "file_to_stream", None):
        return
    if response.is_async:
        response.streaming_content = aiterate_in_identity(client, response.streaming_content)
    else:
        response.streaming_content = IterateInContext(
            iter(response.streaming_content), contextvars.copy_context()
        )


def health_view(request: Any) -> Any:
    """A view answering ``health()`` of the client :func:`get_client` gives, as JSON (200, or
    503 when failing): ``path("healthz/sankofa", health_view)`` in a URLconf. For other
    options (``queue_threshold``, ``fail_when_degraded``) see :func:`make_health_view`."""
    return _health_view(request)


def make_health_view(
    *, queue_threshold: float = QUEUE_THRESHOLD, fail_when_degraded: bool = False
) -> Callable[[Any], Any]:
    """:func:`health_view` with other options."""

    def view(request: Any) -> Any:
        return _health_view(request, queue_threshold, fail_when_degraded)

    return view


def _health_view(
    request: Any, queue_threshold: float = QUEUE_THRESHOLD, fail_when_degraded: bool = False
) -> Any:
    _require_django()
    http = importlib.import_module("django.http")
    status, body = health_answer(
        get_client(), queue_threshold=queue_threshold, fail_when_degraded=fail_when_degraded
    )
    response = http.HttpResponse(body, status=status, content_type=HEADERS[0][1])
    for name, value in HEADERS[1:]:
        response[name] = value
    return response
