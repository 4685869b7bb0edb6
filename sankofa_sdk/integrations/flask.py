"""Flask: an extension that scopes identity per request and holds the app's client.

>>> from sankofa_sdk.integrations.flask import Sankofa
>>> sankofa = Sankofa()
>>> def create_app():
...     app = Flask(__name__)
...     app.config["SANKOFA"] = {"api_key": "sk_live_…", "host": "https://api.sankofa.dev"}
...     sankofa.init_app(app)
...     return app

In a view, ``current_client()`` (or ``sankofa.client``) is the app's client; ``identify`` on
sign-in and ``reset`` on sign-out act on the current request only. This module imports Flask
only in :func:`current_client`, so it can be imported where Flask is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from .._client import Client
from .._errors import ConfigurationError
from .._health import QUEUE_THRESHOLD
from .._log import logger
from ._common import AnonymousIdValidator, configured_client, sign_in_request
from ._health_view import HEADERS, health_answer
from .wsgi import SankofaWSGIMiddleware

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["EXTENSION_KEY", "Sankofa", "current_client", "health_view"]

EXTENSION_KEY = "sankofa"
"""The key of the app's client in ``app.extensions``."""


class Sankofa:
    """The Flask extension. ``Sankofa(app)`` or ``Sankofa()`` then ``init_app(app)``.

    Which client an app uses, first match wins:

    1. ``client=`` given to the extension;
    2. ``app.config["SANKOFA"]``, a dict of :class:`~sankofa_sdk.Client` arguments
       (``api_key``, ``host`` and any option), from which a client is created for the app;
    3. the module-level client (``sankofa_sdk.init()``, or ``SANKOFA_API_KEY`` in the environment).

    ``anonymous_id_cookie`` / ``anonymous_id_header`` (arguments here, or keys of
    ``app.config["SANKOFA"]``) name where the browser keeps its anonymous id, which
    ``identify`` then stitches to the user; ``anonymous_id_validator`` (likewise) says which
    values may be taken, by default only UUIDs (see :class:`SankofaWSGIMiddleware`).

    ``user_id``, a function of no arguments called at the start of each request (e.g.
    ``lambda: session.get("user_id")``), names the request's signed-in user: when it returns an
    id, the request's calls use it without sending anything (no alias, no traits), so only the
    sign-in request needs ``identify``.

    ``set_anonymous_id_cookie=True`` writes the request's anonymous id to
    ``anonymous_id_cookie`` while the visitor is signed out, for apps without a front-end SDK:
    sign-in stitching needs one or the other. ``request_properties`` (True) adds the request's
    ``$current_url``, ``$pathname``, ``$referrer`` and ``$user_agent`` to its events,
    ``request_ip`` (False) its ``$ip``. These too may be keys of ``app.config["SANKOFA"]``.

    ``init_app`` stores the client in ``app.extensions["sankofa"]`` and wraps ``app.wsgi_app``
    with :class:`SankofaWSGIMiddleware`. Queued operations are delivered at interpreter exit by
    the client's own ``atexit`` hook (bounded by ``shutdown_timeout``).
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        *,
        client: Optional[Client] = None,
        anonymous_id_cookie: Optional[str] = None,
        anonymous_id_header: Optional[str] = None,
        anonymous_id_validator: Optional[AnonymousIdValidator] = None,
        user_id: Optional[Callable[[], Optional[str]]] = None,
        set_anonymous_id_cookie: bool = False,
        request_properties: bool = True,
        request_ip: bool = False,
    ) -> None:
        if user_id is not None and not callable(user_id):
            raise ConfigurationError(
                "user_id must be a function of no arguments returning the signed-in user's id "
                f"or None, not {type(user_id).__name__}"
            )
        self._client = client
        self._request_options: dict[str, Any] = {
            "anonymous_id_cookie": anonymous_id_cookie,
            "anonymous_id_header": anonymous_id_header,
            "anonymous_id_validator": anonymous_id_validator,
            "set_anonymous_id_cookie": set_anonymous_id_cookie,
            "request_properties": request_properties,
            "request_ip": request_ip,
        }
        self._user_id = user_id
        self.client: Optional[Client] = client
        """The client of the app last initialised (the only one, in the usual one-app case)."""
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Client:
        """Set the extension up on ``app`` and return the app's client."""
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError("the Sankofa extension is already set up on this app")
        config: dict[str, Any] = dict(app.config.get("SANKOFA") or {})
        request_options = {
            name: config.pop(name, default) for name, default in self._request_options.items()
        }
        middleware = SankofaWSGIMiddleware(app.wsgi_app, None, **request_options)
        client = self._client_for(config)
        middleware.client = client
        app.extensions[EXTENSION_KEY] = client
        app.wsgi_app = middleware  # type: ignore[method-assign]
        if self._user_id is not None:
            app.before_request(self._sign_in_request)
        self.client = client
        return client

    def _sign_in_request(self) -> None:
        assert self._user_id is not None
        try:
            user = self._user_id()
        except Exception:
            logger.exception("the Flask user_id callback raised; request left anonymous")
            return
        sign_in_request(current_client(), user, "Flask")

    def _client_for(self, config: dict[str, Any]) -> Client:
        if self._client is not None:
            return self._client
        if config:
            api_key = config.pop("api_key", None)
            try:
                return Client(api_key, **config)
            except TypeError as exc:  # an option Client does not have
                raise ConfigurationError(f"app.config['SANKOFA'] is invalid: {exc}") from exc
        client = configured_client()
        if client is None:
            raise ConfigurationError(
                "no client for the Flask app: pass client=, set "
                "app.config['SANKOFA'] = {'api_key': ...}, call sankofa_sdk.init() first or set "
                "SANKOFA_API_KEY"
            )
        return client


def current_client() -> Client:
    """The client of the Flask app handling the current request (or app context)."""
    try:
        from flask import current_app
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise ImportError("sankofa_sdk.integrations.flask needs Flask: pip install flask") from exc
    client = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(client, Client):
        raise ConfigurationError("the Sankofa extension is not set up on this app")
    return client


def health_view(
    *, queue_threshold: float = QUEUE_THRESHOLD, fail_when_degraded: bool = False
) -> Callable[[], tuple[bytes, int, list[tuple[str, str]]]]:
    """A view answering the app's client's ``health()`` as JSON (200, or 503 when failing):
    ``app.add_url_rule("/healthz/sankofa", view_func=health_view())``."""

    def sankofa_health() -> tuple[bytes, int, list[tuple[str, str]]]:
        status, body = health_answer(
            current_client(), queue_threshold=queue_threshold, fail_when_degraded=fail_when_degraded
        )
        return body, status, list(HEADERS)

    return sankofa_health
