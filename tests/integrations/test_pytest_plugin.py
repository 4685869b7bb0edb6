"""The pytest plugin: its fixtures, run in a pytest of their own, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

MODULE_LEVEL_APP_TESTS = """
import sankofa_sdk
from sankofa_sdk import _default

# What an app (or another fixture) set up before: it must be back after each test.
previous = sankofa_sdk.init(api_key="sk_test_previous_0123456789", send=False)


def test_module_functions_reach_the_server(sankofa_module, sankofa_server):
    assert sankofa_sdk.get_client() is sankofa_module
    sankofa_sdk.identify("user_1", {"plan": "pro"})
    sankofa_sdk.track("Signed Up")

    assert sankofa_sdk.flush(10) and sankofa_server.wait_until_applied()
    assert [e["event_name"] for e in sankofa_server.events("user_1")] == ["Signed Up"]
    assert sankofa_server.get_person("user_1")["traits"]["plan"] == "pro"


def test_the_previous_default_client_is_back():
    assert _default._default is previous and not previous._closed


def test_an_app_calling_init_without_arguments_reaches_the_server(sankofa_module, sankofa_server):
    app_client = sankofa_sdk.init()  # the app's own init(), reading SANKOFA_API_KEY/SANKOFA_HOST
    sankofa_sdk.track("Opened", distinct_id="user_2")

    assert app_client.host == sankofa_server.url
    assert sankofa_sdk.flush(10) and sankofa_server.wait_until_applied()
    assert [e["event_name"] for e in sankofa_server.events("user_2")] == ["Opened"]
    globals()["app_client"] = app_client


def test_the_previous_default_is_back_and_the_apps_client_was_shut_down():
    assert _default._default is previous
    assert app_client._closed
"""


def test_sankofa_module_points_the_module_level_api_at_the_server(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(MODULE_LEVEL_APP_TESTS)

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_importing_the_plugin_does_not_import_the_server() -> None:
    script = textwrap.dedent(
        """
        import sys
        import sankofa_sdk.pytest_plugin
        assert "sankofa_sdk.server" not in sys.modules, "the plugin imported the server"
        """
    )

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr


# A user's suite whose app reads production settings at import (here from its conftest, which
# pytest imports before any test module). Every client that may send goes through a proxy on
# this machine that never answers, so nothing leaves it even when the guard lets one send, and
# the proxy counts who tried.
GUARDED_CONFTEST = """
import os
import socket

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
os.environ.update(HTTPS_PROXY=proxy, HTTP_PROXY=proxy, NO_PROXY="127.0.0.1,localhost")


def tried_to_send(expected):
    # Whether a client came to the proxy: waited for (10 s at most) when one is expected,
    # looked at once when not (a refused client drops each call as it comes).
    came = False
    listener.settimeout(10 if expected else 0)
    while True:
        try:
            connection, _ = listener.accept()
        except (BlockingIOError, socket.timeout):
            return came
        connection.close()
        came = True
        listener.settimeout(0)  # and the rest of what waits


import app  # noqa: E402
"""

GUARDED_APP = """
import sankofa_sdk

client = sankofa_sdk.Client(
    "sk_live_0123456789abcdef0123", "https://api.sankofa.dev", timeout=0.5, shutdown_timeout=0.2
)
"""

GUARDED_TESTS = """
import pytest
import sankofa_sdk
from app import client
from conftest import tried_to_send

KEY = "sk_live_0123456789abcdef0123"


def test_the_apps_client_made_at_import(request):
    allowed = request.config.getoption("sankofa_allow_network")
    client.track("Signed Up", distinct_id="user_1")
    assert client.stats()["not_sent"] == (0 if allowed else 1)
    assert tried_to_send(allowed) == allowed


def test_init_with_the_default_host(request, monkeypatch):
    allowed = request.config.getoption("sankofa_allow_network")
    monkeypatch.setenv("SANKOFA_API_KEY", KEY)
    made = sankofa_sdk.init(timeout=0.5, shutdown_timeout=0.2)
    sankofa_sdk.track("Opened", distinct_id="user_2")
    assert made.stats()["not_sent"] == (0 if allowed else 1)
    assert tried_to_send(allowed) == allowed
    sankofa_sdk.shutdown()


@pytest.mark.sankofa_allow_network
def test_a_marked_test_lets_its_clients_send():
    own = sankofa_sdk.Client(KEY, "https://api.sankofa.dev", timeout=0.5, shutdown_timeout=0.2)
    own.track("Allowed", distinct_id="user_3")
    assert own.stats()["not_sent"] == 0
    assert tried_to_send(True)
    own.shutdown()


def test_a_client_on_this_machine_sends(sankofa_client, sankofa_server):
    sankofa_client.track("Seen", distinct_id="user_4")
    assert sankofa_client.flush(10) and sankofa_server.wait_until_applied()
    assert [e["event_name"] for e in sankofa_server.events("user_4")] == ["Seen"]
"""

REFUSED_SAID = "client(s) aimed at another machine sent nothing during the tests"


def run_guarded_suite(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(GUARDED_CONFTEST)
    (tmp_path / "app.py").write_text(GUARDED_APP)
    (tmp_path / "test_app.py").write_text(GUARDED_TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *flags, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )


def test_while_tests_run_a_client_aimed_at_another_machine_sends_nothing(tmp_path: Path) -> None:
    done = run_guarded_suite(tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    # Said once for the run, with the host, the count and the ways to let them send.
    [said] = [line for line in done.stdout.splitlines() if REFUSED_SAID in line]
    assert said.startswith("sankofa_sdk: 2 client(s)")
    assert "https://api.sankofa.dev (2)" in said
    assert "--sankofa-allow-network" in said and "sankofa_allow_network" in said


def test_a_run_opts_in_with_a_flag(tmp_path: Path) -> None:
    done = run_guarded_suite(tmp_path, "--sankofa-allow-network")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    assert REFUSED_SAID not in done.stdout
