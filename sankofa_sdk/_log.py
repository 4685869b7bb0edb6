"""The SDK's logger, a throttle so a bug in a hot loop cannot flood the app's logs, and the
``debug=True`` switch.

Nothing here is set on the process for good: each client has its own throttles, and ``debug``
lowers the ``sankofa_sdk`` logger's level only while a client that asked for it is running.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Optional

__all__ = ["ThrottledWarning", "debug_off", "debug_on", "logger"]

logger = logging.getLogger("sankofa_sdk")


def _handled() -> bool:
    """Whether a handler of the app's will see this logger's records (as logging looks)."""
    current: Optional[logging.Logger] = logger
    while current is not None:
        if current.handlers:
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


class _NamedWhenUnhandled(logging.Filter):
    """Messages carry no "sankofa_sdk:" of their own (the app's log format names the logger).
    When the app configured no logging, Python prints a warning as the bare message
    (``logging.lastResort``): then the message says where it comes from."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _handled():
            record.msg = f"sankofa_sdk: {record.msg}"
        return True


logger.addFilter(_NamedWhenUnhandled())


class ThrottledWarning:
    """Logs a message at most once per ``interval`` seconds per key, counting what it held back.

    The next message of a key that gets through says how many were held back since the last.
    Its lock is made anew in a forked child (another thread of the parent may have held it).
    """

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}
        _live_throttles.add(self)

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

    def held(self) -> dict[str, int]:
        """How many messages of each key were held back and not yet counted in a message."""
        with self._lock:
            return dict(self._held)

    def reset(self) -> None:
        """Forget what was logged: the next message of every key gets through."""
        with self._lock:
            self._next.clear()
            self._held.clear()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


_live_throttles: weakref.WeakSet[ThrottledWarning] = weakref.WeakSet()


# --- debug=True ------------------------------------------------------------------------------

_debug_lock = threading.Lock()
_debug_clients = 0
_debug_handler = logging.StreamHandler()  # sys.stderr, looked up when it writes
_debug_handler.setFormatter(logging.Formatter("sankofa_sdk %(levelname)s: %(message)s"))
_level_before_debug = logging.NOTSET


def debug_on() -> None:
    """A client with ``debug=True`` started: the logger passes DEBUG records while it runs.

    The level the logger had before the first such client is restored by :func:`debug_off`
    when the last one stops, so ``debug`` leaves nothing behind in the process.
    """
    global _debug_clients, _level_before_debug
    with _debug_lock:
        if _debug_clients == 0:
            _level_before_debug = logger.level
            logger.setLevel(logging.DEBUG)
            if not _handled():
                # The app configured no logging: debug output goes to stderr, as the peers do.
                logger.addHandler(_debug_handler)
        _debug_clients += 1


def debug_off() -> None:
    """A client with ``debug=True`` stopped (call once per :func:`debug_on`)."""
    global _debug_clients
    with _debug_lock:
        if _debug_clients == 0:
            return
        _debug_clients -= 1
        if _debug_clients == 0:
            logger.removeHandler(_debug_handler)
            # Restore only a level we set: one the app set in the meantime is the app's.
            if logger.level == logging.DEBUG:
                logger.setLevel(_level_before_debug)


def _after_fork_in_child() -> None:
    global _debug_lock
    _debug_lock = threading.Lock()
    for throttle in list(_live_throttles):
        throttle._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
