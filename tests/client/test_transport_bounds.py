"""The transport's bounds against real sockets on 127.0.0.1: servers that drip, hang or flood.

No timing assertions: each hostile server would hold a request for minutes, and each test only
checks that the request ended (within a generous join) with the right kind of failure.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Callable, Optional

import pytest

from sankofa_sdk import Client
from sankofa_sdk._answers import Answer
from sankofa_sdk._options import Options
from sankofa_sdk._retry import Failure
from sankofa_sdk._transport import MAX_ANSWER_BYTES
from sankofa_sdk._transport import HttpTransport as Transport

Handler = Callable[[socket.socket], None]


class RawServer:
    """Accepts connections on 127.0.0.1 and hands each to ``handler`` in its own thread."""

    def __init__(self, handler: Handler) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.sent = 0
        self._handler = handler
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # OSError: the client went away, which is what these tests want.
        with conn, contextlib.suppress(OSError):
            self._handler(conn)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def read_request(conn: socket.socket) -> bool:
    """Read one request (head and Content-Length body); False when the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        body += conn.recv(65536)
    return True


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def send_in_thread(transport: Transport) -> tuple[threading.Thread, list[Answer]]:
    answers: list[Answer] = []
    thread = threading.Thread(
        target=lambda: answers.append(transport.send(b'{"operations":[]}', False, "key"))
    )
    thread.start()
    return thread, answers


def transport_for(server: RawServer, timeout: float = 1.0) -> Transport:
    return Transport("sk_test_x", f"http://127.0.0.1:{server.port}", Options(timeout=timeout))


def test_timeout_is_a_deadline_for_the_whole_request_not_per_read(
    raw_server: Callable[[Handler], RawServer],
) -> None:
    def drip(conn: socket.socket) -> None:
        read_request(conn)
        for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 10_000:
            conn.sendall(bytes([byte]))  # one byte every 0.1 s: each read succeeds in time
            time.sleep(0.1)

    server = raw_server(drip)
    client = Client("sk_test_x" * 3, f"http://127.0.0.1:{server.port}", timeout=1.0, max_retries=0)
    client.track("Dripped", distinct_id="user_1")
    assert client.flush(30)  # the drip would take over 15 minutes
    stats = client.stats()
    assert stats["dropped"] == {"retries_exhausted": 1}
    client.shutdown()


def test_a_hanging_server_is_cut_by_abort(
    raw_server: Callable[[Handler], RawServer],
) -> None:
    received, release = threading.Event(), threading.Event()

    def hang(conn: socket.socket) -> None:
        read_request(conn)
        received.set()
        release.wait(120)

    transport = transport_for(raw_server(hang), timeout=120.0)
    thread, answers = send_in_thread(transport)
    assert received.wait(30)
    transport.abort()
    thread.join(30)
    release.set()
    assert not thread.is_alive()
    assert answers[0].failure is Failure.TIMEOUT


def test_a_flood_of_an_answer_is_read_only_up_to_the_cap(
    raw_server: Callable[[Handler], RawServer],
) -> None:
    server: Optional[RawServer] = None

    def flood(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 300000000\r\n\r\n")
        block = b"x" * 65536
        assert server is not None
        for _ in range(300_000_000 // len(block)):
            conn.sendall(block)
            server.sent += len(block)

    server = raw_server(flood)
    answer = transport_for(server, timeout=10.0).send(b"{}", False, "key")
    assert answer.status == 200 and len(answer.body) == MAX_ANSWER_BYTES
    assert server.sent < 50_000_000  # the client hung up instead of reading 300 MB


def test_answers_keep_the_connection_alive(
    raw_server: Callable[[Handler], RawServer],
) -> None:
    def serve(conn: socket.socket) -> None:
        while read_request(conn):
            body = b'{"ok":true}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )

    server = raw_server(serve)
    transport = transport_for(server)
    for _ in range(3):
        assert transport.send(b"{}", False, "key").status == 200
    assert server.connections == 1
