"""The module-level API (``sankofa_sdk.track(...)``) acting on one default client."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional, TypedDict, Union

from ._client import FLUSH_IF_DUE_TIMEOUT, FLUSH_TIMEOUT, Client, ErrorHandler
from ._delivery import Transport
from ._errors import ConfigurationError
from ._hooks import BeforeSend
from ._identity import Identity
from ._log import ThrottledWarning

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from 3.11; only the checker needs it

_lock = threading.Lock()
_default: Optional[Client] = None
_warnings = ThrottledWarning(interval=60.0)


class ClientOptions(TypedDict, total=False):
    """The keyword options of :class:`Client` (see its docstring), for ``init(**options)``: a
    typo or a wrong type is then a type error, not a surprise at run time."""

    flush_at: int
    flush_interval: float
    max_batch_size: int
    max_batch_bytes: int
    max_queue_size: int
    max_queue_bytes: int
    block_when_full: float
    gzip: Optional[bool]
    timeout: float
    max_retries: int
    backoff_base: float
    backoff_max: float
    max_retry_time: float
    max_retry_after: float
    rate_limit: Optional[tuple[int, float]]
    shutdown_timeout: float
    max_shutdown_time: float
    handle_sigterm: bool
    sync_mode: bool
    send: bool
    disabled: bool
    strict: bool
    on_error: Optional[ErrorHandler]
    debug: bool
    verify: bool
    spool_dir: Optional[Union[str, os.PathLike[str]]]
    max_spool_bytes: int
    spool_fsync: bool
    before_send: Optional[BeforeSend]
    super_properties: Optional[Mapping[str, Any]]
    proxies: Optional[Mapping[str, str]]
    transport: Transport


def init(
    api_key: Optional[str] = None, host: Optional[str] = None, **options: Unpack[ClientOptions]
) -> Client:
    """Create the default client used by ``sankofa_sdk.track()`` and the other module functions.

    ``api_key`` and ``host`` default to the ``SANKOFA_API_KEY`` and ``SANKOFA_HOST`` environment
    variables. Calling ``init`` again shuts the previous default client down first. Raises
    :class:`ConfigurationError` when there is no key (unless ``disabled=True``).
    """
    global _default
    client = Client(api_key, host, **options)  # which reads the environment for what is None
    with _lock:
        previous, _default = _default, client
    _warnings.reset()  # throttled per default client, not per process
    if previous is not None:
        previous.shutdown()
    return client


def get_client() -> Optional[Client]:
    """The default client, created from the environment on first use if ``SANKOFA_API_KEY`` is set."""
    global _default
    if _default is None and os.environ.get("SANKOFA_API_KEY"):
        with _lock:
            if _default is None:
                try:
                    _default = Client()  # which reads SANKOFA_API_KEY and SANKOFA_HOST
                except ConfigurationError as exc:
                    _warnings.warn("init", "cannot create the default client: %s", exc)
    if _default is None:
        _warnings.warn(
            "uninitialised",
            "call sankofa_sdk.init(api_key=...) or set SANKOFA_API_KEY before using the "
            "module-level functions; this call was dropped",
        )
    return _default


def track(
    event_name: str,
    properties: Optional[Mapping[str, Any]] = None,
    *,
    distinct_id: Optional[str] = None,
    timestamp: Any = None,
    default_properties: Optional[Mapping[str, Any]] = None,
) -> None:
    """:meth:`Client.track` on the default client."""
    client = get_client()
    if client is not None:
        client.track(
            event_name,
            properties,
            distinct_id=distinct_id,
            timestamp=timestamp,
            default_properties=default_properties,
        )


def identify(
    distinct_id: str,
    traits: Optional[Mapping[str, Any]] = None,
    *,
    anonymous_id: Optional[str] = None,
    timestamp: Any = None,
) -> None:
    """:meth:`Client.identify` on the default client."""
    client = get_client()
    if client is not None:
        client.identify(distinct_id, traits, anonymous_id=anonymous_id, timestamp=timestamp)


def alias(alias_id: str, distinct_id: str, *, timestamp: Any = None) -> None:
    """:meth:`Client.alias` on the default client."""
    client = get_client()
    if client is not None:
        client.alias(alias_id, distinct_id, timestamp=timestamp)


def people_set(
    properties: Mapping[str, Any], *, distinct_id: Optional[str] = None, timestamp: Any = None
) -> None:
    """:meth:`Client.people_set` on the default client."""
    client = get_client()
    if client is not None:
        client.people_set(properties, distinct_id=distinct_id, timestamp=timestamp)


def people_unset(
    keys: Iterable[str], *, distinct_id: Optional[str] = None, timestamp: Any = None
) -> None:
    """:meth:`Client.people_unset` on the default client."""
    client = get_client()
    if client is not None:
        client.people_unset(keys, distinct_id=distinct_id, timestamp=timestamp)


def reset() -> None:
    """:meth:`Client.reset` on the default client."""
    client = get_client()
    if client is not None:
        client.reset()


def flush(timeout: Optional[float] = FLUSH_TIMEOUT) -> bool:
    """:meth:`Client.flush` on the default client (True when there is none)."""
    return True if _default is None else _default.flush(timeout)


def flush_if_due(timeout: float = FLUSH_IF_DUE_TIMEOUT) -> bool:
    """:meth:`Client.flush_if_due` on the default client (True when there is none)."""
    return True if _default is None else _default.flush_if_due(timeout)


def shutdown(timeout: Optional[float] = None) -> None:
    """:meth:`Client.shutdown` on the default client, which is then forgotten."""
    global _default
    with _lock:
        client, _default = _default, None
    _warnings.reset()  # the next "call sankofa_sdk.init" warning gets through again
    if client is not None:
        client.shutdown(timeout)


@contextmanager
def context(
    distinct_id: Optional[str] = None, *, anonymous_id: Optional[str] = None
) -> Iterator[Optional[Identity]]:
    """:meth:`Client.context` on the default client (a no-op block when there is none)."""
    client = get_client()
    if client is None:
        yield None
        return
    with client.context(distinct_id, anonymous_id=anonymous_id) as identity:
        yield identity
