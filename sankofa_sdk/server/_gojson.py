"""JSON the way the engine's Go code reads and writes it.

The engine decodes with Go's ``encoding/json`` and encodes its answers with it, so the
reference server needs a few of its habits (spec sections 7.1 and 13):

* decoding: invalid UTF-8 and lone surrogate escapes become U+FFFD instead of failing; ``NaN``,
  ``Infinity`` and numbers beyond a float64 are errors; struct fields match keys
  case-insensitively, the last duplicate winning;
* encoding: no whitespace, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as ``\\u....``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class DecodeError(ValueError):
    """The body is not JSON the engine would decode."""


def _refuse_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise DecodeError(f"number {text[:20]} overflows a float64")
    return value


def _bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) > 1.7976931348623157e308:
        raise DecodeError("number overflows a float64")
    return value


# Checking every number in Python costs about 2.5 us per operation, far less than scanning
# the text for numbers that might overflow.
_CHECKED = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
)
_PAIRS = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
    parse_int=_bounded_int,
    object_pairs_hook=lambda pairs: Pairs(pairs),
)


class Pairs(dict):  # type: ignore[type-arg]
    """A decoded object that also remembers its keys in document order, duplicates included.

    Only used on the rare bodies where two keys of one object fold to the same struct field,
    where Go lets the last one in the document win.
    """

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def decode(body: bytes, *, keep_pairs: bool = False) -> Any:
    """Decode a request body like ``encoding/json``; raises :class:`DecodeError`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", "replace")
    decoder = _PAIRS if keep_pairs else _CHECKED
    try:
        value = decoder.decode(text)
    except DecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limits, nesting
        raise DecodeError(str(exc)[:200]) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        value = _replace_lone_surrogates(value)
    return value


def _replace_lone_surrogates(value: Any) -> Any:
    # Python keeps an unpaired \ud800 escape as a lone surrogate; Go decodes it to U+FFFD.
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        fixed = {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
        if isinstance(value, Pairs):
            result = Pairs(list(fixed.items()))
            result.pairs = [
                (_replace_lone_surrogates(k), _replace_lone_surrogates(v)) for k, v in value.pairs
            ]
            return result
        return fixed
    return value


def fold(key: str) -> str:
    """Fold a key for Go's case-insensitive struct field matching."""
    # Go compares ToUpper(ToLower(r)) rune by rune, so dotless i (U+0131), U+0130, long s
    # (U+017F) and the Kelvin sign match ASCII letters; lower() then upper() then lower() gives
    # the same for the field names here.
    return key.replace("\u0130", "i").lower().upper().lower()


def fields(obj: dict[str, Any], names: frozenset[str]) -> tuple[dict[str, Any], bool]:
    """Pick the struct fields ``names`` out of a decoded object, matching keys like Go does.

    Returns the fields found and whether two keys folded to the same field (then the caller
    must re-decode with document order to know which one Go keeps).
    """
    found: dict[str, Any] = {}
    ambiguous = False
    pairs = obj.pairs if isinstance(obj, Pairs) else obj.items()
    for key, value in pairs:
        name = key if key in names else fold(key)
        if name in names:
            if name in found and not isinstance(obj, Pairs):
                ambiguous = True
            found[name] = value
    return found, ambiguous


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def encode(value: Any) -> bytes:
    """Encode like Go's ``json.Marshal``: compact, sorted keys, HTML characters escaped."""
    text = _ENCODER.encode(value)
    if _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
        .encode("utf-8")
    )
