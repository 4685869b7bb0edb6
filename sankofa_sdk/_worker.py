"""The bounded queue and the background thread that turns it into batches.

The caller's thread only appends a tuple to a deque (``submit``). The worker wakes when a batch
is full, when ``flush_interval`` passes, or on ``flush``/``shutdown``; it encodes each operation,
groups them by count and bytes, and hands each batch to the transport, splitting on 400/413 so
one bad operation never holds back the others. Nothing raises out of the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, NamedTuple, Optional, Union

from ._errors import DeliveryError
from ._log import ThrottledWarning, logger
from ._operations import MAX_REQUEST_BYTES
from ._serialize import Operation, batch_body, encode_operation
from ._stats import Stats
from ._transport import Outcome, Transport, delivery_error

Reporter = Callable[[DeliveryError, list[Operation]], None]
_Item = Union[Operation, threading.Event]  # an Event is a flush marker

# A single operation whose JSON is larger than this cannot be sent, even alone.
_MAX_OPERATION_BYTES = MAX_REQUEST_BYTES - 64


class _Encoded(NamedTuple):
    data: bytes
    op: Operation


class Worker:
    def __init__(
        self,
        *,
        transport: Transport,
        stats: Stats,
        report: Reporter,
        flush_at: int,
        flush_interval: float,
        max_queue_size: int,
        max_batch_bytes: int,
        lib_version: str,
        debug: bool = False,
    ) -> None:
        self._transport = transport
        self._stats = stats
        self._report = report
        self._flush_at = flush_at
        self._flush_interval = flush_interval
        self._max_queue_size = max_queue_size
        self._max_batch_bytes = max_batch_bytes
        self._lib_version = lib_version
        self._debug = debug
        self._warnings = ThrottledWarning()
        self._init_state()

    def _init_state(self) -> None:
        self._queue: deque[_Item] = deque()
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self._popped = 0
        self._carry: Optional[_Encoded] = None
        self._sync_lock = threading.Lock()

    # --- the caller's side ----------------------------------------------------------------

    def submit(self, op: Operation) -> bool:
        """Queue ``op``; False (and nothing queued) when the queue is full. Never blocks."""
        queue = self._queue
        if len(queue) >= self._max_queue_size:
            return False
        queue.append(op)
        if self._thread is None:
            self._start()
        if len(queue) >= self._flush_at and not self._wake.is_set():
            self._wake.set()
        return True

    @property
    def accepted(self) -> int:
        """Operations taken so far: those the worker took off the queue plus those still on it."""
        return self._popped + self.queued

    @property
    def queued(self) -> int:
        # Flush markers may sit in the queue too; they are not operations.
        return sum(1 for item in list(self._queue) if type(item) is tuple) + (
            self._carry is not None
        )

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="sankofa-sdk-worker", daemon=True)
                thread.start()
                self._thread = thread

    def flush(self, timeout: Optional[float]) -> bool:
        """Wait until everything queued before this call was delivered or finally failed."""
        if threading.current_thread() is self._thread:
            logger.warning(
                "sankofa_sdk: flush() called from the delivery thread (on_error?); ignored"
            )
            return False
        if self._thread is None and not self._queue:
            return True  # nothing was ever queued (or we are a fresh fork)
        if self._stopping and (self._thread is None or not self._thread.is_alive()):
            return not self._queue and self._carry is None  # no one left to deliver it
        # Always a marker, even with an empty queue: the worker may hold a batch in flight.
        marker = threading.Event()
        self._queue.append(marker)
        if self._thread is None:
            self._start()
        self._wake.set()
        return marker.wait(timeout)

    def shutdown(self, timeout: float) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop; drop (and report) the rest."""
        self._transport.deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._transport.interrupt()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout + 0.5)
        elif self._queue or self._carry is not None:
            # No thread to do it (never started, or we are at interpreter exit): drain here.
            self._drain_safely()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh, empty queue and no thread (started on the next call).

        The parent's queued operations stay the parent's to send; the child must not resend them.
        """
        self._init_state()

    # --- the worker's side ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not self._stopping and len(self._queue) < self._flush_at:
                self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._drain_safely()
            if self._stopping and not self._queue and self._carry is None:
                return

    def _drain_safely(self) -> None:
        try:
            self._drain()
        except Exception:  # never let the thread die; what was taken is counted in _deliver
            logger.exception(
                "sankofa_sdk: unexpected error in the delivery thread; it keeps running"
            )

    def _drain(self) -> None:
        while True:
            batch, markers = self._take_batch()
            if batch:
                self._deliver(batch)
            for marker in markers:
                marker.set()
            if not batch and not markers:
                return

    def _take_batch(self) -> tuple[list[_Encoded], list[threading.Event]]:
        batch: list[_Encoded] = []
        markers: list[threading.Event] = []
        size = 0
        while len(batch) < self._flush_at:
            encoded = self._carry
            if encoded is not None:
                self._carry = None
            else:
                try:
                    item = self._queue.popleft()
                except IndexError:
                    break
                if type(item) is not tuple:
                    markers.append(item)  # type: ignore[arg-type]
                    break
                self._popped += 1
                encoded = self._encode(item)
                if encoded is None:
                    continue
            if batch and size + len(encoded.data) + 1 > self._max_batch_bytes:
                self._carry = encoded
                break
            batch.append(encoded)
            size += len(encoded.data) + 1
        return batch, markers

    def _encode(self, op: Operation) -> Optional[_Encoded]:
        try:
            data, problems = encode_operation(op, self._lib_version)
        except Exception as exc:
            self._fail(
                [op], DeliveryError(f"could not encode operation: {exc!r}", reason="invalid")
            )
            return None
        if problems:
            logger.warning(
                "sankofa_sdk: %s %r: some values were cut: %s", op[0], op[2], "; ".join(problems)
            )
        if len(data) > _MAX_OPERATION_BYTES:
            message = f"operation is {len(data)} bytes of JSON; the engine takes at most {MAX_REQUEST_BYTES}"
            self._fail([op], DeliveryError(message, reason="too_large"))
            return None
        if self._debug and logger.isEnabledFor(logging.DEBUG):
            logger.debug("sankofa_sdk: queued %s", data.decode("utf-8", "replace"))
        return _Encoded(data, op)

    def _deliver(self, batch: list[_Encoded]) -> None:
        try:
            attempt = self._transport.post(batch_body([e.data for e in batch]))
        except Exception as exc:
            logger.exception("sankofa_sdk: unexpected error while sending a batch")
            self._fail(
                [e.op for e in batch], DeliveryError(f"internal error: {exc!r}", reason="failed")
            )
            return
        if attempt.outcome is Outcome.DELIVERED:
            self._stats.add_delivered(len(batch))
        elif attempt.outcome in (Outcome.TOO_LARGE, Outcome.REJECTED) and len(batch) > 1:
            middle = len(batch) // 2
            self._deliver(batch[:middle])
            self._deliver(batch[middle:])
        else:
            self._fail([e.op for e in batch], delivery_error(attempt))

    def _fail(self, ops: list[Operation], error: DeliveryError) -> None:
        self._stats.add_dropped(error.reason, len(ops))
        try:
            self._report(error, ops)
        except Exception:
            logger.exception("sankofa_sdk: error while reporting a failed delivery")

    def deliver_now(self, op: Operation) -> None:
        """sync_mode: encode and send one operation on the caller's thread."""
        with self._sync_lock:  # the transport's session is used by one thread at a time
            self._popped += 1
            encoded = self._encode(op)
            if encoded is not None:
                self._deliver([encoded])
