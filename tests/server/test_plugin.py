"""The pytest plugin: ``sankofa_server`` and ``sankofa_client`` through the pytest11 entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from sankofa_sdk.server import ReferenceServer

from .conftest import batch, post, track


def test_fixtures_wire_a_client_to_a_server(
    sankofa_client: Any, sankofa_server: ReferenceServer
) -> None:
    sankofa_client.identify("user_42", {"plan": "pro"}, anonymous_id="anon_42")
    sankofa_client.track("Upgraded", {"to": "pro"}, distinct_id="user_42")
    assert sankofa_client.flush(timeout=10)
    assert sankofa_server.wait_until_applied()
    person = sankofa_server.get_person("anon_42")
    assert person is not None
    assert person["distinct_id"] == "user_42"
    assert person["traits"]["plan"] == "pro"
    assert [e["event_name"] for e in sankofa_server.events("user_42")] == ["Upgraded"]


def test_server_fixture_has_no_rate_limit(sankofa_server: ReferenceServer) -> None:
    reply = post(sankofa_server, "/api/v1/batch", batch(track()))
    assert reply.status == 200
    assert reply.header("X-RateLimit-Limit") is None
    assert sankofa_server.host == "127.0.0.1"


def test_server_fixture_deduplicates_by_default(sankofa_server: ReferenceServer) -> None:
    assert sankofa_server.deduplicate is True


ENGINE_LIKE_TESTS = """
def test_a_repeated_key_is_applied_again(sankofa_server):
    import json, urllib.request

    assert sankofa_server.deduplicate is False
    body = json.dumps({"operations": [{"type": "track", "payload": {
        "distinct_id": "user_1", "event_name": "x", "properties": {"$insert_id": "i-1"}}}]})
    for _ in range(2):
        sent = urllib.request.Request(
            sankofa_server.url + "/api/v1/batch",
            body.encode(),
            {"x-api-key": sankofa_server.api_key, "Content-Type": "application/json",
             "Idempotency-Key": "batch-1"},
        )
        with urllib.request.urlopen(sent, timeout=10) as reply:
            assert reply.status == 200
    assert sankofa_server.wait_until_applied()
    stats = sankofa_server.stats()
    assert stats["events"] == 2 and stats["duplicate_insert_ids"] == 1
    assert stats["repeated_keys"] == 1 and stats["idempotent_replays"] == 0
"""


def test_ini_option_makes_the_server_fixture_apply_repeats(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nsankofa_deduplicate = false\n")
    (tmp_path / "test_engine_like.py").write_text(ENGINE_LIKE_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_plugin_is_registered_for_any_project(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            def test_signup(sankofa_client, sankofa_server):
                sankofa_client.identify("user_1", {"plan": "pro"})
                sankofa_client.flush()
                assert sankofa_server.wait_until_applied()
                assert sankofa_server.get_person("user_1")["traits"]["plan"] == "pro"

            def test_each_test_gets_an_empty_server(sankofa_server):
                assert sankofa_server.stats()["people"] == 0

            def test_faults_are_ridden_out(sankofa_client, sankofa_server):
                sankofa_server.faults.fail_next(2, status=503)
                sankofa_client.track("x", distinct_id="user_2")
                assert sankofa_client.flush(timeout=10)
                assert sankofa_server.wait_until_applied()
                assert sankofa_server.stats()["events"] == 1
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
