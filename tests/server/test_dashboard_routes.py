"""The engine's dashboard routes and CORS layers, as far as an ingestion client can meet them.

``GET /api/v1/people`` and the other people reads need a dashboard JWT (spec section 16): an API
key does not open them, and the answers are the engine's 401 bodies. The reference server has no
dashboard users, so every token is invalid; its own read API stays under ``/reference/v1``.

CORS follows the engine's two layers: the permissive ingest one on ``/api/v1/*`` only, the
dashboard one (credentials, the engine's default origin ``http://localhost:3000``) on the other
``/api`` paths except the replay ones, none elsewhere; ``Vary`` as Fiber's middleware adds it.
"""

from __future__ import annotations

import pytest

from sankofa_sdk.server import ReferenceServer

from .conftest import JSON, batch, post, request, track

MISSING = b'{"error":"Unauthorized: Missing token"}'
FORMAT = b'{"error":"Unauthorized: Invalid token format"}'
INVALID = b'{"error":"Unauthorized: Invalid token"}'
READS = [
    "/api/v1/people",
    "/api/v1/people/user_1",
    "/api/v1/people/user_1/heatmap",
    "/api/v1/people/properties/keys",
    "/api/v1/people/properties/values?property=plan",
    "/API/V1/People/",
]
PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
DASHBOARD = "http://localhost:3000"


@pytest.mark.parametrize("path", READS)
def test_people_reads_without_a_token_are_401_even_with_a_valid_key(
    server: ReferenceServer, path: str
) -> None:
    reply = request(server, "GET", path, b"", {"x-api-key": server.api_key})
    assert (reply.status, reply.content_type, reply.body) == (401, JSON, MISSING)


def test_people_reads_count_against_the_rate_limit() -> None:
    with ReferenceServer(rate_limit=(1, 60)) as limited:
        key = {"x-api-key": limited.api_key}
        first = request(limited, "GET", "/api/v1/people", b"", key)
        assert (first.status, first.header("X-RateLimit-Remaining")) == (401, "0")
        assert request(limited, "GET", "/api/v1/people", b"", key).status == 429


@pytest.mark.parametrize(
    ("authorization", "body"),
    [
        ("", MISSING),
        ("Basic dXNlcjpwYXNz", FORMAT),
        ("bearer abc", FORMAT),
        ("Bearer", FORMAT),
        ("Bearer a b", FORMAT),
        ("Bearer  abc", FORMAT),
        ("Bearer abc", INVALID),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoidSJ9.c2ln", INVALID),
    ],
)
def test_people_reads_answer_the_engines_token_errors(
    server: ReferenceServer, authorization: str, body: bytes
) -> None:
    reply = request(server, "GET", "/api/v1/people/user_1", b"", {"Authorization": authorization})
    assert (reply.status, reply.body) == (401, body)


def test_head_on_a_people_read_is_401_without_a_body(server: ReferenceServer) -> None:
    reply = request(server, "HEAD", "/api/v1/people", b"")
    assert (reply.status, reply.body) == (401, b"")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/v1/people", "GET, HEAD, POST"),
        ("PUT", "/api/v1/people", "GET, HEAD, POST"),
        ("POST", "/api/v1/people/user_1", "GET, HEAD"),
        ("DELETE", "/api/v1/people/user_1/heatmap", "GET, HEAD"),
    ],
)
def test_other_methods_on_people_reads_are_405(
    server: ReferenceServer, method: str, path: str, allow: str
) -> None:
    reply = request(server, method, path, b"")
    assert (reply.status, reply.body) == (405, b'{"error":"Method Not Allowed","ok":false}')
    assert reply.header("Allow") == allow


def test_posting_a_profile_still_ingests(server: ReferenceServer) -> None:
    reply = post(server, "/api/v1/people", {"distinct_id": "user_1", "properties": {"a": 1}})
    assert (reply.status, reply.body) == (200, b"OK")


# --- CORS ----------------------------------------------------------------------------------


def test_ingest_preflight_has_fibers_vary_and_is_logged(server: ReferenceServer) -> None:
    reply = request(server, "OPTIONS", "/api/v1/batch", b"", PREFLIGHT)
    assert reply.status == 204
    assert reply.header("Vary") == (
        "Access-Control-Request-Method, Access-Control-Request-Headers, Origin"
    )
    assert [(r.method, r.path, r.status) for r in server.requests] == [
        ("OPTIONS", "/api/v1/batch", 204)
    ]
    assert server.stats()["requests"] == 1


