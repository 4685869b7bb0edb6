"""pytest fixtures for testing an app against the bundled reference server.

Registered through the ``pytest11`` entry point, so installing ``sankofa-sdk`` is enough::

    def test_signup(sankofa_client, sankofa_server):
        sankofa_client.identify("user_42", {"plan": "pro"})
        sankofa_client.flush()
        assert sankofa_server.wait_until_applied()
        assert sankofa_server.get_person("user_42")["traits"]["plan"] == "pro"
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._client import Client
from .server import ReferenceServer


@pytest.fixture
def sankofa_server() -> Iterator[ReferenceServer]:
    """A reference server on 127.0.0.1 with an in-memory store and no rate limit."""
    with ReferenceServer(rate_limit=None) as server:
        yield server


@pytest.fixture
def sankofa_client(sankofa_server: ReferenceServer) -> Iterator[Client]:
    """A client wired to ``sankofa_server``, flushed and shut down after the test.

    It retries quickly (tests ride out injected faults in well under a second).
    """
    client = Client(
        sankofa_server.api_key,
        sankofa_server.url,
        flush_interval=0.05,
        backoff_base=0.02,
        backoff_max=0.25,
        timeout=5.0,
    )
    try:
        yield client
    finally:
        client.flush(timeout=10)
        client.shutdown(timeout=10)
