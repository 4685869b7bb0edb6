"""What the middleware of every framework shares: the client, the anonymous id, the identity.

Only this module reaches into the client's identity store (``client._identity``), to open a
request's shared identity (see :mod:`sankofa_sdk._identity`) and carry it into a response body.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Callable, Generic, Optional, TypeVar
from urllib.parse import unquote

from .. import _default
from .._client import Client
from .._default import get_client
from .._errors import ConfigurationError
from .._identity import Held, IdentityScope
from .._log import ThrottledWarning, logger
from .._operations import is_garbage_id

MAX_ANONYMOUS_ID_LENGTH = 200
"""A longer value in a cookie or header is not taken as an anonymous id."""

AnonymousIdValidator = Callable[[str], object]
"""``validator(value)``: truthy when ``value`` may be taken as a request's anonymous id."""

_ANONYMOUS_ID = re.compile(
    r"(?:anon_|\$device:)?"
    r"(?i:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
    re.ASCII,
)
_warnings = ThrottledWarning(interval=60.0)


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
        logger.debug("sankofa_sdk: ignoring an unusable anonymous id from the request")
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
            _warnings.warn(
                "validator",
                "sankofa_sdk: anonymous_id_validator raised %r; the request's id was ignored",
                exc,
            )
            return None
        if not accepted:
            logger.debug("sankofa_sdk: ignoring an anonymous id the validator refused")
            return None
        return value


AppT = TypeVar("AppT")


class RequestIdentityMiddleware(Generic[AppT]):
    """What the WSGI and ASGI middleware share: the client and where the anonymous id comes from.

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
    """

    def __init__(
        self,
        app: AppT,
        client: Optional[Client] = None,
        *,
        anonymous_id_cookie: Optional[str] = None,
        anonymous_id_header: Optional[str] = None,
        anonymous_id_validator: Optional[AnonymousIdValidator] = None,
    ) -> None:
        self.app = app
        self.client = client
        self._source = AnonymousIdSource(
            anonymous_id_cookie, anonymous_id_header, anonymous_id_validator
        )
