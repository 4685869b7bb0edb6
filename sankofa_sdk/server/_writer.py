"""The async write path: a bounded in-memory buffer and the thread that applies it to SQLite.

Handlers answer as soon as their items are in the buffer, as the engine does (spec section 12);
the writer applies whatever has accumulated in one transaction. Like the engine's three
channels, the buffer holds at most ``capacity`` events, ``capacity`` profiles and ``capacity``
aliases. Unlike the engine, a request is taken whole or not at all, so a 503 never leaves half
a batch behind (that would make a retry duplicate the half that got in).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Optional

from ._payloads import Alias, Event, Profile
from ._store import PeopleStore, Unit

log = logging.getLogger("sankofa_sdk.server")

MAX_UNITS_PER_TRANSACTION = 500


def _sizes(unit: Unit) -> tuple[int, int, int]:
    events = profiles = aliases = 0
    for item in unit.items:
        if isinstance(item, Event):
            events += 1
        elif isinstance(item, Profile):
            profiles += 1
        else:
            assert isinstance(item, Alias)
            aliases += 1
    return events, profiles, aliases


class Writer:
    """Owns the buffer; one background thread applies it to the store in arrival order."""

    def __init__(self, store: PeopleStore, capacity: int = 10_000) -> None:
        self.store = store
        self.capacity = capacity
        self.forced_full = False
        self.write_errors = 0
        self._pending: deque[tuple[Unit, tuple[int, int, int]]] = deque()
        self._held = [0, 0, 0]
        self._accepted = 0
        self._applied = 0
        self._stopping = False
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name="sankofa-server-writer", daemon=True)
        self._thread.start()

    def push(self, unit: Unit) -> bool:
        """Queue a request's items; False (nothing queued) when the buffer cannot take them all."""
        sizes = _sizes(unit)
        with self._lock:
            if self._stopping:
                return False
            if any(sizes) and (
                self.forced_full
                or any(held + n > self.capacity for held, n in zip(self._held, sizes, strict=True))
            ):
                return False
            for i, n in enumerate(sizes):
                self._held[i] += n
            self._pending.append((unit, sizes))
            self._accepted += 1
            self._work.notify()
        return True

    def wait_for_room(self, timeout: float) -> None:
        """Hold a request back while the buffer is over half full, at most ``timeout`` s.

        Handlers decode on the same interpreter lock the writer needs; without this, a few
        busy clients starve the writer, fill the buffer and get 503s for work that was
        already decoded. Waiting here only adds latency, as a loaded engine does.
        """
        half = max(1, self.capacity // 2)
        with self._lock:
            if max(self._held) >= half:
                self._done.wait_for(lambda: max(self._held) < half or self._stopping, timeout)

    @property
    def pending_items(self) -> int:
        return sum(self._held)

    def wait_until_applied(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything accepted before this call is in SQLite."""
        with self._lock:
            target = self._accepted
            return self._done.wait_for(lambda: self._applied >= target, timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Stop taking items, apply what is buffered, stop the thread. True when all was applied."""
        with self._lock:
            self._stopping = True
            self._work.notify()
            self._done.notify_all()  # requests waiting for room stop waiting
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._work.wait_for(lambda: self._pending or self._stopping)
                if not self._pending and self._stopping:
                    return
                batch = [
                    self._pending.popleft()
                    for _ in range(min(len(self._pending), MAX_UNITS_PER_TRANSACTION))
                ]
            self._apply([unit for unit, _ in batch])
            with self._lock:
                for _, sizes in batch:
                    for i, n in enumerate(sizes):
                        self._held[i] -= n
                self._applied += len(batch)
                self._done.notify_all()

    def _apply(self, units: list[Unit]) -> None:
        # Nothing may escape this thread. A failing transaction is retried unit by unit, so
        # one unit the store cannot take costs only itself; it is logged and counted.
        try:
            self.store.apply(units)
            return
        except Exception:
            if len(units) == 1:
                self._give_up(units[0])
                return
        for unit in units:
            for attempt in range(3):
                try:
                    self.store.apply([unit])
                    break
                except Exception:
                    if attempt == 2:
                        self._give_up(unit)
                    else:
                        time.sleep(0.05)

    def _give_up(self, unit: Unit) -> None:
        self.write_errors += 1
        log.exception(
            "could not store %d item(s) of an accepted request (project %s, %s)",
            len(unit.items),
            unit.project_id,
            unit.environment,
        )
