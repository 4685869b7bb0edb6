"""RQ jobs that track, run by ``SankofaWorker``: the worker delivers what every job tracked.

A web request enqueues through ``SankofaQueue``, so each job runs as the request's user::

    from rq_jobs import queue, send_invoice
    queue().enqueue(send_invoice, 42)        # inside a signed-in request (its identity)

Run the worker (the client comes from the environment; the spool is how the work horses, which
end with ``os._exit``, hand their calls to the worker)::

    SANKOFA_API_KEY=sk_live_... SANKOFA_SPOOL_DIR=/var/lib/myapp/sankofa \\
        rq worker --worker-class sankofa_sdk.integrations.rq.SankofaWorker
"""

from __future__ import annotations

import os

from redis import Redis

import sankofa_sdk
from sankofa_sdk.integrations.rq import SankofaQueue


def queue() -> SankofaQueue:
    """The queue web requests enqueue into: each job carries the request's identity."""
    return SankofaQueue(connection=Redis.from_url(os.environ.get("REDIS_URL", "redis://")))


def send_invoice(order: int) -> None:
    """Runs as the user whose request enqueued it: no distinct_id needed."""
    sankofa_sdk.track("Invoice Sent", {"order": order})


def sync_order(order: int) -> int:
    """System work on behalf of a known customer: name them."""
    sankofa_sdk.track("Order Synced", {"order": order}, distinct_id=f"user_{order % 20}")
    return os.getpid()
