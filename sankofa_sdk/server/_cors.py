"""The engine's two CORS layers (``cmd/sankofa/main.go``), as Fiber v2.52.11's middleware runs them.

* Ingest layer, on every ``/api/v1`` path before the rate limiter: any origin (``*``), the
  engine's method and header lists, preflights answered with 204. With all origins allowed,
  Fiber adds ``Vary`` only to preflights and to ``OPTIONS`` requests that are not preflights.
* Dashboard layer, on the other ``/api`` paths (after the limiter on ``/api/v1``), except the
  paths the engine exempts (the ingestion verbs, shared replays, replays): only the configured
  origins (the engine's default ``http://localhost:3000``), with credentials, any header
  (``*``). Not allowing every origin, it adds ``Vary: Origin`` to every answer.
* Nothing outside ``/api``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

from ._responses import Response

DASHBOARD_ORIGINS = ("http://localhost:3000",)
"""The engine's ``CORS_ALLOWED_ORIGINS`` default."""

METHODS = "GET,POST,PUT,DELETE,PATCH,OPTIONS"
INGEST_HEADERS = (
    "Origin,Content-Type,Accept,Authorization,authorization,x-api-key,x-project-id,"
    "x-org-id,X-Session-Id,X-Chunk-Index,X-Distinct-Id,X-Replay-Mode"
)
EXEMPT = (
    "/api/v1/batch",
    "/api/v1/track",
    "/api/v1/people",
    "/api/v1/alias",
    "/api/v1/shared-replay",
    "/api/replay",
    "/api/ee/replay",
)
"""Paths the engine's ``/api`` middleware lets through without the dashboard layer (matched on
the path as sent, case-sensitively, like its ``strings.HasPrefix``)."""

_PREFLIGHT_VARY = ("Access-Control-Request-Method", "Access-Control-Request-Headers", "Origin")

HeaderLookup = Callable[[str], Optional[str]]


class Headers:
    """Response headers set the way Fiber's ``c.Set`` and ``c.Vary`` (``c.Append``) set them."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    def set(self, name: str, value: str) -> None:
        self._values[name] = value

    def vary(self, *fields: str) -> None:
        current = self._values.get("Vary", "")
        for field in fields:
            if not current:
                current = field
            elif not (
                current == field
                or current.startswith(field + ",")
                or current.endswith(" " + field)
                or " " + field + "," in current
            ):
                current += ", " + field
        if current:
            self._values["Vary"] = current

    def items(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._values.items())


class Layer(NamedTuple):
    all_origins: bool
    origins: tuple[str, ...]
    credentials: bool
    allow_headers: str


INGEST = Layer(True, (), False, INGEST_HEADERS)
DASHBOARD = Layer(False, DASHBOARD_ORIGINS, True, "*")


def layers(path: str, route: str) -> tuple[Optional[Layer], Optional[Layer]]:
    """(the layer before the limiter, the layer after it) for a request path.

    ``route`` is the path lower-cased without a trailing slash (Fiber's prefix match ignores
    case); ``path`` is as sent.
    """
    in_v1 = route == "/api/v1" or route.startswith("/api/v1/")
    in_api = route == "/api" or route.startswith("/api/")
    dashboard = in_api and not path.startswith(EXEMPT)
    return (INGEST if in_v1 else None), (DASHBOARD if dashboard else None)


def apply(layer: Layer, method: str, header: HeaderLookup, out: Headers) -> Optional[Response]:
    """Run one layer: add its headers to ``out``; a preflight's 204 when it answers it."""
    origin = (header("Origin") or "").lower()
    if not origin or (method == "OPTIONS" and not header("Access-Control-Request-Method")):
        if not layer.all_origins or origin:
            out.vary("Origin")
        return None
    allowed = "*" if layer.all_origins else (origin if origin in layer.origins else "")
    if method != "OPTIONS":
        if not layer.all_origins:
            out.vary("Origin")
        _allow(layer, allowed, out)
        return None
    out.vary(*_PREFLIGHT_VARY)
    _allow(layer, allowed, out)
    out.set("Access-Control-Allow-Methods", METHODS)
    out.set("Access-Control-Allow-Headers", layer.allow_headers)
    return Response(204, b"", "", out.items())


def _allow(layer: Layer, allowed: str, out: Headers) -> None:
    if not allowed:
        return
    out.set("Access-Control-Allow-Origin", allowed)
    if layer.credentials and allowed != "*":
        out.set("Access-Control-Allow-Credentials", "true")
