"""``Client``: the public calls. Each one validates, stamps and queues; nothing else happens here."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Callable, Optional, Union

from . import _sigterm
from ._delivery import CUT_GRACE, Clock, Transport, Worker
from ._delivery.worker import _UNATTENDED_LOCK, UNATTENDED, ShutdownBudget
from ._errors import ConfigurationError, DeliveryError, SankofaError, ValidationError
from ._health import QUEUE_THRESHOLD, Health, check_health
from ._hooks import BeforeSend, Dropped, OperationHooks
from ._host_guard import may_send_to
from ._identity import Identity, IdentityScope
from ._log import ThrottledWarning, debug_off, debug_on, logger
from ._operations import MAX_REQUEST_BYTES
from ._options import DEFAULT_RATE_LIMIT, Options, check_host
from ._runtime import UwsgiProcess, uwsgi_process
from ._serialize import Operation, Reported, describe_operation, describe_reported
from ._stats import ClientStats, Stats
from ._transport import HttpTransport
from ._validate import (
    TimestampNotRead,
    call_time,
    check_alias_id,
    check_distinct_id,
    check_event_name,
    check_keys,
    copy_mapping,
)
from ._version import __version__

DEFAULT_HOST = "https://api.sankofa.dev"
LIB_VERSION = f"python-{__version__}"

ErrorHandler = Callable[[SankofaError, dict[str, Any]], None]
"""``on_error(error, operation)``: told about each operation that is dropped or not delivered."""
FLUSH_TIMEOUT = 10.0
"""How long ``flush()`` waits by default: long enough for a healthy engine, short enough for a
request handler (posthog-python waits 10 s too)."""
FLUSH_IF_DUE_TIMEOUT = 2.0
"""How long ``flush_if_due()`` waits at most: one request to a slow engine, not its retries."""


def mask_key(api_key: str) -> str:
    """Show enough of a key to tell keys apart in logs, never enough to use it."""
    if len(api_key) < 12:
        return "…"
    prefix = api_key[:8] if api_key.startswith(("sk_live_", "sk_test_")) else ""
    return f"{prefix}…{api_key[-4:]}"


class Client:
    """Sends analytics calls to a Sankofa engine from a background thread.

    Every call validates its arguments, stamps the time and puts the operation on a bounded
    in-memory queue; a background thread sends the queue in batches to ``POST /api/v1/batch``
    and retries where that is safe. Calls never block on the network and, unless
    ``strict=True``, never raise: invalid calls and undeliverable operations are logged,
    counted in :meth:`stats` and passed to ``on_error``.

    >>> client = Client("sk_live_...", host="https://api.sankofa.dev")
    >>> client.identify("user_42", {"email": "ada@example.com"})
    >>> client.track("Plan Upgraded", {"plan": "pro"})
    >>> client.shutdown()

    Options (all keyword-only; README "Configuration" says more):

    - ``flush_at`` (100): send when this many operations are queued.
    - ``flush_interval`` (0.5 s): send at least this often while anything is queued.
    - ``max_batch_size`` (5,000), ``max_batch_bytes`` (4 MiB - 64 KiB): what one request may
      carry. A send takes everything queued up to these, so batches grow with the backlog.
    - ``max_queue_size`` (1,000,000) and ``max_queue_bytes`` (128 MiB): the queue's bounds;
      calls beyond them are dropped and counted (``queue_full``).
    - ``block_when_full`` (0 s): how long a call may wait for room when the queue is full,
      instead of being dropped at once (for scripts and batch jobs).
    - ``gzip`` (None): compress request bodies; None compresses bodies of 32 KiB and more,
      except to a loopback host.
    - ``timeout`` (10 s): wall-clock limit of one HTTP request, answer included.
    - ``max_retries`` (10), ``backoff_base`` (0.5 s), ``backoff_max`` (30 s),
      ``max_retry_time`` (300 s), ``max_retry_after`` (60 s): retries after 5xx, timeouts and
      connection errors; a 429 waits ``Retry-After`` (at most ``max_retry_after``) and does
      not use up retries.
    - ``rate_limit`` ((500, 60)): the key's request budget (requests, seconds) assumed until the
      engine's answers say otherwise; None turns pacing off.
    - ``shutdown_timeout`` (5 s): how long :meth:`shutdown` (and so interpreter exit, or a
      SIGTERM) waits for delivery *without progress*: while batches keep being delivered the
      queue drains, and an engine that is down or hangs ends it after this long.
    - ``max_shutdown_time`` (30 s): the most a shutdown takes in all, progress or not (keep it
      under your platform's grace period, e.g. Kubernetes' 30 s, minus the server's own).
    - ``handle_sigterm`` (True): when nothing else handles SIGTERM (its disposition is the
      default), deliver within that budget on SIGTERM, then end by SIGTERM as before; servers
      that handle it themselves are left alone (see ``sankofa_sdk._sigterm``).
    - ``sync_mode`` (False): send each call on the caller's thread (scripts, serverless).
    - ``send`` (True): False accepts calls and drops them (tests).
    - ``disabled`` (False, or ``SANKOFA_DISABLED=1``): every call is a no-op, nothing is sent
      (for tests and local runs; the variable also disables ``init()``'s client).
    - ``strict`` (False): raise :class:`ValidationError` from invalid calls.
    - ``on_error`` (None): ``on_error(error, operation)`` for every invalid call and every
      operation that was not delivered.
    - ``debug`` (False): log each payload at DEBUG level: the ``sankofa_sdk`` logger passes
      DEBUG records while the client runs, and gets its level back at :meth:`shutdown`.
    - ``verify`` (True): verify TLS certificates. Turning it off logs a warning.
    - ``spool_dir`` (None, or ``SANKOFA_SPOOL_DIR``): keep every accepted call on disk in this
      directory before the call returns, so it outlives the process (``kill -9``, OOM, a
      container stopped); the next client on the same directory delivers what is left.
      ``max_spool_bytes`` (1 GiB) bounds it; ``spool_fsync`` (False) also survives power loss,
      at the cost of one disk flush per call.
    - ``super_properties`` (None): properties every event gets, under the call's own.
    - ``before_send`` (None): ``before_send(operation)`` sees each event and people update (a
      dict: ``type``, ``distinct_id``, ``properties``, ``timestamp``, and for events
      ``event_name`` and ``default_properties``) before it is queued, and returns it, changed
      or not, or None to drop it (counted as ``before_send``). One that raises or returns
      something else drops the operation and reports it (reason ``before_send``).
    - ``proxies`` (None): requests-style ``{"https": "http://proxy:3128"}``; by default the
      ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` environment variables apply.
    - ``transport`` (None): send through this instead of HTTP, e.g.
      :class:`sankofa_sdk.testing.RecordingTransport` in tests (it records each batch and
      answers from a script).

    ``api_key`` and ``host`` default to the ``SANKOFA_API_KEY`` and ``SANKOFA_HOST`` environment
    variables (and ``host`` then to ``https://api.sankofa.dev``).
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        host: Optional[str] = None,
        *,
        flush_at: int = 100,
        flush_interval: float = 0.5,
        max_batch_size: int = 5_000,
        max_batch_bytes: int = MAX_REQUEST_BYTES - 64 * 1024,
        max_queue_size: int = 1_000_000,
        max_queue_bytes: int = 128 * 1024 * 1024,
        block_when_full: float = 0.0,
        gzip: Optional[bool] = None,
        timeout: float = 10.0,
        max_retries: int = 10,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_time: float = 300.0,
        max_retry_after: float = 60.0,
        rate_limit: Optional[tuple[int, float]] = DEFAULT_RATE_LIMIT,
        shutdown_timeout: float = 5.0,
        max_shutdown_time: float = 30.0,
        handle_sigterm: bool = True,
        sync_mode: bool = False,
        send: bool = True,
        disabled: bool = False,
        strict: bool = False,
        on_error: Optional[ErrorHandler] = None,
        debug: bool = False,
        verify: bool = True,
        spool_dir: Optional[Union[str, os.PathLike[str]]] = None,
        max_spool_bytes: int = 1024 * 1024 * 1024,
        spool_fsync: bool = False,
        before_send: Optional[BeforeSend] = None,
        super_properties: Optional[Mapping[str, Any]] = None,
        proxies: Optional[Mapping[str, str]] = None,
        transport: Optional[Transport] = None,
        clock: Optional[Clock] = None,
    ) -> None:
        self._disabled = bool(disabled) or _disabled_by_environment()
        if api_key is None:
            api_key = os.environ.get("SANKOFA_API_KEY")
        if host is None:
            host = os.environ.get("SANKOFA_HOST") or DEFAULT_HOST
        if not self._disabled and (not isinstance(api_key, str) or not api_key.strip()):
            raise ConfigurationError(
                "api_key is required: pass the project's key (sk_live_… or sk_test_…) or set "
                "SANKOFA_API_KEY, or pass disabled=True"
            )
        # A key read from a file or an environment variable often ends in a newline: strip it
        # (sent as is, it breaks every request, and the error would quote it).
        self._api_key = (api_key or "").strip()
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in self._api_key):
            raise ConfigurationError("api_key contains spaces or control characters")
        self.host = check_host(host)
        if send is True and transport is None and not self._disabled and not may_send_to(self.host):
            send = False  # a test run's host guard (sankofa_sdk.testing.set_host_guard)
        self.options = Options.from_kwargs(
            flush_at=flush_at,
            flush_interval=flush_interval,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
            max_queue_size=max_queue_size,
            max_queue_bytes=max_queue_bytes,
            block_when_full=block_when_full,
            gzip=gzip,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_time=max_retry_time,
            max_retry_after=max_retry_after,
            rate_limit=rate_limit,
            shutdown_timeout=shutdown_timeout,
            max_shutdown_time=max_shutdown_time,
            handle_sigterm=handle_sigterm,
            sync_mode=sync_mode,
            send=send,
            disabled=disabled,
            strict=strict,
            on_error=on_error,
            debug=debug,
            verify=verify,
            spool_dir=spool_dir if spool_dir is not None else os.environ.get("SANKOFA_SPOOL_DIR"),
            max_spool_bytes=max_spool_bytes,
            spool_fsync=spool_fsync,
            before_send=before_send,
            super_properties=super_properties,
            proxies=proxies,
        )
        if not verify:
            logger.warning("TLS certificate verification is OFF (verify=False)")
        options = self.options
        # Lowers the logger's level while this client runs; shutdown() puts it back.
        self._debug = options.debug
        if self._debug:
            debug_on()
        self._strict = options.strict
        self._sync_mode = options.sync_mode
        self._send = options.send
        self._on_error = on_error
        self._shutdown_timeout = options.shutdown_timeout
        self._max_shutdown_time = options.max_shutdown_time
        self._closed = False
        self._loop_hint_given = False
        hooks = OperationHooks(options.super_properties, options.before_send)
        self._hooks: Optional[OperationHooks] = hooks if hooks else None
        self._request_properties: ContextVar[Optional[Mapping[str, str]]] = ContextVar(
            "sankofa_request_properties", default=None
        )
        """Set by the integrations for the length of a request (``integrations._common``)."""
        self._new_shutdown_state()
        self._warnings = ThrottledWarning()
        self._identity = IdentityScope()
        self._stats = Stats()
        self._clock = clock if clock is not None else Clock()
        if transport is None:
            transport = HttpTransport(self._api_key, self.host, options)
        elif not all(callable(getattr(transport, name, None)) for name in _TRANSPORT_CALLS):
            raise TypeError(
                f"transport must have {', '.join(_TRANSPORT_CALLS)} (see "
                f"sankofa_sdk.testing.RecordingTransport); got {type(transport).__name__}"
            )
        self._transport = transport
        self._worker = Worker(
            options=options,
            transport=self._transport,
            stats=self._stats,
            report=_weak_reporter(self),
            lib_version=LIB_VERSION,
            clock=self._clock,
        )
        # Inside uWSGI: forks Python does not see, threads that do not run (see _runtime).
        self._uwsgi: Optional[UwsgiProcess] = (
            None if self._disabled else uwsgi_process(self._worker, options)
        )
        # A client dropped without shutdown() is freed (the worker holds nothing of it): its
        # thread then delivers what is queued within shutdown_timeout, reports the rest, ends.
        dropped = weakref.finalize(self, self._worker.stop_when_dropped, self._budget(None))
        dropped.atexit = False  # at exit the exit hook shuts live clients down
        _register_at_fork(self)
        _live_clients.add(self)
        _warn_if_many_clients()
        _register_exit_hook()
        if options.handle_sigterm and not self._disabled:
            _sigterm.install(_shutdown_all_at_exit)

    def __repr__(self) -> str:
        mode = "disabled" if self._disabled else "sync" if self._sync_mode else "background"
        return f"<sankofa_sdk.Client host={self.host!r} api_key={mask_key(self._api_key)!r} mode={mode}>"

    # --- the public calls -----------------------------------------------------------------

    def track(
        self,
        event_name: str,
        properties: Optional[Mapping[str, Any]] = None,
        *,
        distinct_id: Optional[str] = None,
        timestamp: Any = None,
        default_properties: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """Record that ``event_name`` happened, for ``distinct_id`` or this context's user.

        ``properties`` is copied at call time (top level), so changing the dict afterwards does
        not change what is sent. Each event gets a ``$insert_id`` so duplicates can be recognised.

        ``timestamp`` (every call takes it; default: now) is an aware ``datetime``, a naive one
        (read as local time, as ``datetime.timestamp()`` reads it), a ``date`` (midnight UTC),
        Unix seconds, or RFC 3339 text. Text that cannot be read without guessing (no zone)
        keeps the call with the time of the call and is reported. Naive datetimes among the
        properties are local time too.
        """
        if self._disabled:
            return
        try:
            name = (
                event_name
                if type(event_name) is str and event_name
                else check_event_name(event_name)
            )
            user = (
                self._identity.distinct_id_for_call()
                if distinct_id is None
                else check_distinct_id(distinct_id)
            )
            props = (
                dict(properties)
                if type(properties) is dict
                else copy_mapping(properties, "properties")
            )
            defaults = (
                None
                if default_properties is None
                else copy_mapping(default_properties, "default_properties")
            )
            extra = self._request_properties.get()
            if extra is not None:
                # Inside a request an integration saw: its URL, referrer, agent, under the
                # caller's own keys (those of the call's properties and default_properties).
                merged = {k: v for k, v in extra.items() if props is None or k not in props}
                if defaults:
                    merged.update(defaults)
                defaults = merged
            stamp = time.time() if timestamp is None else self._stamp(timestamp, "track")
        except Exception as exc:  # a user's object may raise anything: see _refusal
            self._invalid(
                _refusal(exc),
                {"type": "track", "event_name": event_name, "distinct_id": distinct_id},
            )
            return
        self._enqueue(("track", user, name, props, defaults, stamp))

    def identify(
        self,
        distinct_id: str,
        traits: Optional[Mapping[str, Any]] = None,
        *,
        anonymous_id: Optional[str] = None,
        timestamp: Any = None,
    ) -> None:
        """Make ``distinct_id`` this context's user, stitching the anonymous id to it.

        When ``anonymous_id`` is given, or this context is anonymous and its id was already used,
        an alias ``anonymous → distinct_id`` is sent first. A known id is never aliased to another
        known id. ``traits``, when given, are sent as a people update (like :meth:`people_set`).
        """
        if self._disabled:
            return
        try:
            user = check_distinct_id(distinct_id)
            anon = None if anonymous_id is None else check_alias_id(anonymous_id)
            props = copy_mapping(traits, "traits")
            stamp = self._stamp(timestamp, "identify")
        except Exception as exc:  # a user's object may raise anything: see _refusal
            self._invalid(
                _refusal(exc),
                {"type": "identify", "distinct_id": distinct_id, "anonymous_id": anonymous_id},
            )
            return
        source = self._identity.identify(user, anon)
        if source is not None:
            self._enqueue(("alias", user, source, None, None, stamp))
        if props:
            self._enqueue(("people", user, None, props, None, stamp))

    def alias(self, alias_id: str, distinct_id: str, *, timestamp: Any = None) -> None:
        """Link ``alias_id`` (an earlier id) to ``distinct_id``, so both read as one person."""
        if self._disabled:
            return
        try:
            source = check_alias_id(alias_id)
            user = check_distinct_id(distinct_id)
            if source == user:
                raise ValidationError(
                    "alias_id and distinct_id are the same id", reason="invalid_alias_id"
                )
            stamp = self._stamp(timestamp, "alias")
        except Exception as exc:  # a user's object may raise anything: see _refusal
            self._invalid(
                _refusal(exc), {"type": "alias", "alias_id": alias_id, "distinct_id": distinct_id}
            )
            return
        self._enqueue(("alias", user, source, None, None, stamp))

    def people_set(
        self,
        properties: Mapping[str, Any],
        *,
        distinct_id: Optional[str] = None,
        timestamp: Any = None,
    ) -> None:
        """Set profile traits; keys not given are kept. A value of ``None`` removes that key."""
        if self._disabled:
            return
        try:
            props = copy_mapping(properties, "properties")
            if props is None:
                raise ValidationError(
                    "people_set needs a mapping of traits", reason="invalid_properties"
                )
            user = self._user_for(distinct_id)
            stamp = self._stamp(timestamp, "people_set")
        except Exception as exc:  # a user's object may raise anything: see _refusal
            self._invalid(_refusal(exc), {"type": "people_set", "distinct_id": distinct_id})
            return
        self._enqueue(("people", user, None, props, None, stamp))

    def people_unset(
        self,
        keys: Iterable[str],
        *,
        distinct_id: Optional[str] = None,
        timestamp: Any = None,
    ) -> None:
        """Remove profile traits: the keys are sent with ``null`` (a string is one key)."""
        if self._disabled:
            return
        try:
            names = check_keys(keys)
            user = self._user_for(distinct_id)
            stamp = self._stamp(timestamp, "people_unset")
        except Exception as exc:  # a user's object may raise anything: see _refusal
            self._invalid(_refusal(exc), {"type": "people_unset", "distinct_id": distinct_id})
            return
        self._enqueue(("people", user, None, dict.fromkeys(names), None, stamp))

    def _stamp(self, timestamp: Any, call: str) -> float:
        """``call_time(timestamp)``, except that a string that cannot be read without guessing
        stamps the call with the time of the call (reported), instead of losing the call."""
        try:
            return call_time(timestamp)
        except TimestampNotRead as exc:
            if self._strict:
                raise
            self._warnings.warn(exc.reason, "%s call: %s", call, exc)
            self._call_on_error(exc, {"type": call, "timestamp": timestamp})
            return time.time()

    def _user_for(self, distinct_id: Optional[str]) -> str:
        # track() spells this out inline: one method call less on the hottest path.
        if distinct_id is None:
            return self._identity.distinct_id_for_call()
        return check_distinct_id(distinct_id)

    def reset(self) -> None:
        """Forget this context's known user and start a fresh anonymous id (sign-out)."""
        if not self._disabled:
            self._identity.reset()

    @contextmanager
    def context(
        self, distinct_id: Optional[str] = None, *, anonymous_id: Optional[str] = None
    ) -> Iterator[Identity]:
        """A fresh identity for the ``with`` block: ``distinct_id`` if given, else anonymous.

        ``identify`` and ``reset`` inside the block stay inside it. ``anonymous_id`` seeds the
        block's anonymous id instead of a new random one (e.g. the id a browser keeps in a
        cookie); it counts as used, so ``identify(user)`` in the block sends the alias
        ``anonymous_id → user``. Either id raises :class:`ValidationError` if the engine would
        discard it.
        """
        try:
            if distinct_id is not None:
                distinct_id = check_distinct_id(distinct_id)
            if anonymous_id is not None:
                anonymous_id = check_distinct_id(anonymous_id, "anonymous_id")
        except Exception as exc:  # an id whose __str__ raises: a ValidationError, as documented
            raise _refusal(exc) from exc
        with self._identity.scope(distinct_id, anonymous_id) as identity:
            yield identity

    @property
    def distinct_id(self) -> str:
        """The id calls in this context use when they are not given one."""
        return self._identity.current().distinct_id

    # --- delivery control -----------------------------------------------------------------

    def flush(self, timeout: Optional[float] = FLUSH_TIMEOUT) -> bool:
        """Wait until everything accepted so far was delivered or finally failed.

        Returns False if ``timeout`` seconds (10 by default) passed first; ``None`` waits as
        long as delivery takes, which against an engine that is down is up to
        ``max_retry_time``. In async code use :meth:`aflush`, which does not block the loop.
        """
        if self._disabled or self._sync_mode or not self._send:
            return True
        if self._uwsgi is not None:
            self._uwsgi.check_fork(self)
        if not self._loop_hint_given and _on_event_loop_thread():
            self._loop_hint_given = True
            logger.warning(
                "flush() was called on a running event loop's thread and blocks "
                "it while it waits; use 'await client.aflush()' there"
            )
        return self._worker.flush(None if timeout is None else _seconds(timeout))

    def flush_if_due(self, timeout: float = FLUSH_IF_DUE_TIMEOUT) -> bool:
        """At the end of a serverless invocation: send what is due now, keep the rest.

        Waits for a request already in flight, and for a batch that is due if the key's request
        budget lets it go now; never for the budget, and never for a batch that is not due. A
        batch is due when ``flush_at`` operations are queued, or the oldest has waited
        ``flush_interval``, or this client's last request went ``flush_interval`` ago or more
        (so a function invoked less often than that sends at the end of every invocation).
        It returns at once or after about one round trip, and a warm instance sends at most
        one request per ``flush_interval``. What stays queued (at most ``flush_interval``'s
        worth of calls) goes with a later invocation; with ``spool_dir`` it is on disk
        meanwhile. Returns True when nothing is left queued. ``timeout`` (2 s by default)
        bounds the wait for a slow engine.
        """
        if self._disabled or self._sync_mode or not self._send:
            return True
        return self._worker.flush_if_due(_seconds(timeout))

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """Deliver what is queued and stop. Idempotent; also run at interpreter exit.

        Delivery goes on while it makes progress, and stops after ``timeout`` (or
        ``shutdown_timeout``) seconds without any, or ``max_shutdown_time`` in all (at least
        ``timeout``). Operations never sent are then reported as dropped with reason
        ``"shutdown"``; a batch sent without an answer is reported as ``"unknown_fate"`` (the
        engine may have stored it), never as dropped.
        """
        budget = self._budget(timeout)
        if not self._begin_shutdown(budget):
            # A second call: it returns when the first is done, except on the thread running
            # the first (a SIGTERM handler calling shutdown() during shutdown or at exit) and
            # on the delivery thread (on_error), which the first is waiting for: there waiting
            # would never end, or hold up what the first is waiting to see delivered.
            if self._shutdown_thread != threading.get_ident() and not self._worker.on_own_thread():
                self._wait_for_shutdown()
            return
        if self._disabled:
            self._end_shutdown()
            return
        ended = False
        try:
            # On the delivery thread (on_error calling shutdown()), the thread itself goes on
            # until the deadline and ends the shutdown as it stops.
            ended = self._worker.finish_stop(then=self._end_shutdown)
        finally:
            if not ended and not self._worker.on_own_thread():
                self._end_shutdown()

    def _deliver_before_exit(self) -> bool:
        """Deliver what is queued within the shutdown budget without closing the client (a
        server ending the app's lifespan may be about to die by SIGTERM, with no exit hook;
        a test client may start the same app again). False, said on stderr, if some is left."""
        if self._closed or self._disabled or self._sync_mode or not self._send:
            return True
        budget = self._budget(None)
        started = progress_at = self._clock.now()
        left_before = self._worker.queued
        while True:
            left_time = budget.deadline(started, progress_at) - self._clock.now()
            if left_time <= 0:
                break
            if self.flush(min(left_time, 1.0)):
                return True
            queued = self._worker.queued
            if queued < left_before:
                left_before, progress_at = queued, self._clock.now()
        logger.error(
            "the server ended the app with %d operation(s) not delivered after %.1fs (%s); "
            "they are delivered at exit if the process exits normally, and lost if it is "
            "killed (spool_dir keeps them for the next start)",
            self._worker.queued,
            self._clock.now() - started,
            "no progress" if progress_at < self._clock.now() - budget.quiet else "time is up",
        )
        return False

    def _budget(self, timeout: Optional[float]) -> ShutdownBudget:
        quiet = self._shutdown_timeout if timeout is None else _seconds(timeout)
        return ShutdownBudget(quiet, max(quiet, self._max_shutdown_time))

    def _wait_for_shutdown(self) -> None:
        """Until the first shutdown() is done, or a moment past its deadline (which moves
        while delivery makes progress)."""
        while not self._shutdown_done.is_set():
            deadline = self._worker.deadline
            left = 0.0 if deadline is None else deadline - self._clock.now()
            if left < -2 or self._shutdown_done.wait(max(0.05, min(left + 2, 1.0))):
                return

    def _begin_shutdown(self, budget: ShutdownBudget) -> bool:
        """Start shutting down; False if it had already started."""
        if self._uwsgi is not None:
            self._uwsgi.check_fork(self)  # before the lock: the one copied may be held
        with self._shutdown_guard:
            if self._closed:
                return False
            self._closed = True
            self._shutdown_thread = threading.get_ident()
        _live_clients.discard(self)
        if not self._disabled:
            self._worker.begin_stop(budget)
        return True

    def _end_shutdown(self) -> None:
        try:
            self._transport.close()
        finally:
            if self._debug:
                self._debug = False
                debug_off()
            self._shutdown_done.set()

    async def aflush(self, timeout: Optional[float] = FLUSH_TIMEOUT) -> bool:
        """:meth:`flush` without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout)

    async def ashutdown(self, timeout: Optional[float] = None) -> None:
        """:meth:`shutdown` without blocking the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.shutdown, timeout)

    def stats(self) -> ClientStats:
        """Counters: accepted, queued, delivered, retried, failed, dropped (by reason), ...;
        each is described in :class:`ClientStats`."""
        if self._uwsgi is not None:
            self._uwsgi.check_fork(self)
        return self._stats.snapshot(accepted=self._worker.accepted, queued=self._worker.queued)

    def health(self, *, queue_threshold: float = QUEUE_THRESHOLD) -> Health:
        """Whether delivery works: ``ok``, ``degraded`` or ``failing``, with the reasons.

        Made from what the client already knows (the engine's last answers, the queue, the
        spool, the request budget): no request is sent, so a probe may ask often. Degraded
        includes the queue (or spool) above ``queue_threshold`` of its bound. README "Metrics
        and health" lists the reasons; the integrations have views that answer it as JSON.
        """
        return check_health(
            self._worker,
            closed=self._closed,
            disabled=self._disabled,
            queue_threshold=queue_threshold,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """``async with Client(...)``: :meth:`ashutdown` at the end, the loop not blocked."""
        await self.ashutdown()

    # --- internals ------------------------------------------------------------------------

    def _enqueue(self, op: Operation) -> None:
        hooks = self._hooks
        if hooks is not None:
            try:
                op = hooks.apply(op)
            except Dropped:
                self._stats.add_dropped("before_send")  # the app's choice: counted, not logged
                return
            except ValidationError as exc:
                self._invalid(exc, describe_operation(op))
                return
        uwsgi = self._uwsgi
        if uwsgi is not None:
            uwsgi.check_fork(self)
        if self._closed:
            self._drop("closed", op, "the client was shut down; call dropped")
        elif not self._send:
            self._stats.add_not_sent()
        elif self._sync_mode:
            self._worker.deliver_now(op)
        elif not self._worker.submit(op):
            wait = self.options.block_when_full
            if not (wait and self._worker.submit_waiting(op, wait)):
                self._queue_full(op)
        if uwsgi is not None and uwsgi.lending:
            self._worker.lend_if_due()  # threads that run only while a caller waits

    def _queue_full(self, op: Operation) -> None:
        dropped = self._stats.add_dropped("queue_full")
        options = self.options
        if options.block_when_full:
            hint = f"no room within block_when_full={options.block_when_full:g}s"
        else:
            hint = "pass block_when_full=SECONDS to wait for room instead"
        message = (
            f"queue is full (max_queue_size={options.max_queue_size:,}, "
            f"max_queue_bytes={options.max_queue_bytes:,}): call dropped, {dropped:,} so far; "
            f"{hint}"
        )
        self._warnings.warn("queue_full", "%s", message)
        self._call_on_error(DeliveryError(message, reason="queue_full"), describe_operation(op))

    def _drop(self, reason: str, op: Operation, message: str) -> None:
        self._stats.add_dropped(reason)
        self._warnings.warn(reason, "%s", message)
        self._call_on_error(DeliveryError(message, reason=reason), describe_operation(op))

    def _invalid(self, exc: ValidationError, call: dict[str, Any]) -> None:
        self._stats.add_dropped("invalid")
        if self._strict:
            raise exc
        self._warnings.warn(exc.reason, "invalid %s call dropped: %s", call.get("type"), exc)
        self._call_on_error(exc, call)

    def _report_delivery_failure(self, error: DeliveryError, ops: list[Reported]) -> None:
        """What the worker could not deliver (held weakly by the worker: see ``_weak_reporter``)."""
        if not ops:
            # A problem that concerns no operation in particular (the spool failing): the
            # worker logged it; on_error hears it once, with an empty operation.
            self._call_on_error(error, {})
            return
        self._warnings.warn(
            "delivery:" + error.reason,
            "%d operation(s) of unknown fate (%s): %s"
            if error.reason == "unknown_fate"
            else "%d operation(s) not delivered (%s): %s",
            len(ops),
            error.reason,
            error,
            level=logging.ERROR,
        )
        for op in ops:
            self._call_on_error(error, describe_reported(op))

    def _call_on_error(self, error: SankofaError, operation: dict[str, Any]) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(error, operation)
        except Exception:
            logger.exception("the on_error callback raised")

    def _new_shutdown_state(self) -> None:
        self._shutdown_guard = threading.Lock()
        self._shutdown_done = threading.Event()
        self._shutdown_thread = 0  # threading.get_ident() of the one running it

    def _after_fork_in_child(self) -> None:
        if self._uwsgi is not None:
            self._uwsgi = self._uwsgi.after_fork()
        self._stats.reset()
        self._transport.reset_after_fork()
        self._worker.reset_after_fork()
        # The parent's threads may have held these at the fork; the child starts fresh.
        self._new_shutdown_state()
        if self._closed:
            self._shutdown_done.set()
        else:
            _finalize_in_multiprocessing_child(self)


def _refusal(exc: Exception) -> ValidationError:
    """The ``ValidationError`` a call is refused with.

    The public calls catch every exception around their checks (free while nothing is raised,
    unlike a check per value): a mapping whose ``__getitem__`` raises, an ``int`` subclass whose
    ``__str__`` raises, a ``tzinfo`` that raises. Such a call is refused like an invalid one,
    its cause chained, so it never raises into the app (except with ``strict=True``).
    """
    if isinstance(exc, ValidationError):
        return exc
    try:
        what = repr(exc)
    except Exception:
        what = type(exc).__name__
    error = ValidationError(f"an argument could not be read: {what}", reason="unreadable_argument")
    error.__cause__ = exc  # as `raise error from exc` would
    return error


_TRANSPORT_CALLS = ("send", "abort", "close", "reset_after_fork")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
MANY_CLIENTS = 10
"""Live clients in one process past which a warning names the usual cause."""
_many_clients_said = False


def _disabled_by_environment() -> bool:
    """``SANKOFA_DISABLED``: 1/true/yes/on disables every client; 0/false/no/off or unset
    does not; anything else is refused, so a typo does not send from a test suite."""
    value = os.environ.get("SANKOFA_DISABLED", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"SANKOFA_DISABLED={os.environ['SANKOFA_DISABLED']!r} is not understood: "
        "use 1 (disable every client) or 0"
    )


def _warn_if_many_clients() -> None:
    """Once per process, when the live clients reach ``MANY_CLIENTS``: each holds threads,
    connections and a queue, and the usual cause is one client per request, job or notebook
    cell run."""
    global _many_clients_said
    if _many_clients_said or len(_live_clients) < MANY_CLIENTS:
        return
    alive = sum(1 for client in list(_live_clients) if not client._disabled)
    if alive < MANY_CLIENTS:
        return
    _many_clients_said = True
    logger.warning(
        "%d sankofa_sdk clients are alive in this process; each has its own threads, "
        "connections and queue. A client per request or job (or a notebook cell run again) "
        "is the usual cause: make one client at startup and share it (or init() once and use "
        "the module's functions), or call shutdown() on each when done",
        alive,
    )


def _weak_reporter(client: Client) -> Callable[[DeliveryError, list[Reported]], None]:
    """The worker's way to report to ``client`` without keeping it alive: a client dropped
    without shutdown() is freed, and what its thread reports afterwards is logged."""
    method = weakref.WeakMethod(client._report_delivery_failure)

    def report(error: DeliveryError, ops: list[Reported]) -> None:
        alive = method()
        if alive is not None:
            alive(error, ops)
        elif ops:
            logger.error(
                "%d operation(s) of a client dropped without shutdown() not delivered (%s): %s",
                len(ops),
                error.reason,
                error,
            )

    return report


def _register_at_fork(client: Client) -> None:
    # Through a weak reference, so the hook does not keep a discarded client alive.
    ref = weakref.ref(client)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive._after_fork_in_child()

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_in_child)


_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()
"""Clients not shut down yet, held weakly: a client dropped without shutdown() can be freed."""
_exit_hook_lock = threading.Lock()
_exit_hook_registered = False


def _shutdown_all_at_exit() -> None:
    """At interpreter exit: stop every live client against one deadline, not one after another.

    Each client gets its own shutdown budget from the same start, so N clients exit within the
    longest of them (plus a moment to cut requests still in flight), not their sum.
    """
    clients = [client for client in list(_live_clients) if not client._closed]
    started: list[Client] = []
    for client in clients:
        try:
            if client._begin_shutdown(client._budget(None)):
                started.append(client)
        except Exception:
            logger.exception("error while shutting down at exit")
    # Workers stopping with nobody waiting for them (a client dropped without shutdown(), or
    # shutdown() from on_error): waited for, cut and reported like the rest.
    with _UNATTENDED_LOCK:
        unattended = list(UNATTENDED)
    workers = [client._worker for client in started if not client._disabled] + unattended
    # Every thread sends until its own deadline, all at the same time; then whatever is still
    # in flight is cut, all at once, and one short grace lets the threads see the cut.
    for worker in workers:
        worker.join_until_deadline()
    if any([worker.cut() for worker in workers]):
        graces = [worker.clock_now() + CUT_GRACE for worker in workers]
        for worker, grace in zip(workers, graces, strict=True):
            worker.join_until(grace)
    for worker in unattended:
        try:
            worker.report_leftovers()
            worker.end_unattended()
        except Exception:
            logger.exception("error while shutting down at exit")
    for client in started:
        try:
            if not client._disabled:
                client._worker.report_leftovers()
        except Exception:
            logger.exception("error while shutting down at exit")
        finally:
            client._end_shutdown()


def _finalize_in_multiprocessing_child(client: Client) -> None:
    """A multiprocessing child ends with os._exit, running no atexit hook, but it does run
    multiprocessing's own finalizers: shut the client down from there (held weakly)."""
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    ref = weakref.ref(client)

    def finalize() -> None:
        alive = ref()
        if alive is not None:
            alive.shutdown()

    mp_util.Finalize(None, finalize, exitpriority=10)


def _on_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _seconds(value: float) -> float:
    """A timeout argument as seconds that threading accepts (no overflow for 1e10 or inf; NaN
    and negatives are 0). Anything but a number is refused with the argument named."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {value!r}")
    return min(max(0.0, float(value)), threading.TIMEOUT_MAX / 2)


def _register_exit_hook() -> None:
    global _exit_hook_registered
    with _exit_hook_lock:
        if not _exit_hook_registered:
            atexit.register(_shutdown_all_at_exit)
            _exit_hook_registered = True
