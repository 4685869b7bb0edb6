"""A fast counting sink for the three wire formats, run as its own process on 127.0.0.1.

It speaks just enough HTTP/1.1 (keep-alive, ``Content-Length`` bodies, optional gzip) to accept:

- Sankofa: ``POST /api/v1/batch`` with ``{"operations": [{"type", "payload"}]}``, ``x-api-key``;
- posthog-python: ``POST /batch/`` with ``{"api_key", "batch": [...]}``;
- Segment's analytics-python: ``POST /v1/batch`` with ``{"batch": [...]}`` and basic auth.

Each stored body is decoded in full (``json.loads``) and every operation is counted and
de-duplicated by its SDK's message id (Sankofa ``properties.$insert_id``, or the batch's
``Idempotency-Key`` plus position for operations without one; posthog ``uuid``; Segment
``messageId``). Like the engine, a Sankofa request whose ``Idempotency-Key`` was already stored
is answered without being stored again (counted as ``replayed``); the peers send no such key.

The engine's limits and a bad network, the same for all three formats (``POST /faults``):

- ``{"rate_limit": {"limit": 50, "window": 6, "headers": true}}``: the engine's request budget
  per API key (Sankofa ``x-api-key``, posthog ``api_key`` in the body, Segment's basic auth):
  a fixed window from the key's first request, in whole seconds, every request counted; one
  over the limit gets 429 with ``Retry-After``, the others ``X-RateLimit-Limit/Remaining/Reset``.
  ``"headers": false`` answers like the hosted engine: no rate-limit headers, no Retry-After.
- ``{"outage": {"from": T, "seconds": 8, "status": 503}}``: every batch request from
  ``time.monotonic()`` T (default now) for that long is answered 503 and not stored.
- ``{"flaky": {"reset_share": 0.1, "error_share": 0.1, "seed": 7, "status": 500}}``: a share of
  requests is read, stored, then its connection is reset without an answer (the answer lost on
  the way back, which is what makes a retry a duplicate); another share is answered 500 and
  not stored.
- ``{"clear": true}``: normal service.

Control routes: ``GET /stats``, ``POST /reset?sdk=NAME`` (also forgets that SDK's rate-limit
windows and stored idempotency keys), ``GET /wait?sdk=NAME&count=N&timeout=S`` (a long poll that
answers when that many unique operations have arrived, so a waiting benchmark spends no CPU
polling), ``POST /faults``.

Run: ``python -m benchmarks._sink`` prints ``{"url": ...}`` on its first line and serves until
its standard input closes (so it never outlives the harness that started it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import random
import re
import socket
import struct
import sys
import threading
import time
from typing import Any, NamedTuple, Optional
from urllib.parse import parse_qs, urlsplit

SDK_BY_PATH = {
    "/api/v1/batch": "sankofa",
    "/batch/": "posthog",
    "/batch": "posthog",
    "/v1/batch": "segment",
}
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
RESET = "reset"
"""The status recorded for a request whose connection was reset instead of answered."""


class Counter:
    """What one SDK delivered since its last reset."""

    def __init__(self) -> None:
        self.requests = 0
        self.statuses: dict[str, int] = {}
        self.wire_bytes = 0
        self.json_bytes = 0
        self.received = 0
        self.duplicates = 0
        self.replayed = 0
        self.replayed_ops = 0
        self.unauthenticated = 0
        self.rejected = 0
        self.key_mismatch = 0
        self.by_type: dict[str, int] = {}
        self.ids: set[str] = set()
        self.stored_keys: set[str] = set()
        self.first_at: Optional[float] = None
        self.last_at: Optional[float] = None
        self.grew_at: Optional[float] = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "statuses": dict(self.statuses),
            "wire_bytes": self.wire_bytes,
            "json_bytes": self.json_bytes,
            "received": self.received,
            "unique": len(self.ids),
            "duplicates": self.duplicates,
            "replayed": self.replayed,
            "replayed_ops": self.replayed_ops,
            "unauthenticated": self.unauthenticated,
            "rejected": self.rejected,
            "key_mismatch": self.key_mismatch,
            "by_type": dict(self.by_type),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "grew_at": self.grew_at,
        }


def _ids_sankofa(body: Any, headers: dict[str, str], counter: Counter) -> list[str]:
    if not headers.get("x-api-key"):
        counter.unauthenticated += 1
    key = headers.get("idempotency-key", "")
    ids = []
    for index, op in enumerate(body["operations"]):
        kind = op["type"]
        counter.by_type[kind] = counter.by_type.get(kind, 0) + 1
        props = op["payload"].get("properties") or {}
        insert_id = props.get("$insert_id") if kind == "track" else None
        ids.append(insert_id if insert_id else f"{key}:{index}")
    return ids


def _ids_posthog(body: Any, headers: dict[str, str], counter: Counter) -> list[str]:
    if not body.get("api_key"):
        counter.unauthenticated += 1
    ids = []
    for item in body["batch"]:
        kind = item.get("event", "?")
        counter.by_type[kind] = counter.by_type.get(kind, 0) + 1
        ids.append(item["uuid"])
    return ids


def _ids_segment(body: Any, headers: dict[str, str], counter: Counter) -> list[str]:
    auth = headers.get("authorization", "")
    if not auth.startswith("Basic ") or not base64.b64decode(auth[6:]).rstrip(b":"):
        counter.unauthenticated += 1
    ids = []
    for item in body["batch"]:
        kind = item.get("type", "?")
        counter.by_type[kind] = counter.by_type.get(kind, 0) + 1
        ids.append(item["messageId"])
    return ids


EXTRACT = {"sankofa": _ids_sankofa, "posthog": _ids_posthog, "segment": _ids_segment}
BATCH_KEY = {"sankofa": "operations", "posthog": "batch", "segment": "batch"}

# posthog-python adds ``api_key`` to the body after the batch, so the last ``"api_key"`` in the
# text is the top-level one; ``ingest`` checks that against the decoded body (key_mismatch).
_POSTHOG_KEY = re.compile(rb'"api_key"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _decompressed(headers: dict[str, str], raw: bytes) -> bytes:
    return gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw


def api_key(sdk: str, headers: dict[str, str], data: bytes) -> str:
    """The API key a request is counted against, read without decoding the whole body."""
    if sdk == "sankofa":
        return headers.get("x-api-key", "")
    if sdk == "segment":
        return headers.get("authorization", "")
    match = _POSTHOG_KEY.match(data, max(0, data.rfind(b'"api_key"')))
    return match.group(1).decode("utf-8", "replace") if match else ""


class Limiter:
    """The engine's request budget: ``limit`` requests per ``window`` seconds per key.

    As the engine (and the reference server's ``FixedWindowLimiter``): the window starts at the
    key's first request, time has whole-second resolution, every request counts (refused ones
    too), an over-limit request gets only ``Retry-After`` and the others ``X-RateLimit-*``.
    """

    def __init__(self, limit: int, window: int, headers: bool) -> None:
        if limit < 1 or window < 1:
            raise ValueError("rate limit and window must be positive")
        self.limit = limit
        self.window = window
        self.headers = headers
        self._buckets: dict[str, list[int]] = {}  # key -> [window end, hits]
        self.windows: dict[str, list[int]] = {}  # key -> hits of each window, for the report

    def hit(self, key: str) -> tuple[bool, tuple[tuple[str, str], ...]]:
        now = int(time.time())
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket[0]:
            bucket = self._buckets[key] = [now + self.window, 0]
            self.windows.setdefault(key, []).append(0)
        bucket[1] += 1
        self.windows[key][-1] += 1
        reset_in, remaining = bucket[0] - now, self.limit - bucket[1]
        if not self.headers:
            return remaining >= 0, ()
        if remaining < 0:
            return False, (("Retry-After", str(reset_in)),)
        return True, (
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(reset_in)),
        )

    def forget(self, prefix: str) -> None:
        for table in (self._buckets, self.windows):
            for key in [k for k in table if k.startswith(prefix)]:
                del table[key]


class Verdict(NamedTuple):
    status: Optional[int]
    """None: reset the connection instead of answering."""
    headers: tuple[tuple[str, str], ...] = ()
    store: bool = True


class Faults:
    """What the sink does to batch requests besides storing them: the limiter, an outage, a
    flaky network. All off by default; the existing figures never turn them on."""

    def __init__(self) -> None:
        self.limiter: Optional[Limiter] = None
        self.outage: Optional[tuple[float, float, int]] = None  # (from, until, status)
        self.flaky: Optional[tuple[float, float, int, random.Random]] = None
        self.config: dict[str, Any] = {}

    def configure(self, body: dict[str, Any]) -> None:
        """Apply a ``POST /faults`` body; raises ValueError (or KeyError, TypeError) if bad."""
        if body.get("clear"):
            self.limiter, self.outage, self.flaky, self.config = None, None, None, {}
        if "rate_limit" in body:
            spec = body["rate_limit"]
            self.limiter = Limiter(
                int(spec["limit"]), int(spec["window"]), bool(spec.get("headers", True))
            )
        if "outage" in body:
            spec = body["outage"]
            start = float(spec.get("from") or time.monotonic())
            self.outage = (start, start + float(spec["seconds"]), int(spec.get("status", 503)))
        if "flaky" in body:
            spec = body["flaky"]
            reset_share, error_share = float(spec["reset_share"]), float(spec["error_share"])
            if min(reset_share, error_share) < 0 or reset_share + error_share > 1:
                raise ValueError("shares must be >= 0 and add up to at most 1")
            rng = random.Random(spec.get("seed"))
            self.flaky = (reset_share, error_share, int(spec.get("status", 500)), rng)
        self.config.update({k: v for k, v in body.items() if k != "clear"})

    def judge(self, sdk: str, headers: dict[str, str], data: bytes) -> Verdict:
        """What to do with one batch request (``data``: its body, decompressed)."""
        extra: tuple[tuple[str, str], ...] = ()
        # The limiter first, as in the engine: every request spends budget, failed ones too.
        if self.limiter is not None:
            allowed, extra = self.limiter.hit(f"{sdk}:{api_key(sdk, headers, data)}")
            if not allowed:
                return Verdict(429, extra, store=False)
        if self.outage is not None:
            start, until, status = self.outage
            if start <= time.monotonic() < until:
                return Verdict(status, store=False)
        if self.flaky is not None:
            reset_share, error_share, status, rng = self.flaky
            roll = rng.random()
            if roll < reset_share:
                return Verdict(None, store=True)
            if roll < reset_share + error_share:
                return Verdict(status, store=False)
        return Verdict(200, extra)


class Sink:
    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {name: Counter() for name in EXTRACT}
        self.unknown_paths: dict[str, int] = {}
        self.faults = Faults()
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def reset(self, sdk: Optional[str]) -> None:
        for name in [sdk] if sdk else list(self.counters):
            self.counters[name] = Counter()
            if self.faults.limiter is not None:
                self.faults.limiter.forget(f"{name}:")

    def ingest(self, sdk: str, headers: dict[str, str], raw: bytes, data: bytes) -> None:
        """Store one answered request: count its operations (``data``: ``raw`` decompressed)."""
        counter = self.counters[sdk]
        counter.wire_bytes += len(raw)
        key = headers.get("idempotency-key") if sdk == "sankofa" else None
        try:
            counter.json_bytes += len(data)
            body = json.loads(data)
            if key is not None and key in counter.stored_keys:
                # The engine answers a retry of a stored batch from its idempotency store.
                counter.replayed += 1
                counter.replayed_ops += len(body[BATCH_KEY[sdk]])
                return
            posthog_limited = sdk == "posthog" and self.faults.limiter is not None
            if posthog_limited and body.get("api_key") != api_key(sdk, headers, data):
                counter.key_mismatch += 1
            ids = EXTRACT[sdk](body, headers, counter)
        except Exception:
            counter.rejected += 1
            return
        if key is not None:
            counter.stored_keys.add(key)
        before = len(counter.ids)
        counter.ids.update(ids)
        grown = len(counter.ids) - before
        counter.received += len(ids)
        counter.duplicates += len(ids) - grown
        now = time.monotonic()
        if counter.first_at is None:
            counter.first_at = now
        counter.last_at = now
        if grown:
            counter.grew_at = now
        self._wake(sdk)

    def _wake(self, sdk: str) -> None:
        unique = len(self.counters[sdk].ids)
        keep = []
        for waiter in self._waiters:
            name, count, future = waiter
            if name == sdk and unique >= count and not future.done():
                future.set_result(None)
            elif not future.done():
                keep.append(waiter)
        self._waiters = keep

    async def wait(self, sdk: str, count: int, timeout: float) -> None:
        if len(self.counters[sdk].ids) >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((sdk, count, future))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(future, timeout)

    def stats(self) -> dict[str, Any]:
        limiter = self.faults.limiter
        return {
            "sdks": {name: c.snapshot() for name, c in self.counters.items()},
            "unknown_paths": dict(self.unknown_paths),
            "faults": self.faults.config,
            "windows": dict(limiter.windows) if limiter is not None else {},
            "now": time.monotonic(),
        }


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_BODIES = {
    429: b'{"error":"Rate limit exceeded. Please wait a moment."}',
    503: b'{"error":"Buffer full","ok":false}',
}
_FAULT_BODY = b'{"error":"injected fault"}'


def _response(
    status: int, body: bytes, close: bool = False, headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    for name, value in headers:
        head += f"{name}: {value}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode("ascii") + b"\r\n" + body


_OK = _response(200, b"{}")


class _Connection(asyncio.Protocol):
    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._buffer = bytearray()
        self._transport: Optional[asyncio.Transport] = None
        self._pending: Optional[tuple[str, str, dict[str, str], int]] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and not self._transport.is_closing():
            if self._pending is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEADER_BYTES:
                        self._transport.close()
                    return
                head = bytes(self._buffer[:end]).decode("latin-1")
                del self._buffer[: end + 4]
                lines = head.split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if length > MAX_BODY_BYTES or "chunked" in headers.get("transfer-encoding", ""):
                    self._transport.write(_response(413, b"{}", close=True))
                    self._transport.close()
                    return
                self._pending = (method, target, headers, length)
            method, target, headers, length = self._pending
            if len(self._buffer) < length:
                return
            body = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._pending = None
            self._handle(method, target, headers, body)

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        assert self._transport is not None
        close = headers.get("connection", "").lower() == "close"
        parts = urlsplit(target)
        sdk = SDK_BY_PATH.get(parts.path)
        if method == "POST" and sdk is not None:
            self._batch(sdk, headers, body, close)
            return
        elif parts.path == "/wait":
            query = parse_qs(parts.query)
            task = asyncio.ensure_future(
                self._sink.wait(query["sdk"][0], int(query["count"][0]), float(query["timeout"][0]))
            )
            task.add_done_callback(lambda _: self._reply_stats(close))
            return
        elif parts.path == "/stats":
            self._reply_stats(close)
            return
        elif parts.path == "/reset" and method == "POST":
            self._sink.reset(parse_qs(parts.query).get("sdk", [""])[0] or None)
            self._transport.write(_response(200, b"{}", close))
        elif parts.path == "/faults" and method == "POST":
            try:
                self._sink.faults.configure(json.loads(body or b"{}"))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                reason = json.dumps({"error": repr(exc)}).encode()
                self._transport.write(_response(400, reason, close))
            else:
                self._transport.write(_response(200, b'{"ok":true}', close))
        else:
            self._sink.unknown_paths[parts.path] = self._sink.unknown_paths.get(parts.path, 0) + 1
            self._transport.write(_response(404, b'{"error":"not found"}', close))
        if close:
            self._transport.close()

    def _batch(self, sdk: str, headers: dict[str, str], raw: bytes, close: bool) -> None:
        assert self._transport is not None
        sink = self._sink
        counter = sink.counters[sdk]
        counter.requests += 1
        faults = sink.faults
        if faults.limiter is None and faults.outage is None and faults.flaky is None:
            # Answer first, count after: the sender's wait for an answer never includes our
            # JSON decoding, so every SDK sees the same, minimal server latency.
            self._transport.write(_response(200, b"{}", close) if close else _OK)
            counter.statuses["200"] = counter.statuses.get("200", 0) + 1
            sink.ingest(sdk, headers, raw, self._data(headers, raw))
            if close:
                self._transport.close()
            return
        # Only posthog's key is in the body; the others are decompressed after the answer.
        data = self._data(headers, raw) if sdk == "posthog" and faults.limiter else None
        verdict = faults.judge(sdk, headers, data or b"")
        label = RESET if verdict.status is None else str(verdict.status)
        counter.statuses[label] = counter.statuses.get(label, 0) + 1
        if verdict.status is None:
            if verdict.store:  # applied, then the answer is lost on the way back
                sink.ingest(sdk, headers, raw, data or self._data(headers, raw))
            self._reset()
            return
        answer = b"{}" if verdict.status == 200 else _BODIES.get(verdict.status, _FAULT_BODY)
        self._transport.write(_response(verdict.status, answer, close, verdict.headers))
        if verdict.store:
            sink.ingest(sdk, headers, raw, data or self._data(headers, raw))
        if close:
            self._transport.close()

    @staticmethod
    def _data(headers: dict[str, str], raw: bytes) -> bytes:
        try:
            return _decompressed(headers, raw)
        except Exception:  # not gzip after all (OSError, EOFError, zlib.error)
            return b""  # ingest counts an empty body as rejected

    def _reset(self) -> None:
        # SO_LINGER 0 makes the close send RST: the client sees its connection reset after
        # the request was read, as with a proxy or network failure.
        assert self._transport is not None
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._transport.abort()

    def _reply_stats(self, close: bool) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        body = json.dumps(self._sink.stats()).encode()
        self._transport.write(_response(200, body, close))
        if close:
            self._transport.close()


async def _serve(port: int, ready: Any) -> None:
    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(sink), "127.0.0.1", port, backlog=256)
    bound = server.sockets[0].getsockname()[1]
    ready(f"http://127.0.0.1:{bound}")
    stop = loop.create_future()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes our stdin or exits
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

    threading.Thread(target=watch_stdin, daemon=True).start()
    async with server:
        await stop


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0

    def ready(url: str) -> None:
        print(json.dumps({"url": url}), flush=True)

    asyncio.run(_serve(port, ready))


if __name__ == "__main__":
    main()
