"""The bounded buffer between the callers and the delivery thread, counted in operations and bytes.

Callers append plain operation tuples to ``raw`` (the cheapest thing a thread can do) and compare
its length with ``room``: that is the whole cost of the bound on the caller's thread. The worker
encodes ``raw`` into ``encoded`` (JSON bytes) whenever it is awake, also while it waits for the
request budget, so a batch is ready when the budget allows it, and a backlog costs its JSON size
rather than its Python objects' size. After each step the worker recomputes ``room`` from
``max_queue_bytes`` and what it holds, using the average encoded size of recent operations as
the estimate for those not yet encoded: an estimate the caller never has to compute.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import deque
from itertools import accumulate, islice, repeat
from operator import attrgetter
from typing import NamedTuple, Optional, Union

from ._options import Options
from ._serialize import Operation
from ._spooling import Origin

RAW_OVERHEAD_BYTES = 400
"""Python objects of a queued, not yet encoded operation beyond its JSON size (tuple, dict,
strings): measured about 744 bytes for the benchmarks' 10-property event of 536 JSON bytes."""
ENCODED_OVERHEAD_BYTES = 120
"""An encoded operation's ``bytes`` and tuple headers."""


class Marker(threading.Event):
    """A flush marker: set when everything queued before it is finished."""

    spool_target = 0
    """With a spool: the last operation written to disk before the flush."""


RawItem = Union[Operation, Marker]


class Encoded(NamedTuple):
    data: bytes
    """The operation's JSON; the caller's objects are let go once it is encoded."""
    seq: int
    """Order of arrival, so a flush knows when everything before it is finished."""
    origin: Optional[Origin]
    """Where it lives on disk, for operations read from a spool."""
    size: int
    """``len(data)``, kept beside it: sizing a batch then reads these tuples only, not the
    header of every ``bytes`` object, which lie spread over all the queued JSON (a backlog
    that waited for the request budget is memory the process has not touched for a while)."""


_size = attrgetter("size")
_origin = attrgetter("origin")
_plus_one = (1).__add__


