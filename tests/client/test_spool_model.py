"""A model of the spool's bookkeeping: every returned call is applied exactly once or reported
failed exactly once, across kills, adoption by other processes, splits and log rewrites.

A hypothesis state machine drives real ``SpoolSource``s (real directories, real files) the way
the worker does: it appends calls, fills the queue, takes batches, and answers them as an
engine would (200, 400, 413, 429, 503, a reset, an answer lost after the engine applied the
batch), splitting, returning, retrying and giving up as ``Worker._handle`` does. Processes are
killed (their files closed with no further note, their locks released), restarted, and adopt
each other's directories; the batch log is rewritten often. The engine in the model applies a
request's Idempotency-Key once, as the reference server does, and the checks are the ones that
key deduplication cannot hide:

- no operation is applied under two different keys (a second application);
- no request repeats a key whose 2xx answer the client received (only a lost or cut answer
  may cause a resend);
- every operation keeps one ``$insert_id`` whatever process sends it;
- at the end, after every process is gone and a last one delivered what is left, every
  returned call was applied once or reported failed once (never both, never neither), and the
  spool directory is empty: a directory is removed only when nothing is owed.

``SANKOFA_MODEL_EXAMPLES`` sets how many programs run (the ``stress`` marker's test runs more).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sankofa_sdk._delivery.batch import Batch
from sankofa_sdk._delivery.encoding import ENVELOPE, OperationEncoder
from sankofa_sdk._delivery.spool_source import SpoolSource
from sankofa_sdk._errors import DeliveryError
from sankofa_sdk._options import Options
from sankofa_sdk._queue import Backlog, one_by_one
from sankofa_sdk._serialize import Reported, batch_body
from sankofa_sdk._stats import Stats

ANSWERS = ("200", "400", "413", "429", "503", "reset", "lost")
MAX_RETRIES = 3


class TickingClock:
    """Each reading is later than the last by more than the adoption interval: a process
    looks for dead directories at every fill."""

    def __init__(self) -> None:
        self._now = itertools.count(0, 10)

    def now(self) -> float:
        return float(next(self._now))


class Process:
    """One client's delivery side, driven by hand: its source, its queue, its batches."""

    def __init__(self, root: str, compact_at: int, failed: list[Reported]) -> None:
        self.options = Options.from_kwargs(spool_dir=root, max_queue_bytes=64 * 1024)
        self.backlog = Backlog(self.options)
        self.failed = failed

        def fail(ops: list[Reported], error: DeliveryError) -> None:
            failed.extend(ops)

        encoder = OperationEncoder("test", False, fail)
        self.source = SpoolSource(
            self.backlog,
            encoder,
            self.backlog.update_room,
            options=self.options,
            clock=TickingClock(),  # type: ignore[arg-type]
            stats=Stats(),
            report=lambda error, ops: None,
            compact_at=compact_at,
        )
        self.waiting: list[Batch] = []

    def fill(self) -> None:
        intake = self.source.fill(self.backlog)
        self.waiting.extend(intake.recovered)

    def take(self, size: int) -> Optional[Batch]:
        if self.waiting:
            return self.waiting.pop(0)
        items = self.backlog.take(size, 1 << 20, len(ENVELOPE))
        return Batch(items) if items else None

    def kill(self) -> None:
        """kill -9: nothing more is written; the kernel closes the files and the locks go."""
        self.source.forget_after_fork()

    def shutdown(self) -> None:
        """What the worker does at the end: whatever the source keeps stays on disk."""
        kept = sum(b.count for b in self.waiting if self.source.keeps(b.items))
        encoded, _, _ = self.backlog.drain_all()
        kept += sum(r.operations for r in encoded if self.source.keeps([r]))
        self.source.close(kept)


class Engine:
    """Applies a key once (as the reference server does) and remembers what was applied."""

    def __init__(self) -> None:
        self.applied_under: dict[int, set[str]] = defaultdict(set)
        self.applied: Counter[int] = Counter()
        self.answered_2xx: set[str] = set()
        self.seen_keys: set[str] = set()
        self.insert_ids: dict[int, str] = {}
        self.resent_after_2xx: list[str] = []

    def receive(self, key: str, body: bytes, applies: bool) -> None:
        if key in self.answered_2xx:
            self.resent_after_2xx.append(key)
        for op in json.loads(body)["operations"]:
            n = op["payload"]["properties"]["n"]
            insert_id = op["payload"]["properties"]["$insert_id"]
            assert self.insert_ids.setdefault(n, insert_id) == insert_id, f"call {n}: new id"
        if applies and key not in self.seen_keys:
            self.seen_keys.add(key)
            for op in json.loads(body)["operations"]:
                n = op["payload"]["properties"]["n"]
                self.applied[n] += 1
                self.applied_under[n].add(key)


class SpoolModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="spool-model-")
        self.failed: list[Reported] = []
        self.engine = Engine()
        self.returned: set[int] = set()
        self.next_n = 0
        self.compact_at = 0
        self.processes: list[Process] = []
        self.retries: dict[str, int] = {}
        self.maybe_applied: set[str] = set()
        """Keys whose answer was lost: their fate is unknown to the client, which must not
        report them as failed (it keeps resending them with the same key)."""

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # --- processes ------------------------------------------------------------------------

    @initialize(compact_at=st.sampled_from([1, 1, 2048, 1 << 30]))
    def first(self, compact_at: int) -> None:
        """The program's processes rewrite their batch logs past this size (1: after every
        finished batch; 1 << 30: never)."""
        self.compact_at = compact_at
        self.start()

    @rule()
    @precondition(lambda self: len(self.processes) < 3)
    def start(self) -> None:
        """A process starts on the spool."""
        self.processes.append(Process(self.root, self.compact_at, self.failed))

    @rule(which=st.integers(0, 2))
    @precondition(lambda self: self.processes)
    def kill(self, which: int) -> None:
        self.processes.pop(which % len(self.processes)).kill()

    @rule(which=st.integers(0, 2))
    @precondition(lambda self: self.processes)
    def shut_down(self, which: int) -> None:
        self.processes.pop(which % len(self.processes)).shutdown()

    # --- callers --------------------------------------------------------------------------

    @rule(which=st.integers(0, 2), count=st.integers(1, 25))
    @precondition(lambda self: self.processes)
    def append(self, which: int, count: int) -> None:
        process = self.processes[which % len(self.processes)]
        for _ in range(count):
            n = self.next_n
            self.next_n += 1
            op = ("track", "user_m", "Model", {"n": n}, None, 1.7e9 + n)
            if process.source.append(op) > 0:
                self.returned.add(n)

    # --- the delivery thread --------------------------------------------------------------

    @rule(which=st.integers(0, 2))
    @precondition(lambda self: self.processes)
    def fill(self, which: int) -> None:
        self.processes[which % len(self.processes)].fill()

    @rule(which=st.integers(0, 2), size=st.integers(1, 12), answer=st.sampled_from(ANSWERS))
    @precondition(lambda self: self.processes)
    def send(self, which: int, size: int, answer: str) -> None:
        """One turn of the delivery thread: fill, then one request and its answer."""
        process = self.processes[which % len(self.processes)]
        process.fill()
        batch = process.take(size)
        if batch is not None:
            self.answer(process, batch, answer)

    @rule(which=st.integers(0, 2), size=st.integers(1, 12))
    @precondition(lambda self: self.processes)
    def deliver(self, which: int, size: int) -> None:
        """The common turn: a 200."""
        self.send(which, size, "200")

    def answer(self, process: Process, batch: Batch, answer: str) -> None:
        """One request and what ``Worker._handle`` does with its answer."""
        source = process.source
        if batch.body is None:
            batch.body = batch_body([e.data for e in batch.items])
        source.starting(batch)
        if answer in ("400", "413") and batch.key in self.engine.seen_keys:
            # The engine refuses a body for what it holds, and it applied this very body
            # before (an answer lost): it does so again.
            answer = "200"
        applies = answer in ("200", "lost")
        self.engine.receive(batch.key, batch.body, applies)
        if answer == "lost":
            self.maybe_applied.add(batch.key)
        if answer == "200":
            self.engine.answered_2xx.add(batch.key)
            process.backlog.release(batch.items)
            source.finished(batch)
        elif answer == "429" and self.retries.get(batch.key, 0) == 0 and not batch.keep_on_429:
            source.returned(batch)
            process.backlog.put_back(batch.items)
        elif answer in ("400", "413") and batch.count >= 2:
            items = one_by_one(batch.items)
            middle = len(items) // 2
            parts = [
                Batch(half, keep_on_429=batch.keep_on_429)
                for half in (items[:middle], items[middle:])
            ]
            source.split(batch, parts)
            process.waiting.extend(parts)
        elif answer in ("400", "413"):
            self.give_up(process, batch)
        else:  # 503, reset, a lost answer, a 429 on a retry: the same body and key again
            retries = self.retries[batch.key] = self.retries.get(batch.key, 0) + 1
            if retries > MAX_RETRIES and answer != "429" and batch.key not in self.maybe_applied:
                self.give_up(process, batch)
            else:
                process.waiting.append(batch)

    def give_up(self, process: Process, batch: Batch) -> None:
        process.backlog.release(batch.items)
        process.source.finished(batch)
        self.failed.extend(batch.reported)

    # --- what must hold at every step -------------------------------------------------------

    @invariant()
    def nothing_applied_twice(self) -> None:
        twice = {n: keys for n, keys in self.engine.applied_under.items() if len(keys) > 1}
        assert not twice, f"applied under two keys: {dict(list(twice.items())[:3])}"
        assert not self.engine.resent_after_2xx, "a batch answered 2xx was sent again"

    def drain(self) -> None:
        """The end of the program: every process dies, and two more come after. The first
        answers 200 to everything but the first recovered batch of several operations,
        which it is refused once (400), and dies too; the second delivers what is left."""
        for process in self.processes:
            process.kill()
        self.processes = []
        for refuse in (True, False):
            last = Process(self.root, self.compact_at, self.failed)
            for _ in range(10_000):
                last.fill()
                batch = last.take(50)
                if batch is None:
                    if last.source.all_read() and not last.waiting:
                        break
                    continue
                recovered = batch.keep_on_429 and batch.count >= 2
                self.answer(last, batch, "400" if refuse and recovered else "200")
                refuse = refuse and not recovered
            if refuse:
                last.kill()
            else:
                last.shutdown()

    def check_every_call_once(self) -> None:
        failed = Counter(_number(op) for op in self.failed)
        for n in self.returned:
            applied, reported = self.engine.applied[n], failed[n]
            assert applied + reported == 1, f"call {n}: applied {applied}, reported {reported}"
        leftovers = [d for d in os.listdir(self.root) if d.startswith("p-")]
        assert not leftovers, f"directories left with nothing owed: {leftovers}"


