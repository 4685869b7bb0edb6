"""Request framing (RFC 9112): shapes that two parsers could read differently are refused.

A request whose length is ambiguous (two Content-Length headers, Content-Length with
Transfer-Encoding, a transfer coding other than ``chunked``, a chunk size that is not plain hex,
whitespace before a header's colon) gets 400 and the connection is closed, so nothing that
follows on it can be read as a second request. Where fasthttp refuses too, the answer is its
own error text in the engine's error shape; where fasthttp is lenient, the server follows the
RFC (a known divergence).
"""

from __future__ import annotations

import json
import socket

import pytest

from sankofa_sdk.server import ReferenceServer
from sankofa_sdk.server._framing import go_quote

from .conftest import applied, assert_alive, batch, raw_exchange, track


def _exchange_all(server: ReferenceServer, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes: every byte it answered."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _head(server: ReferenceServer, *headers: str) -> bytes:
    lines = ["POST /api/v1/batch HTTP/1.1", "Host: x", f"x-api-key: {server.api_key}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


BODY = json.dumps(batch(track("user_framed"))).encode()
SMUGGLED = (
    b"POST /api/v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"  # a second request
)


def _chunked(body: bytes, size_text: str) -> bytes:
    return size_text.encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"


def _refused(server: ReferenceServer, data: bytes) -> tuple[int, bytes]:
    """The single answer to ``data``; asserts the connection closes after it."""
    answered = _exchange_all(server, data)
    head, _, body = answered.partition(b"\r\n\r\n")
    assert answered.count(b"HTTP/1.1 ") == 1, answered  # nothing smuggled was answered
    assert b"\r\nConnection: close" in head
    status = int(head.split(b" ", 2)[1])
    length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
    return status, body[:length]


def _nothing_stored(server: ReferenceServer) -> None:
    assert_alive(server)
    applied(server)
    assert server.stats()["events"] == 0


# --- refused here although fasthttp is lenient (RFC 9112 section 6) --------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            (f"Content-Length: {len(BODY)}", f"Content-Length: {len(BODY)}"),
            "duplicate Content-Length header",
        ),
        ((f"Content-Length: {len(BODY)}", "Content-Length: 0"), "duplicate Content-Length header"),
        (
            ("Transfer-Encoding: chunked", f"Content-Length: {len(BODY)}"),
            "Content-Length together with Transfer-Encoding",
        ),
        (
            (f"Content-Length: {len(BODY)}", "Transfer-Encoding: chunked"),
            "Content-Length together with Transfer-Encoding",
        ),
    ],
)
def test_ambiguous_length_is_refused_and_closes(
    server: ReferenceServer, headers: tuple[str, ...], message: str
) -> None:
    status, body = _refused(server, _head(server, *headers) + BODY + SMUGGLED)
    assert status == 400
    assert body == json.dumps({"error": message, "ok": False}, separators=(",", ":")).encode()
    _nothing_stored(server)


@pytest.mark.parametrize("coding", ["xchunked", "chunked, chunked", "gzip, chunked", "identity"])
def test_transfer_coding_other_than_chunked_is_refused(
    server: ReferenceServer, coding: str
) -> None:
    data = _head(server, f"Transfer-Encoding: {coding}") + _chunked(BODY, f"{len(BODY):x}")
    status, body = _refused(server, data + SMUGGLED)
    assert status == 400
    assert body == b'{"error":"unsupported Transfer-Encoding","ok":false}'
    _nothing_stored(server)


