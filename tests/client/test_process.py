"""Exit and fork behaviour, each in a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from ..scripts import run_script
from ..sink import RecordingSink, closed_port

KEY = "sk_test_0123456789abcdef0123456789abcdef"


def test_atexit_delivers_what_main_never_flushed() -> None:
    with RecordingSink().running() as sink:
        result = run_script(f"""
            client = sankofa_sdk.Client({KEY!r}, {sink.url!r}, flush_interval=60)
            for i in range(25):
                client.track("Exit Event", {{"i": i}}, distinct_id="user_1")
            # returns from main without flush() or shutdown()
        """)
        assert result.returncode == 0, result.stderr
        assert sink.wait_for(25)
    assert sink.events() == ["Exit Event"] * 25


def test_exit_with_unreachable_server_is_bounded_by_shutdown_timeout() -> None:
    # Against a closed port a batch would be retried for max_retry_time (300 s): at exit the
    # shutdown_timeout (1 s) bounds the wait. The child writes the wall clock as main ends;
    # the parent compares it with the moment the process is gone.
    result = run_script(
        f"""
        client = sankofa_sdk.Client({KEY!r}, "http://127.0.0.1:{closed_port()}",
                                    shutdown_timeout=1.0, backoff_base=0.2)
        client.track("Lost", distinct_id="user_1")
        print("main ends", time.time(), flush=True)
    """,
        timeout=60,
    )
    ended = time.time()
    assert result.returncode == 0
    main_ended = float(result.stdout.split("main ends")[1].split()[0])
    # A structural bound, not a measurement: 1 s of shutdown_timeout, plus its grace and the
    # interpreter's exit, well inside the 300 s an unbounded exit would take.
    assert ended - main_ended < 20, ended - main_ended
    # The one event is reported as not delivered rather than silently lost.
    assert (
        "not delivered (shutdown)" in result.stderr
        or "not delivered (retries_exhausted)" in result.stderr
    )


def test_sigterm_handler_that_calls_shutdown_delivers() -> None:
    with RecordingSink().running() as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
                import sankofa_sdk, signal, sys
                client = sankofa_sdk.Client({KEY!r}, {sink.url!r}, flush_interval=60)
                def stop(signum, frame):
                    client.shutdown()
                    sys.exit(0)
                signal.signal(signal.SIGTERM, stop)
                for i in range(10):
                    client.track("Before Term", distinct_id="user_1")
                print("ready", flush=True)
                signal.pause()
            """),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert sink.wait_for(10)
    assert sink.events() == ["Before Term"] * 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_forked_children_send_their_own_and_never_the_parents_queue(how: str) -> None:
    with RecordingSink().running() as sink:
        result = run_script(f"""
            client = sankofa_sdk.Client({KEY!r}, {sink.url!r}, flush_interval=60, flush_at=1000)
            for i in range(10):
                client.track("Parent", {{"i": i}}, distinct_id="parent")
            # The parent's 10 events are still queued when the children fork.

            def child(n):
                for i in range(5):
                    client.track("Child", {{"n": n, "i": i}}, distinct_id=f"child_{{n}}")
                client.shutdown()

            run_in_forked_children(child, {how!r})
            client.shutdown()
        """)
        assert result.returncode == 0, result.stderr
        assert sink.wait_for(25)
    counts = Counter(sink.events())
    assert counts == {"Parent": 10, "Child": 15}
    insert_ids = [op["payload"]["properties"]["$insert_id"] for op in sink.operations]
    assert len(set(insert_ids)) == len(insert_ids) == 25
