"""A raw HTTP load generator: prebuilt ``/api/v1/batch`` bodies over one keep-alive connection.

Run several at once (``python -m benchmarks._loadgen '<json spec>'``), each in its own process,
to find what a server can absorb without any SDK in the way. Every operation has a unique
``$insert_id`` and every request its own ``Idempotency-Key``. A 429 or 503 is retried after a
short pause (at most ``max_retries`` times per batch), so a server that pushes back is measured
at the rate it actually accepts.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

_OP = (
    '{{"type":"track","payload":{{"event_name":"Viewed Pricing","distinct_id":"{user}",'
    '"properties":{{"plan":"pro","price":49.99,"seats":{seats},"annual":false,"coupon":null,'
    '"tags":["pricing","experiment-b"],"signed_up_at":"2026-03-14T15:09:26.535Z",'
    '"referrer":"https://www.example.com/blog/launch?utm_source=newsletter","request_n":{n},'
    '"meta":{{"source":"ads","campaign":"spring-2026","depth":2}},"$insert_id":"{insert_id}"}},'
    '"default_properties":{{"$lib":"loadgen","$lib_version":"1"}},"lib_version":"1",'
    '"timestamp":"{stamp}"}}}}'
)


def sankofa_bodies(ops: int, batch: int, seed: str) -> list[bytes]:
    """``ops`` track operations in bodies of ``batch`` operations, ids unique per ``seed``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    bodies = []
    for start in range(0, ops, batch):
        items = [
            _OP.format(
                user=f"user_{i % 1000:05d}",
                seats=i % 50,
                n=i,
                insert_id=f"{seed}-{i:09d}",
                stamp=stamp,
            )
            for i in range(start, min(start + batch, ops))
        ]
        bodies.append(('{"operations":[' + ",".join(items) + "]}").encode())
    return bodies


def run(spec: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(spec["url"])
    batch = spec.get("batch", 100)
    bodies = sankofa_bodies(spec["ops"], batch, spec["seed"])
    headers = {"Content-Type": "application/json", "x-api-key": spec["api_key"]}
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    conn.connect()
    statuses: Counter[int] = Counter()
    retries = 0
    delay = spec["start_at"] - time.monotonic()  # all generators start together
    if delay > 0:
        time.sleep(delay)
    t_start = time.monotonic()
    deadline = t_start + spec.get("max_seconds", 120)
    sent_ops = 0
    for index, body in enumerate(bodies):
        headers["Idempotency-Key"] = f"{spec['seed']}-{index}"
        for _attempt in range(spec.get("max_retries", 200)):
            if time.monotonic() > deadline:
                break
            try:
                conn.request("POST", "/api/v1/batch", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (http.client.HTTPException, OSError):
                conn.close()
                status = 0
            statuses[status] += 1
            if status in (200, 202):
                sent_ops += min(batch, spec["ops"] - index * batch)
                break
            retries += 1
            time.sleep(0.005)
    t_end = time.monotonic()
    conn.close()
    return {
        "sent_ops": sent_ops,
        "statuses": {str(k): v for k, v in statuses.items()},
        "retries": retries,
        "t_start": t_start,
        "t_end": t_end,
    }


def main() -> None:
    result = run(json.loads(sys.argv[1]))
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
