"""The transport on its own: classification, retries, backoff, headers. No real sleeping."""

from __future__ import annotations

import gzip
import logging

import pytest
import requests
import responses

from sankofa_sdk._transport import Outcome, Transport, classify, delivery_error, retry_after_seconds

from ..conftest import API_KEY, BATCH_URL, HOST

BODY = b'{"operations":[]}'


def make_transport(sleeps: list[float], **overrides: object) -> Transport:
    options: dict[str, object] = dict(
        timeout=5.0,
        gzip=False,
        verify=True,
        max_retries=5,
        backoff_base=0.5,
        backoff_max=30.0,
        max_retry_time=300.0,
        sleep=sleeps.append,
    )
    options.update(overrides)
    return Transport(API_KEY, HOST, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (202, Outcome.DELIVERED),
        (400, Outcome.REJECTED),
        (413, Outcome.TOO_LARGE),
        (401, Outcome.MISCONFIGURED),
        (403, Outcome.MISCONFIGURED),
        (404, Outcome.MISCONFIGURED),
        (405, Outcome.MISCONFIGURED),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_classify_follows_the_engine_status_table(status: int, outcome: Outcome) -> None:
    assert classify(status, {}).outcome is outcome


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_retries_5xx_with_growing_full_jitter_waits_and_one_idempotency_key(
    rsps: responses.RequestsMock,
) -> None:
    sleeps: list[float] = []
    for status in (503, 500, 502):
        rsps.add(responses.POST, BATCH_URL, status=status)
    rsps.add(responses.POST, BATCH_URL, json={"ok": True})
    attempt = make_transport(sleeps).post(BODY)
    assert attempt.outcome is Outcome.DELIVERED
    assert len(rsps.calls) == 4
    keys = {call.request.headers["Idempotency-Key"] for call in rsps.calls}
    assert len(keys) == 1 and len(keys.pop()) == 32
    assert len(sleeps) == 3
    for n, waited in enumerate(sleeps):
        assert 0 <= waited <= 0.5 * 2**n  # full jitter: anywhere from 0 to the exponential cap


def test_429_waits_exactly_retry_after(rsps: responses.RequestsMock) -> None:
    sleeps: list[float] = []
    rsps.add(responses.POST, BATCH_URL, status=429, headers={"Retry-After": "7"})
    rsps.add(responses.POST, BATCH_URL, status=200)
    assert make_transport(sleeps).post(BODY).outcome is Outcome.DELIVERED
    assert sleeps == [7.0]


def test_connection_errors_and_timeouts_are_retried(rsps: responses.RequestsMock) -> None:
    sleeps: list[float] = []
    rsps.add(responses.POST, BATCH_URL, body=requests.ConnectionError("reset by peer"))
    rsps.add(responses.POST, BATCH_URL, body=requests.Timeout("read timed out"))
    rsps.add(responses.POST, BATCH_URL, status=200)
    assert make_transport(sleeps).post(BODY).outcome is Outcome.DELIVERED
    assert len(sleeps) == 2


def test_gives_up_after_max_retries(rsps: responses.RequestsMock) -> None:
    sleeps: list[float] = []
    rsps.add(responses.POST, BATCH_URL, status=503)
    attempt = make_transport(sleeps, max_retries=3).post(BODY)
    assert attempt.outcome is Outcome.RETRY
    assert len(rsps.calls) == 4 and len(sleeps) == 3
    error = delivery_error(attempt)
    assert error.reason == "retries_exhausted" and error.status == 503


def test_gives_up_when_max_retry_time_would_pass(rsps: responses.RequestsMock) -> None:
    sleeps: list[float] = []
    rsps.add(responses.POST, BATCH_URL, status=429, headers={"Retry-After": "120"})
    attempt = make_transport(sleeps, max_retry_time=60.0).post(BODY)
    assert attempt.outcome is Outcome.RETRY and sleeps == []


@pytest.mark.parametrize("status", [401, 403, 404, 405])
def test_configuration_errors_are_not_retried_and_logged_once(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    sleeps: list[float] = []
    rsps.add(responses.POST, BATCH_URL, status=status, json={"error": "x", "ok": False})
    transport = make_transport(sleeps)
    with caplog.at_level(logging.DEBUG, logger="sankofa_sdk"):
        first = transport.post(BODY)
        transport.post(BODY)
    assert first.outcome is Outcome.MISCONFIGURED and sleeps == []
    assert len(rsps.calls) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(status) in errors[0].getMessage()
    assert API_KEY not in caplog.text


def test_sends_the_engine_headers_and_no_origin(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    make_transport([]).post(BODY)
    headers = rsps.calls[0].request.headers
    assert headers["x-api-key"] == API_KEY
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("sankofa-python/")
    assert "Origin" not in headers and "Content-Encoding" not in headers


def test_gzip_compresses_the_body_and_says_so(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    make_transport([], gzip=True).post(BODY)
    request = rsps.calls[0].request
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.body) == BODY


def test_a_passed_deadline_abandons_without_sending(rsps: responses.RequestsMock) -> None:
    transport = make_transport([])
    transport.deadline = 0.0  # long past on the monotonic clock
    attempt = transport.post(BODY)
    assert attempt.outcome is Outcome.ABANDONED and len(rsps.calls) == 0
    assert delivery_error(attempt).reason == "shutdown"


def test_backoff_never_waits_past_the_deadline(rsps: responses.RequestsMock) -> None:
    clock = [100.0]
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    rsps.add(responses.POST, BATCH_URL, status=429, headers={"Retry-After": "30"})
    transport = make_transport([], sleep=fake_sleep, clock=lambda: clock[0])
    transport.deadline = 110.0
    attempt = transport.post(BODY)
    assert attempt.outcome is Outcome.ABANDONED
    assert sleeps == [10.0]


def test_a_redirect_is_a_configuration_error_and_is_not_followed(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    # Following it would send the API key to wherever the redirect points.
    rsps.add(
        responses.POST, BATCH_URL, status=301, headers={"Location": "https://elsewhere.example/"}
    )
    with caplog.at_level(logging.ERROR, logger="sankofa_sdk"):
        attempt = make_transport([]).post(BODY)
    assert attempt.outcome is Outcome.MISCONFIGURED and attempt.status == 301
    assert len(rsps.calls) == 1
    assert "redirects" in caplog.text and API_KEY not in caplog.text


def test_proxy_settings_from_the_environment_are_used(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    transport = make_transport([])
    rsps.add(responses.POST, BATCH_URL, status=200)
    assert transport.post(BODY).outcome is Outcome.DELIVERED
    assert rsps.calls[0].request.req_kwargs["proxies"].get("https") == "http://proxy.example:3128"
