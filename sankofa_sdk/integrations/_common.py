"""What the middleware of every framework shares: the client, the anonymous id, the identity.

Only this module reaches into the client's identity store (``client._identity``), to open a
request's shared identity (see :mod:`sankofa_sdk._identity`) and carry it into a response body.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Generic, Optional, TypeVar
from urllib.parse import quote, unquote

from .. import _default
from .._client import Client
from .._default import get_client
from .._errors import ConfigurationError, ValidationError
from .._identity import Held, Identity, IdentityScope, SharedIdentity
from .._log import ThrottledWarning, logger
from .._operations import is_garbage_id
from .._validate import check_distinct_id

MAX_ANONYMOUS_ID_LENGTH = 200
"""A longer value in a cookie or header is not taken as an anonymous id."""

AnonymousIdValidator = Callable[[str], object]
"""``validator(value)``: truthy when ``value`` may be taken as a request's anonymous id."""

ANONYMOUS_ID_COOKIE_MAX_AGE = 365 * 24 * 60 * 60
"""How long a browser keeps the anonymous-id cookie the middleware writes: one year (seconds)."""

RequestProperties = Mapping[str, str]
"""What a request adds to the events tracked in it: ``$current_url``, ``$pathname``,..."""

# The characters a cookie value may hold as they are (RFC 6265 cookie-octet) but "%", which
# stays the escape: clean_anonymous_id() decodes %-escapes when the cookie comes back.
COOKIE_SAFE = "!#$&'()*+-./:<=>?@[]^_`{|}~"

_ANONYMOUS_ID = re.compile(
    r"(?:anon_|\$device:)?"
    r"(?i:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
    re.ASCII,
)


def looks_like_anonymous_id(value: str) -> bool:
    """The default check of a browser's anonymous id: a UUID, optionally prefixed.

    A UUID of any version in the canonical 8-4-4-4-12 hexadecimal form (any case), alone or
    after ``anon_`` or ``$device:``: the ids front-end SDKs generate. Anything else (``user_43``,
    an email, a number) may be a known user's id, and a request seeded with it would stitch that
    user to whoever signs in.
    """
    return _ANONYMOUS_ID.fullmatch(value) is not None


def configured_client() -> Optional[Client]:
    """The module-level client if one is set up or can be made from ``SANKOFA_API_KEY``, else None.

    Unlike :func:`~sankofa_sdk.get_client`, it logs nothing when there is none: an integration
    being set up raises its own, more helpful :class:`ConfigurationError` instead.
    """
    if _default._default is None and not os.environ.get("SANKOFA_API_KEY"):
        return None
    return get_client()


def resolve_client(client: Optional[Client]) -> Optional[Client]:
    """The given client, else the module-level one (``sankofa_sdk.init()`` or the environment).

    Resolved per request, so ``sankofa_sdk.init()`` may run after the middleware was built.
    """
    return client if client is not None else get_client()


def existing_client() -> Optional[Client]:
    """The module-level client if one was made; never creates one (nor warns)."""
    return _default._default


@contextmanager
def request_identity(client: Client, anonymous_id: Optional[str]) -> Iterator[None]:
    """A request's identity for the ``with`` block, seeded with the browser's ``anonymous_id``.

    Unlike ``client.context()``, the identity is shared by every copy of the context made in
    the block, so an ``identify`` or ``reset`` in a thread-pool copy (a sync endpoint) or a task
    of the request changes the identity of the whole request.
    """
    identities = client._identity
    token = identities.open_request(anonymous_id)
    try:
        yield
    finally:
        identities.restore(token)


def seed_request_identity(client: Client, anonymous_id: Optional[str]) -> None:
    """Give the current context, made for one request only, the request's identity.

    Nothing is undone afterwards: the context is dropped with the request (its copies, which
    the request's threads may hold, share the identity as with :func:`request_identity`).
    """
    client._identity.open_request(anonymous_id)


T = TypeVar("T")


class IterateInContext(Iterator[T]):
    """``iterator`` stepped inside ``context``: a body iterated after its request's code returned.

    Take ``context`` with ``contextvars.copy_context()`` inside :func:`request_identity`: it
    then holds the request's identity (and whatever else the request set), and the body's
    ``identify`` or nested ``client.context()`` stay in it across steps.
    """

    def __init__(self, iterator: Iterator[T], context: contextvars.Context) -> None:
        self._iterator = iterator
        self._context = context

    def __next__(self) -> T:
        return self._context.run(next, self._iterator)


