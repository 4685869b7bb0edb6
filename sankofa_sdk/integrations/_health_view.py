"""The answer every framework's health view gives: ``client.health()`` as JSON, and a status code
a probe understands (503 when failing; also when degraded, if asked)."""

from __future__ import annotations

import json
from typing import Optional

from .._client import Client
from .._health import QUEUE_THRESHOLD, HealthStatus
from ._common import resolve_client

JSON_TYPE = "application/json"
HEADERS = (("Content-Type", JSON_TYPE), ("Cache-Control", "no-store"))


def health_answer(
    client: Optional[Client],
    *,
    queue_threshold: float = QUEUE_THRESHOLD,
    fail_when_degraded: bool = False,
) -> tuple[int, bytes]:
    """``(status code, JSON body)`` for ``client`` (by default the module-level one): 200 when
    ok or degraded, 503 when failing (or degraded, with ``fail_when_degraded``) or when there is
    no client at all."""
    resolved = resolve_client(client)
    if resolved is None:
        body = {
            "status": HealthStatus.FAILING.value,
            "issues": [
                {
                    "code": "no_client",
                    "status": HealthStatus.FAILING.value,
                    "message": "no sankofa_sdk client is set up (sankofa_sdk.init())",
                    "since": None,
                }
            ],
        }
        return 503, json.dumps(body).encode()
    health = resolved.health(queue_threshold=queue_threshold)
    failing = health.status is HealthStatus.FAILING or (fail_when_degraded and not health.ok)
    return (503 if failing else 200), json.dumps(health.as_dict()).encode()
