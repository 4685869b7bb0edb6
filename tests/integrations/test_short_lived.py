"""Short-lived processes: the CLI script and the Lambda-style handler, run as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXAMPLES, Backend, app_traits, event_names, load_example


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "", "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env},
    )


def test_the_cli_script_delivers_everything_before_it_exits(
    backend: Backend, tmp_path: Path
) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "user_id,email,plan,company\n"
        "user_42,ada@example.com,pro,Analytical Engines\n"
        ",nobody@example.com,free,\n"
        "user_43,grace@example.com,team,\n",
        encoding="utf-8",
    )
    done = run(
        [str(EXAMPLES / "cli_script.py"), str(customers), "--host", backend.url],
        {"SANKOFA_API_KEY": backend.api_key},
    )
    assert done.returncode == 0, done.stderr
    assert "imported 2 customers: 4 operations delivered, 0 lost" in done.stdout
    assert "line 3: no user_id, skipped" in done.stderr
    assert backend.wait_until_applied(10)
    ada, grace = backend.get_person("user_42"), backend.get_person("user_43")
    assert ada is not None and app_traits(ada) == {
        "email": "ada@example.com",
        "plan": "pro",
        "company": "Analytical Engines",
        "imported_from": "crm-export",
    }
    assert grace is not None and app_traits(grace) == {
        "email": "grace@example.com",
        "plan": "team",
        "imported_from": "crm-export",
    }
    assert event_names(backend, "user_42") == ["Customer Imported"]
    assert backend.aliases() == []


def test_the_cli_script_reports_failure_when_the_engine_refuses(
    backend: Backend, tmp_path: Path
) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text("user_id,plan\nuser_42,pro\n", encoding="utf-8")
    done = run(
        [str(EXAMPLES / "cli_script.py"), str(customers), "--host", backend.url],
        {"SANKOFA_API_KEY": "sk_live_not_a_key_of_this_server_0000"},
    )
    assert done.returncode == 1
    assert "0 operations delivered, 2 lost" in done.stdout
    assert backend.get_person("user_42") is None


@pytest.mark.parametrize("sync_mode", ["0", "1"])
def test_the_lambda_handler_has_delivered_when_it_returns(backend: Backend, sync_mode: str) -> None:
    # The process ends with os._exit right after the handler returns, as a frozen or reclaimed
    # function would: no atexit hook runs, so only what the handler delivered arrives.
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        import lambda_handler
        for user in ("user_42", "user_43"):
            event = {{"body": json.dumps({{"user_id": user, "report": "weekly"}})}}
            assert lambda_handler.handler(event, None)["statusCode"] == 202
        bad = lambda_handler.handler({{"body": "{{}}"}}, None)
        sys.stdout.write(json.dumps([bad["statusCode"], lambda_handler._client.stats()]))
        sys.stdout.flush()
        os._exit(0)
        """
    )
    done = run(
        ["-c", script],
        {
            "SANKOFA_API_KEY": backend.api_key,
            "SANKOFA_HOST": backend.url,
            "SANKOFA_SYNC_MODE": sync_mode,
        },
    )
    assert done.returncode == 0, done.stderr
    status, stats = json.loads(done.stdout)
    assert status == 400
    assert stats["queued"] == 0 and stats["failed"] == 0
    assert backend.wait_until_applied(10)
    for user in ("user_42", "user_43"):
        person = backend.get_person(user)
        assert person is not None and app_traits(person) == {"last_report": "weekly"}
        [event] = backend.events(user)
        assert event["event_name"] == "Report Requested"
        assert event["properties"]["cold_start"] is (user == "user_42")


def test_the_lambda_handler_with_flush_if_due_keeps_what_is_not_due_for_later(
    backend: Backend, tmp_path: Path
) -> None:
    # Two invocations, then the sandbox's runtime dies (os._exit): what was not due yet stays
    # in the spool in its temporary directory, which the next runtime there adopts and sends.
    invocation = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        import lambda_handler
        for user in sys.argv[1:]:
            event = {{"body": json.dumps({{"user_id": user, "report": "weekly"}})}}
            assert lambda_handler.handler(event, None)["statusCode"] == 202
        stats = lambda_handler._client.stats()
        if len(sys.argv) == 2:  # the later runtime: it ends like a script, delivering all
            lambda_handler._client.shutdown()
        sys.stdout.write(json.dumps(stats))
        sys.stdout.flush()
        os._exit(0)
        """
    )
    env = {
        "SANKOFA_API_KEY": backend.api_key,
        "SANKOFA_HOST": backend.url,
        "SANKOFA_END": "flush_if_due",
        "TMPDIR": str(tmp_path),  # the sandbox's temporary directory
    }
    first = run(["-c", invocation, "user_42", "user_43"], env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["failed"] == 0
    print("left queued by the first runtime:", json.loads(first.stdout)["queued"])
    later = run(["-c", invocation, "user_44"], env)
    assert later.returncode == 0, later.stderr
    assert backend.wait_until_applied(10)
    for user in ("user_42", "user_43", "user_44"):
        [event] = backend.events(user)
        assert event["event_name"] == "Report Requested"
    assert not any((tmp_path / "sankofa-spool").iterdir())  # delivered, and cleaned up


def test_the_lambda_handler_module_imports_without_configuration() -> None:
    module: Any = load_example("lambda_handler")
    assert module._client is None  # nothing is created until the first invocation


def test_the_spool_worker_example_survives_sigkill() -> None:
    done = run([str(EXAMPLES / "spool_worker.py"), "--embedded", "--count", "2000"], {})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "server stored 2000 of 2000 events, 0 twice; spool now: []" in done.stdout
