"""Rules of the wire contract that the client and the reference server share.

The operation types, the engine's garbage-id rule (spec section 11), the timestamp formats it
accepts (section 7.6) and the request size limit (section 4) live here once: the client uses
them to refuse what the engine would drop, the reference server to behave like the engine.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

OPERATION_TYPES = ("track", "people", "alias")
BATCH_PATH = "/api/v1/batch"
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""The engine rejects a request body (as sent, i.e. compressed) larger than this with 413."""

GARBAGE_ID_MARKERS = ("gzip", "*/*", "deflate", "identity", "accept")
MIN_ID_BYTES = 2


_GARBAGE_ID_MARKER = re.compile("|".join(re.escape(marker) for marker in GARBAGE_ID_MARKERS))


def garbage_id_reason(distinct_id: str) -> Optional[str]:
    """Say why the engine would silently discard an operation with this ``distinct_id``.

    Returns ``None`` for an id the engine keeps. The rule is the engine's: fewer than two UTF-8
    bytes, or one of a few header-like words anywhere in the lower-cased id.
    """
    # Runs on every call that names an id: one search for all the markers, and the id
    # encoded only when it is too short to be sure of its byte length.
    if len(distinct_id) < MIN_ID_BYTES and (
        len(distinct_id.encode("utf-8", "surrogatepass")) < MIN_ID_BYTES
    ):
        return f"shorter than {MIN_ID_BYTES} bytes"
    # Go's strings.ToLower maps U+0130 to a plain "i"; Python's lower() adds a combining dot.
    if distinct_id.isascii():
        lowered = distinct_id.lower()
    else:
        lowered = distinct_id.replace("\u0130", "i").lower()
    if _GARBAGE_ID_MARKER.search(lowered) is None:
        return None
    marker = next(marker for marker in GARBAGE_ID_MARKERS if marker in lowered)
    return f"contains {marker!r}, which the engine treats as a garbage id"


def is_garbage_id(distinct_id: str) -> bool:
    """True when the engine would discard an operation with this ``distinct_id``."""
    return garbage_id_reason(distinct_id) is not None


# --- timestamps -------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)
_ZONELESS = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\Z", re.ASCII)


# Date and time of day by Unix second. Formatting one costs about 1 µs, more than the rest of
# format_epoch. The operations of a batch mostly share their second, but a datetime property (a
# sign-up date, say) has its own: with a single slot the two evicted each other on every event.
_second_prefixes: dict[int, str] = {}
_MAX_CACHED_SECONDS = 256
# ".000Z" to ".999Z": indexing costs a quarter of formatting the milliseconds each time.
_MILLISECOND_SUFFIXES = tuple(f".{ms:03d}Z" for ms in range(1000))


def format_epoch(seconds: float) -> str:
    """Format a Unix time as RFC 3339 UTC with milliseconds and ``Z``: ``2026-05-09T14:32:01.482Z``.

    This is the form the SDK stamps on every operation. Years are written with at least four
    digits (``0850-…``; ``strftime("%Y")`` writes "850" on glibc). A time past year 9999 (a
    datetime property at the very edge of Python's range, moved there by its offset) has no
    RFC 3339 form and is written with more digits: the engine keeps property values as text,
    and it refuses such an operation timestamp, which the calls never stamp (they refuse any
    ``timestamp=`` outside 1970-2106, what the engine stores).
    """
    whole, ms = divmod(round(seconds * 1000), 1000)
    prefix = _second_prefixes.get(whole)
    if prefix is None:
        t = time.gmtime(whole)
        prefix = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        )
        if len(_second_prefixes) >= _MAX_CACHED_SECONDS:
            _second_prefixes.clear()
        _second_prefixes[whole] = prefix
    return prefix + _MILLISECOND_SUFFIXES[ms]


def format_datetime(value: datetime) -> str:
    """Format a datetime as RFC 3339 UTC with milliseconds and ``Z``.

    A naive datetime is read as local time, as Python's ``datetime.timestamp()`` reads it (and
    the other Sankofa SDKs read theirs).
    """
    return format_epoch(datetime_epoch(value))


def datetime_epoch(value: datetime) -> float:
    """The Unix time of a datetime, as ``format_datetime`` reads it: naive is local time."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        try:
            return value.replace(tzinfo=None).timestamp()
        except (OverflowError, ValueError, OSError):
            # Local time within hours of year 1 or 9999 that Python cannot convert: read as
            # UTC instead (hours off, at the edge of what a datetime can hold).
            value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH).total_seconds()


def _build(match: re.Match[str], *, zoned: bool) -> datetime:
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or ""
    micro = int((fraction + "000000")[:6]) if fraction else 0
    tz = timezone.utc
    if zoned and match.group(8) is None:
        sign = -1 if match.group(9) == "-" else 1
        off_h, off_m = int(match.group(10)), int(match.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError("zone offset out of range")
        tz = timezone(sign * timedelta(hours=off_h, minutes=off_m))
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("time of day out of range")
    # Go accepts year 0; Python's datetime starts at year 1. Year 0 is far outside the engine's
    # storage range (1970-2106) anyway, so it is read as the earliest datetime Python can hold.
    if year == 0:
        year, month, day = 1, 1, 1
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def parse_rfc3339(text: str) -> datetime:
    """Parse a top-level ``timestamp`` the way the engine's JSON decoder does.

    Only ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`` is accepted: upper-case ``T``,
    mandatory zone, any number of fraction digits. Anything else raises ``ValueError`` (the
    engine answers 400). The result is timezone-aware, in the offset it was written in.
    """
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp with a zone: {text!r}")
    return _build(match, zoned=True)


def parse_property_timestamp(text: str) -> Optional[datetime]:
    """Parse ``properties.$timestamp`` / ``$time`` with the engine's lenient parser.

    Accepts RFC 3339 (with or without a fraction) and the zone-less layouts
    ``YYYY-MM-DD HH:MM:SS[.fff]`` read as UTC. Returns ``None`` when nothing matches.
    """
    try:
        match = _RFC3339.match(text)
        if match is not None:
            return _build(match, zoned=True)
        match = _ZONELESS.match(text)
        if match is not None:
            return _build(match, zoned=False)
    except ValueError:
        return None
    return None


def is_zero_time(value: datetime) -> bool:
    """True for Go's zero time (``0001-01-01T00:00:00Z``), which the engine treats as "not sent"."""
    return (value - datetime(1, 1, 1, tzinfo=timezone.utc)) == timedelta(0)


def to_epoch(value: datetime) -> float:
    """Seconds since the Unix epoch for an aware datetime (works for any year Python holds)."""
    return (value - _EPOCH).total_seconds()
