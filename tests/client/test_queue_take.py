"""``Backlog.take``: the oldest operations for one batch, within count and bytes, one origin,
whether they are queued one by one or in runs."""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from sankofa_sdk._delivery.batch import Batch
from sankofa_sdk._delivery.spool_source import DiskOrigin as Origin
from sankofa_sdk._options import Options
from sankofa_sdk._queue import Backlog, Encoded, one_by_one


def _taken_one_by_one(
    items: list[Encoded], max_ops: int, max_bytes: int, overhead: int
) -> list[Encoded]:
    """The rule, written as the loop it was before it was made cheaper."""
    taken: list[Encoded] = []
    size = overhead
    spool = items[0].origin.group if items and items[0].origin else None
    for item in items:
        if len(taken) >= max_ops:
            break
        item_size = len(item.data) + 1
        if taken and size + item_size > max_bytes:
            break
        if (item.origin.group if item.origin else None) is not spool:
            break
        taken.append(item)
        size += item_size
    return taken


spools: list[Any] = [object(), object()]
origins = st.one_of(
    st.none(),
    st.builds(lambda n: Origin(spools[n], 1, 1), st.integers(0, 1)),  # type: ignore[arg-type]
)


def _queued(shapes: list[tuple[int, Optional[Origin]]], cuts: list[int]) -> list[Encoded]:
    """The operations (distinct bytes each) as the worker queues them: operations from memory
    in runs (a run ends after each index in ``cuts``), those from a spool one by one."""
    backlog = Backlog(Options())
    pending: list[bytes] = []
    for index, (size, origin) in enumerate(shapes):
        data = (b"%d:" % index).ljust(size, b"x")
        if origin is not None:
            backlog.add_many(pending)
            pending = []
            backlog.add(data, origin)
            continue
        pending.append(data)
        if index in cuts:
            backlog.add_many(pending)
            pending = []
    backlog.add_many(pending)
    return list(backlog.encoded)


def _one_each(runs: list[Encoded]) -> list[tuple[bytes, int, Optional[Origin]]]:
    return [(single.data, single.seq, single.origin) for single in one_by_one(runs)]


@settings(max_examples=400)
@given(
    st.lists(st.tuples(st.integers(3, 400), origins), max_size=40),
    st.lists(st.integers(0, 40), max_size=10),
    st.integers(1, 50),
    st.integers(1, 6000),
    st.integers(0, 100),
)
def test_take_keeps_its_rule(
    shapes: list[tuple[int, Optional[Origin]]],
    cuts: list[int],
    max_ops: int,
    max_bytes: int,
    overhead: int,
) -> None:
    runs = _queued(shapes, cuts)
    singles = one_by_one(runs)
    assert [len(single.data) for single in singles] == [size for size, _ in shapes]
    backlog = Backlog(Options())
    backlog.encoded.extend(runs)
    backlog.encoded_ops = len(shapes)
    backlog.encoded_bytes = sum(size for size, _ in shapes)

    expected = _taken_one_by_one(singles, max_ops, max_bytes, overhead)
    taken = backlog.take(max_ops, max_bytes, overhead)

    # The same operations, in order, with their places and origins; the body is the same too.
    assert _one_each(taken) == _one_each(expected)
    assert b",".join(run.data for run in taken) == b",".join(op.data for op in expected)
    assert _one_each(list(backlog.encoded)) == _one_each(singles[len(expected) :])
    moved = sum(len(op.data) for op in expected)
    assert backlog.held_bytes == moved and backlog.held_count == len(expected)
    assert backlog.encoded_bytes == sum(size for size, _ in shapes) - moved
    assert backlog.encoded_ops == len(shapes) - len(expected)
    assert sum(run.size for run in backlog.encoded) == backlog.encoded_bytes


@given(st.lists(st.binary(min_size=1, max_size=30).filter(lambda b: b"," not in b), min_size=2))
def test_a_run_splits_into_its_operations(datas: list[bytes]) -> None:
    backlog = Backlog(Options())
    backlog.skip_seq()
    backlog.add_many(datas)
    (run,) = backlog.encoded
    assert run.elements() == datas and run.operations == len(datas)
    assert run.size == sum(map(len, datas)) and run.seq == 1
    for k in range(1, len(datas)):
        left, right = run.split(k)
        assert left.elements() == datas[:k] and right.elements() == datas[k:]
        assert (left.seq, right.seq) == (1, 1 + k)
        assert left.size + right.size == run.size
        assert (left.operations, right.operations) == (k, len(datas) - k)


