"""HTTP/1.1 with keep-alive on the standard library, speaking to :class:`~._app.App`.

The socket-level rules of the engine live here: the 4 MiB body cap checked before the body is
read (413 and close), the 4 KiB request-head cap (431), strict framing (:mod:`._framing`: an
ambiguous length or a malformed chunk is 400 and close), chunked bodies, and connections that
stall or close half-way (dropped without an answer; nothing of theirs was accepted).
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import struct
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Union

from . import _framing, _responses
from ._app import App, Request
from ._faults import Fault
from ._responses import Response

access_log = logging.getLogger("sankofa_sdk.server.access")

MAX_HEAD_BYTES = 4096
IDLE_TIMEOUT = 30.0


class _Truncated(Exception):
    """The peer closed or stalled before sending the whole body."""


class _HeadRecorder:
    """Wraps the connection's reader while ``parse_request`` reads the head, keeping its lines."""

    def __init__(self, reader: io.BufferedIOBase) -> None:
        self.reader = reader
        self.lines: list[bytes] = []

    def readline(self, limit: int = -1) -> bytes:
        line = self.reader.readline(limit)
        self.lines.append(line)
        return line


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: App, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.stopping = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._connections: dict[int, tuple[socket.socket, list[bool]]] = {}
        super().__init__(address, _Handler)

    # Handlers call these around each request, so stop() can let answered work finish and
    # refuse what comes after it.
    def begin(self) -> bool:
        with self._lock:
            if self.stopping:
                return False
            self._in_flight += 1
            return True

    def end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._idle.notify_all()

    def track(self, conn: socket.socket, busy: list[bool], open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections[id(conn)] = (conn, busy)
            else:
                self._connections.pop(id(conn), None)

    def stop_accepting(self, timeout: float) -> bool:
        """Refuse new requests, wait for those in progress, close idle keep-alive connections."""
        with self._lock:
            self.stopping = True
            done = self._idle.wait_for(lambda: self._in_flight == 0, timeout)
            idle = [conn for conn, busy in self._connections.values() if not busy[0]]
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return done


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: HTTPServer

    def setup(self) -> None:
        super().setup()
        self._busy = [False]
        self.server.track(self.connection, self._busy, True)

    def finish(self) -> None:
        self.server.track(self.connection, self._busy, False)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            self._busy[0] = True
            try:
                if len(self.raw_requestline) > 65536:
                    self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                    return
                if len(self.raw_requestline) > MAX_HEAD_BYTES:
                    self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                    return
                reader = self.rfile
                recorder = _HeadRecorder(reader)
                self.rfile = recorder  # type: ignore[assignment]
                try:
                    parsed = self.parse_request()
                finally:
                    self.rfile = reader
                if not parsed:
                    return
                self._head_lines = [self.raw_requestline, *recorder.lines]
                self._serve()
                self.wfile.flush()
            finally:
                self._busy[0] = False
        except (OSError, _Truncated):  # timeouts, resets, half-closed peers
            self.close_connection = True

    def _serve(self) -> None:
        started = time.perf_counter()
        head = (
            len(self.raw_requestline)
            + 2
            + sum(len(k) + len(v) + 4 for k, v in self.headers.items())
        )
        if head > MAX_HEAD_BYTES:
            self._refuse_unread(_responses.HEADERS_TOO_LARGE)
            return
        refusal = _framing.check_head(self._head_lines)
        if refusal is not None:
            self._refuse_unread(refusal)
            self._log(refusal.status, started)
            return
        body = self._read_body()
        if isinstance(body, Response):  # over the cap or malformed: answered, connection closed
            self._refuse_unread(body)
            self._log(body.status, started)
            return
        if not self.server.begin():
            self.close_connection = True  # shutting down: no answer, so the client retries
            return
        try:
            answer = self.server.app.handle(
                Request(self.command, self.path, self.headers, body, self.client_address[0])
            )
        finally:
            self.server.end()
        if isinstance(answer, Fault):
            self._reset()
            self._log(None, started)
            return
        if answer.headers and ("Connection", "close") in answer.headers:
            self.close_connection = True
        self._write(answer, head_only=self.command == "HEAD")
        self._log(answer.status, started)

    def _refuse_unread(self, response: Response) -> None:
        self.close_connection = True
        self._write(response)
        request = Request(self.command, self.path, self.headers, b"", self.client_address[0])
        self.server.app.record(request, self.path.split("?", 1)[0], response)

    def _read_body(self) -> Union[bytes, Response]:
        """The body, or the answer that refuses it (413 over the cap, 400 for a bad chunk).

        ``check_head`` has made sure the framing is one chunked coding or one Content-Length
        of digits.
        """
        limit = self.server.max_body_bytes
        if self.headers.get("Transfer-Encoding") is not None:
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        length = int(length_text)
        if length > limit:
            return _responses.TOO_LARGE
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Truncated
        return body

    def _read_chunked(self, limit: int) -> Union[bytes, Response]:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _Truncated
            size = _framing.chunk_size(line)
            if isinstance(size, Response):
                return size
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                return _responses.TOO_LARGE
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _Truncated
            parts.append(chunk)
            end = self.rfile.read(2)
            if len(end) < 2:
                raise _Truncated
            if end != b"\r\n":
                return _framing.NO_CRLF_AFTER_CHUNK

    def _write(self, response: Response, head_only: bool = False) -> None:
        reason = (
            HTTPStatus(response.status).phrase
            if response.status in HTTPStatus._value2member_map_
            else ""
        )
        lines = [f"HTTP/1.1 {response.status} {reason}", f"Date: {formatdate(usegmt=True)}"]
        if response.content_type:
            lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Content-Length: {len(response.body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection and ("Connection", "close") not in response.headers:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if head_only else head + response.body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST: the peer sees a reset
        # connection after its request was read, as with a proxy or network failure.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _log(self, status: Optional[int], started: float) -> None:
        if access_log.isEnabledFor(logging.INFO) and not self.path.startswith("/console/"):
            # The console polls a few times a second; its lines would bury the app's requests.
            access_log.info(
                '%s "%s %s" %s %.1fms',
                self.client_address[0],
                self.command,
                self.path.split("?", 1)[0],
                "reset" if status is None else status,
                (time.perf_counter() - started) * 1000,
            )

    def send_error(
        self, code: int, message: Optional[str] = None, explain: Optional[str] = None
    ) -> None:
        # http.server's own refusals of an oversized request line or head (414, 431) are
        # what fasthttp answers with 431 once the head passes its 4 KiB read buffer.
        if code in (HTTPStatus.REQUEST_URI_TOO_LONG, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE):
            self.close_connection = True
            self._write(_responses.HEADERS_TOO_LARGE)
            return
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged once, by _log, without headers (the API key stays out)
