"""sankofa_sdk: the Python analytics SDK for the Sankofa engine.

>>> import sankofa_sdk
>>> sankofa_sdk.init(api_key="sk_live_…", host="https://api.sankofa.dev")
>>> sankofa_sdk.identify("user_42", {"email": "ada@example.com"})
>>> sankofa_sdk.track("Signed In")

Or hold a :class:`Client` yourself. Errors are in one tree: :class:`SankofaError` >
:class:`ValidationError` (also a ``ValueError``), :class:`ConfigurationError`,
:class:`DeliveryError`. The bundled reference server is :mod:`sankofa_sdk.server`.
"""

from __future__ import annotations

from ._client import Client, ErrorHandler
from ._default import (
    alias,
    context,
    flush,
    flush_if_due,
    get_client,
    identify,
    init,
    people_set,
    people_unset,
    reset,
    shutdown,
    track,
)
from ._errors import ConfigurationError, DeliveryError, SankofaError, ValidationError
from ._health import Health, HealthIssue, HealthStatus
from ._identity import Identity
from ._stats import ClientStats
from ._version import __version__

__all__ = [
    "Client",
    "ClientStats",
    "ConfigurationError",
    "DeliveryError",
    "ErrorHandler",
    "Health",
    "HealthIssue",
    "HealthStatus",
    "Identity",
    "SankofaError",
    "ValidationError",
    "__version__",
    "alias",
    "context",
    "flush",
    "flush_if_due",
    "get_client",
    "identify",
    "init",
    "people_set",
    "people_unset",
    "reset",
    "shutdown",
    "track",
]
