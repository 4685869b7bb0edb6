"""Headless Chromium for the console's tests and its screenshots, driven by Playwright offline.

The system's Chromium (Debian's ``chromium`` package) is used, never a browser Playwright would
download; each launch gets a fresh profile and no background traffic.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Optional

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


@contextmanager
def image_server(render: Callable[[str], bytes]) -> Iterator[str]:
    """Serve SVG images made by ``render(path)`` on 127.0.0.1; yields the base URL.

    Avatars live on other origins; this one is local, so the tests stay offline.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/svg+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as images:
        threading.Thread(target=images.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{images.server_address[1]}"
        finally:
            images.shutdown()