def test_ingest_simple_request_has_no_vary(server: ReferenceServer) -> None:
    reply = post(server, "/api/v1/batch", batch(track()), {"Origin": "https://app.example"})
    assert reply.header("Access-Control-Allow-Origin") == "*"
    assert reply.header("Vary") is None
    assert post(server, "/api/v1/batch", batch(track())).header("Vary") is None


def test_options_without_request_method_gets_vary_origin(server: ReferenceServer) -> None:
    reply = request(server, "OPTIONS", "/api/v1/batch", b"", {"Origin": "https://app.example"})
    assert (reply.status, reply.header("Vary")) == (405, "Origin")


@pytest.mark.parametrize("path", ["/health", "/", "/nowhere", "/reference/v1/stats"])
def test_no_cors_outside_api(server: ReferenceServer, path: str) -> None:
    reply = request(server, "GET", path, b"", {"Origin": "https://app.example"})
    assert reply.header("Access-Control-Allow-Origin") is None
    preflight = request(server, "OPTIONS", path, b"", PREFLIGHT)
    assert preflight.status != 204
    assert preflight.header("Access-Control-Allow-Origin") is None


@pytest.mark.parametrize("path", ["/api/replay/config", "/api/ee/replay/chunks"])
def test_replay_paths_get_no_cors(server: ReferenceServer, path: str) -> None:
    reply = request(server, "GET", path, b"", {"Origin": "https://app.example"})
    assert reply.status == 404
    assert reply.header("Access-Control-Allow-Origin") is None
    assert reply.header("Vary") is None
    preflight = request(server, "OPTIONS", path, b"", PREFLIGHT)
    assert preflight.status == 404
    assert preflight.header("Access-Control-Allow-Origin") is None


def test_dashboard_preflight_allows_only_the_dashboard_origin(server: ReferenceServer) -> None:
    allowed = request(server, "OPTIONS", "/api/auth/login", b"", {**PREFLIGHT, "Origin": DASHBOARD})
    assert allowed.status == 204
    assert allowed.header("Access-Control-Allow-Origin") == DASHBOARD
    assert allowed.header("Access-Control-Allow-Credentials") == "true"
    assert allowed.header("Access-Control-Allow-Methods") == "GET,POST,PUT,DELETE,PATCH,OPTIONS"
    assert allowed.header("Access-Control-Allow-Headers") == "*"
    assert allowed.header("Vary") == (
        "Access-Control-Request-Method, Access-Control-Request-Headers, Origin"
    )
    other = request(server, "OPTIONS", "/api/auth/login", b"", PREFLIGHT)
    assert other.status == 204
    assert other.header("Access-Control-Allow-Origin") is None
    assert other.header("Access-Control-Allow-Credentials") is None


def test_dashboard_simple_requests_vary_on_origin(server: ReferenceServer) -> None:
    plain = request(server, "GET", "/api/auth/me", b"")
    assert (plain.status, plain.header("Vary")) == (404, "Origin")
    assert plain.header("Access-Control-Allow-Origin") is None
    allowed = request(server, "GET", "/api/auth/me", b"", {"Origin": DASHBOARD})
    assert allowed.header("Access-Control-Allow-Origin") == DASHBOARD
    assert allowed.header("Access-Control-Allow-Credentials") == "true"


def test_unknown_v1_paths_get_both_layers(server: ReferenceServer) -> None:
    # The ingest layer sets "*", then the dashboard layer (the path is not exempt) answers for
    # its own origin and adds Vary.
    other = request(server, "GET", "/api/v1/nowhere", b"", {"Origin": "https://app.example"})
    assert other.status == 404
    assert (other.header("Access-Control-Allow-Origin"), other.header("Vary")) == ("*", "Origin")
    mine = request(server, "GET", "/api/v1/nowhere", b"", {"Origin": DASHBOARD})
    assert mine.header("Access-Control-Allow-Origin") == DASHBOARD
    assert mine.header("Access-Control-Allow-Credentials") == "true"
    people = request(server, "GET", "/api/v1/people", b"", {"Origin": DASHBOARD})
    assert people.header("Access-Control-Allow-Origin") == "*"  # exempt: ingest layer only
    assert people.header("Vary") is None
