"""A real ``rq worker --burst`` with :class:`SankofaWorker` on Redis, against the reference server
in its own process at the engine's default rate limit.

The jobs are ``examples/rq_jobs.py``'s. RQ forks a work horse per job and ends it with ``os._exit``. With ``spool_dir`` the horses only
write, and the worker delivers for all of them: every job's event stored, in far fewer requests
than jobs, also for a horse killed outright.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import requests

from sankofa_sdk import Client

from ..e2e.external_server import ExternalServer
from .components import require_module
from .conftest import EXAMPLES
from .job_processes import Background, job_env, run_script, write_module

require_module("rq")
require_module("redis")

JOBS = 300

KILLED = """
import os
import signal
import sankofa_sdk


def killed():
    sankofa_sdk.track("Horse Killed", distinct_id="user_killed")
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
"""

# The web app's side: examples/rq_jobs.py's queue, inside a signed-in user's identity.
PRODUCER = """
import json, os
import sankofa_sdk
import killed_jobs, rq_jobs

client = sankofa_sdk.init()  # the web app's client: its identity is what jobs carry
queue = rq_jobs.queue()
for n in range(int(os.environ["JOBS"])):
    queue.enqueue(rq_jobs.sync_order, n)
with client.context("user_signed_in"):  # a signed-in user's request enqueues a job
    queue.enqueue(rq_jobs.send_invoice, 42)
if os.environ.get("KILL_ONE"):
    queue.enqueue(killed_jobs.killed)
print(json.dumps({"enqueued": len(queue)}))
"""


def app(folder: Path) -> None:
    shutil.copy(EXAMPLES / "rq_jobs.py", folder / "rq_jobs.py")
    write_module(folder, "killed_jobs", KILLED)


def burst_worker(
    folder: Path,
    env: dict[str, str],
    worker_class: str = "sankofa_sdk.integrations.rq.SankofaWorker",
) -> Background:
    return Background(
        [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--burst",
            "--url",
            env["REDIS_URL"],
            "--worker-class",
            worker_class,
            "--logging_level",
            "WARNING",
        ],
        folder,
        env,
        "worker",
    )


def test_a_burst_worker_delivers_every_job_in_few_requests(
    tmp_path: Path, engine: ExternalServer, redis_url: str
) -> None:
    app(tmp_path)
    spool = tmp_path / "spool"
    env = job_env(tmp_path, engine, redis_url, SANKOFA_SPOOL_DIR=str(spool))
    enqueued = run_script(PRODUCER, tmp_path, {**env, "JOBS": str(JOBS), "KILL_ONE": "1"}, 60)
    assert enqueued == {"enqueued": JOBS + 2}

    worker = burst_worker(tmp_path, env)
    try:
        code = worker.wait(timeout=240)
    finally:
        worker.kill()
    output = worker.output()
    assert code == 0, output[-5000:]

    assert engine.wait_until_applied(30)
    stats = engine.stats()
    assert stats["events"] == JOBS + 2, (stats, output[-5000:])
    assert stats["duplicate_insert_ids"] == 0
    assert stats["rate_limited"] == 0, stats
    assert stats["ingest_requests"] <= JOBS // 10, stats  # no request per job
    assert event_names(engine, "user_signed_in") == ["Invoice Sent"]
    assert event_names(engine, "user_killed") == ["Horse Killed"]
    assert list(spool.iterdir()) == []  # every horse's directory delivered and removed


def test_without_a_spool_each_horse_delivers_before_it_ends(
    tmp_path: Path, engine: ExternalServer, redis_url: str
) -> None:
    app(tmp_path)
    env = job_env(tmp_path, engine, redis_url)
    assert run_script(PRODUCER, tmp_path, {**env, "JOBS": "3"}, 60) == {"enqueued": 4}

    worker = burst_worker(tmp_path, env)
    try:
        code = worker.wait(timeout=120)
    finally:
        worker.kill()
    output = worker.output()
    assert code == 0, output[-5000:]
    assert "without spool_dir each delivers what it tracked" in output
    assert engine.wait_until_applied(30)
    assert engine.stats()["events"] == 4, output[-5000:]
    assert event_names(engine, "user_signed_in") == ["Invoice Sent"]


def event_names(engine: ExternalServer, distinct_id: str) -> list[str]:
    events = engine._call("GET", f"people/{distinct_id}/events")["events"]
    return [event["event_name"] for event in reversed(events)]


NO_PROPAGATION = """
from sankofa_sdk.integrations.rq import SankofaWorker


class Worker(SankofaWorker):
    propagate_identity = False
"""


def test_a_worker_subclass_can_run_every_job_in_a_fresh_identity(
    tmp_path: Path, engine: ExternalServer, redis_url: str
) -> None:
    app(tmp_path)
    write_module(tmp_path, "no_propagation", NO_PROPAGATION)
    env = job_env(tmp_path, engine, redis_url, SANKOFA_SPOOL_DIR=str(tmp_path / "spool"))
    assert run_script(PRODUCER, tmp_path, {**env, "JOBS": "0"}, 60) == {"enqueued": 1}
    worker = burst_worker(tmp_path, env, "no_propagation.Worker")
    try:
        code = worker.wait(timeout=120)
    finally:
        worker.kill()
    assert code == 0, worker.output()[-5000:]
    assert engine.wait_until_applied(30)
    assert engine.stats()["events"] == 1
    # Ran anonymously: nobody by that id was stored.
    with pytest.raises(requests.HTTPError, match="404"):
        event_names(engine, "user_signed_in")


def test_sankofa_queue_puts_the_identity_in_the_jobs_meta(redis_url: str, client: Client) -> None:
    from redis import Redis

    from sankofa_sdk.integrations.rq import SankofaQueue

    with Redis.from_url(redis_url) as connection:
        queue = SankofaQueue(connection=connection, sankofa_client=client)
        outside = queue.enqueue("rq_jobs.send_invoice", 1)
        with client.context("user_60", anonymous_id="anon-60"):
            inside = queue.enqueue("rq_jobs.send_invoice", 2)
            own = queue.enqueue("rq_jobs.send_invoice", 3, meta={"sankofa_identity": {}})
        assert "sankofa_identity" not in outside.meta
        assert inside.meta["sankofa_identity"] == {
            "distinct_id": "user_60",
            "anonymous_id": "anon-60",
        }
        assert own.meta["sankofa_identity"] == {}  # the caller's own wins
