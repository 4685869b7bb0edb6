"""Issue 4, scenarios 6, 7 and 9: exit, fork and a server restart, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO

import pytest

from sankofa_sdk import Client
from sankofa_sdk.server import ReferenceServer

from ..scripts import run_script
from ..sink import closed_port

# --- 6. exit --------------------------------------------------------------------------------


def test_returning_from_main_without_flush_delivers_via_atexit(server: ReferenceServer) -> None:
    result = run_script(f"""
        client = sankofa_sdk.Client({server.api_key!r}, {server.url!r}, flush_interval=60)
        for n in range(40):
            client.track("Exit", {{"seq": n}}, distinct_id="exiting_user")
    """)
    assert result.returncode == 0, result.stderr
    assert server.wait_until_applied(10)
    seqs = sorted(e["properties"]["seq"] for e in server.events("exiting_user", limit=1000))
    assert seqs == list(range(40))


def test_exit_with_unreachable_server_is_bounded_by_shutdown_timeout() -> None:
    # Against a closed port every batch would be retried for max_retry_time (600 s here): at
    # exit the shutdown_timeout (1 s) bounds the wait. The child writes the wall clock as main
    # ends; the parent compares it with the moment the process is gone. A structural bound,
    # not a measurement: 1 s plus its grace and the interpreter's exit, far below 600 s.
    result = run_script(
        f"""
        client = sankofa_sdk.Client("sk_test_" + "0" * 32, "http://127.0.0.1:{closed_port()}",
                                    shutdown_timeout=1.0, max_retries=100, max_retry_time=600)
        for n in range(5):
            client.track("Lost", distinct_id="user_gone")
        print("main ends", time.time(), flush=True)
    """,
        timeout=60,
    )
    ended = time.time()
    assert result.returncode == 0
    main_ended = float(result.stdout.split("main ends")[1].split()[0])
    assert ended - main_ended < 20, ended - main_ended
    # Reported as not delivered rather than silently lost.
    assert "5 operation(s) not delivered (shutdown)" in result.stderr


def test_sigterm_handler_calling_shutdown_delivers(server: ReferenceServer) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sankofa_sdk, signal, sys
            client = sankofa_sdk.Client({server.api_key!r}, {server.url!r}, flush_interval=60)
            def stop(signum, frame):
                client.shutdown()
                sys.exit(0)
            signal.signal(signal.SIGTERM, stop)
            for n in range(15):
                client.track("Term", {{"seq": n}}, distinct_id="term_user")
            print("ready", flush=True)
            signal.pause()
        """),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)  # waits, and closes the pipes
    assert proc.returncode == 0
    assert server.wait_until_applied(10)
    assert len(server.events("term_user", limit=1000)) == 15


# --- 7. fork ----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_forked_workers_deliver_their_own_and_the_parents_queue_once(
    server: ReferenceServer, how: str
) -> None:
    result = run_script(f"""
        client = sankofa_sdk.Client({server.api_key!r}, {server.url!r}, flush_interval=60, flush_at=1000)
        for n in range(10):
            client.track("Parent", {{"seq": n}}, distinct_id="parent_proc")
        # The parent's queue is still full when the workers fork (as with gunicorn --preload).

        def worker(w):
            client.identify(f"worker_{{w}}")
            for n in range(8):
                client.track("Child", {{"seq": n}})
            client.shutdown()

        run_in_forked_children(worker, {how!r})
    """)
    assert result.returncode == 0, result.stderr
    assert server.wait_until_applied(10)
    assert sorted(e["properties"]["seq"] for e in server.events("parent_proc", limit=1000)) == list(
        range(10)
    )
    for w in range(3):
        assert len(server.events(f"worker_{w}", limit=1000)) == 8
    assert server.stats()["events"] == 34 and server.stats()["duplicate_insert_ids"] == 0


# --- 9. reference server restart ------------------------------------------------------------


def start_cli(db: Path, port: int, key: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sankofa_sdk.server",
            "--port",
            str(port),
            "--db",
            str(db),
            "--api-key",
            key,
            "--rate-limit",
            "off",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for the banner that names the URL
        if f"127.0.0.1:{port}" in line:
            break

    # Keep reading its log so a full pipe never blocks it; the pipe is closed at its end.
    def read_to_the_end(stream: IO[str]) -> None:
        with stream:
            stream.read()

    threading.Thread(target=read_to_the_end, args=(proc.stdout,), daemon=True).start()
    return proc


def test_server_restart_with_a_file_database_loses_nothing(tmp_path: Path) -> None:
    key = "sk_live_" + "ab" * 16
    port = closed_port()
    db = tmp_path / "people.db"
    server = start_cli(db, port, key)
    client = Client(
        key,
        f"http://127.0.0.1:{port}",
        flush_at=20,
        flush_interval=0.05,
        backoff_base=0.05,
        backoff_max=0.5,
        max_retries=200,
        max_retry_time=120,
        timeout=2,
    )
    try:
        for n in range(200):
            client.track("Restart", {"seq": n}, distinct_id="restart_user")
            if n == 100:
                server.send_signal(signal.SIGTERM)  # while the client is sending
                assert server.wait(timeout=30) == 0
                server = start_cli(db, port, key)
        assert client.flush(timeout=120)
        assert client.stats()["delivered"] == 200
    finally:
        client.shutdown(timeout=5)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    with ReferenceServer(db_path=str(db), api_key=key) as reader:
        seqs = Counter(e["properties"]["seq"] for e in reader.events("restart_user", limit=1000))
    assert sorted(seqs) == list(range(200)) and max(seqs.values()) == 1
