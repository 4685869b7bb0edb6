"""A web app stopped by SIGTERM right after its last request delivers what it queued.

Real servers in their own processes (uvicorn, hypercorn, gunicorn with uvicorn workers, and a
plain ``python app.py``), the reference server in another, 200 webhooks, then SIGTERM the moment
the last one is answered. uvicorn raises SIGTERM again after its graceful shutdown, so the
process dies by the signal and no ``atexit`` hook runs: before, 51 of 200 were stored and
nothing was said. The apps' clients wait 60 s before sending anything on their own, so every
operation is still queued when the signal comes: what is stored was delivered by the shutdown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from .external_server import ExternalServer

pytest.importorskip("uvicorn")

WEBHOOKS = 200

# The README's FastAPI snippet with its webhook handler (module-level client, the middleware).
MIDDLEWARE_APP = """
import os, sys
from fastapi import FastAPI, Request
import sankofa_sdk
from sankofa_sdk.integrations import SankofaASGIMiddleware

sankofa_sdk.init(flush_interval=60, flush_at=5_000)  # SANKOFA_API_KEY / SANKOFA_HOST
app = FastAPI()
app.add_middleware(SankofaASGIMiddleware, anonymous_id_cookie="sankofa_anon")

@app.post("/webhooks/billing")
async def billing_webhook(request: Request) -> dict:
    event = await request.json()
    user_id = event["customer"]
    sankofa_sdk.people_set({"plan": event["plan"]}, distinct_id=user_id)
    sankofa_sdk.track("Subscription Changed", {"plan": event["plan"]}, distinct_id=user_id)
    return {}

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

# Without the middleware: the README's lifespan.
LIFESPAN_APP = """
import os, sys
from contextlib import asynccontextmanager
from fastapi import FastAPI, Request
import sankofa_sdk

client = sankofa_sdk.Client(flush_interval=60, flush_at=5_000)

@asynccontextmanager
async def lifespan(app):
    yield
    await client.ashutdown()   # delivers what is queued, off the event loop

app = FastAPI(lifespan=lifespan)

@app.post("/webhooks/billing")
async def billing_webhook(request: Request) -> dict:
    event = await request.json()
    user_id = event["customer"]
    client.people_set({"plan": event["plan"]}, distinct_id=user_id)
    client.track("Subscription Changed", {"plan": event["plan"]}, distinct_id=user_id)
    return {}
"""

# No server at all: a worker loop that a container stop ends with SIGTERM.
PLAIN_WORKER = """
import sys, time
import sankofa_sdk

client = sankofa_sdk.Client(flush_interval=60, flush_at=5_000)
for i in range(200):
    user_id = f"customer_{i}"
    client.people_set({"plan": "pro"}, distinct_id=user_id)
    client.track("Subscription Changed", {"plan": "pro"}, distinct_id=user_id)
print("ready", flush=True)
while True:
    time.sleep(1)   # waiting for more work when the container is stopped
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def engine(external: Callable[..., ExternalServer]) -> Iterator[ExternalServer]:
    yield external()  # at the engine's default rate limit


def run_then_sigterm(
    app_source: str, command: list[str], engine: ExternalServer, app_dir: Path, port: int = 0
) -> tuple[int, str]:
    """Write ``app.py``, start ``command`` in ``app_dir``; with a ``port``, serve the webhooks,
    else wait for the app to print "ready"; then SIGTERM it. Its exit status and stderr."""
    (app_dir / "app.py").write_text(textwrap.dedent(app_source), encoding="utf-8")
    pythonpath = [str(app_dir), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "SANKOFA_API_KEY": engine.api_key,
        "SANKOFA_HOST": engine.url,
        "PYTHONPATH": os.pathsep.join(filter(None, pythonpath)),
    }
    proc = subprocess.Popen(
        command,
        cwd=app_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the SIGTERM goes to the server (gunicorn: its arbiter)
    )
    try:
        if port:
            wait_until_serving(port, proc)
            send_webhooks(port)
        else:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stderr


def wait_until_serving(port: int, proc: subprocess.Popen[str]) -> None:
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.communicate()}")
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)  # the server process is starting; nothing of ours to wait on
    raise AssertionError("the server did not start in 60 s")


def send_webhooks(port: int) -> None:
    with requests.Session() as session:
        for i in range(WEBHOOKS):
            answer = session.post(
                f"http://127.0.0.1:{port}/webhooks/billing",
                json={"customer": f"customer_{i}", "plan": "pro"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text


def assert_all_stored(engine: ExternalServer, stderr: str) -> None:
    assert engine.wait_until_applied()
    stats = engine.stats()
    assert (stats["events"], stats["people"]) == (WEBHOOKS, WEBHOOKS), stderr[-3000:]


SERVERS = {
    "uvicorn": lambda port: [
        sys.executable, "-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning"
    ],
    "hypercorn": lambda port: [
        sys.executable, "-m", "hypercorn", "app:app", "--bind", f"127.0.0.1:{port}"
    ],
    "gunicorn-uvicorn-worker": lambda port: [
        sys.executable, "-m", "gunicorn", "app:app", "-k", "uvicorn.workers.UvicornWorker",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning",
    ],
    "python-app.py": lambda port: [sys.executable, "app.py", str(port)],
}  # fmt: skip


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_sigterm_after_the_last_webhook_delivers_everything(
    server: str, engine: ExternalServer, tmp_path: Path
) -> None:
    port = free_port()
    code, stderr = run_then_sigterm(MIDDLEWARE_APP, SERVERS[server](port), engine, tmp_path, port)
    assert code in (0, -signal.SIGTERM), stderr
    assert_all_stored(engine, stderr)


def test_sigterm_with_the_lifespan_instead_of_the_middleware(
    engine: ExternalServer, tmp_path: Path
) -> None:
    port = free_port()
    code, stderr = run_then_sigterm(LIFESPAN_APP, SERVERS["uvicorn"](port), engine, tmp_path, port)
    assert code == -signal.SIGTERM, stderr  # uvicorn re-raises it: the process dies by it
    assert_all_stored(engine, stderr)


def test_a_plain_process_stopped_by_sigterm_delivers_then_dies_by_it(
    engine: ExternalServer, tmp_path: Path
) -> None:
    code, stderr = run_then_sigterm(PLAIN_WORKER, [sys.executable, "app.py"], engine, tmp_path)
    assert code == -signal.SIGTERM, stderr  # as without the SDK, only after delivering
    assert_all_stored(engine, stderr)


def test_handle_sigterm_false_leaves_the_default(engine: ExternalServer, tmp_path: Path) -> None:
    script = PLAIN_WORKER.replace("flush_at=5_000)", "flush_at=5_000, handle_sigterm=False)")
    code, _ = run_then_sigterm(script, [sys.executable, "app.py"], engine, tmp_path)
    assert code == -signal.SIGTERM
    assert engine.wait_until_applied()
    assert engine.stats()["events"] == 0  # the opt-out: dies at once, as Python's default
