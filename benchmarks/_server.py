"""Figure 6's server side: the reference server in a process of its own, driven over stdin.

``python -m benchmarks._server`` starts ``ReferenceServer(rate_limit=None)`` and prints
``{"url", "api_key"}``. Then each line on stdin is a command, answered with one JSON line:

- ``{"op": "wait", "timeout": S}``: ``server.wait_until_applied(S)``, then the time
  (``time.monotonic()``, comparable across processes on Linux) and ``server.stats()``;
- ``{"op": "stats"}``: ``server.stats()``.

It stops when stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def main() -> None:
    from sankofa_sdk.server import ReferenceServer

    with tempfile.TemporaryDirectory(prefix="sankofa-bench-") as tmp:
        os.chdir(tmp)  # wherever the server puts its SQLite file, it goes away with us
        with ReferenceServer(rate_limit=None) as server:
            print(json.dumps({"url": server.url, "api_key": server.api_key}), flush=True)
            for line in sys.stdin:
                command = json.loads(line)
                if command["op"] == "wait":
                    returned = server.wait_until_applied(command["timeout"])
                    answer = {"t": time.monotonic(), "returned": returned}
                else:
                    answer = {"t": time.monotonic()}
                answer["stats"] = server.stats()
                print(json.dumps(_jsonable(answer)), flush=True)
        os.chdir("/")


if __name__ == "__main__":
    main()
