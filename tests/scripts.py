"""Running a client in a fresh Python process, for tests of exit, signals and fork."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PRELUDE = '''\
import multiprocessing, os, signal, sys, time
import sankofa_sdk


def run_in_forked_children(target, how, count=3):
    """Call target(n) in `count` children forked with os.fork or multiprocessing's fork."""
    if how == "os.fork":
        pids = []
        for n in range(count):
            pid = os.fork()
            if pid == 0:
                target(n)
                os._exit(0)
            pids.append(pid)
        assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
    else:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=target, args=(n,)) for n in range(count)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        assert all(p.exitcode == 0 for p in procs)
'''


def run_script(body: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (indented as written in the test) after :data:`PRELUDE`; no stdin."""
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
