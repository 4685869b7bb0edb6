"""An AWS Lambda-style handler: what it tracked is delivered, or kept, when it returns.

After a handler returns, the platform may freeze the process (the background thread stops
mid-way) or end it without running ``atexit``. Three ways to end an invocation, chosen with
``SANKOFA_END``:

- ``flush`` (the default here): ``flush()`` at the end of each invocation: calls are queued and
  sent together, one request per invocation, which lasts one round trip longer while the key's
  budget allows (beyond about 7.5 invocations a second per key, the budget makes it wait).
- ``flush_if_due``: a spool in the function's temporary directory, and ``flush_if_due()`` at
  the end: a request only when a batch is due (at most one per ``flush_interval`` per warm
  instance), never a wait for the budget. What is not due yet waits in the spool for a later
  invocation: a reclaimed instance loses about ``flush_interval``'s worth of calls, unless a
  later runtime in the same sandbox (after a crash or a timeout) adopts its spool.
- ``sync`` (or ``SANKOFA_SYNC_MODE=1``): every call is sent on the caller's thread before it
  returns, one request per call; nothing is ever queued, at the cost of a round trip per call.

Either way the time is bounded (``flush(timeout)``, the client's ``timeout`` and retry
settings): if the engine is unreachable the invocation ends and the operations left are
reported (``on_error``, ``stats()``) instead of delaying the function.

The client is created once per container (on the first invocation) and reused by later ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, Optional

import sankofa_sdk

FLUSH_TIMEOUT = 2.0
"""Seconds a handler may spend delivering at its end."""

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def ending() -> str:
    if os.environ.get("SANKOFA_SYNC_MODE") == "1":
        return "sync"
    return os.environ.get("SANKOFA_END", "flush")


def make_client() -> sankofa_sdk.Client:
    spool: dict[str, Any] = {}
    if ending() == "flush_if_due":
        # The function's temporary directory lives as long as its sandbox: a runtime restarted
        # there (after a crash or a timeout) adopts what the one before left.
        spool = {"spool_dir": os.path.join(tempfile.gettempdir(), "sankofa-spool")}
    return sankofa_sdk.Client(
        os.environ.get("SANKOFA_API_KEY"),
        host=os.environ.get("SANKOFA_HOST", "https://api.sankofa.dev"),
        sync_mode=ending() == "sync",
        timeout=2.0,  # a Lambda has seconds, not minutes
        max_retries=2,
        max_retry_time=FLUSH_TIMEOUT,
        **spool,
    )


def make_handler(client: sankofa_sdk.Client) -> Handler:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            # An API Gateway event for POST /reports {"user_id": ..., "report": ...}
            body = json.loads(event.get("body") or "{}")
            user_id = body.get("user_id")
            if not user_id:
                return {"statusCode": 400, "body": json.dumps({"error": "user_id required"})}
            client.track(
                "Report Requested",
                {"report": body.get("report", "monthly"), "cold_start": _cold_start()},
                distinct_id=user_id,
            )
            client.people_set({"last_report": body.get("report", "monthly")}, distinct_id=user_id)
            return {"statusCode": 202, "body": json.dumps({"queued": True})}
        finally:
            if ending() == "flush_if_due":
                client.flush_if_due(FLUSH_TIMEOUT)  # at once, or the one request that is due
            else:
                client.flush(FLUSH_TIMEOUT)  # returns at once in sync_mode: nothing is queued

    return handler


_client: Optional[sankofa_sdk.Client] = None
_invocations = 0


def _cold_start() -> bool:
    global _invocations
    _invocations += 1
    return _invocations == 1


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The entry point configured in the Lambda (``lambda_handler.handler``)."""
    global _client
    if _client is None:
        _client = make_client()
    return make_handler(_client)(event, context)
