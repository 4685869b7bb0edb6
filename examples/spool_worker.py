"""A worker that can be killed at any moment without losing what it tracked: ``spool_dir``.

Containers are stopped after their grace period, the OOM killer sends SIGKILL, a serverless
sandbox is frozen and reaped: none of them runs ``atexit``. With ``spool_dir`` every call is on
disk before it returns, and the next process on the same directory delivers what the dead one
left (in flight batches are resent with their Idempotency-Key, so nothing is applied twice).

    python examples/spool_worker.py --embedded          # the whole story against a local server
    SANKOFA_SPOOL_DIR=/var/lib/myapp/sankofa python examples/spool_worker.py --count 1000 work

``--embedded`` starts the bundled reference server (down at first), runs a worker process
that tracks 5,000 events and is killed with SIGKILL, brings the server up, and lets a second
process on the same spool deliver everything; then it prints what the server stored.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile

import sankofa_sdk


def work(count: int) -> None:
    """Track ``count`` jobs, then die the hard way (the point of the example)."""
    client = sankofa_sdk.Client(os.environ["SANKOFA_API_KEY"], os.environ["SANKOFA_HOST"])
    for job in range(count):
        client.track("Job Done", {"job": job}, distinct_id="worker_42")
    print(f"worker: {count} calls returned; killing myself with SIGKILL", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def deliver_leftovers() -> None:
    """A new process on the same spool_dir: it adopts what the dead one left."""
    with sankofa_sdk.Client(os.environ["SANKOFA_API_KEY"], os.environ["SANKOFA_HOST"]) as client:
        client.flush(timeout=30)
        print(f"next process: delivered {client.stats()['delivered']} left behind", flush=True)


def embedded(count: int) -> int:
    from sankofa_sdk.server import ReferenceServer

    spool = tempfile.mkdtemp(prefix="sankofa-spool-")
    with ReferenceServer() as server:
        server.faults.fail_for(3600, status=503)  # the engine is down while the worker runs
        env = {
            **os.environ,
            "SANKOFA_API_KEY": server.api_key,
            "SANKOFA_HOST": server.url,
            "SANKOFA_SPOOL_DIR": spool,
        }
        me = [sys.executable, os.path.abspath(__file__)]
        subprocess.run([*me, "--count", str(count), "work"], env=env, check=False)
        print(f"spool after the kill: {sorted(os.listdir(spool))}")
        server.faults.clear()  # the engine is back
        subprocess.run([*me, "deliver"], env=env, check=True)
        server.wait_until_applied()
        stats = server.stats()
        print(
            f"server stored {stats['events']} of {count} events, "
            f"{stats['duplicate_insert_ids']} twice; spool now: {sorted(os.listdir(spool))}"
        )
        return 0 if stats["events"] == count and not stats["duplicate_insert_ids"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedded", action="store_true", help="run the whole story locally")
    parser.add_argument("--count", type=int, default=5_000, help="events to track (5,000)")
    parser.add_argument("command", nargs="?", choices=["work", "deliver"])
    args = parser.parse_args()
    if args.embedded:
        return embedded(args.count)
    if args.command == "work":
        work(args.count)
    elif args.command == "deliver":
        deliver_leftovers()
    else:
        parser.error("give --embedded, or work COUNT / deliver")
    return 0


if __name__ == "__main__":
    sys.exit(main())
