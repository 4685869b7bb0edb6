"""sankofa_sdk: the Python analytics SDK for the Sankofa engine."""

from __future__ import annotations

from ._errors import ConfigurationError, DeliveryError, SankofaError, ValidationError
from ._version import __version__

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "SankofaError",
    "ValidationError",
    "__version__",
]
