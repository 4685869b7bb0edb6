"""The exceptions of sankofa_sdk.

    SankofaError
     ├── ValidationError (also a ValueError)   an invalid call, caught before it is queued
     ├── ConfigurationError (also a ValueError) invalid options given to Client()/init()
     └── DeliveryError                         accepted operations the engine did not take

``ValidationError`` is raised at the call site only with ``strict=True``; otherwise it is logged,
counted in ``stats()`` and passed to ``on_error``. ``DeliveryError`` is never raised into app
code: the background thread hands it to ``on_error`` together with the operations concerned.
"""

from __future__ import annotations

from typing import Optional


class SankofaError(Exception):
    """Base class of every error this SDK raises or reports."""


class ValidationError(SankofaError, ValueError):
    """A call was invalid and nothing was queued for it.

    ``reason`` is a short machine-readable code such as ``"invalid_distinct_id"`` or
    ``"garbage_distinct_id"``; the message says what was wrong in words.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class ConfigurationError(SankofaError, ValueError):
    """Options passed to ``Client()`` or ``init()`` cannot work."""


class DeliveryError(SankofaError):
    """Operations were accepted but not delivered.

    ``reason`` is one of the drop reasons counted in ``Client.stats()`` (for example
    ``"rejected"``, ``"unauthorized"``, ``"retries_exhausted"``), or ``"unknown_fate"`` for
    operations sent without an answer before shutdown (counted apart: they may be stored);
    ``status`` the HTTP status of the last answer when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.idempotency_key = idempotency_key
        """For ``reason == "unknown_fate"``: the ``Idempotency-Key`` the batch was sent with.
        Its operations were sent but never answered, so the engine may have stored them; a
        replay under the same key can be recognised (the reference server applies a key once;
        the engine ignores it, and events carry ``$insert_id``)."""
