"""``await client.aflush()`` / ``await client.ashutdown()`` leave the event loop free.

The engine here is a stub that holds every request until the test releases it, and the test can
only release it from a coroutine: if waiting for delivery blocked the loop, the release would
never happen and the flush would time out.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sankofa_sdk import Client


class HeldEngine:
    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.received = 0
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                engine.arrived.set()
                engine.release.wait(30)
                engine.received += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def engine() -> Iterator[HeldEngine]:
    held = HeldEngine()
    yield held
    held.close()


async def _while_delivery_is_held(engine: HeldEngine, waiting: asyncio.Future[Any]) -> None:
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, engine.arrived.wait, 10)
    # The request is at the engine and held there; the loop still runs other coroutines.
    other = [await asyncio.wait_for(asyncio.shield(_other_work()), 10) for _ in range(3)]
    assert other == ["done"] * 3
    assert not waiting.done()
    engine.release.set()


async def _other_work() -> str:
    await asyncio.sleep(0)
    return "done"


def test_aflush_waits_for_delivery_without_blocking_the_loop(engine: HeldEngine) -> None:
    client = Client("sk_test_asyncio_0123456789abcdef", host=engine.url, flush_interval=0.05)

    async def main() -> bool:
        client.track("Async Event", distinct_id="user_async")  # only enqueues
        flushing = asyncio.ensure_future(client.aflush(10))
        await _while_delivery_is_held(engine, flushing)
        return await flushing

    try:
        assert asyncio.run(main()) is True
        assert engine.received == 1 and client.stats()["delivered"] == 1
    finally:
        client.shutdown(timeout=5)


def test_ashutdown_delivers_without_blocking_the_loop(engine: HeldEngine) -> None:
    client = Client("sk_test_asyncio_0123456789abcdef", host=engine.url, flush_interval=60)

    async def main() -> None:
        client.track("Async Event", distinct_id="user_async")
        stopping = asyncio.ensure_future(client.ashutdown(10))
        await _while_delivery_is_held(engine, stopping)
        await stopping

    asyncio.run(main())
    assert engine.received == 1 and client.stats()["delivered"] == 1
    client.track("After Shutdown", distinct_id="user_async")
    assert client.stats()["dropped"].get("closed") == 1
