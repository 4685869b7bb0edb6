"""Turning what the caller passed into the JSON the engine accepts.

Runs on the background thread. The fast path is one call to the C JSON encoder with a
``default`` hook for the common non-JSON types, on an operation's properties only: the rest of
the element is written around them, its fixed parts once per library version. Only when that
fails (NaN, a cycle, absurd nesting, an odd key type, a lone surrogate) does a slower walk
rebuild the value, cutting what cannot be sent and saying where. Both give the bytes that
encoding the whole element as nested dicts would.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import json.encoder
import math
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, MappingView, Sequence
from datetime import date, datetime, timedelta, timezone
from datetime import time as dt_time
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Optional, Union
from uuid import UUID

from ._operations import format_epoch

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_MILLISECOND = timedelta(milliseconds=1)

MAX_DEPTH = 100
"""When a value is nested too deeply for the JSON encoder (about 900 levels), it is rebuilt
and everything below this depth is cut (replaced by null)."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_ALWAYS_WRITABLE_BITS = 2000
"""Python writes an integer as text only up to ``sys.get_int_max_str_digits()`` digits, which is
at least 640; an integer of at most this many bits has fewer digits than that."""


def _decimal(value: Decimal) -> Any:
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _bytes(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")


class NotRead(Exception):
    """An iterable of a kind not known to be finite: it is not read (see ``convert_value``).

    Raised from the encoder's hook so the operation takes the careful path, where ``sanitize``
    sends ``replacement`` instead and notes why.
    """

    def __init__(self, note: str, replacement: Optional[str]) -> None:
        super().__init__(note)
        self.note = note
        self.replacement = replacement


_FINITE_ITERABLES = (list, tuple, deque, MappingView)
"""Iterables known to hold a finite number of items already in memory, read as lists (the
encoder writes lists and tuples itself; here they come as keys). Dicts, sets and frozensets
are handled before, arrays by their ``tolist()``."""
_MODEL_METHODS = ("model_dump", "dict", "_asdict")
"""How models give their fields as a mapping: pydantic v2, pydantic v1 (and v2's deprecated
spelling), named-tuple-like records. Such models are often iterable too (pydantic yields
``(name, value)`` pairs), which without this would send them as lists of pairs."""


def datetime_millis(value: datetime) -> int:
    """Whole milliseconds from the Unix epoch to ``value``, its sub-millisecond part cut (as
    ``isoformat(timespec="milliseconds")`` cuts it), counted exactly. A naive datetime is local
    time, read as ``datetime_epoch`` reads it.

    Cut, not rounded, and not through a float of seconds (which holds a time near year 9999 to
    about 30 µs only): rounding wrote ``datetime.max`` as ``10000-01-01T00:00:00.000Z``, not
    RFC 3339, and 23:59:59.9995 on New Year's Eve in the next year.
    """
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        local = value.replace(tzinfo=None)
        try:
            # Exact for a whole second; the zone's offset does not depend on the fraction.
            whole = int(local.replace(microsecond=0).timestamp())
        except (OverflowError, ValueError, OSError):
            value = local.replace(tzinfo=_UTC)  # at the edges of the range, as datetime_epoch
        else:
            return whole * 1000 + local.microsecond // 1000
    return (value - _EPOCH) // _MILLISECOND


def _datetime_text(value: datetime) -> str:
    """RFC 3339 UTC text of a datetime, to the millisecond it is in (see ``datetime_millis``).

    ``format_epoch`` rounds to the millisecond; given a whole number of milliseconds over 1000
    it writes that number back (the float is within 0.1 ms of it anywhere in a datetime's
    range), so nothing is rounded up.
    """
    return format_epoch(datetime_millis(value) / 1000)


def convert_value(value: Any) -> Any:
    """Convert one value the JSON encoder does not know into one it does.

    Containers come back as containers; the encoder (or the walk) converts what is inside.
    Raises :class:`NotRead` for an iterable that might never end or block when read (a
    generator, ``itertools.count()``, a file or socket): only known finite kinds are read.
    """
    if isinstance(value, datetime):
        if value.tzinfo is _UTC:
            # The common case, without two calls: what _datetime_text gives an aware value.
            return format_epoch((value - _EPOCH) // _MILLISECOND / 1000)
        return _datetime_text(value)
    if isinstance(value, (date, dt_time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(bytes(value))
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, type):
        for name in _MODEL_METHODS:
            method = getattr(value, name, None)
            if callable(method):
                fields = method()
                if isinstance(fields, Mapping):
                    return dict(fields)
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, array.array
    if callable(tolist):
        return tolist()
    if isinstance(value, _FINITE_ITERABLES):
        return list(value)  # type: ignore[arg-type]  # MappingView is iterable at run time
    if isinstance(value, Iterable) and not isinstance(value, str):
        kind = type(value).__name__
        if isinstance(value, Iterator):  # generators, itertools.count(), files, sockets
            raise NotRead(
                f"a {kind} (an iterator) is not read, it might never end: sent as null", None
            )
        raise NotRead(
            f"a {kind} is not a collection known to be finite, so it is not read: sent as its text",
            str(value),
        )
    return str(value)


def _make_encoders() -> tuple[Callable[[Any], str], Callable[[str], str]]:
    """The JSON encoder for any value, and the one for a string alone."""
    # JSONEncoder.encode() builds a new C encoder on every call when options are not the
    # defaults; that was most of the cost of encoding an event, so build it once. No circular
    # check (markers=None): a cycle ends in RecursionError, and the slow path cuts it.
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    c_encode_string = getattr(json.encoder, "c_encode_basestring", None)
    if c_make_encoder is None or c_encode_string is None:  # e.g. PyPy
        encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=convert_value
        )
        return encoder.encode, json.encoder.encode_basestring
    chunks = c_make_encoder(
        None, convert_value, c_encode_string, None, ":", ",", False, False, False
    )

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return c_encode_string(value)  # type: ignore[no-any-return]
        return "".join(chunks(value, 0))

    return encode, c_encode_string


_encode, _encode_str = _make_encoders()


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, (int, float)):
        return json.dumps(key) if not isinstance(key, float) or math.isfinite(key) else str(key)
    try:
        converted = convert_value(key)
    except NotRead:
        return str(key)
    return converted if isinstance(converted, str) else str(key)


def _clean_str(text: str) -> str:
    # A lone surrogate cannot be written as UTF-8; each becomes one U+FFFD, as the engine reads it.
    return _SURROGATE.sub("\ufffd", text)


def sanitize(
    value: Any,
    problems: list[str],
    path: str = "$",
    depth: int = 0,
    active: frozenset[int] = frozenset(),
) -> Any:
    """Rebuild ``value`` from JSON types only, appending a note to ``problems`` for each cut."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() <= _ALWAYS_WRITABLE_BITS:
            return value
        try:
            int.__repr__(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            problems.append(
                f"{path}: an integer of {value.bit_length()} bits has too many digits to write, "
                "sent as null"
            )
            return None
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        problems.append(f"{path}: {value!r} is not valid JSON, sent as null")
        return None
    if isinstance(value, str):
        return _clean_str(value)
    if depth >= MAX_DEPTH:
        problems.append(f"{path}: nested deeper than {MAX_DEPTH} levels, cut")
        return None
    if id(value) in active:
        problems.append(f"{path}: refers back to itself (a cycle), cut")
        return None
    inner = active | {id(value)}
    if isinstance(value, (dict, list, tuple)):
        try:  # a subclass may override items() or __iter__ with anything
            items = list(value.items() if isinstance(value, dict) else enumerate(value))
        except Exception as exc:
            problems.append(f"{path}: could not read {type(value).__name__} ({exc!r}), cut")
            return None
        if not isinstance(value, dict):
            return [sanitize(v, problems, f"{path}[{i}]", depth + 1, inner) for i, v in items]
        clean = {}
        for k, v in items:
            try:
                key = _key(k)
            except Exception as exc:  # a user's __str__ may raise anything
                problems.append(
                    f"{path}: a {type(k).__name__} key could not be made text ({exc!r}), its entry cut"
                )
                continue
            clean[_clean_str(key)] = sanitize(v, problems, f"{path}.{key}", depth + 1, inner)
        return clean
    try:
        converted = convert_value(value)
    except NotRead as exc:
        problems.append(f"{path}: {exc.note}")
        return None if exc.replacement is None else _clean_str(exc.replacement)
    except Exception as exc:  # a user's __str__/isoformat may raise anything
        problems.append(f"{path}: could not convert {type(value).__name__} ({exc!r}), cut")
        return None
    return sanitize(converted, problems, path, depth + 1, inner)


def to_json(value: Any) -> tuple[bytes, list[str]]:
    """Encode ``value`` as compact UTF-8 JSON; return the bytes and what had to be cut."""
    try:
        return _encode(value).encode("utf-8"), []
    except Exception:  # NaN, cycles, depth, odd keys, lone surrogates, or a user's hook raising
        pass
    problems: list[str] = []
    clean = sanitize(value, problems)
    return _encode(clean).encode("utf-8"), problems


# --- operations -------------------------------------------------------------------------------

Operation = tuple[str, str, Any, Any, Any, float]
"""A queued call: (type, distinct_id, event_name | alias_id | None, properties, default_properties,
Unix time). A plain tuple because building it is the cheapest thing the caller's thread can do."""

LIB_NAME = "sankofa-python"


def new_insert_id() -> str:
    """A random UUID (version 4) as text, formatted directly: ``str(uuid4())`` costs 2.5x more."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_VERSION_4 = bytes(b & 0x0F | 0x40 for b in range(256))
_RFC_4122_VARIANT = bytes(b & 0x3F | 0x80 for b in range(256))
_BULK_IDS_FROM = 32
"""Fewer ids than this are formatted one by one; laying out many at once has a fixed cost."""


def _insert_ids(count: int) -> list[str]:
    """``count`` random version 4 UUIDs as text, as ``new_insert_id`` makes them, for less CPU.

    One read of the system's random source for all of them, the version and variant bits set and
    the hex digits laid out with the dashes by a few operations on whole byte strings.
    """
    if count < _BULK_IDS_FROM:
        return [new_insert_id() for _ in range(count)]
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_RFC_4122_VARIANT)
    digits = raw.hex().encode("ascii")
    text = bytearray(b"-" * (36 * count))
    digit = 0
    for column in range(36):
        if column not in (8, 13, 18, 23):
            text[column::36] = digits[digit::32]
            digit += 1
    joined = text.decode("ascii")
    return [joined[i : i + 36] for i in range(0, 36 * count, 36)]


def _payload(op: Operation, lib_version: str, insert_id: Optional[str] = None) -> dict[str, Any]:
    kind, distinct_id, name_or_alias, properties, default_properties, stamp = op
    timestamp = format_epoch(stamp)
    if kind == "track":
        props = properties if properties is not None else {}
        if "$insert_id" not in props:
            # Our own copy (taken on the caller's thread), so adding to it mutates nothing of theirs.
            props["$insert_id"] = new_insert_id() if insert_id is None else insert_id
        defaults = dict(default_properties) if default_properties else {}
        defaults.setdefault("$lib", LIB_NAME)
        defaults.setdefault("$lib_version", lib_version)
        return {
            "event_name": name_or_alias,
            "distinct_id": distinct_id,
            "properties": props,
            "default_properties": defaults,
            "lib_version": lib_version,
            "timestamp": timestamp,
        }
    if kind == "people":
        return {"distinct_id": distinct_id, "properties": properties or {}, "timestamp": timestamp}
    return {"alias_id": name_or_alias, "distinct_id": distinct_id, "timestamp": timestamp}


@functools.lru_cache(maxsize=8)
def _lib_parts(lib_version: str) -> tuple[str, str]:
    """The JSON that depends only on the library version: the default ``default_properties``,
    and the text from ``lib_version`` up to the opening quote of ``timestamp``."""
    defaults = _encode({"$lib": LIB_NAME, "$lib_version": lib_version})
    return defaults, f',"lib_version":{_encode_str(lib_version)},"timestamp":"'


def _operation_json(op: Operation, lib_version: str, insert_id: Optional[str]) -> Optional[str]:
    """The text ``to_json`` would write for ``_payload``'s element, built around the properties'
    own encoding instead of from nested dicts; the fixed parts are written once per version.

    Returns ``None`` for an operation not shaped as the client queues them, and raises whatever
    the encoder raises; either way the caller takes the careful path, which decides what is sent.
    (The C encoder gives up at about 990 levels of nesting less the caller's stack depth. The
    properties are encoded here without the two objects around them, so that limit moves by a
    level or two: as much as any change in the depth of the caller's stack moves it.)
    """
    kind, distinct_id, name_or_alias, properties, default_properties, stamp = op
    if type(distinct_id) is not str or type(lib_version) is not str:
        return None
    # Only digits, "-", ":", ".", "T" and "Z": nothing to escape.
    timestamp = format_epoch(stamp)
    if kind == "track":
        if type(name_or_alias) is not str:
            return None
        if properties is None:
            props: dict[Any, Any] = {}
        elif type(properties) is dict:
            props = properties
        else:
            return None
        if default_properties and type(default_properties) is not dict:
            return None
        defaults, tail = _lib_parts(lib_version)
        if "$insert_id" not in props:
            # Our own copy (taken on the caller's thread), so adding to it mutates nothing of theirs.
            props["$insert_id"] = new_insert_id() if insert_id is None else insert_id
        body = _encode(props)  # before default_properties, as in the whole element
        if default_properties:
            given = dict(default_properties)
            given.setdefault("$lib", LIB_NAME)
            given.setdefault("$lib_version", lib_version)
            defaults = _encode(given)
        return (
            f'{{"type":"track","payload":{{"event_name":{_encode_str(name_or_alias)}'
            f',"distinct_id":{_encode_str(distinct_id)},"properties":{body}'
            f',"default_properties":{defaults}{tail}{timestamp}"}}}}'
        )
    if kind == "people":
        if properties is None:
            props_json = "{}"
        elif type(properties) is dict:
            props_json = _encode(properties)
        else:
            return None
        return (
            f'{{"type":"people","payload":{{"distinct_id":{_encode_str(distinct_id)}'
            f',"properties":{props_json},"timestamp":"{timestamp}"}}}}'
        )
    if kind == "alias" and type(name_or_alias) is str:
        return (
            f'{{"type":"alias","payload":{{"alias_id":{_encode_str(name_or_alias)}'
            f',"distinct_id":{_encode_str(distinct_id)},"timestamp":"{timestamp}"}}}}'
        )
    return None


def _encode_one(
    op: Operation, lib_version: str, insert_id: Optional[str]
) -> tuple[bytes, list[str]]:
    try:
        text = _operation_json(op, lib_version, insert_id)
        if text is not None:
            return text.encode("utf-8"), []
    except Exception:  # NaN, cycles, depth, odd keys, lone surrogates, or a user's hook raising
        pass  # the careful path meets the same again and decides
    return to_json({"type": op[0], "payload": _payload(op, lib_version, insert_id)})


def encode_operation(
    op: Operation, lib_version: str, insert_id: Optional[str] = None
) -> tuple[bytes, list[str]]:
    """One batch element, ``{"type":…,"payload":…}``, as JSON bytes, plus what had to be cut.

    ``insert_id``: the ``$insert_id`` a track gets (one of ``InsertIds``), else a new one."""
    return _encode_one(op, lib_version, insert_id)


class InsertIds:
    """``$insert_id``s made 256 at a time (one read of the random source) and handed out one
    by one: for encoding single operations on the callers' threads (with a spool), where a
    fresh id each (0.75 µs) is a good part of what a call costs. Thread-safe: ``deque`` pops
    are atomic."""

    def __init__(self) -> None:
        self._ids: deque[str] = deque()

    def next(self) -> str:
        try:
            return self._ids.popleft()
        except IndexError:
            self._ids.extend(_insert_ids(256))
            return self._ids.popleft()


def encode_operations(
    ops: Sequence[Operation], lib_version: str
) -> tuple[list[bytes], dict[int, list[str]]]:
    """``encode_operation`` for each of ``ops``: the bytes of each, in order, and the notes of
    those that had something cut, by position in ``ops``.

    The same bytes and notes as one call per operation, for less CPU: the ``$insert_id``s the
    events need are made together (about 0.15 µs each instead of 0.75 µs), and no pair is kept
    per operation. Like ``encode_operation`` it raises only for a tuple the client would not have
    queued; then encode that batch one by one to find it.
    """
    kinds = [op[0] for op in ops]
    ids = iter(_insert_ids(kinds.count("track")))
    encoded: list[bytes] = []
    cut: dict[int, list[str]] = {}
    for index, op in enumerate(ops):
        data, problems = _encode_one(
            op, lib_version, next(ids) if kinds[index] == "track" else None
        )
        encoded.append(data)
        if problems:
            cut[index] = problems
    return encoded, cut


def describe_operation(op: Operation) -> dict[str, Any]:
    """The operation as the caller would recognise it, for ``on_error`` and logs."""
    kind, distinct_id, name_or_alias, properties, default_properties, stamp = op
    described: dict[str, Any] = {"type": kind, "distinct_id": distinct_id}
    if kind == "track":
        described.update(event_name=name_or_alias, properties=properties)
        if default_properties:
            described["default_properties"] = default_properties
    elif kind == "people":
        described["properties"] = properties
    else:
        described["alias_id"] = name_or_alias
    described["timestamp"] = format_epoch(stamp)
    return described


def describe_encoded(data: bytes) -> dict[str, Any]:
    """An encoded operation as the caller would recognise it (for ``on_error``), read back from
    its JSON: the queue keeps operations as JSON only, not the caller's objects as well."""
    try:
        element = json.loads(data)
        kind, payload = element["type"], element["payload"]
    except (ValueError, KeyError, TypeError):
        return {"type": "unknown", "json": data[:1000].decode("utf-8", "replace")}
    described: dict[str, Any] = {"type": kind, "distinct_id": payload.get("distinct_id")}
    if kind == "track":
        described.update(event_name=payload.get("event_name"), properties=payload.get("properties"))
        defaults = {
            key: value
            for key, value in (payload.get("default_properties") or {}).items()
            if key not in ("$lib", "$lib_version")
        }
        if defaults:
            described["default_properties"] = defaults
    elif kind == "people":
        described["properties"] = payload.get("properties")
    else:
        described["alias_id"] = payload.get("alias_id")
    described["timestamp"] = payload.get("timestamp")
    return described


Reported = Union[Operation, bytes]
"""What a failure report carries per operation: the queued tuple, or its JSON once encoded."""


def describe_reported(item: Reported) -> dict[str, Any]:
    return describe_encoded(item) if isinstance(item, bytes) else describe_operation(item)


def batch_body(encoded: list[bytes]) -> bytes:
    """The ``/api/v1/batch`` request body for already-encoded operations."""
    return b'{"operations":[' + b",".join(encoded) + b"]}"
