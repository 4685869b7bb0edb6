"""Celery: each task in an identity (its enqueuer's, or its own), delivery on the client's
cadence, and a shutdown whenever a worker process ends.

>>> from sankofa_sdk.integrations.celery import setup_celery
>>> setup_celery(client)          # once, where the Celery app is defined (producers too)

- ``before_task_publish``: a task sent from inside an identity (a web request's, a
  ``client.context()``, another task's) carries its ids in the message's ``sankofa_identity``
  header (see ``_jobs``); ``propagate_identity=False`` turns that off.
- ``task_prerun`` / ``task_postrun``: each task runs in the identity it carried, else in a fresh
  one of its own, so an ``identify`` in one task never carries over to the next task of the same
  process. An eager task (``task_always_eager``, ``task.apply()``) is not sent, carries nothing:
  it nests a fresh identity inside its caller's and gives the caller's back unchanged.
- No flush per task: the client's thread delivers in batches, as in any process, so a task's
  analytics never waits for the network, and the key's request budget is spent on full batches.
  ``flush_after_task=True`` flushes after every task (bounded by ``flush_timeout``), at the cost
  of one request per task.
- ``worker_process_shutdown`` (a prefork child ending: ``max_tasks_per_child``, a warm shutdown)
  and ``worker_shutdown`` (the worker) shut the client down, delivering what is left within the
  client's ``shutdown_timeout``. A child killed outright (SIGKILL, the OOM killer, an autoscaler
  shrinking the pool with SIGTERM, which Celery leaves at its default in children) runs no
  Python code: with ``spool_dir`` its calls are on disk and the worker's main process delivers
  them, within seconds, and at the latest as the worker stops (recommended for workers).

Prefork children need no ``worker_process_init`` hook: a client made before the fork restarts
its background thread in the child by itself (``os.register_at_fork``). This module imports
Celery only in :func:`setup_celery`.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Optional

from .._client import Client
from ._common import configured_client, resolve_client
from ._jobs import CARRIED, OpenIdentities, identity_to_carry

__all__ = ["CeleryHooks", "setup_celery"]


class CeleryHooks:
    """The signal handlers :func:`setup_celery` connected; :meth:`disconnect` removes them."""

    def __init__(
        self,
        client: Optional[Client],
        flush_timeout: float,
        flush_after_task: bool,
        propagate_identity: bool = True,
    ) -> None:
        self._client = client
        self._flush_timeout = flush_timeout
        self._flush_after_task = flush_after_task
        self._propagate_identity = propagate_identity
        self._identities = OpenIdentities()
        self._signals: list[tuple[Any, Any]] = []

    @property
    def client(self) -> Optional[Client]:
        return resolve_client(self._client)

    def before_task_publish(self, headers: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        if not self._propagate_identity or headers is None:
            return
        # A producer without any client (a process that only sends tasks) is not an error.
        client = self._client if self._client is not None else configured_client()
        carried = identity_to_carry(client)
        if carried is not None:
            headers.setdefault(CARRIED, carried)  # one the caller set itself wins

    def task_prerun(self, task_id: Any = None, task: Any = None, **kwargs: Any) -> None:
        client = self.client
        if client is None:
            return
        carried = None
        if self._propagate_identity and task is not None:
            carried = getattr(getattr(task, "request", None), CARRIED, None)
        self._identities.enter(task_id, client, carried)

    def task_postrun(self, task_id: Any = None, **kwargs: Any) -> None:
        self._identities.leave(task_id)
        if self._flush_after_task:
            client = self.client
            if client is not None:
                client.flush(self._flush_timeout)

    def shutdown(self, **kwargs: Any) -> None:
        """A prefork child ends: deliver what it holds (within ``shutdown_timeout``)."""
        client = self.client
        if client is not None:
            client.shutdown()

    def worker_shutdown(self, **kwargs: Any) -> None:
        """The worker stops: with a spool, first take over what children killed since the last
        look left (a flush does), then shut down; both within one ``shutdown_timeout``."""
        client = self.client
        if client is None:
            return
        timeout = client.options.shutdown_timeout
        started = time.monotonic()
        if client.options.spool_dir is not None:
            client.flush(timeout)
        client.shutdown(max(0.0, timeout - (time.monotonic() - started)))

    def connect(self, signals: Any) -> None:
        for signal, handler in (
            (signals.before_task_publish, self.before_task_publish),
            (signals.task_prerun, self.task_prerun),
            (signals.task_postrun, self.task_postrun),
            (signals.worker_process_shutdown, self.shutdown),
            (signals.worker_shutdown, self.worker_shutdown),
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
    flush_after_task: bool = False,
    flush_timeout: float = 2.0,
    propagate_identity: bool = True,
) -> CeleryHooks:
    """Connect the Sankofa hooks to Celery's signals (for every Celery app in the process).

    ``client`` defaults to the module-level client, looked up when a signal fires.
    ``flush_after_task=True`` flushes after each task, for at most ``flush_timeout`` seconds:
    one request per task, which spends the key's request budget (500 per minute, shared by every
    process using the key) one task at a time; leave it off and use ``spool_dir`` for workers
    that may be killed. ``propagate_identity=False`` sends tasks without their enqueuer's
    identity and runs each in a fresh one.
    """
    try:
        signals = importlib.import_module("celery.signals")
    except ImportError as exc:
        raise ImportError(
            "sankofa_sdk.integrations.celery needs Celery: pip install celery"
        ) from exc
    hooks = CeleryHooks(
        client, float(flush_timeout), bool(flush_after_task), bool(propagate_identity)
    )
    hooks.connect(signals)
    return hooks
