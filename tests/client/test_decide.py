"""The worker's decision of one turn, as a function of (state, now): no thread, no socket.

Each row sets the state a turn would find (operations queued, when the oldest arrived, batches
waiting to retry, the request budget, shutdown and its deadline) and checks what ``decide``
says to do at ``now``. The loop that carries the decisions out is tested end to end elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

import pytest

from sankofa_sdk._delivery.batch import Batch
from sankofa_sdk._delivery.clock import Clock
from sankofa_sdk._delivery.worker import (
    MAX_RETRYING,
    Idle,
    Send,
    ShutdownBudget,
    Sleep,
    Stop,
    Worker,
)
from sankofa_sdk._options import Options
from sankofa_sdk._queue import Encoded
from sankofa_sdk._stats import Stats
from sankofa_sdk.testing import RecordingTransport

NOW = 1_000.0


class StoppedClock(Clock):
    """Reads ``at`` (set by a test): shutdown's budget is counted from it."""

    def __init__(self) -> None:
        self.at = NOW

    def now(self) -> float:
        return self.at


def make_worker(**options: Any) -> Worker:
    options.setdefault("flush_at", 10)
    options.setdefault("flush_interval", 0.5)
    return Worker(
        options=Options.from_kwargs(**options),
        transport=RecordingTransport(),
        stats=Stats(),
        report=lambda error, ops: None,
        lib_version="test",
        clock=StoppedClock(),
    )


@pytest.fixture
def worker() -> Iterator[Worker]:
    worker = make_worker()
    yield worker
    assert worker._thread is None, "deciding must not start the thread"


def queue(worker: Worker, count: int, since: Optional[float] = NOW) -> None:
    for _ in range(count):
        worker._backlog.add(b"{}")
    worker._waiting_since = since


def waiting_batch(worker: Worker, at: float) -> Batch:
    batch = Batch([Encoded(b"{}", 0, None, 2)])
    worker._ledger.wait(batch, at)
    return batch


def budget_allows_at(worker: Worker, when: float) -> None:
    worker.pacer.ready_at = lambda urgent=False: when  # type: ignore[method-assign]


def stopping(worker: Worker, deadline: float) -> None:
    worker.begin_stop(ShutdownBudget(quiet=deadline - NOW, at_most=deadline - NOW))


def test_nothing_queued_is_idle(worker: Worker) -> None:
    assert worker.decide(NOW) == Idle()


def test_flush_at_operations_go_at_once(worker: Worker) -> None:
    queue(worker, 10)
    assert worker.decide(NOW) == Send(None)


def test_fewer_wait_for_flush_interval_from_the_oldest(worker: Worker) -> None:
    queue(worker, 3, since=NOW - 0.2)
    assert worker.decide(NOW) == Sleep(NOW + 0.3, held_back=False)
    assert worker.decide(NOW + 0.3) == Send(None)


def test_a_flush_makes_them_due_at_once(worker: Worker) -> None:
    queue(worker, 3)
    worker._flushes.add(object())  # type: ignore[arg-type]
    assert worker.decide(NOW) == Send(None)


def test_the_request_budget_holds_a_due_batch_back(worker: Worker) -> None:
    queue(worker, 10)
    budget_allows_at(worker, NOW + 2)
    assert worker.decide(NOW) == Sleep(NOW + 2, held_back=True)
    assert worker.decide(NOW + 2) == Send(None)


def test_a_retry_that_is_due_goes_before_new_operations(worker: Worker) -> None:
    queue(worker, 10)
    retry = waiting_batch(worker, NOW - 1)
    assert worker.decide(NOW) == Send(retry)


def test_a_retry_not_due_yet_does_not_hold_new_batches_back(worker: Worker) -> None:
    queue(worker, 10)
    waiting_batch(worker, NOW + 5)
    assert worker.decide(NOW) == Send(None)


def test_no_new_batch_while_enough_batches_wait_for_a_retry(worker: Worker) -> None:
    queue(worker, 10)
    first = waiting_batch(worker, NOW + 5)
    for _ in range(MAX_RETRYING - 1):
        waiting_batch(worker, NOW + 6)
    assert worker.decide(NOW) == Sleep(NOW + 5, held_back=False)
    assert worker.decide(NOW + 5) == Send(first)


def test_stopping_sends_what_is_queued_at_once(worker: Worker) -> None:
    queue(worker, 3)
    stopping(worker, NOW + 5)
    assert worker.decide(NOW) == Send(None)


def test_stopping_with_nothing_left_stops(worker: Worker) -> None:
    stopping(worker, NOW + 5)
    assert worker.decide(NOW) == Stop()


def test_stopping_at_the_deadline_stops(worker: Worker) -> None:
    queue(worker, 3)
    stopping(worker, NOW + 5)
    assert worker.decide(NOW + 5) == Stop()


def test_a_retry_due_after_the_deadline_is_left_to_the_report(worker: Worker) -> None:
    waiting_batch(worker, NOW + 10)
    stopping(worker, NOW + 5)
    assert worker.decide(NOW) == Stop()


def test_one_last_request_when_the_budget_would_wait_past_the_deadline(worker: Worker) -> None:
    queue(worker, 3)
    budget_allows_at(worker, NOW + 60)
    stopping(worker, NOW + 5)
    assert worker.decide(NOW) == Send(None, last_chance=True)
    worker._last_chance_used = True
    assert worker.decide(NOW) == Stop()


def test_the_budget_within_the_deadline_is_waited_for(worker: Worker) -> None:
    queue(worker, 3)
    budget_allows_at(worker, NOW + 2)
    stopping(worker, NOW + 5)
    assert worker.decide(NOW) == Sleep(NOW + 2, held_back=True)


def test_progress_moves_the_deadline_by_the_quiet_time_up_to_the_most() -> None:
    worker = make_worker()
    clock = worker._clock
    assert isinstance(clock, StoppedClock)
    worker.begin_stop(ShutdownBudget(quiet=5.0, at_most=30.0))
    assert worker.deadline == NOW + 5
    clock.at = NOW + 4
    worker._progress(clock.at)  # a batch was delivered: 5 s more from now
    assert worker.deadline == NOW + 9
    clock.at = NOW + 28
    worker._progress(clock.at)
    assert worker.deadline == NOW + 30  # never past at_most from the start
    queue(worker, 10, since=NOW + 28)
    assert worker.decide(NOW + 29) == Send(None)
    assert worker.decide(NOW + 30) == Stop()


def test_without_progress_the_quiet_time_ends_it() -> None:
    worker = make_worker()
    worker.begin_stop(ShutdownBudget(quiet=5.0, at_most=30.0))
    waiting_batch(worker, NOW + 6)  # a retry after a 503, due after the quiet time
    assert worker.decide(NOW + 1) == Stop()
