"""Where the worker's operations come from: the ``Source`` it asks "what is there" and tells
what became of each batch.

``MemorySource`` is the callers' queue: calls wait as tuples in ``Backlog.raw`` and the thread
encodes them in chunks. ``spool_source.SpoolSource`` adds the disk: calls written before they
return, read back as room allows, and the notes that make a batch from disk go exactly once
whatever process sends it. The worker talks to either through the same calls and holds no
state of the disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from .._queue import Backlog, Encoded, Marker
from .._serialize import Operation
from .batch import Batch
from .encoding import OperationEncoder

ENCODE_SLICE = 2_000
"""Operations encoded per turn of the loop, so a backlog never delays a due request for long."""
ROOM_CHUNK = 256
"""Operations taken off the raw queue and encoded together; the room is re-measured after each."""


class Intake(NamedTuple):
    recovered: list[Batch]
    """Batches a dead process was sending: resent first, as they were, with their keys."""
    markers: list[Marker]
    """Flushes whose operations are all in the queue now."""


class Source(Protocol):
    def fill(self, backlog: Backlog) -> Intake:
        """Bring what arrived into ``backlog`` (as much as its bounds allow)."""
        ...

    def flush_marker(self, marker: Marker) -> None:
        """A flush (caller's thread): ``marker`` comes back from ``fill`` once everything
        accepted before it is in the queue."""
        ...

    def starting(self, batch: Batch) -> None:
        """``batch`` is about to be sent (first attempt)."""
        ...

    def finished(self, batch: Batch) -> None:
        """``batch`` was delivered or finally reported failed."""
        ...

    def returned(self, batch: Batch) -> None:
        """``batch`` was refused before it was applied (a first 429): its operations are back
        in the queue and go again in another batch."""
        ...

    def split(self, batch: Batch, parts: list[Batch]) -> None:
        """``batch`` was refused whole (400, 413): ``parts`` go instead, under new keys."""
        ...

    def keeps(self, items: list[Encoded]) -> bool:
        """Whether these operations outlive the process if they are not delivered."""
        ...

    def accepted(self) -> int: ...

    def count_drained(self, count: int) -> None:
        """Operations taken without going through ``fill`` (sync mode, shutdown's report):
        accepted all the same."""
        ...

    def unread(self) -> int:
        """Accepted operations not in the queue yet (on disk)."""
        ...

    def all_read(self) -> bool: ...

    def close(self, left_behind: int) -> None:
        """Shutdown is over; ``left_behind`` operations it kept stay for the next process."""
        ...

    def forget_after_fork(self) -> None: ...


class MemorySource:
    """The callers' queue: tuples in ``backlog.raw``, encoded here in chunks."""

    def __init__(
        self, backlog: Backlog, encoder: OperationEncoder, room_changed: Callable[[], None]
    ) -> None:
        self._backlog = backlog
        self._encoder = encoder
        self._room_changed = room_changed
        self._encoded = 0
        self._empty_at = time.time()
        """Unix time the callers' queue was last seen empty: every call in it now was made
        since, whatever timestamp it was given (a backfill's is days old)."""

    def fill(self, backlog: Backlog) -> Intake:
        markers: list[Marker] = []
        raw = backlog.raw
        now = time.time()
        left = ENCODE_SLICE
        while left > 0 and raw:
            # One chunk at a time: taken from the raw queue but not yet encoded, operations
            # are counted nowhere, so keep that to one chunk and the room stays true. (Callers
            # only append: the length can only grow while this takes.)
            items = backlog.pop_raw(min(len(raw), ROOM_CHUNK, left))
            left -= len(items)
            ops: list[Operation] = []
            for item in items:
                if type(item) is tuple:
                    ops.append(item)
                    continue
                # A flush marker: what came before it is queued first.
                self._encode(ops, now)
                ops = []
                backlog.markers_taken(1)
                markers.append(item)  # type: ignore[arg-type]
            self._encode(ops, now)
            backlog.in_hand = 0
        if not raw:
            self._empty_at = now
        return Intake([], markers)

    def _encode(self, ops: list[Operation], now: float) -> None:
        """Encode ``ops`` (one chunk at most) and measure the room again: when operations
        suddenly grow (10 KB properties), callers get less room within a few hundred
        operations, not a whole slice later."""
        if ops:
            self._encoded += len(ops)
            # The chunk's call time, for the delay the metrics measure: its first call's
            # timestamp, within what can be true (after the queue was last seen empty, not
            # after now), so a backfill's old or future timestamp is no delay of ours.
            try:
                called_at = min(max(float(ops[0][5]), self._empty_at), now)
            except (TypeError, ValueError, IndexError):  # a malformed tuple: the encoder says
                called_at = now
            self._encoder.encode_into(self._backlog, ops, called_at)
        self._room_changed()

    def flush_marker(self, marker: Marker) -> None:
        self._backlog.add_marker(marker)

    def starting(self, batch: Batch) -> None:
        pass

    def finished(self, batch: Batch) -> None:
        pass

    def returned(self, batch: Batch) -> None:
        pass

    def split(self, batch: Batch, parts: list[Batch]) -> None:
        pass

    def keeps(self, items: list[Encoded]) -> bool:
        return False

    def accepted(self) -> int:
        """Operations taken so far: encoded, or still raw."""
        return self._encoded + self._backlog.raw_count()

    def count_drained(self, count: int) -> None:
        self._encoded += count

    def unread(self) -> int:
        return 0

    def all_read(self) -> bool:
        return True

    def close(self, left_behind: int) -> None:
        pass

    def forget_after_fork(self) -> None:
        pass
