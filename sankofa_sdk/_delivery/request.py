"""One request at a time, on a thread of its own."""

from __future__ import annotations

import threading
from typing import Optional

from .._answers import Answer
from .._retry import Failure
from .clock import Clock
from .transport import Transport

CUT_SLACK = 0.05
"""How long past its time a request may run before it is cut (the socket timeouts fire first)."""


class RequestThread:
    """Runs one request at a time on a thread of its own, so the one waiting for the answer
    can keep a wall-clock deadline on it (``cut_if_late``) and, for the worker, go on encoding
    what callers queue meanwhile (the queue's byte bound stays measured, the next batch is
    ready when the answer comes). Only the request runs here: whatever the answer changes is
    the waiter's. ``notify`` is set with each answer, as is ``finished``.

    Without its thread (one that could not be started, e.g. at interpreter exit on Python
    3.12, or a process out of threads) the request runs on the caller's thread instead, bounded
    by the socket timeouts alone.
    """

    def __init__(
        self, transport: Transport, notify: threading.Event, clock: Clock, timeout: float
    ) -> None:
        self._transport = transport
        self._notify = notify
        self._clock = clock
        self._timeout = timeout
        self._job: Optional[tuple[bytes, bool, str, Optional[float]]] = None
        self._has_job = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.finished = threading.Event()
        self.answer: Optional[Answer] = None
        self.started_at = 0.0
        self.cut_at = 0.0
        """The clock's time after which the request in progress is cut."""

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
        self.started_at = self._clock.now()
        budget = self._timeout if time_left is None else min(self._timeout, time_left)
        self.cut_at = self.started_at + budget + CUT_SLACK
        job = (data, gzipped, key, time_left)
        if not self.ensure_thread():
            self._finish(self._transport.send(*job))
            return
        self._job = job
        self._has_job.set()

    def cut_if_late(self) -> float:
        """Cut the request if its time is up; else the seconds left until it is."""
        left = self.cut_at - self._clock.now()
        if left <= 0 and self.answer is None:
            self._transport.abort()
        return max(0.0, left)

    def wait(self) -> Answer:
        """Wait for the answer here (sync mode), cutting the request when its time is up."""
        while not self._clock.wait(self.finished, self.cut_if_late() + 0.01):
            pass
        answer = self.answer
        assert answer is not None
        return answer

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
