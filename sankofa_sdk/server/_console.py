"""The console's front door: its token, the page and its assets, security headers, and the
hand-off of ``/console/api/...`` to :mod:`._console_api`.

It is opened the way Jupyter is: the URL printed at start-up carries a secret token, which the
page trades for a cookie (HttpOnly, SameSite=Strict, named after the token so two servers on
one host keep theirs apart) before dropping it from the address bar. Without the token or the
cookie every console route answers 401. Ingestion routes never come here.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from importlib import resources
from typing import Optional
from urllib.parse import parse_qs

from ._app import Request
from ._console_api import ConsoleApi, json_response
from ._responses import Response

PAGE = "/"
ASSETS = "/console/assets/"
API = "/console/api/"
CSRF_HEADER = "X-Sankofa-Console"
"""Required on every change: a page on another site cannot send it without a CORS preflight,
which the console never approves."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' http: https:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HTML = _TYPES[".html"]
_NEEDS_TOKEN = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="color-scheme" content="light dark">
<title>Sankofa console: token needed</title></head>
<body><main><h1>This console needs its token</h1>
<p>Open the console URL that <code>sankofa-server</code> printed when it started
(<code>console: http://127.0.0.1:8080/?token=...</code>), or <code>ReferenceServer.console_url</code>
in Python. A token from an earlier run of the server does not open this one.</p></main></body></html>
"""


def load_assets() -> dict[str, tuple[bytes, str]]:
    """The files of the package's ``console`` folder by name, with their content types."""
    folder = resources.files(__package__).joinpath("console")
    assets = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            assets[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return assets


class Console:
    """Answers the console's routes; ``None`` for every other route (see ``App.console``)."""

    def __init__(self, api: ConsoleApi, token: str) -> None:
        self.api = api
        self._token = token.encode()
        digest = hashlib.sha256(self._token).hexdigest()[:12]
        self.cookie_name = f"sankofa_console_{digest}"
        self._assets: Optional[dict[str, tuple[bytes, str]]] = None
        self._assets_lock = threading.Lock()

    def __call__(self, request: Request, route: str) -> Optional[Response]:
        if route == PAGE and request.method in ("GET", "HEAD"):
            return self._page(request)
        if not route.startswith("/console/"):
            return None
        if not self._authorized(request):
            if route.startswith(API):
                return _secure(json_response({"error": "console token required"}, 401))
            return _secure(Response(401, _NEEDS_TOKEN, _HTML))
        if route.startswith(ASSETS) and request.method in ("GET", "HEAD"):
            found = self._asset(route[len(ASSETS) :])
            if found is not None:
                return _secure(Response(200, *found))
        if route.startswith(API):
            return _secure(self._api(request, route[len(API) :]))
        return _secure(json_response({"error": "not found"}, 404))

    # --- authentication ---------------------------------------------------------------------

    def _valid(self, candidate: Optional[str]) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    def _authorized(self, request: Request) -> bool:
        authorization = request.headers.get("Authorization") or ""
        if authorization.startswith("Bearer ") and self._valid(authorization[7:]):
            return True
        return self._valid(self._cookie(request))

    def _cookie(self, request: Request) -> Optional[str]:
        for part in (request.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie_name:
                return value
        return None

    def _page(self, request: Request) -> Response:
        query = parse_qs(request.target.partition("?")[2])
        if "token" in query:
            if not self._valid(query["token"][-1]):
                return _secure(Response(401, _NEEDS_TOKEN, _HTML))
            # Trade the token for a cookie and drop it from the address bar and history.
            cookie = f"{self.cookie_name}={self._token.decode()}; Path=/; HttpOnly; SameSite=Strict"
            return _secure(Response(303, b"", "", (("Location", PAGE), ("Set-Cookie", cookie))))
        if not self._authorized(request):
            return _secure(Response(401, _NEEDS_TOKEN, _HTML))
        found = self._asset("index.html")
        assert found is not None, "the console's index.html is missing from the package"
        return _secure(Response(200, *found))

    # --- content ---------------------------------------------------------------------------

    def _asset(self, name: str) -> Optional[tuple[bytes, str]]:
        with self._assets_lock:
            if self._assets is None:
                self._assets = load_assets()
            return self._assets.get(name)

    def _api(self, request: Request, name: str) -> Response:
        if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
            return json_response({"error": f"changes need the {CSRF_HEADER} header"}, 403)
        query = {
            key: values[-1]
            for key, values in parse_qs(
                request.target.partition("?")[2], keep_blank_values=True
            ).items()
        }
        method = "GET" if request.method == "HEAD" else request.method
        return self.api.handle(method, name.rstrip("/"), query)


def _secure(response: Response) -> Response:
    return response._replace(headers=response.headers + SECURITY_HEADERS)
