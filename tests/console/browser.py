"""Headless Chromium for the console's tests and its screenshots, driven by Playwright offline.

The system's Chromium (Debian's ``chromium`` package) is used, never a browser Playwright would
download; each launch gets a fresh profile and no background traffic.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> Optional[str]:
    return os.environ.get("SANKOFA_CHROMIUM") or shutil.which("chromium")


def missing() -> Optional[str]:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "Chromium is not installed (apt-get install chromium, or set SANKOFA_CHROMIUM)"
    return None


def launch(playwright: Playwright) -> Browser:
    # Playwright gives each launch a new temporary profile (user data dir) of its own.
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
    )
