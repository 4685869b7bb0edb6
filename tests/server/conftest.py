"""Fixtures and raw-HTTP helpers for the reference server's own tests.

Requests go through ``http.client`` (or a bare socket) so a test controls every byte and header:
no Content-Type unless given, no Accept-Encoding, bodies sent exactly as written.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple, Optional, Union

import pytest

from sankofa_sdk.server import ReferenceServer

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BASE_TIME = datetime(2026, 5, 9, 14, 0, 0, tzinfo=timezone.utc)

Body = Union[bytes, str, dict[str, Any], list[Any], None]
_DEFAULT = object()


class Reply(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name)

    @property
    def content_type(self) -> Optional[str]:
        return self.headers.get("Content-Type")

    def json(self) -> Any:
        return json.loads(self.body)


def encode(body: Body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def request(
    server: ReferenceServer,
    method: str,
    path: str,
    body: Body = b"",
    headers: Optional[Mapping[str, Optional[str]]] = None,
    *,
    timeout: float = 10.0,
) -> Reply:
    """Send one request with exactly these headers (plus Host and Content-Length)."""
    data = encode(body)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        sent = {k.lower() for k, v in (headers or {}).items() if v is not None}
        for name, value in (headers or {}).items():
            if value is not None:
                conn.putheader(name, value)
        framed = "content-length" in sent or "transfer-encoding" in sent
        if not framed and (data or method in ("POST", "PUT", "PATCH")):
            conn.putheader("Content-Length", str(len(data)))
        # A server that answers early (413) closes while the body is going out: read its answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.endheaders(data or None)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def post(
    server: ReferenceServer,
    path: str,
    body: Body = b"",
    headers: Optional[Mapping[str, Optional[str]]] = None,
    *,
    key: Any = _DEFAULT,
    content_type: Optional[str] = JSON,
) -> Reply:
    """POST with the live key and ``application/json`` unless told otherwise (None = absent)."""
    sent: dict[str, Optional[str]] = {
        "x-api-key": server.api_key if key is _DEFAULT else key,
        "Content-Type": content_type,
    }
    sent.update(headers or {})
    return request(server, "POST", path, body, sent)


def get(
    server: ReferenceServer,
    path: str,
    headers: Optional[Mapping[str, Optional[str]]] = None,
    *,
    key: Any = _DEFAULT,
) -> Reply:
    sent: dict[str, Optional[str]] = {"x-api-key": server.api_key if key is _DEFAULT else key}
    sent.update(headers or {})
    return request(server, "GET", path, b"", sent)


def raw_exchange(
    server: ReferenceServer, data: bytes, *, half_close: bool = False, timeout: float = 10.0
) -> Reply:
    """Write raw bytes on a fresh connection and read one response."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Reply(response.status, response.headers, response.read())


def health(server: ReferenceServer) -> Reply:
    return request(server, "GET", "/health")


def assert_alive(server: ReferenceServer) -> None:
    reply = health(server)
    assert (reply.status, reply.body) == (200, b'{"status":"ok"}')


def ts(seconds: float = 0) -> str:
    """An RFC 3339 UTC stamp ``seconds`` after a fixed base time."""
    moment = BASE_TIME + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def track(
    distinct_id: Any = "user_1", event_name: str = "Signed Up", **fields: Any
) -> dict[str, Any]:
    return {
        "type": "track",
        "payload": {"distinct_id": distinct_id, "event_name": event_name, **fields},
    }


def people(distinct_id: Any = "user_1", properties: Any = None, **fields: Any) -> dict[str, Any]:
    payload = {"distinct_id": distinct_id, "properties": properties or {}, **fields}
    return {"type": "people", "payload": payload}


def alias(alias_id: Any, distinct_id: Any, **fields: Any) -> dict[str, Any]:
    return {
        "type": "alias",
        "payload": {"alias_id": alias_id, "distinct_id": distinct_id, **fields},
    }


def batch(*operations: Any) -> dict[str, Any]:
    return {"operations": list(operations)}


def batch_ok(
    server: ReferenceServer,
    *,
    n: int,
    aliases: int = 0,
    people_: int = 0,
    events: int = 0,
    environment: str = "live",
) -> bytes:
    """The exact 200 body of an accepted batch (spec section 9 step 6)."""
    return (
        f'{{"aliases_received":{aliases},"environment":"{environment}",'
        f'"events_received":{events},"ok":true,"operations_received":{n},'
        f'"people_received":{people_},"project_id":"{server.project_id}",'
        f'"project_name":"{server.project.name}"}}'
    ).encode()


def send_batch(server: ReferenceServer, *operations: Any, **kw: Any) -> Reply:
    return post(server, "/api/v1/batch", batch(*operations), **kw)


def applied(server: ReferenceServer) -> ReferenceServer:
    assert server.wait_until_applied(10), "the writer did not apply what was accepted"
    return server


def user_traits(person: Optional[dict[str, Any]]) -> dict[str, Any]:
    """A person's traits without the three the server fills from the User-Agent."""
    assert person is not None
    return {k: v for k, v in person["traits"].items() if k not in SERVER_TRAITS}


SERVER_TRAITS = ("$os", "$browser", "$device_model")


@pytest.fixture(scope="session")
def _shared_server() -> Iterator[ReferenceServer]:
    with ReferenceServer(rate_limit=None) as srv:
        yield srv


@pytest.fixture
def server(_shared_server: ReferenceServer) -> Iterator[ReferenceServer]:
    """A running server without rate limit, emptied (data, requests, faults) for each test.

    One server is shared by the session because starting one per test costs more than the
    tests themselves; a test that adds projects or changes settings uses ``fresh`` instead.
    """
    _shared_server.clear()
    projects = len(_shared_server.projects.all())
    yield _shared_server
    assert len(_shared_server.projects.all()) == projects, "use the `fresh` fixture"
    assert _shared_server.wait_until_applied(10)


@pytest.fixture
def fresh() -> Iterator[ReferenceServer]:
    """A server of its own, for tests that add projects."""
    with ReferenceServer(rate_limit=None) as srv:
        yield srv


@pytest.fixture
def limited() -> Iterator[ReferenceServer]:
    """Three requests per 60 s per key."""
    with ReferenceServer(rate_limit=(3, 60)) as srv:
        yield srv
