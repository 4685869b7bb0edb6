"""Counters behind ``Client.stats()``: nothing is dropped without being counted by reason."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TypedDict

# Reasons for operations that were never accepted (the call returned without queueing).
NOT_ACCEPTED = frozenset({"invalid", "queue_full", "closed", "before_send"})


class ClientStats(TypedDict):
    """What ``Client.stats()`` returns."""

    accepted: int
    """Calls taken (queued, in memory or in the spool), since the client was made."""
    queued: int
    """Accepted and not finished yet: queued, in a request, or waiting for a retry."""
    delivered: int
    """Operations the engine answered 2xx for."""
    retried: int
    """Requests sent again after a transient failure (5xx, timeout, reset)."""
    rate_limited: int
    """Requests answered 429 (they go again; not a failure)."""
    skipped: int
    """Operations the engine accepted but discarded (ids it treats as garbage)."""
    spool_errors: int
    """Times the spool could not be written (the client then carries on in memory)."""
    left_in_spool: int
    """At shutdown: operations left on disk for the next client on the same ``spool_dir``."""
    failed: int
    """Accepted, then given up on and reported (``on_error``): the sum of those ``dropped``
    reasons that are not refusals at the call."""
    not_sent: int
    """Calls accepted with ``send=False``."""
    unknown_fate: int
    """Operations sent without an answer before shutdown ended (a request cut in flight, or
    a retry that never came after a timeout or a 5xx): the engine may have stored them.
    Reported to ``on_error`` with reason ``"unknown_fate"`` and the batch's Idempotency-Key;
    not counted in ``dropped`` or ``failed``, because replaying them may duplicate."""
    dropped: dict[str, int]
    """Operations not delivered, by reason (``invalid``, ``queue_full``, ``shutdown``, ...)."""


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start from zero; also used in a forked child, whose parent may have held the lock."""
        self._lock = threading.Lock()
        self.delivered = 0
        self.retried = 0
        self.rate_limited = 0
        self.skipped = 0
        self.spool_errors = 0
        self.left_in_spool = 0
        self.not_sent = 0
        self.unknown_fate = 0
        self.dropped: Counter[str] = Counter()

    def add_delivered(self, count: int) -> None:
        with self._lock:
            self.delivered += count

    def add_retry(self) -> None:
        with self._lock:
            self.retried += 1

    def add_rate_limited(self) -> None:
        with self._lock:
            self.rate_limited += 1

    def add_spool_error(self) -> None:
        with self._lock:
            self.spool_errors += 1

    def set_left_in_spool(self, count: int) -> None:
        with self._lock:
            self.left_in_spool = count

    def add_skipped(self, count: int) -> None:
        with self._lock:
            self.skipped += count

    def add_dropped(self, reason: str, count: int = 1) -> int:
        """Count ``count`` more drops for ``reason``; returns the total for that reason."""
        with self._lock:
            self.dropped[reason] += count
            return self.dropped[reason]

    def add_unknown_fate(self, count: int) -> None:
        with self._lock:
            self.unknown_fate += count

    def add_not_sent(self, count: int = 1) -> None:
        with self._lock:
            self.not_sent += count

    def snapshot(self, *, accepted: int, queued: int) -> ClientStats:
        with self._lock:
            failed = sum(n for reason, n in self.dropped.items() if reason not in NOT_ACCEPTED)
            return {
                "accepted": accepted,
                "queued": queued,
                "delivered": self.delivered,
                "retried": self.retried,
                "rate_limited": self.rate_limited,
                "skipped": self.skipped,
                "spool_errors": self.spool_errors,
                "left_in_spool": self.left_in_spool,
                "failed": failed,
                "not_sent": self.not_sent,
                "unknown_fate": self.unknown_fate,
                "dropped": dict(self.dropped),
            }
