"""Decision D4: a repeated ``Idempotency-Key`` gets the original answer and is not applied twice.

Keys are scoped to the API key's project and environment. Only answers that describe what was
done with the body (200, 202, 400) are remembered; a 401, 429 or 503 changed nothing, so a
retry after one of them is processed afresh. While a first request with a key is being
handled, a concurrent one with the same key waits for it and then gets its answer.

Whether or not the server deduplicates (``ReferenceServer(deduplicate=False)`` applies every
request, as the engine does), :meth:`IdempotencyCache.note` counts the requests whose key was
seen before, so a test can count resends.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Optional

from ._responses import Response

REPLAYABLE_STATUSES = frozenset({200, 202, 400})
MAX_KEY_LENGTH = 255
MAX_SEEN_KEYS = 200_000
"""How many distinct keys :meth:`IdempotencyCache.note` remembers (the least recent go first)."""


class IdempotencyCache:
    def __init__(
        self,
        window: float = 600.0,
        max_entries: int = 200_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window = window
        self.max_entries = max_entries
        self.replays = 0
        self.repeated = 0
        """Requests whose key an earlier request in the same scope carried (see :meth:`note`)."""
        self.repeated_after_success = 0
        """Of those, the ones whose key an earlier request had been answered 2xx for: a batch
        sent again after the engine took it (its answer lost, or the client's bookkeeping)."""
        self._succeeded: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str], tuple[Response, float]] = OrderedDict()
        self._in_flight: dict[tuple[str, str], threading.Event] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def note(self, scope: str, key: str) -> bool:
        """Note a request carrying ``key``; True (and counted) when the key was seen before.

        Any answer counts (a resend after an injected 503 too); no time window applies, only
        the bound of :data:`MAX_SEEN_KEYS` distinct keys.
        """
        entry = (scope, key)
        with self._lock:
            if entry in self._seen:
                self._seen.move_to_end(entry)
                self.repeated += 1
                if entry in self._succeeded:
                    self.repeated_after_success += 1
                return True
            self._seen[entry] = None
            if len(self._seen) > MAX_SEEN_KEYS:
                self._seen.popitem(last=False)
            return False

    def succeeded(self, scope: str, key: str) -> None:
        """A request carrying ``key`` was answered 2xx (see ``repeated_after_success``)."""
        entry = (scope, key)
        with self._lock:
            self._succeeded[entry] = None
            self._succeeded.move_to_end(entry)
            if len(self._succeeded) > MAX_SEEN_KEYS:
                self._succeeded.popitem(last=False)

    def remember(self, scope: str, key: str, response: Response, created: float) -> None:
        with self._lock:
            self._store((scope, key), response, created)

    def _store(self, entry: tuple[str, str], response: Response, created: float) -> None:
        self._answers[entry] = (response, created)
        self._answers.move_to_end(entry)
        while len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)

    def claim(self, scope: str, key: str, wait: float = 30.0) -> Optional[Response]:
        """The remembered answer for ``key``, or None when the caller now owns the key.

        An owner must call :meth:`release` with its answer.
        """
        entry = (scope, key)
        while True:
            with self._lock:
                now = self._clock()
                while self._answers:  # drop what left the window (oldest first)
                    oldest, (_, created) = next(iter(self._answers.items()))
                    if created >= now - self.window:
                        break
                    del self._answers[oldest]
                remembered = self._answers.get(entry)
                if remembered is not None:
                    self.replays += 1
                    return remembered[0]
                busy = self._in_flight.get(entry)
                if busy is None:
                    self._in_flight[entry] = threading.Event()
                    return None
            if not busy.wait(wait):
                return None  # the first one is stuck; handle this one on its own

    def release(self, scope: str, key: str, response: Optional[Response]) -> Optional[float]:
        """Finish an owned key; returns the time the answer is remembered from, if it is."""
        entry = (scope, key)
        created: Optional[float] = None
        with self._lock:
            if response is not None and response.status in REPLAYABLE_STATUSES:
                created = self._clock()
                self._store(entry, response, created)
            event = self._in_flight.pop(entry, None)
        if event is not None:
            event.set()
        return created
