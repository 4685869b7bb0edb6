"""Checks that run on the caller's thread before an operation is queued.

They are deliberately cheap (type checks, one search for the engine's garbage-id markers, a set
lookup for an id seen before): everything that can wait, such as converting property values to
JSON, happens later on the background thread.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any, Optional

from ._errors import ValidationError
from ._operations import datetime_epoch, garbage_id_reason, parse_rfc3339, to_epoch

# Unix times outside this range cannot be stored by the engine (ClickHouse DateTime).
_MIN_EPOCH = 0.0
_MAX_EPOCH = 4294967295.0


_KEPT_IDS: set[str] = set()
"""Ids already checked and kept: most calls name an id some earlier call named (the same user
again), and a set lookup costs a quarter of the check. Only plain strings, which cannot change."""
_KEPT_IDS_MAX = 4_096
"""Forgotten all at once beyond this many, so the memory stays small whatever the traffic."""
_KEPT_ID_MAX_CHARS = 256


def check_distinct_id(value: Any, what: str = "distinct_id") -> str:
    """Return ``value`` as a distinct id the engine keeps, or raise ``ValidationError``.

    Integers are accepted and turned into strings, since many apps key users by number.
    """
    text: str
    if type(value) is str:
        if value in _KEPT_IDS:
            return value
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
    if len(text) <= _KEPT_ID_MAX_CHARS:
        if len(_KEPT_IDS) >= _KEPT_IDS_MAX:
            _KEPT_IDS.clear()
        _KEPT_IDS.add(text)
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
    hint = ""
    if isinstance(value, str) and what == "properties":
        # Segment's track(user_id, event, properties) has the event second.
        hint = (
            "; the order is track(event_name, properties, distinct_id=...), not Segment's "
            "track(user_id, event_name)"
        )
    raise ValidationError(
        f"{what} must be a mapping (dict), not {type(value).__name__}{hint}",
        reason="invalid_properties",
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


class TimestampNotRead(ValidationError):
    """A ``timestamp=`` string that cannot be read without guessing. The call is kept and
    stamped with the time of the call (the engine would refuse the string and lose the call),
    and this is reported; with ``strict=True`` it is raised like any invalid call."""


# What the engine refuses but means one moment only: a zone without its colon (+0530, +05),
# a lower-case t or z, a space for the T, no seconds, a comma before the fraction. A bare date
# is midnight UTC, as a date object. A date and time with no zone is not read: the engine reads
# it as UTC, Python as local time.
_LENIENT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r" ?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?)?\Z",
    re.ASCII,
)


def _lenient_time(text: str) -> float:
    """Unix seconds of a timestamp string the engine would refuse but that means one moment."""
    match = _LENIENT.match(text.strip())
    if match is None:
        raise TimestampNotRead(
            f"timestamp {text!r} is not a date and time this SDK can read: the call is kept "
            "with the time of the call; pass a datetime or RFC 3339 text such as "
            "'2026-05-09T14:32:01Z'",
            reason="unread_timestamp",
        )
    year, month, day, hour, minute, second, fraction, utc, sign, off_h, off_m = match.groups()
    if hour is not None and utc is None and sign is None:
        raise TimestampNotRead(
            f"timestamp {text!r} has no zone, so the moment it means is a guess (the engine "
            "would read it as UTC, Python as local time): the call is kept with the time of "
            "the call; add 'Z' or an offset such as '+02:00', or pass an aware datetime",
            reason="unread_timestamp",
        )
    try:
        zone = timezone.utc
        if sign is not None:
            offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
            zone = timezone(-offset if sign == "-" else offset)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=zone,
        )
    except ValueError as exc:  # month 13, hour 25, an offset of a day or more
        raise TimestampNotRead(
            f"timestamp {text!r} is not a valid date and time ({exc}): the call is kept with "
            "the time of the call",
            reason="unread_timestamp",
        ) from None
    return to_epoch(moment)


def call_time(timestamp: Any) -> float:
    """The Unix time to stamp on an operation: now, or the ``timestamp`` the caller gave.

    Accepts:

    - a ``datetime``: aware, or naive, which is read as local time (as Python's
      ``datetime.timestamp()`` reads it);
    - a ``date``: midnight UTC of that day;
    - Unix seconds as a number;
    - an RFC 3339 string with a zone, and the forms of it that mean one moment only although
      the engine would refuse them (``+0530``, a space for the ``T``, a bare date read as
      midnight UTC). Other strings raise :class:`TimestampNotRead`: the client keeps the call
      with the time of the call and reports the string.

    A time outside 1970-01-01 .. 2106-02-07 raises ``ValidationError``: the call is refused.
    (Refused, not clamped: the engine stores only that range and does not clamp either, and a
    time outside it is a mistake such as milliseconds for seconds or a mistyped year; moved to
    the edge of the range it would be stored as a wrong time no one notices.)
    """
    if timestamp is None:
        return time.time()
    if isinstance(timestamp, datetime):
        seconds = datetime_epoch(timestamp)
    elif isinstance(timestamp, date):
        seconds = to_epoch(
            datetime(timestamp.year, timestamp.month, timestamp.day, tzinfo=timezone.utc)
        )
    elif isinstance(timestamp, str):
        try:
            seconds = to_epoch(parse_rfc3339(timestamp))
        except ValueError:
            seconds = _lenient_time(timestamp)
    elif isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        seconds = float(timestamp)
        if not math.isfinite(seconds):
            raise ValidationError(
                f"timestamp {timestamp!r} is not a time", reason="invalid_timestamp"
            )
    else:
        raise ValidationError(
            f"timestamp must be a datetime, an RFC 3339 string or Unix seconds, not "
            f"{type(timestamp).__name__}",
            reason="invalid_timestamp",
        )
    if not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
        when = "before 1970-01-01" if seconds < _MIN_EPOCH else "after 2106-02-07"
        hint = (
            "; pass Unix seconds, not milliseconds"
            if isinstance(timestamp, (int, float)) and seconds > _MAX_EPOCH
            else ""
        )
        raise ValidationError(
            f"timestamp {timestamp!r} is {when}, outside what the engine can store (1970 to "
            f"2106){hint}",
            reason="invalid_timestamp",
        )
    return seconds
