"""Fixtures for the integration tests: the bundled reference server on 127.0.0.1, and clients.

Every check reads what the server stored through its read API (``get_person``, ``events``),
after ``client.flush()`` and ``server.wait_until_applied()``: no sleeps.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from sankofa_sdk import Client
from sankofa_sdk.server import ReferenceServer

from ..e2e.external_server import ExternalServer
from .components import RedisServer, redis_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Backend:
    """A :class:`ReferenceServer` (every attribute is the server's) plus :meth:`aliases`."""

    def __init__(self, server: ReferenceServer) -> None:
        self.server = server

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def aliases(self) -> list[tuple[str, str]]:
        """Every stitched id as ``(alias, person's display id)``, sorted, over all people."""
        people = self.server.list_people(limit=500)["people"]
        return sorted((alias, p["distinct_id"]) for p in people for alias in p["aliases"])


@pytest.fixture
def backend(sankofa_server: ReferenceServer) -> Backend:
    """The shipped plugin's server (one per session, cleared for each test)."""
    return Backend(sankofa_server)


@pytest.fixture
def make_client(backend: Backend) -> Iterator[Callable[..., Client]]:
    """Clients sending to ``backend``; shut down at the end of the test."""
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("flush_interval", 0.05)
        client = Client(backend.api_key, host=backend.url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=5)


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def deliver(client: Client, backend: Backend) -> None:
    """Wait until everything the client accepted is stored by the backend."""
    assert client.flush(10), "the client did not deliver in time"
    assert backend.wait_until_applied(10), "the backend did not apply in time"
    assert client.stats()["failed"] == 0, client.stats()


def app_traits(person: dict[str, Any]) -> dict[str, Any]:
    """A person's traits without the ones the server derives itself (``$os``, ``$browser``...)."""
    return {k: v for k, v in person["traits"].items() if not k.startswith("$")}


def event_names(backend: Backend, distinct_id: str) -> list[str]:
    """The names of a person's events, oldest first (through aliases)."""
    return [event["event_name"] for event in reversed(backend.events(distinct_id, limit=200))]


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (or the package ``examples/<name>/``) freshly."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    sys.modules.pop(name, None)
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """One ``redis-server`` for the whole run (it starts in milliseconds, but once is enough)."""
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_url(redis_session: RedisServer) -> str:
    """The Redis of this run, emptied for the test: ``redis://127.0.0.1:PORT`` (no database)."""
    redis_session.flush()
    return redis_session.url


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ExternalServer]:
    """The reference server in its own process, at the engine's default rate limit (500
    requests per 60 s per key), for tests that count requests and 429s."""
    server = ExternalServer(tmp_path / "engine.log")
    try:
        yield server
    finally:
        server.stop()
