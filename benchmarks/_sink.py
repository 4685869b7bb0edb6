"""A fast counting sink for the three wire formats, run as its own process on 127.0.0.1.

It speaks just enough HTTP/1.1 (keep-alive, ``Content-Length`` bodies, optional gzip) to accept:

- Sankofa: ``POST /api/v1/batch`` with ``{"operations": [{"type", "payload"}]}``, ``x-api-key``;
- posthog-python: ``POST /batch/`` with ``{"api_key", "batch": [...]}``;
- Segment's analytics-python: ``POST /v1/batch`` with ``{"batch": [...]}`` and basic auth.

Each body is decoded in full (``json.loads``) and every operation is counted and de-duplicated
by its SDK's message id (Sankofa ``properties.$insert_id``, or the batch's ``Idempotency-Key``
plus position for operations without one; posthog ``uuid``; Segment ``messageId``). Control
routes: ``GET /stats``, ``POST /reset?sdk=NAME``, ``GET /wait?sdk=NAME&count=N&timeout=S`` (a
long poll that answers when that many unique operations have arrived, so a waiting benchmark
spends no CPU polling).

Run: ``python -m benchmarks._sink`` prints ``{"url": ...}`` on its first line and serves until
its standard input closes (so it never outlives the harness that started it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import sys
import threading
import time
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

SDK_BY_PATH = {
    "/api/v1/batch": "sankofa",
    "/batch/": "posthog",
    "/batch": "posthog",
    "/v1/batch": "segment",
}
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class Counter:
    """What one SDK delivered since its last reset."""

    def __init__(self) -> None:
        self.requests = 0
        self.wire_bytes = 0
        self.json_bytes = 0
        self.received = 0
        self.duplicates = 0
        self.unauthenticated = 0
        self.rejected = 0
        self.by_type: dict[str, int] = {}
        self.ids: set[str] = set()
        self.first_at: Optional[float] = None
        self.last_at: Optional[float] = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "wire_bytes": self.wire_bytes,
            "json_bytes": self.json_bytes,
            "received": self.received,
            "unique": len(self.ids),
            "duplicates": self.duplicates,
            "unauthenticated": self.unauthenticated,
            "rejected": self.rejected,
            "by_type": dict(self.by_type),
            "first_at": self.first_at,
            "last_at": self.last_at,
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


class Sink:
    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {name: Counter() for name in EXTRACT}
        self.unknown_paths: dict[str, int] = {}
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def reset(self, sdk: Optional[str]) -> None:
        for name in [sdk] if sdk else list(self.counters):
            self.counters[name] = Counter()

    def ingest(self, sdk: str, headers: dict[str, str], raw: bytes) -> None:
        counter = self.counters[sdk]
        counter.requests += 1
        counter.wire_bytes += len(raw)
        try:
            data = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
            counter.json_bytes += len(data)
            ids = EXTRACT[sdk](json.loads(data), headers, counter)
        except Exception:
            counter.rejected += 1
            return
        before = len(counter.ids)
        counter.ids.update(ids)
        counter.received += len(ids)
        counter.duplicates += len(ids) - (len(counter.ids) - before)
        now = time.monotonic()
        if counter.first_at is None:
            counter.first_at = now
        counter.last_at = now
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
        return {
            "sdks": {name: c.snapshot() for name, c in self.counters.items()},
            "unknown_paths": dict(self.unknown_paths),
            "now": time.monotonic(),
        }


def _response(status: int, body: bytes, close: bool = False) -> bytes:
    reason = {200: "OK", 404: "Not Found", 413: "Payload Too Large"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'OK')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
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
            # Answer first, count after: the sender's wait for an answer never includes our JSON
            # decoding, so every SDK sees the same, minimal server latency.
            self._transport.write(_response(200, b"{}", close) if close else _OK)
            self._sink.ingest(sdk, headers, body)
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
        else:
            self._sink.unknown_paths[parts.path] = self._sink.unknown_paths.get(parts.path, 0) + 1
            self._transport.write(_response(404, b'{"error":"not found"}', close))
        if close:
            self._transport.close()

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
