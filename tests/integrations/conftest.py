"""Fixtures for the integration tests: a real HTTP backend on 127.0.0.1 and clients wired to it.

``backend`` offers the read API of the bundled reference server (``get_person``, ``events``,
``wait_until_applied``). Until ``sankofa_sdk.server.ReferenceServer`` exists it is a
``RecordingSink`` read through :class:`SinkBackend`, which resolves aliases and people updates
the same way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import pytest

from sankofa_sdk import Client

from ..sink import RecordingSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SINK_API_KEY = "sk_test_integrations_0123456789abcdef"


class SinkBackend:
    """The reference server's read API over the raw operations a ``RecordingSink`` received."""

    api_key = SINK_API_KEY

    def __init__(self, sink: RecordingSink) -> None:
        self.sink = sink
        self.url = sink.url

    def wait_until_applied(self, timeout: float = 10.0) -> bool:
        # The sink records a batch before it answers, and client.flush() waits for the answer.
        return True

    def _group(self, distinct_id: str) -> set[str]:
        links: dict[str, set[str]] = {}
        for op in self.sink.operations:
            if op["type"] == "alias":
                a, b = op["payload"]["alias_id"], op["payload"]["distinct_id"]
                links.setdefault(a, set()).add(b)
                links.setdefault(b, set()).add(a)
        group, todo = {distinct_id}, [distinct_id]
        while todo:
            for other in links.get(todo.pop(), ()):
                if other not in group:
                    group.add(other)
                    todo.append(other)
        return group

    def _canonical(self, distinct_id: str) -> str:
        seen = {distinct_id}
        for _ in range(10):
            targets = [
                op["payload"]["distinct_id"]
                for op in self.sink.operations
                if op["type"] == "alias" and op["payload"]["alias_id"] == distinct_id
            ]
            if not targets or targets[-1] in seen:
                break
            distinct_id = targets[-1]
            seen.add(distinct_id)
        return distinct_id

    def get_person(self, distinct_id: str) -> Optional[dict[str, Any]]:
        group = self._group(distinct_id)
        ops = [op for op in self.sink.operations if op["payload"].get("distinct_id") in group]
        if not ops:
            return None
        traits: dict[str, Any] = {}
        for op in ops:
            if op["type"] == "people":
                for key, value in op["payload"].get("properties", {}).items():
                    if value is None:
                        traits.pop(key, None)
                    else:
                        traits[key] = value
        canonical = self._canonical(distinct_id)
        return {
            "distinct_id": canonical,
            "traits": traits,
            "aliases": sorted(group - {canonical}),
            "event_count": sum(op["type"] == "track" for op in ops),
        }

    def events(
        self,
        distinct_id: Optional[str] = None,
        *,
        event_name: Optional[str] = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        group = None if distinct_id is None else self._group(distinct_id)
        found = [
            {
                "event_name": op["payload"]["event_name"],
                "distinct_id": op["payload"]["distinct_id"],
                "properties": op["payload"].get("properties", {}),
                "timestamp": op["payload"].get("timestamp"),
            }
            for op in self.sink.operations
            if op["type"] == "track"
            and (group is None or op["payload"]["distinct_id"] in group)
            and (event_name is None or op["payload"]["event_name"] == event_name)
        ]
        return list(reversed(found))[:limit]

    def aliases(self) -> list[tuple[str, str]]:
        """Every alias received, as ``(alias_id, distinct_id)`` in arrival order."""
        return [
            (op["payload"]["alias_id"], op["payload"]["distinct_id"])
            for op in self.sink.operations
            if op["type"] == "alias"
        ]


@pytest.fixture
def backend() -> Iterator[SinkBackend]:
    with RecordingSink().running() as sink:
        yield SinkBackend(sink)


@pytest.fixture
def make_client(backend: SinkBackend) -> Iterator[Callable[..., Client]]:
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


def deliver(client: Client, backend: SinkBackend) -> None:
    """Wait until everything the client accepted is stored by the backend."""
    assert client.flush(10), "the client did not deliver in time"
    assert backend.wait_until_applied(10), "the backend did not apply in time"
    assert client.stats()["failed"] == 0, client.stats()


def event_names(backend: SinkBackend, distinct_id: str) -> list[str]:
    """The names of a person's events, oldest first (through aliases)."""
    return [event["event_name"] for event in reversed(backend.events(distinct_id, limit=200))]


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (or the package ``examples/<name>/``) freshly."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    sys.modules.pop(name, None)
    return importlib.import_module(name)
