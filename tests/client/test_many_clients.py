"""A process with many live clients is told why that is usually a mistake, once; and
``SANKOFA_DISABLED`` turns every client off from the environment (test suites, local runs)."""

from __future__ import annotations

import logging

import pytest

import sankofa_sdk
from sankofa_sdk import Client, ConfigurationError
from sankofa_sdk import _client as client_module
from sankofa_sdk.testing import RecordingTransport


@pytest.fixture
def warn_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_many_clients_said", False)


def many_client_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "clients are alive" in r.getMessage()]


def test_the_tenth_live_client_warns_once_naming_the_cause(
    warn_anew: None, caplog: pytest.LogCaptureFixture
) -> None:
    clients: list[Client] = []
    try:
        with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
            for _ in range(client_module.MANY_CLIENTS + 3):
                clients.append(Client("sk_test", transport=RecordingTransport()))
        lines = many_client_lines(caplog)
        assert len(lines) == 1
        assert "client per request or job" in lines[0] and "shutdown()" in lines[0]
    finally:
        for client in clients:
            client.shutdown()


def test_clients_shut_down_do_not_count(warn_anew: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        for _ in range(client_module.MANY_CLIENTS * 2):
            with Client("sk_test", transport=RecordingTransport()) as client:
                client.track("Job Done", distinct_id="user_job")
    assert many_client_lines(caplog) == []


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_sankofa_disabled_turns_every_client_off(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SANKOFA_DISABLED", value)
    monkeypatch.delenv("SANKOFA_API_KEY", raising=False)
    transport = RecordingTransport()
    client = Client(transport=transport)  # no key needed: nothing is sent
    client.track("Signed In", distinct_id="user_42")
    assert client.flush(1)
    client.shutdown()
    assert "disabled" in repr(client) and transport.requests == []
    sankofa_sdk.init()
    try:
        assert "disabled" in repr(sankofa_sdk.get_client())
    finally:
        sankofa_sdk.shutdown()


@pytest.mark.parametrize("value", ["0", "false", "", "off"])
def test_sankofa_disabled_off_changes_nothing(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SANKOFA_DISABLED", value)
    transport = RecordingTransport()
    with Client("sk_test", transport=transport) as client:
        client.track("Signed In", distinct_id="user_42")
        assert client.flush(5)
    assert len(transport.sent_operations()) == 1


def test_a_sankofa_disabled_value_not_understood_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANKOFA_DISABLED", "maybe")
    with pytest.raises(ConfigurationError, match="SANKOFA_DISABLED='maybe'"):
        Client("sk_test", transport=RecordingTransport())


def test_running_a_notebook_cell_with_init_again_keeps_one_client(
    warn_anew: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A notebook cell calling init() run a dozen times: each run shuts the previous default
    client down (delivering what it queued), so clients never pile up and nothing warns."""
    transports: list[RecordingTransport] = []
    try:
        with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
            for run in range(client_module.MANY_CLIENTS + 2):
                transport = RecordingTransport()
                transports.append(transport)
                sankofa_sdk.init("sk_test", transport=transport, flush_interval=60)
                sankofa_sdk.track("Cell Run", {"run": run}, distinct_id="analyst_1")
        assert many_client_lines(caplog) == []
        alive = [c for c in list(client_module._live_clients) if not c._closed]
        assert alive == [sankofa_sdk.get_client()]
        for run, transport in enumerate(transports[:-1]):  # delivered when the next run began
            assert [
                op["payload"]["properties"]["run"] for op in transport.applied_operations()
            ] == [run]
    finally:
        sankofa_sdk.shutdown()  # and the module has no default client again
