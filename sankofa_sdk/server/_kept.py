"""The bodies of the latest requests that were not answered 200, kept so they can be explained.

A 400 names no operation and a 202 no count; the console reads the body again to say which
operation was refused and why. Only requests off the accepted path are kept, and only the
latest few, so neither the ingestion path nor memory pays for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple, Optional

MAX_KEPT = 200
MAX_KEPT_BYTES = 1024 * 1024
"""Larger bodies are not kept (the explanation then says so)."""


class KeptBody(NamedTuple):
    body: bytes
    """As it arrived (still compressed when it was)."""
    content_type: Optional[str]
    content_encoding: Optional[str]


class KeptBodies:
    """The latest :data:`MAX_KEPT` bodies by request sequence number; thread-safe."""

    def __init__(self, capacity: int = MAX_KEPT) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._bodies: OrderedDict[int, KeptBody] = OrderedDict()

    def keep(
        self,
        sequence: int,
        body: bytes,
        content_type: Optional[str],
        content_encoding: Optional[str],
    ) -> None:
        if not body or len(body) > MAX_KEPT_BYTES:
            return
        with self._lock:
            self._bodies[sequence] = KeptBody(body, content_type, content_encoding)
            while len(self._bodies) > self.capacity:
                self._bodies.popitem(last=False)

    def get(self, sequence: int) -> Optional[KeptBody]:
        with self._lock:
            return self._bodies.get(sequence)

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()
