"""Request body ``Content-Encoding`` as Fiber decodes it before any handler reads the body.

Spec section 4: tokens ``gzip`` and ``deflate`` (zlib-wrapped) are decoded, case-sensitively,
in the order listed. A single unknown token (``identity``, ``GZIP``) leaves the body as it is;
a list that starts with an unknown token gives an empty body. A body that fails to decode is
replaced by the error text, so the handler's JSON decoding fails and it answers 400.

``br``/``brotli`` would need a library outside the standard library; the reference server
treats them as undecodable (400) and says so in its README.
"""

from __future__ import annotations

import zlib
from typing import Optional

MAX_DECODED_BYTES = 512 * 1024 * 1024
"""The engine sets no limit on the decoded size; this one keeps a test machine alive.

It bounds the bytes produced by the whole decoding: every gzip member and every listed
encoding count against it, and decoding stops (the body is undecodable, so 400) as soon as one
more byte would pass it, before that byte is allocated.
"""

CHUNK_BYTES = 1024 * 1024
"""Bytes inflated per step. zlib gathers one call's output in blocks and joins them at the end,
so a single call for the whole budget would hold it twice: a 600 MB gzip bomb would peak at
about 1 GB before being refused at 512 MiB. Step by step into one growing buffer, the peak stays
near the decoded size (at most the cap) plus one step."""

UNDECODABLE = b"\x00content-encoding could not be decoded"


class _TooLarge(Exception):
    pass


class _Budget:
    """Bytes the decoding of one body may still produce."""

    def __init__(self, limit: int) -> None:
        self.left = limit


def _inflate(data: bytes, wbits: int, budget: _Budget) -> bytes:
    out = bytearray()
    while True:
        inflater = zlib.decompressobj(wbits)
        pending = data
        while pending:
            # One byte more than is left tells "exactly at the cap" from "over it".
            step = inflater.decompress(pending, min(CHUNK_BYTES, budget.left + 1))
            if len(step) > budget.left:
                raise _TooLarge
            budget.left -= len(step)
            out += step
            pending = inflater.unconsumed_tail
            if not step and pending:
                raise zlib.error("no progress")  # cannot happen with max_length >= 1
        while not inflater.eof:  # output zlib still holds after the input was all taken
            step = inflater.decompress(b"", min(CHUNK_BYTES, budget.left + 1))
            if not step:
                break
            if len(step) > budget.left:
                raise _TooLarge
            budget.left -= len(step)
            out += step
        if not inflater.eof:
            raise zlib.error("truncated")
        data = inflater.unused_data
        if wbits < 16 or not data:  # gzip members may follow one another; zlib data may not
            return bytes(out)


def decode_body(body: bytes, content_encoding: Optional[str]) -> bytes:
    """The body as the engine's handlers see it after Fiber's decoding."""
    if not content_encoding:
        return body
    tokens = [token.strip() for token in content_encoding.split(",") if token.strip()]
    if not tokens:
        return body
    current = body
    budget = _Budget(MAX_DECODED_BYTES)
    for position, token in enumerate(tokens):
        try:
            if token == "gzip":
                current = _inflate(current, 16 + zlib.MAX_WBITS, budget)
            elif token == "deflate":
                current = _inflate(current, zlib.MAX_WBITS, budget)
            elif token in ("br", "brotli"):
                return UNDECODABLE
            elif len(tokens) == 1:
                return body
            else:
                return current if position else b""
        except (zlib.error, _TooLarge):
            return UNDECODABLE
    return current
