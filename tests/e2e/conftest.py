"""End-to-end fixtures: the client against the bundled reference server on 127.0.0.1.

Clients here use short backoff and timeouts so that outages of a second or two are ridden out
in a test's time; nothing sleeps to wait for a thread (flush() and wait_until_applied() do).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from sankofa_sdk import Client
from sankofa_sdk.server import ReferenceServer

from .external_server import ExternalServer

FAST_RETRIES: dict[str, Any] = dict(
    flush_interval=0.05,
    backoff_base=0.02,
    backoff_max=0.25,
    max_retries=60,
    max_retry_time=60.0,
    timeout=2.0,
)


@pytest.fixture
def server() -> Iterator[ReferenceServer]:
    """A server of the test's own. Not the plugin's shared one: these tests break delivery on
    purpose, and a request a client gave up on at its shutdown may still be applied by the
    server after the test, into the next one's data."""
    with ReferenceServer(rate_limit=None) as srv:
        yield srv


@pytest.fixture
def e2e_client(server: ReferenceServer) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(
            options.pop("api_key", server.api_key), server.url, **{**FAST_RETRIES, **options}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=5)


@pytest.fixture
def external(tmp_path: Path) -> Iterator[Callable[..., ExternalServer]]:
    """Start ``python -m sankofa_sdk.server`` in its own process (stopped after the test)."""
    servers: list[ExternalServer] = []

    def start(*args: str) -> ExternalServer:
        server = ExternalServer(tmp_path / f"server{len(servers)}.log", *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
