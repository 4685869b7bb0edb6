"""RQ: jobs run in their enqueuer's identity, and the worker delivers what its work horses
tracked, in batches, instead of each horse on its own.

    rq worker --worker-class sankofa_sdk.integrations.rq.SankofaWorker   # the worker
    queue = SankofaQueue("default", connection=redis)                      # where jobs are sent

RQ forks a work horse for every job and ends it with ``os._exit``: no ``atexit`` hook runs, and
a client's background thread in the horse rarely gets to send anything, so what a job tracked
is lost, or costs a request per job if the job flushes. :class:`SankofaWorker` fixes both:

- With ``spool_dir`` (``SANKOFA_SPOOL_DIR``; recommended): a horse writes its calls to the spool
  and sends nothing; once it is gone, the worker's own client (the long-lived process, same
  ``spool_dir``) adopts its directory and delivers it with the other horses', in a few requests
  whatever the number of jobs. A horse killed outright (a job over its timeout, the OOM killer)
  loses nothing either. A job's calls go out after the job, within a few seconds; when the
  worker stops (``--burst`` ending, a warm shutdown) it delivers what its horses left first.
- Without ``spool_dir``, each horse delivers what it holds before it ends (at least one request
  per job that tracked), and the worker says so once when it starts.

Each job runs in the identity it carried (:class:`SankofaQueue`, or ``meta={"sankofa_identity":
...}`` of your own), else in a fresh anonymous one; set ``propagate_identity = False`` on a
subclass to always start fresh. The client is the module-level one (``sankofa_sdk.init()`` or
``SANKOFA_API_KEY``), or ``sankofa_client`` set on a subclass.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from .._client import Client, _shutdown_all_at_exit
from .._delivery.spool_source import hand_off_forked_children
from .._log import logger
from ._common import configured_client
from ._jobs import CARRIED, identity_to_carry, job_identity

try:
    from rq import Queue, Worker
    from rq.job import Job
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("sankofa_sdk.integrations.rq needs RQ: pip install rq") from exc

__all__ = ["SankofaQueue", "SankofaWorker"]


class SankofaQueue(Queue):
    """An RQ ``Queue`` whose jobs carry the identity they were enqueued in (see ``_jobs``).

    ``sankofa_client`` is the client whose identity is read; by default the module-level one.
    A job given ``meta={"sankofa_identity": ...}`` keeps its own.
    """

    def __init__(self, *args: Any, sankofa_client: Optional[Client] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sankofa_client = sankofa_client

    def create_job(self, *args: Any, **kwargs: Any) -> Job:
        client = self.sankofa_client if self.sankofa_client is not None else configured_client()
        carried = identity_to_carry(client)
        if carried is not None:
            meta = dict(kwargs.get("meta") or {})
            meta.setdefault(CARRIED, carried)
            kwargs["meta"] = meta
        return super().create_job(*args, **kwargs)


class SankofaWorker(Worker):
    """An RQ ``Worker`` whose work horses hand what they track to it (see the module's doc)."""

    sankofa_client: Optional[Client] = None
    """The client jobs use; None: the module-level one, looked up when needed."""
    propagate_identity: bool = True
    """Run each job in the identity it carried; False: always in a fresh one."""
    sankofa_flush_timeout: float = 10.0
    """How long the worker may take, as it stops, to deliver what its horses left."""

    _sankofa_pid = 0
    """The worker's own process (set by :meth:`work`): any other one running a job is a horse."""

    def _sankofa(self) -> Optional[Client]:
        return self.sankofa_client if self.sankofa_client is not None else configured_client()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        self._sankofa_pid = os.getpid()
        client = self._sankofa()
        if client is not None and not client.options.disabled:
            if client.options.spool_dir is not None:
                hand_off_forked_children()
            else:
                logger.warning(
                    "RQ work horses end with os._exit: without spool_dir each delivers what it "
                    "tracked before it ends, one request per job at least; set spool_dir (or "
                    "SANKOFA_SPOOL_DIR) and the worker delivers for all of them in batches"
                )
        try:
            worked: bool = super().work(*args, **kwargs)
            return worked
        finally:
            if client is not None:
                # The horses that ended since the client last looked: delivered now.
                client.flush(self.sankofa_flush_timeout)

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        client = self._sankofa()
        try:
            if client is None:
                return bool(super().perform_job(job, queue, *args, **kwargs))
            carried = job.meta.get(CARRIED) if self.propagate_identity else None
            with job_identity(client, carried):
                return bool(super().perform_job(job, queue, *args, **kwargs))
        finally:
            if self._sankofa_pid and os.getpid() != self._sankofa_pid:
                # A work horse, about to end with os._exit: what the exit hook would have done.
                # With a spool, nothing to send (handed off); without, a bounded delivery.
                _shutdown_all_at_exit()
