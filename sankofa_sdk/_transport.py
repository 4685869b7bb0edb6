"""One request to ``POST /api/v1/batch``, bounded in time and in what it reads. Nothing more.

Retries, pacing and splitting are the worker's, decided by pure policies; the transport sends a
body once and says what happened (an :class:`Answer`). Two bounds hold whatever the server does:

- **a wall-clock deadline.** ``timeout`` bounds the whole request, not each socket read: a
  watchdog shuts the connection's socket down when the deadline passes, so a server that drips
  one byte a second cannot hold the delivery thread. ``abort()`` does the same on demand (a
  shutdown that ran out of time).
- **a small read.** At most ``MAX_ANSWER_BYTES`` of the answer are read; the engine's answers
  are under 300 bytes, and a huge one must not cost the app its memory.
"""

from __future__ import annotations

import platform
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError

from ._answers import Answer
from ._operations import BATCH_PATH
from ._options import Options
from ._retry import Failure
from ._version import __version__

USER_AGENT = f"sankofa-python/{__version__} (python {platform.python_version()})"
MAX_ANSWER_BYTES = 64 * 1024
_KEPT_HEADERS = ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class _ActiveConnection:
    """The connection a request is using right now, so another thread can cut it."""

    def __init__(self) -> None:
        self.connection: Any = None

    def cut(self) -> bool:
        connection = self.connection
        sock = getattr(connection, "sock", None)
        if sock is None:
            return False
        try:
            # The plain socket's shutdown, also for TLS: it wakes a blocked read in the other
            # thread without tearing the TLS object down under it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            return False
        return True


def _tracking_pools(active: _ActiveConnection) -> dict[str, type]:
    """Connection pool classes that note which connection a request takes out."""

    def get_conn(pool: Any, timeout: Optional[float] = None) -> Any:
        connection = HTTPConnectionPool._get_conn(pool, timeout)  # HTTPS pools inherit it
        active.connection = connection
        return connection

    return {
        "http": type("TrackedHTTPPool", (HTTPConnectionPool,), {"_get_conn": get_conn}),
        "https": type("TrackedHTTPSPool", (HTTPSConnectionPool,), {"_get_conn": get_conn}),
    }


