"""Real job-runner processes for the tests: a worker started as its users start it (``celery
worker``, ``rq worker``, ``dramatiq``), an app module written for the test, a producer script.

Every process gets the reference server and Redis through the environment, as an app would:
``SANKOFA_API_KEY``, ``SANKOFA_HOST``, ``REDIS_URL`` (and ``SANKOFA_SPOOL_DIR`` when a test
gives one). Their output goes to a file, read when they have ended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Optional

from ..e2e.external_server import ExternalServer

ROOT = Path(__file__).resolve().parents[2]


def job_env(folder: Path, engine: ExternalServer, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANKOFA_")}
    env.update(
        PYTHONPATH=f"{folder}{os.pathsep}{ROOT}",
        SANKOFA_API_KEY=engine.api_key,
        SANKOFA_HOST=engine.url,
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def run_script(source: str, folder: Path, env: dict[str, str], timeout: float) -> Any:
    """Run ``source`` with Python in ``folder``; what it printed last, read as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


class Background:
    """A long-running process (a worker), its output in a file; :meth:`stop` ends it."""

    def __init__(self, args: list[str], folder: Path, env: dict[str, str], name: str) -> None:
        self._log_path = folder / f"{name}.log"
        self._log = open(self._log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self._log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself (a burst worker); its exit code."""
        try:
            return self.proc.wait(timeout)
        finally:
            self._close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> Optional[int]:
        """Send ``sig`` (SIGTERM: a warm shutdown) and wait for the end; its exit code."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.kill()
            return self.proc.returncode
        finally:
            self._close()

    def kill(self) -> None:
        """Kill its whole process group if it is still running (cleanup after a failure)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def _close(self) -> None:
        if not self._log.closed:
            self._log.close()
