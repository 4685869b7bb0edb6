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
