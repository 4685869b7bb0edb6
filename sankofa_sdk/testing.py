"""Test helpers for apps that use sankofa_sdk (and for the SDK's own tests).

``RecordingTransport`` sends nothing: it records every batch the client sends and answers from a
script, so a test can check what the app tracked, or how delivery behaves through an outage,
without a server, a socket or ``responses``::

    from sankofa_sdk import Client
    from sankofa_sdk.testing import RecordingTransport, Reply

    transport = RecordingTransport(Reply(503), Reply(503))  # then 200 for everything after
    client = Client("sk_test", transport=transport, backoff_base=0.01)
    client.track("Signed In", distinct_id="user_42")
    assert client.flush(5)
    assert [op["payload"]["event_name"] for op in transport.applied_operations()] == ["Signed In"]
    assert len(transport.requests) == 3  # two 503s, then the 200

For a test against something that answers like the engine over HTTP, use the bundled reference
server (``sankofa_sdk.server``, or the pytest plugin's ``sankofa_server`` fixture).

``set_host_guard(guard)`` keeps a test run's data in: each client made afterwards with the HTTP
transport asks ``guard(host)`` whether it may send there, and sends nothing when told no (as with
``send=False``). The pytest plugin sets one for each run (clients aimed at another machine than
this one send nothing); another test runner can do the same::

    previous = set_host_guard(lambda host: host.startswith("http://127.0.0.1:"))
    try:
        run_the_tests()
    finally:
        set_host_guard(previous)
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Union

from ._answers import Answer
from ._host_guard import HostGuard, set_host_guard
from ._retry import Failure

__all__ = ["HostGuard", "RecordedRequest", "RecordingTransport", "Reply", "set_host_guard"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``status=None`` is no answer at all: the connection was reset
    (``applied=False``), or the engine applied the batch and the answer was lost on the way
    back (``applied=True``, what makes a resend apply it twice on an engine that does not
    deduplicate)."""

    status: Optional[int] = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    applied: Optional[bool] = None
    """Whether the engine applied the batch; by default only for a 2xx."""
    connected: bool = True
    """False: no connection was made (refused), so the batch surely never reached the engine."""

    def __post_init__(self) -> None:
        if self.status is not None and not (100 <= self.status <= 599):
            raise ValueError(f"status must be an HTTP status (100-599) or None, not {self.status}")

    @classmethod
    def lost(cls) -> Reply:
        """Applied by the engine; the answer never came back."""
        return cls(None, applied=True)

    @classmethod
    def reset(cls) -> Reply:
        """The connection broke before the engine read the batch."""
        return cls(None, applied=False)

    @classmethod
    def refused(cls) -> Reply:
        """No connection: refused before anything was sent (an engine that is down)."""
        return cls(None, applied=False, connected=False)

    @property
    def was_applied(self) -> bool:
        if self.applied is not None:
            return self.applied
        return self.status is not None and 200 <= self.status < 300


class RecordedRequest(NamedTuple):
    key: str
    """The request's Idempotency-Key (the same on every retry of a batch)."""
    body: bytes
    """The JSON body, decompressed if it was sent gzipped."""
    gzipped: bool
    reply: Reply

    @property
    def operations(self) -> list[dict[str, Any]]:
        return list(json.loads(self.body)["operations"])


class RecordingTransport:
    """A transport for ``Client(transport=...)``: records each request and answers from
    ``script``, in order, then ``then`` for every request after it. An ``int`` in either
    stands for ``Reply(status)``.

    ``hold()`` makes the next request wait until ``release()`` (a delivery thread that is
    busy, for tests of what a shutdown reports); a shutdown's cut ends the wait as a timeout.
    """

    url = "recording://sankofa/api/v1/batch"

    def __init__(self, *script: Union[Reply, int], then: Union[Reply, int] = 200) -> None:
        self._script = [_reply(item) for item in script]
        self._then = _reply(then)
        self._lock = threading.Condition()
        self._open = threading.Event()
        self._open.set()
        self._aborted = threading.Event()
        self.requests: list[RecordedRequest] = []
        """Every request, in the order sent."""
        self.closed = False

    def __repr__(self) -> str:
        return f"<RecordingTransport {len(self.requests)} request(s)>"

    # --- what a test reads ----------------------------------------------------------------

    def sent_operations(self) -> list[dict[str, Any]]:
        """Every operation of every request, resends included."""
        return [op for request in list(self.requests) for op in request.operations]

    def applied_operations(self) -> list[dict[str, Any]]:
        """The operations an engine that does not deduplicate would have stored."""
        return [
            op
            for request in list(self.requests)
            if request.reply.was_applied
            for op in request.operations
        ]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` requests were sent (no sleeping in tests)."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= count, timeout)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    # --- the transport's side (``_delivery.transport.Transport``) -------------------------

    def send(
        self, data: bytes, gzipped: bool, idempotency_key: str, time_left: Optional[float] = None
    ) -> Answer:
        self._aborted.clear()
        with self._lock:
            reply = self._script.pop(0) if self._script else self._then
            body = gzip.decompress(data) if gzipped else data
            self.requests.append(RecordedRequest(idempotency_key, body, gzipped, reply))
            self._lock.notify_all()
        while not self._open.wait(0.05):
            if self._aborted.is_set():
                return Answer(None, {}, b"", Failure.TIMEOUT, "cut while held")
        if reply.status is None:
            if not reply.connected:
                said = "connection refused (scripted)"
                return Answer(None, {}, b"", Failure.RESET, said, reached=False)
            return Answer(None, {}, b"", Failure.RESET, "no answer (scripted)")
        detail = reply.body[:200].decode("utf-8", "replace") or "scripted answer"
        return Answer(reply.status, dict(reply.headers), reply.body, None, detail)

    def abort(self) -> None:
        self._aborted.set()

    def close(self) -> None:
        self.closed = True

    def reset_after_fork(self) -> None:
        self._lock = threading.Condition()
        self._aborted = threading.Event()


def _reply(item: Union[Reply, int]) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, int) and not isinstance(item, bool):
        return Reply(item)
    raise TypeError(f"a scripted answer is a Reply or an HTTP status, not {item!r}")
