"""A FastAPI app: per-request identity from the ASGI middleware, WebSocket, background tasks.

- The middleware gives every request and WebSocket connection its own identity, seeded from the
  browser's ``sankofa_anon`` cookie, so ``identify`` on sign-in stitches the visit before it.
- Background tasks run after the response in the request's identity.
- Signed-in API calls name their user explicitly (``distinct_id=``), read from the token.
- The lifespan flushes on shutdown without blocking the event loop (``await client.aflush()``).

Run it (needs uvicorn) against the bundled reference server:

    python examples/fastapi_app.py --embedded

or against an engine with ``SANKOFA_API_KEY`` / ``SANKOFA_HOST`` set.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Optional

from fastapi import BackgroundTasks, FastAPI, Header, HTTPException, WebSocket

import sankofa_sdk
from sankofa_sdk.integrations import SankofaASGIMiddleware

ANONYMOUS_ID_COOKIE = "sankofa_anon"

# A stand-in for the app's users: email -> user id, and API tokens -> user id.
USERS = {"ada@example.com": "user_42", "grace@example.com": "user_43"}
TOKENS = {"tok_ada": "user_42", "tok_grace": "user_43"}


def create_app(client: Optional[sankofa_sdk.Client] = None) -> FastAPI:
    """The app. ``client`` defaults to one made from ``SANKOFA_API_KEY``/``SANKOFA_HOST``."""
    analytics = client or sankofa_sdk.Client(
        os.environ.get("SANKOFA_API_KEY"),
        host=os.environ.get("SANKOFA_HOST", "https://api.sankofa.dev"),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await analytics.aflush(timeout=5)  # the worker thread sends; the loop keeps running

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(
        SankofaASGIMiddleware, client=analytics, anonymous_id_cookie=ANONYMOUS_ID_COOKIE
    )

    def welcome(user_id: str) -> None:
        # A background task: still the request's identity, so no distinct_id needed.
        analytics.track("Welcome Email Sent", {"to": user_id})

    @app.get("/pricing")
    async def pricing(plan: str = "pro") -> dict[str, Any]:
        analytics.track("Viewed Pricing", {"plan": plan})
        return {"distinct_id": analytics.distinct_id}

    @app.post("/login")
    async def login(form: dict[str, str], background: BackgroundTasks) -> dict[str, Any]:
        user_id = USERS.get(form.get("email", ""))
        if user_id is None:
            raise HTTPException(401, "unknown user")
        analytics.identify(user_id, {"email": form["email"]})  # stitches the cookie's id
        analytics.track("Signed In")
        background.add_task(welcome, user_id)
        return {"distinct_id": analytics.distinct_id}

    @app.post("/api/projects")
    async def create_project(
        body: dict[str, str], authorization: str = Header(default="")
    ) -> dict[str, Any]:
        user_id = TOKENS.get(authorization.removeprefix("Bearer "))
        if user_id is None:
            raise HTTPException(401, "bad token")
        analytics.track("Project Created", {"name": body.get("name")}, distinct_id=user_id)
        return {"distinct_id": user_id}

    @app.post("/logout")
    async def logout() -> dict[str, Any]:
        analytics.track("Signed Out")
        analytics.reset()  # the rest of this request is a new anonymous visitor
        return {"distinct_id": analytics.distinct_id}

    @app.websocket("/ws")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        token = await websocket.receive_text()
        user_id = TOKENS.get(token)
        if user_id is None:
            await websocket.close(code=4401)
            return
        analytics.identify(user_id)  # for this connection only
        async for text in websocket.iter_text():
            analytics.track("Chat Message Sent", {"length": len(text)})
            await websocket.send_text(analytics.distinct_id)

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedded", action="store_true", help="use the bundled reference server")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.embedded:
        from sankofa_sdk.server import ReferenceServer

        with ReferenceServer() as server:
            print(f"reference server on {server.url}")
            client = sankofa_sdk.Client(server.api_key, host=server.url)
            uvicorn.run(create_app(client), port=args.port)
    else:
        uvicorn.run(create_app(), port=args.port)


if __name__ == "__main__":
    main()
