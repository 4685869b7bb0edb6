"""The spool as a source: calls on disk before they return, read back as room allows, and the
bookkeeping that makes every batch of them go exactly once, whichever process sends it.

With a spool, a call is written to disk on the caller's thread (``append``) and the delivery
thread reads it back (``fill``) rather than taking it from memory: the disk is the queue, and
only ``max_queue_bytes`` of it is in memory at a time, so a long outage fills the disk (up to
``max_spool_bytes``) instead of dropping.

Exactly once, across kill -9. Every batch made of spooled operations is noted in the
``batches.log`` of the directory its operations came from before it goes (``starting``), with
its body and ``Idempotency-Key``; then it is noted done (``finished``), cancelled when it was
refused before it was applied (``returned``, its operations free again), or replaced by its
parts (``split``, the parts and the end of the batch in one write). A process that dies at any
moment leaves a directory from which the adopter resends the pending batches with their own
bodies and keys (``fill`` returns them first), skips every operation that a pending batch
covers or that is finished, and delivers the rest. A batch recovered this way is bookkept here
like any other: its split, its retries and its end are noted in the directory it came from.

Each operation keeps one ``$insert_id`` whatever the path: a call kept as JSON carries the id
it was given on the caller's thread; a call kept as values gets the id made from its
directory and number (``SpoolDirectory.insert_id``), the same in whichever process reads it.

Handing off. A runner that forks a short-lived child per job (RQ's work horse, which ends with
``os._exit``) calls :func:`hand_off_forked_children` in its long-lived process. A spool made
in a process forked from it afterwards only writes: it reads nothing back, sends nothing and
adopts nothing, and a flush returns once the calls are on disk. When the child is gone its
directory is adopted by the long-lived process's client, which delivers every child's calls
together: no request per job, and nothing lost however the child ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple, Optional

from .._errors import DeliveryError
from .._log import logger
from .._options import Options
from .._queue import Backlog, Encoded, Marker
from .._serialize import InsertIds, Operation, Reported, batch_body
from .._spool.calls import pack_call, unpack_call
from .._spool.directory import (
    CALL,
    OP,
    PendingBatch,
    Record,
    SpoolDirectory,
    SpoolError,
    batch_elements,
)
from .._stats import Stats
from .batch import Batch
from .clock import Clock
from .encoding import MAX_OPERATION_BYTES, OperationEncoder
from .sources import Intake, MemorySource

ADOPT_INTERVAL = 5.0
"""How often a live client looks for directories whose owner died."""
COMPACT_BATCHES_BYTES = 8 * 1024 * 1024
"""Our batches.log is rewritten (pending batches and finished operations only) past this."""
ABSORB_MAX_BYTES = 1024 * 1024
"""A dead directory this small with no batch under way is copied into our own (see
``SpoolSource._absorb``) rather than delivered on its own."""

Report = Callable[[DeliveryError, list[Reported]], None]

_hand_off_to: Optional[int] = None
"""The process whose forked children hand their spool to it (see the module's docstring)."""


def hand_off_forked_children() -> None:
    """From now on, spools made in processes forked from this one only write to disk; this
    process's client on the same ``spool_dir`` adopts and delivers what they leave."""
    global _hand_off_to
    _hand_off_to = os.getpid()


def handing_off() -> bool:
    """True in a process forked from one that called :func:`hand_off_forked_children`."""
    return _hand_off_to is not None and _hand_off_to != os.getpid()


def say_unavailable(root: str, exc: OSError, stats: Stats, report: Report) -> None:
    """The spool cannot be written (made, or appended to): counted, logged, reported once."""
    stats.add_spool_error()
    error = DeliveryError(
        f"the spool in {root} cannot be written ({exc}); operations are kept in memory from now on",
        reason="spool_unavailable",
    )
    logger.error("%s", error)
    report(error, [])


class DiskOrigin(NamedTuple):
    """Where a queued operation lives on disk."""

    group: SpoolDirectory
    segment: int
    """Its segment; 0 for an operation of a recovered batch (it lives in the batch's body)."""
    seq: int


class DiskTicket(NamedTuple):
    """A batch as noted in its directory's batches.log."""

    directory: SpoolDirectory
    seqs: list[int]
    segments: list[int]


class SpoolSource(MemorySource):
    """The spool of one client: its own directory and those it adopted. Calls the disk
    refuses go to memory (``MemorySource``), and the spool says so once."""

    def __init__(
        self,
        backlog: Backlog,
        encoder: OperationEncoder,
        room_changed: Callable[[], None],
        *,
        options: Options,
        clock: Clock,
        stats: Stats,
        report: Report,
        compact_at: Optional[int] = None,
    ) -> None:
        """Raises OSError when the directory cannot be made."""
        super().__init__(backlog, encoder, room_changed)
        assert options.spool_dir is not None
        self.root = options.spool_dir
        self._max_bytes = options.max_spool_bytes
        self._encoder = encoder
        self._clock = clock
        self._stats = stats
        self._report = report
        self._compact_at = COMPACT_BATCHES_BYTES if compact_at is None else compact_at
        self._insert_ids = InsertIds()
        self.own: Optional[SpoolDirectory] = SpoolDirectory.create(
            self.root, fsync=options.spool_fsync
        )
        self.adopted: list[SpoolDirectory] = []
        self._next_scan = 0.0
        self._written = 0
        """Calls written to our own directory (what ``accepted`` counts of the disk)."""
        self._read_seq = 0
        """The last of our own sequence numbers read into the queue."""
        self._flush_targets: dict[Marker, int] = {}
        self._waiting_markers: list[Marker] = []
        self.writable = True
        self._opened_at = time.time()
        self.hands_off = handing_off()
        """Only write: the process we were forked from delivers our directory once we are gone."""

    def disk_bytes(self) -> int:
        """Bytes of the spool's segments still on disk, adopted directories included (read by
        the metrics from any thread)."""
        return sum(directory.written_bytes for directory in self._directories())

    # --- the callers' side ----------------------------------------------------------------

    def append(self, op: Operation) -> int:
        """Write ``op`` to disk before the call returns: how many of ours are unread now; 0
        when the spool is full (``max_spool_bytes``); -1 when the disk refuses (the caller
        queues it in memory instead)."""
        own = self.own
        if own is None or not self.writable:
            return -1
        # Plain values are written as they are: the thread encodes them when it reads them
        # back, as it would from memory. The rest as JSON, encoded here with its $insert_id.
        data = pack_call(op)
        kind = CALL
        if data is None or len(data) > MAX_OPERATION_BYTES:
            insert_id = self._insert_ids.next() if op[0] == "track" else None
            data, kind = self._encoder.encode(op, insert_id), OP
            if data is None:
                return 1  # reported as invalid or too large, like the thread would
        if own.written_bytes + len(data) > self._max_bytes:
            return 0
        try:
            seq = own.append(data, kind)
        except SpoolError as exc:
            self.failed(exc)
            return -1
        self._written += 1
        return seq - self._read_seq

    def flush_marker(self, marker: Marker) -> None:
        own = self.own
        if own is not None and not self.hands_off:
            self._flush_targets[marker] = own.next_seq - 1
        # A flush also takes over what dead processes left, now rather than at the next scan:
        # a worker flushing at its end delivers the directories of the children it outlived.
        self._next_scan = 0.0
        super().flush_marker(marker)

    def failed(self, exc: OSError) -> None:
        """The disk refused: go on in memory, and say so once. What is already on disk is
        still read and delivered."""
        if not self.writable:
            return  # said already
        self.writable = False
        if self.own is not None:
            self.own.stop_writing()
        say_unavailable(self.root, exc, self._stats, self._report)

    # --- the delivery thread's side -------------------------------------------------------

    def fill(self, backlog: Backlog) -> Intake:
        memory = super().fill(backlog)
        if self.hands_off:
            # What is on disk is delivered by the process we were forked from: a flush waits
            # for our calls the disk refused (in memory) only.
            return memory
        recovered, absorbed = self._adopt()
        own = self.own
        if absorbed and own is not None:
            # A flush waiting now waits for what was just copied into our directory too.
            for marker in list(self._flush_targets):
                self._flush_targets[marker] = own.next_seq - 1
        room = self._options_room(backlog)
        if room > 0:
            self._read(backlog, room)
        if self.adopted:
            self._drop_delivered_adopted()
        # Flushes wait until everything written to disk before them was read.
        self._waiting_markers.extend(memory.markers)
        placed: list[Marker] = []
        while self._waiting_markers:
            marker = self._waiting_markers[0]
            if self._flush_targets.get(marker, 0) > self._read_seq and self.own is not None:
                break
            self._flush_targets.pop(marker, None)
            placed.append(self._waiting_markers.pop(0))
        return Intake(recovered, placed)

    def _options_room(self, backlog: Backlog) -> int:
        return backlog.max_bytes - backlog.encoded_bytes - backlog.held_bytes

    def _adopt(self) -> tuple[list[Batch], bool]:
        """Take over directories whose owner died (every few seconds at most, and at a
        flush): the batches they were sending, to be resent first with their own bodies and
        keys; and whether any was copied into our own directory."""
        now = self._clock.now()
        if now < self._next_scan:
            return [], False
        self._next_scan = now + ADOPT_INTERVAL
        mine = {s.path for s in self.adopted}
        if self.own is not None:
            mine.add(self.own.path)
        recovered: list[Batch] = []
        absorbed = False
        for directory in SpoolDirectory.adopt_dead(self.root, mine):
            if directory.damaged_bytes:
                self._damaged(directory, directory.damaged_bytes)
            if self._absorb(directory):
                absorbed = True
                continue
            self.adopted.append(directory)
            recovered.extend(self._recovered(directory, b) for b in directory.pending.values())
            logger.info("adopted the spool %s left by a process that is gone", directory.path)
        return recovered, absorbed

    def _absorb(self, directory: SpoolDirectory) -> bool:
        """Copy a small dead directory with no batch under way into our own, then remove it.

        A batch holds the operations of one directory (its notes go there), so a hundred
        directories of short-lived processes (a work horse per job) would cost a hundred
        requests; copied, they go in full batches. Each operation keeps its ``$insert_id``
        (copied as the JSON the engine gets). The only window for a duplicate is a death
        between the copy and the removal (the next adopter then finds both).

        False when the directory is adopted as it is instead: too large, a batch under way,
        our spool full or refusing (what was copied so far is noted finished there first).
        """
        own = self.own
        if (
            own is None
            or not self.writable
            or directory.pending
            or directory.written_bytes > ABSORB_MAX_BYTES
        ):
            return False
        records, damaged = directory.read(4 * ABSORB_MAX_BYTES)
        if damaged:
            self._damaged(directory, damaged)
        copied: list[DiskOrigin] = []
        rest = records
        if directory.fully_read():
            for index, (segment, found) in enumerate(records):
                origin = DiskOrigin(directory, segment, found.seq)
                data = found.payload if found.kind == OP else self._unpacked(found, origin)[0]
                if data is None:
                    continue  # reported, and finished in that directory
                if own.written_bytes + len(data) > self._max_bytes:
                    rest = records[index:]
                    break
                try:
                    own.append(data, OP)
                except SpoolError as exc:
                    self.failed(exc)
                    rest = records[index:]
                    break
                copied.append(origin)
            else:
                directory.remove()
                logger.debug("copied the spool %s of a process that is gone", directory.path)
                return True
        if copied:
            self._safely(directory.note_finished, [o.seq for o in copied])
            directory.finished([o.segment for o in copied])
        for segment, found in rest:
            origin = DiskOrigin(directory, segment, found.seq)
            data = found.payload if found.kind == OP else self._unpacked(found, origin)[0]
            if data is not None:
                self._backlog.add(data, origin)
        return False

    def _recovered(self, directory: SpoolDirectory, pending: PendingBatch) -> Batch:
        """A batch a dead process noted as going out: resent as it was, with its key. Its
        operations keep their numbers, so a split notes which part covers which."""
        elements = batch_elements(pending.body)
        seqs = pending.seqs if len(pending.seqs) == len(elements) else [0] * len(elements)
        items = [
            Encoded(element, 0, DiskOrigin(directory, 0, seq), len(element))
            for element, seq in zip(elements, seqs, strict=True)
        ]
        # A 429 does not return its operations to the queue: they go as this batch, once.
        batch = Batch(items, key=pending.key, body=pending.body, keep_on_429=True)
        batch.ticket = DiskTicket(directory, pending.seqs, [])
        self._backlog.hold(items)
        return batch

    def _read(self, backlog: Backlog, budget: int) -> None:
        """Operations from disk into the queue, about ``budget`` bytes: adopted ones first."""
        for directory in self._directories():
            if budget <= 0:
                break
            records, damaged = directory.read(budget)
            if damaged:
                self._damaged(directory, damaged)
            # The call time of our own calls kept as values, for the delay the metrics measure
            # (within the life of this source, as for calls in memory); unknown (0.0) for the
            # rest: a dead process's, or calls kept as JSON.
            own = directory is self.own
            now = time.time() if own else 0.0
            for segment, found in records:
                budget -= len(found.payload)
                origin = DiskOrigin(directory, segment, found.seq)
                called_at = 0.0
                if found.kind == OP:
                    data: Optional[bytes] = found.payload
                else:
                    data, stamp = self._unpacked(found, origin)
                    if own:
                        called_at = min(max(stamp, self._opened_at), now)
                if data is not None:
                    backlog.add(data, origin, called_at)
            if own and records:
                self._read_seq = records[-1][1].seq

    def _unpacked(self, found: Record, origin: DiskOrigin) -> tuple[Optional[bytes], float]:
        """The JSON of a call the spool kept as values, and its timestamp; None (reported,
        and finished on disk) when it cannot be sent."""
        call = unpack_call(found.payload)
        data = None
        stamp = 0.0
        if call is None:
            self._damaged(origin.group, len(found.payload))
        else:
            insert_id = origin.group.insert_id(origin.seq) if call[0] == "track" else None
            data = self._encoder.encode(call, insert_id)
            stamp = call[5]
        if data is None:
            self._safely(origin.group.note_finished, [origin.seq])
            origin.group.finished([origin.segment])
        return data, stamp

    def starting(self, batch: Batch) -> None:
        if batch.ticket is not None or batch.body is None:
            return
        ticket = _ticket(batch.items)
        if ticket is None:
            return  # from memory
        batch.ticket = ticket
        pending = PendingBatch(batch.key, ticket.seqs, batch.body)
        self._safely(ticket.directory.note_batch, pending)

    def finished(self, batch: Batch) -> None:
        noted = batch.ticket
        ticket = noted if isinstance(noted, DiskTicket) else _ticket(batch.items)
        if ticket is None:
            return
        if noted is not None:
            self._safely(ticket.directory.note_done, batch.key)
        else:  # reported before it was ever noted (too large to send)
            self._safely(ticket.directory.note_finished, ticket.seqs)
        ticket.directory.finished([s for s in ticket.segments if s])
        self._tidy()

    def returned(self, batch: Batch) -> None:
        ticket = batch.ticket
        if isinstance(ticket, DiskTicket):
            self._safely(ticket.directory.note_cancelled, batch.key)
            batch.ticket = None

    def split(self, batch: Batch, parts: list[Batch]) -> None:
        ticket = batch.ticket
        if not isinstance(ticket, DiskTicket):
            return  # never noted: each part is noted when it goes
        part_tickets = [
            _ticket(part.items) or DiskTicket(ticket.directory, [], []) for part in parts
        ]
        if sum(len(t.seqs) for t in part_tickets) != len(ticket.seqs):
            # A recovered body whose operations could not be matched to their numbers: the
            # first part covers them all (finished with it; never read as loose operations).
            part_tickets = [t._replace(seqs=[]) for t in part_tickets]
            part_tickets[0] = part_tickets[0]._replace(seqs=ticket.seqs)
        noted: list[PendingBatch] = []
        for part, part_ticket in zip(parts, part_tickets, strict=True):
            part.body = batch_body([e.data for e in part.items])
            part.ticket = part_ticket
            noted.append(PendingBatch(part.key, part_ticket.seqs, part.body))
        self._safely(ticket.directory.note_split, batch.key, noted)

    def keeps(self, items: list[Encoded]) -> bool:
        return bool(items) and items[0].origin is not None

    def accepted(self) -> int:
        return super().accepted() + self._written

    def unread(self) -> int:
        own = self.own
        return 0 if own is None else own.next_seq - 1 - self._read_seq

    def all_read(self) -> bool:
        if self.hands_off:
            return True  # nothing of the disk is ours to read
        return all(d.fully_read() for d in self._directories())

    def close(self, left_behind: int) -> None:
        """Remove our directory if nothing is left in it, else leave it (closed, unlocked)
        for the next process to adopt. Adopted directories are let go the same way."""
        left_behind += self.unread()
        self._stats.set_left_in_spool(left_behind)
        if left_behind and self.hands_off:
            logger.debug(
                "%d operation(s) handed to process %s through the spool %s",
                left_behind,
                _hand_off_to,
                self.root,
            )
        elif left_behind:
            logger.warning(
                "shutdown: %d operation(s) not delivered yet stay in the spool "
                "%s; the next client on the same spool_dir delivers them",
                left_behind,
                self.root,
            )
        for directory in self.adopted:
            if directory.empty():
                directory.remove()
            else:
                directory.close()
        self.adopted = []
        own, self.own = self.own, None
        if own is not None:
            if left_behind == 0 and own.fully_read() and not own.pending:
                own.remove()
            else:
                own.close()
        for marker in self._waiting_markers:
            marker.set()
        self._waiting_markers = []

    def forget_after_fork(self) -> None:
        """In a forked child: close our copies of the parent's files (the parent keeps its
        directory and its lock); the child's worker makes a source of its own."""
        for directory in self._directories():
            directory.forget_after_fork()
        self.adopted = []
        self.own = None

    # --- housekeeping ---------------------------------------------------------------------

    def _directories(self) -> list[SpoolDirectory]:
        return [*self.adopted, *([self.own] if self.own is not None else [])]

    def _tidy(self) -> None:
        """Remove adopted directories that are delivered; keep our batches.log small."""
        self._drop_delivered_adopted()
        own = self.own
        if own is not None and own.batches_log_size() > self._compact_at:
            self._safely(own.compact_batches)

    def _drop_delivered_adopted(self) -> None:
        """Remove adopted directories with nothing left to deliver (some held nothing at all:
        a job that tracked nothing), so that each one's lock is let go at once."""
        for directory in list(self.adopted):
            if directory.empty():
                directory.remove()
                self.adopted.remove(directory)

    def _safely(self, action: Callable[..., None], *args: object) -> None:
        try:
            action(*args)
        except OSError as exc:
            # Delivery goes on; a death now could resend this batch under a new key.
            logger.warning("could not note a batch in the spool: %s", exc)

    def _damaged(self, directory: SpoolDirectory, count: int) -> None:
        logger.warning(
            "%d damaged byte(s) skipped in the spool %s (a record torn by a kill, "
            "or a corrupt file); what could be read is delivered",
            count,
            directory.path,
        )


def _ticket(items: list[Encoded]) -> Optional[DiskTicket]:
    """The note for a batch of these operations (all from one directory), if from disk."""
    origins = [item.origin for item in items if isinstance(item.origin, DiskOrigin)]
    if not origins:
        return None
    return DiskTicket(
        origins[0].group, [o.seq for o in origins if o.seq], [o.segment for o in origins]
    )