@given(st.lists(st.integers(1, 50), min_size=2, max_size=20), st.integers(0, 20), st.data())
def test_a_batch_ends_exactly_where_the_bytes_run_out(
    sizes: list[int], overhead: int, data: st.DataObject
) -> None:
    # Random limits rarely land on a boundary: put one there, and one byte short of it.
    k = data.draw(st.integers(1, len(sizes)))
    fits = overhead + sum(size + 1 for size in sizes[:k])
    for max_bytes, expected in ((fits, k), (fits - 1, max(1, k - 1))):
        backlog = Backlog(Options())
        backlog.add_many([b"x" * size for size in sizes])
        taken = backlog.take(len(sizes), max_bytes, overhead)
        assert sum(run.operations for run in taken) == expected


_actions = st.lists(
    st.one_of(
        st.tuples(st.just("add_many"), st.lists(st.integers(0, 20), max_size=6)),
        st.tuples(st.just("add"), origins),
        st.tuples(st.just("take"), st.tuples(st.integers(1, 8), st.integers(1, 120))),
        st.tuples(st.just("release"), st.integers(0, 5)),
        st.just(("put_back", None)),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(_actions)
def test_the_queue_keeps_its_operations_and_counts_whatever_happens(
    actions: list[tuple[str, Any]],
) -> None:
    # A model of the queue, one entry per operation: (json, seq, origin). Whatever mix of
    # runs, spool operations, takes, releases and 429 put-backs, the queue holds exactly the
    # model's operations in order, and its counters agree with what is queued and held.
    backlog = Backlog(Options())
    queued: list[tuple[bytes, int, Optional[Origin]]] = []
    held: list[list[Encoded]] = []
    made = 0
    for action, argument in actions:
        if action == "add_many":
            datas = [b'"%d%s"' % (made + i, b"x" * size) for i, size in enumerate(argument)]
            queued += [(data, backlog.next_seq + i, None) for i, data in enumerate(datas)]
            backlog.add_many(datas)
            made += len(datas)
        elif action == "add":
            data = b'"%d"' % made
            queued.append((data, backlog.next_seq, argument))
            backlog.add(data, argument)
            made += 1
        elif action == "take":
            max_ops, max_bytes = argument
            taken = backlog.take(max_ops, max_bytes, 17)
            count = sum(run.operations for run in taken)
            assert _one_each(taken) == queued[:count]
            assert count <= max_ops and (count > 0 or not queued)
            if count > 1:
                assert len(b",".join(run.data for run in taken)) + 17 + 1 <= max_bytes
            del queued[:count]
            if taken:
                held.append(taken)
        elif action == "release" and held:
            backlog.release(held.pop(argument % len(held)))
        elif action == "put_back" and held:
            taken = held.pop()  # the batch in flight is the one taken last
            queued[:0] = _one_each(taken)
            backlog.put_back(taken)
        assert _one_each(list(backlog.encoded)) == queued
        assert backlog.encoded_ops == len(queued)
        assert backlog.encoded_bytes == sum(len(data) for data, _, _ in queued)
        assert backlog.held_count == sum(run.operations for batch in held for run in batch)
        assert backlog.held_bytes == sum(run.size for batch in held for run in batch)
        for run in backlog.encoded:
            assert run.data == b",".join(run.elements())
            assert run.size == sum(map(len, run.elements()))


def test_a_batch_of_runs_reports_and_splits_by_operation() -> None:
    backlog = Backlog(Options())
    backlog.add_many([b'"a"', b'"b"', b'"c"'])
    backlog.add(b'"d"')
    batch = Batch(backlog.take(10, 1000, 17))
    assert batch.count == 4
    assert batch.reported == [b'"a"', b'"b"', b'"c"', b'"d"']
    singles = one_by_one(batch.items)
    assert [(s.data, s.seq) for s in singles] == [
        (b'"a"', 0),
        (b'"b"', 1),
        (b'"c"', 2),
        (b'"d"', 3),
    ]
