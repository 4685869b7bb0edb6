"""What an answer to ``POST /api/v1/batch`` means (spec sections 9, 10 and 17). Pure.

``Answer`` is what the transport saw: a status with a few headers and the start of the body,
or the kind of network failure. ``classify`` turns it into a ``Verdict`` the worker acts on.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import NamedTuple, Optional

from ._retry import Failure


class Answer(NamedTuple):
    """One request's result as the transport saw it."""

    status: Optional[int]
    """None when no HTTP answer came (``failure`` says why)."""
    headers: Mapping[str, str]
    body: bytes
    """At most the transport's read cap; enough for every answer the engine gives."""
    failure: Optional[Failure] = None
    detail: str = ""
    """A short description for logs and ``on_error``: the error text or the start of the body."""
    reached: bool = True
    """False only when the request surely never reached the engine (the connection was
    refused, the name did not resolve): then the engine cannot have stored any of it."""


def maybe_applied(answer: Answer) -> bool:
    """Whether the engine may have stored what a failed attempt carried: it never answered
    after the request left (a timeout, a reset, a cut), or answered 5xx (a 503 for a full
    buffer keeps what it had already taken)."""
    if answer.status is None:
        return answer.reached
    return answer.status >= 500


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RATE_LIMITED = "rate_limited"  # 429: wait, then send again (bigger); not a failure
    QUOTA_EXCEEDED = "quota_exceeded"  # 429 for a spent plan quota: retrying cannot help
    RETRY = "retry"  # 5xx, 408, 425, timeout, reset: back off and resend the same body
    TOO_LARGE = "too_large"  # 413: split
    REJECTED = "rejected"  # 400: split to isolate the poison operation
    MISCONFIGURED = "misconfigured"  # 401/403/404/405 and other 4xx, 3xx: never retried


_RETRYABLE_4XX = frozenset({408, 425})


def classify(answer: Answer) -> Verdict:
    status = answer.status
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 429:
        # The hosted engine's monthly quota answers 429 with a quota_exceeded body; the request
        # budget's 429 has the limiter's fixed body.
        if b"quota_exceeded" in answer.body.lower():
            return Verdict.QUOTA_EXCEEDED
        return Verdict.RATE_LIMITED
    if status == 413:
        return Verdict.TOO_LARGE
    if status == 400:
        return Verdict.REJECTED
    if status in _RETRYABLE_4XX or status >= 500:
        return Verdict.RETRY
    return Verdict.MISCONFIGURED


def failure_of(answer: Answer) -> Failure:
    """The kind of transient failure, for the retry policy."""
    return answer.failure if answer.failure is not None else Failure.SERVER


def skipped_operations(answer: Answer, sent: int) -> int:
    """How many of ``sent`` operations a 2xx answer says the engine discarded (garbage ids).

    A 200 counts what it accepted per kind; ``operations_received`` minus those is what it
    skipped. A 202 ``{"status":"discarded_all"}`` skipped everything. Any other body (other
    keys, another shape, not JSON, nested too deep to read) counts as none, and never raises:
    the batch was delivered either way.
    """
    if answer.status != 200 and answer.status != 202:
        return 0
    try:
        body = json.loads(answer.body)
        if answer.status == 202:
            return sent if body["status"] == "discarded_all" else 0
        accepted = sum(
            int(body[key]) for key in ("aliases_received", "people_received", "events_received")
        )
        received = int(body["operations_received"])
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        return 0
    return max(0, min(sent, received - accepted))
