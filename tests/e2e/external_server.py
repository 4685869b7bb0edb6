"""The reference server in its own process, for tests about delivery.

In one process the server's threads and the clients' share one interpreter lock, which is not
what a client meets in production; here the server runs as ``python -m sankofa_sdk.server``
(the CLI a user runs) and the tests talk to it over HTTP only: the read API for what arrived
and ``POST /reference/v1/faults`` to break it.

Extra CLI arguments pass through: ``ExternalServer(log, "--no-dedup")`` applies every request as
the engine does (a resent batch is stored again); :meth:`ExternalServer.repeated_keys` then says
how many requests were resends (it counts them with or without ``--no-dedup``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import requests

API_KEY = "sk_live_e2e_0123456789abcdef0123456789"


class ExternalServer:
    def __init__(self, log: Path, *args: str) -> None:
        self._log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sankofa_sdk.server",
                "--port",
                "0",
                "--quiet",
                "--api-key",
                API_KEY,
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert match, f"server did not start: {first!r} {log.read_text(errors='replace')}"
        self.url = match.group(1)
        self.api_key = API_KEY
        # Keep reading its stdout so it never blocks on a full pipe.
        self._reader = threading.Thread(target=self.proc.stdout.read, daemon=True)
        self._reader.start()
        self._session = requests.Session()
        self._session.headers["x-api-key"] = API_KEY

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._session.request(
            method, f"{self.url}/reference/v1/{path}", timeout=60, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def faults(self, **switch: Any) -> None:
        self._call("POST", "faults", json=switch)

    def stats(self) -> dict[str, int]:
        """The live environment's counts and the server-wide counters (``repeated_keys``,
        ``idempotent_replays``, ``requests``...), as ``ReferenceServer.stats()``."""
        return self._call("GET", "stats")  # type: ignore[no-any-return]

    def repeated_keys(self) -> int:
        """Ingestion requests whose ``Idempotency-Key`` an earlier request carried: resends."""
        return int(self.stats()["repeated_keys"])

    def wait_until_applied(self, timeout: float = 30) -> bool:
        return bool(self._call("POST", f"wait?timeout={timeout}")["applied"])

    def log(self) -> str:
        """What the server wrote to stderr so far (errors; requests are not logged)."""
        self._log.flush()
        return self._log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)  # it reads to the end of the pipe, which the exit closed
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        self._session.close()
        return self.proc.returncode
