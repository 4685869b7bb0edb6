"""Celery: a fresh identity per task, a flush when a task ends, a shutdown when a worker stops.

>>> from sankofa_sdk.integrations.celery import setup_celery
>>> setup_celery(client)          # once, where the Celery app is defined

- ``task_prerun`` / ``task_postrun``: each task runs in its own identity context, so an
  ``identify`` in one task never carries over to the next task of the same worker process.
  An eager task (``task_always_eager``, ``task.apply()``) nests inside its caller's context and
  gives it back unchanged.
- ``task_postrun`` also flushes, bounded by ``flush_timeout``: a prefork child can be ended
  (``worker_max_tasks_per_child``, a lost worker) without running ``atexit`` hooks.
- ``worker_process_shutdown`` (a prefork child ending) and ``worker_shutdown`` (the worker)
  shut the client down, delivering what is left.

Prefork children need no ``worker_process_init`` hook: a client made before the fork restarts
its background thread in the child by itself (``os.register_at_fork``). This module imports
Celery only in :func:`setup_celery`.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Optional

from .._client import Client
from .._log import logger
from ._common import resolve_client

__all__ = ["CeleryHooks", "setup_celery"]


class CeleryHooks:
    """The signal handlers :func:`setup_celery` connected; :meth:`disconnect` removes them."""

    def __init__(
        self, client: Optional[Client], flush_timeout: float, flush_after_task: bool
    ) -> None:
        self._client = client
        self._flush_timeout = flush_timeout
        self._flush_after_task = flush_after_task
        self._lock = threading.Lock()
        self._scopes: dict[tuple[Any, int], list[Any]] = {}
        self._signals: list[tuple[Any, Any]] = []

    @property
    def client(self) -> Optional[Client]:
        return resolve_client(self._client)

    def task_prerun(self, task_id: Any = None, **kwargs: Any) -> None:
        client = self.client
        if client is None:
            return
        scope = client.context()
        scope.__enter__()
        key = (task_id, threading.get_ident())
        with self._lock:
            self._scopes.setdefault(key, []).append(scope)

    def task_postrun(self, task_id: Any = None, **kwargs: Any) -> None:
        # Keyed by thread too: a threads pool may run one task id twice at once (a redelivered
        # acks_late task), and each run must end the identity its own thread opened.
        key = (task_id, threading.get_ident())
        with self._lock:
            stack = self._scopes.get(key)
            scope = stack.pop() if stack else None
            if stack == []:
                del self._scopes[key]
        if scope is not None:
            try:
                scope.__exit__(None, None, None)
            except ValueError:  # prerun ran in another context (an unusual pool): nothing to undo
                logger.debug("task identity ended in another context")
        client = self.client
        if self._flush_after_task and client is not None:
            client.flush(self._flush_timeout)

    def shutdown(self, **kwargs: Any) -> None:
        client = self.client
        if client is not None:
            client.shutdown()

    def connect(self, signals: Any) -> None:
        for signal, handler in (
            (signals.task_prerun, self.task_prerun),
            (signals.task_postrun, self.task_postrun),
            (signals.worker_process_shutdown, self.shutdown),
            (signals.worker_shutdown, self.shutdown),
        ):
            signal.connect(handler, weak=False)
            self._signals.append((signal, handler))

    def disconnect(self) -> None:
        """Remove the handlers (e.g. between tests)."""
        for signal, handler in self._signals:
            signal.disconnect(handler)
        self._signals.clear()


def setup_celery(
    client: Optional[Client] = None,
    *,
    flush_timeout: float = 2.0,
    flush_after_task: bool = True,
) -> CeleryHooks:
    """Connect the Sankofa hooks to Celery's signals (for every Celery app in the process).

    ``client`` defaults to the module-level client, looked up when a signal fires.
    ``flush_timeout`` bounds the flush after each task; ``flush_after_task=False`` leaves
    delivery to the background thread (fewer, larger requests; a prefork child that is killed
    can lose up to ``flush_interval`` of calls).
    """
    try:
        signals = importlib.import_module("celery.signals")
    except ImportError as exc:
        raise ImportError(
            "sankofa_sdk.integrations.celery needs Celery: pip install celery"
        ) from exc
    hooks = CeleryHooks(client, float(flush_timeout), bool(flush_after_task))
    hooks.connect(signals)
    return hooks
