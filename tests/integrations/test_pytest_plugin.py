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
