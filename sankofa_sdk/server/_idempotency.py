"""Decision D4: a repeated ``Idempotency-Key`` gets the original answer and is not applied twice.

Keys are scoped to the API key's project and environment. Only answers that describe what was
done with the body (200, 202, 400) are remembered; a 401, 429 or 503 changed nothing, so a
retry after one of them is processed afresh. While a first request with a key is being
handled, a concurrent one with the same key waits for it and then gets its answer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Optional

from ._responses import Response

REPLAYABLE_STATUSES = frozenset({200, 202, 400})
MAX_KEY_LENGTH = 255


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
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str], tuple[Response, float]] = OrderedDict()
        self._in_flight: dict[tuple[str, str], threading.Event] = {}

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
