"""An AWS Lambda-style handler: deliver before the function returns.

After a handler returns, the platform may freeze the process (the background thread stops
mid-way) or end it without running ``atexit``. So a serverless function must not leave
anything queued when it returns. Two ways, chosen with ``SANKOFA_SYNC_MODE``:

- ``flush()`` at the end of each invocation (the default here): calls are queued and sent
  together, in one request per invocation; the invocation lasts one round trip longer.
- ``sync_mode=True``: every call is sent on the caller's thread before it returns, one request
  per call; nothing is ever queued, at the cost of a round trip per call.

Either way the time is bounded (``flush(timeout)``, the client's ``timeout`` and retry
settings): if the engine is unreachable the invocation ends and the operations left are
reported (``on_error``, ``stats()``) instead of delaying the function.

The client is created once per container (on the first invocation) and reused by later ones.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import sankofa_sdk

FLUSH_TIMEOUT = 2.0
"""Seconds a handler may spend delivering at its end."""

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_client() -> sankofa_sdk.Client:
    return sankofa_sdk.Client(
        os.environ.get("SANKOFA_API_KEY"),
        host=os.environ.get("SANKOFA_HOST", "https://api.sankofa.dev"),
        sync_mode=os.environ.get("SANKOFA_SYNC_MODE") == "1",
        timeout=2.0,  # a Lambda has seconds, not minutes
        max_retries=2,
        max_retry_time=FLUSH_TIMEOUT,
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
