"""The delivery thread: the only place that owns a thread. It asks the policies what to do and
the I/O parts to do it.

Each turn of the loop: encode what callers queued (``_queue.Backlog``), then pick the next
request. A batch that failed and waits for its retry (``_retry.RetryPolicy``) does not hold the
others back; a new batch takes everything waiting (up to ``max_batch_size`` and
``max_batch_bytes``) once ``flush_at`` operations wait or ``flush_interval`` passed; and every
request waits for the request budget (``_pacer.Pacer``). While it waits, the thread keeps
encoding, so the next batch is ready when the budget allows.

Shutdown is one state machine with one deadline: ``begin_stop`` tells the thread to send what it
can before the deadline, ``finish_stop`` waits until then, cuts a request still in flight, and
reports every operation left (``dropped["shutdown"]``). Nothing raises out of the thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from typing import Callable, Optional

from ._answers import Answer, Verdict, classify, failure_of, skipped_operations
from ._errors import DeliveryError
from ._log import ThrottledWarning, logger
from ._operations import MAX_REQUEST_BYTES
from ._options import Options
from ._pacer import Pacer
from ._queue import Backlog, Encoded, Marker, batch_due, one_by_one
from ._retry import Failure
from ._serialize import (
    InsertIds,
    Operation,
    Reported,
    batch_body,
    encode_operation,
    encode_operations,
)
from ._spool import CALL, OP, PendingBatch, SpoolDirectory, SpoolError
from ._spool_calls import pack_call, unpack_call
from ._spooling import Origin, SpoolFeed, batch_elements
from ._stats import Stats
from ._transport import Transport

Reporter = Callable[[DeliveryError, list[Reported]], None]

_ENVELOPE = batch_body([])
_MAX_OPERATION_BYTES = MAX_REQUEST_BYTES - len(_ENVELOPE) - 64
"""A single operation whose JSON is larger than this cannot be sent, even alone."""
MAX_RETRYING = 2
"""New batches are formed only while fewer batches than this wait for a retry: during an outage
the rest waits in the queue (bounded by bytes) instead of multiplying failing requests."""
SPOOL_WAKE_AT = 1_000
HELD_WAKE_AT = 1_000
"""While the request budget holds a due batch back, callers wake the thread every this many."""
CUT_GRACE = 0.5
"""After a request is cut at the shutdown deadline, how long to wait for the thread to see it."""
_ENCODE_SLICE = 2_000
"""Operations encoded per turn of the loop, so a backlog never delays a due request for long."""
_ROOM_CHUNK = 256
"""Operations taken off the raw queue and encoded together; the room is re-measured after each."""


class Clock:
    """Time for the delivery thread. Tests swap in one that jumps instead of sleeping."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, when: float, wake: threading.Event) -> None:
        """Wait until ``when`` or until ``wake`` is set, whichever comes first."""
        wake.wait(max(0.0, when - self.now()))


