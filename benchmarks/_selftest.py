"""A smoke test of the harness itself: ``bash benchmarks/run selftest`` (never part of pytest).

Checks that the sink counts what each real SDK sends (plain and gzip), de-duplicates a body sent
twice, tells the formats apart, and that a measurement child runs end to end. Exits non-zero
with the reason on the first failure.
"""

from __future__ import annotations

import gzip
import http.client
import json
import sys
from typing import Any
from urllib.parse import urlsplit

from . import __main__ as harness
from ._control import SinkControl, latency_summary
from ._sdks import ADAPTERS, SDKS
from ._workload import DISTINCT_IDS, event_properties, people_traits


def _post(url: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    conn.request("POST", path, body=body, headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def _expect(what: str, got: Any, want: Any) -> None:
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")
    print(f"ok  {what}: {got!r}")


def check_sdks(url: str) -> None:
    control = SinkControl(url)
    for sdk in SDKS:
        for compress in (False, True):
            control.reset(sdk)
            adapter = ADAPTERS[sdk](url, "equal", gzip=compress)
            for i in range(150):
                adapter.call("track")(DISTINCT_IDS[i], event_properties(i))
            for i in range(50):
                adapter.call("people_set")(DISTINCT_IDS[i], people_traits(i))
            got = control.wait(sdk, 200, 20)
            label = f"{sdk}{' gzip' if compress else ''}"
            _expect(f"{label}: unique operations", got["unique"], 200)
            _expect(f"{label}: duplicates", got["duplicates"], 0)
            _expect(f"{label}: unauthenticated requests", got["unauthenticated"], 0)
            _expect(f"{label}: rejected bodies", got["rejected"], 0)
            _expect(
                f"{label}: compressed on the wire", got["wire_bytes"] < got["json_bytes"], compress
            )
            adapter.shutdown()


def check_duplicates(url: str) -> None:
    control = SinkControl(url)
    control.reset("sankofa")
    body = json.dumps(
        {
            "operations": [
                {"type": "track", "payload": {"properties": {"$insert_id": f"id-{i}"}}}
                for i in range(10)
            ]
            + [{"type": "people", "payload": {"properties": {"plan": "pro"}}}]
        }
    ).encode()
    headers = {"x-api-key": "k", "Idempotency-Key": "batch-1"}
    _expect("first body answered", _post(url, "/api/v1/batch", body, headers), 200)
    _expect("retried body answered", _post(url, "/api/v1/batch", body, headers), 200)
    got = control.wait("sankofa", 11, 5)
    _expect("sankofa retried body: unique", got["unique"], 11)
    _expect("sankofa retried body: duplicates", got["duplicates"], 11)
    control.reset("segment")
    batch = json.dumps({"batch": [{"type": "track", "messageId": "m1"}] * 3}).encode()
    auth = {"Authorization": "Basic d2s6", "Content-Encoding": "gzip"}
    _post(url, "/v1/batch", gzip.compress(batch), auth)
    got = control.wait("segment", 1, 5)
    _expect("segment gzip with a repeated messageId: unique", got["unique"], 1)
    _expect("segment gzip with a repeated messageId: duplicates", got["duplicates"], 2)


def check_percentiles() -> None:
    summary = latency_summary([i * 1000 for i in range(1, 1001)])
    _expect("p50 of 1..1000 µs", summary["p50"], 500.0)
    _expect("p99 of 1..1000 µs", summary["p99"], 990.0)
    _expect("p99.9 of 1..1000 µs", summary["p99.9"], 999.0)


def main() -> int:
    check_percentiles()
    with harness._sink() as url:
        check_duplicates(url)
        check_sdks(url)
    print("selftest passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
