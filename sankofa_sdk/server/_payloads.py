"""Turn decoded payloads into what the store applies, with the engine's rules.

Sections 7, 8, 9 and 11 of the spec: which fields exist and their JSON types, how timestamps
are read, what the server adds (User-Agent keys), and which ids it silently discards.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any, NamedTuple, Optional, Union

from .._operations import (
    is_garbage_id,
    is_zero_time,
    parse_property_timestamp,
    parse_rfc3339,
    to_epoch,
)
from . import _gojson
from ._useragent import Device


class InvalidPayload(ValueError):
    """A payload that does not decode into the engine's struct for its type (400)."""


class Event(NamedTuple):
    """An accepted event. On the write path the property maps are left out (None): the store
    keeps the request body and rebuilds them when an event is read, so accepting an event
    never re-encodes its properties."""

    distinct_id: str
    event_name: str
    lib_version: str
    timestamp_us: int
    session_id: Optional[str]
    insert_id: Optional[str]
    position: int
    """Position of the operation in its request (0 on the single route)."""
    properties: Optional[dict[str, Any]] = None
    default_properties: Optional[dict[str, Any]] = None


class Profile(NamedTuple):
    distinct_id: str
    properties: dict[str, Any]
    timestamp_us: int
    position: int = 0
    """Position of the operation in its request (0 on the single route)."""


class Alias(NamedTuple):
    alias_id: str
    distinct_id: str
    timestamp_us: int
    position: int = 0
    """Position of the operation in its request (0 on the single route)."""


Item = Union[Event, Profile, Alias]

_EVENT_FIELDS = frozenset(
    {
        "event_name",
        "distinct_id",
        "properties",
        "default_properties",
        "lib_version",
        "timestamp",
        "id",
    }
)
_PROFILE_FIELDS = frozenset({"distinct_id", "properties", "timestamp"})
_ALIAS_FIELDS = frozenset({"alias_id", "distinct_id", "timestamp"})
_FIELDS = {"track": _EVENT_FIELDS, "people": _PROFILE_FIELDS, "alias": _ALIAS_FIELDS}
_MAP_FIELDS = frozenset({"properties", "default_properties"})
_TIME_FIELDS = frozenset({"timestamp"})


class AmbiguousKeys(Exception):
    """Two keys of one payload fold to the same field; decode again keeping document order."""


def _typed_fields(kind: str, payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidPayload(f"{kind} payload is not an object")
    names = _FIELDS[kind]
    if payload.keys() <= names and not isinstance(payload, _gojson.Pairs):
        found = payload  # the usual case: exact field names only, nothing to fold
    else:
        found, ambiguous = _gojson.fields(payload, names)
        if ambiguous:
            raise AmbiguousKeys
    for name, value in found.items():
        if value is None:
            continue
        if name in _MAP_FIELDS:
            if not isinstance(value, dict):
                raise InvalidPayload(f"{name} is not an object")
        elif not isinstance(value, str):
            raise InvalidPayload(f"{name} is not a string")
    return found


def _timestamp_us(value: Optional[str]) -> Optional[int]:
    """The top-level timestamp in microseconds, or None when it counts as not sent."""
    if value is None:
        return None
    return _parse_timestamp_us(value)


@lru_cache(maxsize=4096)  # operations of a batch mostly share a few stamps
def _parse_timestamp_us(value: str) -> Optional[int]:
    try:
        parsed = parse_rfc3339(value)
    except ValueError:
        raise InvalidPayload("timestamp is not RFC 3339 with a zone") from None
    if is_zero_time(parsed):
        return None
    return round(to_epoch(parsed) * 1_000_000)


def _property_timestamp_us(properties: dict[str, Any]) -> Optional[int]:
    for key in ("$timestamp", "$time"):
        value = properties.get(key)
        if isinstance(value, str):
            parsed = parse_property_timestamp(value)
            # An unparseable $timestamp means server time at once; $time is not tried.
            return None if parsed is None else round(to_epoch(parsed) * 1_000_000)
    return None


def now_us() -> int:
    return time.time_ns() // 1000


def parse_item(
    kind: str, payload: Any, device: Device, received_us: int, index: int = 0, full: bool = False
) -> Optional[Item]:
    """Decode one payload of ``kind``; ``None`` when the garbage-id rule discards it.

    ``full`` also builds an event's property maps (reads need them, writes do not).
    Raises :class:`InvalidPayload` where the engine answers 400 and :class:`AmbiguousKeys`
    where the caller must decode again with document order.
    """
    fields = _typed_fields(kind, payload)
    timestamp = _timestamp_us(fields.get("timestamp"))
    distinct_id = fields.get("distinct_id") or ""
    if kind == "track":
        if is_garbage_id(distinct_id):
            return None
        properties = fields.get("properties") or {}
        if timestamp is None:
            timestamp = _property_timestamp_us(properties)
        session = properties.get("$session_id")
        insert_id = properties.get("$insert_id")
        defaults = None
        if full:
            defaults = dict(fields.get("default_properties") or {})
            # The engine always overwrites these three with its User-Agent parse (section 8).
            defaults["$os"], defaults["$browser"], defaults["$device_model"] = device
        return Event(
            distinct_id,
            fields.get("event_name") or "",
            fields.get("lib_version") or "",
            received_us if timestamp is None else timestamp,
            session if isinstance(session, str) else None,
            insert_id if isinstance(insert_id, str) else None,
            index,
            properties if full else None,
            defaults,
        )
    if kind == "people":
        properties = dict(fields.get("properties") or {})
        for key, value in zip(("$os", "$browser", "$device_model"), device, strict=True):
            current = properties.get(key)
            if not isinstance(current, str) or current in ("", "Other"):
                properties[key] = value
        if is_garbage_id(distinct_id):
            return None
        return Profile(
            distinct_id, properties, received_us if timestamp is None else timestamp, index
        )
    if is_garbage_id(distinct_id):
        return None
    return Alias(
        fields.get("alias_id") or "",
        distinct_id,
        received_us if timestamp is None else timestamp,
        index,
    )
