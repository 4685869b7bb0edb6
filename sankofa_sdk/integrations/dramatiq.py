"""Dramatiq: messages run in their sender's identity, delivery on the client's cadence, and a
shutdown when a worker process stops.

>>> from sankofa_sdk.integrations.dramatiq import SankofaMiddleware
>>> broker.add_middleware(SankofaMiddleware(client))   # or SankofaMiddleware() for the default

- ``before_enqueue``: a message sent from inside an identity (a web request's, a
  ``client.context()``, another actor's) carries its ids in the message's ``sankofa_identity``
  option (see ``_jobs``); ``propagate_identity=False`` turns that off.
- ``before_process_message`` / ``after_process_message`` (or ``after_skip_message``): the actor
  runs in the identity the message carried, else in a fresh one of its own, on its worker
  thread; an ``identify`` in one message never carries over to the next.
- No flush per message: the client's thread delivers in batches, so an actor never waits for
  the network and the key's request budget is spent on full batches.
- ``after_worker_shutdown`` (a worker process stopping: SIGTERM to ``dramatiq``, a reload) shuts
  the client down, delivering what is left within its ``shutdown_timeout``. A process killed
  outright runs no Python code: with ``spool_dir`` the next process on the same directory
  delivers what it left (recommended for workers).

Dramatiq's worker processes are long-lived (each runs many messages on its threads), so unlike
RQ's work horses they deliver themselves. The client is the one given, else the module-level
one (``sankofa_sdk.init()`` or ``SANKOFA_API_KEY``), looked up when a hook runs.
"""

from __future__ import annotations

from typing import Any, Optional

from .._client import Client
from ._common import configured_client, resolve_client
from ._jobs import CARRIED, OpenIdentities, identity_to_carry

try:
    from dramatiq.middleware import Middleware
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "sankofa_sdk.integrations.dramatiq needs Dramatiq: pip install dramatiq"
    ) from exc

__all__ = ["SankofaMiddleware"]


class SankofaMiddleware(Middleware):
    """Dramatiq middleware: identity propagation, and the client's shutdown with the worker."""

    def __init__(self, client: Optional[Client] = None, *, propagate_identity: bool = True) -> None:
        self._client = client
        self._propagate_identity = bool(propagate_identity)
        self._identities = OpenIdentities()

    @property
    def client(self) -> Optional[Client]:
        return resolve_client(self._client)

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        if not self._propagate_identity:
            return
        # A sender without any client (a process that only sends messages) is not an error.
        client = self._client if self._client is not None else configured_client()
        carried = identity_to_carry(client)
        if carried is not None:
            message.options.setdefault(CARRIED, carried)  # one set by the sender itself wins

    def before_process_message(self, broker: Any, message: Any) -> None:
        client = self.client
        if client is None:
            return
        carried = message.options.get(CARRIED) if self._propagate_identity else None
        self._identities.enter(message.message_id, client, carried)

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self._identities.leave(message.message_id)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self._identities.leave(message.message_id)

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        client = self.client
        if client is not None:
            client.shutdown()
