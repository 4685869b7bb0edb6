"""``POST /reference/v1/faults``: break a reference server running in another process.

Tests that are about delivery run the server in its own process (so the client's threads and
the server's do not share one interpreter lock); this route gives them the same switches as
``ReferenceServer.faults``. The body is one JSON object naming one switch:

``{"fail_for": 8, "status": 503}``, ``{"fail_next": 3, "status": 429, "retry_after": 1}``,
``{"flaky": {"reset_share": 0.1, "error_share": 0.1, "seed": 7, "status": 500}}``,
``{"latency": 0.3, "n": null}``, ``{"reset_connections": 2}``, ``{"buffer_full": true}`` or
``{"clear": true}``. It answers ``{"ok":true}``, or 400 with the reason.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ._faults import Faults


class FaultRequestError(ValueError):
    """The body does not name a switch the way this route takes it."""


def _number(body: dict[str, Any], key: str, default: Optional[float] = None) -> Optional[float]:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultRequestError(f"{key} must be a number >= 0")
    return float(value)


def _status(body: dict[str, Any], default: int) -> int:
    status = body.get("status", default)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise FaultRequestError("status must be an HTTP error status (400-599)")
    return status


def apply(faults: Faults, raw: bytes) -> None:
    """Flip the switch ``raw`` (the request body) names; raises FaultRequestError if it is bad."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise FaultRequestError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise FaultRequestError("the body must be a JSON object")
    if body.get("clear"):
        faults.clear()
    elif "fail_for" in body:
        faults.fail_for(
            _number(body, "fail_for") or 0.0, _status(body, 503), _number(body, "retry_after")
        )
    elif "fail_next" in body:
        count = body["fail_next"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise FaultRequestError("fail_next must be a whole number >= 0")
        faults.fail_next(count, _status(body, 503), _number(body, "retry_after"))
    elif "flaky" in body:
        options = body["flaky"]
        if not isinstance(options, dict):
            raise FaultRequestError("flaky must be an object")
        seed = options.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise FaultRequestError("seed must be a whole number")
        faults.flaky(
            _number(options, "reset_share", 0.1) or 0.0,
            _number(options, "error_share", 0.1) or 0.0,
            seed,
            _status(options, 500),
        )
    elif "latency" in body:
        count = body.get("n")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise FaultRequestError("n must be a whole number or null")
        faults.add_latency(_number(body, "latency") or 0.0, count)
    elif "reset_connections" in body:
        count = body["reset_connections"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise FaultRequestError("reset_connections must be a whole number >= 0")
        faults.reset_connections(count)
    elif "buffer_full" in body:
        faults.buffer_full(bool(body["buffer_full"]))
    else:
        raise FaultRequestError(
            "name one of: clear, fail_for, fail_next, flaky, latency, reset_connections, "
            "buffer_full"
        )
