"""A smoke test of the harness itself: ``bash benchmarks/run selftest`` (never part of pytest).

Checks that the sink counts what each real SDK sends (plain and gzip), de-duplicates a body sent
twice, tells the formats apart, and that a measurement child runs end to end. Exits non-zero
with the reason on the first failure.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import sys
import time
from typing import Any, Optional
from urllib.parse import urlsplit

from . import __main__ as harness
from ._control import WIRE, SinkControl, latency_summary
from ._sdks import ADAPTERS, SDKS
from ._workload import DISTINCT_IDS, event_properties, people_traits

FORMATS = [sdk for sdk in SDKS if sdk not in WIRE]
"""The wire formats the sink tells apart (variants such as sankofa-spool speak one of them)."""


def _exchange(
    url: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[Optional[int], dict[str, str]]:
    """POST once: the status and headers, or (None, {}) when the connection was reset."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    except (ConnectionError, http.client.HTTPException):
        return None, {}
    finally:
        conn.close()


def _post(url: str, path: str, body: bytes, headers: dict[str, str]) -> Optional[int]:
    return _exchange(url, path, body, headers)[0]


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
    # Like the engine: a retry with a stored Idempotency-Key is answered, not stored again.
    _expect("sankofa retried body: unique", got["unique"], 11)
    _expect("sankofa retried body: duplicates", got["duplicates"], 0)
    _expect("sankofa retried body: replayed requests", got["replayed"], 1)
    _expect("sankofa retried body: replayed operations", got["replayed_ops"], 11)
    other_key = {"x-api-key": "k", "Idempotency-Key": "batch-2"}
    _expect("same body, new key, answered", _post(url, "/api/v1/batch", body, other_key), 200)
    got = control.wait("sankofa", 12, 5)
    _expect("same body, new key: unique (the people op is keyed by batch)", got["unique"], 12)
    _expect("same body, new key: duplicates (by $insert_id)", got["duplicates"], 10)
    control.reset("segment")
    batch = json.dumps({"batch": [{"type": "track", "messageId": "m1"}] * 3}).encode()
    auth = {"Authorization": "Basic d2s6", "Content-Encoding": "gzip"}
    _post(url, "/v1/batch", gzip.compress(batch), auth)
    got = control.wait("segment", 1, 5)
    _expect("segment gzip with a repeated messageId: unique", got["unique"], 1)
    _expect("segment gzip with a repeated messageId: duplicates", got["duplicates"], 2)


def _bodies(key: str, n: int, seed: str) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """One request of ``n`` operations per SDK format, all under API key ``key``."""
    sankofa = {
        "operations": [
            {"type": "track", "payload": {"properties": {"$insert_id": f"{seed}-{i}"}}}
            for i in range(n)
        ]
    }
    posthog = {"batch": [{"event": "e", "uuid": f"{seed}-{i}"} for i in range(n)], "api_key": key}
    segment = {"batch": [{"type": "track", "messageId": f"{seed}-{i}"} for i in range(n)]}
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return {
        "sankofa": (
            "/api/v1/batch",
            json.dumps(sankofa).encode(),
            {"x-api-key": key, "Idempotency-Key": seed},
        ),
        "posthog": ("/batch/", json.dumps(posthog).encode(), {}),
        "segment": ("/v1/batch", json.dumps(segment).encode(), {"Authorization": auth}),
    }