class HttpTransport:
    """Sends one body at a time over HTTP (``requests``' adapter). One instance per client; used by
    one thread at a time. Implements ``_delivery.transport.Transport``."""

    def __init__(
        self,
        api_key: str,
        host: str,
        options: Options,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self.url = host.rstrip("/") + BATCH_PATH
        self._options = options
        self._clock = clock
        self._active = _ActiveConnection()
        self._aborted = threading.Event()
        self._session = self._new_session()

    def __repr__(self) -> str:
        return f"<HttpTransport url={self.url!r}>"

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self._options.verify
        # Retries are ours (with backoff and the Idempotency-Key); urllib3 must not add its own.
        self._adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
        self._adapter.poolmanager.pool_classes_by_scheme = _tracking_pools(self._active)
        session.mount("http://", self._adapter)
        session.mount("https://", self._adapter)
        # What Session.request would look up in the environment on every call (proxies,
        # REQUESTS_CA_BUNDLE...), looked up once. Environment changes after this are not seen.
        proxies = dict(self._options.proxies) if self._options.proxies is not None else {}
        settings = session.merge_environment_settings(
            self.url, proxies, True, self._options.verify, None
        )
        self._verify: Any = settings["verify"]  # a bool, or a path to CA certificates
        self._cert: Any = settings["cert"]
        self._proxies: dict[str, str] = dict(settings["proxies"] or {})
        # The URL is the same for every request: parsed and quoted once. Each request is this
        # one with its own headers and body, sent by the adapter itself: Session.send adds
        # hooks, cookies and redirect handling this client has no use for, and its code and
        # Request.prepare were most of what a request cost in Python (about 0.4 ms of 0.7).
        self._template = requests.Request("POST", self.url).prepare()
        return session

    def reset_after_fork(self) -> None:
        # The parent's pooled sockets must not be shared with a forked child.
        self._active = _ActiveConnection()
        self._aborted = threading.Event()
        self._session = self._new_session()

    def close(self) -> None:
        self._session.close()

    def abort(self) -> None:
        """End the request in progress now, from any thread (it returns a TIMEOUT failure)."""
        self._aborted.set()
        self._active.cut()

    def send(
        self, data: bytes, gzipped: bool, idempotency_key: str, time_left: Optional[float] = None
    ) -> Answer:
        """POST ``data`` once; never raises. ``time_left`` (seconds) caps ``timeout``."""
        budget = self._options.timeout
        if time_left is not None:
            budget = min(budget, time_left)
            if budget <= 0:
                said = "no time left before the deadline"
                return Answer(None, {}, b"", Failure.TIMEOUT, said, reached=False)
        headers = {
            "x-api-key": self._api_key,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": idempotency_key,
            # The answer is read up to a cap; a compressed one would be inflated whole first by
            # older urllib3 versions.
            "Accept-Encoding": "identity",
        }
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        self._aborted.clear()
        try:
            return self._post(data, headers, budget)
        except BaseException as exc:  # even a thread refused at exit: an answer, never a raise
            return Answer(None, {}, b"", Failure.RESET, _describe(exc, self._api_key))
        finally:
            self._active.connection = None

    def _post(self, data: bytes, headers: dict[str, str], budget: float) -> Answer:
        started = self._clock()
        try:
            request = self._template.copy()
            request.body = data
            # Content-Length given: without it the adapter would send the body chunked.
            request.headers = CaseInsensitiveDict(headers, **{"Content-Length": str(len(data))})
            # The adapter follows no redirects: a 3xx is an answer, as it was with
            # allow_redirects=False.
            response = self._adapter.send(
                request,
                stream=True,  # the answer is read by hand, up to a cap
                timeout=max(0.01, budget),
                verify=self._verify,
                cert=self._cert,
                proxies=self._proxies,
            )
            try:
                body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True) or b""
            finally:
                _release(response)
        except Exception as exc:  # requests, urllib3, ssl and socket errors all end up here
            reached = not _never_reached(exc)
            timed_out = self._aborted.is_set() or self._clock() - started >= budget
            if timed_out or isinstance(exc, requests.Timeout):
                said = f"timed out after {budget:.3g}s"
                return Answer(None, {}, b"", Failure.TIMEOUT, said, reached=reached)
            detail = _describe(exc, self._api_key)
            return Answer(None, {}, b"", Failure.RESET, detail, reached=reached)
        kept = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
        text = body[:200].decode("utf-8", "replace")
        return Answer(response.status_code, kept, body[:MAX_ANSWER_BYTES], None, text)


def _release(response: requests.Response) -> None:
    raw = response.raw
    # A fully read answer gives its connection back for the next request (keep-alive); one
    # longer than the cap closes it instead of reading the rest.
    if getattr(raw, "closed", False) or _fully_read(raw):
        release = getattr(raw, "release_conn", None)
        if release is not None:
            release()
    else:
        raw.close()


def _fully_read(raw: Any) -> bool:
    try:
        return bool(raw.isclosed()) or raw.length_remaining == 0
    except Exception:
        return False


def _describe(exc: BaseException, api_key: str) -> str:
    """The error in a few words, never with the key (an exception may quote a header): the
    operating system's own error when there is one ("[Errno 111] Connection refused"), which
    requests and urllib3 bury under their wrappers."""
    root = _os_error(exc)
    text = f"{type(root).__name__}: {root}" if root is not None else f"{type(exc).__name__}: {exc}"
    if api_key:
        text = text.replace(api_key, "<api key>")
    return text[:300]


def _os_error(exc: BaseException) -> Optional[BaseException]:
    """The innermost ``OSError`` under ``exc`` (causes, contexts, urllib3's ``reason``, args)."""
    found: Optional[BaseException] = None
    for current in _under(exc):
        if isinstance(current, OSError) and type(current).__module__ == "builtins":
            found = current  # a plain OSError (ConnectionRefusedError, socket.gaierror...)
        elif isinstance(current, OSError) and current.errno is not None:
            found = current
    return found


def _never_reached(exc: BaseException) -> bool:
    """True when the request cannot have reached the engine: no connection was made (refused,
    unresolvable name, connect timeout). Anything later may have delivered the body."""
    return any(
        isinstance(current, (ConnectTimeoutError, ConnectionRefusedError, socket.gaierror))
        for current in _under(exc)
    )


def _under(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (causes, contexts, urllib3's ``reason``, args), at most 20."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen or len(seen) > 20:
            continue
        seen.add(id(current))
        yield current
        pending.extend(
            [
                current.__cause__,
                current.__context__,
                getattr(current, "reason", None),
                *current.args,
            ]
        )