class Backlog:
    """What is queued: raw operations from callers, then encoded ones waiting for a batch."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self.raw: deque[RawItem] = deque()
        self.encoded: deque[Encoded] = deque()
        self.encoded_bytes = 0
        self.held_bytes = 0
        """Bytes of batches taken from ``encoded`` but not finished (in flight or retrying)."""
        self.held_count = 0
        self.room = options.max_queue_size
        self.next_seq = 0
        # Pessimistic until measured: callers get room for what they queue before the first
        # operation is encoded, and a too small guess would let a burst of big ones overfill it.
        self._average_op_bytes = 8_000.0

    @property
    def encoded_count(self) -> int:
        return len(self.encoded)

    def add(self, data: bytes, origin: Optional[Origin] = None) -> None:
        size = len(data)
        self.encoded.append(Encoded(data, self.next_seq, origin, size))
        self.next_seq += 1
        self.encoded_bytes += size
        # Quick to rise, slow to fall: when operations grow (10 KB properties), callers must
        # get less room at once; one small operation must not give them much more.
        weight = 0.25 if size > self._average_op_bytes else 0.01
        self._average_op_bytes += (size - self._average_op_bytes) * weight

    def add_many(self, datas: list[bytes]) -> None:
        """``add`` for each of ``datas`` (operations from memory), for less CPU per operation."""
        if not datas:
            return
        seq = self.next_seq
        sizes = list(map(len, datas))
        self.encoded.extend(map(Encoded, datas, range(seq, seq + len(datas)), repeat(None), sizes))
        self.next_seq = seq + len(datas)
        total = sum(sizes)
        self.encoded_bytes += total
        if max(sizes) > self._average_op_bytes:
            for size in sizes:  # growing: quick to rise, as one by one
                weight = 0.25 if size > self._average_op_bytes else 0.01
                self._average_op_bytes += (size - self._average_op_bytes) * weight
        else:
            # All at or below the average: len(sizes) slow steps toward their mean at once.
            mean = total / len(sizes)
            self._average_op_bytes += (mean - self._average_op_bytes) * (1 - 0.99 ** len(sizes))

    def skip_seq(self) -> None:
        """An operation that could not be encoded still takes its place in the order."""
        self.next_seq += 1

    def take(self, max_ops: int, max_bytes: int, overhead: int) -> list[Encoded]:
        """Take the oldest encoded operations for one batch: at most ``max_ops`` and whose
        JSON, with ``overhead`` bytes of envelope and a comma each, fits ``max_bytes`` (the
        first is taken whatever its size)."""
        encoded = self.encoded
        if not encoded:
            return []
        candidates = list(islice(encoded, max_ops))
        # totals[k]: the size of a body of the first k (sizes summed in C, not in a loop).
        totals = list(accumulate(map(_plus_one, map(_size, candidates)), initial=overhead))
        count = max(1, bisect_right(totals, max_bytes) - 1)
        # A batch holds operations of one origin only (memory, or one spool directory), so
        # what it notes on disk goes to the directory its operations came from.
        origins = list(map(_origin, candidates[:count]))
        first = origins[0]
        if first is None:
            if any(origins):
                count = next(i for i, origin in enumerate(origins) if origin is not None)
        else:
            spool = first.spool
            for index, origin in enumerate(origins):
                if origin is None or origin.spool is not spool:
                    count = index
                    break
        popleft = encoded.popleft
        taken = [popleft() for _ in range(count)]
        moved = totals[count] - overhead - count
        self.encoded_bytes -= moved
        self.held_bytes += moved
        self.held_count += count
        return taken

    def put_back(self, items: list[Encoded]) -> None:
        """Return a batch's operations to the front (a 429: they go again, in a bigger batch)."""
        size = sum(map(_size, items))
        self.held_bytes -= size
        self.held_count -= len(items)
        self.encoded_bytes += size
        self.encoded.extendleft(reversed(items))

    def hold(self, items: list[Encoded]) -> None:
        """Count a batch made outside the queue (one a dead process left) as held."""
        self.held_bytes += sum(map(_size, items))
        self.held_count += len(items)

    def release(self, items: list[Encoded]) -> None:
        """A batch is finished (delivered or reported): its bytes no longer count."""
        self.held_bytes = max(0, self.held_bytes - sum(map(_size, items)))
        self.held_count = max(0, self.held_count - len(items))

    def oldest_seq(self) -> Optional[int]:
        return self.encoded[0].seq if self.encoded else None

    def update_room(self) -> None:
        """How many raw operations callers may queue now, within both bounds."""
        options = self._options
        used = self.encoded_bytes + self.held_bytes + (len(self.encoded)) * ENCODED_OVERHEAD_BYTES
        per_raw = self._average_op_bytes + RAW_OVERHEAD_BYTES
        by_bytes = int(max(0, options.max_queue_bytes - used) / per_raw)
        by_count = options.max_queue_size - len(self.encoded) - self.held_count
        self.room = max(0, min(by_bytes, by_count))

    def drain_all(self) -> tuple[list[Encoded], list[Operation], list[Marker]]:
        """Everything still queued, for a final report: encoded operations, raw ones (never
        counted as taken by the worker) and flush markers."""
        encoded = list(self.encoded)
        self.encoded.clear()
        self.encoded_bytes = 0
        raw: list[Operation] = []
        markers: list[Marker] = []
        while True:
            try:
                item = self.raw.popleft()
            except IndexError:
                break
            if type(item) is tuple:
                raw.append(item)
            else:
                markers.append(item)  # type: ignore[arg-type]
        return encoded, raw, markers


def batch_due(
    count: int, waiting_since: Optional[float], now: float, options: Options, urgent: bool
) -> float:
    """When the next new batch should go, before the request budget has its say.

    ``count`` operations are encoded and waiting, the oldest since ``waiting_since``. A batch is
    due at once when ``flush_at`` are waiting or a flush/shutdown is under way, else
    ``flush_interval`` after the oldest arrived; never when nothing waits.
    """
    if count == 0:
        return float("inf")
    if urgent or count >= options.flush_at or waiting_since is None:
        return now
    return waiting_since + options.flush_interval
