"""Inside uWSGI, with its embedded ``uwsgi`` module stood in for: threads off, and a fork that
Python does not see. The real uWSGI runs in ``tests/integrations/test_uwsgi.py``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from sankofa_sdk import Client, _runtime
from sankofa_sdk.testing import RecordingTransport

KEY = "sk_test_0123456789abcdef0123"


def stand_in_for_uwsgi(monkeypatch: pytest.MonkeyPatch, *, has_threads: int) -> None:
    """What uWSGI puts in ``sys.modules`` before it loads the app (here: in the master)."""
    module = types.ModuleType("uwsgi")
    module.has_threads = has_threads  # type: ignore[attr-defined]
    module.worker_id = lambda: 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", module)
    monkeypatch.setattr(_runtime, "_threads_off_said", False)


def test_with_threads_off_the_call_that_makes_a_batch_due_returns_once_it_was_sent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in_for_uwsgi(monkeypatch, has_threads=0)
    transport = RecordingTransport()
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        client = Client(KEY, transport=transport, flush_at=5, flush_interval=60, rate_limit=None)
        second = Client(KEY, transport=RecordingTransport())
    try:
        for batch in range(3):
            for _ in range(4):
                client.track("Viewed", distinct_id="user_1")
            assert len(transport.requests) == batch  # not due yet (flush_interval is long)
            client.track("Viewed", distinct_id="user_1")
            assert len(transport.requests) == batch + 1  # the fifth call waited for it
        assert [len(request.operations) for request in transport.requests] == [5, 5, 5]
    finally:
        client.shutdown()
        second.shutdown()
    said = [r.getMessage() for r in caplog.records if "without Python threads" in r.getMessage()]
    assert len(said) == 1  # once per process, however many clients
    assert "--enable-threads" in said[0]


def test_with_threads_on_nothing_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in_for_uwsgi(monkeypatch, has_threads=1)
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        Client(KEY, transport=RecordingTransport()).shutdown()
    assert not caplog.records


# uWSGI forks its workers in C: no os.register_at_fork hook runs. libc's fork() called through
# ctypes.PyDLL (which keeps the interpreter lock, as uWSGI's master does) does the same.
C_FORK = """
import ctypes, json, os, sys, types

uwsgi = types.ModuleType("uwsgi")
uwsgi.has_threads = 1
uwsgi.worker_id = lambda: 0  # the master
sys.modules["uwsgi"] = uwsgi

from sankofa_sdk import Client
from sankofa_sdk.testing import RecordingTransport

def names(requests):
    return [op["payload"]["event_name"] for request in requests for op in request.operations]

transport = RecordingTransport()
client = Client("%s", transport=transport, flush_interval=60)
client.track("Loaded", distinct_id="master")  # queued, and the delivery thread runs
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    before = len(transport.requests)
    client.track("Served", distinct_id="worker")
    flushed = client.flush(5)
    report = {"flushed": flushed, "sent": names(transport.requests[before:])}
    os.write(1, json.dumps(report).encode() + b"\\n")
    os._exit(0)
_, status = os.waitpid(pid, 0)
flushed = client.flush(5)
print(json.dumps({"status": status, "flushed": flushed, "sent": names(transport.requests)}))
client.shutdown()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_worker_forked_behind_pythons_back_starts_afresh(tmp_path: Path) -> None:
    script = tmp_path / "c_fork.py"
    script.write_text(textwrap.dedent(C_FORK % KEY), encoding="utf-8")

    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode == 0, done.stderr
    worker, master = (json.loads(line) for line in done.stdout.splitlines())
    # The worker sends its own call, and not its copy of the master's queue.
    assert worker == {"flushed": True, "sent": ["Served"]}, done.stderr
    assert master == {"status": 0, "flushed": True, "sent": ["Loaded"]}, done.stderr
