"""Every option of a client, validated once and frozen.

The client, the worker, the pacer and the transport read the same ``Options`` object instead of
re-passing keyword arguments through three constructors. Each problem names the option it is
about, so ``Client(timeout=-1)`` says ``timeout must be > 0``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from ._errors import ConfigurationError
from ._log import logger
from ._operations import MAX_REQUEST_BYTES
from ._retry import RetryPolicy

MAX_BATCH_OPERATIONS = 9_000
"""The engine's buffer holds 10,000 items of each kind and answers 503 to a request that does
not fit whole, so one batch must stay clearly below that."""

MAX_SECONDS = 86_400 * 365
"""Longer waits are typos, and past threading's limit they would raise deep inside."""

DEFAULT_RATE_LIMIT = (500, 60)
"""The engine's request budget per API key: 500 requests per 60 s window."""

_HOST_EXAMPLE = "a URL such as 'https://api.sankofa.dev'"
_HOSTNAME = re.compile(r"[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.?\Z")
"""DNS labels (letters, digits and inner hyphens; letters of any script, for IDNs)."""


def check_host(host: Any) -> str:
    """The engine's base URL as the client uses it, or :class:`ConfigurationError`.

    Refuses at construction what can never reach an engine (``"http://"``, ``"not a url"``,
    spaces, a bad port, a query or fragment the request path would be glued to, credentials in
    the URL). A host without a scheme gets ``https://`` with a warning; plain ``http`` to an
    address that is not loopback is allowed with a warning (the key would travel unencrypted).
    """
    if not isinstance(host, str) or not host.strip():
        raise ConfigurationError(f"host must be {_HOST_EXAMPLE}, got {host!r}")
    text = host.strip()
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ConfigurationError(f"host must not contain spaces or control characters: {host!r}")
    if "://" not in text:
        logger.warning("host %r has no scheme; using https://%s", text, text)
        text = "https://" + text
    text = text.rstrip("/") if not text.endswith("://") else text
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise ConfigurationError(f"host is not a usable URL ({exc}): {host!r}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigurationError(f"host must be an http(s) URL, got {host!r}")
    hostname = parts.hostname
    if not hostname:
        raise ConfigurationError(f"host has no server name: {host!r}; it must be {_HOST_EXAMPLE}")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("host must not carry credentials; pass the key as api_key")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ConfigurationError(f"host must not have a query or fragment: {host!r}")
    if port == 0:
        raise ConfigurationError(f"host has port 0, which no server listens on: {host!r}")
    if not (_is_ip_address(hostname) or _HOSTNAME.match(hostname)):
        raise ConfigurationError(f"host {hostname!r} is not a valid server name: {host!r}")
    if parts.scheme.lower() == "http" and not is_loopback_host(hostname):
        logger.warning(
            "host %s uses plain http to a non-loopback address: the API key and the "
            "data travel unencrypted",
            text,
        )
    return text


def _is_ip_address(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def is_loopback_host(hostname: str) -> bool:
    """localhost or a loopback address (127.0.0.0/8, ::1)."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Options:
    """What a client was configured with. Build it with :meth:`from_kwargs`, which validates."""

    flush_at: int = 100
    flush_interval: float = 0.5
    max_batch_size: int = 5_000
    max_batch_bytes: int = MAX_REQUEST_BYTES - 64 * 1024
    max_queue_size: int = 1_000_000
    max_queue_bytes: int = 128 * 1024 * 1024
    block_when_full: float = 0.0
    gzip: Optional[bool] = None
    timeout: float = 10.0
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    rate_limit: Optional[tuple[int, float]] = DEFAULT_RATE_LIMIT
    shutdown_timeout: float = 5.0
    max_shutdown_time: float = 30.0
    handle_sigterm: bool = True
    sync_mode: bool = False
    send: bool = True
    disabled: bool = False
    strict: bool = False
    on_error: Optional[Callable[..., Any]] = None
    debug: bool = False
    verify: bool = True
    spool_dir: Optional[str] = None
    max_spool_bytes: int = 1024 * 1024 * 1024
    spool_fsync: bool = False
    before_send: Optional[Callable[[dict[str, Any]], Optional[dict[str, Any]]]] = None
    super_properties: Optional[Mapping[str, Any]] = None
    """Read-only (a ``MappingProxyType`` of a copy): what every event gets under its own."""
    proxies: Optional[Mapping[str, str]] = None
    """requests-style ``{"https": "http://proxy:3128"}``; None: the environment's."""

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Options:
        """Validate ``kwargs`` (the client's keyword options) into one frozen object.

        Raises :class:`ConfigurationError` listing every bad option at once.
        """
        retry_fields = {f.name for f in dataclasses.fields(RetryPolicy)}
        retry_args = {k: kwargs.pop(k) for k in list(kwargs) if k in retry_fields}
        problems: list[str] = []
        try:
            retry = RetryPolicy(**retry_args)
        except ConfigurationError as exc:
            problems.append(str(exc))
            retry = RetryPolicy()
        known = {f.name for f in dataclasses.fields(cls)} - {"retry"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            problems.append(f"unknown option(s): {', '.join(unknown)}")
        values = {k: v for k, v in kwargs.items() if k in known}
        problems.extend(_problems(values))
        if problems:
            raise ConfigurationError("; ".join(problems))
        return cls(retry=retry, **_normalised(values))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problems(values: dict[str, Any]) -> list[str]:
    """What is wrong with ``values``, one sentence per option."""
    problems = []

    def need_int(name: str, low: int, high: int) -> None:
        if name in values and not (_is_int(values[name]) and low <= values[name] <= high):
            problems.append(f"{name} must be a whole number from {low:,} to {high:,}")

    def need_seconds(name: str, *, zero_ok: bool) -> None:
        if name not in values:
            return
        value = values[name]
        if not _is_number(value) or value < 0 or (value == 0 and not zero_ok):
            problems.append(f"{name} must be a number of seconds {'>= 0' if zero_ok else '> 0'}")
        elif value > MAX_SECONDS:
            problems.append(f"{name} must be at most {MAX_SECONDS:,} seconds")

    need_int("flush_at", 1, MAX_BATCH_OPERATIONS)
    need_int("max_batch_size", 1, MAX_BATCH_OPERATIONS)
    need_int("max_batch_bytes", 1024, MAX_REQUEST_BYTES - 1024)
    need_int("max_queue_size", 1, 100_000_000)
    need_int("max_queue_bytes", 64 * 1024, 1 << 40)
    need_int("max_spool_bytes", 1024 * 1024, 1 << 50)
    spool_dir = values.get("spool_dir")
    if spool_dir is not None and (
        not isinstance(spool_dir, (str, os.PathLike)) or not os.fspath(spool_dir)
    ):
        problems.append("spool_dir must be a directory path (str or os.PathLike) or None")
    need_seconds("flush_interval", zero_ok=False)
    need_seconds("timeout", zero_ok=False)
    need_seconds("shutdown_timeout", zero_ok=True)
    need_seconds("max_shutdown_time", zero_ok=True)
    need_seconds("block_when_full", zero_ok=True)
    for name in (
        "sync_mode",
        "send",
        "disabled",
        "strict",
        "debug",
        "verify",
        "spool_fsync",
        "handle_sigterm",
    ):
        if name in values and not isinstance(values[name], bool):
            problems.append(f"{name} must be True or False")
    if "gzip" in values and values["gzip"] not in (None, True, False):
        problems.append("gzip must be True, False or None (compress large batches)")
    for name in ("on_error", "before_send"):
        if values.get(name) is not None and not callable(values[name]):
            problems.append(f"{name} must be callable or None")
    supers = values.get("super_properties")
    if supers is not None and not (
        isinstance(supers, Mapping) and all(isinstance(k, str) for k in supers)
    ):
        problems.append("super_properties must be a mapping of str keys or None")
    proxies = values.get("proxies")
    if proxies is not None and not (
        isinstance(proxies, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in proxies.items())
    ):
        problems.append(
            'proxies must map schemes to proxy URLs, e.g. {"https": "http://proxy:3128"}'
        )
    if "rate_limit" in values and values["rate_limit"] is not None:
        limit = values["rate_limit"]
        if not (
            isinstance(limit, (tuple, list))
            and len(limit) == 2
            and _is_int(limit[0])
            and limit[0] >= 1
            and _is_number(limit[1])
            and limit[1] > 0
        ):
            problems.append("rate_limit must be (requests, seconds), e.g. (500, 60), or None")
    if (
        not problems
        and "flush_at" in values
        and values["flush_at"] > values.get("max_batch_size", Options.max_batch_size)
    ):
        problems.append("flush_at must not be larger than max_batch_size")
    return problems


def _normalised(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for name in (
        "flush_interval",
        "timeout",
        "shutdown_timeout",
        "max_shutdown_time",
        "block_when_full",
    ):
        if name in out:
            out[name] = float(out[name])
    if out.get("spool_dir") is not None:
        out["spool_dir"] = os.fspath(out["spool_dir"])
    if out.get("rate_limit") is not None:
        requests, seconds = out["rate_limit"]
        out["rate_limit"] = (int(requests), float(seconds))
    for name in ("super_properties", "proxies"):
        if out.get(name) is not None:
            # A copy, read-only: changing the caller's dict later changes nothing here.
            out[name] = MappingProxyType(dict(out[name]))
    return out
