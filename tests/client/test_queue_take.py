"""``Backlog.take``: the oldest operations for one batch, within count and bytes, one origin."""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from sankofa_sdk._options import Options
from sankofa_sdk._queue import Backlog, Encoded
from sankofa_sdk._spooling import Origin


def _taken_one_by_one(
    items: list[Encoded], max_ops: int, max_bytes: int, overhead: int
) -> list[Encoded]:
    """The rule, written as the loop it was before it was made cheaper."""
    taken: list[Encoded] = []
    size = overhead
    spool = items[0].origin.spool if items and items[0].origin else None
    for item in items:
        if len(taken) >= max_ops:
            break
        item_size = len(item.data) + 1
        if taken and size + item_size > max_bytes:
            break
        if (item.origin.spool if item.origin else None) is not spool:
            break
        taken.append(item)
        size += item_size
    return taken


spools: list[Any] = [object(), object()]
origins = st.one_of(
    st.none(),
    st.builds(lambda n: Origin(spools[n], 1, 1), st.integers(0, 1)),  # type: ignore[arg-type]
)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(1, 400), origins), max_size=40),
    st.integers(1, 50),
    st.integers(1, 6000),
    st.integers(0, 100),
)
def test_take_keeps_its_rule(
    shapes: list[tuple[int, Optional[Origin]]], max_ops: int, max_bytes: int, overhead: int
) -> None:
    backlog = Backlog(Options())
    items = [Encoded(b"x" * size, seq, origin, size) for seq, (size, origin) in enumerate(shapes)]
    backlog.encoded.extend(items)
    backlog.encoded_bytes = sum(len(i.data) for i in items)
    expected = _taken_one_by_one(items, max_ops, max_bytes, overhead)
    taken = backlog.take(max_ops, max_bytes, overhead)
    assert taken == expected
    assert list(backlog.encoded) == items[len(taken) :]
    moved = sum(len(i.data) for i in taken)
    assert backlog.held_bytes == moved and backlog.held_count == len(taken)
    assert backlog.encoded_bytes == sum(len(i.data) for i in items) - moved
