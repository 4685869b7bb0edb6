"""The seam between the delivery pipeline and the network: what the worker needs of a transport.

``_transport.HttpTransport`` is the real one (``requests``'s adapter, a wall-clock cut-off, a
bounded read of the answer); ``sankofa_sdk.testing.RecordingTransport`` answers from a script,
for tests that are about delivery rather than HTTP.
"""

from __future__ import annotations

from typing import Optional, Protocol

from .._answers import Answer


class Transport(Protocol):
    """Sends one batch body at a time. ``send`` never raises: every outcome is an ``Answer``."""

    @property
    def url(self) -> str: ...

    def send(
        self, data: bytes, gzipped: bool, idempotency_key: str, time_left: Optional[float] = None
    ) -> Answer:
        """POST ``data`` once; ``time_left`` (seconds, None: no deadline) caps the timeout."""
        ...

    def abort(self) -> None:
        """End the request in progress now, from any thread (it answers a TIMEOUT failure)."""
        ...

    def close(self) -> None: ...

    def reset_after_fork(self) -> None:
        """In a forked child: no connection shared with the parent."""
        ...
