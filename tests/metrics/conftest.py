"""Fixtures for the metrics and health tests.

The metrics integrations need their optional extras (``opentelemetry``, ``prometheus``, and the
OpenTelemetry SDK from ``test``). Where one is missing these tests skip, saying why, except in
CI (``CI=true``, or ``SANKOFA_REQUIRE_EXTRAS=1``), where ``.ci/run`` installs them and a missing
one must fail the run instead of hiding it.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def extras_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or bool(
        os.environ.get("SANKOFA_REQUIRE_EXTRAS")
    )


def need(module: str) -> ModuleType:
    """``module``, imported; a skip where it is missing, an error in CI."""
    if extras_required():
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed (an optional extra)")
