"""The engine's answers, byte for byte (spec section 13, decision D5)."""

from __future__ import annotations

from typing import NamedTuple

from . import _gojson

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


OK_TEXT = Response(200, b"OK", TEXT)
BAD_REQUEST_TEXT = Response(400, b"Bad Request", TEXT)
DISCARDED = Response(202, b'{"ok":true,"status":"discarded"}')
DISCARDED_ALL = Response(202, b'{"ok":true,"status":"discarded_all"}')
INVALID_BATCH = Response(400, b'{"error":"Invalid batch payload"}')
NO_OPERATIONS = Response(400, b'{"error":"No operations provided"}')
INVALID_PAYLOAD = {
    kind: Response(400, b'{"error":"Invalid %s payload"}' % kind.encode())
    for kind in ("track", "people", "alias")
}
MISSING_KEY = Response(401, b'{"error":"Missing API Key","ok":false}')
INVALID_KEY = Response(403, b'{"error":"Invalid API Key","ok":false}')
UNAUTHORIZED_ORIGIN = Response(403, b'{"error":"Unauthorized Origin","ok":false}')
UNAUTHORIZED_IP = Response(403, b'{"error":"Unauthorized IP Address","ok":false}')
TOO_LARGE = Response(
    413, b'{"error":"Request Entity Too Large","ok":false}', JSON, (("Connection", "close"),)
)
HEADERS_TOO_LARGE = Response(431, b'{"error":"Request Header Fields Too Large","ok":false}')
RATE_LIMITED_BODY = b'{"error":"Rate limit exceeded. Please wait a moment."}'
UNAUTHORIZED_MISSING_TOKEN = Response(401, b'{"error":"Unauthorized: Missing token"}')
UNAUTHORIZED_TOKEN_FORMAT = Response(401, b'{"error":"Unauthorized: Invalid token format"}')
UNAUTHORIZED_INVALID_TOKEN = Response(401, b'{"error":"Unauthorized: Invalid token"}')
BUFFER_FULL = Response(503, b'{"error":"Buffer full","ok":false}')
HEALTH = Response(200, b'{"status":"ok"}')


def error(status: int, message: str) -> Response:
    """The framework error handler's shape: ``{"error":...,"ok":false}``."""
    return Response(status, _gojson.encode({"error": message, "ok": False}))


def not_found(method: str, path: str) -> Response:
    return error(404, f"Cannot {method} {path}")


def method_not_allowed(allow: str) -> Response:
    return Response(405, b'{"error":"Method Not Allowed","ok":false}', JSON, (("Allow", allow),))


def unsupported_type(kind: str) -> Response:
    return Response(400, _gojson.encode({"error": f"Unsupported operation type: {kind}"}))


def batch_accepted(
    *,
    aliases: int,
    environment: str,
    events: int,
    operations: int,
    people: int,
    project_id: str,
    project_name: str,
) -> Response:
    # Go encodes the response struct with its keys in this order (sorted by name).
    body = _gojson.encode(
        {
            "aliases_received": aliases,
            "environment": environment,
            "events_received": events,
            "ok": True,
            "operations_received": operations,
            "people_received": people,
            "project_id": project_id,
            "project_name": project_name,
        }
    )
    return Response(200, body)