def check_limits_and_faults(url: str) -> None:
    control = SinkControl(url)
    for sdk in FORMATS:
        control.reset(sdk)
    control.faults(clear=True, rate_limit={"limit": 3, "window": 6, "headers": True})
    for sdk in FORMATS:
        answers = []
        for i in range(4):
            path, body, headers = _bodies("key-a", 5, f"{sdk}-a{i}")[sdk]
            answers.append(_exchange(url, path, body, headers))
        _expect(f"{sdk} limit 3 per key: statuses", [a[0] for a in answers], [200, 200, 200, 429])
        first, refused = answers[0][1], answers[3][1]
        _expect(f"{sdk} first answer: X-RateLimit-Limit", first.get("X-RateLimit-Limit"), "3")
        _expect(f"{sdk} first answer: Remaining", first.get("X-RateLimit-Remaining"), "2")
        _expect(
            f"{sdk} first answer: Reset in 1..6", 1 <= int(first["X-RateLimit-Reset"]) <= 6, True
        )
        _expect(f"{sdk} 429: Retry-After in 1..6", 1 <= int(refused["Retry-After"]) <= 6, True)
        _expect(f"{sdk} 429: no X-RateLimit-*", "X-RateLimit-Limit" in refused, False)
        path, body, headers = _bodies("key-b", 5, f"{sdk}-b")[sdk]
        _expect(f"{sdk} another key has its own window", _post(url, path, body, headers), 200)
        got = control.wait(sdk, 20, 5)
        _expect(f"{sdk} limited: stored only what was answered 200", got["unique"], 20)
        _expect(f"{sdk} limited: requests by status", got["statuses"], {"200": 4, "429": 1})
        _expect(f"{sdk} limited: key read from the body matches", got["key_mismatch"], 0)
    control.faults(clear=True, rate_limit={"limit": 1, "window": 6, "headers": False})
    for sdk in FORMATS:
        control.reset(sdk)
        answers = []
        for i in range(2):
            path, body, headers = _bodies("key-c", 1, f"{sdk}-c{i}")[sdk]
            answers.append(_exchange(url, path, body, headers))
        _expect(f"{sdk} no headers: statuses", [a[0] for a in answers], [200, 429])
        limits = ("X-RateLimit", "Retry-After")
        named = {name for _, got in answers for name in got if name.startswith(limits)}
        _expect(f"{sdk} no headers: no rate-limit headers at all", named, set())
    control.faults(clear=True, outage={"seconds": 0.5, "status": 503})
    for sdk in FORMATS:
        control.reset(sdk)
        path, body, headers = _bodies("key-d", 3, f"{sdk}-d")[sdk]
        _expect(f"{sdk} outage: answered", _post(url, path, body, headers), 503)
    time.sleep(0.6)
    for sdk in FORMATS:
        path, body, headers = _bodies("key-d", 3, f"{sdk}-d")[sdk]
        _expect(f"{sdk} after the outage: answered", _post(url, path, body, headers), 200)
        got = control.wait(sdk, 3, 5)
        _expect(f"{sdk} outage: stored once", (got["unique"], got["duplicates"]), (3, 0))
    control.faults(clear=True, flaky={"reset_share": 1.0, "error_share": 0.0, "seed": 1})
    for sdk in FORMATS:
        control.reset(sdk)
        path, body, headers = _bodies("key-e", 4, f"{sdk}-e")[sdk]
        _expect(f"{sdk} reset: no answer", _post(url, path, body, headers), None)
        _expect(f"{sdk} reset, resent: no answer", _post(url, path, body, headers), None)
        got = control.stats(sdk)
        _expect(f"{sdk} reset: stored before the answer was lost", got["unique"], 4)
        replayed = got["replayed_ops"]
        want = (0, 4) if sdk == "sankofa" else (4, 0)
        _expect(
            f"{sdk} reset, resent: (duplicates, replayed ops)", (got["duplicates"], replayed), want
        )
    control.faults(clear=True, flaky={"reset_share": 0.0, "error_share": 1.0, "status": 500})
    for sdk in FORMATS:
        control.reset(sdk)
        path, body, headers = _bodies("key-f", 4, f"{sdk}-f")[sdk]
        _expect(f"{sdk} error: answered", _post(url, path, body, headers), 500)
        got = control.stats(sdk)
        _expect(f"{sdk} error: not stored", (got["unique"], got["statuses"]), (0, {"500": 1}))
    control.faults(clear=True)
    control.close()


def check_percentiles() -> None:
    summary = latency_summary([i * 1000 for i in range(1, 1001)])
    _expect("p50 of 1..1000 µs", summary["p50"], 500.0)
    _expect("p99 of 1..1000 µs", summary["p99"], 990.0)
    _expect("p99.9 of 1..1000 µs", summary["p99.9"], 999.0)


def main() -> int:
    check_percentiles()
    with harness._sink() as url:
        check_duplicates(url)
        check_limits_and_faults(url)
        check_sdks(url)
    print("selftest passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
