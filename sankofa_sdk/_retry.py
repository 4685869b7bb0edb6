"""How long to wait after a failed attempt, and when to give up. Pure: no clock, no I/O.

Modelled on urllib3's ``Retry``: one immutable object, each method a function of what happened
so far, so the whole policy can be checked with a table of cases.

Three kinds of failure are told apart because they mean different things:

- a *reset* (connection refused or dropped, DNS): usually a blip, so the first retry goes
  almost at once (``reset_wait``), later ones back off like any other failure;
- a *timeout* or a *server error* (5xx, 408, 425): exponential backoff with full jitter;
- a *429* is not a failure of the batch at all: the request budget is spent. The pacer decides
  when to send again and the batch keeps its retries (see ``_pacer``); only ``Retry-After``
  parsing lives here.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from email.utils import parsedate_to_datetime
from typing import Optional

from ._errors import ConfigurationError


class Failure(enum.Enum):
    RESET = "reset"
    TIMEOUT = "timeout"
    SERVER = "server"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Retry settings for transient failures; validated on construction."""

    max_retries: int = 10
    """Retries of one batch after transient failures (not counting 429s)."""
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_time: float = 300.0
    """Give a batch up when its next retry would start this long after its first failure."""
    max_retry_after: float = 60.0
    """A longer (or far-future) ``Retry-After`` waits this long instead."""
    reset_wait: float = 0.05
    """The first wait after a reset connection."""

    def __post_init__(self) -> None:
        problems = []
        retries = self.max_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            problems.append("max_retries must be a whole number >= 0")
        for name in ("backoff_base", "backoff_max", "max_retry_time", "max_retry_after"):
            value = getattr(self, name)
            if not _positive(value):
                problems.append(f"{name} must be a number of seconds > 0")
            elif value > 86_400 * 365:
                problems.append(f"{name} must be at most a year")
        if not (_positive(self.reset_wait) or self.reset_wait == 0):
            problems.append("reset_wait must be a number of seconds >= 0")
        if not problems and self.backoff_max < self.backoff_base:
            problems.append("backoff_max must be >= backoff_base")
        if problems:
            raise ConfigurationError("; ".join(problems))

    def wait(self, failure: Failure, retries: int, jitter: float) -> float:
        """Seconds before retry number ``retries`` (1 for the first) after ``failure``.

        ``jitter`` is a random number in [0, 1): full jitter, so a fleet that failed together
        does not come back together.
        """
        if failure is Failure.RESET and retries == 1:
            return self.reset_wait * (0.5 + jitter / 2)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(retries - 1, 60))
        return ceiling * jitter

    def gives_up(self, retries: int, since_first_failure: float, next_wait: float) -> bool:
        """True when retry number ``retries`` should not happen."""
        return retries > self.max_retries or since_first_failure + next_wait > self.max_retry_time

    def retry_after(self, value: Optional[str], now: Optional[float] = None) -> Optional[float]:
        """``Retry-After`` in seconds (a number or an HTTP date), capped; None if absent or bad."""
        seconds = parse_retry_after(value, now)
        return None if seconds is None else min(seconds, self.max_retry_after)


def _positive(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Parse ``Retry-After`` (delta seconds or an HTTP date) into seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = when - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)
