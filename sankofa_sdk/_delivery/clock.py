"""The one clock of the delivery pipeline.

Every time the pipeline reads (when a batch is due, when a retry may go, a request's cut-off, the
shutdown deadline) and every wait it makes goes through one ``Clock``, so a decision is a function
of (state, now) and tests can swap in a clock that jumps instead of sleeping. Blocking primitives
(``Event.wait``, ``Thread.join``) take durations, and those durations are computed from this
clock's ``now``.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Monotonic time for the delivery pipeline. Tests swap in one that jumps instead of sleeping."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, when: float, wake: threading.Event) -> None:
        """Wait until ``when`` or until ``wake`` is set, whichever comes first."""
        wake.wait(max(0.0, when - self.now()))

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait for ``event`` up to ``seconds`` (for a caller or an answer, not for a time)."""
        return event.wait(max(0.0, seconds))

    def join(self, thread: threading.Thread, until: float) -> None:
        """Wait for ``thread`` to end, at most until ``until`` on this clock."""
        thread.join(max(0.0, until - self.now()))
