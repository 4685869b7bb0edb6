"""A small stand-in for the engine's User-Agent parse (uap-core), spec section 8.

The engine writes the parsed OS, browser and device families into ``$os``, ``$browser`` and
``$device_model``. uap-core is a large regex database; this covers the agents that reach a
server-side ingestion API (HTTP libraries, common browsers, headless Chrome in test runs) and
answers ``Other`` for the rest, as uap-core does for anything it does not know. Families follow
uap-core's names (``HeadlessChrome``, ``Mobile Safari``, ``Chrome Mobile``); Android device
models (uap-core's ``Pixel 8``) are not parsed and stay ``Other``.

uap-core's maintained Python implementation (``ua-parser`` with ``ua-parser-builtins``) is an
optional extra, ``pip install sankofa-sdk[ua]``: with it installed the server parses every agent
exactly as the engine does. It is not a dependency: it adds about 1.2 MB, 20-25 ms of import and
some 80 ms of rule compiling at the first parse, and the server otherwise needs only the
standard library.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Optional


class Device(NamedTuple):
    os: str
    browser: str
    device_model: str


_BROWSERS = (
    (re.compile(r"python-requests/"), "Python Requests"),
    (re.compile(r"python-urllib/", re.I), "Python-urllib"),
    (re.compile(r"^curl/"), "curl"),
    (re.compile(r"HeadlessChrome/"), "HeadlessChrome"),
    (re.compile(r"Edg(?:e|A|iOS)?/"), "Edge"),
    (re.compile(r"Firefox/"), "Firefox"),
    (re.compile(r"Chrome/[\d.]+ Mobile"), "Chrome Mobile"),
    (re.compile(r"Chrome/"), "Chrome"),
    (re.compile(r"Version/[\d.]+ Mobile/\w+ Safari/"), "Mobile Safari"),
    (re.compile(r"Version/[\d.]+ Safari/"), "Safari"),
)
_OSES = (
    (re.compile(r"Windows NT"), "Windows"),
    (re.compile(r"iPhone OS|iPad; CPU OS"), "iOS"),
    (re.compile(r"Mac OS X"), "Mac OS X"),
    (re.compile(r"Android"), "Android"),
    (re.compile(r"Ubuntu"), "Ubuntu"),
    (re.compile(r"Linux"), "Linux"),
)
_DEVICES = (
    (re.compile(r"iPhone"), "iPhone"),
    (re.compile(r"iPad"), "iPad"),
    (re.compile(r"Macintosh"), "Mac"),
    (re.compile(r"^Python-urllib/"), "Spider"),  # uap-core files it under crawlers
)


def _first(patterns: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str:
    for pattern, name in patterns:
        if pattern.search(text):
            return name
    return "Other"


@lru_cache(maxsize=256)
def parse(user_agent: str) -> Device:
    """OS, browser and device family of a User-Agent header; ``Other`` where unknown."""
    uap = _uap_parse()
    if uap is not None:
        try:
            result = uap(user_agent)
        except Exception:  # a bug of the library's must not cost the request
            pass
        else:
            return Device(_family(result.os), _family(result.user_agent), _family(result.device))
    return stand_in(user_agent)


def stand_in(user_agent: str) -> Device:
    """The built-in rules, without uap-core."""
    return Device(
        _first(_OSES, user_agent), _first(_BROWSERS, user_agent), _first(_DEVICES, user_agent)
    )


def _family(part: Any) -> str:
    family = getattr(part, "family", None)
    return family if isinstance(family, str) and family else "Other"


@lru_cache(maxsize=1)
def _uap_parse() -> Optional[Callable[[str], Any]]:
    """``ua_parser.parse`` when the ``ua`` extra is installed (imported at the first parse)."""
    try:
        # Typed when installed; the ignore is for a checker run without the extra.
        from ua_parser import parse as uap  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return uap  # type: ignore[no-any-return,unused-ignore]
