"""The client end to end over `responses`: batching, splitting, failures, modes, stats."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Callable

import pytest
import requests
import responses
from requests import PreparedRequest

from sankofa_sdk import Client, ConfigurationError, DeliveryError, SankofaError, ValidationError

from ..conftest import API_KEY, BATCH_URL, decode_body, refused_call, sent_operations

MakeClient = Callable[..., Client]
RFC3339_MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def ok(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, BATCH_URL, json={"ok": True})


def test_batches_stay_under_max_batch_size(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client(flush_at=100, max_batch_size=100)
    for i in range(250):
        client.track("Clicked", {"i": i}, distinct_id="user_1")
    assert client.flush(10)
    sizes = [len(decode_body(c.request.body)["operations"]) for c in rsps.calls]
    assert sum(sizes) == 250 and max(sizes) <= 100
    assert [op["payload"]["properties"]["i"] for op in sent_operations(rsps)] == list(range(250))
    assert client.stats()["delivered"] == 250


def test_a_send_takes_everything_queued(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client(flush_at=100, flush_interval=60)
    for i in range(2_500):
        client.track("Clicked", {"i": i}, distinct_id="user_1")
    assert client.flush(10)
    sizes = [len(decode_body(c.request.body)["operations"]) for c in rsps.calls]
    assert sum(sizes) == 2_500
    # A few requests carry it all, not 25 batches of flush_at: batches grow with the backlog.
    assert len(sizes) < 25 and max(sizes) > 100


def test_batches_stay_under_max_batch_bytes(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client(max_batch_bytes=4096)
    for i in range(40):
        client.track("Big", {"blob": "x" * 500, "i": i}, distinct_id="user_1")
    assert client.flush(10)
    assert len(rsps.calls) > 1
    assert all(len(c.request.body) <= 4096 + 64 for c in rsps.calls)
    assert len(sent_operations(rsps)) == 40


def poison_aware(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
    ops = decode_body(request.body)["operations"]
    if any(op["payload"].get("properties", {}).get("poison") for op in ops):
        return 400, {}, json.dumps({"error": "Invalid track payload"})
    return 200, {}, json.dumps({"ok": True})


def test_a_400_is_split_until_only_the_poison_operation_fails(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add_callback(responses.POST, BATCH_URL, callback=poison_aware)
    errors: list[tuple[SankofaError, dict[str, Any]]] = []
    client = make_client(flush_at=50, on_error=lambda e, op: errors.append((e, op)))
    for i in range(30):
        client.track("Item", {"i": i, "poison": i == 17}, distinct_id="user_1")
    assert client.flush(10)
    stats = client.stats()
    assert stats["delivered"] == 29 and stats["failed"] == 1
    assert stats["dropped"] == {"rejected": 1}
    assert len(errors) == 1
    error, op = errors[0]
    assert isinstance(error, DeliveryError) and error.reason == "rejected" and error.status == 400
    assert op["properties"]["i"] == 17


def test_a_413_splits_the_batch(rsps: responses.RequestsMock, make_client: MakeClient) -> None:
    def limit(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        return (413, {}, "") if len(request.body) > 2000 else (200, {}, "{}")

    rsps.add_callback(responses.POST, BATCH_URL, callback=limit)
    client = make_client(flush_at=100)
    for i in range(40):
        client.track("Item", {"pad": "y" * 100, "i": i}, distinct_id="user_1")
    assert client.flush(10)
    assert client.stats()["delivered"] == 40


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_drop_and_report_without_retrying(
    rsps: responses.RequestsMock, make_client: MakeClient, status: int
) -> None:
    rsps.add(
        responses.POST, BATCH_URL, status=status, json={"error": "Invalid API Key", "ok": False}
    )
    errors: list[SankofaError] = []
    client = make_client(on_error=lambda e, op: errors.append(e))
    for _ in range(3):
        client.track("Item", distinct_id="user_1")
    assert client.flush(10)
    keys = [call.request.headers["Idempotency-Key"] for call in rsps.calls]
    assert len(keys) == len(set(keys)) and client.stats()["retried"] == 0  # nothing resent
    assert client.stats()["dropped"] == {"unauthorized": 3}
    assert len(errors) == 3 and all(getattr(e, "reason", None) == "unauthorized" for e in errors)


def test_retries_exhausted_are_reported(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=503, json={"error": "Buffer full", "ok": False})
    errors: list[SankofaError] = []
    client = make_client(max_retries=2, on_error=lambda e, op: errors.append(e))
    client.track("Item", distinct_id="user_1")
    assert client.flush(10)
    stats = client.stats()
    assert stats["retried"] == 2 and len(rsps.calls) == 3
    assert stats["dropped"] == {"retries_exhausted": 1} and stats["failed"] == 1
    assert len(errors) == 1


def test_the_first_failed_attempt_is_a_warning_naming_the_url_and_the_os_error(
    rsps: responses.RequestsMock, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A wrong port: each attempt is refused. The warning comes with the first failure, not
    # when the batch is given up after max_retry_time; it says where, why and for how long.
    refused = requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    rsps.add(responses.POST, BATCH_URL, body=refused)
    rsps.add(responses.POST, BATCH_URL, json={"ok": True})
    client = make_client(max_retry_time=120)
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        client.track("Item", distinct_id="user_1")
        assert client.flush(10)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert BATCH_URL in warnings[0] and "Connection refused" in warnings[0]
    assert "120s" in warnings[0] and "1 operation(s) waiting" in warnings[0]
    assert client.stats()["delivered"] == 1


def test_a_batch_given_up_names_the_url_in_its_error(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=503, json={"error": "Buffer full", "ok": False})
    errors: list[SankofaError] = []
    client = make_client(max_retries=1, on_error=lambda e, op: errors.append(e))
    client.track("Item", distinct_id="user_1")
    assert client.flush(10)
    assert len(errors) == 1 and BATCH_URL in str(errors[0]) and "HTTP 503" in str(errors[0])


def test_debug_logs_each_batch_sent_with_its_answer(
    rsps: responses.RequestsMock, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    ok(rsps)
    client = make_client(debug=True)
    with caplog.at_level(logging.DEBUG, logger="sankofa_sdk"):
        client.track("Item", distinct_id="user_1")
        client.track("Item", distinct_id="user_2")
        assert client.flush(10)
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("POST")]
    assert sent
    counts = [int(re.search(r"(\d+) operation\(s\)", line).group(1)) for line in sent]  # type: ignore[union-attr]
    assert sum(counts) == 2
    for line in sent:
        assert BATCH_URL in line and "HTTP 200" in line
        assert re.search(r"\d+ bytes", line) and re.search(r"in \d+ ms", line)
    assert API_KEY not in caplog.text


def test_full_queue_drops_new_calls_without_blocking(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    entered, release = threading.Event(), threading.Event()

    def blocking(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        entered.set()
        release.wait(10)
        return 200, {}, "{}"

    rsps.add_callback(responses.POST, BATCH_URL, callback=blocking)
    errors: list[SankofaError] = []
    client = make_client(flush_at=1, max_queue_size=5, on_error=lambda e, op: errors.append(e))
    client.track("First", distinct_id="user_1")
    assert entered.wait(10)  # the worker holds "First" in flight; the queue is empty
    for i in range(8):
        client.track("Next", {"i": i}, distinct_id="user_1")
    release.set()
    assert client.flush(10)
    stats = client.stats()
    # The one in flight counts against max_queue_size too: 4 more fit, 4 are refused.
    assert stats["delivered"] == 5 and stats["dropped"] == {"queue_full": 4}
    assert stats["accepted"] == 5 and stats["failed"] == 0
    assert [getattr(e, "reason", None) for e in errors] == ["queue_full"] * 4


def test_stamps_at_call_time_in_rfc3339_utc_with_milliseconds(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client()
    before = time.time()
    client.track("Now", distinct_id="user_1")
    after = time.time()
    client.track("Then", distinct_id="user_1", timestamp="2026-05-09T15:32:01.482+01:00")
    assert client.flush(10)
    now_op, then_op = sent_operations(rsps)
    stamp = now_op["payload"]["timestamp"]
    assert RFC3339_MS_Z.match(stamp)
    from sankofa_sdk._operations import parse_rfc3339, to_epoch

    assert before - 0.001 <= to_epoch(parse_rfc3339(stamp)) <= after + 0.001
    assert then_op["payload"]["timestamp"] == "2026-05-09T14:32:01.482Z"


def test_properties_are_copied_at_call_time_and_never_mutated(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client()
    props = {"plan": "free", "count": 1}
    client.track("Upgraded", props, distinct_id="user_1")
    props["plan"] = "pro"
    assert client.flush(10)
    assert props == {"plan": "pro", "count": 1}  # no $insert_id added to the caller's dict
    sent = sent_operations(rsps)[0]["payload"]["properties"]
    assert sent["plan"] == "free" and len(sent["$insert_id"]) == 36


def test_insert_id_given_by_the_caller_is_kept(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client()
    client.track("Paid", {"$insert_id": "invoice-77"}, distinct_id="user_1")
    assert client.flush(10)
    assert sent_operations(rsps)[0]["payload"]["properties"]["$insert_id"] == "invoice-77"


def test_people_set_and_unset_payloads(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client()
    client.people_set({"plan": "pro", "seats": 3}, distinct_id="user_1")
    client.people_unset(["trial_ends", "coupon"], distinct_id="user_1")
    client.people_unset("legacy", distinct_id="user_1")
    assert client.flush(10)
    payloads = [op["payload"] for op in sent_operations(rsps)]
    assert [op["type"] for op in sent_operations(rsps)] == ["people"] * 3
    assert payloads[0]["properties"] == {"plan": "pro", "seats": 3}
    assert payloads[1]["properties"] == {"trial_ends": None, "coupon": None}
    assert payloads[2]["properties"] == {"legacy": None}


def test_track_payload_names_the_library(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client()
    client.track("Opened", {"a": 1}, distinct_id="user_1", default_properties={"$app": "cli"})
    assert client.flush(10)
    payload = sent_operations(rsps)[0]["payload"]
    assert payload["lib_version"].startswith("python-")
    assert payload["default_properties"]["$app"] == "cli"
    assert payload["default_properties"]["$lib"] == "sankofa-python"


INVALID_CALLS: list[tuple[str, Callable[[Client], None]]] = [
    ("empty event name", lambda c: c.track("", distinct_id="user_1")),
    ("event name not a string", lambda c: c.track(42, distinct_id="user_1")),  # type: ignore[arg-type]
    ("properties not a mapping", lambda c: c.track("E", ["a"], distinct_id="user_1")),  # type: ignore[arg-type]
    ("garbage distinct id", lambda c: c.track("E", distinct_id="user_identity_9")),
    ("one-byte distinct id", lambda c: c.track("E", distinct_id="a")),
    ("empty distinct id", lambda c: c.identify("")),
    ("None distinct id", lambda c: c.identify(None)),  # type: ignore[arg-type]
    ("bool distinct id", lambda c: c.people_set({"a": 1}, distinct_id=True)),  # type: ignore[arg-type]
    ("people_set without mapping", lambda c: c.people_set(None)),  # type: ignore[arg-type]
    ("people_unset no keys", lambda c: c.people_unset([], distinct_id="user_1")),
    ("people_unset non-string key", lambda c: c.people_unset([1], distinct_id="user_1")),  # type: ignore[list-item]
    ("alias to itself", lambda c: c.alias("user_1", "user_1")),
    ("alias empty source", lambda c: c.alias("", "user_1")),
    (
        "milliseconds timestamp",
        lambda c: c.track("E", distinct_id="user_1", timestamp=1746801121482),
    ),
    ("timestamp of wrong type", lambda c: c.track("E", distinct_id="user_1", timestamp=[1])),
]


@pytest.mark.parametrize(("name", "call"), INVALID_CALLS, ids=[n for n, _ in INVALID_CALLS])
def test_strict_mode_raises_validation_error(
    make_client: MakeClient, name: str, call: Callable[[Client], None]
) -> None:
    client = make_client(strict=True)
    with pytest.raises(ValidationError) as info:
        call(client)
    assert isinstance(info.value, ValueError) and str(info.value)
    assert client.stats()["accepted"] == 0


@pytest.mark.parametrize(("name", "call"), INVALID_CALLS, ids=[n for n, _ in INVALID_CALLS])
def test_invalid_calls_are_logged_counted_and_reported_not_raised(
    rsps: responses.RequestsMock,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    name: str,
    call: Callable[[Client], None],
) -> None:
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        errors = refused_call(make_client, rsps, call)
    assert isinstance(errors[0][0], ValidationError)
    assert "invalid" in caplog.text and "dropped" in caplog.text


def test_sync_mode_delivers_before_the_call_returns(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client(sync_mode=True)
    client.track("Now", distinct_id="user_1")
    assert len(rsps.calls) == 1
    assert client.stats()["delivered"] == 1


@pytest.mark.parametrize("sync_mode", [False, True])
def test_send_false_accepts_and_sends_nothing(
    rsps: responses.RequestsMock, make_client: MakeClient, sync_mode: bool
) -> None:
    client = make_client(send=False, sync_mode=sync_mode)
    client.track("E", distinct_id="user_1")
    assert client.flush(5)
    assert len(rsps.calls) == 0 and client.stats()["not_sent"] == 1


def test_disabled_makes_every_call_a_no_op(rsps: responses.RequestsMock) -> None:
    client = Client(None, disabled=True, strict=True)
    client.track("", distinct_id="x")  # would be invalid, but disabled does nothing at all
    client.identify("user_1")
    client.people_set({"a": 1})
    assert client.flush(1)
    client.shutdown()
    assert len(rsps.calls) == 0


def test_shutdown_delivers_then_later_calls_are_dropped(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client(flush_interval=60)
    client.track("Before", distinct_id="user_1")
    client.shutdown()
    client.shutdown()  # idempotent
    client.track("After", distinct_id="user_1")
    assert [op["payload"]["event_name"] for op in sent_operations(rsps)] == ["Before"]
    assert client.stats()["dropped"] == {"closed": 1}


def test_context_manager_shuts_down(rsps: responses.RequestsMock) -> None:
    ok(rsps)
    with Client(API_KEY, "https://engine.test", flush_interval=60) as client:
        client.track("Inside", distinct_id="user_1")
    assert len(sent_operations(rsps)) == 1


def test_on_error_that_raises_or_flushes_does_not_break_the_worker(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add_callback(responses.POST, BATCH_URL, callback=poison_aware)
    holder: list[Client] = []

    def bad_handler(error: SankofaError, op: dict[str, Any]) -> None:
        holder[0].flush(1)  # from the worker thread: must not deadlock
        raise RuntimeError("handler bug")

    client = make_client(on_error=bad_handler)
    holder.append(client)
    client.track("Bad", {"poison": True}, distinct_id="user_1")
    assert client.flush(10)
    client.track("Good", distinct_id="user_1")
    assert client.flush(10)
    assert client.stats()["delivered"] == 1


def test_unconvertible_values_are_cut_and_the_event_still_goes(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    ok(rsps)
    client = make_client()
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    client.track(
        "Odd", {"h": Hostile(), "cyclic": cyclic, "inf": float("inf")}, distinct_id="user_1"
    )
    assert client.flush(10)
    props = sent_operations(rsps)[0]["payload"]["properties"]
    assert props["h"] is None and props["inf"] is None
    assert props["cyclic"] == {"name": "loop", "self": None}


def test_api_key_never_appears_in_repr_logs_or_errors(
    rsps: responses.RequestsMock, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=403, json={"error": "Invalid API Key", "ok": False})
    errors: list[SankofaError] = []
    with caplog.at_level(logging.DEBUG):
        client = make_client(debug=True, on_error=lambda e, op: errors.append(e))
        client.track("E", distinct_id="user_1")
        client.track("", distinct_id="user_1")
        assert client.flush(10)
    assert API_KEY not in repr(client) and "…cdef" in repr(client)
    assert API_KEY not in caplog.text
    assert all(API_KEY not in str(e) and API_KEY not in repr(e) for e in errors)


def test_configuration_errors_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="api_key"):
        Client("")
    with pytest.raises(ConfigurationError, match="flush_at"):
        Client(API_KEY, flush_at=0)
    with pytest.raises(ConfigurationError, match="host"):
        Client(API_KEY, host="ftp://example.com")
    with pytest.raises(ConfigurationError, match="on_error"):
        Client(API_KEY, on_error="print")  # type: ignore[arg-type]


def test_insecure_settings_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
        Client(API_KEY, host="engine.example.com", disabled=True).shutdown()
        Client(API_KEY, host="http://engine.example.com", disabled=True).shutdown()
        Client(API_KEY, host="https://engine.example.com", verify=False, disabled=True).shutdown()
        Client(API_KEY, host="http://127.0.0.1:9", disabled=True).shutdown()
    messages = [r.getMessage() for r in caplog.records]
    assert any("no scheme" in m for m in messages)
    assert any("unencrypted" in m for m in messages)
    assert any("verification is OFF" in m for m in messages)
    assert len(messages) == 3  # loopback http is fine


def test_flush_waits_for_a_batch_already_in_flight(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        entered.set()
        release.wait(10)
        return 200, {}, "{}"

    rsps.add_callback(responses.POST, BATCH_URL, callback=slow)
    client = make_client(flush_at=1)
    client.track("In Flight", distinct_id="user_1")
    assert entered.wait(10)  # the queue is empty now, but the batch is not delivered
    assert client.flush(timeout=0.2) is False
    release.set()
    assert client.flush(timeout=10) is True
    assert client.stats()["delivered"] == 1


def test_flush_after_shutdown_returns_at_once(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    ok(rsps)
    client = make_client()
    client.track("E", distinct_id="user_1")
    client.shutdown()
    assert client.flush() is True


@pytest.mark.parametrize(
    "body",
    [
        b'{"ok":true,"accepted":2,"commands":[{"op":"pause","for":"60s"}]}',
        b'{"status":"queued"}',
        b"OK",
        b"",
        b"\xff\x00<html>not json</html>",
        b"[" * 50_000,
        b'{"aliases_received":0,"events_received":1e400,"operations_received":2,"people_received":0}',
    ],
    ids=["extra keys", "another object", "OK", "empty", "not json", "too deep", "infinite count"],
)
def test_any_200_answer_is_a_delivery_whatever_its_body(
    rsps: responses.RequestsMock,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
) -> None:
    caplog.set_level(logging.WARNING, logger="sankofa_sdk")
    rsps.add(responses.POST, BATCH_URL, status=200, body=body)
    client = make_client(flush_interval=60)
    client.track("Event", distinct_id="user_1")
    client.track("Event", distinct_id="user_2")
    assert client.flush(5)
    stats: Any = client.stats()
    assert len(sent_operations(rsps)) == 2  # each sent once: nothing retried
    assert (stats["delivered"], stats["retried"], stats["failed"]) == (2, 0, 0)
    assert (stats["skipped"], stats["dropped"], stats["queued"]) == (0, {}, 0)
    assert [r.getMessage() for r in caplog.records] == []  # nothing said: all went well
