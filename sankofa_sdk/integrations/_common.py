"""What the middleware of every framework shares: which client, and the anonymous id to seed."""

from __future__ import annotations

from typing import Callable, Optional
from urllib.parse import unquote

from .._client import Client
from .._default import get_client
from .._log import logger
from .._operations import is_garbage_id

MAX_ANONYMOUS_ID_LENGTH = 200
"""A longer value in a cookie or header is not taken as an anonymous id."""


def resolve_client(client: Optional[Client]) -> Optional[Client]:
    """The given client, else the module-level one (``sankofa_sdk.init()`` or the environment).

    Resolved per request, so ``sankofa_sdk.init()`` may run after the middleware was built.
    """
    return client if client is not None else get_client()


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

    The header is read first (a front end that sends it on purpose), then the cookie.
    """

    def __init__(self, cookie: Optional[str] = None, header: Optional[str] = None) -> None:
        for what, value in (("anonymous_id_cookie", cookie), ("anonymous_id_header", header)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{what} must be a non-empty string or None")
        self.cookie = cookie.strip() if cookie else None
        self.header = header.strip() if header else None

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
            found = clean_anonymous_id(get_header(self.header))
            if found is not None:
                return found
        if self.cookie is not None:
            if get_cookie is not None:
                raw = get_cookie(self.cookie)
            else:
                header = get_header("cookie")
                raw = None if header is None else cookie_value(header, self.cookie)
            return clean_anonymous_id(raw)
        return None
