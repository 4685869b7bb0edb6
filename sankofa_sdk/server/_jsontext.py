"""JSON text as it arrived: the exact text of each batch operation, and indentation for reading.

Decoding and encoding again would change what a developer needs to see (key order, duplicate
keys, number spelling, escapes, integers beyond 2**53 once a browser parses them), so the
console shows the request's own characters and only changes whitespace between tokens.
"""

from __future__ import annotations

import json
import re
from typing import Optional

from ._gojson import fold

MAX_PRETTY_CHARS = 256 * 1024
"""Longer texts are shown as they are; indenting them would cost more than it helps."""

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[{}\[\],:]|[ \t\n\r]+|[^ \t\n\r{}\[\],:"]+', re.S)


def _skip(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _elements(text: str, at: int) -> tuple[list[str], int]:
    """The texts of the array starting at ``at`` (a ``[``), and the index after it."""
    texts: list[str] = []
    at = _skip(text, at + 1)
    if text[at] == "]":
        return texts, at + 1
    while True:
        _, end = _DECODER.raw_decode(text, at)
        texts.append(text[at:end])
        at = _skip(text, end)
        if text[at] == "]":
            return texts, at + 1
        if text[at] != ",":
            raise ValueError("expected , or ]")
        at = _skip(text, at + 1)


def operation_texts(text: str) -> Optional[list[str]]:
    """The exact text of each element of a batch body's ``operations`` array, in order.

    The key is matched as the engine matches struct fields (case-insensitively, the last one
    winning). None when the body is not an object with such an array.
    """
    found: Optional[list[str]] = None
    try:
        at = _skip(text, 0)
        if text[at] != "{":
            return None
        at = _skip(text, at + 1)
        while text[at] != "}":
            key, at = _DECODER.raw_decode(text, at)
            at = _skip(text, at)
            if text[at] != ":":
                return None
            at = _skip(text, at + 1)
            if isinstance(key, str) and fold(key) == "operations" and text[at] == "[":
                found, at = _elements(text, at)
            else:
                _, at = _DECODER.raw_decode(text, at)
            at = _skip(text, at)
            if text[at] == ",":
                at = _skip(text, at + 1)
    except (ValueError, IndexError, RecursionError):
        return None
    return found


def pretty(text: str, indent: str = "  ") -> str:
    """Indent JSON text for reading, changing only whitespace outside strings."""
    if len(text) > MAX_PRETTY_CHARS:
        return text
    out: list[str] = []
    depth = 0
    tokens = [t for t in _TOKEN.findall(text) if not t.isspace()]
    for i, token in enumerate(tokens):
        if token in ("{", "["):
            closing = "}" if token == "{" else "]"
            if i + 1 < len(tokens) and tokens[i + 1] == closing:
                out.append(token)  # an empty object or array stays on its line
                continue
            depth += 1
            out.append(token + "\n" + indent * depth)
        elif token in ("}", "]"):
            if i and tokens[i - 1] in ("{", "["):
                out.append(token)
                continue
            depth = max(depth - 1, 0)
            out.append("\n" + indent * depth + token)
        elif token == ",":
            out.append(",\n" + indent * depth)
        elif token == ":":
            out.append(": ")
        else:
            out.append(token)
    return "".join(out)
