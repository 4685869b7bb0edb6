"""The SDK's logger, and a throttle so a bug in a hot loop cannot flood the app's logs."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

logger = logging.getLogger("sankofa_sdk")


class ThrottledWarning:
    """Logs a message at most once per ``interval`` seconds per key, counting what it held back."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(
        self,
        key: str,
        message: str,
        *args: Any,
        level: int = logging.WARNING,
        interval: Optional[float] = None,
    ) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(key, 0.0):
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._next[key] = now + (self._interval if interval is None else interval)
            held = self._held.pop(key, 0)
        if held:
            message += " (%d similar messages suppressed)"
            args = (*args, held)
        logger.log(level, message, *args)
