"""The spool's files on their own: records, damage, directories, locks. No client, no server."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sankofa_sdk._spool.directory import (
    MAGIC,
    OP,
    SEGMENT_BYTES,
    PendingBatch,
    SpoolDirectory,
    parse,
    record,
)

payloads = st.lists(st.binary(min_size=0, max_size=300), min_size=0, max_size=30)


@given(payloads)
def test_records_read_back_as_written(items: list[bytes]) -> None:
    data = b"".join(record(OP, n, item) for n, item in enumerate(items))
    records, used, damaged = parse(data, final=True)
    assert [r.payload for r in records] == items and used == len(data) and damaged == 0


@settings(max_examples=200)
@given(payloads, st.data())
def test_damage_costs_only_the_records_it_touches(items: list[bytes], data: st.DataObject) -> None:
    encoded = [record(OP, n, item) for n, item in enumerate(items)]
    spoiled = data.draw(st.sets(st.integers(0, max(0, len(items) - 1))))
    stream = b""
    for n, raw in enumerate(encoded):
        if n in spoiled and len(raw) > 20:
            position = data.draw(st.integers(2, len(raw) - 1))
            raw = raw[:position] + bytes([raw[position] ^ 0xFF]) + raw[position + 1 :]
        stream += raw
    records, _, damaged = parse(stream, final=True)
    survivors = {r.seq for r in records}
    for n, item in enumerate(items):
        # An intact record is always found again, unless a payload happens to contain the
        # magic bytes right where a damaged neighbour sends the reader looking.
        intact = n not in spoiled or len(encoded[n]) <= 20
        if intact and MAGIC not in item:
            assert n in survivors
    assert all(r.payload == items[r.seq] for r in records)
    assert damaged > 0 or not any(n in spoiled and len(encoded[n]) > 20 for n in range(len(items)))


def test_a_torn_last_record_waits_while_written_and_is_damage_once_final() -> None:
    whole = record(OP, 1, b'{"type":"track"}')
    torn = record(OP, 2, b'{"type":"people"}')[:-5]
    records, used, damaged = parse(whole + torn, final=False)
    assert len(records) == 1 and used == len(whole) and damaged == 0
    records, used, damaged = parse(whole + torn, final=True)
    assert len(records) == 1 and damaged == len(torn)


def test_directories_and_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        spool = SpoolDirectory.create(str(tmp_path / "spool"))
        spool.append(b'{"type":"track"}')
        spool.note_batch(PendingBatch("k" * 32, [1], b"{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(spool.path).st_mode) == 0o700
    for name in os.listdir(spool.path):
        assert stat.S_IMODE(os.stat(os.path.join(spool.path, name)).st_mode) == 0o600
    spool.close()


def test_a_live_directory_is_not_adopted_and_a_released_one_is(tmp_path: Path) -> None:
    root = str(tmp_path / "spool")
    live = SpoolDirectory.create(root)
    live.append(b'{"type":"track","payload":{}}')
    assert list(SpoolDirectory.adopt_dead(root, exclude=set())) == []
    live.close()  # the owner is gone: its lock is free
    (adopted,) = SpoolDirectory.adopt_dead(root, exclude=set())
    assert adopted.path == live.path
    # Two adopters never get the same directory: the first holds its lock.
    assert list(SpoolDirectory.adopt_dead(root, exclude=set())) == []
    records, _ = adopted.read(1 << 20)
    assert [r.payload for _, r in records] == [b'{"type":"track","payload":{}}']
    adopted.finished([segment for segment, _ in records])
    assert adopted.empty()
    adopted.remove()
    assert not os.path.exists(live.path)


def test_pending_batches_are_resent_and_their_operations_not_read_twice(tmp_path: Path) -> None:
    root = str(tmp_path / "spool")
    spool = SpoolDirectory.create(root)
    for n in range(5):
        spool.append(b'{"n":%d}' % n)
    spool.note_batch(PendingBatch("a" * 32, [1, 2], b'{"operations":[{"n":0},{"n":1}]}'))
    spool.note_batch(PendingBatch("b" * 32, [3], b'{"operations":[{"n":2}]}'))
    spool.note_done("b" * 32)
    spool.note_batch(PendingBatch("c" * 32, [4], b'{"operations":[{"n":3}]}'))
    spool.note_cancelled("c" * 32)
    spool.close()
    (adopted,) = SpoolDirectory.adopt_dead(root, exclude=set())
    assert [(b.key, b.seqs) for b in adopted.pending.values()] == [("a" * 32, [1, 2])]
    records, _ = adopted.read(1 << 20)
    # 1 and 2 go in the pending batch, 3 was done; 4 (cancelled) and 5 are free to go.
    assert [r.seq for _, r in records] == [4, 5]
    adopted.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_root_cannot_be_used(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OSError):
            SpoolDirectory.create(str(tmp_path / "spool"))
    finally:
        tmp_path.chmod(0o700)


def test_the_unwritten_end_of_a_segment_is_not_damage() -> None:
    # A writer that died leaves its segment at full size, zeros after the last record.
    whole = record(OP, 1, b'{"type":"track"}')
    records, _, damaged = parse(whole + bytes(4096), final=True)
    assert [r.seq for r in records] == [1] and damaged == 0
    torn = record(OP, 2, b'{"type":"people"}')[:-5]
    records, _, damaged = parse(whole + torn + bytes(4096), final=True)
    assert [r.seq for r in records] == [1] and damaged == len(torn)


def test_a_killed_writer_leaves_a_full_size_segment_that_reads_back(tmp_path: Path) -> None:
    root = str(tmp_path / "spool")
    spool = SpoolDirectory.create(root)
    for n in range(3):
        spool.append(b'{"n":%d}' % n)
    spool.forget_after_fork()  # closes without cutting the file, as a death would
    (segment,) = [name for name in os.listdir(spool.path) if name.startswith("seg-")]
    assert os.path.getsize(os.path.join(spool.path, segment)) == SEGMENT_BYTES
    (adopted,) = SpoolDirectory.adopt_dead(root, exclude=set())
    records, damaged = adopted.read(1 << 20)
    assert [r.payload for _, r in records] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert damaged == 0
    adopted.close()


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    root = str(tmp_path / "spool")
    spool = SpoolDirectory.create(root, fsync=True)
    big = b"x" * (SEGMENT_BYTES + 10)
    spool.append(b"small")
    spool.append(big)
    spool.append(b"after")
    spool.close()  # a clean close cuts each segment to what was written
    sizes = sorted(os.path.getsize(os.path.join(spool.path, n)) for n in os.listdir(spool.path))
    assert max(sizes) < SEGMENT_BYTES + 100
    (adopted,) = SpoolDirectory.adopt_dead(root, exclude=set())
    records, damaged = adopted.read(1 << 30)
    assert [r.payload for _, r in records] == [b"small", big, b"after"] and damaged == 0
    adopted.close()


def test_a_directory_being_made_is_never_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another client scanning for dead directories at the instant this one is made (after the
    # directory exists, before its lock is held) must neither adopt it nor make it fail.
    import sankofa_sdk._spool.directory as spool_module

    root = str(tmp_path / "spool")
    real_flock = spool_module.fcntl.flock
    seen: list[list[SpoolDirectory]] = []

    def flock_after_a_scan(fd: int, operation: int) -> None:
        if not seen:
            seen.append(list(SpoolDirectory.adopt_dead(root, exclude=set())))
        real_flock(fd, operation)

    monkeypatch.setattr(spool_module.fcntl, "flock", flock_after_a_scan)
    made = SpoolDirectory.create(root)
    monkeypatch.setattr(spool_module.fcntl, "flock", real_flock)
    assert seen == [[]]
    assert os.path.basename(made.path).startswith("p-")
    assert list(SpoolDirectory.adopt_dead(root, exclude=set())) == []  # locked: alive
    made.close()


def test_a_directory_whose_maker_died_before_locking_it_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    abandoned = root / ".new-0123456789abcdef"
    abandoned.mkdir(parents=True)
    (abandoned / "lock").write_bytes(b"")
    old = os.stat(abandoned).st_mtime - 3600
    os.utime(abandoned, (old, old))
    fresh = root / ".new-fedcba9876543210"
    fresh.mkdir()
    assert list(SpoolDirectory.adopt_dead(str(root), exclude=set())) == []
    assert not abandoned.exists() and fresh.exists()  # a fresh one may be being made now


def test_our_own_batches_leave_nothing_behind_in_memory_once_done(tmp_path: Path) -> None:
    # What a batch covers is only needed to read someone else's directory: in our own, the
    # bookkeeping of 20,000 delivered operations must not stay in memory.
    spool = SpoolDirectory.create(str(tmp_path / "spool"))
    seq = 0
    for n in range(200):
        seqs = [spool.append(b'{"n":%d}' % (seq + i)) for i in range(100)]
        seq += 100
        spool.note_batch(PendingBatch(f"{n:032x}", seqs, b"{}"))
        spool.note_done(f"{n:032x}")
    assert spool.pending == {} and not spool._in_batches
    assert len(spool._finished_ranges) <= 200
    spool.close()


def test_a_note_the_disk_refuses_still_finishes_the_batch_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A failed "done" write must not make a clean shutdown keep a delivered directory.
    spool = SpoolDirectory.create(str(tmp_path / "spool"))
    seq = spool.append(b'{"n":1}')
    spool.note_batch(PendingBatch("d" * 32, [seq], b"{}"))

    def refused(raw: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool, "_append_batches", refused)
    with pytest.raises(OSError):
        spool.note_done("d" * 32)
    assert spool.pending == {}
    spool.close()
