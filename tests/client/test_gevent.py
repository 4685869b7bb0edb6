"""Under gevent (gunicorn's gevent worker): each test runs a script in a fresh interpreter whose
first act is ``gevent.monkey.patch_all()``, against a reference server in another process.

The scripts print one JSON line of what they saw; the server is then asked what arrived.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..e2e.external_server import ExternalServer

pytest.importorskip("gevent")

PRELUDE = """
from gevent import monkey
monkey.patch_all()

import json, os, sys
import gevent
import sankofa_sdk
from sankofa_sdk import Client

URL, KEY = sys.argv[1], sys.argv[2]
assert monkey.is_module_patched("threading") and monkey.is_module_patched("socket")


def make_client(**options):
    options = {"flush_interval": 0.05, "backoff_base": 0.02, "timeout": 5.0, **options}
    return Client(KEY, URL, **options)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExternalServer]:
    started = ExternalServer(tmp_path / "server.log")
    try:
        yield started
    finally:
        started.stop()


def run_patched(server: ExternalServer, body: str) -> dict[str, Any]:
    """Run ``body`` after the gevent prelude; its last line of output is JSON."""
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script, server.url, server.api_key],
        capture_output=True,
        text=True,
        timeout=180,  # a hang fails the test instead of the whole run
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def arrived(server: ExternalServer) -> list[dict[str, Any]]:
    assert server.wait_until_applied()
    events = server._call("GET", "events", params={"limit": 1000})["events"]
    return events  # type: ignore[no-any-return]


def test_delivery_and_flush(server: ExternalServer) -> None:
    seen = run_patched(
        server,
        """
        client = make_client()
        for i in range(50):
            client.track("Patched", {"i": i}, distinct_id="user_gevent")
        flushed = client.flush(60)
        stats = client.stats()
        client.shutdown()
        print(json.dumps({"flushed": flushed, "delivered": stats["delivered"]}))
        """,
    )
    assert seen == {"flushed": True, "delivered": 50}
    events = arrived(server)
    assert sorted(e["properties"]["i"] for e in events) == list(range(50))


def test_shutdown_delivers_what_is_queued(server: ExternalServer) -> None:
    seen = run_patched(
        server,
        """
        client = make_client(flush_at=1000, flush_interval=30)
        for i in range(20):
            client.track("At Shutdown", distinct_id="user_gevent")
        client.shutdown(60)
        print(json.dumps({"delivered": client.stats()["delivered"]}))
        """,
    )
    assert seen == {"delivered": 20}
    assert len(arrived(server)) == 20


def test_module_api_and_exit_without_shutdown(server: ExternalServer) -> None:
    seen = run_patched(
        server,
        """
        sankofa_sdk.init(KEY, URL, flush_interval=0.05)
        sankofa_sdk.track("Before Exit", distinct_id="user_gevent")
        print(json.dumps({"ok": True}))
        # no flush, no shutdown: the exit hook delivers
        """,
    )
    assert seen == {"ok": True}
    assert [e["event_name"] for e in arrived(server)] == ["Before Exit"]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_tracks_and_flushes(server: ExternalServer) -> None:
    seen = run_patched(
        server,
        """
        client = make_client()
        client.track("Parent Before Fork", distinct_id="user_parent")
        assert client.flush(60)
        pid = os.fork()
        if pid == 0:
            client.track("Child", distinct_id="user_child")
            ok = client.flush(60) and client.stats()["delivered"] == 1
            client.shutdown()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        client.track("Parent After Fork", distinct_id="user_parent")
        flushed = client.flush(60)
        client.shutdown()
        print(json.dumps({"child": os.waitstatus_to_exitcode(status), "flushed": flushed}))
        """,
    )
    assert seen == {"child": 0, "flushed": True}
    names = sorted(e["event_name"] for e in arrived(server))
    assert names == ["Child", "Parent After Fork", "Parent Before Fork"]


def test_each_greenlet_keeps_its_own_identity(server: ExternalServer) -> None:
    seen = run_patched(
        server,
        """
        client = make_client()

        def visit(user):
            client.identify(user)
            gevent.sleep(0)  # the other greenlet runs (and identifies) in between
            client.track("Visited", {"who": user})
            gevent.sleep(0)
            client.track("Left", {"who": user})
            return client.distinct_id

        greenlets = [gevent.spawn(visit, f"user_{name}") for name in ("ada", "grace", "edsger")]
        gevent.joinall(greenlets, raise_error=True)
        flushed = client.flush(60)
        client.shutdown()
        print(json.dumps({"ids": [g.value for g in greenlets], "flushed": flushed}))
        """,
    )
    assert seen == {"ids": ["user_ada", "user_grace", "user_edsger"], "flushed": True}
    events = arrived(server)
    assert len(events) == 6
    assert all(e["distinct_id"] == e["properties"]["who"] for e in events)
