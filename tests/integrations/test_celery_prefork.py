"""A real prefork Celery worker process: a client created before the fork works in the children.

The worker imports the app (which creates the client) in its main process and forks its pool
children from it; no ``worker_process_init`` hook is set up. The tasks are sent through a
filesystem broker, and their results come back through a filesystem result backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import Backend

pytest.importorskip("celery")

APP = """
import os
from celery import Celery
import sankofa_sdk
from sankofa_sdk.integrations.celery import setup_celery

folder = os.environ["BROKER_FOLDER"]
app = Celery("prefork_app", broker="filesystem://", backend="file://" + os.environ["RESULTS"])
app.conf.broker_transport_options = {
    "data_folder_in": folder, "data_folder_out": folder, "processed_folder": folder,
}
app.conf.worker_hijack_root_logger = False
client = sankofa_sdk.init(flush_interval=60)  # before the fork, from SANKOFA_API_KEY/_HOST
PARENT = os.getpid()
setup_celery()

@app.task
def work(user_id):
    sankofa_sdk.identify(user_id)
    sankofa_sdk.track("Worked", {"pid": os.getpid(), "parent": PARENT})
    return os.getpid()
"""


def test_prefork_children_deliver_with_a_client_made_before_the_fork(
    backend: Backend, tmp_path: Path
) -> None:
    (tmp_path / "prefork_app.py").write_text(textwrap.dedent(APP), encoding="utf-8")
    (tmp_path / "broker").mkdir()
    (tmp_path / "results").mkdir()
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}",
        "BROKER_FOLDER": str(tmp_path / "broker"),
        "RESULTS": str(tmp_path / "results"),
        "SANKOFA_API_KEY": backend.api_key,
        "SANKOFA_HOST": backend.url,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "prefork_app",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=warning",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sender = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                import json, prefork_app
                results = [prefork_app.work.delay(f"user_fork_{i}") for i in range(4)]
                print(json.dumps([r.get(timeout=60) for r in results]))
                """
                ),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert sender.returncode == 0, sender.stderr
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert backend.wait_until_applied(10)
    parent_pids = set()
    for i in range(4):
        [event] = backend.events(f"user_fork_{i}")
        assert event["event_name"] == "Worked"
        assert event["properties"]["pid"] != event["properties"]["parent"]  # sent by a child
        parent_pids.add(event["properties"]["parent"])
    assert len(parent_pids) == 1
