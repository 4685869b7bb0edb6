"""A batch and the ledger of batches between the queue and the engine.

A batch is taken from the queue (``_queue.Backlog``), or recovered from a dead process's spool,
and lives through named states::

    NEW ──► IN_FLIGHT ──► DONE                 delivered (2xx)
                │    ──► FAILED               refused for good, or retries used up (reported)
                │    ──► WAITING ──► IN_FLIGHT  a retryable failure (5xx, reset, a 429 on a retry)
                │    ──► RETURNED             a first-attempt 429: its operations rejoin the queue
                └──► SPLIT                    400/413 on several operations: two new batches

Its body and ``Idempotency-Key`` stay the same on every retry. The ledger holds every batch that
is IN_FLIGHT or WAITING, under one lock, because the caller's thread (shutdown, sync mode) reads
it too: a batch is in the ledger from the moment it leaves the queue until it reaches a final
state, so shutdown's report never misses one and never reports one twice.
"""

from __future__ import annotations

import enum
import threading
import uuid
from collections.abc import Callable
from typing import Optional

from .._queue import Encoded
from .._serialize import Reported


class BatchState(enum.Enum):
    NEW = "new"
    IN_FLIGHT = "in flight"
    WAITING = "waiting to retry"
    DONE = "done"
    FAILED = "failed"
    RETURNED = "returned to the queue"
    SPLIT = "split"


FINAL_STATES = frozenset(
    {BatchState.DONE, BatchState.FAILED, BatchState.RETURNED, BatchState.SPLIT}
)


class Batch:
    """Operations sent together; the same body and Idempotency-Key on every retry."""

    __slots__ = (
        "body",
        "count",
        "first_failure_at",
        "items",
        "keep_on_429",
        "key",
        "maybe_applied",
        "next_try_at",
        "retries",
        "state",
        "ticket",
        "wire",
    )

    def __init__(
        self,
        items: list[Encoded],
        *,
        key: Optional[str] = None,
        body: Optional[bytes] = None,
        keep_on_429: bool = False,
    ) -> None:
        self.items = items
        self.count = sum(item.operations for item in items)
        """Operations in the batch (an item is a run of one or more)."""
        self.key = key if key is not None else uuid.uuid4().hex
        self.body = body
        self.keep_on_429 = keep_on_429
        """Resend this very batch after a 429 (sync mode) instead of re-queueing its items."""
        self.ticket: Optional[object] = None
        """What the source the operations came from needs to know about the batch (for a
        spool: the note on disk); the worker never looks inside."""
        self.state = BatchState.NEW
        self.maybe_applied = False
        """An attempt ended without telling whether the engine stored it (no answer after
        sending, a cut, a 5xx): if it is never answered, its fate is unknown, not dropped."""
        self.retries = 0
        self.first_failure_at = 0.0
        self.next_try_at = 0.0
        self.wire: Optional[tuple[bytes, bool]] = None

    def __repr__(self) -> str:
        return f"<Batch {self.key[:8]} {self.count} op(s) {self.state.value}>"

    @property
    def reported(self) -> list[Reported]:
        return [element for run in self.items for element in run.elements()]


class BatchLedger:
    """Every batch in flight or waiting to retry. Closed once, by shutdown's report."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: list[Batch] = []
        self.in_flight: Optional[Batch] = None
        self.closed = False

    def held(self) -> int:
        """Operations in batches not finished."""
        with self.lock:
            held = sum(b.count for b in self.waiting)
            if self.in_flight is not None:
                held += self.in_flight.count
        return held

    def next_due(self) -> Optional[Batch]:
        return min(self.waiting, key=_next_try_at, default=None)

    def wait(self, batch: Batch, at: float) -> None:
        """``batch`` waits to be sent at ``at`` (a retry, a recovered batch, a split half)."""
        batch.next_try_at = at
        batch.state = BatchState.WAITING
        with self.lock:
            self.waiting.append(batch)

    def start(self, batch: Batch) -> bool:
        """A waiting batch goes out; False when shutdown already reported it."""
        with self.lock:
            if self.closed:
                return False
            if batch.state is BatchState.WAITING:
                self.waiting.remove(batch)
            batch.state = BatchState.IN_FLIGHT
            self.in_flight = batch
            return True

    def start_new(self, take: Callable[[], list[Encoded]]) -> Optional[Batch]:
        """A new batch of what ``take`` takes from the queue, in flight the moment it leaves
        the queue (never in neither); None when nothing was taken or after shutdown."""
        with self.lock:
            if self.closed:
                return None
            items = take()
            if not items:
                return None
            batch = Batch(items)
            batch.state = BatchState.IN_FLIGHT
            self.in_flight = batch
            return batch

    def answered(self) -> Optional[Batch]:
        """The batch whose answer came; None if shutdown already reported it."""
        with self.lock:
            batch, self.in_flight = self.in_flight, None
            return None if self.closed else batch

    def settle(self, batch: Batch, state: BatchState) -> None:
        """``batch`` reached a final state: the ledger forgets it, wherever it was."""
        batch.state = state
        with self.lock:
            if self.in_flight is batch:
                self.in_flight = None
            elif batch in self.waiting:
                self.waiting.remove(batch)

    def retry_now(self, now: float) -> None:
        """The engine answers again: retries waiting for a backoff may go now."""
        for batch in self.waiting:
            batch.next_try_at = min(batch.next_try_at, now)

    def close(self) -> list[Batch]:
        """Every batch not finished, once; the ledger takes nothing after this."""
        with self.lock:
            self.closed = True
            left = list(self.waiting)
            if self.in_flight is not None:
                left.append(self.in_flight)
            self.waiting.clear()
            self.in_flight = None
        return left

    def reopen(self) -> None:
        """In a forked child: a fresh ledger (the parent's batches are the parent's)."""
        self.__init__()  # type: ignore[misc]


def _next_try_at(batch: Batch) -> float:
    return batch.next_try_at
