"""Sending encoded batches to ``POST /api/v1/batch`` and deciding what each answer means.

The policy is pure (``classify``, ``retry_after_seconds``) and separate from the I/O
(``Transport``), so it can be tested without a network. Status handling follows the spec's
section 17: 200/202 done; 429, 5xx and network errors retried with exponential backoff and full
jitter; 413 and 400 split to isolate; 401/403/404/405 are configuration errors.
"""

from __future__ import annotations

import enum
import gzip as gzip_module
import logging
import platform
import threading
import time
import uuid
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Callable, NamedTuple, Optional

import backoff
import requests
from requests.adapters import HTTPAdapter

from ._errors import DeliveryError
from ._operations import BATCH_PATH
from ._version import __version__

logger = logging.getLogger("sankofa_sdk")

USER_AGENT = f"sankofa-python/{__version__} (python {platform.python_version()})"


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    TOO_LARGE = "too_large"  # 413: split
    REJECTED = "rejected"  # 400: split to isolate the poison operation
    MISCONFIGURED = "misconfigured"  # 401/403/404/405 and other 4xx: do not retry
    ABANDONED = "abandoned"  # the shutdown deadline came first


class Verdict(NamedTuple):
    outcome: Outcome
    retry_after: Optional[float] = None


_RETRYABLE_4XX = frozenset({408, 425, 429})


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Parse a ``Retry-After`` header (seconds or an HTTP date); ``None`` when absent or unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def classify(status: int, headers: Mapping[str, str]) -> Verdict:
    """What to do with an HTTP answer to a batch."""
    if status in (200, 202):
        return Verdict(Outcome.DELIVERED)
    if status == 413:
        return Verdict(Outcome.TOO_LARGE)
    if status == 400:
        return Verdict(Outcome.REJECTED)
    if status in _RETRYABLE_4XX or status >= 500:
        return Verdict(Outcome.RETRY, retry_after_seconds(headers.get("Retry-After")))
    return Verdict(Outcome.MISCONFIGURED)


class Attempt(NamedTuple):
    """The final answer for one request body after its retries."""

    outcome: Outcome
    status: Optional[int]
    detail: str


