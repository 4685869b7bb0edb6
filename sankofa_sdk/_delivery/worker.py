"""The delivery thread: the only place that owns a thread. It asks the policies what to do and
the I/O parts to do it (see the package's docstring for the map).

Each turn of the loop: bring what arrived into the queue (``Source.fill``), then, unless a
request is in flight, ``decide`` what to do at this moment: nothing (idle), sleep until a time,
send a new batch, resend a waiting one, or stop. ``decide`` is a function of the state and the
clock's ``now``; the turn only carries out what it says.

Shutdown is one state machine with one deadline (``Phase``): ``begin_stop`` tells the thread to
send what it can before the deadline, ``finish_stop`` waits until then, cuts a request still in
flight, and reports every operation left, once: never sent (``dropped["shutdown"]``), or sent
without an answer (``unknown_fate``: the engine may have stored them). The deadline moves while
delivery makes progress (``ShutdownBudget``), so a long queue that drains is not cut, and an
engine that is down or hung still ends the shutdown in ``quiet`` seconds. Nothing raises out of
the thread.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Optional, Union

from .._answers import Answer, Verdict, classify, failure_of, maybe_applied, skipped_operations
from .._errors import DeliveryError
from .._log import ThrottledWarning, logger
from .._operations import MAX_REQUEST_BYTES
from .._options import Options
from .._pacer import Pacer
from .._queue import Backlog, Encoded, Marker, batch_due, one_by_one
from .._serialize import Operation, Reported, batch_body
from .._stats import Stats
from .batch import Batch, BatchLedger, BatchState
from .clock import Clock
from .encoding import ENVELOPE, OperationEncoder
from .observe import DeliveryObserver, PipelineState, read_pipeline
from .request import RequestThread
from .sources import MemorySource, Source
from .spool_source import SpoolSource, say_unavailable
from .transport import Transport
from .wire import BodyEncoder

Reporter = Callable[[DeliveryError, list[Reported]], None]

MAX_RETRYING = 2
"""New batches are formed only while fewer batches than this wait for a retry: during an outage
the rest waits in the queue (bounded by bytes) instead of multiplying failing requests."""
HELD_WAKE_AT = 1_000
"""While the request budget holds a due batch back, callers wake the thread every this many."""
SPOOL_WAKE_AT = 1_000
"""With a spool, callers wake the thread every this many calls: the data is safe on disk, and
waking it every ``flush_at`` would cost the callers more in thread switches than it gains (the
periodic wake still takes whatever is there after ``flush_interval``)."""
CUT_GRACE = 0.5
"""After a request is cut at the shutdown deadline, how long to wait for the thread to see it."""


class ShutdownBudget(NamedTuple):
    """How long a shutdown may go on: ``quiet`` seconds without progress (an answer that
    finishes a batch: a 2xx or a final refusal), and never more than ``at_most`` in all.

    Counting time without progress, not total time, lets a script's long queue drain at exit
    while the engine keeps taking it, and still ends quickly when the engine is down, hangs or
    only answers 429 and 5xx."""

    quiet: float
    at_most: float

    def deadline(self, started: float, progress_at: float) -> float:
        return min(started + max(self.quiet, self.at_most), progress_at + self.quiet)


UNATTENDED: set[Worker] = set()
"""Workers stopping with nobody waiting for them (a client dropped without shutdown(), or
shutdown() called from on_error on the delivery thread): the exit hook (``_client``) waits for
them, cuts them and reports what they leave, as it does for live clients. Each leaves the set
as its thread ends."""
_UNATTENDED_LOCK = threading.Lock()


class Phase(enum.Enum):
    RUNNING = "running"
    STOPPING = "stopping"
    """Sending what can go before the deadline; calls are still taken."""
    CLOSED = "closed"
    """What was left is reported (or left on disk); a later call is reported at once."""


_CLOSED = Phase.CLOSED


# --- what a turn does: decided from (state, now), then carried out ---------------------------


class Idle(NamedTuple):
    """Nothing is due: wait for callers (or ``flush_interval``)."""


class Sleep(NamedTuple):
    until: float
    held_back: bool
    """A batch is due, and only the request budget holds it back."""


class Send(NamedTuple):
    batch: Optional[Batch]
    """A waiting batch to resend; None: a new batch from the queue."""
    last_chance: bool = False
    """Past the budget, at the deadline: one last request, since a 429 costs less than loss."""


class Stop(NamedTuple):
    """The thread ends: shutdown has nothing left it can send."""


Action = Union[Idle, Sleep, Send, Stop]


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
        self._body_encoder = BodyEncoder(options, transport.url)
        self._stats = stats
        self._report = report
        self._lib_version = lib_version
        self._clock = clock if clock is not None else Clock()
        self._random = random.Random()
        self._warnings = ThrottledWarning()
        self._lending = False
        self.observer = DeliveryObserver()
        """Told about every answer: for ``health()`` and the metrics integrations."""
        self._init_state()

    def _init_state(self) -> None:
        options = self._options
        self._backlog = Backlog(options)
        self._raw = self._backlog.raw
        self._wake_at = options.flush_at
        self._wake = threading.Event()
        self._room_freed = threading.Condition()
        self._blocked_callers = 0
        self._start_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._phase = Phase.RUNNING
        self._deadline: Optional[float] = None
        self._budget = ShutdownBudget(0.0, 0.0)
        self._stop_started = 0.0
        self._last_chance_used = False
        self._cut_at_deadline = False
        self._report_on_exit = False
        self._on_stopped: Optional[Callable[[], None]] = None
        self._end_lock = threading.RLock()
        self._held_back = False
        self._ledger = BatchLedger()
        self._request = RequestThread(self._transport, self._wake, self._clock, options.timeout)
        self._sync_request = RequestThread(
            self._transport, threading.Event(), self._clock, options.timeout
        )
        self._barriers: deque[tuple[int, Marker]] = deque()
        self._turns: Optional[Turns] = Turns() if self._lending else None
        self._flushes: set[Marker] = set()
        self._due_waits: deque[Marker] = deque()  # flush_if_due() callers (see _turn)
        self._last_request_at = float("-inf")
        self._waiting_since: Optional[float] = None
        self._raw_empty_at = self._clock.now()
        self._sync_lock = threading.RLock()  # on_error may call track() again in sync mode
        self._quota_until = 0.0
        self._sync_wake = threading.Event()
        self.pacer = Pacer(
            options.rate_limit,
            batch_size=options.max_batch_size,
            max_pause=self._policy.max_retry_after,
        )
        self._encoder = OperationEncoder(self._lib_version, options.debug, self._fail)
        source = self._open_source()
        self._source: Source = source
        if isinstance(source, SpoolSource):
            # Calls go to disk before they return; callers wake the thread less often.
            self._append_to_disk = source.append
            self._spool_wake_at = max(options.flush_at, SPOOL_WAKE_AT)
            self.submit = self._submit_spooled  # type: ignore[method-assign]
            self._start()  # at once: directories a dead process left are delivered now

    def _open_source(self) -> Source:
        options = self._options
        memory = MemorySource(self._backlog, self._encoder, self._update_room)
        if options.spool_dir is None or options.sync_mode or not options.send:
            return memory
        try:
            return SpoolSource(
                self._backlog,
                self._encoder,
                self._update_room,
                options=options,
                clock=self._clock,
                stats=self._stats,
                report=self._report_safely,
            )
        except OSError as exc:
            say_unavailable(options.spool_dir, exc, self._stats, self._report_safely)
            return memory

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
        if self._phase is _CLOSED:
            self._report_late()  # the worker is gone: whatever is left is reported, not lost
        return True

    def _submit_spooled(self, op: Operation) -> bool:
        """With a spool: written to disk before the call returns. False when the spool is
        full (``max_spool_bytes``); a disk that refuses sends it to memory."""
        unread = self._append_to_disk(op)
        if unread < 0:
            return Worker.submit(self, op)
        if unread == 0:
            return False
        if unread >= self._spool_wake_at and not self._wake.is_set():
            self._wake.set()
        return True

    def submit_waiting(self, op: Operation, timeout: float) -> bool:
        """``submit``, waiting up to ``timeout`` seconds for room when the queue is full."""
        if self.submit(op):
            return True
        if threading.current_thread() is self._thread:
            return False  # on_error calling track: waiting for ourselves would never end
        end = self._clock.now() + timeout
        with self._room_freed:
            self._blocked_callers += 1
            try:
                while self._phase is Phase.RUNNING:
                    if self.submit(op):
                        return True
                    left = end - self._clock.now()
                    if left <= 0:
                        return False
                    self._wake.set()  # room comes from the worker encoding and sending
                    self._room_freed.wait(min(left, 0.05))
            finally:
                self._blocked_callers -= 1
        return False

    @property
    def accepted(self) -> int:
        """Operations taken so far (encoded, still raw, or written to our spool)."""
        return self._source.accepted()

    @property
    def queued(self) -> int:
        """Operations accepted and not yet finished (raw, encoded, retrying or in flight)."""
        backlog = self._backlog
        return (
            backlog.raw_count()
            + backlog.encoded_count
            + self._ledger.held()
            + self._source.unread()
        )

    def pipeline_state(self) -> PipelineState:
        """The queue, the spool and the pacer now, for ``health()`` and the metrics (any thread)."""
        return read_pipeline(
            self._options,
            self._backlog,
            self._source,
            self.pacer,
            queued=self.queued,
            now=self._clock.now(),
            quota_until=self._quota_until,
        )

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and self._phase is not _CLOSED:
                thread = threading.Thread(target=self._run, name="sankofa-sdk-worker", daemon=True)
                # The first operation's flush_interval runs from now, as if the queue had been
                # seen empty just before it: no request for a lone first operation of a burst.
                self._raw_empty_at = self._clock.now()
                # Both threads now, not at the first request: at interpreter exit a new
                # thread may be refused (Python 3.12), and the queue would never be sent.
                self._request.ensure_thread()
                thread.start()
                self._thread = thread

    def clock_now(self) -> float:
        return self._clock.now()

    def on_own_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def flush(self, timeout: Optional[float]) -> bool:
        """Wait until everything queued before this call was delivered or finally failed."""
        if self.on_own_thread():
            logger.warning("flush() called from the delivery thread (on_error?); ignored")
            return False
        if self._thread is None and not self._raw:
            return True  # nothing was ever queued (or we are a fresh fork)
        if self._phase is _CLOSED:
            return self.queued == 0
        marker = Marker()
        self._flushes.add(marker)
        self._source.flush_marker(marker)
        if self._phase is _CLOSED:
            self._report_late()  # shutdown ended meanwhile: nobody else will see the marker
        if self._thread is None:
            self._start()
        self._wake.set()
        return self._clock.wait(marker, timeout) if timeout is not None else marker.wait()

    def flush_if_due(self, timeout: float) -> bool:
        """Wait for a request in flight and for what goes at this moment (a batch due by
        ``flush_at``/``flush_interval``, or because the last request went ``flush_interval``
        ago, that the request budget lets go now), never for the budget or for a batch not due
        yet; the rest stays queued. True when nothing is left."""
        if self.on_own_thread() or self._phase is _CLOSED:
            return self.queued == 0
        if self._thread is None and not self._raw:
            return True
        marker = Marker()
        self._due_waits.append(marker)
        if self._thread is None:
            self._start()
        self._wake.set()
        self._clock.wait(marker, timeout)
        return self.queued == 0

    def begin_stop(self, budget: ShutdownBudget) -> None:
        """Start shutting down: send what can be sent within ``budget`` from now."""
        if self._phase is Phase.RUNNING:
            now = self._clock.now()
            self._budget = budget
            self._stop_started = now
            self._deadline = budget.deadline(now, now)
            self._phase = Phase.STOPPING
        self._wake.set()
        self._sync_wake.set()
        with self._room_freed:
            self._room_freed.notify_all()

    def finish_stop(self, then: Optional[Callable[[], None]] = None) -> bool:
        """Wait for the thread until the deadline, cut a request still in flight, then report
        whatever is left; ``then`` runs after. Several clients at exit use the three steps
        apart, to share one deadline and one grace period (see ``_client``).

        On the delivery thread itself (``on_error`` calling ``shutdown()``) nothing can be
        waited for: the thread goes on sending until the deadline, reports what is left and
        runs ``then`` as it ends. False in that case."""
        if self.on_own_thread():
            self._report_on_exit = True
            self._on_stopped = then
            self._unattended()
            return False
        self.join_until_deadline()
        if self.cut():
            self.join_until(self._clock.now() + CUT_GRACE)
        self.report_leftovers()
        if then is not None:
            then()
        return True

    def stop_when_dropped(self, budget: ShutdownBudget) -> None:
        """The client was dropped without ``shutdown()``: deliver what is queued within
        ``budget``, report the rest and end the threads."""
        self._report_on_exit = True
        self._on_stopped = self._transport.close
        self.begin_stop(budget)
        if self._thread is None:
            self.end_unattended()
        else:
            self._unattended()

    def _unattended(self) -> None:
        with _UNATTENDED_LOCK:
            UNATTENDED.add(self)

    @property
    def deadline(self) -> Optional[float]:
        return self._deadline

    def end_unattended(self) -> None:
        """Report what is left and run what was to run when stopped, once (the thread as it
        ends, or the exit hook when the thread did not end in time)."""
        with self._end_lock:
            if self._report_on_exit:
                self._report_leftovers()
            then, self._on_stopped = self._on_stopped, None
        with _UNATTENDED_LOCK:
            UNATTENDED.discard(self)
        if then is not None:
            then()

    def join_until(self, when: float) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self._clock.join(thread, when)

    def join_until_deadline(self) -> None:
        """Wait for the thread to end, or for the shutdown's deadline, which moves while
        delivery makes progress."""
        while True:
            deadline = self._deadline
            if deadline is None:
                return
            self.join_until(deadline)
            thread = self._thread
            if thread is None or not thread.is_alive() or self._deadline == deadline:
                return

    def cut(self) -> bool:
        """Cut the request in flight if the thread is still at work; True if it was."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return False
        self._cut_at_deadline = True
        self._transport.abort()
        return True

    def report_leftovers(self) -> None:
        """Report everything not delivered (a sync-mode send still going is cut first)."""
        deadline = self._deadline
        left = 0.0 if deadline is None else max(0.0, deadline - self._clock.now())
        acquired = self._sync_lock.acquire(timeout=left)
        if not acquired:
            self._transport.abort()  # it reports its own operation when the cut reaches it
            acquired = self._sync_lock.acquire(timeout=CUT_GRACE)
        try:
            self._report_leftovers()
        finally:
            if acquired:
                self._sync_lock.release()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh, empty queue and no thread (started on the next call).

        The parent's queued operations stay the parent's to send; the child must not resend them.
        With a spool, the child closes its copies of the parent's files (the parent keeps its
        directory and its lock) and makes a directory of its own.
        """
        self._source.forget_after_fork()
        self._init_state()
        self.observer.reset()

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                try:
                    if not self._turn():
                        return
                except BaseException:  # never let the thread die; on_error may raise SystemExit
                    logger.exception("unexpected error in the delivery thread; it keeps running")
        finally:
            if self._turns is not None:
                self._turns.end()
            self._request.stop()
            try:
                if self._report_on_exit:
                    self.end_unattended()
                elif self._phase is _CLOSED:
                    self._report_late()  # taken from the queue while shutdown was reporting
            except BaseException:
                logger.exception("error while ending the delivery thread")

    def _turn(self) -> bool:
        """One step of the loop; False when the thread should end."""
        self._wake.clear()  # before looking at the queue: a call after this wakes the wait below
        if self._turns is not None:
            self._turns.begin()
        if self._phase is _CLOSED:
            return False
        due_waits = len(self._due_waits)  # they called after what this turn takes in
        now = self._clock.now()
        self._fill(now)
        if self._ledger.in_flight is not None:
            return self._await_answer()
        self._release_barriers()
        action = self.decide(now)
        while due_waits and self._due_waits and not isinstance(action, Send):
            self._due_waits.popleft().set()  # nothing more may go now: they return
            due_waits -= 1
        if isinstance(action, Stop):
            return False
        if isinstance(action, Idle):
            self._settle(now + self._options.flush_interval)
            self._clock.wait(self._wake, self._options.flush_interval)  # callers wake us
            return True
        if isinstance(action, Sleep):
            if action.held_back:
                self._held_back = True
                # Nothing can go before then: callers need not wake us every flush_at calls to
                # say a batch is due, only often enough to keep encoding in chunks.
                self._wake_at = max(self._options.flush_at, HELD_WAKE_AT)
            if len(self._raw) >= self._wake_at:
                return True  # more to encode first
            self._settle(action.until)
            self._clock.sleep_until(action.until, self._wake)
            return True
        self._wake_at = self._options.flush_at
        held_back, self._held_back = self._held_back, False
        if action.last_chance:
            self._last_chance_used = True
        if action.batch is None:
            self._send_new(now, held_back)
        elif self._ledger.start(action.batch):
            self._send(action.batch, held_back)
        else:
            return False  # shutdown already reported it
        return True

    def decide(self, now: float) -> Action:
        """What to do at ``now``, from the state alone (no side effects)."""
        stopping = self._phase is Phase.STOPPING
        deadline = self._deadline if stopping else None
        if deadline is not None and (now >= deadline or self._nothing_left()):
            return Stop()
        urgent = stopping or bool(self._barriers) or bool(self._flushes)
        due_at, retry = self._next_due(now, urgent)
        if due_at == float("inf"):
            return Stop() if stopping else Idle()
        if deadline is not None and due_at > deadline:
            return Stop()  # nothing more can go before the deadline
        start_at = max(due_at, self.pacer.ready_at(urgent))  # a flush goes when the budget allows
        if deadline is not None and start_at > deadline:
            if self._last_chance_used:
                return Stop()
            return Send(retry, last_chance=True)
        if start_at > now:
            return Sleep(start_at, held_back=due_at <= now)
        return Send(retry)

    def _next_due(self, now: float, urgent: bool) -> tuple[float, Optional[Batch]]:
        """When the next request is due, and the waiting batch it is for (None: a new one)."""
        retry = self._ledger.next_due()
        retry_at = retry.next_try_at if retry is not None else float("inf")
        new_at = float("inf")
        if len(self._ledger.waiting) < MAX_RETRYING:
            since = self._waiting_since
            if self._due_waits and since is not None:
                # flush_if_due(): a batch is also due when the last request went flush_interval
                # ago (one request per flush_interval, and none left behind when invoked rarely).
                since = min(since, self._last_request_at)
            new_at = batch_due(self._backlog.encoded_count, since, now, self._options, urgent)
        if retry_at <= new_at:
            return retry_at, retry
        return new_at, None

    def _nothing_left(self) -> bool:
        if self._raw or self._backlog.encoded or self._ledger.waiting:
            return False
        return self._source.all_read()

    # --- bringing operations in -------------------------------------------------------------

    def _fill(self, now: float) -> None:
        backlog = self._backlog
        was_empty = not backlog.encoded
        first_seq = backlog.next_seq
        intake = self._source.fill(backlog)
        for batch in intake.recovered:
            self._ledger.wait(batch, now)  # resent first, as it was
        for marker in intake.markers:
            self._barriers.append((backlog.next_seq, marker))
        taken = backlog.next_seq - first_seq
        if taken:
            self.pacer.arrived(now, taken)
        if not self._raw:
            arrived_since = self._raw_empty_at
            self._raw_empty_at = now
        else:
            arrived_since = now
        if was_empty and backlog.encoded:
            # These arrived after the raw queue was last seen empty: their flush_interval runs
            # from then, so at low traffic a batch goes as soon as the periodic wake finds it.
            self._waiting_since = arrived_since
        self._update_room()

    def _update_room(self) -> None:
        self._backlog.update_room()
        if self._blocked_callers:
            with self._room_freed:
                self._room_freed.notify_all()

    def _release_barriers(self) -> None:
        barriers = self._barriers
        if not barriers:
            return
        pending = [b.items[0].seq for b in self._ledger.waiting if b.items]
        oldest = self._backlog.oldest_seq()
        if oldest is not None:
            pending.append(oldest)
        first_unfinished = min(pending, default=None)
        while barriers and (first_unfinished is None or barriers[0][0] <= first_unfinished):
            marker = barriers.popleft()[1]
            self._flushes.discard(marker)
            marker.set()

    # --- sending --------------------------------------------------------------------------

    def _send_new(self, now: float, held_back: bool) -> None:
        options = self._options
        backlog = self._backlog
        batch = self._ledger.start_new(
            lambda: backlog.take(options.max_batch_size, options.max_batch_bytes, len(ENVELOPE))
        )
        # What is left waits for its own trigger: flush_at more, or flush_interval from now.
        # A small remainder does not go right behind a full batch.
        self._waiting_since = now if backlog.encoded else None
        self._update_room()
        if batch is not None:
            self._send(batch, held_back)

    def _wire(self, batch: Batch) -> Optional[tuple[bytes, bool]]:
        """The bytes to send for ``batch`` (kept for its retries); None if it cannot go whole
        (then it was split or reported)."""
        if batch.wire is None:
            if batch.body is None:
                batch.body = batch_body([e.data for e in batch.items])
            batch.wire = self._body_encoder.encode(batch.body)
        if len(batch.wire[0]) > MAX_REQUEST_BYTES:
            self._split_or_fail(batch, DeliveryError("batch too large", reason="too_large"))
            return None
        return batch.wire

    def _started(self, batch: Batch, held_back: bool) -> float:
        options = self._options
        size = sum(e.size for e in batch.items)
        fullness = max(batch.count / options.max_batch_size, size / options.max_batch_bytes)
        started = self._last_request_at = self._clock.now()
        backlog = self._backlog.encoded_count + self._source.unread()
        urgent = self._phase is Phase.STOPPING or bool(self._barriers or self._flushes)
        self.pacer.started(
            started, held_back=held_back, fullness=fullness, backlog=backlog, urgent=urgent
        )
        return started

    def _time_left(self, now: float) -> Optional[float]:
        return None if self._deadline is None else self._deadline - now

    def _send(self, batch: Batch, held_back: bool) -> None:
        """Start ``batch`` on the request thread; its answer is handled by a later turn."""
        wire = self._wire(batch)
        if wire is None:
            return
        self._source.starting(batch)  # with a spool: noted on disk before it goes
        started = self._started(batch, held_back)
        self._request.start(*wire, batch.key, self._time_left(started))

    def _await_answer(self) -> bool:
        request = self._request
        answer = request.answer
        if answer is None:
            left = request.cut_if_late()  # timeout is a wall-clock deadline
            deadline = self._deadline if self._phase is Phase.STOPPING else None
            if deadline is not None:
                # Stopping: the shutdown's deadline cuts the request too, also when nobody
                # waits to cut it (shutdown() from on_error, a client dropped while sending).
                until_deadline = deadline - self._clock.now()
                if until_deadline <= 0:
                    self._cut_at_deadline = True
                    self._transport.abort()
                left = min(left, max(0.0, until_deadline))
            if len(self._raw) < self._wake_at:
                self._clock.wait(self._wake, min(self._options.flush_interval, left + 0.01))
            return True
        batch = self._ledger.answered()
        if batch is None:
            return False  # shutdown already reported it
        self._handle(batch, answer, request.started_at)
        return True

    # --- what an answer does to a batch -----------------------------------------------------

    def _handle(self, batch: Batch, answer: Answer, started: float) -> BatchState:
        verdict = classify(answer)
        now = self._clock.now()
        if self._encoder.debugging():
            self._log_exchange(batch, answer, now - started)
        retry_after = self._policy.retry_after(answer.headers.get("Retry-After"))
        self.pacer.answered(
            started, answer.status, answer.headers, retry_after if answer.status == 429 else None
        )
        if verdict is Verdict.DELIVERED:
            self._delivered(batch, answer, now)
        elif verdict is Verdict.RATE_LIMITED:
            self._stats.add_rate_limited()
            if batch.retries == 0 and not batch.keep_on_429:
                # Refused before the engine looked at it: the operations rejoin the queue and
                # go again in a bigger batch once the budget allows.
                self._source.returned(batch)
                self._backlog.put_back(batch.items)
                self._waiting_since = now
                batch.state = BatchState.RETURNED
            else:
                # It may have been applied in part by an earlier attempt (a 503): keep the
                # body and the key so the engine can recognise it.
                self._ledger.wait(batch, now)
        elif verdict is Verdict.RETRY:
            if maybe_applied(answer):
                batch.maybe_applied = True
            if self._phase is Phase.STOPPING and (
                self._cut_at_deadline or self._past_deadline(now)
            ):
                # Cut by the shutdown's deadline, not failed: no retry is spent, and what is
                # left is reported as the shutdown's.
                self._ledger.wait(batch, now)
            else:
                self._retry_later(batch, answer, now, retry_after)
        elif verdict in (Verdict.TOO_LARGE, Verdict.REJECTED):
            self._split_or_fail(batch, self._error(answer, verdict))
        else:
            if verdict is Verdict.QUOTA_EXCEEDED:
                # Retrying cannot succeed before the plan's quota turns: probe once a window.
                self.pacer.pause(now, self.pacer.window)
                self._quota_until = now + self.pacer.window
            self._log_refusal(answer, verdict)
            self._fail_batch(batch, self._error(answer, verdict))
        if verdict not in (Verdict.RETRY, Verdict.RATE_LIMITED):
            self._progress(now)
        self.observer.answered(batch, answer, verdict, now - started)
        return batch.state

    def _past_deadline(self, now: float) -> bool:
        return self._deadline is not None and now >= self._deadline

    def _progress(self, now: float) -> None:
        """A batch is finished: while stopping, the deadline moves (``ShutdownBudget``)."""
        if self._phase is Phase.STOPPING:
            self._deadline = self._budget.deadline(self._stop_started, now)

    def _delivered(self, batch: Batch, answer: Answer, now: float) -> None:
        count = batch.count
        batch.state = BatchState.DONE
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
        self._source.finished(batch)
        self._ledger.retry_now(now)  # the engine answers again
        self._update_room()

    def _retry_later(
        self, batch: Batch, answer: Answer, now: float, retry_after: Optional[float]
    ) -> None:
        batch.retries += 1
        if batch.retries == 1:
            batch.first_failure_at = now
        wait = self._policy.wait(failure_of(answer), batch.retries, self._random.random())
        if retry_after is not None:
            wait = max(wait, retry_after)
        if self._policy.gives_up(batch.retries, now - batch.first_failure_at, wait):
            self._fail_batch(batch, self._error(answer, Verdict.RETRY, retries=batch.retries - 1))
            return
        self._stats.add_retry()
        if batch.retries == 1:
            # Said at once (throttled), not only when the batch is given up minutes later: a
            # wrong port or a dead engine should be seen while it can still be fixed.
            self._say_retrying(batch, answer, now)
        logger.debug(
            "batch of %d answered %s (%s); retry %d in %.2fs",
            batch.count,
            answer.status,
            answer.detail,
            batch.retries,
            wait,
        )
        self._ledger.wait(batch, now + wait)

    def _say_retrying(self, batch: Batch, answer: Answer, now: float) -> None:
        said = f"HTTP {answer.status}" if answer.status is not None else "no answer"
        waiting = batch.count + self._backlog.encoded_count + len(self._raw)
        deadline = self._deadline
        if self._phase is Phase.STOPPING and deadline is not None:
            # Not "retrying for up to max_retry_time": the shutdown's deadline comes first.
            self._warnings.warn(
                "retrying",
                "could not deliver to %s (%s: %s) while shutting down; retrying until the "
                "shutdown's deadline (%.1fs from now, later while batches get through), "
                "%d operation(s) waiting",
                self._transport.url,
                said,
                answer.detail,
                max(0.0, deadline - now),
                waiting,
            )
            return
        self._warnings.warn(
            "retrying",
            "could not deliver to %s (%s: %s); retrying for up to %gs "
            "(max_retry_time) or %d retries, %d operation(s) waiting",
            self._transport.url,
            said,
            answer.detail,
            self._policy.max_retry_time,
            self._policy.max_retries,
            waiting,
        )

    def _split_or_fail(self, batch: Batch, error: DeliveryError) -> None:
        """Refused whole (400, 413): the halves go instead, under new keys; one operation
        alone is reported."""
        if batch.count < 2:
            self._fail_batch(batch, error)
            return
        items = one_by_one(batch.items)
        middle = len(items) // 2
        parts = [
            Batch(half, keep_on_429=batch.keep_on_429) for half in (items[:middle], items[middle:])
        ]
        self._source.split(batch, parts)  # with a spool: noted with the end of the whole
        self._ledger.settle(batch, BatchState.SPLIT)
        now = self._clock.now()
        for part in parts:
            self._ledger.wait(part, now)  # each half goes as soon as the budget allows

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

    def _log_exchange(self, batch: Batch, answer: Answer, took: float) -> None:
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
            took * 1000,
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

    def _fail_batch(self, batch: Batch, error: DeliveryError) -> None:
        """``batch`` is finally not delivered: reported, and forgotten by the queue's bound
        and by the source."""
        self._ledger.settle(batch, BatchState.FAILED)
        self._backlog.release(batch.items)
        self._source.finished(batch)
        self._update_room()
        self._fail(batch.reported, error)

    def _fail(self, ops: list[Reported], error: DeliveryError) -> None:
        self._stats.add_dropped(error.reason, len(ops))
        self._report_safely(error, ops)

    def _report_safely(self, error: DeliveryError, ops: list[Reported]) -> None:
        try:
            self._report(error, ops)
        except BaseException:
            logger.exception("error while reporting a failed delivery")

    # --- the end --------------------------------------------------------------------------

    def _report_leftovers(self) -> None:
        """Shutdown is over: report everything not finished, except what stays on disk for
        the next process. Later calls are reported at once. A second call (the exit hook and
        the thread both ending an unattended worker) only reports what came since."""
        with self._end_lock:
            if self._phase is _CLOSED:
                self._report_late()
                return
            self._phase = _CLOSED
        ops, unanswered, kept = self._collect_leftovers()
        self._source.close(kept)
        if unanswered:
            logger.error(
                "shutdown: %d operation(s) were sent to %s but no answer came before the "
                "deadline: the engine may have stored them (reported to on_error with reason "
                "'unknown_fate' and their batch's Idempotency-Key; counted in "
                "stats()['unknown_fate'], not as dropped)",
                sum(batch.count for batch in unanswered),
                self._transport.url,
            )
        if ops:
            logger.error(
                "shutdown: %d operation(s) were never sent before the deadline and are "
                "dropped (reported to on_error, counted as dropped['shutdown'])",
                len(ops),
            )
        for batch in unanswered:
            self._unknown_fate(batch)
        if ops:
            self._fail(ops, DeliveryError("not delivered before shutdown", reason="shutdown"))

    def _unknown_fate(self, batch: Batch) -> None:
        self._stats.add_unknown_fate(batch.count)
        error = DeliveryError(
            f"sent to {self._transport.url} without an answer before shutdown: the engine may "
            f"have stored it (Idempotency-Key {batch.key})",
            reason="unknown_fate",
            idempotency_key=batch.key,
        )
        self._report_safely(error, batch.reported)

    def _report_late(self) -> None:
        """A call that raced the end of shutdown: report it (and anything like it) now."""
        ops, unanswered, _ = self._collect_leftovers()
        for batch in unanswered:
            self._unknown_fate(batch)
        if ops:
            self._fail(ops, DeliveryError("not delivered before shutdown", reason="shutdown"))

    def _collect_leftovers(self) -> tuple[list[Reported], list[Batch], int]:
        """Everything not finished, taken out once: the operations never sent, the batches
        sent without an answer (their fate is unknown), and how many operations stay with the
        source (on disk). Every flush waiting for them is released."""
        batches = self._ledger.close()
        encoded, raw, markers = self._backlog.drain_all()
        self._source.count_drained(len(raw))  # accepted, though the thread never took them
        keeps = self._source.keeps
        ops: list[Reported] = []
        unanswered: list[Batch] = []
        kept = 0
        for batch in batches:
            if keeps(batch.items):
                kept += batch.count
            elif batch.maybe_applied or batch.state is BatchState.IN_FLIGHT:
                unanswered.append(batch)
            else:
                ops.extend(batch.reported)
        for run in encoded:
            if keeps([run]):
                kept += run.operations
            else:
                ops.extend(run.elements())
        ops.extend(raw)
        for _, marker in self._barriers:
            markers.append(marker)
        self._barriers.clear()
        markers.extend(self._flushes)
        self._flushes.clear()
        while self._due_waits:
            markers.append(self._due_waits.popleft())
        for marker in markers:
            marker.set()
        return ops, unanswered, kept

    # --- a host where this thread runs only while a caller waits ----------------------------

    def enable_lending(self) -> None:
        """From now on, a call that finds the thread's next turn due waits for that turn
        (``lend_if_due``): for a host that lets our threads run only while a caller waits in
        Python (``_runtime``: uWSGI without ``--enable-threads``)."""
        self._lending = True
        self._turns = Turns()

    def lend_if_due(self) -> None:
        """After a call, with lending on: if the thread would have taken a turn by now (a batch
        due by count wakes it, or the time of its next turn has come), wait until it has taken
        one that saw this call: the due batch is sent and answered, or held back by the
        budget or a retry's wait. At most ``timeout`` seconds (about one request)."""
        turns = self._turns
        if turns is None or self._thread is None:
            return
        if (self._wake.is_set() or self._clock.now() >= turns.next_at) and not self.on_own_thread():
            turns.lend(self._wake, self._options.timeout)

    def _settle(self, next_turn_at: float) -> None:
        """The thread is about to wait, with nothing to do before ``next_turn_at``."""
        if self._turns is not None:
            flush_at = self._options.flush_at
            encoded = self._backlog.encoded_count
            if not self._held_back and encoded < flush_at:
                # Callers count only what they add: woken when flush_at are queued in all.
                self._wake_at = flush_at - encoded
            self._turns.settle(next_turn_at)

    # --- sync mode ------------------------------------------------------------------------

    def deliver_now(self, op: Operation) -> None:
        """sync_mode: encode and send one operation on the caller's thread, with retries.

        It waits for the request budget and for backoffs like the thread would, at most
        ``max_retry_time`` in all, and never past a shutdown.
        """
        with self._sync_lock:  # the transport's session is used by one thread at a time
            self._source.count_drained(1)
            data = self._encoder.encode(op)
            if data is None:
                return
            batch = Batch([Encoded(data, 0, None, len(data))], keep_on_429=True)
            give_up_at = self._clock.now() + self._policy.max_retry_time
            while True:
                if self._clock.now() < self._quota_until:
                    error = DeliveryError("the plan's quota is used up", reason="quota_exceeded")
                    self._fail([op], error)
                    return
                # Each call is its own request in sync mode: only a pause the engine asked for
                # (a 429) holds it back, not the spacing a background thread would keep.
                wait_until = max(batch.next_try_at, self.pacer.paused_until)
                stopping = self._phase is not Phase.RUNNING
                if wait_until > give_up_at or stopping:
                    self._ledger.settle(batch, BatchState.FAILED)
                    if stopping and batch.maybe_applied:
                        self._unknown_fate(batch)
                        return
                    reason = "shutdown" if stopping else "retries_exhausted"
                    self._fail([op], DeliveryError("not delivered in time", reason=reason))
                    return
                if wait_until > self._clock.now():
                    self._clock.sleep_until(wait_until, self._sync_wake)
                    continue
                if self._send_here(batch) is not BatchState.WAITING:
                    return  # delivered, or failed and reported

    def _send_here(self, batch: Batch) -> BatchState:
        """sync_mode: send ``batch`` on the caller's thread and handle the answer."""
        wire = self._wire(batch)
        if wire is None:
            return batch.state
        if not self._ledger.start(batch):
            return BatchState.FAILED  # shutdown reported it
        started = self._started(batch, held_back=False)
        request = self._sync_request
        request.start(*wire, batch.key, self._time_left(started))
        answer = request.wait()
        if self._ledger.answered() is None:
            return BatchState.FAILED  # shutdown reported it meanwhile
        return self._handle(batch, answer, started)


class Turns:
    """The delivery thread's turns, counted for callers that lend it their time.

    uWSGI without ``--enable-threads`` keeps the interpreter lock while it waits for the next
    request, so the thread runs only while a caller waits in Python. Such a caller wakes the
    thread and waits until a turn that began after its call has ended in a wait (``settle``):
    that turn saw the call. A turn under way when the caller came may have missed the call,
    hence counting turns rather than waiting for the next settle.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.begun = 0
        self.settled = 0
        self.ended = False
        self.next_at = 0.0
        """When the thread would take its next turn by itself (0: at once)."""

    def begin(self) -> None:
        self.begun += 1

    def settle(self, next_at: float) -> None:
        with self._changed:
            self.settled = self.begun
            self.next_at = next_at
            self._changed.notify_all()

    def end(self) -> None:
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def lend(self, wake: threading.Event, timeout: float) -> None:
        with self._changed:
            wanted = self.begun + 1
            wake.set()
            self._changed.wait_for(lambda: self.ended or self.settled >= wanted, timeout)
