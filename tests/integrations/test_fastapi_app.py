"""examples/fastapi_app.py driven by Starlette's TestClient and by hand-made ASGI calls."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import pytest

from sankofa_sdk import Client

from .conftest import Backend, app_traits, deliver, event_names, load_example
from .test_asgi import Gate

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client
    warnings.filterwarnings("ignore", message=".*httpx.*", category=Warning)
    from starlette.testclient import TestClient

from fastapi import BackgroundTasks  # at module level: FastAPI resolves annotations by name

BROWSER_ID = "5d1e7f3a-0000-4fa5-8a91-000000000001"
ADA_BROWSER = "5d1e7f3a-0000-4fa5-8a91-0000000000a1"
GRACE_BROWSER = "5d1e7f3a-0000-4fa5-8a91-0000000000b2"


@pytest.fixture
def example() -> Any:
    return load_example("fastapi_app")


def test_a_visit_signed_in_and_out_lands_on_the_right_people(
    example: Any, client: Client, backend: Backend
) -> None:
    app = example.create_app(client)
    with TestClient(app, cookies={example.ANONYMOUS_ID_COOKIE: BROWSER_ID}) as browser:
        assert browser.get("/pricing").json() == {"distinct_id": BROWSER_ID}
        login = browser.post("/login", json={"email": "ada@example.com"})
        assert login.json() == {"distinct_id": "user_42"}
        created = browser.post(
            "/api/projects", json={"name": "Apollo"}, headers={"Authorization": "Bearer tok_ada"}
        )
        assert created.json() == {"distinct_id": "user_42"}
        after = browser.post("/logout").json()["distinct_id"]
        assert after not in (BROWSER_ID, "user_42")
    # leaving the block ran the lifespan's shutdown: await client.aflush()
    deliver(client, backend)
    assert backend.aliases() == [(BROWSER_ID, "user_42")]
    person = backend.get_person("user_42")
    assert person is not None and app_traits(person) == {"email": "ada@example.com"}
    assert BROWSER_ID in person["aliases"]
    # "Signed Out" was sent under the cookie's id (each request starts from it), which is
    # stitched to user_42; what came after reset() is a new visitor with nothing sent yet.
    assert event_names(backend, "user_42") == [
        "Viewed Pricing",
        "Signed In",
        "Welcome Email Sent",
        "Project Created",
        "Signed Out",
    ]
    assert backend.get_person(after) is None


async def call(app: Any, path: str, body: dict[str, Any], cookie: str, gate: Gate) -> Any:
    """One POST through the app; its response is held at ``gate`` before background tasks run."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"cookie", f"sankofa_anon={cookie}".encode()),
        ],
    }
    payload = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]
    sent: list[Any] = []

    async def receive() -> Any:
        if payload:
            return payload.pop()
        await asyncio.Event().wait()  # no disconnect while the app is still working

    async def send(message: Any) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            await gate.wait()  # both requests identified before either's background task

    await app(scope, receive, send)
    return json.loads(next(m["body"] for m in sent if m["type"] == "http.response.body"))


def test_concurrent_sign_ins_and_their_background_tasks_never_mix(
    example: Any, client: Client, backend: Backend
) -> None:
    app = example.create_app(client)
    gate = Gate(2)

    async def main() -> list[Any]:
        return list(
            await asyncio.gather(
                call(app, "/login", {"email": "ada@example.com"}, ADA_BROWSER, gate),
                call(app, "/login", {"email": "grace@example.com"}, GRACE_BROWSER, gate),
            )
        )

    answers = asyncio.run(main())
    assert answers == [{"distinct_id": "user_42"}, {"distinct_id": "user_43"}]
    deliver(client, backend)
    assert sorted(backend.aliases()) == [(ADA_BROWSER, "user_42"), (GRACE_BROWSER, "user_43")]
    for user in ("user_42", "user_43"):
        events = backend.events(user)
        assert {e["distinct_id"] for e in events} == {user}
        assert sorted(e["event_name"] for e in events) == ["Signed In", "Welcome Email Sent"]
        welcome = backend.events(user, event_name="Welcome Email Sent")[0]
        assert welcome["properties"] == {**welcome["properties"], "to": user}


def test_a_websocket_connection_is_identified_for_itself_only(
    example: Any, client: Client, backend: Backend
) -> None:
    app = example.create_app(client)
    with TestClient(app, cookies={example.ANONYMOUS_ID_COOKIE: GRACE_BROWSER}) as browser:
        with browser.websocket_connect("/ws") as ws:
            ws.send_text("tok_grace")
            ws.send_text("hello")
            assert ws.receive_text() == "user_43"
            ws.send_text("again")
            assert ws.receive_text() == "user_43"
        # a plain request of the same browser afterwards is anonymous again
        assert browser.get("/pricing").json() == {"distinct_id": GRACE_BROWSER}
    deliver(client, backend)
    assert backend.aliases() == [(GRACE_BROWSER, "user_43")]
    # the later visit was sent under the browser's id, which is stitched to user_43
    assert [(e["event_name"], e["distinct_id"]) for e in reversed(backend.events("user_43"))] == [
        ("Chat Message Sent", "user_43"),
        ("Chat Message Sent", "user_43"),
        ("Viewed Pricing", GRACE_BROWSER),
    ]


def test_identify_and_reset_in_sync_endpoints_and_dependencies_hold_for_the_whole_request(
    client: Client, backend: Backend
) -> None:
    # Starlette runs `def` endpoints, dependencies and background tasks in a thread pool, on a
    # copy of the request's context: identify/reset there must still act on the request.
    from fastapi import Depends, FastAPI

    from sankofa_sdk.integrations import SankofaASGIMiddleware

    app = FastAPI()
    app.add_middleware(SankofaASGIMiddleware, client=client, anonymous_id_header="X-Anonymous-Id")

    def after_response(path: str) -> None:
        client.track("Background Ran", {"path": path})

    def signed_in_user() -> str:  # a sync dependency, as auth dependencies often are
        client.identify("user_dep")
        return "user_dep"

    @app.post("/login")
    def login(background: BackgroundTasks) -> dict[str, Any]:  # a sync endpoint
        client.identify("user_sync")
        background.add_task(after_response, "/login")
        return {"distinct_id": client.distinct_id}

    @app.get("/me")
    async def me(user: str = Depends(signed_in_user)) -> dict[str, Any]:
        client.track("Viewed Account")
        return {"distinct_id": client.distinct_id}

    @app.post("/logout")
    def logout(background: BackgroundTasks) -> dict[str, Any]:
        client.track("Signed Out")
        client.reset()
        background.add_task(after_response, "/logout")
        return {"distinct_id": client.distinct_id}

    with TestClient(app) as browser:
        login = browser.post("/login", headers={"X-Anonymous-Id": BROWSER_ID})
        assert login.json() == {"distinct_id": "user_sync"}
        assert browser.get("/me").json() == {"distinct_id": "user_dep"}
        after = browser.post("/logout").json()["distinct_id"]
    assert after not in (BROWSER_ID, "user_sync", "user_dep")
    deliver(client, backend)
    assert backend.aliases() == [(BROWSER_ID, "user_sync")]  # stitched by the sync endpoint
    assert event_names(backend, "user_sync") == ["Background Ran"]
    assert event_names(backend, "user_dep") == ["Viewed Account"]
    # after the reset in the sync endpoint, its background task is the new visitor
    assert [(e["event_name"], e["distinct_id"]) for e in backend.events(after)] == [
        ("Background Ran", after)
    ]
