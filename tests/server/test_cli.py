"""The command line: start, serve, log, stop on a signal with everything applied, data kept."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import requests

from sankofa_sdk.server import ReferenceServer
from sankofa_sdk.server.__main__ import bind_warning

from .conftest import applied, track, user_traits

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

LIVE = "sk_live_cli_0123456789abcdef01234567"
TEST = "sk_test_cli_0123456789abcdef01234567"


class Cli:
    def __init__(self, args: list[str], log: Path, command: Optional[list[str]] = None) -> None:
        self.log = log
        self._stderr = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            (command or [sys.executable, "-m", "sankofa_sdk.server"]) + args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.output: list[str] = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float = 20) -> Optional[str]:
        line = self.lines.get(timeout=timeout)
        if line is not None:
            self.output.append(line)
        return line

    def banner(self) -> str:
        first = self.line()
        assert first is not None, self.stderr()
        match = re.fullmatch(
            r"Sankofa reference server listening on (http://127\.0\.0\.1:\d+)", first
        )
        assert match, first
        for _ in range(4):
            self.line()
        return match.group(1)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        while self.line(timeout=5) is not None:
            pass
        self._stderr.close()
        return code

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)  # it reads to the end of the pipe, which the exit closed
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if not self._stderr.closed:
            self._stderr.close()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Callable[..., Cli]]:
    started: list[Cli] = []

    def start(*args: str, command: Optional[list[str]] = None) -> Cli:
        process = Cli(list(args), tmp_path / f"stderr{len(started)}.log", command)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def post_batch(url: str, key: str, operations: list[Any]) -> requests.Response:
    return requests.post(
        url + "/api/v1/batch",
        json={"operations": operations},
        headers={"x-api-key": key},
        timeout=30,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_stops_on_signal_and_keeps_the_data(
    cli: Callable[..., Cli], tmp_path: Path, signum: int
) -> None:
    db = str(tmp_path / "people.db")
    process = cli("--port", "0", "--db", db, "--api-key", LIVE, "--test-key", TEST)
    url = process.banner()
    assert process.output[1:4] == [
        "  live key: sk_live_…4567 (as given; --show-keys prints it)",
        "  test key: sk_test_…4567 (as given; --show-keys prints it)",
        f"  data:     {db}",
    ]
    assert re.fullmatch(re.escape(f"  console:  {url}/?token=") + r"[\w-]{40,}", process.output[4])
    assert requests.get(url + "/health", timeout=10).json() == {"status": "ok"}
    people = {"type": "people", "payload": {"distinct_id": "user_1", "properties": {"plan": "pro"}}}
    reply = post_batch(url, LIVE, [track("user_1"), people])
    assert reply.status_code == 200
    assert reply.json()["events_received"] == 1
    # A large batch right before the signal: accepted means applied before the exit.
    reply = post_batch(url, LIVE, [track(f"user_{i}") for i in range(3000)])
    assert reply.status_code == 200
    reply = post_batch(url, TEST, [track("user_test")])
    assert reply.json()["environment"] == "test"
    assert process.stop(signum) == 0
    assert process.output[-2:] == ["stopping: applying what was accepted...", "stopped"]
    with ReferenceServer(db_path=db, api_key=LIVE, test_api_key=TEST) as reopened:
        applied(reopened)
        assert reopened.stats()["events"] == 3001
        assert user_traits(reopened.get_person("user_1")) == {"plan": "pro"}
        assert reopened.get_person("user_test", environment="test") is not None


def test_show_keys_prints_the_given_keys(cli: Callable[..., Cli]) -> None:
    process = cli("--port", "0", "--api-key", LIVE, "--test-key", TEST, "--show-keys")
    process.banner()
    assert process.output[1:3] == [f"  live key: {LIVE}", f"  test key: {TEST}"]
    assert process.stop() == 0


def test_generated_keys_are_printed_once_marked_secret(cli: Callable[..., Cli]) -> None:
    process = cli("--port", "0")
    url = process.banner()
    live = re.fullmatch(
        r"  live key: (sk_live_[0-9a-f]{32}) \(secret, made for this run\)", process.output[1]
    )
    test = re.fullmatch(
        r"  test key: (sk_test_[0-9a-f]{32}) \(secret, made for this run\)", process.output[2]
    )
    assert live and test, process.output
    assert post_batch(url, live.group(1), [track()]).status_code == 200
    assert process.stop() == 0
    assert live.group(1) not in process.stderr()


def test_loopback_bind_gives_no_warning(cli: Callable[..., Cli]) -> None:
    process = cli("--port", "0", "--api-key", LIVE)
    process.banner()
    assert process.stop() == 0
    assert "warning" not in process.stderr()


@pytest.mark.parametrize(
    ("address", "warned"),
    [
        ("127.0.0.1", False),
        ("127.3.2.1", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.20", True),
        ("", True),
    ],
)
def test_non_loopback_bind_warning(address: str, warned: bool) -> None:
    warning = bind_warning(address)
    if warned:
        assert warning is not None
        assert "not a loopback address" in warning
    else:
        assert warning is None


def test_logs_one_line_per_request_without_the_key(cli: Callable[..., Cli]) -> None:
    process = cli("--port", "0", "--api-key", LIVE)
    url = process.banner()
    assert post_batch(url, LIVE, [track()]).status_code == 200
    assert post_batch(url, "sk_wrong_key", [track()]).status_code == 403
    assert requests.get(url + "/api/v1/nowhere?api_key=secret", timeout=10).status_code == 404
    assert process.stop() == 0
    log = process.stderr()
    lines = [line for line in log.splitlines() if '"' in line]
    assert len(lines) == 3, log
    # A line is written once its answer is sent, by the connection's own thread: the three may
    # reach the log in any order.
    for expected in (
        '"POST /api/v1/batch" 200',
        '"POST /api/v1/batch" 403',
        '"GET /api/v1/nowhere" 404',
    ):
        assert sum(expected in line for line in lines) == 1, log
    assert LIVE not in log and "sk_wrong_key" not in log and "secret" not in log
    assert "in memory (lost on exit)" in "\n".join(process.output)


def test_prints_the_console_url_and_keeps_its_token_out_of_the_log(
    cli: Callable[..., Cli],
) -> None:
    process = cli("--port", "0", "--api-key", LIVE)
    url = process.banner()
    console_url = process.output[4].split()[-1]
    token = console_url.rsplit("=", 1)[1]
    with requests.Session() as browser:
        page = browser.get(console_url, timeout=10)
        data = browser.get(url + "/console/api/projects", timeout=10)
    refused = requests.get(url + "/console/api/projects", timeout=10)
    assert process.stop() == 0
    assert (page.status_code, page.history[0].status_code) == (200, 303)
    assert data.json()["projects"][0]["id"] == "proj_reference"
    assert refused.status_code == 401
    log = process.stderr()
    assert token not in log
    assert "/console/api" not in log  # the console's own polling stays out of the log


def test_quiet_does_not_log_requests(cli: Callable[..., Cli]) -> None:
    process = cli("--port", "0", "--quiet", "--api-key", LIVE)
    url = process.banner()
    assert post_batch(url, LIVE, [track()]).status_code == 200
    assert process.stop() == 0
    assert '"POST /api/v1/batch"' not in process.stderr()


def test_rate_limit_option(cli: Callable[..., Cli]) -> None:
    process = cli("--port", "0", "--api-key", LIVE, "--rate-limit", "2/30")
    url = process.banner()
    first = post_batch(url, LIVE, [track()])
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert 1 <= int(first.headers["X-RateLimit-Reset"]) <= 30
    assert post_batch(url, LIVE, [track()]).status_code == 200
    assert post_batch(url, LIVE, [track()]).status_code == 429
    assert process.stop() == 0


def test_default_rate_limit_is_the_engines_and_off_disables_it(cli: Callable[..., Cli]) -> None:
    default = cli("--port", "0", "--api-key", LIVE)
    url = default.banner()
    assert post_batch(url, LIVE, [track()]).headers["X-RateLimit-Limit"] == "500"
    assert default.stop() == 0
    off = cli("--port", "0", "--api-key", LIVE, "--rate-limit", "off")
    url = off.banner()
    assert "X-RateLimit-Limit" not in post_batch(url, LIVE, [track()]).headers
    assert off.stop() == 0


def keyed_stats(url: str, key: str, sends: int) -> dict[str, Any]:
    """Send one batch ``sends`` times under one Idempotency-Key; the stats once it is applied."""
    for _ in range(sends):
        reply = requests.post(
            url + "/api/v1/batch",
            json={"operations": [track("user_1", properties={"$insert_id": "i-1"})]},
            headers={"x-api-key": key, "Idempotency-Key": "batch-1"},
            timeout=30,
        )
        assert reply.status_code == 200
    headers = {"x-api-key": key}
    wait = requests.post(url + "/reference/v1/wait?timeout=10", headers=headers, timeout=30)
    assert wait.json() == {"applied": True}
    stats: dict[str, Any] = requests.get(
        url + "/reference/v1/stats", headers=headers, timeout=30
    ).json()
    return stats


def test_no_dedup_applies_a_repeated_key_again_and_counts_it(cli: Callable[..., Cli]) -> None:
    default = cli("--port", "0", "--api-key", LIVE)
    stats = keyed_stats(default.banner(), LIVE, 2)
    assert default.stop() == 0
    assert (stats["events"], stats["idempotent_replays"], stats["repeated_keys"]) == (1, 1, 1)
    engine_like = cli("--port", "0", "--api-key", LIVE, "--no-dedup")
    stats = keyed_stats(engine_like.banner(), LIVE, 2)
    assert engine_like.stop() == 0
    assert stats["events"] == 2 and stats["duplicate_insert_ids"] == 1
    assert (stats["idempotent_replays"], stats["repeated_keys"]) == (0, 1)


@pytest.mark.parametrize("value", ["abc", "-5/60", "10/0", "1/x", ""])
def test_bad_rate_limit_is_a_usage_error(cli: Callable[..., Cli], value: str) -> None:
    process = cli("--port", "0", "--rate-limit", value)
    assert process.proc.wait(30) == 2
    assert "rate-limit" in process.stderr()


def test_busy_port_exits_with_2(cli: Callable[..., Cli]) -> None:
    with ReferenceServer(rate_limit=None) as taken:
        process = cli("--port", str(taken.port))
        assert process.proc.wait(30) == 2
        assert "cannot start" in process.stderr()


def test_console_script_runs(cli: Callable[..., Cli]) -> None:
    script = Path(sys.executable).with_name("sankofa-server")
    if not script.exists():
        pytest.skip("the package is not installed with its scripts")
    process = cli("--port", "0", "--api-key", LIVE, command=[str(script)])
    url = process.banner()
    assert post_batch(url, LIVE, [track()]).status_code == 200
    assert process.stop() == 0


def test_help(cli: Callable[..., Cli]) -> None:
    process = cli("--help")
    assert process.proc.wait(30) == 0
    text = ""
    while (line := process.line()) is not None:
        text += line + "\n"
    for option in (
        "--host",
        "--port",
        "--db",
        "--api-key",
        "--test-key",
        "--rate-limit",
        "--no-dedup",
        "--quiet",
    ):
        assert option in text


def test_generated_keys_differ_per_start(cli: Callable[..., Cli]) -> None:
    first = cli("--port", "0")
    first.banner()
    second = cli("--port", "0")
    second.banner()
    keys = [p.output[1].split(": ")[1].split(" ")[0] for p in (first, second)]
    assert all(re.fullmatch(r"sk_live_[0-9a-f]{32}", k) for k in keys)
    assert keys[0] != keys[1]
    assert first.stop() == 0 and second.stop() == 0
