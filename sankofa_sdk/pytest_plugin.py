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

While the plugin is active (from before the first conftest is imported to the end of the run),
a client aimed at another machine than this one, such as an app's production settings would
make, accepts calls and sends nothing (as with ``send=False``); the first such client is logged,
and the run's summary says how many there were. ``--sankofa-allow-network`` lets a run send,
the ``sankofa_allow_network`` marker lets the clients made while one test runs send (its
fixtures' included). Clients on 127.0.0.1 or localhost, and clients with a ``transport`` of their
own, are not concerned. The plugin does this through ``sankofa_sdk.testing.set_host_guard``,
and puts back at the end of the run whatever guard was there before.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

import pytest

from ._host_guard import HostGuard, set_host_guard
from ._log import logger
from ._options import is_loopback_host

if TYPE_CHECKING:
    from ._client import Client
    from .server import ReferenceServer

ALLOW_NETWORK = "sankofa_allow_network"
"""The marker, and the command-line flag's dest (``--sankofa-allow-network``)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "sankofa_deduplicate",
        "false: the sankofa_server fixture applies a repeated Idempotency-Key again, as the "
        "engine does (default true: it answers the repeat from memory)",
        type="bool",
        default=True,
    )
    parser.getgroup("sankofa").addoption(
        "--sankofa-allow-network",
        action="store_true",
        default=False,
        dest=ALLOW_NETWORK,
        help="let sankofa_sdk clients send to other machines than this one (by default, a "
        "client aimed at one sends nothing while the tests run)",
    )


class RunHostGuard:
    """The run's host guard: may a client made now send to ``host``?

    Yes to this machine (loopback addresses, ``localhost``), and to any host when the run
    (``--sankofa-allow-network``) or the running test (the ``sankofa_allow_network`` marker)
    allows it. A refusal is logged the first time and counted for the run's summary.
    """

    def __init__(self, allow_all: bool) -> None:
        self.allow_all = allow_all
        self.allow_test = False
        self.refused: dict[str, int] = {}

    def __call__(self, host: str) -> bool:
        if self.allow_all or self.allow_test or _on_this_machine(host):
            return True
        if not self.refused:
            logger.warning(
                "a client aimed at %s was made while the tests run: it sends nothing (the "
                "sankofa pytest plugin keeps test data on this machine). To let it send, "
                "run pytest with --sankofa-allow-network or mark the test with "
                "@pytest.mark.sankofa_allow_network",
                host,
            )
        self.refused[host] = self.refused.get(host, 0) + 1
        return False


def _on_this_machine(host: str) -> bool:
    hostname = urlsplit(host).hostname or ""
    return is_loopback_host(hostname) or hostname.endswith(".localhost")


_GUARD = pytest.StashKey[RunHostGuard]()
_GUARD_BEFORE = pytest.StashKey[Optional[HostGuard]]()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    # Before the first conftest is imported: an app it imports may make its client there.
    allow = bool(getattr(early_config.known_args_namespace, ALLOW_NETWORK, False))
    _set_guard(early_config, allow)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{ALLOW_NETWORK}: sankofa_sdk clients made while this test runs may send to other "
        "machines than this one",
    )
    # Not set yet when the plugin was loaded late (``-p`` from a conftest, ``pytest_plugins``).
    _set_guard(config, bool(config.getoption(ALLOW_NETWORK)))


def _set_guard(config: pytest.Config, allow: bool) -> None:
    if _GUARD not in config.stash:
        guard = RunHostGuard(allow)
        config.stash[_GUARD] = guard
        config.stash[_GUARD_BEFORE] = set_host_guard(guard)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _GUARD in config.stash:
        set_host_guard(config.stash[_GUARD_BEFORE])
        del config.stash[_GUARD]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: Optional[pytest.Item]
) -> Generator[None, Any, None]:
    guard = item.config.stash.get(_GUARD, None)
    if guard is not None:
        guard.allow_test = item.get_closest_marker(ALLOW_NETWORK) is not None
    try:
        yield
    finally:
        if guard is not None:
            guard.allow_test = False


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    guard = config.stash.get(_GUARD, None)
    if guard is None or not guard.refused:
        return
    hosts = ", ".join(f"{host} ({count})" for host, count in sorted(guard.refused.items()))
    terminalreporter.write_line(
        f"sankofa_sdk: {sum(guard.refused.values())} client(s) aimed at another machine sent "
        f"nothing during the tests: {hosts}. To let them send, pass --sankofa-allow-network "
        "or mark the tests with @pytest.mark.sankofa_allow_network",
        yellow=True,
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
