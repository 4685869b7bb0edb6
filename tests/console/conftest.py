"""Fixtures for the console's tests: a server, and requests that carry the console's token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import urlencode

import pytest

from sankofa_sdk.server import ReferenceServer

from ..server.conftest import Reply, request


def token(server: ReferenceServer) -> str:
    return server.console_url.rsplit("token=", 1)[1]


def console(
    server: ReferenceServer,
    route: str,
    params: Optional[dict[str, Any]] = None,
    *,
    method: str = "GET",
    headers: Optional[dict[str, Optional[str]]] = None,
) -> Reply:
    """A console data route with the token as a bearer (as a script would call it)."""
    sent: dict[str, Optional[str]] = {"Authorization": f"Bearer {token(server)}"}
    sent.update(headers or {})
    query = {"project": server.project_id, "env": "live", **(params or {})}
    return request(server, method, f"/console/api/{route}?{urlencode(query)}", b"", sent)


@pytest.fixture
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(rate_limit=None) as srv:
        yield srv
