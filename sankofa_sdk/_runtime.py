"""Where the process the client runs in changes how it must deliver: uWSGI.

uWSGI embeds Python and forks its workers itself, in C. Two of its settings break, silently,
what a client takes for granted:

- **Threads off** (no ``--enable-threads``; the default before uWSGI 2.0.27). The main thread
  keeps the interpreter lock while uWSGI waits for the next request, so our delivery thread
  runs only while a request's code waits in Python: calls would pile up between requests.
  Here the callers lend it their time (``Worker.lend_if_due``): the call that finds a turn of
  the thread due (``flush_at`` calls waiting, or ``flush_interval`` passed) waits until the
  thread has sent what is due, about one request and at most ``timeout`` seconds. Pacing,
  retries, ``flush()``, ``shutdown()`` and the exit hook are the thread's as everywhere else
  (they wait in Python, which lets it run). Said once per process, with the flag to add.
- **Fork hooks off** (no ``--py-call-uwsgi-fork-hooks``, or threads off, which disables them).
  A client made at import, in the master, is copied into each worker by a fork Python does not
  see: ``os.register_at_fork`` hooks do not run, the copy's threads do not exist in the worker,
  its queue and connections are the master's. The client notes the process it runs in and, at
  the next call in another one, starts afresh as after any fork (``Client._after_fork_in_child``).
  uWSGI forks its workers from the master only, so a worker's client stops checking once it
  has started afresh there.

Outside uWSGI nothing here runs: a call's path pays one ``is None`` test.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Optional

from . import _log
from ._log import logger

if TYPE_CHECKING:
    from ._client import Client
    from ._delivery import Worker
    from ._options import Options

THREADS_OFF_WARNING = (
    "uWSGI runs this app without Python threads (--enable-threads is off), so the SDK's "
    "delivery thread runs only while a call waits for it: a call that finds a batch due now "
    "waits for it to be sent (about one request, at most timeout=%gs; at most once per "
    "flush_interval or flush_at calls), and calls made after a worker's last request wait for "
    "its next request, a flush() or its exit. Start uWSGI with --enable-threads (ini: "
    "enable-threads = true) to send from the background"
)

_threads_off_said = False
_process = os.getpid()
"""The process the module-wide state below (the log's locks) was last made fresh for."""


class UwsgiProcess:
    """What one client does differently inside uWSGI (see the module's docstring)."""

    def __init__(self, *, watch_pid: bool, lending: bool) -> None:
        self.pid = os.getpid()
        self.watch_pid = watch_pid
        self.lending = lending
        # Taken only in a process other than the one that made the client, so never held
        # when uWSGI forks: the threads of a new worker (--threads) may call at once.
        self._restart = threading.Lock()

    def check_fork(self, client: Client) -> None:
        """Before a call: in a worker uWSGI forked without telling Python, start afresh."""
        if self.watch_pid and os.getpid() != self.pid:
            with self._restart:
                if not self.watch_pid:
                    return  # another thread of this worker did it
                _fresh_process_state()
                logger.debug(
                    "uWSGI forked this worker without Python's fork hooks: the client starts afresh"
                )
                client._after_fork_in_child()

    def after_fork(self) -> Optional[UwsgiProcess]:
        """The client started afresh in a forked process: what is left to do there (None:
        nothing). A worker is not forked again, so its pid needs no more checks."""
        self.pid = os.getpid()
        self.watch_pid = False
        return self if self.lending else None


def uwsgi_process(worker: Worker, options: Options) -> Optional[UwsgiProcess]:
    """What a new client must do differently in this process; None outside uWSGI.

    uWSGI puts its embedded ``uwsgi`` module in ``sys.modules`` before it loads the app;
    nothing is imported here, so outside uWSGI this costs one dictionary lookup.
    """
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return None
    # A worker forks no further workers: a client made in one needs no pid check. Without a
    # master (worker_id 0 while the app loads), the first process forks the others.
    worker_id = getattr(uwsgi, "worker_id", None)
    in_worker = callable(worker_id) and _int(worker_id) > 0
    threads_off = not getattr(uwsgi, "has_threads", 1)
    # sync_mode sends on the caller's thread anyway; send=False sends nothing.
    lending = threads_off and not options.sync_mode and options.send
    if lending:
        worker.enable_lending()
        _say_threads_off(options.timeout)
    if in_worker and not lending:
        return None
    return UwsgiProcess(watch_pid=not in_worker, lending=lending)


def _int(read: object) -> int:
    try:
        return int(read())  # type: ignore[operator]
    except Exception:
        return 0


def _say_threads_off(timeout: float) -> None:
    global _threads_off_said
    if not _threads_off_said:
        _threads_off_said = True
        logger.warning(THREADS_OFF_WARNING, timeout)


def _fresh_process_state() -> None:
    """Module-wide state Python's fork hooks would have made fresh: once per process."""
    global _process
    pid = os.getpid()
    if pid != _process:
        _process = pid
        _log._after_fork_in_child()
