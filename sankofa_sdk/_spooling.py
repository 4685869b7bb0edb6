"""Between the worker and the spool directories: which operations come from disk, and what the
disk must hear about the batches made of them.

With a spool, a call is written to disk before it returns (``append``, on the caller's thread)
and the delivery thread reads it back (``read``) rather than taking it from memory: the disk is
the queue, and only ``max_queue_bytes`` of it is in memory at a time, so a long outage fills the
disk (up to ``max_spool_bytes``) instead of dropping. The worker tells the feed when a batch of
spooled operations is about to go (noted on disk with its Idempotency-Key), is done, or was
refused before it was applied, so a process that dies at any moment leaves a directory from
which the next process resends exactly what it must.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import NamedTuple, Optional

from ._log import logger
from ._spool import PendingBatch, Record, SpoolDirectory, SpoolError

ADOPT_INTERVAL = 5.0
"""How often a live client looks for directories whose owner died."""
COMPACT_BATCHES_BYTES = 8 * 1024 * 1024


class Origin(NamedTuple):
    """Where a queued operation lives on disk."""

    spool: SpoolDirectory
    segment: int
    seq: int


def batch_elements(body: bytes) -> list[bytes]:
    """The operations of a batch body, one JSON text each (for reports and splitting)."""
    try:
        operations = json.loads(body)["operations"]
        return [json.dumps(op, separators=(",", ":")).encode() for op in operations]
    except (ValueError, KeyError, TypeError):
        return [body]


class SpoolFeed:
    """The spool of one client: its own directory and those it adopted."""

    def __init__(self, root: str, *, max_bytes: int, fsync: bool) -> None:
        self.root = root
        self._max_bytes = max_bytes
        self.own: Optional[SpoolDirectory] = SpoolDirectory.create(root, fsync=fsync)
        self.adopted: list[SpoolDirectory] = []
        self._next_scan = 0.0
        self.read_seq = 0
        """The last of our own sequence numbers the delivery thread has read."""
        self.damaged_bytes = 0
        self.writable = True

    # --- the callers' side ----------------------------------------------------------------

    def append(self, data: bytes, kind: int) -> Optional[int]:
        """Write one operation (``OP``: its JSON, ``CALL``: its packed values); how many of
        ours are now unread, or None when the spool is full.

        Raises SpoolError when the disk refuses (full, read-only, gone); from then on the
        spool takes nothing more (``writable`` is False), and what it holds is still delivered.
        """
        own = self.own
        if own is None or not self.writable:
            raise SpoolError(9, "the spool takes no more")
        if own.written_bytes + len(data) > self._max_bytes:
            return None
        return own.append(data, kind) - self.read_seq

    def unread(self) -> int:
        own = self.own
        return 0 if own is None else own.next_seq - 1 - self.read_seq

    # --- the delivery thread's side -------------------------------------------------------

    def adopt(self, now: float) -> list[tuple[SpoolDirectory, PendingBatch]]:
        """Take over directories whose owner died (every few seconds at most); the batches
        they were sending, to be resent first with their own keys."""
        if now < self._next_scan:
            return []
        self._next_scan = now + ADOPT_INTERVAL
        mine = {s.path for s in self.adopted}
        if self.own is not None:
            mine.add(self.own.path)
        found: list[tuple[SpoolDirectory, PendingBatch]] = []
        for spool in SpoolDirectory.adopt_dead(self.root, mine):
            self.adopted.append(spool)
            found.extend((spool, batch) for batch in spool.pending_batches)
            if spool.damaged_bytes:
                self._damaged(spool, spool.damaged_bytes)
            logger.info("adopted the spool %s left by a process that is gone", spool.path)
        return found

    def read(self, budget: int) -> list[tuple[Record, Origin]]:
        """Operations from disk for the queue, about ``budget`` bytes: adopted ones first."""
        found: list[tuple[Record, Origin]] = []
        for spool in [*self.adopted, *([self.own] if self.own is not None else [])]:
            if budget <= 0:
                break
            records, damaged = spool.read(budget)
            if damaged:
                self._damaged(spool, damaged)
            for segment, found_record in records:
                found.append((found_record, Origin(spool, segment, found_record.seq)))
                budget -= len(found_record.payload)
            if spool is self.own and records:
                self.read_seq = records[-1][1].seq
        return found

    def all_read(self) -> bool:
        return all(s.fully_read() for s in [*self.adopted, *([self.own] if self.own else [])])

    def batch_starting(self, key: str, origins: list[Origin], body: bytes) -> None:
        """Before a batch of spooled operations goes: note it, so a death now means a resend
        with the same key, not a loss and not a second application."""
        spool = origins[0].spool
        self._safely(spool.note_batch, key, [o.seq for o in origins], body)

    def batch_finished(self, key: str, origins: list[Origin]) -> None:
        """Delivered or finally reported: the disk can forget these operations."""
        spool = origins[0].spool
        self._safely(spool.note_done, key)
        spool.finished([o.segment for o in origins])

    def batch_cancelled(self, key: str, origins: list[Origin]) -> None:
        """Refused before it was applied (429, 400, 413): the operations go again, elsewhere."""
        self._safely(origins[0].spool.note_cancelled, key)

    def recovered_finished(self, spool: SpoolDirectory, batch: PendingBatch) -> None:
        self._safely(spool.note_done, batch.key)
        if batch in spool.pending_batches:
            spool.pending_batches.remove(batch)

    def tidy(self, pending_own: Iterable[PendingBatch]) -> None:
        """Remove adopted directories that are delivered; keep our batches.log small."""
        for spool in list(self.adopted):
            if spool.empty():
                spool.remove()
                self.adopted.remove(spool)
        own = self.own
        if own is not None and own.batches_log_size() > COMPACT_BATCHES_BYTES:
            self._safely(own.compact_batches, list(pending_own))

    def close(self, *, delivered_all: bool) -> None:
        """At shutdown: remove our directory if nothing is left in it, else leave it (closed,
        unlocked) for the next process to adopt. Adopted directories are let go the same way."""
        for spool in self.adopted:
            if spool.empty():
                spool.remove()
            else:
                spool.close()
        self.adopted = []
        own, self.own = self.own, None
        if own is not None:
            if delivered_all and own.fully_read():
                own.remove()
            else:
                own.close()

    def forget_after_fork(self) -> None:
        for spool in [*self.adopted, *([self.own] if self.own is not None else [])]:
            spool.forget_after_fork()
        self.adopted = []
        self.own = None

    # --- reporting ------------------------------------------------------------------------

    def _safely(self, action: object, *args: object) -> None:
        try:
            action(*args)  # type: ignore[operator]
        except OSError as exc:
            # Delivery goes on; a death now could resend this batch under a new key.
            logger.warning("could not note a batch in the spool: %s", exc)

    def undecodable(self, spool: SpoolDirectory, count: int) -> None:
        """A record whose checksum holds but whose values do not unpack (written by a version
        that packed calls differently): skipped like damage."""
        self._damaged(spool, count)

    def _damaged(self, spool: SpoolDirectory, count: int) -> None:
        self.damaged_bytes += count
        logger.log(
            logging.WARNING,
            "%d damaged byte(s) skipped in the spool %s (a record torn by a kill, "
            "or a corrupt file); what could be read is delivered",
            count,
            spool.path,
        )
