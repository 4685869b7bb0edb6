"""Fixtures shared by the client tests: a client wired to `responses`, with a fake sleep."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import responses

from sankofa_sdk import Client

API_KEY = "sk_test_0123456789abcdef0123456789abcdef"
HOST = "https://engine.test"
BATCH_URL = HOST + "/api/v1/batch"


def decode_body(body: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else body.encode()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)  # type: ignore[no-any-return]


def sent_operations(rsps: responses.RequestsMock) -> list[dict[str, Any]]:
    """Every operation of every batch request, in the order sent (failed requests included)."""
    ops: list[dict[str, Any]] = []
    for call in rsps.calls:
        ops.extend(decode_body(call.request.body)["operations"])
    return ops


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("sleep", sleeps.append)
        options.setdefault("flush_interval", 0.05)
        client = Client(options.pop("api_key", API_KEY), options.pop("host", HOST), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=2)
