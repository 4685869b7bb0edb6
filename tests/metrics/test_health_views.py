"""The integrations' health views: ``client.health()`` as JSON, 200 unless failing (503)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from sankofa_sdk import Client
from sankofa_sdk.integrations import asgi, wsgi
from sankofa_sdk.testing import RecordingTransport


@pytest.fixture
def client() -> Any:
    client = Client("sk_test_views_0123456789", transport=RecordingTransport())
    yield client
    client.shutdown(timeout=1)


def call_wsgi(app: Any) -> tuple[str, dict[str, str], dict[str, Any]]:
    environ: dict[str, Any] = {"wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    started: list[Any] = []
    body = b"".join(app(environ, lambda status, headers: started.append((status, headers))))
    status, headers = started[0]
    return status, dict(headers), json.loads(body)


def call_asgi(app: Any) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "GET", "path": "/"}, receive, send))
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"])


def test_the_wsgi_and_asgi_apps_answer_ok_then_503_when_failing(client: Client) -> None:
    status, headers, body = call_wsgi(wsgi.health_app(client))
    assert status == "200 OK" and headers["Content-Type"] == "application/json"
    assert body["status"] == "ok" and body["issues"] == []
    code, raw_headers, body = call_asgi(asgi.health_app(client))
    assert code == 200 and raw_headers[b"cache-control"] == b"no-store"
    client.shutdown(timeout=1)
    status, _, body = call_wsgi(wsgi.health_app(client))
    assert status.startswith("503") and body["status"] == "failing"
    assert body["issues"][0]["code"] == "closed"
    code, _, body = call_asgi(asgi.health_app(client))
    assert code == 503 and body["status"] == "failing"


def test_degraded_is_200_unless_asked_to_fail(client: Client) -> None:
    degraded = Client(
        "sk_test_views_0123456789",
        transport=RecordingTransport(),
        flush_at=1_000,
        flush_interval=60,
        max_queue_size=2,
    )
    try:
        degraded.track("Queued", distinct_id="user_42")
        degraded.track("Queued", distinct_id="user_42")
        status, _, body = call_wsgi(wsgi.health_app(degraded))
        assert status.startswith("200") and body["status"] == "degraded"
        assert body["issues"][0]["code"] == "queue_high"
        status, _, _ = call_wsgi(wsgi.health_app(degraded, fail_when_degraded=True))
        assert status.startswith("503")
    finally:
        degraded.shutdown(timeout=1)


def test_without_a_client_the_answer_is_503_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANKOFA_API_KEY", raising=False)
    status, _, body = call_wsgi(wsgi.health_app())
    assert status.startswith("503") and body["issues"][0]["code"] == "no_client"


def test_the_flask_view_answers_the_apps_client(client: Client) -> None:
    flask = pytest.importorskip("flask")
    from sankofa_sdk.integrations.flask import Sankofa, health_view

    app = flask.Flask(__name__)
    Sankofa(app, client=client)
    app.add_url_rule("/healthz/sankofa", view_func=health_view())
    response = app.test_client().get("/healthz/sankofa")
    assert response.status_code == 200 and response.json["status"] == "ok"
    assert response.headers["Cache-Control"] == "no-store"