class _Sender:
    """Runs one request at a time on a thread of its own, so the one waiting for the answer
    can keep a wall-clock deadline on it (``cut_if_late``) and, for the worker, go on encoding
    what callers queue meanwhile (the queue's byte bound stays measured, the next batch is
    ready when the answer comes). Only the request runs here: whatever the answer changes is
    the waiter's. ``notify`` is set with each answer, as is ``finished``.

    Without its thread (one that could not be started, e.g. at interpreter exit on Python
    3.12, or a process out of threads) the request runs on the caller's thread instead, bounded
    by the socket timeouts alone.
    """

    def __init__(self, transport: Transport, notify: threading.Event) -> None:
        self._transport = transport
        self._notify = notify
        self._job: Optional[tuple[bytes, bool, str, Optional[float]]] = None
        self._has_job = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.finished = threading.Event()
        self.answer: Optional[Answer] = None
        self.cut_at = 0.0
        """A ``time.monotonic()`` after which the request in progress is cut."""

    def ensure_thread(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return True
        try:
            thread = threading.Thread(target=self._run, name="sankofa-sdk-sender", daemon=True)
            thread.start()
        except RuntimeError:  # "can't start new thread" (or "can't create new thread at
            return False  # interpreter shutdown"): the caller's thread does the request
        self._thread = thread
        return True

    def start(self, data: bytes, gzipped: bool, key: str, time_left: Optional[float]) -> None:
        self.answer = None
        self.finished.clear()
        self.cut_at = time.monotonic() + self._transport.budget(time_left) + 0.05
        job = (data, gzipped, key, time_left)
        if not self.ensure_thread():
            self._finish(self._transport.send(*job))
            return
        self._job = job
        self._has_job.set()

    def cut_if_late(self) -> float:
        """Cut the request if its time is up; else the seconds left until it is."""
        left = self.cut_at - time.monotonic()
        if left <= 0 and self.answer is None:
            self._transport.abort()
        return max(0.0, left)

    def stop(self) -> None:
        self._job = None
        self._has_job.set()

    def _finish(self, answer: Answer) -> None:
        self.answer = answer
        self.finished.set()
        self._notify.set()

    def _run(self) -> None:
        while True:
            self._has_job.wait()
            self._has_job.clear()
            job = self._job
            if job is None:
                return
            try:
                answer = self._transport.send(*job)  # never raises, but be sure: the waiter waits
            except BaseException as exc:
                answer = Answer(None, {}, b"", Failure.RESET, type(exc).__name__)
            self._finish(answer)


class _Batch:
    """Operations sent together; the same body and Idempotency-Key on every retry."""

    __slots__ = (
        "body",
        "count",
        "first_failure_at",
        "items",
        "keep_on_429",
        "key",
        "next_try_at",
        "noted",
        "recovered",
        "retries",
        "wire",
    )

    def __init__(self, items: list[Encoded], *, keep_on_429: bool = False) -> None:
        self.items = items
        self.count = sum(item.operations for item in items)
        """Operations in the batch (an item is a run of one or more)."""
        self.body: Optional[bytes] = None
        self.noted = False
        """Noted in the spool directory its operations came from (see ``_spooling``)."""
        self.recovered: Optional[tuple[SpoolDirectory, PendingBatch]] = None
        """A batch a dead process was sending, resent with its body and key."""
        self.keep_on_429 = keep_on_429
        """Resend this very batch after a 429 (sync mode) instead of re-queueing its items."""
        self.key = uuid.uuid4().hex
        self.retries = 0
        self.first_failure_at = 0.0
        self.next_try_at = 0.0
        self.wire: Optional[tuple[bytes, bool]] = None

    @property
    def reported(self) -> list[Reported]:
        return [element for run in self.items for element in run.elements()]

    @property
    def origins(self) -> list[Origin]:
        return [e.origin for e in self.items if e.origin is not None]


class Worker:
    def __init__(
        self,
        *,
        options: Options,
        transport: Transport,
        stats: Stats,
        report: Reporter,
        lib_version: str,
        clock: Optional[Clock] = None,
    ) -> None:
        self._options = options
        self._policy = options.retry
        self._transport = transport
        self._stats = stats
        self._report = report
        self._lib_version = lib_version
        self._clock = clock if clock is not None else Clock()
        self._random = random.Random()
        self._warnings = ThrottledWarning()
        self._init_state()

    def _init_state(self) -> None:
        self._backlog = Backlog(self._options)
        self._raw = self._backlog.raw
        self._wake_at = self._options.flush_at
        # With a spool the thread reads calls back from disk; waking it every flush_at calls
        # would cost the callers more in thread switches than it gains (the data is safe on
        # disk, and the periodic wake still takes whatever is there after flush_interval).
        self._spool_wake_at = max(self._options.flush_at, SPOOL_WAKE_AT)
        self._wake = threading.Event()
        self._room_freed = threading.Condition()
        self._blocked_callers = 0
        self._start_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self._deadline: Optional[float] = None
        self._last_chance_used = False
        self._held_back = False
        self._closed_for_submit = False
        self._state_lock = threading.Lock()
        self._retrying: list[_Batch] = []
        self._in_flight: Optional[_Batch] = None
        self._in_flight_since = 0.0
        self._sender = _Sender(self._transport, self._wake)
        self._sync_sender = _Sender(self._transport, threading.Event())
        self._abandoned = False
        self._barriers: deque[tuple[int, Marker]] = deque()
        self._waiting_since: Optional[float] = None
        self._raw_empty_at = self._clock.now()
        self._encoded_total = 0
        self._sync_lock = threading.RLock()  # on_error may call track() again in sync mode
        self._quota_until = 0.0
        self._sync_wake = threading.Event()
        self._waiting_markers: list[Marker] = []
        self._insert_ids = InsertIds()
        self.pacer = Pacer(
            self._options.rate_limit,
            batch_size=self._options.max_batch_size,
            max_pause=self._policy.max_retry_after,
        )
        self.spool: Optional[SpoolFeed] = None
        self.spool = self._open_spool()
        if self.spool is not None:
            self._start()  # at once: directories a dead process left are delivered now

    def _open_spool(self) -> Optional[SpoolFeed]:
        options = self._options
        if options.spool_dir is None or options.sync_mode or not options.send:
            return None
        try:
            return SpoolFeed(
                options.spool_dir, max_bytes=options.max_spool_bytes, fsync=options.spool_fsync
            )
        except OSError as exc:
            self._spool_failed(exc)
            return None

    def _spool_failed(self, exc: OSError) -> None:
        """The disk refused: go on in memory, and say so once. What is already on disk is
        still read and delivered."""
        feed = self.spool
        if feed is not None:
            if not feed.writable:
                return  # said already
            feed.writable = False
            if feed.own is not None:
                feed.own.stop_writing()
        self._stats.add_spool_error()
        error = DeliveryError(
            f"the spool in {self._options.spool_dir} cannot be written ({exc}); operations are "
            "kept in memory from now on",
            reason="spool_unavailable",
        )
        logger.error("%s", error)
        try:
            self._report(error, [])
        except BaseException:
            logger.exception("error while reporting the spool's failure")

    # --- the caller's side ----------------------------------------------------------------

    def submit(self, op: Operation) -> bool:
        """Queue ``op``; False (nothing queued) when the queue is full. Never blocks."""
        raw = self._raw
        if len(raw) >= self._backlog.room:
            return False
        raw.append(op)
        if self._thread is None:
            self._start()
        if len(raw) >= self._wake_at and not self._wake.is_set():
            self._wake.set()
        if self._closed_for_submit:
            self._report_late()  # the worker is gone: whatever is left is reported, not lost
        return True

    def submit_spooled(self, op: Operation) -> bool:
        """With a spool: encode ``op`` here and write it to disk before returning. False when
        the spool is full (``max_spool_bytes``). A disk that refuses sends it to memory."""
        spool = self.spool
        if spool is None or not spool.writable:
            return self.submit(op)
        # Plain values are written as they are: the thread encodes them when it reads them
        # back, as it would from memory (and gives the event its $insert_id then: until a batch
        # with it is noted in the spool, nobody has seen it). The rest as JSON, encoded here.
        data = pack_call(op)
        kind = CALL
        if data is None or len(data) > _MAX_OPERATION_BYTES:
            data, kind = self._encode(op, self._insert_ids.next() if op[0] == "track" else None), OP
            if data is None:
                return True  # reported as invalid or too large, like the thread would
        try:
            unread = spool.append(data, kind)
        except SpoolError as exc:
            self._spool_failed(exc)
            return self.submit(op)
        if unread is None:
            return False
        if self._thread is None:
            self._start()
        if unread >= self._spool_wake_at and not self._wake.is_set():
            self._wake.set()
        return True

    def submit_waiting(self, op: Operation, timeout: float) -> bool:
        """``submit``, waiting up to ``timeout`` seconds for room when the queue is full."""
        if self.submit(op):
            return True
        if threading.current_thread() is self._thread:
            return False  # on_error calling track: waiting for ourselves would never end
        end = time.monotonic() + timeout
        with self._room_freed:
            self._blocked_callers += 1
            try:
                while not self._stopping:
                    if self.submit(op):
                        return True
                    left = end - time.monotonic()
                    if left <= 0:
                        return False
                    self._wake.set()  # room comes from the worker encoding and sending
                    self._room_freed.wait(min(left, 0.05))
            finally:
                self._blocked_callers -= 1
        return False

    @property
    def accepted(self) -> int:
        """Operations taken so far: those the worker encoded, those still raw, and those
        written to our own spool (which the thread reads back without counting again)."""
        spool = self.spool
        spooled = 0 if spool is None or spool.own is None else spool.own.next_seq - 1
        return self._encoded_total + self.raw_count + spooled

    @property
    def raw_count(self) -> int:
        return sum(1 for item in list(self._raw) if type(item) is tuple)

    @property
    def queued(self) -> int:
        """Operations accepted and not yet finished (raw, encoded, retrying or in flight)."""
        with self._state_lock:
            held = sum(b.count for b in self._retrying)
            if self._in_flight is not None:
                held += self._in_flight.count
        unread = self.spool.unread() if self.spool is not None else 0
        return self.raw_count + self._backlog.encoded_count + held + unread

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed_for_submit:
                thread = threading.Thread(target=self._run, name="sankofa-sdk-worker", daemon=True)
                # The first operation's flush_interval runs from now, as if the queue had been
                # seen empty just before it: no request for a lone first operation of a burst.
                self._raw_empty_at = self._clock.now()
                # Both threads now, not at the first request: at interpreter exit a new
                # thread may be refused (Python 3.12), and the queue would never be sent.
                self._sender.ensure_thread()
                thread.start()
                self._thread = thread

    def flush(self, timeout: Optional[float]) -> bool:
        """Wait until everything queued before this call was delivered or finally failed."""
        if threading.current_thread() is self._thread:
            logger.warning("flush() called from the delivery thread (on_error?); ignored")
            return False
        if self._thread is None and not self._raw and self.spool is None:
            return True  # nothing was ever queued (or we are a fresh fork)
        if self._closed_for_submit:
            return self.queued == 0
        marker = Marker()
        if self.spool is not None and self.spool.own is not None:
            marker.spool_target = self.spool.own.next_seq - 1
        self._raw.append(marker)
        if self._closed_for_submit:
            self._report_late()  # shutdown ended meanwhile: nobody else will see the marker
        if self._thread is None:
            self._start()
        self._wake.set()
        return marker.wait(timeout)

    def begin_stop(self, deadline: float) -> None:
        """Start shutting down: send what can be sent before ``deadline`` (a ``time.monotonic``)."""
        self._deadline = self._clock.now() + max(0.0, deadline - time.monotonic())
        self._stopping = True
        self._wake.set()
        self._sync_wake.set()
        with self._room_freed:
            self._room_freed.notify_all()

    def finish_stop(self, deadline: float) -> None:
        """Wait for the thread until ``deadline``, cut a request still in flight, then report
        whatever is left. Several clients at exit use the three steps apart, to share one
        deadline and one grace period (see ``_client``)."""
        self.join_until(deadline)
        if self.cut():
            self.join_until(time.monotonic() + CUT_GRACE)
        self.report_leftovers(deadline)

    def join_until(self, when: float) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, when - time.monotonic()))

    def cut(self) -> bool:
        """Cut the request in flight if the thread is still at work; True if it was."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return False
        self._transport.abort()
        return True

    def report_leftovers(self, deadline: float) -> None:
        """Report everything not delivered (a sync-mode send still going is cut first)."""
        acquired = self._sync_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        if not acquired:
            self._transport.abort()  # it reports its own operation when the cut reaches it
            acquired = self._sync_lock.acquire(timeout=CUT_GRACE)
        try:
            self._abandon_leftovers()
        finally:
            if acquired:
                self._sync_lock.release()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh, empty queue and no thread (started on the next call).

        The parent's queued operations stay the parent's to send; the child must not resend them.
        With a spool, the child closes its copies of the parent's files (the parent keeps its
        directory and its lock) and makes a directory of its own.
        """
        if self.spool is not None:
            self.spool.forget_after_fork()
        self._init_state()

    # --- the worker's side ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                try:
                    if not self._turn():
                        return
                except BaseException:  # never let the thread die; on_error may raise SystemExit
                    logger.exception("unexpected error in the delivery thread; it keeps running")
        finally:
            self._sender.stop()
            if self._abandoned:
                self._report_late()  # taken from the queue while shutdown was reporting

    def _turn(self) -> bool:
        """One step of the loop; False when the thread should end."""
        self._wake.clear()  # before looking at the queue: a call after this wakes the wait below
        if self._abandoned:
            return False
        now = self._clock.now()
        self._encode_raw(now)
        if self._in_flight is not None:
            return self._await_answer()
        self._release_barriers()
        stopping = self._stopping
        if stopping and (self._nothing_left() or self._past_deadline(now)):
            return False
        urgent = stopping or bool(self._barriers) or bool(self._waiting_markers)
        action_at, retry = self._next_action(now, urgent)
        if action_at == float("inf"):
            if stopping:
                return False
            self._wake.wait(self._options.flush_interval)  # idle: callers wake us
            return True
        if stopping and self._deadline is not None and action_at > self._deadline:
            return False  # nothing more can go before the deadline
        pacer_at = self.pacer.ready_at()
        start_at = max(action_at, pacer_at)
        if stopping and self._deadline is not None and start_at > self._deadline:
            if self._last_chance_used:
                return False
            # The budget says wait past the deadline: one last request, since a 429 costs
            # less than certain loss.
            self._last_chance_used = True
            start_at = now
        if start_at > now:
            if action_at <= now:
                self._held_back = True  # due, but the request budget says wait
                # Nothing can go before start_at: callers need not wake us every flush_at
                # calls to say a batch is due, only often enough to keep encoding in chunks.
                self._wake_at = max(self._options.flush_at, HELD_WAKE_AT)
            if self._raw and len(self._raw) >= self._wake_at:
                return True  # more to encode first
            self._clock.sleep_until(start_at, self._wake)
            return True
        self._wake_at = self._options.flush_at
        held_back, self._held_back = self._held_back, False
        if retry is not None:
            with self._state_lock:  # in flight the moment it leaves the list: never in neither
                if self._abandoned:
                    return False
                self._retrying.remove(retry)
                self._in_flight = retry
            self._send(retry, held_back)
        else:
            self._send_new(now, held_back)
        return True

    def _next_action(self, now: float, urgent: bool) -> tuple[float, Optional[_Batch]]:
        """When the next request is due, and the retry it is for (None: a new batch)."""
        retry = min(self._retrying, key=lambda b: b.next_try_at, default=None)
        retry_at = retry.next_try_at if retry is not None else float("inf")
        new_at = float("inf")
        if len(self._retrying) < MAX_RETRYING:
            backlog = self._backlog
            new_at = batch_due(
                backlog.encoded_count, self._waiting_since, now, self._options, urgent
            )
        if retry_at <= new_at:
            return retry_at, retry
        return new_at, None

    def _nothing_left(self) -> bool:
        if self._raw or self._backlog.encoded or self._retrying:
            return False
        return self.spool is None or self.spool.all_read()

    def _past_deadline(self, now: float) -> bool:
        return self._deadline is not None and now >= self._deadline

    # --- encoding -------------------------------------------------------------------------

    def _encode_raw(self, now: float) -> None:
        backlog = self._backlog
        raw = self._raw
        was_empty = not backlog.encoded
        first_seq = backlog.next_seq
        left = _ENCODE_SLICE
        while left > 0 and raw:
            # One chunk at a time: taken from the raw queue but not yet encoded, operations
            # are counted nowhere, so keep that to one chunk and the room stays true. (Callers
            # only append: the length can only grow while this takes.)
            count = min(len(raw), _ROOM_CHUNK, left)
            left -= count
            popleft = raw.popleft
            items = [popleft() for _ in range(count)]
            backlog.room -= count  # off the raw queue, not yet encoded: still takes its room
            if all(type(item) is tuple for item in items):
                self._encode_into_backlog(items)  # type: ignore[arg-type]
                continue
            ops: list[Operation] = []
            for item in items:
                if type(item) is tuple:
                    ops.append(item)
                    continue
                # A flush marker: what came before it is queued first.
                self._encode_into_backlog(ops)
                ops = []
                self._waiting_markers.append(item)  # type: ignore[arg-type]
            self._encode_into_backlog(ops)
        self._read_spool(now)
        self._place_markers()
        taken = backlog.next_seq - first_seq
        if taken:
            self.pacer.arrived(now, taken)
        if not raw:
            arrived_since = self._raw_empty_at
            self._raw_empty_at = now
        else:
            arrived_since = now
        if was_empty and backlog.encoded:
            # These arrived after the raw queue was last seen empty: their flush_interval runs
            # from then, so at low traffic a batch goes as soon as the periodic wake finds it.
            self._waiting_since = arrived_since
        self._update_room()

    def _read_spool(self, now: float) -> None:
        """Bring operations from disk into the queue, as much as ``max_queue_bytes`` allows."""
        feed = self.spool
        if feed is None:
            return
        for spool, pending in feed.adopt(now):
            self._retrying.append(self._recovered(spool, pending, now))
        backlog = self._backlog
        room = self._options.max_queue_bytes - backlog.encoded_bytes - backlog.held_bytes
        if room > 0:
            for found, origin in feed.read(room):
                data = found.payload if found.kind == OP else self._unpacked(found.payload, origin)
                if data is None:
                    origin.spool.finished([origin.segment])  # reported: the disk may forget it
                else:
                    backlog.add(data, origin)

    def _unpacked(self, payload: bytes, origin: Origin) -> Optional[bytes]:
        """The JSON of a call the spool kept as values (``_spool_calls``); None, reported,
        when it cannot be sent."""
        call = unpack_call(payload)
        if call is None:
            if self.spool is not None:
                self.spool.undecodable(origin.spool, len(payload))
            return None
        return self._encode(call, self._insert_ids.next() if call[0] == "track" else None)

    def _recovered(self, spool: SpoolDirectory, pending: PendingBatch, now: float) -> _Batch:
        """A batch a dead process noted as going out: resent as it was, with its key."""
        items = [
            Encoded(element, 0, None, len(element)) for element in batch_elements(pending.body)
        ]
        batch = _Batch(items)
        batch.key, batch.body, batch.noted = pending.key, pending.body, True
        batch.recovered = (spool, pending)
        batch.next_try_at = now
        self._backlog.hold(items)
        return batch

    def _place_markers(self) -> None:
        """Flushes become barriers once everything written to disk before them was read."""
        feed = self.spool
        read = feed.read_seq if feed is not None else 0
        waiting = self._waiting_markers
        while waiting and (feed is None or waiting[0].spool_target <= read):
            self._barriers.append((self._backlog.next_seq, waiting.pop(0)))

    def _update_room(self) -> None:
        self._backlog.update_room()
        if self._blocked_callers:
            with self._room_freed:
                self._room_freed.notify_all()

    def _encode_into_backlog(self, ops: list[Operation]) -> None:
        """Encode ``ops`` (one chunk at most) and queue them, then measure the room again:
        when operations suddenly grow (10 KB properties), callers get less room within a few
        hundred operations, not a whole slice later."""
        self._encode_chunk(ops)
        self._update_room()

    def _encode_chunk(self, ops: list[Operation]) -> None:
        """Encode ``ops`` together (their insert ids made at once) and queue them in order."""
        if not ops:
            return
        self._encoded_total += len(ops)
        backlog = self._backlog
        try:
            encoded, cut = encode_operations(ops, self._lib_version)
        except Exception:  # an operation the client should not have queued: find it alone
            for op in ops:
                data = self._encode(op)
                if data is None:
                    backlog.skip_seq()
                else:
                    backlog.add(data)
            return
        if not cut and max(map(len, encoded)) <= _MAX_OPERATION_BYTES and not self._debugging():
            backlog.add_many(encoded)  # the common case, without a look at each operation
            return
        for index, data in enumerate(encoded):
            if self._checked(ops[index], data, cut.get(index)) is None:
                backlog.skip_seq()
            else:
                backlog.add(data)

    def _debugging(self) -> bool:
        return self._options.debug and logger.isEnabledFor(logging.DEBUG)

    def _encode(self, op: Operation, insert_id: Optional[str] = None) -> Optional[bytes]:
        try:
            data, problems = encode_operation(op, self._lib_version, insert_id)
        except Exception as exc:
            # Accepted, so not "invalid" (a refusal at the call): counted as failed.
            self._fail(
                [op], DeliveryError(f"could not encode operation: {exc!r}", reason="unencodable")
            )
            return None
        return self._checked(op, data, problems)

    def _checked(
        self, op: Operation, data: bytes, problems: Optional[list[str]]
    ) -> Optional[bytes]:
        """``data`` if it can be sent; None (reported) when it is too large even alone."""
        if problems:
            self._warnings.warn(
                "cut:" + op[0],
                "%s %r: some values were cut: %s",
                op[0],
                op[2],
                "; ".join(problems),
            )
        if len(data) > _MAX_OPERATION_BYTES:
            message = (
                f"operation is {len(data)} bytes of JSON; the engine takes at most "
                f"{MAX_REQUEST_BYTES} per request"
            )
            self._fail([op], DeliveryError(message, reason="too_large"))
            return None
        if self._debugging():
            logger.debug("queued %s", data.decode("utf-8", "replace"))
        return data

    # --- sending --------------------------------------------------------------------------

    def _send_new(self, now: float, held_back: bool) -> None:
        options = self._options
        with self._state_lock:  # in flight the moment it leaves the queue: never in neither
            if self._abandoned:
                return
            items = self._backlog.take(
                options.max_batch_size, options.max_batch_bytes, len(_ENVELOPE)
            )
            batch = _Batch(items) if items else None
            self._in_flight = batch
        # What is left waits for its own trigger: flush_at more, or flush_interval from now.
        # A small remainder does not go right behind a full batch.
        self._waiting_since = now if self._backlog.encoded else None
        self._update_room()
        if batch is not None:
            self._send(batch, held_back)

    def _wire(self, batch: _Batch) -> Optional[tuple[bytes, bool]]:
        """The bytes to send for ``batch`` (kept for its retries); None if it cannot go whole."""
        if batch.wire is None:
            if batch.body is None:
                batch.body = batch_body([e.data for e in batch.items])
            if not batch.noted and self.spool is not None and batch.origins:
                self.spool.batch_starting(batch.key, batch.origins, batch.body)
                batch.noted = True
            batch.wire = self._transport.encode(batch.body)
        if len(batch.wire[0]) > MAX_REQUEST_BYTES:
            self._split_or_fail(batch, DeliveryError("batch too large", reason="too_large"))
            return None
        return batch.wire

    def _started(self, batch: _Batch, held_back: bool) -> float:
        options = self._options
        size = sum(e.size for e in batch.items)
        fullness = max(batch.count / options.max_batch_size, size / options.max_batch_bytes)
        started = self._clock.now()
        backlog = self._backlog.encoded_count + (self.spool.unread() if self.spool else 0)
        self.pacer.started(started, held_back=held_back, fullness=fullness, backlog=backlog)
        return started

    def _time_left(self, now: float) -> Optional[float]:
        return None if self._deadline is None else self._deadline - now

    def _send(self, batch: _Batch, held_back: bool) -> None:
        """Start ``batch`` on the sender; its answer is handled by a later turn."""
        wire = self._wire(batch)
        if wire is None:
            with self._state_lock:
                self._in_flight = None  # split or reported instead
            return
        with self._state_lock:
            self._in_flight = batch
        self._in_flight_since = self._started(batch, held_back)
        self._sender.start(*wire, batch.key, self._time_left(self._in_flight_since))

    def _await_answer(self) -> bool:
        answer = self._sender.answer
        if answer is None:
            left = self._sender.cut_if_late()  # timeout is a wall-clock deadline
            if not (self._raw and len(self._raw) >= self._wake_at):
                self._wake.wait(min(self._options.flush_interval, left + 0.01))
            return True
        with self._state_lock:
            batch, self._in_flight = self._in_flight, None
            if self._abandoned or batch is None:
                return False  # shutdown already reported these as not delivered
        self._handle(batch, answer, self._in_flight_since)
        return True

    def _send_here(self, batch: _Batch) -> None:
        """sync_mode: send ``batch`` on the caller's thread and handle the answer."""
        wire = self._wire(batch)
        if wire is None:
            return
        with self._state_lock:
            self._in_flight = batch
        started = self._started(batch, held_back=False)
        sender = self._sync_sender
        sender.start(*wire, batch.key, self._time_left(started))
        while not sender.finished.wait(sender.cut_if_late() + 0.01):
            pass
        answer = sender.answer
        assert answer is not None
        with self._state_lock:
            self._in_flight = None
            if self._abandoned:
                return
        self._handle(batch, answer, started)

    def _handle(self, batch: _Batch, answer: Answer, started: float) -> None:
        verdict = classify(answer)
        now = self._clock.now()
        if self._debugging():
            wire = batch.wire
            logger.debug(
                "POST %s: %d operation(s), %d bytes%s, key %s: %s in %.0f ms",
                self._transport.url,
                batch.count,
                len(wire[0]) if wire is not None else 0,
                " gzip" if wire is not None and wire[1] else "",
                batch.key,
                f"HTTP {answer.status} {answer.detail[:200]}"
                if answer.status is not None
                else f"no answer ({answer.detail})",
                (now - started) * 1000,
            )
        retry_after = self._policy.retry_after(answer.headers.get("Retry-After"))
        self.pacer.answered(
            started, answer.status, answer.headers, retry_after if answer.status == 429 else None
        )
        if verdict is Verdict.DELIVERED:
            self._delivered(batch, answer, now)
        elif verdict is Verdict.RATE_LIMITED:
            self._stats.add_rate_limited()
            if batch.retries == 0 and not batch.keep_on_429 and batch.recovered is None:
                # Refused before the engine looked at it: the operations rejoin the queue and
                # go again in a bigger batch once the budget allows.
                self._on_disk_cancelled(batch)
                self._backlog.put_back(batch.items)
                self._waiting_since = now
            else:
                # It may have been applied in part by an earlier attempt (a 503): keep the
                # body and the key so the engine can recognise it.
                batch.next_try_at = now
                self._retrying.append(batch)
        elif verdict is Verdict.RETRY:
            self._retry_later(batch, answer, now, retry_after)
        elif verdict in (Verdict.TOO_LARGE, Verdict.REJECTED):
            self._split_or_fail(batch, self._error(answer, verdict))
        else:
            if verdict is Verdict.QUOTA_EXCEEDED:
                # Retrying cannot succeed before the plan's quota turns: probe once a window.
                self.pacer.pause(now, self.pacer.window)
                self._quota_until = now + self.pacer.window
            self._log_refusal(answer, verdict)
            self._fail(batch.reported, self._error(answer, verdict), batch)

    def _delivered(self, batch: _Batch, answer: Answer, now: float) -> None:
        count = batch.count
        self._stats.add_delivered(count)
        skipped = skipped_operations(answer, count)
        if skipped:
            self._stats.add_skipped(skipped)
            self._warnings.warn(
                "skipped",
                "the engine accepted a batch but discarded %d of its %d operations "
                "(ids it treats as garbage); counted as skipped in stats()",
                skipped,
                count,
            )
        self._backlog.release(batch.items)
        self._on_disk_finished(batch)
        for waiting in self._retrying:
            waiting.next_try_at = min(waiting.next_try_at, now)  # the engine answers again
        self._update_room()

    def _retry_later(
        self, batch: _Batch, answer: Answer, now: float, retry_after: Optional[float]
    ) -> None:
        batch.retries += 1
        if batch.retries == 1:
            batch.first_failure_at = now
        wait = self._policy.wait(failure_of(answer), batch.retries, self._random.random())
        if retry_after is not None:
            wait = max(wait, retry_after)
        if self._policy.gives_up(batch.retries, now - batch.first_failure_at, wait):
            error = self._error(answer, Verdict.RETRY, retries=batch.retries - 1)
            self._fail(batch.reported, error, batch)
            return
        self._stats.add_retry()
        if batch.retries == 1:
            # Said at once (throttled), not only when the batch is given up minutes later: a
            # wrong port or a dead engine should be seen while it can still be fixed.
            policy = self._policy
            said = f"HTTP {answer.status}" if answer.status is not None else "no answer"
            self._warnings.warn(
                "retrying",
                "could not deliver to %s (%s: %s); retrying for up to %gs "
                "(max_retry_time) or %d retries, %d operation(s) waiting",
                self._transport.url,
                said,
                answer.detail,
                policy.max_retry_time,
                policy.max_retries,
                batch.count + self._backlog.encoded_count + len(self._raw),
            )
        logger.debug(
            "batch of %d answered %s (%s); retry %d in %.2fs",
            batch.count,
            answer.status,
            answer.detail,
            batch.retries,
            wait,
        )
        batch.next_try_at = now + wait
        self._retrying.append(batch)

    def _split_or_fail(self, batch: _Batch, error: DeliveryError) -> None:
        if batch.count < 2:
            self._fail(batch.reported, error, batch)
            return
        items = one_by_one(batch.items)
        middle = len(items) // 2
        now = self._clock.now()
        self._on_disk_cancelled(batch)  # refused whole: the halves are new batches, new keys
        for half in (items[:middle], items[middle:]):
            part = _Batch(half)
            part.next_try_at = now  # each half goes as soon as the budget allows
            self._retrying.append(part)

    def _error(self, answer: Answer, verdict: Verdict, retries: int = 0) -> DeliveryError:
        status = answer.status
        reason = {
            Verdict.RETRY: "retries_exhausted",
            Verdict.TOO_LARGE: "too_large",
            Verdict.REJECTED: "rejected",
            Verdict.QUOTA_EXCEEDED: "quota_exceeded",
            Verdict.MISCONFIGURED: "unauthorized" if status in (401, 403) else "misconfigured",
        }.get(verdict, "failed")
        said = f"HTTP {status}" if status is not None else "no answer"
        detail = answer.detail
        if verdict is Verdict.RETRY:
            detail = f"gave up after {retries} retries: {detail}"
        return DeliveryError(
            f"not delivered to {self._transport.url} ({said}): {detail}",
            reason=reason,
            status=status,
        )

    def _log_refusal(self, answer: Answer, verdict: Verdict) -> None:
        status = answer.status
        if verdict is Verdict.QUOTA_EXCEEDED:
            hint = "the project's plan quota is used up; nothing is accepted until it renews"
        else:
            hint = {
                401: "no API key was sent",
                403: "the API key is not valid for this engine, or the IP/origin is not allowed",
                404: "the host does not serve /api/v1/batch; check the host option",
                405: "the host does not accept POST /api/v1/batch; check the host option",
            }.get(status or 0, "the engine refused the request")
            if status is not None and 300 <= status < 400:
                hint = "the host redirects; set the host option to the URL it redirects to"
        self._warnings.warn(
            f"refused:{status}",
            "the engine answered %s to %s (%s): %s. Operations are dropped and "
            "reported to on_error until this is fixed.",
            status,
            self._transport.url,
            answer.detail,
            hint,
            level=logging.ERROR,
            interval=300.0,
        )

    def _fail(
        self, ops: list[Reported], error: DeliveryError, batch: Optional[_Batch] = None
    ) -> None:
        if batch is not None:
            self._backlog.release(batch.items)
            self._on_disk_finished(batch)
            self._update_room()
        self._stats.add_dropped(error.reason, len(ops))
        try:
            self._report(error, ops)
        except BaseException:
            logger.exception("error while reporting a failed delivery")

    def _on_disk_finished(self, batch: _Batch) -> None:
        feed = self.spool
        if feed is None:
            return
        if batch.recovered is not None:
            feed.recovered_finished(*batch.recovered)
        elif batch.noted:
            feed.batch_finished(batch.key, batch.origins)
            feed.tidy(self._own_pending())

    def _on_disk_cancelled(self, batch: _Batch) -> None:
        if self.spool is not None and batch.noted and batch.recovered is None:
            self.spool.batch_cancelled(batch.key, batch.origins)

    def _own_pending(self) -> list[PendingBatch]:
        """Our own batches noted on disk and not finished (kept when batches.log is rewritten)."""
        feed = self.spool
        own = feed.own if feed is not None else None
        batches = [*self._retrying, *([self._in_flight] if self._in_flight else [])]
        return [
            PendingBatch(b.key, [o.seq for o in b.origins], b.body or b"")
            for b in batches
            if b.noted and b.origins and b.origins[0].spool is own
        ]

    def _release_barriers(self) -> None:
        barriers = self._barriers
        if not barriers:
            return
        pending = [b.items[0].seq for b in self._retrying if b.items]
        oldest = self._backlog.oldest_seq()
        if oldest is not None:
            pending.append(oldest)
        first_unfinished = min(pending, default=None)
        while barriers and (first_unfinished is None or barriers[0][0] <= first_unfinished):
            barriers.popleft()[1].set()

    # --- the end --------------------------------------------------------------------------

    def _abandon_leftovers(self) -> None:
        """Report everything not finished as dropped by the shutdown; later calls too."""
        with self._state_lock:
            self._abandoned = True
            self._closed_for_submit = True
            batches = list(self._retrying)
            if self._in_flight is not None:
                batches.append(self._in_flight)
            self._retrying.clear()
            self._in_flight = None
        # What is on disk is not lost: it stays in the spool for the next process to deliver.
        ops: list[Reported] = [op for batch in batches if not batch.noted for op in batch.reported]
        left_on_disk = sum(batch.count for batch in batches if batch.noted)
        encoded, raw, markers = self._backlog.drain_all()
        self._encoded_total += len(raw)  # accepted, though the worker never took them
        ops.extend(element for e in encoded if e.origin is None for element in e.elements())
        left_on_disk += sum(1 for e in encoded if e.origin is not None)
        ops.extend(raw)
        markers.extend(self._waiting_markers)
        self._waiting_markers = []
        feed = self.spool
        if feed is not None:
            left_on_disk += feed.unread()
            self._stats.set_left_in_spool(left_on_disk)
            feed.close(delivered_all=left_on_disk == 0)
            if left_on_disk:
                logger.warning(
                    "shutdown: %d operation(s) not delivered yet stay in the spool "
                    "%s; the next client on the same spool_dir delivers them",
                    left_on_disk,
                    feed.root,
                )
        for _, marker in self._barriers:
            marker.set()
        self._barriers.clear()
        for marker in markers:
            marker.set()
        if ops:
            logger.error(
                "shutdown: %d operation(s) could not be delivered in time and are "
                "dropped (reported to on_error, counted as dropped['shutdown'])",
                len(ops),
            )
            self._fail(ops, DeliveryError("not delivered before shutdown", reason="shutdown"))

    def _report_late(self) -> None:
        """A call that raced the end of shutdown: report it (and anything like it) now."""
        with self._state_lock:
            batches, self._retrying = self._retrying, []
        encoded, raw, markers = self._backlog.drain_all()
        self._encoded_total += len(raw)
        ops: list[Reported] = [op for b in batches if not b.noted for op in b.reported]
        ops += [element for e in encoded if e.origin is None for element in e.elements()]
        ops += raw
        for marker in markers:
            marker.set()
        if ops:
            self._fail(ops, DeliveryError("not delivered before shutdown", reason="shutdown"))

    # --- sync mode ------------------------------------------------------------------------

    def deliver_now(self, op: Operation) -> None:
        """sync_mode: encode and send one operation on the caller's thread, with retries.

        It waits for the request budget and for backoffs like the thread would, at most
        ``max_retry_time`` in all, and never past a shutdown.
        """
        with self._sync_lock:  # the transport's session is used by one thread at a time
            self._encoded_total += 1
            data = self._encode(op)
            if data is None:
                return
            batch = _Batch([Encoded(data, 0, None, len(data))], keep_on_429=True)
            give_up_at = self._clock.now() + self._policy.max_retry_time
            while True:
                if self._clock.now() < self._quota_until:
                    error = DeliveryError("the plan's quota is used up", reason="quota_exceeded")
                    self._fail([op], error)
                    return
                # Each call is its own request in sync mode: only a pause the engine asked for
                # (a 429) holds it back, not the spacing a background thread would keep.
                wait_until = max(batch.next_try_at, self.pacer.paused_until)
                if wait_until > give_up_at or self._stopping:
                    reason = "shutdown" if self._stopping else "retries_exhausted"
                    self._fail([op], DeliveryError("not delivered in time", reason=reason))
                    return
                if wait_until > self._clock.now():
                    self._clock.sleep_until(wait_until, self._sync_wake)
                    continue
                self._send_here(batch)
                if batch not in self._retrying:
                    return  # delivered, or failed and reported
                self._retrying.remove(batch)
