"""The batch endpoint: counts, validation in array order, whole-batch rejection, apply order
(spec sections 9, 13)."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer

from .conftest import (
    JSON,
    alias,
    applied,
    batch,
    batch_ok,
    people,
    post,
    send_batch,
    track,
    ts,
    user_traits,
)

INVALID_BATCH = b'{"error":"Invalid batch payload"}'
NO_OPERATIONS = b'{"error":"No operations provided"}'
DISCARDED_ALL = b'{"ok":true,"status":"discarded_all"}'


def post_batch(server: ReferenceServer, body: Any, **kw: Any) -> Any:
    return post(server, "/api/v1/batch", body, **kw)


def assert_stored_nothing(server: ReferenceServer) -> None:
    applied(server)
    stats = server.stats()
    assert (stats["events"], stats["people"], stats["aliases"]) == (0, 0, 0)


# --- accepted ----------------------------------------------------------------------------------


def test_accepted_batch_body_is_exact(server: ReferenceServer) -> None:
    reply = send_batch(
        server,
        alias("anon_1", "user_1"),
        people("user_1", {"plan": "pro"}),
        track("user_1"),
        track("anon_1"),
    )
    assert reply.status == 200
    assert reply.content_type == JSON
    assert reply.body == (
        b'{"aliases_received":1,"environment":"live","events_received":2,"ok":true,'
        b'"operations_received":4,"people_received":1,"project_id":"proj_reference",'
        b'"project_name":"Reference"}'
    )
    applied(server)
    stats = server.stats()
    assert (stats["events"], stats["people"], stats["aliases"]) == (2, 1, 1)


def test_counts_leave_out_discarded_operations(server: ReferenceServer) -> None:
    reply = send_batch(
        server,
        track("user_1"),
        track("a"),
        people("ACCEPT-1", {"x": 1}),
        alias("anon_1", "user_identity_9"),
        people("user_2"),
        {"type": "track", "payload": None},
        {"type": "alias", "payload": {}},
    )
    assert reply.status == 200
    assert reply.body == batch_ok(server, n=7, events=1, people_=1)
    applied(server)
    stats = server.stats()
    assert (stats["events"], stats["people"], stats["aliases"]) == (1, 1, 0)
    assert stats["discarded"] == 5


@pytest.mark.parametrize(
    "operations",
    [
        [track("a")],
        [track(""), people(None), alias("x", "gzip")],
        [{"type": "track", "payload": None}],
        [{"type": "people", "payload": {}}],
        [{"type": "alias", "payload": {"alias_id": "anon", "distinct_id": "*/*"}}],
    ],
)
def test_all_discarded_is_202(server: ReferenceServer, operations: list[Any]) -> None:
    reply = post_batch(server, {"operations": operations})
    assert reply.status == 202
    assert reply.content_type == JSON
    assert reply.body == DISCARDED_ALL
    assert_stored_nothing(server)
    assert server.stats()["discarded"] == len(operations)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_content_type_is_ignored(server: ReferenceServer, content_type: Any) -> None:
    reply = post_batch(server, batch(track()), content_type=content_type)
    assert reply.status == 200
    assert reply.body == batch_ok(server, n=1, events=1)


def test_test_key_batch_reports_test_environment(server: ReferenceServer) -> None:
    reply = post_batch(server, batch(track()), key=server.test_api_key)
    assert reply.body == batch_ok(server, n=1, events=1, environment="test")


def test_envelope_and_operation_keys_match_case_insensitively(server: ReferenceServer) -> None:
    body = {
        "OPERATIONS": [
            {"Type": "track", "PAYLOAD": {"distinct_id": "user_1"}},
            {"TYPE": "people", "Payload": {"Distinct_Id": "user_1", "properties": {}}},
        ],
        "unknown": [1, 2],
    }
    reply = post_batch(server, body)
    assert reply.body == batch_ok(server, n=2, events=1, people_=1)


def test_duplicate_operations_key_last_one_wins(server: ReferenceServer) -> None:
    one = json.dumps([track("user_1")])
    body = '{"operations":null,"operations":' + one + "}"
    assert post_batch(server, body).body == batch_ok(server, n=1, events=1)
    body = '{"operations":' + one + ',"Operations":[]}'
    assert post_batch(server, body).body == NO_OPERATIONS


def test_a_batch_costs_one_request_whatever_its_size(server: ReferenceServer) -> None:
    operations = [track(f"user_{i}") for i in range(2000)]
    reply = post_batch(server, {"operations": operations})
    assert reply.body == batch_ok(server, n=2000, events=2000)
    applied(server)
    assert server.stats()["events"] == 2000


# --- batch-level 400s ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"[]",
        b'[{"type":"track"}]',
        b'"operations"',
        b"1",
        b"false",
        b'{"operations":{}}',
        b'{"operations":"track"}',
        b'{"operations":1}',
        b'{"operations":true}',
        b'{"operations":[1]}',
        b'{"operations":["track"]}',
        b'{"operations":[[]]}',
        b'{"operations":[{"type":5,"payload":{}}]}',
        b'{"operations":[{"type":["track"],"payload":{}}]}',
        b'{"operations":[{"type":"track","payload":{"distinct_id":"user_1"}}]} x',
        b'{"operations":[]}{}',
        b'{"operations":[{"type":"track","payload":{"distinct_id":"user_1","properties":{"x":NaN}}}]}',
        b'{"operations":[{"type":"track","payload":{"distinct_id":"user_1","properties":{"x":1e999}}}]}',
        b"\xff\xfe{}",
    ],
)
def test_undecodable_body_is_invalid_batch_payload(server: ReferenceServer, body: bytes) -> None:
    reply = post_batch(server, body)
    assert reply.status == 400
    assert reply.content_type == JSON
    assert reply.body == INVALID_BATCH


def test_shape_error_late_in_the_array_wins_over_an_earlier_bad_type(
    server: ReferenceServer,
) -> None:
    # The envelope is decoded as a whole before any operation is looked at.
    body = {"operations": [{"type": "bogus", "payload": {}}, track(), 7]}
    assert post_batch(server, body).body == INVALID_BATCH


@pytest.mark.parametrize(
    "body",
    [b"null", b"{}", b'{"operations":null}', b'{"operations":[]}', b'{"other":[1]}', b" null "],
)
def test_no_operations(server: ReferenceServer, body: bytes) -> None:
    reply = post_batch(server, body)
    assert reply.status == 400
    assert reply.content_type == JSON
    assert reply.body == NO_OPERATIONS


# --- operation type -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op_type", "echo"),
    [
        ("identify", b"identify"),
        ("Track", b"Track"),
        ("TRACK", b"TRACK"),
        (" track", b" track"),
        ("track ", b"track "),
        ("", b""),
        (None, b""),
        ("<script>&", b"\\u003cscript\\u003e\\u0026"),
        ('say "hi"\\', b'say \\"hi\\"\\\\'),
        ("tab\there\nnl", b"tab\\there\\nnl"),
        ("\x01\x1f", b"\\u0001\\u001f"),
        ("\b\f", b"\\b\\f"),
        ("caf\u00e9 \u7528", "caf\u00e9 \u7528".encode()),
        ("\u2028\u2029", b"\\u2028\\u2029"),
        ("\ud800", "\ufffd".encode()),
    ],
)
def test_unsupported_type_is_echoed(server: ReferenceServer, op_type: Any, echo: bytes) -> None:
    body = json.dumps({"operations": [{"type": op_type, "payload": {"distinct_id": "user_1"}}]})
    reply = post_batch(server, body.encode())
    assert reply.status == 400
    assert reply.content_type == JSON
    assert reply.body == b'{"error":"Unsupported operation type: ' + echo + b'"}'
    assert_stored_nothing(server)


def test_null_operation_is_an_empty_type(server: ReferenceServer) -> None:
    reply = post_batch(server, {"operations": [track(), None]})
    assert reply.body == b'{"error":"Unsupported operation type: "}'


def test_operation_without_type(server: ReferenceServer) -> None:
    reply = post_batch(server, {"operations": [{"payload": {"distinct_id": "user_1"}}]})
    assert reply.body == b'{"error":"Unsupported operation type: "}'


def test_invalid_utf8_in_type_is_echoed_as_replacement_character(
    server: ReferenceServer,
) -> None:
    reply = post_batch(server, b'{"operations":[{"type":"x\xffy","payload":{}}]}')
    assert reply.body == b'{"error":"Unsupported operation type: x\xef\xbf\xbdy"}'


# --- payload ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["track", "people", "alias"])
@pytest.mark.parametrize(
    "payload",
    [
        "absent",
        [],
        "string",
        5,
        True,
        {"distinct_id": 5},
        {"distinct_id": "user_1", "timestamp": "2026-05-09 14:32:01"},
        {"distinct_id": "user_1", "timestamp": 1715263921},
        {"distinct_id": "user_1", "timestamp": ""},
    ],
)
def test_bad_payload_is_invalid_type_payload(
    server: ReferenceServer, kind: str, payload: Any
) -> None:
    operation: dict[str, Any] = {"type": kind}
    if payload != "absent":
        operation["payload"] = payload
    reply = post_batch(server, {"operations": [track(), operation]})
    assert reply.status == 400
    assert reply.content_type == JSON
    assert reply.body == b'{"error":"Invalid %s payload"}' % kind.encode()
    assert_stored_nothing(server)


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("track", "properties", []),
        ("track", "default_properties", "x"),
        ("track", "event_name", 1),
        ("track", "lib_version", {}),
        ("people", "properties", [1]),
        ("alias", "alias_id", 1),
    ],
)
def test_field_types_are_checked_per_type(
    server: ReferenceServer, kind: str, field: str, value: Any
) -> None:
    payload = {"distinct_id": "user_1", field: value}
    reply = post_batch(server, {"operations": [{"type": kind, "payload": payload}]})
    assert reply.body == b'{"error":"Invalid %s payload"}' % kind.encode()


def test_absent_payload_is_an_error_but_null_payload_is_discarded(
    server: ReferenceServer,
) -> None:
    reply = post_batch(server, {"operations": [{"type": "people"}]})
    assert reply.body == b'{"error":"Invalid people payload"}'
    reply = post_batch(server, {"operations": [{"type": "people", "payload": None}]})
    assert (reply.status, reply.body) == (202, DISCARDED_ALL)


@pytest.mark.parametrize(
    ("operations", "error"),
    [
        (
            [{"type": "x", "payload": {}}, {"type": "track", "payload": []}],
            b"Unsupported operation type: x",
        ),
        (
            [{"type": "track", "payload": []}, {"type": "x", "payload": {}}],
            b"Invalid track payload",
        ),
        (
            [{"type": "alias", "payload": 1}, {"type": "people", "payload": 1}],
            b"Invalid alias payload",
        ),
        (
            [track("a"), {"type": "people", "payload": 1}, {"type": "alias"}],
            b"Invalid people payload",
        ),
        (
            [track(), people(), {"type": "Alias", "payload": {}}],
            b"Unsupported operation type: Alias",
        ),
    ],
)
def test_first_failure_in_array_order_wins(
    server: ReferenceServer,
    operations: list[Any],
    error: bytes,
) -> None:
    reply = post_batch(server, {"operations": operations})
    assert reply.status == 400
    assert reply.body == b'{"error":"' + error + b'"}'


def test_a_bad_operation_rejects_the_whole_batch(server: ReferenceServer) -> None:
    good = [alias("anon_1", "user_1"), people("user_1", {"plan": "pro"}), track("user_1")]
    for bad in ({"type": "track", "payload": []}, {"type": "nope", "payload": {}}, 3):
        reply = post_batch(server, {"operations": [*good, bad, *good]})
        assert reply.status == 400
    assert_stored_nothing(server)
    assert server.get_person("user_1") is None


# --- compression on /batch --------------------------------------------------------------------


def test_gzip_batch_is_accepted(server: ReferenceServer) -> None:
    body = gzip.compress(json.dumps(batch(track(), people())).encode())
    reply = post_batch(server, body, headers={"Content-Encoding": "gzip"})
    assert reply.body == batch_ok(server, n=2, events=1, people_=1)


def test_deflate_batch_is_accepted(server: ReferenceServer) -> None:
    body = zlib.compress(json.dumps(batch(track())).encode())
    reply = post_batch(server, body, headers={"Content-Encoding": "deflate"})
    assert reply.body == batch_ok(server, n=1, events=1)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03broken"),
        ("gzip", json.dumps(batch(track())).encode()),
        ("deflate", gzip.compress(json.dumps(batch(track())).encode())),
        ("gzip, gzip", gzip.compress(json.dumps(batch(track())).encode())),
        ("identity, gzip", json.dumps(batch(track())).encode()),
    ],
)
def test_undecodable_compressed_batch_is_invalid_batch_payload(
    server: ReferenceServer, encoding: str, body: bytes
) -> None:
    reply = post_batch(server, body, headers={"Content-Encoding": encoding})
    assert (reply.status, reply.body) == (400, INVALID_BATCH)


def test_cap_applies_to_compressed_size_only() -> None:
    operations = [track(f"user_{i}", properties={"pad": "x" * 200}) for i in range(2000)]
    plain = json.dumps({"operations": operations}).encode()
    body = gzip.compress(plain)
    cap = len(body) + 10
    assert len(plain) > 10 * cap
    with ReferenceServer(rate_limit=None, max_body_bytes=cap) as srv:
        reply = post_batch(srv, body, headers={"Content-Encoding": "gzip"})
        assert reply.status == 200
        assert reply.body == batch_ok(srv, n=2000, events=2000)
        assert post_batch(srv, plain).status == 413


# --- apply order ----------------------------------------------------------------------------


def test_people_in_one_batch_apply_in_array_order(server: ReferenceServer) -> None:
    same = ts(0)
    reply = send_batch(
        server,
        people("user_1", {"plan": "free", "seat": 1}, timestamp=same),
        people("user_1", {"plan": "pro"}, timestamp=same),
        people("user_1", {"seat": 2}, timestamp=same),
    )
    assert reply.status == 200
    applied(server)
    assert user_traits(server.get_person("user_1")) == {"plan": "pro", "seat": 2}


def test_aliases_in_one_batch_apply_in_array_order(server: ReferenceServer) -> None:
    send_batch(
        server,
        alias("anon_1", "user_a"),
        alias("anon_1", "user_b"),
        track("user_a"),
        track("user_b"),
    )
    applied(server)
    person = server.get_person("anon_1")
    assert person is not None
    assert person["distinct_id"] == "user_b"


def test_events_in_one_batch_keep_array_order(server: ReferenceServer) -> None:
    same = ts(0)
    send_batch(server, *(track("user_1", f"e{i}", timestamp=same) for i in range(5)))
    applied(server)
    names = [event["event_name"] for event in server.events("user_1")]
    assert names == ["e4", "e3", "e2", "e1", "e0"]  # newest first: later rows first


def test_aliases_and_profiles_apply_before_events(server: ReferenceServer) -> None:
    # Events sent first in the array still find their person through the alias, and the
    # profile is there when the event is: the batch applies as one unit.
    send_batch(
        server,
        track("anon_1", "Viewed"),
        people("user_1", {"plan": "pro"}),
        alias("anon_1", "user_1"),
    )
    applied(server)
    person = server.get_person("user_1")
    assert person is not None
    assert person["aliases"] == ["anon_1"]
    assert person["event_count"] == 1
    assert user_traits(person) == {"plan": "pro"}
