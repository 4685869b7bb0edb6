"""A real ``dramatiq`` worker (2 processes, 4 threads each, Redis broker) running
``examples/dramatiq_app.py`` with :class:`SankofaMiddleware`, against the reference server in its own process at the engine's
default rate limit: every message's event stored in far fewer requests than messages, no 429,
the sender's identity followed, everything delivered when the worker stops (SIGTERM)."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

from ..e2e.external_server import ExternalServer
from .components import require_module
from .conftest import EXAMPLES
from .job_processes import Background, job_env, run_script

require_module("dramatiq")
require_module("redis")

MESSAGES = 300

PRODUCER = f"""
import json
import sankofa_sdk
import dramatiq_app

client = sankofa_sdk.init()
messages = [dramatiq_app.sync_order.send(n) for n in range({MESSAGES})]
with client.context("user_signed_in"):  # a signed-in user's request sends a message
    identified = dramatiq_app.send_invoice.send(42)
for message in messages:
    message.get_result(block=True, timeout=120_000)
print(json.dumps({{"identified": identified.get_result(block=True, timeout=60_000)}}))
"""


def test_a_dramatiq_worker_delivers_every_message_in_few_requests(
    tmp_path: Path, engine: ExternalServer, redis_url: str
) -> None:
    shutil.copy(EXAMPLES / "dramatiq_app.py", tmp_path / "dramatiq_app.py")
    env = job_env(tmp_path, engine, redis_url)
    worker = Background(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "dramatiq_app",
            "--processes",
            "2",
            "--threads",
            "4",
        ],
        tmp_path,
        env,
        "worker",
    )
    try:
        ran = run_script(PRODUCER, tmp_path, env, timeout=180)
    finally:
        code = worker.stop(signal.SIGTERM)  # each worker process stops, then the main one
    assert code == 0, worker.output()[-5000:]
    assert ran["identified"] == "user_signed_in"

    assert engine.wait_until_applied(30)
    stats = engine.stats()
    assert stats["events"] == MESSAGES + 1, (stats, worker.output()[-5000:])
    assert stats["duplicate_insert_ids"] == 0
    assert stats["rate_limited"] == 0, stats
    assert stats["ingest_requests"] <= MESSAGES // 10, stats
    events = engine._call("GET", "people/user_signed_in/events")["events"]
    assert [event["event_name"] for event in events] == ["Invoice Sent"]
