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
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import accumulate, islice
from operator import attrgetter
from typing import NamedTuple, Optional, Protocol, Union

from ._options import Options
from ._serialize import Operation

RAW_OVERHEAD_BYTES = 400
"""Python objects of a queued, not yet encoded operation beyond its JSON size (tuple, dict,
strings): measured about 744 bytes for the benchmarks' 10-property event of 536 JSON bytes."""
ENCODED_OVERHEAD_BYTES = 8
"""What an encoded operation costs beyond its JSON inside a run (its comma, its end offset)."""
RUN_OVERHEAD_BYTES = 200
"""A run's ``bytes`` and tuple headers (one per chunk; one per operation read from a spool)."""


class Marker(threading.Event):
    """A flush marker: set when everything queued before it is finished."""


class Origin(Protocol):
    """Where a queued operation outlives the process (a spool's record); the queue only needs
    its ``group``: a batch holds operations of one group, so whatever the source notes about
    the batch goes to one place."""

    @property
    def group(self) -> object: ...


RawItem = Union[Operation, Marker]


class Encoded(NamedTuple):
    """Encoded operations that arrived together, as one ``bytes``: a run.

    A chunk the thread encoded at once is kept as one run instead of one object per operation:
    taking a batch, sizing it and writing its body then cost per run, not per operation, and
    the queued JSON lies in one block. A run is split only where a batch ends inside it.
    """

    data: bytes
    """The operations' JSON, separated by commas (as they stand in a batch body)."""
    seq: int
    """The first operation's place in the order of arrival, so a flush knows when everything
    before it is finished; the others follow it."""
    origin: Optional[Origin]
    """Where it lives on disk: operations read from a spool are runs of one."""
    size: int
    """The operations' JSON bytes, the commas between them not counted (``len(data)`` for one)."""
    operations: int = 1
    ends: Optional[Sequence[int]] = None
    """For a run of more than one: where each operation's JSON ends in ``data``."""
    called_at: float = 0.0
    """Unix time of the call of the run's first operation (0.0: not known), for the
    end-to-end delay the metrics measure per batch (``_delivery.observe``)."""

    def elements(self) -> list[bytes]:
        """Each operation's JSON."""
        ends = self.ends
        if ends is None:
            return [self.data]
        data = self.data
        starts = [0, *(end + 1 for end in ends[:-1])]
        return [data[start:end] for start, end in zip(starts, ends, strict=True)]

    def split(self, k: int) -> tuple[Encoded, Encoded]:
        """The first ``k`` operations (0 < k < count) and the rest, as two runs."""
        ends = self.ends
        assert ends is not None and 0 < k < self.operations
        cut = ends[k - 1]
        left_data, right_data = self.data[:cut], self.data[cut + 1 :]
        # The rest's offsets move left by what was cut off (``x.__rsub__(end)`` is ``end - x``).
        left_ends, right_ends = ends[:k], array("I", map((cut + 1).__rsub__, ends[k:]))
        left_size = cut - (k - 1)
        called = self.called_at
        left = Encoded(
            left_data, self.seq, None, left_size, k, left_ends if k > 1 else None, called
        )
        rest = self.operations - k
        right = Encoded(
            right_data,
            self.seq + k,
            None,
            self.size - left_size,
            rest,
            right_ends if rest > 1 else None,
            called,
        )
        return left, right


def one_by_one(runs: Iterable[Encoded]) -> list[Encoded]:
    """``runs`` as runs of one operation each (to split a batch by operations)."""
    singles: list[Encoded] = []
    for run in runs:
        if run.operations == 1:
            singles.append(run)
            continue
        for offset, element in enumerate(run.elements()):
            singles.append(
                Encoded(element, run.seq + offset, None, len(element), called_at=run.called_at)
            )
    return singles


_size = attrgetter("size")
_operations = attrgetter("operations")
_plus_one = (1).__add__


