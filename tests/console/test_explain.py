"""Why a logged request got its answer, as the Requests view says it (no sockets)."""

from __future__ import annotations

import gzip
import json
from typing import Any, Optional

import pytest

from sankofa_sdk.server import RequestRecord
from sankofa_sdk.server._explain import explain
from sankofa_sdk.server._kept import KeptBody

JSON = "application/json"


def record(path: str, status: Optional[int], answer: bytes, fault: bool = False) -> RequestRecord:
    return RequestRecord("POST", path, status, None, "live", False, fault, "proj", 0.0, answer, 1)


def kept(body: Any, content_type: Optional[str] = JSON, encoding: Optional[str] = None) -> KeptBody:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return KeptBody(raw, content_type, encoding)


def op(kind: str, **payload: Any) -> dict[str, Any]:
    return {"type": kind, "payload": payload}


INVALID_TRACK = b'{"error":"Invalid track payload"}'


@pytest.mark.parametrize(
    ("path", "status", "answer", "body", "reason"),
    [
        (
            "/api/v1/track",
            400,
            b"Bad Request",
            kept({"distinct_id": "u1"}, "text/plain"),
            "Content-Type 'text/plain' is not JSON (…/json)",
        ),
        (
            "/api/v1/track",
            400,
            b"Bad Request",
            kept({"distinct_id": "u1", "event_name": 3}),
            "track payload: event_name is not a string",
        ),
        (
            "/api/v1/batch",
            400,
            b'{"error":"Invalid batch payload"}',
            kept(b'{"operations": [', JSON),
            "the body is not JSON the engine reads: Expecting value: line 1 column 17 (char 16)",
        ),
        (
            "/api/v1/batch",
            400,
            b'{"error":"Invalid batch payload"}',
            kept(b"not gzip", JSON, "gzip"),
            "the body could not be decoded as 'gzip'",
        ),
        (
            "/api/v1/batch",
            400,
            b'{"error":"Invalid batch payload"}',
            kept({"operations": {"type": "track"}}),
            "operations is not an array",
        ),
        (
            "/api/v1/batch",
            400,
            b'{"error":"No operations provided"}',
            kept({"operations": []}),
            "the batch has no operations",
        ),
        (
            "/api/v1/batch",
            400,
            b'{"error":"Unsupported operation type: identify"}',
            kept({"operations": [op("track", distinct_id="u1"), op("identify")]}),
            "operation 1 (identify): type 'identify' is not track, people or alias",
        ),
        (
            "/api/v1/batch",
            400,
            INVALID_TRACK,
            kept({"operations": [{"type": "track"}]}),
            "operation 0 (track): it has no payload",
        ),
        (
            "/api/v1/batch",
            400,
            INVALID_TRACK,
            kept({"operations": [op("track", distinct_id="u1", timestamp="yesterday")]}),
            "operation 0 (track): timestamp is not RFC 3339 with a zone",
        ),
        (
            "/api/v1/batch",
            202,
            b'{"ok":true,"status":"discarded_all"}',
            kept({"operations": [op("track", distinct_id="x")]}),
            "discarded by the garbage-id rule: distinct_id shorter than 2 bytes",
        ),
        (
            "/api/v1/batch",
            403,
            b'{"error":"Unauthorized Origin","ok":false}',
            None,
            "the Origin header is not in the project's authorized domains",
        ),
        (
            "/api/v1/batch",
            413,
            b'{"error":"Request Entity Too Large","ok":false}',
            None,
            "the body as sent is over the 4,194,304-byte cap; nothing of it was read",
        ),
        (
            "/api/v1/nope",
            404,
            b'{"error":"Cannot POST /api/v1/nope","ok":false}',
            None,
            "no such route (Cannot POST /api/v1/nope)",
        ),
        (
            "/api/v1/batch",
            400,
            INVALID_TRACK,
            None,
            "the request body was not kept (over 1,048,576 bytes or too long ago)",
        ),
    ],
)
def test_reasons(
    path: str, status: int, answer: bytes, body: Optional[KeptBody], reason: str
) -> None:
    assert explain(record(path, status, answer), body).reason == reason


def test_a_gzipped_refused_batch_is_read_after_decoding() -> None:
    body = {"operations": [op("alias", alias_id=5, distinct_id="u1")]}
    raw = gzip.compress(json.dumps(body).encode())

    found = explain(
        record("/api/v1/batch", 400, b'{"error":"Invalid alias payload"}'), kept(raw, JSON, "gzip")
    )

    assert found.reason == "operation 0 (alias): alias_id is not a string"
    assert found.refused_index == 0
    assert found.refused_operation is not None
    assert json.loads(found.refused_operation) == body["operations"][0]


def test_keys_that_fold_together_are_read_as_the_engine_reads_them() -> None:
    # Go keeps the last of two keys that fold to one field: here the valid event name.
    body = b'{"operations":[{"type":"track","payload":{"distinct_id":"u1","EVENT_NAME":1,"event_name":"ok"}}]}'

    found = explain(record("/api/v1/batch", 400, INVALID_TRACK), kept(body))

    assert found.reason is None and found.counts == {"operations": 1}


def test_a_fault_is_explained_as_one() -> None:
    assert explain(record("/api/v1/batch", None, b"", fault=True), None).reason == (
        "fault injected on purpose (server.faults): reset the connection"
    )


@pytest.mark.parametrize(
    ("path", "answer", "counts"),
    [
        ("/api/v1/track", b"OK", {"operations": 1, "events": 1}),
        ("/api/v1/people", b"OK", {"operations": 1, "people": 1}),
        ("/api/v1/batch", b"not json", None),
    ],
)
def test_counts_of_accepted_requests(path: str, answer: bytes, counts: Any) -> None:
    assert explain(record(path, 200, answer), None) == (counts, None, None, None, None)
