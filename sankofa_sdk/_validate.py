"""Checks that run on the caller's thread before an operation is queued.

They are deliberately cheap (type checks, one encode, five substring tests): everything that can
wait, such as converting property values to JSON, happens later on the background thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from typing import Any, Optional

from ._errors import ValidationError
from ._operations import garbage_id_reason, parse_rfc3339, to_epoch

# Unix times outside this range cannot be stored by the engine (ClickHouse DateTime).
_MIN_EPOCH = 0.0
_MAX_EPOCH = 4294967295.0


def check_distinct_id(value: Any, what: str = "distinct_id") -> str:
    """Return ``value`` as a distinct id the engine keeps, or raise ``ValidationError``.

    Integers are accepted and turned into strings, since many apps key users by number.
    """
    text: str
    if type(value) is str:
        text = value
    elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        text = str(value)
    elif value is None:
        raise ValidationError(f"{what} is required", reason="invalid_distinct_id")
    else:
        raise ValidationError(
            f"{what} must be a string, not {type(value).__name__}", reason="invalid_distinct_id"
        )
    why = garbage_id_reason(text)
    if why is not None:
        raise ValidationError(
            f"{what} {text!r} would be silently discarded by the engine: {why}",
            reason="garbage_distinct_id",
        )
    return text


def check_alias_id(value: Any) -> str:
    """An alias source id: any non-empty string (the engine does not check it; we do)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if type(value) is not str or not value:
        raise ValidationError("alias_id must be a non-empty string", reason="invalid_alias_id")
    return value


def check_event_name(value: Any) -> str:
    if type(value) is str and value:
        return value
    if isinstance(value, str) and value:
        return str(value)
    raise ValidationError("event_name must be a non-empty string", reason="invalid_event_name")


def copy_mapping(value: Any, what: str) -> Optional[dict[Any, Any]]:
    """Shallow-copy a properties mapping so later changes by the caller do not alter what is sent."""
    if value is None:
        return None
    if type(value) is dict or isinstance(value, Mapping):
        return dict(value)
    raise ValidationError(
        f"{what} must be a mapping (dict), not {type(value).__name__}", reason="invalid_properties"
    )


def check_keys(keys: Any) -> list[str]:
    """Keys for ``people_unset``: one string or an iterable of strings, at least one."""
    if isinstance(keys, str):
        keys = [keys]
    elif not isinstance(keys, Iterable) or isinstance(keys, (bytes, Mapping)):
        raise ValidationError(
            "keys must be a string or an iterable of strings", reason="invalid_properties"
        )
    result = list(keys)
    if not result:
        raise ValidationError("people_unset needs at least one key", reason="invalid_properties")
    for key in result:
        if type(key) is not str or not key:
            raise ValidationError(
                f"people_unset keys must be non-empty strings, got {key!r}",
                reason="invalid_properties",
            )
    return result


def call_time(timestamp: Any) -> float:
    """The Unix time to stamp on an operation: now, or the ``timestamp`` the caller gave.

    Accepts an aware or naive ``datetime`` (naive is read as UTC), a ``date`` (midnight UTC), an
    RFC 3339 string with a zone, or Unix seconds as a number.
    """
    if timestamp is None:
        return time.time()
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None or timestamp.tzinfo.utcoffset(timestamp) is None:
            timestamp = timestamp.replace(tzinfo=timezone.utc)
        seconds = to_epoch(timestamp)
    elif isinstance(timestamp, date):
        seconds = to_epoch(
            datetime(timestamp.year, timestamp.month, timestamp.day, tzinfo=timezone.utc)
        )
    elif isinstance(timestamp, str):
        try:
            seconds = to_epoch(parse_rfc3339(timestamp))
        except ValueError as exc:
            raise ValidationError(str(exc), reason="invalid_timestamp") from None
    elif isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        seconds = float(timestamp)
    else:
        raise ValidationError(
            f"timestamp must be a datetime, an RFC 3339 string or Unix seconds, not "
            f"{type(timestamp).__name__}",
            reason="invalid_timestamp",
        )
    if not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
        raise ValidationError(
            f"timestamp {timestamp!r} is outside what the engine can store (1970 to 2106); "
            "pass Unix seconds, not milliseconds",
            reason="invalid_timestamp",
        )
    return seconds
