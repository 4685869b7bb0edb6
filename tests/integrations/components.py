"""Real components the background-job tests run (Redis, Celery, RQ, Dramatiq): found, or the
test is skipped on a developer's machine and FAILS in CI (``CI=true``), which installs them all
(``.ci/run``: apt for redis-server, the ``integrations`` extra for the Python packages)."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import NoReturn

import pytest


def required_here() -> bool:
    """In CI a missing component is a failure: a skip there would hide a missing install step."""
    return os.environ.get("CI", "").strip().lower() == "true"


def missing(what: str) -> NoReturn:
    if required_here():
        pytest.fail(f"{what} is missing, and CI must run these tests (see .ci/run)")
    pytest.skip(f"{what} is missing", allow_module_level=True)


def require_module(name: str) -> ModuleType:
    """Import ``name``, or skip (fail in CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"the Python package {name} ({exc}; pip install -e '.[integrations]')")


def require_program(name: str) -> str:
    """The path of program ``name``, or skip (fail in CI)."""
    path = shutil.which(name)
    if path is None:
        missing(f"the program {name} (apt-get install {name})")
    return path


class RedisServer:
    """``redis-server`` on a free port of 127.0.0.1, nothing kept on disk; :meth:`stop` ends it."""

    def __init__(self, program: str) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                program,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--loglevel",
                "notice",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Ready when it says so: its log is read line by line (blocking), not polled.
        seen: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            self.proc.wait(10)
            raise RuntimeError("redis-server did not start:\n" + "".join(seen[-20:]))
        self._drain = _drain_in_background(self.proc)

    def flush(self) -> None:
        """Forget every key (between tests)."""
        redis = importlib.import_module("redis")
        with redis.Redis.from_url(self.url) as connection:
            connection.flushall()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._drain.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(require_program("redis-server"))
    try:
        yield server
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _drain_in_background(proc: subprocess.Popen[str]) -> threading.Thread:
    """Keep reading the server's log, so it never blocks on a full pipe."""
    stream = proc.stdout
    assert stream is not None
    thread = threading.Thread(target=stream.read, daemon=True)
    thread.start()
    return thread