def test_two_transfer_encoding_headers_are_refused(server: ReferenceServer) -> None:
    data = _head(server, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked")
    status, body = _refused(server, data + _chunked(BODY, f"{len(BODY):x}"))
    assert (status, body) == (400, b'{"error":"unsupported Transfer-Encoding","ok":false}')


def test_chunked_is_matched_without_regard_to_case(server: ReferenceServer) -> None:
    data = _head(server, "Transfer-Encoding: Chunked", "Connection: close")
    reply = raw_exchange(server, data + _chunked(BODY, f"{len(BODY):x}"))
    assert reply.status == 200


@pytest.mark.parametrize("size", ["0_0", "0x0", "1_0", "0 0", "0\t0", "5\n"])
def test_chunk_size_that_is_not_plain_hex_is_refused(server: ReferenceServer, size: str) -> None:
    data = _head(server, "Transfer-Encoding: chunked") + size.encode() + b"\r\n\r\n" + SMUGGLED
    status, body = _refused(server, data)
    assert (status, body) == (400, b'{"error":"invalid chunk size line","ok":false}')
    assert_alive(server)


def test_chunk_extensions_are_still_accepted(server: ReferenceServer) -> None:
    data = _head(server, "Transfer-Encoding: chunked", "Connection: close")
    reply = raw_exchange(server, data + _chunked(BODY, f"{len(BODY):x} ;name=value"))
    assert reply.status == 200


# --- refused by fasthttp too: its error text in the engine's error shape -----------------------


@pytest.mark.parametrize("size", ["+0", "-0", " 0", "", ";ext", "g"])
def test_chunk_size_not_starting_with_hex_gets_fasthttps_answer(
    server: ReferenceServer, size: str
) -> None:
    data = _head(server, "Transfer-Encoding: chunked") + size.encode() + b"\r\n\r\n" + SMUGGLED
    assert _refused(server, data) == (400, b'{"error":"empty hex number","ok":false}')


def test_chunk_size_of_sixteen_hex_digits_is_too_large(server: ReferenceServer) -> None:
    data = _head(server, "Transfer-Encoding: chunked") + b"0" * 16 + b"\r\n\r\n"
    assert _refused(server, data) == (400, b'{"error":"too large hex number","ok":false}')


def test_chunk_without_crlf_after_its_data_is_refused(server: ReferenceServer) -> None:
    data = _head(server, "Transfer-Encoding: chunked") + b"2\r\n{}XX0\r\n\r\n"
    assert _refused(server, data) == (
        400,
        b'{"error":"cannot find crlf at the end of chunk","ok":false}',
    )


def _fasthttp_head_error(inner: str, buffer: bytes) -> bytes:
    text = f"error when reading request headers: {inner}. Buffer size={len(buffer)}, contents: "
    if len(buffer) > 400:
        text += go_quote(buffer[:200]) + "..." + go_quote(buffer[-200:])
    else:
        text += go_quote(buffer)
    return json.dumps({"error": text, "ok": False}, separators=(",", ":")).encode()


@pytest.mark.parametrize("key", ["Content-Length ", "content-length\t", "X-Pad "])
def test_whitespace_before_a_colon_gets_fasthttps_answer(server: ReferenceServer, key: str) -> None:
    head = _head(server, f"{key}: {len(BODY)}")
    status, body = _refused(server, head + BODY + SMUGGLED)
    assert status == 400
    normalized_key = "-".join(part.capitalize() for part in key.split("-"))
    expected_buffer = head.replace(key.encode(), normalized_key.encode())
    expected_buffer = expected_buffer.replace(b"x-api-key", b"X-Api-Key")
    inner = f"invalid header key {go_quote(normalized_key.encode())}"
    assert body == _fasthttp_head_error(inner, expected_buffer)
    _nothing_stored(server)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("+5", "unexpected first char found. Expecting 0-9"),
        ("-1", "unexpected first char found. Expecting 0-9"),
        ("1_0", "non-numeric chars found"),
        ("5, 5", "non-numeric chars found"),
        ("0x5", "non-numeric chars found"),
    ],
)
def test_content_length_that_is_not_digits_gets_fasthttps_answer(
    server: ReferenceServer, value: str, reason: str
) -> None:
    head = _head(server, f"Content-Length: {value}")
    status, body = _refused(server, head + b"{}" + SMUGGLED)
    assert status == 400
    buffer = head.replace(b"x-api-key", b"X-Api-Key")
    assert body == _fasthttp_head_error(f"cannot parse Content-Length: {reason}", buffer)


def test_a_long_head_is_quoted_as_fasthttp_shortens_it(server: ReferenceServer) -> None:
    head = _head(server, "X-Pad: " + "p" * 600, "Content-Length : 2")
    status, body = _refused(server, head + b"{}")
    buffer = head.replace(b"x-api-key", b"X-Api-Key")
    expected = _fasthttp_head_error('invalid header key "Content-Length "', buffer)
    assert (status, body) == (400, expected)


def test_refusals_are_in_the_request_log(server: ReferenceServer) -> None:
    _refused(server, _head(server, "Content-Length: 2", "Content-Length: 2") + b"{}")
    assert [(r.method, r.path, r.status) for r in server.requests] == [
        ("POST", "/api/v1/batch", 400)
    ]


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        (b"plain", '"plain"'),
        (b'say "hi"\\', '"say \\"hi\\"\\\\"'),
        (b"\r\n\t\x00\x7f", '"\\r\\n\\t\\x00\\x7f"'),
        ("é€😀".encode(), '"é€😀"'),
        (b"\xff\xc3", '"\\xff\\xc3"'),
        ("\u200b".encode(), '"\\u200b"'),
    ],
)
def test_go_quote_matches_gos_percent_q(raw: bytes, quoted: str) -> None:
    assert go_quote(raw) == quoted
