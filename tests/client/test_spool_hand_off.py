"""Handing a spool off: a child forked per job writes, its long-lived parent delivers.

The child's side is tested in this process by naming another process as the one handed to
(what a fork from it would see); the real fork, with RQ's work horse, is in
``tests/integrations/test_rq_worker.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sankofa_sdk import Client
from sankofa_sdk._delivery import spool_source
from sankofa_sdk._spool.directory import SpoolDirectory
from sankofa_sdk.testing import RecordingTransport

from ..conftest import API_KEY, HOST


@pytest.fixture
def forked_child(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as a child forked after its parent called hand_off_forked_children()."""
    monkeypatch.setattr(spool_source, "_hand_off_to", os.getpid() + 1)
    yield


def make(spool: Path, transport: RecordingTransport) -> Client:
    return Client(API_KEY, HOST, spool_dir=str(spool), transport=transport, flush_interval=0.05)


def test_a_child_sends_nothing_and_its_parent_delivers_everything(
    forked_child: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    child_transport = RecordingTransport()
    child = make(tmp_path, child_transport)
    for n in range(300):
        child.track("Job Done", {"n": n}, distinct_id=f"user_{n % 7}")
    assert child.flush(5)  # on disk is handed off: nothing to wait for
    child.shutdown(5)
    assert child_transport.requests == []
    assert child.stats()["dropped"] == {}
    [left] = [p for p in tmp_path.iterdir() if p.name.startswith("p-")]  # kept for the parent

    monkeypatch.setattr(spool_source, "_hand_off_to", os.getpid())  # now: the parent
    parent_transport = RecordingTransport()
    parent = make(tmp_path, parent_transport)
    assert parent.flush(5)
    sent = parent_transport.sent_operations()
    assert sorted(op["payload"]["properties"]["n"] for op in sent) == list(range(300))
    assert len(parent_transport.requests) < 5
    parent.shutdown(5)
    assert not left.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_parent_flush_takes_over_a_child_that_ended_since_its_last_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent_transport = RecordingTransport()
    parent = make(tmp_path, parent_transport)
    parent.track("Parent Started", distinct_id="worker")
    assert parent.flush(5)  # its look for dead directories is done: the next is seconds away

    monkeypatch.setattr(spool_source, "_hand_off_to", os.getpid() + 1)
    child = make(tmp_path, RecordingTransport())
    child.track("Job Done", distinct_id="user_1")
    child.shutdown(5)
    monkeypatch.setattr(spool_source, "_hand_off_to", None)

    assert parent.flush(5)
    names = [op["payload"]["event_name"] for op in parent_transport.sent_operations()]
    assert names == ["Parent Started", "Job Done"]
    parent.shutdown(5)


def test_directories_of_children_that_tracked_nothing_are_removed_when_adopted(
    tmp_path: Path,
) -> None:
    for _ in range(20):
        # What a child that tracked nothing leaves when it ends without a shutdown: its
        # directory, unlocked.
        SpoolDirectory.create(str(tmp_path)).close()
    assert len(list(tmp_path.iterdir())) == 20

    parent_transport = RecordingTransport()
    parent = make(tmp_path, parent_transport)
    assert parent.flush(5)
    # Only the parent's own directory is left: every lock it took over is let go at once.
    assert len(list(tmp_path.iterdir())) == 1
    assert parent_transport.requests == []
    parent.shutdown(5)


def test_many_small_directories_go_in_one_batch_with_the_insert_ids_they_were_given(
    forked_child: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for child in range(10):
        client = make(tmp_path, RecordingTransport())  # a child adopts nothing
        for n in range(3):
            client.track("Job Done", {"child": child, "n": n}, distinct_id="user_1")
        client.shutdown(5)
    children = [p for p in tmp_path.iterdir() if p.name.startswith("p-")]
    assert len(children) == 10
    # What any reader of a child's directory gives its calls (seq 1 to 3): kept when copied.
    expected = {
        SpoolDirectory(str(path), -1, owned=False).insert_id(seq)
        for path in children
        for seq in (1, 2, 3)
    }

    monkeypatch.setattr(spool_source, "_hand_off_to", None)
    transport = RecordingTransport()
    parent = make(tmp_path, transport)
    assert parent.flush(5)
    assert len(transport.requests) == 1  # ten directories, one request
    sent = transport.sent_operations()
    assert {op["payload"]["properties"]["$insert_id"] for op in sent} == expected
    parent.shutdown(5)
    assert list(tmp_path.iterdir()) == []
