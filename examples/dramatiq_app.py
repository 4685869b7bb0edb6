"""A Dramatiq broker whose actors track: ``SankofaMiddleware`` runs each message as the user whose
request sent it, and delivers when a worker process stops.

    SANKOFA_API_KEY=sk_live_... dramatiq dramatiq_app     # the worker (client from the environment)
    dramatiq_app.send_invoice.send(42)                      # in a signed-in request
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

import sankofa_sdk
from sankofa_sdk.integrations.dramatiq import SankofaMiddleware

redis = os.environ.get("REDIS_URL", "redis://localhost:6379")
broker = RedisBroker(url=redis + "/2")
broker.add_middleware(Results(backend=RedisBackend(url=redis + "/3")))
broker.add_middleware(SankofaMiddleware())  # the module-level client (SANKOFA_API_KEY, init())
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def send_invoice(order: int) -> str:
    """Runs as the user whose request sent it: no distinct_id needed."""
    sankofa_sdk.track("Invoice Sent", {"order": order})
    client = sankofa_sdk.get_client()
    return client.distinct_id if client else ""


@dramatiq.actor(store_results=True)
def sync_order(order: int) -> int:
    """System work on behalf of a known customer: name them."""
    sankofa_sdk.track("Order Synced", {"order": order}, distinct_id=f"user_{order % 20}")
    return os.getpid()
