"""Counters behind ``Client.stats()``: nothing is dropped without being counted by reason."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

# Reasons for operations that were never accepted (the call returned without queueing).
NOT_ACCEPTED = frozenset({"invalid", "queue_full", "closed"})


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

    def add_not_sent(self, count: int = 1) -> None:
        with self._lock:
            self.not_sent += count

    def snapshot(self, *, accepted: int, queued: int) -> dict[str, Any]:
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
                "dropped": dict(self.dropped),
            }
