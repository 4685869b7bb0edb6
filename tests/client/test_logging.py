"""Logging: throttled per client, safe after fork, and ``debug=True`` leaves nothing behind."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import types
from typing import Callable

import pytest
import responses

from sankofa_sdk import Client, _log
from sankofa_sdk._log import ThrottledWarning, logger

from ..conftest import BATCH_URL

MakeClient = Callable[..., Client]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    clock = FakeTime()
    monkeypatch.setattr(_log, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    return clock


def test_values_cut_in_many_events_are_one_warning_then_a_count(
    rsps: responses.RequestsMock,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    fake_time: FakeTime,
) -> None:
    rsps.add(responses.POST, BATCH_URL, json={"ok": True})
    client = make_client()
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        for _ in range(500):
            client.track("Scored", {"score": math.nan}, distinct_id="user_1")
        assert client.flush(10)
        cut = [r.getMessage() for r in caplog.records if "some values were cut" in r.getMessage()]
        assert len(cut) == 1
        fake_time.now += 3600
        client.track("Scored", {"score": math.nan}, distinct_id="user_1")
        assert client.flush(10)
    cut = [r.getMessage() for r in caplog.records if "some values were cut" in r.getMessage()]
    assert len(cut) == 2 and "(499 similar messages suppressed)" in cut[1]


def test_each_client_has_its_own_throttle(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_client(), make_client()
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        first.track("", distinct_id="user_1")
        first.track("", distinct_id="user_1")
        second.track("", distinct_id="user_1")
    assert caplog.text.count("invalid track call dropped") == 2


def test_a_throttle_can_be_reset_and_says_what_it_holds(fake_time: FakeTime) -> None:
    throttle = ThrottledWarning()
    throttle.warn("k", "first")
    throttle.warn("k", "second")
    assert throttle.held() == {"k": 1}
    throttle.reset()
    assert throttle.held() == {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_throttle_locked_at_fork_works_in_the_child() -> None:
    throttle = ThrottledWarning()
    throttle._lock.acquire()  # as if another thread were logging at the moment of the fork
    try:
        pid = os.fork()
        if pid == 0:  # the child: must not wait for a lock no thread of its own will release
            signal.alarm(20)  # a deadlock ends the child, and the test fails below
            try:
                logging.disable(logging.CRITICAL)
                throttle.warn("k", "from the child")
                os._exit(0)
            finally:
                os._exit(1)
    finally:
        throttle._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_debug_leaves_the_logger_as_it_was_after_shutdown(make_client: MakeClient) -> None:
    before = logger.level
    first = make_client(debug=True)
    second = make_client(debug=True)
    assert logger.isEnabledFor(logging.DEBUG)
    first.shutdown()
    first.shutdown()  # a second shutdown gives nothing back twice
    assert logger.level == logging.DEBUG  # the second client still runs
    second.shutdown()
    assert logger.level == before


def test_debug_keeps_a_level_the_app_set_meanwhile(make_client: MakeClient) -> None:
    before = logger.level
    try:
        client = make_client(debug=True)
        logger.setLevel(logging.INFO)
        client.shutdown()
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(before)


def test_a_client_without_debug_does_not_touch_the_logger(make_client: MakeClient) -> None:
    before = logger.level
    make_client().shutdown()
    assert logger.level == before


def _run(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_debug_prints_to_stderr_when_the_app_configured_no_logging() -> None:
    # Both peers print out of the box; before, debug=True printed nothing without a handler.
    result = _run(
        """
        import sankofa_sdk
        from sankofa_sdk.server import ReferenceServer
        with ReferenceServer() as server:
            client = sankofa_sdk.Client(server.api_key, host=server.url, debug=True)
            client.track("Debugged", distinct_id="user_1")
            assert client.flush(10)
            client.shutdown()
        """
    )
    assert result.returncode == 0, result.stderr
    assert "sankofa_sdk DEBUG: queued" in result.stderr
    assert "sankofa_sdk DEBUG: POST http://127.0.0.1:" in result.stderr
    assert "HTTP 200" in result.stderr


def test_a_warning_names_the_sdk_once_whatever_the_logging_setup() -> None:
    unconfigured = _run(
        """
        import sankofa_sdk
        sankofa_sdk.Client("sk_test_x", host="http://127.0.0.1:9", verify=False).shutdown()
        """
    )
    assert "sankofa_sdk: TLS certificate verification is OFF" in unconfigured.stderr
    configured = _run(
        """
        import logging, sankofa_sdk
        logging.basicConfig(format="%(name)s: %(message)s")
        sankofa_sdk.Client("sk_test_x", host="http://127.0.0.1:9", verify=False).shutdown()
        """
    )
    assert "sankofa_sdk: TLS certificate verification is OFF" in configured.stderr
    assert "sankofa_sdk: sankofa_sdk:" not in configured.stderr
