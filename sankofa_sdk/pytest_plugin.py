"""pytest fixtures for testing an app against the bundled reference server.

Registered through the ``pytest11`` entry point, so installing ``sankofa-sdk`` is enough::

    def test_signup(sankofa_client, sankofa_server):
        sankofa_client.identify("user_42", {"plan": "pro"})
        sankofa_client.flush()
        assert sankofa_server.wait_until_applied()
        assert sankofa_server.get_person("user_42")["traits"]["plan"] == "pro"

An app that uses the module-level functions (``sankofa_sdk.track(...)``) asks for
``sankofa_module`` instead. The client and the server are imported inside the fixtures: pytest
loads this plugin in every test run of every project that installs the SDK, and most never use it.

The server answers a repeated ``Idempotency-Key`` with its first answer (decision D4, an
extension; the engine ignores the header). To test against the engine's behaviour, where a
resent batch is applied again, set the ini option ``sankofa_deduplicate = false`` (or run
``pytest -o sankofa_deduplicate=false``): the session's server is then made with
``deduplicate=False``, and ``sankofa_server.stats()["repeated_keys"]`` counts the resends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._client import Client
    from .server import ReferenceServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "sankofa_deduplicate",
        "false: the sankofa_server fixture applies a repeated Idempotency-Key again, as the "
        "engine does (default true: it answers the repeat from memory)",
        type="bool",
        default=True,
    )


@pytest.fixture(scope="session")
def sankofa_session_server(pytestconfig: pytest.Config) -> Iterator[ReferenceServer]:
    """One reference server for the whole test session (started when a test first needs it):
    127.0.0.1, an in-memory store, no rate limit, and ``Idempotency-Key`` deduplication unless
    the ini option ``sankofa_deduplicate`` is false. Tests ask for ``sankofa_server``."""
    from .server import ReferenceServer

    deduplicate = bool(pytestconfig.getini("sankofa_deduplicate"))
    with ReferenceServer(rate_limit=None, deduplicate=deduplicate) as server:
        yield server


@pytest.fixture
def sankofa_server(sankofa_session_server: ReferenceServer) -> ReferenceServer:
    """The session's reference server, cleared for this test: no people, events, requests,
    faults or rate-limit windows from earlier tests (projects added by a test stay)."""
    sankofa_session_server.clear()
    return sankofa_session_server


def _client_for(server: ReferenceServer) -> Client:
    from ._client import Client

    # Quick retries: tests ride out injected faults in well under a second.
    return Client(
        server.api_key,
        server.url,
        flush_interval=0.05,
        backoff_base=0.02,
        backoff_max=0.25,
        timeout=5.0,
    )


def _close(client: Client) -> None:
    client.flush(timeout=10)
    client.shutdown(timeout=10)


@pytest.fixture
def sankofa_client(sankofa_server: ReferenceServer) -> Iterator[Client]:
    """A client wired to ``sankofa_server``, flushed and shut down after the test.

    It retries quickly (tests ride out injected faults in well under a second).
    """
    client = _client_for(sankofa_server)
    try:
        yield client
    finally:
        _close(client)


@pytest.fixture
def sankofa_module(
    sankofa_server: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Client]:
    """The module-level API (``sankofa_sdk.track(...)``) pointed at ``sankofa_server``.

    The default client becomes a client wired to the server (the one yielded), and
    ``SANKOFA_API_KEY`` / ``SANKOFA_HOST`` name the server, so an app that calls
    ``sankofa_sdk.init()`` without arguments during the test reaches it too. Afterwards every
    client made default during the test is flushed and shut down, and the default client from
    before the test is back, untouched.

    >>> def test_checkout(sankofa_module, sankofa_server):
    ...     myapp.checkout(cart)                       # calls sankofa_sdk.track(...)
    ...     assert sankofa_module.flush()              # or sankofa_sdk.flush()
    ...     assert sankofa_server.wait_until_applied()
    """
    from . import _default

    monkeypatch.setenv("SANKOFA_API_KEY", sankofa_server.api_key)
    monkeypatch.setenv("SANKOFA_HOST", sankofa_server.url)
    client = _client_for(sankofa_server)
    with _default._lock:
        previous, _default._default = _default._default, client
    try:
        yield client
    finally:
        with _default._lock:
            current, _default._default = _default._default, previous
        _close(client)
        if current is not None and current is not client and current is not previous:
            _close(current)  # made by sankofa_sdk.init() in the test (which shut ours down)