def _number(op: Reported) -> int:
    """The model's number of a reported operation (its JSON, or the call's values)."""
    if isinstance(op, bytes):
        return int(json.loads(op)["payload"]["properties"]["n"])
    return int(op[3]["n"])


def _examples() -> int:
    return int(os.environ.get("SANKOFA_MODEL_EXAMPLES", "40"))


def run_model(examples: int, steps: int) -> None:
    class Checked(SpoolModel):
        def teardown(self) -> None:
            try:
                self.drain()
                self.check_every_call_once()
            finally:
                super().teardown()

    run_state_machine_as_test(
        Checked,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_every_returned_call_is_applied_once_or_reported_once() -> None:
    run_model(_examples(), steps=60)


@pytest.mark.stress
def test_stress_longer_programs_of_the_spool_model() -> None:
    run_model(_examples() * 10, steps=200)


def test_a_recovered_batch_refused_whole_is_split_once_and_never_resent(tmp_path: Any) -> None:
    """The case the model found first, written out: a dead process's noted batch, refused
    with 400 by the engine after adoption; its halves applied; a third process finds nothing."""
    model = SpoolModel()
    model.root = str(tmp_path)
    model.first(compact_at=1 << 30)
    model.append(0, count=4)
    model.fill(0)
    model.send(0, size=4, answer="503")  # noted on disk, waiting for its retry
    model.kill(0)
    model.start()
    model.fill(0)  # adopts: the noted batch comes back first
    model.send(0, size=4, answer="400")  # refused whole: split in two
    model.send(0, size=4, answer="200")
    model.send(0, size=4, answer="200")
    model.shut_down(0)
    model.nothing_applied_twice()
    model.drain()
    model.nothing_applied_twice()
    model.check_every_call_once()
    assert sorted(model.engine.applied.values()) == [1, 1, 1, 1]


def test_a_kill_right_after_the_batch_log_is_rewritten_applies_nothing_twice(
    tmp_path: Any,
) -> None:
    """Delivered operations of the segment still being written, then the log rewritten (its
    "done" notes gone), then kill -9: the adopter must skip them."""
    model = SpoolModel()
    model.root = str(tmp_path)
    model.first(compact_at=1)  # rewritten after every finished batch
    model.append(0, count=20)
    model.fill(0)
    for _ in range(4):
        model.send(0, size=5, answer="200")
    model.kill(0)
    model.drain()
    model.nothing_applied_twice()
    model.check_every_call_once()
    assert sum(model.engine.applied.values()) == 20
