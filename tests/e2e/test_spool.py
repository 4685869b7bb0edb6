"""The spool (issue: survive the process): accepted calls outlive kill -9, SIGTERM, os._exit.

Every test runs real processes: the reference server in its own process, clients that are
killed, and a client that comes after them on the same ``spool_dir``. What was stored is read
from the server's read API; each event carries its round and sequence number, so "stored
exactly once" is checked per event.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from sankofa_sdk._serialize import Operation
from sankofa_sdk._spool.calls import pack_call
from sankofa_sdk._spool.directory import CALL, SpoolDirectory

from .external_server import ExternalServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

CHILD = """
import os, resource, signal, sys, time
import sankofa_sdk
if os.environ.get("SPOOL_REWRITE_AT"):  # rewrite batches.log this often (bytes), not at 8 MiB
    import sankofa_sdk._delivery.spool_source as spool_source
    spool_source.COMPACT_BATCHES_BYTES = int(os.environ["SPOOL_REWRITE_AT"])

url, key, spool, round_id, count, ending = sys.argv[1:7]
count = int(count)
if round_id == "full_disk":
    # A disk that fills up: writes past 64 KiB fail (EFBIG) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
if round_id == "read_only" and os.getuid() == 0:
    os.setuid(65534)  # root ignores permissions; nobody does not
errors = []
client = sankofa_sdk.Client(key, url, spool_dir=spool, on_error=lambda e, op: errors.append(e))
started = time.monotonic()
for n in range(count):
    client.track("Spooled", {"round": round_id, "seq": n}, distinct_id="user_" + round_id)
    if n % 100 == 99:
        print("returned", n + 1, flush=True)  # a lower bound of the calls that returned
print("returned", count, "in", time.monotonic() - started, flush=True)
if ending == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
elif ending == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)  # Python's default handler: no atexit, no flush
elif ending == "os_exit":
    os._exit(0)
elif ending == "hang":
    time.sleep(600)  # killed from outside at a random moment
else:
    ok = client.flush(timeout=60)
    stats = client.stats()
    client.shutdown()
    print("result", __import__("json").dumps({"flushed": ok, "stats": stats,
          "errors": [getattr(e, "reason", str(e)) for e in errors]}), flush=True)
