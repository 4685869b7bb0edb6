"""Fault injection: make the reference server fail the way real networks and engines do.

Faults apply to ingestion requests (``/api/v1/...``) only; ``/health`` and the read API keep
working so a test can always look at what arrived.
"""

from __future__ import annotations

import random
import threading
import time
from typing import NamedTuple, Optional

from . import _responses
from ._responses import Response

RESET = "reset"


class Fault(NamedTuple):
    """What to do to one request: answer with ``response``, or reset the connection."""

    response: Optional[Response]
    reset: bool = False


def failure(status: int, retry_after: Optional[float] = None) -> Response:
    """The answer an injected failure gives, in the engine's shape for that status."""
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None:
        headers = (
            (
                "Retry-After",
                str(int(retry_after)) if retry_after == int(retry_after) else str(retry_after),
            ),
        )
    if status == 503:
        return _responses.BUFFER_FULL._replace(headers=headers)
    if status == 429:
        return Response(429, _responses.RATE_LIMITED_BODY, _responses.JSON, headers)
    return _responses.error(status, "injected fault")._replace(headers=headers)


class Faults:
    """Thread-safe switches a test flips; every method returns at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Back to normal service."""
        with self._lock:
            self._fail_next: list[Response] = []
            self._fail_until = 0.0
            self._fail_until_response: Optional[Response] = None
            self._latency = 0.0
            self._latency_left: Optional[int] = None
            self._resets_left = 0
            self._flaky: Optional[tuple[float, float, Response, random.Random]] = None
            self.buffer_is_full = False
            self.injected = 0

    def fail_next(self, n: int = 1, status: int = 503, retry_after: Optional[float] = None) -> None:
        """Answer the next ``n`` ingestion requests with ``status`` (500, 503, 429...)."""
        with self._lock:
            self._fail_next.extend([failure(status, retry_after)] * n)

    def fail_for(
        self, seconds: float, status: int = 503, retry_after: Optional[float] = None
    ) -> None:
        """Answer every ingestion request with ``status`` for ``seconds`` from now."""
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._fail_until_response = failure(status, retry_after)

    def add_latency(self, seconds: float, n: Optional[int] = None) -> None:
        """Wait ``seconds`` before handling each of the next ``n`` requests (all when None)."""
        with self._lock:
            self._latency, self._latency_left = seconds, n

    def reset_connections(self, n: int = 1) -> None:
        """Read the next ``n`` requests, then drop their connections without an answer."""
        with self._lock:
            self._resets_left += n

    def flaky(
        self,
        reset_share: float = 0.1,
        error_share: float = 0.1,
        seed: Optional[int] = None,
        status: int = 500,
    ) -> None:
        """From now on, reset a share of requests after reading them and fail another share."""
        if not (0 <= reset_share <= 1 and 0 <= error_share <= 1 and reset_share + error_share <= 1):
            raise ValueError("shares must be between 0 and 1 and add up to at most 1")
        with self._lock:
            self._flaky = (reset_share, error_share, failure(status), random.Random(seed))

    def buffer_full(self, full: bool = True) -> None:
        """Make every request with items answer 503 ``Buffer full``, as a full engine does."""
        with self._lock:
            self.buffer_is_full = full

    def latency(self) -> float:
        """Seconds to wait before handling the current request (counts it against ``n``)."""
        with self._lock:
            if not self._latency or self._latency_left == 0:
                return 0.0
            if self._latency_left is not None:
                self._latency_left -= 1
            return self._latency

    def pick(self) -> Optional[Fault]:
        """The fault for the current request, if any (counts it)."""
        with self._lock:
            fault = self._pick()
            if fault is not None:
                self.injected += 1
            return fault

    def _pick(self) -> Optional[Fault]:
        if self._fail_next:
            return Fault(self._fail_next.pop(0))
        if self._resets_left:
            self._resets_left -= 1
            return Fault(None, reset=True)
        if self._fail_until_response is not None and time.monotonic() < self._fail_until:
            return Fault(self._fail_until_response)
        if self._flaky is not None:
            reset_share, error_share, response, rng = self._flaky
            roll = rng.random()
            if roll < reset_share:
                return Fault(None, reset=True)
            if roll < reset_share + error_share:
                return Fault(response)
        return None
