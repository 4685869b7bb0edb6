"""Who gets the console: the token, the cookie it becomes, 401 otherwise; headers; the ingestion
API and the request log are left as they were."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sankofa_sdk.server import ReferenceServer
from sankofa_sdk.server._console import load_assets

from ..server.conftest import batch, get, post, request, track
from .conftest import console, token

ROOT = Path(__file__).resolve().parents[2]


def cookie_of(reply_headers: object) -> str:
    header = reply_headers.get("Set-Cookie")  # type: ignore[attr-defined]
    assert header is not None
    return str(header).split(";", 1)[0]


def test_console_url_carries_a_secret_token(server: ReferenceServer) -> None:
    other = ReferenceServer()

    assert server.console_url.startswith(server.url + "/?token=")
    assert len(token(server)) >= 40
    assert token(server) != token(other)
    assert token(server) not in repr(server)


def test_the_token_becomes_a_cookie_and_leaves_the_address(server: ReferenceServer) -> None:
    opened = request(server, "GET", "/?token=" + token(server))

    assert opened.status == 303
    assert opened.header("Location") == "/"
    set_cookie = opened.header("Set-Cookie") or ""
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in set_cookie.split(";")}
    page = request(server, "GET", "/", headers={"Cookie": cookie_of(opened.headers)})
    assert page.status == 200
    assert b'<script type="module" src="/console/assets/app.js">' in page.body


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/?token=wrong",
        "/?token=",
        "/console/assets/app.js",
        "/console/api/people?project=proj_reference",
        "/console/api/requests?project=proj_reference",
        "/console/api/stream?project=proj_reference",
    ],
)
def test_without_the_token_the_console_answers_401_and_nothing_else(
    server: ReferenceServer, path: str
) -> None:
    send = track("user_secret", "Secret Event")
    post(server, "/api/v1/batch", batch(send))
    server.wait_until_applied()

    for headers in (
        {},
        {"Cookie": "sankofa_console_x=" + token(server)},  # right value, wrong name
        {"Authorization": "Bearer wrong"},
        {"Authorization": token(server)},  # not a bearer
    ):
        reply = request(server, "GET", path, headers=headers)

        assert reply.status == 401, (path, headers)
        assert b"user_secret" not in reply.body and b"Secret Event" not in reply.body
        assert reply.header("Set-Cookie") is None


def test_another_servers_cookie_does_not_open_this_one(server: ReferenceServer) -> None:
    with ReferenceServer() as other:
        opened = request(other, "GET", "/?token=" + token(other))

    reply = request(server, "GET", "/", headers={"Cookie": cookie_of(opened.headers)})

    assert reply.status == 401


def test_every_console_answer_has_a_strict_content_security_policy(
    server: ReferenceServer,
) -> None:
    for path in ("/", "/console/assets/app.js", "/console/api/projects"):
        for headers in ({}, {"Authorization": f"Bearer {token(server)}"}):
            reply = request(server, "GET", path, headers=headers)

            policy = reply.header("Content-Security-Policy") or ""
            assert "default-src 'none'" in policy
            assert "script-src 'self';" in policy and "unsafe" not in policy
            assert "frame-ancestors 'none'" in policy
            assert reply.header("X-Content-Type-Options") == "nosniff"
            assert reply.header("Referrer-Policy") == "no-referrer"


def test_assets_are_served_with_their_types(server: ReferenceServer) -> None:
    auth = {"Authorization": f"Bearer {token(server)}"}

    script = request(server, "GET", "/console/assets/app.js", headers=auth)
    style = request(server, "GET", "/console/assets/app.css", headers=auth)
    missing = request(server, "GET", "/console/assets/../_server.py", headers=auth)

    assert (script.status, script.content_type) == (200, "text/javascript; charset=utf-8")
    assert (style.status, style.content_type) == (200, "text/css; charset=utf-8")
    assert missing.status == 404


def test_the_page_needs_nothing_from_another_origin() -> None:
    assets = load_assets()
    text = b"".join(body for body, _ in assets.values()).decode()

    assert {"index.html", "app.js", "app.css", "dom.js"} <= set(assets)
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text)
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|eval\(", text)


def test_the_assets_ship_in_the_package() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()

    assert re.search(r'sankofa_sdk = \[[^\]]*"server/console/\*"', pyproject)


def test_console_requests_stay_out_of_the_request_log(server: ReferenceServer) -> None:
    post(server, "/api/v1/batch", batch(track()))
    before = server.stats()["requests"]

    console(server, "requests")
    console(server, "stream")
    request(server, "GET", "/")

    assert [r.path for r in server.requests] == ["/api/v1/batch"]
    assert server.stats()["requests"] == before


def test_the_ingestion_api_answers_as_before(server: ReferenceServer) -> None:
    assert post(server, "/", b"{}").body == b'{"error":"Cannot POST /","ok":false}'
    assert get(server, "/console").body == b'{"error":"Cannot GET /console","ok":false}'
    assert post(server, "/api/v1/batch", batch(track())).status == 200
    preflight = request(
        server,
        "OPTIONS",
        "/api/v1/batch",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204


def test_the_console_approves_no_cross_origin_preflight(server: ReferenceServer) -> None:
    reply = request(
        server,
        "OPTIONS",
        "/console/api/person",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"},
    )

    assert reply.status == 401
    assert reply.header("Access-Control-Allow-Origin") is None


def test_a_change_needs_the_console_header(server: ReferenceServer) -> None:
    post(server, "/api/v1/batch", batch(track("user_1")))
    server.wait_until_applied()

    refused = console(server, "person", {"id": "user_1"}, method="DELETE")
    allowed = console(
        server, "person", {"id": "user_1"}, method="DELETE", headers={"X-Sankofa-Console": "1"}
    )

    assert refused.status == 403
    assert (allowed.status, allowed.json()) == (200, {"deleted": True})
