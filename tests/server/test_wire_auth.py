"""API keys, environments and the Origin/IP allowlists (spec sections 5, 6)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer

from .conftest import JSON, batch, batch_ok, post, track

MISSING = b'{"error":"Missing API Key","ok":false}'
INVALID = b'{"error":"Invalid API Key","ok":false}'
BAD_ORIGIN = b'{"error":"Unauthorized Origin","ok":false}'
BAD_IP = b'{"error":"Unauthorized IP Address","ok":false}'
ROUTES = ["/api/v1/track", "/api/v1/people", "/api/v1/alias", "/api/v1/batch"]
SINGLE = {"distinct_id": "user_1", "event_name": "x"}


def _body(route: str) -> dict[str, Any]:
    return batch(track()) if route.endswith("batch") else SINGLE


@pytest.mark.parametrize("route", ROUTES)
def test_missing_key_is_401(server: ReferenceServer, route: str) -> None:
    reply = post(server, route, _body(route), key=None)
    assert reply.status == 401
    assert reply.content_type == JSON
    assert reply.body == MISSING


@pytest.mark.parametrize("route", ROUTES)
def test_empty_key_is_401(server: ReferenceServer, route: str) -> None:
    reply = post(server, route, _body(route), key="")
    assert (reply.status, reply.body) == (401, MISSING)


@pytest.mark.parametrize(
    "key",
    [
        "sk_live_0123456789abcdef0123456789abcdef",
        "sk_live_demo_disabled_0123456789",  # no demo-project rule
        "nonsense",
    ],
)
@pytest.mark.parametrize("route", ROUTES)
def test_unknown_key_is_403(server: ReferenceServer, route: str, key: str) -> None:
    reply = post(server, route, _body(route), key=key)
    assert reply.status == 403
    assert reply.content_type == JSON
    assert reply.body == INVALID


def test_key_must_match_exactly(server: ReferenceServer) -> None:
    for near in (server.api_key.upper(), server.api_key + "x", server.api_key[:-1]):
        assert post(server, "/api/v1/batch", batch(track()), key=near).status == 403


def test_header_name_is_case_insensitive(server: ReferenceServer) -> None:
    reply = post(server, "/api/v1/batch", batch(track()), {"X-API-KEY": server.api_key}, key=None)
    assert reply.status == 200


def test_key_in_query_string_or_authorization_is_not_a_credential(
    server: ReferenceServer,
) -> None:
    reply = post(
        server,
        f"/api/v1/batch?api_key={server.api_key}",
        batch(track()),
        {"Authorization": f"Bearer {server.api_key}"},
        key=None,
    )
    assert (reply.status, reply.body) == (401, MISSING)


@pytest.mark.parametrize(
    ("key", "body"),
    [
        (None, b"{not json"),
        ("", b"[]"),
        ("sk_live_nope", b"{not json"),
        ("sk_live_nope", b""),
    ],
)
@pytest.mark.parametrize("route", ROUTES)
def test_key_errors_come_before_body_errors(
    server: ReferenceServer, route: str, key: str, body: bytes
) -> None:
    reply = post(server, route, body, key=key, content_type=None)
    assert reply.status == (401 if not key else 403)
    assert reply.body == (MISSING if not key else INVALID)


def test_live_and_test_keys_pick_the_environment(server: ReferenceServer) -> None:
    live = post(server, "/api/v1/batch", batch(track("user_live")))
    test = post(server, "/api/v1/batch", batch(track("user_test")), key=server.test_api_key)
    assert live.body == batch_ok(server, n=1, events=1, environment="live")
    assert test.body == batch_ok(server, n=1, events=1, environment="test")
    assert server.wait_until_applied()
    assert server.get_person("user_live") is not None
    assert server.get_person("user_live", environment="test") is None
    assert server.get_person("user_test", environment="test") is not None
    assert server.get_person("user_test") is None


def test_environment_is_decided_by_the_column_not_the_prefix() -> None:
    with ReferenceServer(
        rate_limit=None, api_key="sk_test_looks_like_test", test_api_key="sk_live_looks_live"
    ) as srv:
        reply = post(srv, "/api/v1/batch", batch(track()), key="sk_test_looks_like_test")
        assert reply.body == batch_ok(srv, n=1, events=1, environment="live")
        reply = post(srv, "/api/v1/batch", batch(track()), key="sk_live_looks_live")
        assert reply.body == batch_ok(srv, n=1, events=1, environment="test")


def test_generated_keys_have_the_engine_format(server: ReferenceServer) -> None:
    import re

    assert re.fullmatch(r"sk_live_[0-9a-f]{32}", server.api_key)
    assert re.fullmatch(r"sk_test_[0-9a-f]{32}", server.test_api_key)


def test_each_project_key_answers_with_its_project(fresh: ReferenceServer) -> None:
    server = fresh
    other = server.add_project("Other <&> Co", project_id="proj_other")
    reply = post(server, "/api/v1/batch", batch(track()), key=other.api_key)
    assert reply.status == 200
    assert reply.body == (
        b'{"aliases_received":0,"environment":"live","events_received":1,"ok":true,'
        b'"operations_received":1,"people_received":0,"project_id":"proj_other",'
        b'"project_name":"Other \\u003c\\u0026\\u003e Co"}'
    )
    assert server.wait_until_applied()
    assert server.stats()["events"] == 0
    assert server.stats(project_id="proj_other")["events"] == 1


def test_a_key_can_belong_to_one_project_only(fresh: ReferenceServer) -> None:
    server = fresh
    with pytest.raises(ValueError):
        server.add_project("Dup", api_key=server.api_key)
    with pytest.raises(ValueError):
        server.add_project("Dup", test_api_key=server.api_key)
    with pytest.raises(ValueError):
        server.add_project("Same", api_key="sk_same", test_api_key="sk_same")


# --- Origin allowlist ---------------------------------------------------------------------


@pytest.fixture
def domains() -> Iterator[ReferenceServer]:
    with ReferenceServer(
        rate_limit=None,
        authorized_domains="https://app.example , https://shop.example:8443",
        authorized_ips="8.8.8.8",
    ) as srv:
        yield srv


@pytest.mark.parametrize("origin", ["https://app.example", "https://shop.example:8443"])
def test_listed_origin_passes_trimmed_entries(domains: ReferenceServer, origin: str) -> None:
    reply = post(domains, "/api/v1/batch", batch(track()), {"Origin": origin})
    assert reply.status == 200


@pytest.mark.parametrize(
    "origin",
    [
        "https://APP.example",  # case-sensitive
        "http://app.example",  # scheme counts
        "https://app.example/",  # exact string
        "https://app.example:443",  # port counts
        "https://shop.example",
        "https://sub.app.example",
        "null",  # the literal null is an Origin too
        "*",
    ],
)
@pytest.mark.parametrize("route", ROUTES)
def test_other_origins_are_403(domains: ReferenceServer, origin: str, route: str) -> None:
    reply = post(domains, route, _body(route), {"Origin": origin})
    assert reply.status == 403
    assert reply.content_type == JSON
    assert reply.body == BAD_ORIGIN


def test_allowlist_403_comes_before_body_errors(domains: ReferenceServer) -> None:
    reply = post(domains, "/api/v1/track", b"garbage", {"Origin": "https://x"}, content_type=None)
    assert (reply.status, reply.body) == (403, BAD_ORIGIN)
    reply = post(domains, "/api/v1/batch", b"garbage")  # no Origin: the IP list decides
    assert (reply.status, reply.body) == (403, BAD_IP)


def test_key_check_comes_before_allowlist(domains: ReferenceServer) -> None:
    reply = post(domains, "/api/v1/batch", batch(track()), {"Origin": "https://x"}, key="bad")
    assert (reply.status, reply.body) == (403, INVALID)


def test_without_domain_list_any_origin_passes() -> None:
    with ReferenceServer(rate_limit=None) as srv:
        reply = post(srv, "/api/v1/batch", batch(track()), {"Origin": "https://evil.example"})
        assert reply.status == 200


def test_domain_list_does_not_apply_without_origin() -> None:
    with ReferenceServer(rate_limit=None, authorized_domains="https://app.example") as srv:
        assert post(srv, "/api/v1/batch", batch(track())).status == 200
        # An empty Origin header is no Origin.
        assert post(srv, "/api/v1/batch", batch(track()), {"Origin": ""}).status == 200


def test_allowlists_are_per_project(domains: ReferenceServer) -> None:
    other = domains.add_project("Open")
    reply = post(
        domains, "/api/v1/batch", batch(track()), {"Origin": "https://x"}, key=other.api_key
    )
    assert reply.status == 200


def test_allowlists_apply_to_the_test_key_too(domains: ReferenceServer) -> None:
    reply = post(
        domains,
        "/api/v1/batch",
        batch(track()),
        {"Origin": "https://x"},
        key=domains.test_api_key,
    )
    assert (reply.status, reply.body) == (403, BAD_ORIGIN)


# --- IP allowlist --------------------------------------------------------------------------


@pytest.mark.parametrize("listed", ["127.0.0.1", "::1", "localhost", "8.8.8.8", "10.0.0.1"])
def test_loopback_is_not_admitted_by_its_own_address(listed: str) -> None:
    with ReferenceServer(rate_limit=None, authorized_ips=listed) as srv:
        reply = post(srv, "/api/v1/batch", batch(track()))
        assert reply.status == 403
        assert reply.content_type == JSON
        assert reply.body == BAD_IP


@pytest.mark.parametrize(
    "listed", ["143.105.209.117", "8.8.8.8,143.105.209.117", " 1.1.1.1 ,  143.105.209.117 "]
)
def test_loopback_is_admitted_as_the_normalized_address(listed: str) -> None:
    with ReferenceServer(rate_limit=None, authorized_ips=listed) as srv:
        reply = post(srv, "/api/v1/batch", batch(track()))
        assert reply.status == 200


def test_forwarded_for_is_ignored() -> None:
    with ReferenceServer(rate_limit=None, authorized_ips="8.8.8.8") as srv:
        headers = {"X-Forwarded-For": "8.8.8.8", "X-Real-IP": "8.8.8.8"}
        reply = post(srv, "/api/v1/batch", batch(track()), headers)
        assert (reply.status, reply.body) == (403, BAD_IP)


def test_any_origin_bypasses_the_ip_list() -> None:
    with ReferenceServer(rate_limit=None, authorized_ips="8.8.8.8") as srv:
        for origin in ("https://anything.example", "null"):
            reply = post(srv, "/api/v1/batch", batch(track()), {"Origin": origin})
            assert reply.status == 200


@pytest.mark.parametrize(
    ("peer", "normalized"),
    [
        ("127.0.0.1", "143.105.209.117"),
        ("::1", "143.105.209.117"),
        ("192.168.1.20", "143.105.209.117"),
        ("10.1.2.3", "143.105.209.117"),
        ("172.16.0.1", "143.105.209.117"),
        ("172.200.0.1", "143.105.209.117"),  # every 172., not only 172.16/12
        ("8.8.8.8", "8.8.8.8"),
        ("127.0.0.2", "127.0.0.2"),
        ("192.169.0.1", "192.169.0.1"),
    ],
)
def test_private_address_normalization(peer: str, normalized: str) -> None:
    from sankofa_sdk.server._projects import Project, Projects

    project = Project("p", "P", authorized_ips=normalized)
    assert Projects.check_allowlists(project, None, peer) is None
    other = Project("p", "P", authorized_ips="9.9.9.9")
    refused = Projects.check_allowlists(other, None, peer)
    assert refused is not None and refused.body == BAD_IP
