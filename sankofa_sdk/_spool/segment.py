"""One spool segment being written: a file of fixed size, its blocks reserved up front, written
through a shared memory map.

Why a map and not ``os.write``: a write is a system call (0.57 µs here) that releases the GIL,
and with the delivery thread busy the caller may then wait to get it back. A copy into a shared
map is a ``memcpy`` under the GIL (0.1 µs), into the same page cache the kernel writes back: it
outlives ``kill -9`` the same way, and a power loss the same way (not at all, unless
``spool_fsync`` is on, which ``msync``s after each record). Measured with the benchmarks'
ten-property event, a call with a spool cost about 1 µs less at the median with the map.

Why the blocks are reserved (``posix_fallocate``) before the file is mapped: writing into a
page of a sparse file that the disk has no room for kills the process with SIGBUS. Reserved,
a full disk shows up as an error when a segment is made, which the spool reports and survives.

The unwritten end of a segment is zeros, so a reader of a segment left by a dead process
knows where its records stop (see ``_spool.parse``). A segment closed normally is cut to the
length written.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os

_ZERO_CHUNK = 1 << 20


class MappedSegment:
    """Appends records to one segment file. Not thread-safe: the spool holds its lock."""

    def __init__(self, fd: int, size: int) -> None:
        """``fd``: the new, empty segment file, opened read-write; it is closed with the
        segment. Raises OSError (a full disk, a file size limit) with nothing left mapped."""
        self._fd = fd
        self.size = size
        self.end = 0
        try:
            _reserve(fd, size)
            self._map: mmap.mmap = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_WRITE)
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                os.close(fd)
            if isinstance(exc, OSError):
                raise
            raise OSError(errno.EINVAL, str(exc)) from exc

    def append(self, raw: bytes, sync: bool) -> int:
        """Copy one record after the last; where it ends, or -1 if it does not fit."""
        start = self.end
        end = start + len(raw)
        if end > self.size:
            return -1
        self._map[start:end] = raw
        self.end = end
        if sync:
            self._map.flush()
        return end

    def close(self, cut: bool = True) -> None:
        """Unmap and close; ``cut`` shortens the file to what was written (not in a forked
        child, whose parent still writes to it)."""
        with contextlib.suppress(OSError, ValueError, BufferError):
            self._map.close()
        if cut:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.end)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _reserve(fd: int, size: int) -> None:
    """Give the file ``size`` bytes of zeros with their blocks allocated on the disk."""
    fallocate = getattr(os, "posix_fallocate", None)  # not on macOS
    if fallocate is not None:
        try:
            fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    # No fallocate on this file system: writing the zeros allocates the blocks too.
    zeros = bytes(min(size, _ZERO_CHUNK))
    written = 0
    while written < size:
        written += os.pwrite(fd, zeros[: size - written], written)