def aiterate_in_identity(client: Client, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
    """``iterator`` stepped in the identity current now (call inside :func:`request_identity`).

    Each step runs in the consumer's task with that identity held, and gives the consumer its
    own back before yielding. What the body changed (a ``client.context()`` spanning a yield)
    is carried to its next step.
    """
    identities = client._identity
    held = identities.held()  # now: an async generator's code starts at its first step
    if held is None:
        return iterator
    return _aiterate_holding(identities, held, iterator)


async def _aiterate_holding(
    identities: IdentityScope, held: Held, iterator: AsyncIterator[T]
) -> AsyncIterator[T]:
    while True:
        token = identities.hold(held)
        try:
            item = await iterator.__anext__()
        except StopAsyncIteration:
            return
        finally:
            held = identities.held() or held
            identities.restore(token)
        yield item


def clean_anonymous_id(raw: Optional[str]) -> Optional[str]:
    """``raw`` as an anonymous id, or None when it is missing or not a usable id.

    Surrounding double quotes are removed and %-escapes decoded (browsers' cookie libraries
    often write values with ``encodeURIComponent``). A value that is empty, longer than
    :data:`MAX_ANONYMOUS_ID_LENGTH`, contains whitespace or control characters, or would be
    discarded by the engine as a garbage id is ignored: the request then gets a fresh
    anonymous id, as it would without a cookie.
    """
    if raw is None:
        return None
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if "%" in value:
        try:
            value = unquote(value, errors="strict")
        except UnicodeDecodeError:
            value = ""
    if (
        not value
        or len(value) > MAX_ANONYMOUS_ID_LENGTH
        or not value.isprintable()
        or any(ch.isspace() for ch in value)
        or is_garbage_id(value)
    ):
        logger.debug("ignoring an unusable anonymous id from the request")
        return None
    return value


def cookie_value(cookie_header: str, name: str) -> Optional[str]:
    """The value of cookie ``name`` in a ``Cookie`` header, or None.

    A plain ``name=value; name2=value2`` split: unlike ``http.cookies.SimpleCookie`` it does not
    give up on the whole header because another cookie is malformed.
    """
    for part in cookie_header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    return None


class AnonymousIdSource:
    """Where a request carries the browser's anonymous id: a header, a cookie, or neither.

    The header is read first (a front end that sends it on purpose), then the cookie. A value is
    taken only when it is usable (:func:`clean_anonymous_id`) and ``anonymous_id_validator``
    accepts it (by default :func:`looks_like_anonymous_id`).
    """

    def __init__(
        self,
        cookie: Optional[str] = None,
        header: Optional[str] = None,
        anonymous_id_validator: Optional[AnonymousIdValidator] = None,
    ) -> None:
        for what, value in (("anonymous_id_cookie", cookie), ("anonymous_id_header", header)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(f"{what} must be a non-empty string or None")
        if anonymous_id_validator is not None and not callable(anonymous_id_validator):
            raise ConfigurationError(
                "anonymous_id_validator must be a function of the id returning true to accept "
                f"it, not {type(anonymous_id_validator).__name__}"
            )
        self.cookie = cookie.strip() if cookie else None
        self.header = header.strip() if header else None
        self.validator: AnonymousIdValidator = anonymous_id_validator or looks_like_anonymous_id
        self._warnings = ThrottledWarning(interval=60.0)  # this middleware's, not the process's

    def __bool__(self) -> bool:
        return self.cookie is not None or self.header is not None

    def read(
        self,
        get_header: Callable[[str], Optional[str]],
        get_cookie: Optional[Callable[[str], Optional[str]]] = None,
    ) -> Optional[str]:
        """The validated anonymous id of a request, or None.

        ``get_header(name)`` returns a header's value (any case of ``name``); ``get_cookie``
        returns a cookie's value, and defaults to parsing ``get_header("cookie")``.
        """
        if self.header is not None:
            found = self._accept(get_header(self.header))
            if found is not None:
                return found
        if self.cookie is not None:
            if get_cookie is not None:
                raw = get_cookie(self.cookie)
            else:
                header = get_header("cookie")
                raw = None if header is None else cookie_value(header, self.cookie)
            return self._accept(raw)
        return None

    def _accept(self, raw: Optional[str]) -> Optional[str]:
        value = clean_anonymous_id(raw)
        if value is None:
            return None
        try:
            accepted = self.validator(value)
        except Exception as exc:
            self._warnings.warn(
                "validator",
                "anonymous_id_validator raised %r; the request's id was ignored",
                exc,
            )
            return None
        if not accepted:
            logger.debug("ignoring an anonymous id the validator refused")
            return None
        return value


def sign_in_request(client: Client, user: object, hook: str) -> None:
    """Make the current request's identity ``user``, sending nothing (the ``user_id`` hook).

    The request's calls then use ``user``, and an ``identify(user)`` in it sends no alias. The
    anonymous id the request came with is kept (a ``reset()`` on sign-out starts a new one). An
    unusable id is logged and the request stays anonymous.
    """
    if user is None:
        return
    try:
        distinct_id = check_distinct_id(user, "user_id")
    except ValidationError as exc:
        logger.warning("the %s user_id hook gave an unusable id: %s", hook, exc)
        return
    held = client._identity.held()
    if isinstance(held, SharedIdentity):  # always, inside the middleware
        current = held.identity
        held.replace(Identity(distinct_id, current.anonymous_id, True, current.anonymous_used))


def call_user_id(user_id: Callable[[Any], Any], request: Any, hook: str) -> Any:
    """``user_id(request)``, or None (logged) when it raises: the request then stays anonymous."""
    try:
        return user_id(request)
    except Exception:
        logger.exception("the %s user_id hook raised; request left anonymous", hook)
        return None


def request_properties_var(client: Client) -> Optional[ContextVar[Optional[RequestProperties]]]:
    """The variable ``Client.track`` reads a request's properties from, when it has one.

    ``track`` merges them into the event's ``default_properties``, under the caller's: a key in
    the call's ``properties`` or ``default_properties`` wins. Outside a request the variable
    holds None, which costs ``track`` one lookup.
    """
    var: Optional[ContextVar[Optional[RequestProperties]]] = getattr(
        client, "_request_properties", None
    )
    return var


def request_properties(
    url: str,
    pathname: str,
    referrer: Optional[str],
    user_agent: Optional[str],
    ip: Optional[str],
) -> dict[str, str]:
    """The properties a request adds to its events, as the web SDK names them.

    Headers the request did not send are left out rather than sent empty.
    """
    found = {"$current_url": url, "$pathname": pathname}
    if referrer:
        found["$referrer"] = referrer
    if user_agent:
        found["$user_agent"] = user_agent
    if ip:
        found["$ip"] = ip
    return found


def anonymous_id_cookie(name: str, value: str, *, secure: bool) -> str:
    """A ``Set-Cookie`` value keeping ``value`` in cookie ``name`` for a year.

    ``HttpOnly`` (page scripts cannot read or change it), ``SameSite=Lax`` (not sent on
    cross-site subrequests), ``Path=/``, and ``Secure`` when the request came over https.
    """
    cookie = (
        f"{name}={quote(value, safe=COOKIE_SAFE)}; Max-Age={ANONYMOUS_ID_COOKIE_MAX_AGE}; "
        "Path=/; HttpOnly; SameSite=Lax"
    )
    return cookie + "; Secure" if secure else cookie


def anonymous_id_to_keep(held: Optional[Held], came_with: Optional[str]) -> Optional[str]:
    """The anonymous id to write back to the browser when the response starts, or None.

    Only while the visitor is signed out (the request's identity is not identified), and only
    when the request did not come with that id already: a new visitor, a cookie that was not
    taken, a sign-out (``reset()`` made a new id).
    """
    if held is None:
        return None
    identity = held.identity if isinstance(held, SharedIdentity) else held
    if identity.identified or identity.anonymous_id == came_with:
        return None
    return identity.anonymous_id


class RequestOptions:
    """What every integration is told about its requests, checked once.

    - ``anonymous_id_cookie`` / ``anonymous_id_header`` / ``anonymous_id_validator``: see
      :class:`AnonymousIdSource`.
    - ``set_anonymous_id_cookie``: write the request's anonymous id to ``anonymous_id_cookie``
      while the visitor is signed out (see :func:`anonymous_id_cookie`).
    - ``user_id``: a function of the framework's request returning the signed-in user's id or
      None (see :func:`sign_in_request`).
    - ``request_properties``: add ``$current_url``, ``$pathname``, ``$referrer`` and
      ``$user_agent`` to the request's events; ``request_ip`` adds ``$ip`` too.
    """

    def __init__(
        self,
        cookie: Optional[str] = None,
        header: Optional[str] = None,
        anonymous_id_validator: Optional[AnonymousIdValidator] = None,
        *,
        set_anonymous_id_cookie: bool = False,
        user_id: Optional[Callable[[Any], Any]] = None,
        request_properties: bool = True,
        request_ip: bool = False,
    ) -> None:
        self.source = AnonymousIdSource(cookie, header, anonymous_id_validator)
        if set_anonymous_id_cookie and self.source.cookie is None:
            raise ConfigurationError(
                "set_anonymous_id_cookie needs anonymous_id_cookie, the name of the cookie to write"
            )
        if user_id is not None and not callable(user_id):
            raise ConfigurationError(
                "user_id must be a function of the request returning the signed-in user's id "
                f"or None, not {type(user_id).__name__}"
            )
        self.set_cookie = bool(set_anonymous_id_cookie)
        self.user_id = user_id
        self.properties = bool(request_properties)
        self.ip = bool(request_ip)

    def cookie_to_set(
        self, held: Optional[Held], came_with: Optional[str], secure: bool
    ) -> Optional[str]:
        """The ``Set-Cookie`` value for the response, or None (see :func:`anonymous_id_to_keep`)."""
        if not self.set_cookie or self.source.cookie is None:
            return None
        keep = anonymous_id_to_keep(held, came_with)
        if keep is None:
            return None
        return anonymous_id_cookie(self.source.cookie, keep, secure=secure)


AppT = TypeVar("AppT")


class RequestIdentityMiddleware(Generic[AppT]):
    """What the WSGI and ASGI middleware share: the client and what they do with each request.

    - ``client``: the :class:`~sankofa_sdk.Client` whose identity is scoped; by default the
      module-level client (``sankofa_sdk.init()``), looked up at each request. Without any
      client the request passes through untouched.
    - ``anonymous_id_cookie`` / ``anonymous_id_header``: where the browser keeps its anonymous
      id. When the request carries a usable one, the request's anonymous id is that id, so an
      ``identify(user)`` in the request sends the alias ``browser id → user``. Unusable values
      (empty, too long, whitespace, ids the engine would discard) are ignored.
    - ``anonymous_id_validator``: which values may be taken, by default only anonymous-looking
      ids (:func:`~sankofa_sdk.integrations.looks_like_anonymous_id`: a UUID, optionally
      ``anon_``/``$device:`` prefixed). The id is stitched to whoever signs in during the
      request, and the visitor chooses the cookie: accept only ids your front end generates,
      never a shape a known user's id can have.
    - ``set_anonymous_id_cookie`` (False): without a front-end SDK nothing sets that cookie, so
      every request starts as a new visitor and sign-in has nothing to stitch. True writes the
      request's anonymous id to ``anonymous_id_cookie`` while the visitor is signed out, when
      the request did not come with it (``HttpOnly; SameSite=Lax``, ``Secure`` over https, one
      year).
    - ``user_id`` (None): ``user_id(request)`` (the WSGI environ, the ASGI scope) returns the
      signed-in user's id or None, at the start of each request; the request's calls then use
      that id without sending anything, so only the sign-in request needs ``identify``. For
      ASGI it may be a coroutine function. When it raises, the error is logged and the request
      stays anonymous.
    - ``request_properties`` (True): events tracked in the request get ``$current_url``,
      ``$pathname``, ``$referrer`` and ``$user_agent`` in their ``default_properties``, as from
      the web SDK; what the call passes itself wins. ``request_ip`` (False) adds ``$ip``, the
      address the request came from (behind a proxy, let the server or a proxy-fix middleware
      set it from the forwarding header you trust).
    """

    def __init__(
        self,
        app: AppT,
        client: Optional[Client] = None,
        *,
        anonymous_id_cookie: Optional[str] = None,
        anonymous_id_header: Optional[str] = None,
        anonymous_id_validator: Optional[AnonymousIdValidator] = None,
        set_anonymous_id_cookie: bool = False,
        user_id: Optional[Callable[[Any], Any]] = None,
        request_properties: bool = True,
        request_ip: bool = False,
    ) -> None:
        self.app = app
        self.client = client
        self._options = RequestOptions(
            anonymous_id_cookie,
            anonymous_id_header,
            anonymous_id_validator,
            set_anonymous_id_cookie=set_anonymous_id_cookie,
            user_id=user_id,
            request_properties=request_properties,
            request_ip=request_ip,
        )
        self._source = self._options.source
