"""The engine's rate limiter: a fixed window per key value (spec section 10)."""

from __future__ import annotations

import threading
import time
from typing import Callable, NamedTuple, Optional


class Verdict(NamedTuple):
    allowed: bool
    headers: tuple[tuple[str, str], ...]


class FixedWindowLimiter:
    """``limit`` requests per ``window`` seconds, the window starting at a key's first request.

    Like Fiber's fixed-window limiter, time has whole-second resolution, a request over the
    limit gets only ``Retry-After`` and every other one gets the ``X-RateLimit-*`` headers.
    """

    def __init__(
        self,
        limit: int = 500,
        window: int = 60,
        clock: Callable[[], float] = time.time,
        *,
        headers: bool = True,
    ) -> None:
        if limit < 1 or window < 1:
            raise ValueError("rate limit and window must be positive")
        self.limit = limit
        self.window = window
        self.headers = headers
        """False answers like the hosted engine, whose docs promise no rate-limit headers and
        no Retry-After: a 429 is all a client learns."""
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list[int]] = {}  # key -> [window end, hits]

    def clear(self) -> None:
        """Forget every window: each key's next request starts a new one."""
        with self._lock:
            self._buckets = {}

    def hit(self, api_key: Optional[str], peer_ip: str) -> Verdict:
        key = f"apikey:{api_key}" if api_key else f"ip:{peer_ip}"
        now = int(self._clock())
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or now >= bucket[0]:
                if len(self._buckets) > 100_000:  # forget windows that ended
                    self._buckets = {k: b for k, b in self._buckets.items() if b[0] > now}
                bucket = self._buckets[key] = [now + self.window, 0]
            bucket[1] += 1
            reset_in = bucket[0] - now
            remaining = self.limit - bucket[1]
        if not self.headers:
            return Verdict(remaining >= 0, ())
        if remaining < 0:
            return Verdict(False, (("Retry-After", str(reset_in)),))
        return Verdict(
            True,
            (
                ("X-RateLimit-Limit", str(self.limit)),
                ("X-RateLimit-Remaining", str(remaining)),
                ("X-RateLimit-Reset", str(reset_in)),
            ),
        )