class Transport:
    """Posts batch bodies with retries. One instance per client; used by one thread at a time."""

    def __init__(
        self,
        api_key: str,
        host: str,
        *,
        timeout: float,
        gzip: bool,
        verify: bool,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
        max_retry_time: float,
        sleep: Optional[Callable[[float], None]] = None,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Optional[Callable[[], None]] = None,
    ) -> None:
        self._api_key = api_key
        self.url = host.rstrip("/") + BATCH_PATH
        self._timeout = timeout
        self._gzip = gzip
        self._verify = verify
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_retry_time = max_retry_time
        self._interrupt = threading.Event()
        self._sleep = sleep if sleep is not None else self._interruptible_sleep
        self._clock = clock
        self._on_retry = on_retry
        self.deadline: Optional[float] = None
        """A ``clock()`` time after which no request is started and no wait goes on."""
        self._config_errors_logged: set[int] = set()
        self._session = self._new_session()

    def __repr__(self) -> str:
        return f"<Transport url={self.url!r}>"

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self._verify
        # Retries are ours (with backoff and the Idempotency-Key); urllib3 must not add its own.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # What Session.request would look up in the environment on every call (proxies,
        # REQUESTS_CA_BUNDLE...), looked up once: that lookup was a quarter of the CPU the
        # background thread spent per request. Environment changes after this are not seen.
        self._send_settings = session.merge_environment_settings(
            self.url, {}, False, self._verify, None
        )
        return session

    def _interruptible_sleep(self, seconds: float) -> None:
        # interrupt() wakes this early only so that a deadline set meanwhile is honoured.
        end = self._clock() + seconds
        while True:
            if self.deadline is not None:
                end = min(end, self.deadline)
            left = end - self._clock()
            if left <= 0:
                return
            if self._interrupt.wait(left):
                self._interrupt.clear()

    def interrupt(self) -> None:
        """Cut any backoff wait short (shutdown calls this after setting ``deadline``)."""
        self._interrupt.set()

    def reset_after_fork(self) -> None:
        # The parent's pooled sockets must not be shared with a forked child.
        self._interrupt = threading.Event()
        self._session = self._new_session()

    def close(self) -> None:
        self._session.close()

    def _remaining(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - self._clock()

    def _headers(self, idempotency_key: str) -> dict[str, str]:
        headers = {
            "x-api-key": self._api_key,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": idempotency_key,
        }
        if self._gzip:
            headers["Content-Encoding"] = "gzip"
        return headers

    def post(self, body: bytes) -> Attempt:
        """Send one batch body until it gets a final answer, retries run out or the deadline passes."""
        data = gzip_module.compress(body, compresslevel=6) if self._gzip else body
        headers = self._headers(uuid.uuid4().hex)
        request = requests.Request("POST", self.url, data=data, headers=headers).prepare()
        waits = backoff.expo(base=2, factor=self._backoff_base, max_value=self._backoff_max)
        waits.send(None)
        started = self._clock()
        retries = 0
        while True:
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return Attempt(Outcome.ABANDONED, None, "shutdown deadline passed before delivery")
            timeout = (
                self._timeout if remaining is None else max(0.05, min(self._timeout, remaining))
            )
            try:
                response = self._session.send(
                    request, timeout=timeout, allow_redirects=False, **self._send_settings
                )
            except (requests.RequestException, OSError) as exc:
                verdict, status, detail = Verdict(Outcome.RETRY), None, type(exc).__name__
            else:
                verdict = classify(response.status_code, response.headers)
                status, detail = response.status_code, response.text[:200]
            if verdict.outcome is not Outcome.RETRY:
                self._log_final(verdict.outcome, status, detail)
                return Attempt(verdict.outcome, status, detail)
            if retries >= self._max_retries:
                return Attempt(Outcome.RETRY, status, f"gave up after {retries} retries: {detail}")
            delay = verdict.retry_after
            if delay is None:
                delay = backoff.full_jitter(next(waits))
            if self._clock() - started + delay > self._max_retry_time:
                return Attempt(Outcome.RETRY, status, f"gave up: retry time exhausted: {detail}")
            retries += 1
            if self._on_retry is not None:
                self._on_retry()
            logger.debug(
                "batch answered %s (%s); retry %d in %.2fs", status, detail, retries, delay
            )
            if not self._wait(delay):
                return Attempt(Outcome.ABANDONED, status, "shutdown deadline passed during backoff")

    def _wait(self, delay: float) -> bool:
        """Wait ``delay`` seconds, or less if the deadline comes first. False if it did."""
        remaining = self._remaining()
        if remaining is not None and remaining <= delay:
            if remaining > 0:
                self._sleep(remaining)
            return False
        self._sleep(delay)
        return True

    def _log_final(self, outcome: Outcome, status: Optional[int], detail: str) -> None:
        if outcome is not Outcome.MISCONFIGURED or status is None:
            return
        if status in self._config_errors_logged:
            logger.debug("batch refused with %s again: %s", status, detail)
            return
        self._config_errors_logged.add(status)
        hint = {
            401: "no API key was sent",
            403: "the API key is not valid for this engine, or the IP/origin is not allowed",
            404: "the host does not serve /api/v1/batch; check the host option",
            405: "the host does not accept POST /api/v1/batch; check the host option",
        }.get(status, "the engine refused the request")
        if 300 <= status < 400:
            hint = "the host redirects; set the host option to the URL it redirects to"
        logger.error(
            "sankofa_sdk: the engine answered %s to %s (%s): %s. Operations are dropped and "
            "reported to on_error until this is fixed.",
            status,
            self.url,
            detail,
            hint,
        )


def delivery_error(attempt: Attempt) -> DeliveryError:
    """The error reported for operations whose request ended with ``attempt``."""
    reason = {
        Outcome.RETRY: "retries_exhausted",
        Outcome.TOO_LARGE: "too_large",
        Outcome.REJECTED: "rejected",
        Outcome.MISCONFIGURED: "unauthorized" if attempt.status in (401, 403) else "misconfigured",
        Outcome.ABANDONED: "shutdown",
    }.get(attempt.outcome, "failed")
    status = f"HTTP {attempt.status}" if attempt.status is not None else "no answer"
    message = f"not delivered ({status}): {attempt.detail}"
    return DeliveryError(message, reason=reason, status=attempt.status)