class Backlog:
    """What is queued: raw operations from callers, then encoded runs waiting for a batch."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self.raw: deque[RawItem] = deque()
        self.raw_markers = 0
        """Flush markers in ``raw`` (rare), so that ``raw_count`` subtracts instead of scanning."""
        self._markers_lock = threading.Lock()
        self.encoded: deque[Encoded] = deque()
        self.encoded_ops = 0
        """Operations in ``encoded`` (a run holds one or more)."""
        self.encoded_bytes = 0
        self.held_bytes = 0
        """Bytes of batches taken from ``encoded`` but not finished (in flight or retrying)."""
        self.held_count = 0
        self.room = options.max_queue_size
        self.in_hand = 0
        """Raw items taken to be encoded and not queued yet (one chunk at most): counted by
        ``health()`` and the gauges, which may look in the middle of it."""
        self.next_seq = 0
        # Pessimistic until measured: callers get room for what they queue before the first
        # operation is encoded, and a too small guess would let a burst of big ones overfill it.
        self._average_op_bytes = 8_000.0

    @property
    def max_bytes(self) -> int:
        return self._options.max_queue_bytes

    @property
    def encoded_count(self) -> int:
        return self.encoded_ops

    def add(self, data: bytes, origin: Optional[Origin] = None, called_at: float = 0.0) -> None:
        size = len(data)
        self.encoded.append(Encoded(data, self.next_seq, origin, size, 1, None, called_at))
        self.next_seq += 1
        self.encoded_ops += 1
        self.encoded_bytes += size
        # Quick to rise, slow to fall: when operations grow (10 KB properties), callers must
        # get less room at once; one small operation must not give them much more.
        weight = 0.25 if size > self._average_op_bytes else 0.01
        self._average_op_bytes += (size - self._average_op_bytes) * weight

    def add_many(self, datas: list[bytes], called_at: float = 0.0) -> None:
        """``add`` for each of ``datas`` (operations from memory), as one run."""
        if not datas:
            return
        if len(datas) == 1:
            self.add(datas[0], None, called_at)
            return
        count = len(datas)
        sizes = list(map(len, datas))
        total = sum(sizes)
        # ends[i]: where operation i ends in the joined data (each is followed by a comma).
        ends = array("I", islice(accumulate(map(_plus_one, sizes), initial=-1), 1, None))
        self.encoded.append(
            Encoded(b",".join(datas), self.next_seq, None, total, count, ends, called_at)
        )
        self.next_seq += count
        self.encoded_ops += count
        self.encoded_bytes += total
        if max(sizes) > self._average_op_bytes:
            for size in sizes:  # growing: quick to rise, as one by one
                weight = 0.25 if size > self._average_op_bytes else 0.01
                self._average_op_bytes += (size - self._average_op_bytes) * weight
        else:
            # All at or below the average: count slow steps toward their mean at once.
            mean = total / count
            self._average_op_bytes += (mean - self._average_op_bytes) * (1 - 0.99**count)

    def pop_raw(self, count: int) -> list[RawItem]:
        """Take ``count`` raw items to encode; until encoded they still take their room."""
        popleft = self.raw.popleft
        self.in_hand = count
        items = [popleft() for _ in range(count)]
        self.room -= count
        return items

    def raw_count(self) -> int:
        """Raw operations (flush markers not counted). O(1): ``stats()``, ``health()`` and the
        metrics read it, also while a burst leaves a million calls in ``raw``."""
        return max(0, len(self.raw) - self.raw_markers)

    def add_marker(self, marker: Marker) -> None:
        """Queue a flush marker behind the raw operations (a caller's thread)."""
        with self._markers_lock:
            self.raw.append(marker)
            self.raw_markers += 1

    def markers_taken(self, count: int) -> None:
        """``count`` markers were taken out of ``raw``."""
        if count:
            with self._markers_lock:
                self.raw_markers -= count

    def skip_seq(self) -> None:
        """An operation that could not be encoded still takes its place in the order."""
        self.next_seq += 1

    def take(self, max_ops: int, max_bytes: int, overhead: int) -> list[Encoded]:
        """Take the oldest encoded operations for one batch: at most ``max_ops`` and whose
        JSON, with ``overhead`` bytes of envelope and a comma each, fits ``max_bytes`` (the
        first is taken whatever its size). A run the batch ends in is split there."""
        encoded = self.encoded
        taken: list[Encoded] = []
        ops = 0
        body = overhead
        # A batch holds operations of one origin only (memory, or one spool directory), so
        # what it notes on disk goes to the directory its operations came from.
        first = encoded[0].origin if encoded else None
        group = first.group if first is not None else None
        while encoded and ops < max_ops:
            run = encoded[0]
            origin = run.origin
            if (origin.group if origin is not None else None) is not group:
                break
            weight = run.size + run.operations  # its JSON and a comma each
            if run.operations <= max_ops - ops and body + weight <= max_bytes:
                taken.append(encoded.popleft())
                ops += run.operations
                body += weight
                continue
            # The batch ends in this run: as many of its first operations as fit.
            fits = min(run.operations, max_ops - ops)
            if run.ends is not None:
                # weight of the first k: ends[k - 1] + 1; the largest k within max_bytes.
                fits = min(fits, bisect_right(run.ends, max_bytes - body - 1))
            elif body + weight > max_bytes:
                fits = 0
            if fits == 0 and not taken:
                fits = 1  # the first operation goes whatever its size
            if fits == 0:
                break
            if fits < run.operations:
                part, encoded[0] = run.split(fits)
            else:
                part = encoded.popleft()
            taken.append(part)
            ops += fits
            break
        moved = sum(map(_size, taken))
        self.encoded_ops -= ops
        self.encoded_bytes -= moved
        self.held_bytes += moved
        self.held_count += ops
        return taken

    def put_back(self, items: list[Encoded]) -> None:
        """Return a batch's operations to the front (a 429: they go again, in a bigger batch)."""
        size = sum(map(_size, items))
        count = sum(map(_operations, items))
        self.held_bytes -= size
        self.held_count -= count
        self.encoded_bytes += size
        self.encoded_ops += count
        self.encoded.extendleft(reversed(items))

    def hold(self, items: list[Encoded]) -> None:
        """Count a batch made outside the queue (one a dead process left) as held."""
        self.held_bytes += sum(map(_size, items))
        self.held_count += sum(map(_operations, items))

    def release(self, items: list[Encoded]) -> None:
        """A batch is finished (delivered or reported): its bytes no longer count."""
        self.held_bytes = max(0, self.held_bytes - sum(map(_size, items)))
        self.held_count = max(0, self.held_count - sum(map(_operations, items)))

    def oldest_seq(self) -> Optional[int]:
        return self.encoded[0].seq if self.encoded else None

    def _used_bytes(self) -> int:
        """Bytes of the encoded and held operations, as the bound counts them."""
        return (
            self.encoded_bytes
            + self.held_bytes
            + len(self.encoded) * RUN_OVERHEAD_BYTES
            + self.encoded_ops * ENCODED_OVERHEAD_BYTES
        )

    def bytes_estimate(self) -> int:
        """Everything queued in bytes as the bound counts them, raw operations at the estimated
        size (read by the metrics and ``health()`` from any thread)."""
        per_raw = self._average_op_bytes + RAW_OVERHEAD_BYTES
        return int(self._used_bytes() + len(self.raw) * per_raw)

    def update_room(self) -> None:
        """How many raw operations callers may queue now, within both bounds."""
        options = self._options
        used = self._used_bytes()
        per_raw = self._average_op_bytes + RAW_OVERHEAD_BYTES
        by_bytes = int(max(0, options.max_queue_bytes - used) / per_raw)
        by_count = options.max_queue_size - self.encoded_ops - self.held_count
        self.room = max(0, min(by_bytes, by_count))

    def drain_all(self) -> tuple[list[Encoded], list[Operation], list[Marker]]:
        """Everything still queued, for a final report: encoded runs, raw operations (never
        counted as taken by the worker) and flush markers."""
        encoded = list(self.encoded)
        self.encoded.clear()
        self.encoded_ops = 0
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
        self.markers_taken(len(markers))
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
