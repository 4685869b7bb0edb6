"""Deliver before SIGTERM ends the process, then end it as SIGTERM would have.

A process stopped by SIGTERM (``docker stop``, Kubernetes, systemd, ``kill``) whose SIGTERM
disposition is the default dies at once: no ``atexit`` hook runs, so whatever the clients still
held would be lost without a word. When the first client is made and nothing else handles
SIGTERM yet (the disposition is the default), this installs a handler that shuts every live
client down within its budget (``shutdown_timeout`` without progress, ``max_shutdown_time`` in
all), then restores the default and raises the signal again: the process still dies by SIGTERM
(exit status -15), the same as without the SDK, only later.

Left alone on purpose:
- a handler someone already installed (a server such as uvicorn, gunicorn, Celery, or the
  app's own): it owns the shutdown; the integrations shut the client down from the server's
  own hooks (ASGI lifespan, worker exit), and the app's handler may call ``shutdown()``;
- an ignored SIGTERM (``SIG_IGN``): the app chose to survive it;
- threads other than the main one, where Python cannot install handlers.

A handler installed later by the app or a server replaces this one; uvicorn, which restores the
handler it found and raises the signal again after its own graceful shutdown, ends up here.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Callable, Optional

_lock = threading.Lock()
_shutdown_all: Optional[Callable[[], None]] = None


def install(shutdown_all: Callable[[], None]) -> bool:
    """Handle SIGTERM with ``shutdown_all`` if its disposition is still the default; True if
    this handler is in place after the call."""
    global _shutdown_all
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        try:
            current = signal.getsignal(sigterm)
            if current is _on_sigterm:
                return True
            if current is not signal.SIG_DFL:
                return False
            _shutdown_all = shutdown_all
            signal.signal(sigterm, _on_sigterm)
        except (ValueError, OSError):  # an embedded interpreter that refuses handlers
            return False
    return True


def installed() -> bool:
    sigterm = getattr(signal, "SIGTERM", None)
    return sigterm is not None and signal.getsignal(sigterm) is _on_sigterm


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    # The default first: a second SIGTERM while the clients shut down ends the process at once
    # (the usual "again to force").
    signal.signal(signum, signal.SIG_DFL)
    try:
        if _shutdown_all is not None:
            _shutdown_all()
    finally:
        signal.raise_signal(signum)  # as the default would: the process ends by the signal