"""


RETURNED = re.compile(r"returned (\d+)\b")


class Child:
    def __init__(
        self,
        server: ExternalServer,
        spool: Path,
        round_id: str,
        count: int,
        ending: str,
        rewrite_at: int = 0,
    ) -> None:
        env = {**os.environ, "SPOOL_REWRITE_AT": str(rewrite_at) if rewrite_at else ""}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(CHILD),
                server.url,
                server.api_key,
                str(spool),
                round_id,
                str(count),
                ending,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def returned(self, out: str) -> int:
        """The most calls the child said had returned (a kill can cut its last line short)."""
        lines = out.split("\n")[:-1]  # only whole lines
        counts = [int(m.group(1)) for m in map(RETURNED.match, lines) if m is not None]
        return max(counts, default=0)

    def result(self, out: str) -> dict[str, Any]:
        line = [line for line in out.splitlines() if line.startswith("result ")][-1]
        return json.loads(line[len("result ") :])  # type: ignore[no-any-return]


def events(server: ExternalServer) -> list[dict[str, Any]]:
    """Every stored event, page by page (the read API gives at most 500 at a time)."""
    found: list[dict[str, Any]] = []
    with requests.Session() as session:
        session.headers["x-api-key"] = server.api_key
        while True:
            response = session.get(
                f"{server.url}/reference/v1/events?limit=500&offset={len(found)}", timeout=60
            )
            response.raise_for_status()
            page = response.json()["events"]
            found.extend(page)
            if len(page) < 500:
                return found


def stored_by_round(server: ExternalServer) -> dict[str, Counter[int]]:
    assert server.wait_until_applied(timeout=30)
    rounds: dict[str, Counter[int]] = {}
    for event in events(server):
        props = event["properties"]
        rounds.setdefault(props["round"], Counter())[props["seq"]] += 1
    return rounds


def drain(server: ExternalServer, spool: Path) -> dict[str, Any]:
    """A client that comes after: it adopts what the dead ones left and delivers it."""
    child = Child(server, spool, "drain", 0, "flush")
    code, out, err = child.finish()
    assert code == 0, err
    return child.result(out)


def assert_one_insert_id_per_call(server: ExternalServer) -> None:
    """Every stored copy of a call carries the $insert_id it got when the call returned."""
    ids: dict[tuple[str, int], set[str]] = {}
    for event in events(server):
        props = event["properties"]
        ids.setdefault((props["round"], props["seq"]), set()).add(props["$insert_id"])
    several = {call: found for call, found in ids.items() if len(found) > 1}
    assert not several, f"calls stored under several $insert_ids: {list(several.items())[:5]}"


def assert_exactly_once(seqs: Counter[int], at_least: int) -> None:
    """Stored: 0..M each once, with M + 1 >= the calls known to have returned."""
    doubled = [seq for seq, n in seqs.items() if n > 1]
    assert not doubled, f"stored twice: {doubled[:10]}"
    top = max(seqs, default=-1)
    missing = [seq for seq in range(top + 1) if seq not in seqs]
    assert not missing, f"lost: {missing[:10]}"
    assert top + 1 >= at_least, f"only {top + 1} stored of {at_least} returned"


@pytest.mark.parametrize("ending", ["kill", "sigterm", "os_exit"])
def test_calls_that_returned_survive_the_process_while_the_server_is_down(
    external: Callable[..., ExternalServer], tmp_path: Path, ending: str
) -> None:
    server = external()
    server.faults(fail_for=3600, status=503)  # the engine is down while the process lives
    spool = tmp_path / "spool"
    child = Child(server, spool, ending, 2_000, ending)
    code, out, err = child.finish()
    assert code != 0 or ending == "os_exit", err
    assert child.returned(out) == 2_000
    server.faults(clear=True)
    drain(server, spool)
    assert_exactly_once(stored_by_round(server)[ending], 2_000)
    assert server.stats()["duplicate_insert_ids"] == 0
    assert not any(spool.iterdir()), "a delivered spool directory is removed"


def test_kills_at_random_moments_lose_nothing_and_apply_nothing_twice(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    kill_at_random(external(), tmp_path / "spool", kills=10, seed=1)


def test_kills_against_an_engine_that_does_not_deduplicate(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    # The engine applies a resent batch again: only a batch whose answer a kill cut may be
    # resent (at most one per kill), and batches.log is rewritten after every batch, so
    # kills land right after rewrites.
    kill_at_random(
        external("--no-dedup"), tmp_path / "spool", kills=10, seed=2, rewrite_at=1, dedup=False
    )


@pytest.mark.stress
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_stress_many_more_kill_points(
    external: Callable[..., ExternalServer], tmp_path: Path, seed: int
) -> None:
    kill_at_random(external(), tmp_path / "spool", kills=100, seed=seed)


@pytest.mark.stress
@pytest.mark.parametrize("seed", [21, 22])
def test_stress_many_more_kill_points_without_deduplication(
    external: Callable[..., ExternalServer], tmp_path: Path, seed: int
) -> None:
    kill_at_random(
        external("--no-dedup"), tmp_path / "spool", kills=100, seed=seed, rewrite_at=1, dedup=False
    )


def kill_at_random(
    server: ExternalServer,
    spool: Path,
    *,
    kills: int,
    seed: int,
    rewrite_at: int = 0,
    dedup: bool = True,
) -> None:
    # Requests take 0.1 s, so a kill often lands with a batch in flight: the next process must
    # resend it with the same Idempotency-Key (applied once), not lose it or apply it twice.
    server.faults(latency=0.1)
    rng = random.Random(seed)
    returned: dict[str, int] = {}
    for n in range(kills):
        round_id = f"r{n}"
        child = Child(server, spool, round_id, 3_000, "hang", rewrite_at)
        assert child.proc.stdout is not None
        child.proc.stdout.readline()  # it is tracking: the first 100 calls returned
        time.sleep(rng.uniform(0.0, 0.4))  # the kill lands anywhere in what follows
        child.proc.send_signal(signal.SIGKILL)
        _, out, _ = child.finish()
        returned[round_id] = max(100, child.returned(out))
    server.faults(clear=True)
    drain(server, spool)
    stored = stored_by_round(server)
    stats = server.stats()
    assert stats["repeated_after_success"] <= kills, "batches answered 2xx were sent again"
    if dedup:
        for round_id, at_least in returned.items():
            assert_exactly_once(stored.get(round_id, Counter()), at_least)
        assert stats["duplicate_insert_ids"] == 0
    else:
        # What a kill cut in flight may be stored twice (the engine cannot tell); nothing
        # else. Count each call once, and no more copies than the cut resends explain.
        for round_id, at_least in returned.items():
            assert_exactly_once(Counter(stored.get(round_id, Counter()).keys()), at_least)
        extra = sum(n - 1 for seqs in stored.values() for n in seqs.values())
        assert extra == stats["duplicate_insert_ids"]
    assert_one_insert_id_per_call(server)
    assert not any(spool.iterdir()), "a delivered spool directory is removed"


def test_a_long_outage_with_a_spool_drops_nothing(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    server = external()
    server.faults(fail_for=3600, status=503)
    spool = tmp_path / "spool"
    child = Child(server, spool, "outage", 100_000, "kill")
    _, out, err = child.finish(timeout=300)
    assert child.returned(out) == 100_000, err
    server.faults(clear=True)
    result = drain(server, spool)
    assert result["flushed"]
    assert server.wait_until_applied(timeout=60)
    stats = server.stats()  # 100,000 events with 100,000 distinct insert ids: each once
    assert stats["events"] == 100_000 and stats["duplicate_insert_ids"] == 0


def test_processes_sharing_a_spool_dir_adopt_those_that_die(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    share_and_kill_half(external(), tmp_path / "spool", processes=8, seed=7)


@pytest.mark.stress
def test_stress_more_processes_sharing_a_spool_dir(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    share_and_kill_half(external(), tmp_path / "spool", processes=24, seed=8)


def share_and_kill_half(server: ExternalServer, spool: Path, *, processes: int, seed: int) -> None:
    server.faults(latency=0.05)
    rng = random.Random(seed)
    children = {f"p{n}": Child(server, spool, f"p{n}", 3_000, "flush") for n in range(processes)}
    doomed = rng.sample(sorted(children), processes // 2)
    for name in doomed:
        stdout = children[name].proc.stdout
        assert stdout is not None
        for _ in range(rng.randint(1, 20)):
            stdout.readline()
        children[name].proc.send_signal(signal.SIGKILL)
    returned: dict[str, int] = {}
    for name, child in children.items():
        code, out, err = child.finish(timeout=180)
        if name in doomed:
            returned[name] = max(100, child.returned(out))
        else:
            assert code == 0, err
            returned[name] = 3_000
    # The survivors adopt what the dead left while they run; whatever is left when they end is
    # delivered by the next client, like after any restart.
    drain(server, spool)
    stored = stored_by_round(server)
    for name, at_least in returned.items():
        assert_exactly_once(stored.get(name, Counter()), at_least)
    assert server.stats()["duplicate_insert_ids"] == 0


@pytest.mark.parametrize("status", [400, 413])
def test_a_recovered_batch_the_engine_refuses_is_split_and_never_resent_whole(
    external: Callable[..., ExternalServer], tmp_path: Path, status: int
) -> None:
    # A dies while the engine is down, with a batch noted on disk as going out. The engine
    # comes back but refuses the next request (400, 413). B adopts A's directory, resends the
    # noted batch, is refused, and splits it: the halves are applied. C, on the same spool,
    # must find nothing of it: the split and its end were noted where the batch came from.
    server = external("--no-dedup")
    server.faults(fail_for=3600, status=503)
    spool = tmp_path / "spool"
    child = Child(server, spool, "refused", 20_000, "kill")
    _, out, err = child.finish()
    assert child.returned(out) == 20_000, err
    server.faults(clear=True)
    server.faults(fail_next=1, status=status)
    drain(server, spool)  # B
    drain(server, spool)  # C
    assert_exactly_once(stored_by_round(server)["refused"], 20_000)
    stats = server.stats()
    assert stats["events"] == 20_000 and stats["duplicate_insert_ids"] == 0
    assert stats["repeated_after_success"] == 0
    assert_one_insert_id_per_call(server)
    assert not any(spool.iterdir())


def test_damaged_files_in_the_spool_are_skipped_and_reported(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    server = external()
    server.faults(fail_for=3600, status=503)
    spool = tmp_path / "spool"
    child = Child(server, spool, "torn", 1_000, "kill")
    child.finish()
    (directory,) = spool.iterdir()
    segment = next(directory.glob("seg-*.log"))
    # A killed writer leaves its segment at full size, zeros after the last record.
    data = bytearray(segment.read_bytes().rstrip(b"\x00"))
    data[len(data) // 2 : len(data) // 2 + 40] = b"\x00" * 40  # damage in the middle
    segment.write_bytes(bytes(data) + b"\xa5Z\x01\xff\xff")  # and a torn record at the end
    garbage = spool / "p-garbage"
    garbage.mkdir()
    (garbage / "seg-000000000001.log").write_bytes(os.urandom(5000))
    (garbage / "batches.log").write_bytes(os.urandom(300))
    server.faults(clear=True)
    result = drain(server, spool)
    assert result["flushed"]
    seqs = stored_by_round(server)["torn"]
    assert 990 <= len(seqs) < 1_000 and max(seqs.values()) == 1  # only the damaged one is gone


def test_a_kept_call_that_does_not_unpack_is_skipped_and_reported(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    # A record whose checksum holds but whose values are not a call of this version (written
    # by a future one, say): the adopter skips it as damage and delivers the rest.
    server = external()
    spool = tmp_path / "spool"
    left = SpoolDirectory.create(str(spool))
    for seq in range(4):
        op: Operation = ("track", "user_odd", "Spooled", {"round": "odd", "seq": seq}, None, 1e9)
        packed = pack_call(op)
        assert packed is not None
        left.append(packed, CALL)
        if seq == 1:
            left.append(b"\x00 not a packed call", CALL)
    left.close()
    child = Child(server, spool, "drain", 0, "flush")
    code, out, err = child.finish()
    assert code == 0, err
    assert child.result(out)["flushed"]
    assert stored_by_round(server)["odd"] == Counter({0: 1, 1: 1, 2: 1, 3: 1})
    assert "damaged byte(s) skipped" in err


@pytest.mark.parametrize("ending", ["full_disk", "read_only"])
def test_a_disk_that_refuses_falls_back_to_memory_and_says_so(
    external: Callable[..., ExternalServer], tmp_path: Path, ending: str
) -> None:
    server = external()
    spool = tmp_path / "spool"
    if ending == "read_only":
        spool.mkdir()
        spool.chmod(0o555)
    child = Child(server, spool, ending, 5_000, "flush")
    code, out, err = child.finish()
    assert code == 0, err
    result = child.result(out)
    assert result["flushed"] and result["stats"]["spool_errors"] == 1
    assert result["stats"]["dropped"] == {}
    assert result["errors"] == ["spool_unavailable"]
    assert "cannot be written" in err
    assert_exactly_once(stored_by_round(server)[ending], 5_000)


def test_a_forked_child_keeps_its_own_spool_and_never_resends_the_parents(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    server = external()
    spool = tmp_path / "spool"
    script = f"""
import os, sankofa_sdk
client = sankofa_sdk.Client({server.api_key!r}, {server.url!r}, spool_dir={str(spool)!r})
for n in range(500):
    client.track("Spooled", {{"round": "parent", "seq": n}}, distinct_id="user_parent")
pid = os.fork()
if pid == 0:
    for n in range(300):
        client.track("Spooled", {{"round": "child", "seq": n}}, distinct_id="user_child")
    client.flush(30)
    print("child dirs", len(os.listdir({str(spool)!r})), flush=True)
    client.shutdown()
    os._exit(0)
os.waitpid(pid, 0)
for n in range(500, 600):
    client.track("Spooled", {{"round": "parent", "seq": n}}, distinct_id="user_parent")
client.flush(30)
client.shutdown()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "child dirs 2" in done.stdout  # the parent's and its own, side by side
    stored = stored_by_round(server)
    assert_exactly_once(stored["parent"], 600)
    assert_exactly_once(stored["child"], 300)
    assert not any(spool.iterdir())
