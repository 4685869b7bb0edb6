"""Django: a middleware that scopes identity per request, configured by ``settings.SANKOFA``.

.. code-block:: python

    # settings.py
    SANKOFA = {
        "api_key": os.environ["SANKOFA_API_KEY"],
        "host": "https://api.sankofa.dev",
        "anonymous_id_cookie": "sankofa_anon",  # optional: the browser's anonymous id
        # optional: which cookie values to take (default: UUIDs, optionally anon_/$device:)
        # "anonymous_id_validator": "myapp.analytics.is_our_anonymous_id",
        # any other Client option: "flush_at", "gzip", "sync_mode", "disabled", ...
    }
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
from collections.abc import Mapping
from typing import Any, Callable, Optional

from .. import _default
from .._client import Client
from .._errors import ConfigurationError
from ._common import (
    AnonymousIdSource,
    IterateInContext,
    aiterate_in_identity,
    request_identity,
)

__all__ = ["SankofaMiddleware", "get_client"]

_lock = threading.Lock()
_client: Optional[Client] = None
_source = AnonymousIdSource()
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
    global _client, _source
    with _lock:
        if _client is None:
            _listen_for_setting_changes()
            if not isinstance(config, Mapping):
                raise ConfigurationError(
                    f"it must be a dict of Client options, not {type(config).__name__}"
                )
            options = dict(config)
            validator = options.pop("anonymous_id_validator", None)
            if isinstance(validator, str):
                module_loading = importlib.import_module("django.utils.module_loading")
                try:
                    validator = module_loading.import_string(validator)
                except ImportError as exc:
                    raise ConfigurationError(
                        f"anonymous_id_validator {validator!r} cannot be imported: {exc}"
                    ) from exc
            source = AnonymousIdSource(
                options.pop("anonymous_id_cookie", None),
                options.pop("anonymous_id_header", None),
                validator,
            )
            try:
                _client = _default.init(**options)
            except TypeError as exc:  # an option Client does not have
                raise ConfigurationError(str(exc)) from exc
            _source = source
        return _client


def _anonymous_id_source() -> AnonymousIdSource:
    return _source


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
        _source = AnonymousIdSource()
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
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

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

        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._acall(request)
        client = get_client()
        if client is None:
            return self.get_response(request)
        with request_identity(client, self._anonymous_id(request)):
            response = self.get_response(request)
            _stream_in_request_identity(client, response)
        return response

    async def _acall(self, request: Any) -> Any:
        client = get_client()
        if client is None:
            return await self.get_response(request)
        with request_identity(client, self._anonymous_id(request)):
            response = await self.get_response(request)
            _stream_in_request_identity(client, response)
        return response

    @staticmethod
    def _anonymous_id(request: Any) -> Optional[str]:
        source = _anonymous_id_source()
        if not source:
            return None
        return source.read(request.headers.get, request.COOKIES.get)


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
