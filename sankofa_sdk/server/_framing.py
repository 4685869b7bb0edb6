"""Strict request framing (RFC 9112 sections 5, 6 and 7.1): refuse what could be read two ways.

A request whose body length two parsers could disagree on is the shape of request smuggling,
so it is refused with 400 and its connection closed. Where fasthttp v1.51.0 (the engine's HTTP
layer) refuses too, the answer carries fasthttp's own error text in the engine's error shape,
because Fiber's server error handler passes the parse error to the engine's handler:

* whitespace between a header name and its colon: ``error when reading request headers:
  invalid header key "Content-Length ". Buffer size=N, contents: "..."``, the contents being the
  request head as Go's ``%q`` prints it, header names normalized as fasthttp does in place;
* a Content-Length that is not all digits: ``... cannot parse Content-Length: <reason>. ...``;
* a chunk size that does not start with a hex digit: ``empty hex number`` (16 digits or more:
  ``too large hex number``); a chunk not followed by CRLF: ``cannot find crlf at the end of
  chunk``.

Where fasthttp is lenient the RFC is followed instead, with messages of our own (the known
divergences, listed in the package docstring): two Content-Length headers (fasthttp keeps
the last), Content-Length with Transfer-Encoding (fasthttp reads the body as chunked), any
transfer coding other than ``chunked`` (fasthttp reads anything but ``identity`` as chunked), and
a chunk size followed by anything but whitespace, ``;`` and an extension, or not ended by CRLF
(fasthttp skips to the next CR, so ``0_0`` and ``0x0`` read as 0).
"""

from __future__ import annotations

import re
from typing import Optional, Union

from . import _responses
from ._responses import Response

MAX_HEX_DIGITS = 15
"""fasthttp's ``maxHexIntChars`` on 64-bit platforms: a longer chunk size is an error."""

DUPLICATE_LENGTH = _responses.error(400, "duplicate Content-Length header")
LENGTH_WITH_CODING = _responses.error(400, "Content-Length together with Transfer-Encoding")
UNSUPPORTED_CODING = _responses.error(400, "unsupported Transfer-Encoding")
INVALID_CHUNK_LINE = _responses.error(400, "invalid chunk size line")
EMPTY_HEX = _responses.error(400, "empty hex number")
TOO_LARGE_HEX = _responses.error(400, "too large hex number")
NO_CRLF_AFTER_CHUNK = _responses.error(400, "cannot find crlf at the end of chunk")

_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}
_HEX = b"0123456789abcdefABCDEF"
_CHUNK_LINE = re.compile(rb"([0-9a-fA-F]+)[ \t]*(?:;[^\r\n]*)?\r\n")


def go_quote(data: bytes) -> str:
    """``data`` as Go's ``fmt.Sprintf("%q", data)`` writes it (``strconv.Quote``)."""
    out = ['"']
    i = 0
    while i < len(data):
        byte = data[i]
        if byte < 0x80:
            if byte in (0x22, 0x5C):  # " and backslash
                out.append("\\" + chr(byte))
            elif 0x20 <= byte < 0x7F:
                out.append(chr(byte))
            else:
                out.append(_ESCAPES.get(byte, f"\\x{byte:02x}"))
            i += 1
            continue
        for size in (2, 3, 4):
            try:
                char = data[i : i + size].decode("utf-8")
            except UnicodeDecodeError:
                continue
            break
        else:
            out.append(f"\\x{byte:02x}")
            i += 1
            continue
        code = ord(char)
        if char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        i += size
    out.append('"')
    return "".join(out)


def _normalize_key(key: bytearray) -> None:
    """fasthttp's ``normalizeHeaderKey``: upper-case the first letter and each after ``-``."""
    index = 0
    upper = True
    while index < len(key):
        byte = key[index]
        if upper and 0x61 <= byte <= 0x7A:
            key[index] = byte - 0x20
        elif not upper and 0x41 <= byte <= 0x5A:
            key[index] = byte + 0x20
        # The letter after a dash is upper-cased and skipped, even when it is a dash itself.
        upper = not upper and byte == 0x2D
        index += 1


def _parse_uint(value: bytes) -> Optional[str]:
    """fasthttp's ``parseContentLength``: None when valid, else its reason."""
    if not value:
        return "empty integer"
    if not value[:1].isdigit():
        return "unexpected first char found. Expecting 0-9"
    if not value.isdigit():
        return "non-numeric chars found"
    if int(value) >= 1 << 63:
        return "too long int"
    return None


def _snippet(buffer: bytes) -> str:
    if len(buffer) <= 400:
        return go_quote(buffer)
    return go_quote(buffer[:200]) + "..." + go_quote(buffer[-200:])


def check_head(lines: list[bytes]) -> Optional[Response]:
    """The refusal of a request head, or None when its framing is unambiguous.

    ``lines`` are the request line and the header lines as read, ending with the blank line.
    """
    buffer = bytearray()
    error: Optional[str] = None
    length_state = 0  # fasthttp's contentLength: -1 once Transfer-Encoding was seen
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for number, line in enumerate(lines):
        start = len(buffer)
        buffer += line
        if number == 0 or line in (b"\r\n", b"\n") or line[:1] in (b" ", b"\t"):
            continue  # request line, end of head, or a folded value (read as one value)
        colon = line.find(b":")
        if colon < 0:
            error = error or "invalid header name"
            continue
        key = buffer[start : start + colon]
        _normalize_key(key)
        buffer[start : start + colon] = key
        value = line[colon + 1 :].lstrip(b" ").rstrip(b"\r\n").rstrip(b" ")
        if b" " in key or b"\t" in key:
            error = f"invalid header key {go_quote(bytes(key))}"  # the last one is reported
            continue
        name = bytes(key).lower()
        if name == b"content-length":
            lengths.append(value)
            if length_state != -1:
                reason = _parse_uint(value)
                if reason is not None and error is None:
                    error = f"cannot parse Content-Length: {reason}"
        elif name == b"transfer-encoding":
            codings.append(value)
            if value != b"identity":
                length_state = -1
    if error is not None:
        message = (
            f"error when reading request headers: {error}. "
            f"Buffer size={len(buffer)}, contents: {_snippet(bytes(buffer))}"
        )
        return _responses.error(400, message)
    if len(lengths) > 1:
        return DUPLICATE_LENGTH
    if lengths and codings:
        return LENGTH_WITH_CODING
    if codings and (len(codings) > 1 or codings[0].strip(b" \t").lower() != b"chunked"):
        return UNSUPPORTED_CODING
    return None


def chunk_size(line: bytes) -> Union[int, Response]:
    """The size a chunk-size line gives, or the refusal of the line."""
    digits = 0
    while digits < len(line) and line[digits] in _HEX:
        digits += 1
    if digits == 0:
        return EMPTY_HEX
    if digits > MAX_HEX_DIGITS:
        return TOO_LARGE_HEX
    match = _CHUNK_LINE.fullmatch(line)
    if match is None:
        return INVALID_CHUNK_LINE
    return int(match.group(1), 16)
