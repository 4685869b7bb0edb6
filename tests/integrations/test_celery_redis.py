"""A real Celery worker as users run it: prefork, 2 children recycled every 100 tasks, a Redis
broker, the reference server in its own process at the engine's default rate limit.

The tasks flush nothing: each child's client delivers on its own cadence, and the child's end
(every 100 tasks, and the warm shutdown) delivers what it still holds.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from ..e2e.external_server import ExternalServer
from .components import require_module
from .job_processes import Background, job_env, run_script, write_module

require_module("celery")
require_module("redis")

TASKS = 1_000

APP = """
import os
from celery import Celery
import sankofa_sdk
from sankofa_sdk.integrations.celery import setup_celery

redis = os.environ["REDIS_URL"]
app = Celery("jobs_app", broker=redis + "/0", backend=redis + "/1")
app.conf.worker_hijack_root_logger = False
app.conf.worker_max_tasks_per_child = 100
sankofa_sdk.init()  # from SANKOFA_API_KEY / SANKOFA_HOST, before the pool forks
setup_celery()


@app.task
def work(n):
    sankofa_sdk.track("Task Ran", {"n": n, "pid": os.getpid()}, distinct_id=f"user_{n % 20}")
    return os.getpid()


@app.task
def on_behalf():
    sankofa_sdk.track("Invoice Sent")  # no distinct_id: the identity the task was sent from
    return sankofa_sdk.get_client().distinct_id
"""

PRODUCER = f"""
import json
import sankofa_sdk
import jobs_app

client = sankofa_sdk.init()
results = [jobs_app.work.delay(n) for n in range({TASKS})]
with client.context("user_signed_in"):  # a web request of a signed-in user, say
    identified = jobs_app.on_behalf.delay()
pids = sorted({{r.get(timeout=120) for r in results}})
print(json.dumps({{"pids": pids, "identified": identified.get(timeout=60)}}))
"""


def test_a_prefork_worker_delivers_every_task_in_few_requests_and_no_429(
    tmp_path: Path, engine: ExternalServer, redis_url: str
) -> None:
    write_module(tmp_path, "jobs_app", APP)
    env = job_env(tmp_path, engine, redis_url)
    worker = Background(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "jobs_app",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=warning",
        ],
        tmp_path,
        env,
        "worker",
    )
    try:
        ran = run_script(PRODUCER, tmp_path, env, timeout=240)
    finally:
        code = worker.stop(signal.SIGTERM)  # a warm shutdown: the children end, then the worker
    assert code == 0, worker.output()[-5000:]
    assert ran["identified"] == "user_signed_in"
    # 2 children at a time, each ending after 100 tasks: at least 10 of them ran the tasks.
    assert len(ran["pids"]) >= TASKS // 100

    assert engine.wait_until_applied(30)
    stats = engine.stats()
    assert stats["events"] == TASKS + 1, (stats, worker.output()[-5000:])
    assert stats["duplicate_insert_ids"] == 0
    assert stats["rate_limited"] == 0, stats
    # No request per task: each child sends a batch now and then, and one as it ends.
    assert stats["ingest_requests"] <= TASKS // 10, stats
    assert [e["event_name"] for e in engine_events(engine, "user_signed_in")] == ["Invoice Sent"]


def engine_events(engine: ExternalServer, distinct_id: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = engine._call("GET", f"people/{distinct_id}/events")["events"]
    return events


KILLED_APP = """
import os, signal
from celery import Celery
import sankofa_sdk
from sankofa_sdk.integrations.celery import setup_celery

redis = os.environ["REDIS_URL"]
app = Celery("killed_app", broker=redis + "/0", backend=redis + "/1")
app.conf.worker_hijack_root_logger = False
sankofa_sdk.init(flush_interval=60)  # with SANKOFA_SPOOL_DIR: nothing goes before the kill
setup_celery()


@app.task
def tracked_then_killed():
    sankofa_sdk.track("Import Started", distinct_id="user_killed")
    os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer, say: no Python code runs after
"""

KILL_PRODUCER = """
import json
import killed_app

result = killed_app.tracked_then_killed.delay()
result.get(timeout=60, propagate=False)  # the worker reports the child it lost
print(json.dumps({"state": result.state}))
"""


def test_with_a_spool_what_a_killed_child_tracked_is_delivered_by_the_worker(
    tmp_path: Path, engine: ExternalServer, redis_url: str
) -> None:
    write_module(tmp_path, "killed_app", KILLED_APP)
    env = job_env(tmp_path, engine, redis_url, SANKOFA_SPOOL_DIR=str(tmp_path / "spool"))
    worker = Background(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "killed_app",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=error",
        ],
        tmp_path,
        env,
        "worker",
    )
    try:
        ran = run_script(KILL_PRODUCER, tmp_path, env, timeout=120)
    finally:
        code = worker.stop(signal.SIGTERM)
    assert code == 0, worker.output()[-5000:]
    assert ran == {"state": "FAILURE"}
    # The main process's client took the dead child's directory over as the worker stopped.
    assert engine.wait_until_applied(30)
    assert [e["event_name"] for e in engine_events(engine, "user_killed")] == ["Import Started"]
    assert list((tmp_path / "spool").iterdir()) == []
