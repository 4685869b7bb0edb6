"""The transport on its own, over `responses`: one request, what it sends, what it reads.

Retries and pacing are not the transport's (see test_retry.py, test_pacer.py); the wall-clock
deadline and the bounded read are tested against real sockets in test_transport_bounds.py.
"""

from __future__ import annotations

import gzip
import logging

import pytest
import requests
import responses

from sankofa_sdk._delivery.wire import GZIP_AUTO_MIN_BYTES, BodyEncoder
from sankofa_sdk._options import Options
from sankofa_sdk._retry import Failure
from sankofa_sdk._transport import MAX_ANSWER_BYTES
from sankofa_sdk._transport import HttpTransport as Transport

from ..conftest import API_KEY, BATCH_URL, HOST

BODY = b'{"operations":[]}'


def make_transport(**options: object) -> Transport:
    return Transport(API_KEY, HOST, Options.from_kwargs(**options))


def make_encoder(host: str = HOST, **options: object) -> BodyEncoder:
    return BodyEncoder(Options.from_kwargs(**options), host + "/api/v1/batch")


def test_sends_the_engine_headers_and_no_origin(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    answer = make_transport().send(BODY, False, "k" * 32)
    assert answer.status == 200 and answer.failure is None
    headers = rsps.calls[0].request.headers
    assert headers["x-api-key"] == API_KEY
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "k" * 32
    assert headers["User-Agent"].startswith("sankofa-python/")
    assert "Origin" not in headers and "Content-Encoding" not in headers


def test_keeps_the_rate_limit_headers_and_the_start_of_the_body(
    rsps: responses.RequestsMock,
) -> None:
    rsps.add(
        responses.POST,
        BATCH_URL,
        status=429,
        body=b'{"error":"Rate limit exceeded. Please wait a moment."}',
        headers={"Retry-After": "7", "X-RateLimit-Remaining": "0", "Set-Cookie": "x=1"},
    )
    answer = make_transport().send(BODY, False, "key")
    assert answer.status == 429
    assert answer.headers == {"Retry-After": "7", "X-RateLimit-Remaining": "0"}
    assert answer.body.startswith(b'{"error":"Rate limit')
    assert "Rate limit" in answer.detail


def test_reads_at_most_the_cap_of_a_huge_answer(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200, body=b"x" * (MAX_ANSWER_BYTES * 10))
    answer = make_transport().send(BODY, False, "key")
    assert answer.status == 200 and len(answer.body) == MAX_ANSWER_BYTES


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (requests.ConnectionError("reset by peer"), Failure.RESET),
        (requests.exceptions.SSLError("bad handshake"), Failure.RESET),
        (requests.ReadTimeout("read timed out"), Failure.TIMEOUT),
        (requests.ConnectTimeout("connect timed out"), Failure.TIMEOUT),
        (OSError("no route"), Failure.RESET),
        (ValueError("anything else a library raises"), Failure.RESET),
    ],
)
def test_network_errors_become_failures_never_exceptions(
    rsps: responses.RequestsMock, error: Exception, failure: Failure
) -> None:
    rsps.add(responses.POST, BATCH_URL, body=error)
    answer = make_transport().send(BODY, False, "key")
    assert answer.status is None and answer.failure is failure
    assert API_KEY not in answer.detail


def test_no_time_left_sends_nothing(rsps: responses.RequestsMock) -> None:
    answer = make_transport().send(BODY, False, "key", time_left=0.0)
    assert answer.failure is Failure.TIMEOUT and len(rsps.calls) == 0


def test_gzip_true_compresses_every_body(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    transport = make_transport(gzip=True)
    data, gzipped = make_encoder(gzip=True).encode(BODY)
    assert gzipped and gzip.decompress(data) == BODY
    transport.send(data, gzipped, "key")
    request = rsps.calls[0].request
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.body) == BODY


def test_gzip_by_default_only_for_large_bodies() -> None:
    encoder = make_encoder()
    assert encoder.encode(BODY) == (BODY, False)
    large = b'{"operations":[' + b'{"type":"track"},' * (GZIP_AUTO_MIN_BYTES // 16) + b"{}]}"
    data, gzipped = encoder.encode(large)
    assert gzipped and gzip.decompress(data) == large and len(data) < len(large) // 10


@pytest.mark.parametrize(
    "host", ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:80"]
)
def test_gzip_by_default_not_to_an_engine_on_this_machine(host: str) -> None:
    # Compressing for a loopback connection costs CPU and saves nothing; gzip=True still does.
    large = b'{"operations":[' + b'{"type":"track"},' * (GZIP_AUTO_MIN_BYTES // 16) + b"{}]}"
    assert make_encoder(host).encode(large) == (large, False)
    assert make_encoder(host, gzip=True).encode(large)[1]


def test_gzip_false_never_compresses() -> None:
    large = b"x" * (GZIP_AUTO_MIN_BYTES * 4)
    assert make_encoder(gzip=False).encode(large) == (large, False)


def test_a_failing_compressor_sends_the_body_as_it_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(data: bytes, compresslevel: int = 9) -> bytes:
        raise MemoryError("no room to compress")

    monkeypatch.setattr(gzip, "compress", broken)
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        assert make_encoder(gzip=True).encode(BODY) == (BODY, False)
    assert "uncompressed" in caplog.text


def test_a_redirect_is_not_followed(rsps: responses.RequestsMock) -> None:
    # Following it would send the API key to wherever the redirect points.
    rsps.add(
        responses.POST, BATCH_URL, status=301, headers={"Location": "https://elsewhere.example/"}
    )
    answer = make_transport().send(BODY, False, "key")
    assert answer.status == 301 and len(rsps.calls) == 1


def test_proxy_settings_from_the_environment_are_used(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    transport = make_transport()
    rsps.add(responses.POST, BATCH_URL, status=200)
    assert transport.send(BODY, False, "key").status == 200
    assert rsps.calls[0].request.req_kwargs["proxies"].get("https") == "http://proxy.example:3128"


def test_repr_names_the_url_not_the_key() -> None:
    text = repr(make_transport())
    assert BATCH_URL in text and API_KEY not in text
