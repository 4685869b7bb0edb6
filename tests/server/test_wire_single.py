"""Single routes /track, /people, /alias: Content-Type, decoding, garbage ids, timestamps,
enrichment and compressed bodies (spec sections 3, 4, 7, 8, 11, 13)."""

from __future__ import annotations

import gzip
import json
import math
import time
import zlib
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer, _gojson

from .conftest import JSON, TEXT, applied, post, user_traits

BAD = b"Bad Request"
DISCARDED = b'{"ok":true,"status":"discarded"}'
EVENT = {"distinct_id": "user_1", "event_name": "Signed Up", "properties": {"plan": "pro"}}
PROFILE = {"distinct_id": "user_1", "properties": {"plan": "pro"}}
ALIAS = {"alias_id": "anon_1", "distinct_id": "user_1"}
VALID: dict[str, dict[str, Any]] = {"track": EVENT, "people": PROFILE, "alias": ALIAS}
KINDS = ["track", "people", "alias"]


def single(server: ReferenceServer, kind: str, body: Any, **kw: Any) -> Any:
    return post(server, f"/api/v1/{kind}", body, **kw)


def assert_ok(reply: Any) -> None:
    assert reply.status == 200, reply.body
    assert reply.content_type == TEXT
    assert reply.body == b"OK"


def assert_bad(reply: Any) -> None:
    assert reply.status == 400, reply.body
    assert reply.content_type == TEXT
    assert reply.body == BAD


def assert_discarded(reply: Any) -> None:
    assert reply.status == 202, reply.body
    assert reply.content_type == JSON
    assert reply.body == DISCARDED


# --- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_valid_payload_is_200_plain_text_ok(server: ReferenceServer, kind: str) -> None:
    assert_ok(single(server, kind, VALID[kind]))


def test_each_route_stores_its_item(server: ReferenceServer) -> None:
    assert_ok(single(server, "track", EVENT))
    assert_ok(single(server, "people", PROFILE))
    assert_ok(single(server, "alias", ALIAS))
    applied(server)
    stats = server.stats()
    assert (stats["events"], stats["people"], stats["aliases"]) == (1, 1, 1)
    person = server.get_person("anon_1")
    assert person is not None
    assert person["distinct_id"] == "user_1"
    assert person["aliases"] == ["anon_1"]
    assert user_traits(person) == {"plan": "pro"}
    assert person["event_count"] == 1


# --- Content-Type -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "Application/Json;charset=UTF-8",
        "application/vnd.x+json",
        "application/vnd.api+json; version=2",
        "text/json",
        "application/x-ndjson",  # ends in json
        "json",
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_media_types_ending_in_json_are_accepted(
    server: ReferenceServer, kind: str, content_type: str
) -> None:
    assert_ok(single(server, kind, VALID[kind], content_type=content_type))


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/jsonx",
        "application/json-patch",
        "application/octet-stream",
        "text/plain; type=json",  # parameters do not count
        "application/x-json-stream",
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_other_media_types_are_400_plain_text(
    server: ReferenceServer, kind: str, content_type: str
) -> None:
    assert_bad(single(server, kind, VALID[kind], content_type=content_type))
    applied(server)
    assert server.stats()["events"] == 0


def test_content_type_is_checked_before_garbage_ids(server: ReferenceServer) -> None:
    assert_bad(single(server, "track", {"distinct_id": "a"}, content_type="text/plain"))


# --- garbage ids (section 11) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "distinct_id",
    [
        "",
        "a",
        " ",
        "7",
        None,
        "user_identity_9",
        "accepted_invite_42",
        "ACCEPT-1",
        "GZIP",
        "x-deflate-y",
        "*/*",
        "text/*/*",
        "IdEnTiTy",
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_garbage_distinct_id_is_202_discarded(
    server: ReferenceServer, kind: str, distinct_id: Any
) -> None:
    payload = {**VALID[kind], "distinct_id": distinct_id}
    assert_discarded(single(server, kind, payload))
    applied(server)
    stats = server.stats()
    assert (stats["events"], stats["people"], stats["aliases"]) == (0, 0, 0)
    assert stats["discarded"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_check_lowers_like_go(server: ReferenceServer, kind: str) -> None:
    assert_discarded(single(server, kind, {**VALID[kind], "distinct_id": "\u0130dentity_1"}))


@pytest.mark.parametrize("distinct_id", ["é", "ab", "  ", "42", "用户", "anon_0d9f"])
@pytest.mark.parametrize("kind", KINDS)
def test_two_byte_ids_are_kept(server: ReferenceServer, kind: str, distinct_id: str) -> None:
    assert_ok(single(server, kind, {**VALID[kind], "distinct_id": distinct_id}))


@pytest.mark.parametrize("kind", KINDS)
def test_missing_distinct_id_is_discarded(server: ReferenceServer, kind: str) -> None:
    payload = {k: v for k, v in VALID[kind].items() if k != "distinct_id"}
    assert_discarded(single(server, kind, payload))


@pytest.mark.parametrize("alias_id", ["", "a", "gzip", "accept", None])
def test_alias_id_is_never_validated(server: ReferenceServer, alias_id: Any) -> None:
    assert_ok(single(server, "alias", {"alias_id": alias_id, "distinct_id": "user_1"}))
    applied(server)
    assert server.stats()["aliases"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_null_and_empty_object_are_discarded_not_rejected(
    server: ReferenceServer, kind: str
) -> None:
    assert_discarded(single(server, kind, b"null"))
    assert_discarded(single(server, kind, b"{}"))
    assert_discarded(single(server, kind, b" \n\t{ } \r\n"))


# --- decode errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" ",
        b"[]",
        b"[{}]",
        b'"string"',
        b"42",
        b"true",
        b'{"distinct_id":"user_1"} x',
        b'{"distinct_id":"user_1"}{}',
        b'{"distinct_id":"user_1",}',
        b"{'distinct_id':'user_1'}",
        b'{"distinct_id":"user_1"} // comment',
        b'/* c */ {"distinct_id":"user_1"}',
        b'{"distinct_id":"user_1","properties":{"x":NaN}}',
        b'{"distinct_id":"user_1","properties":{"x":Infinity}}',
        b'{"distinct_id":"user_1","properties":{"x":-Infinity}}',
        b'{"distinct_id":"user_1","properties":{"x":1e400}}',
        b'{"distinct_id":"user_1","properties":{"x":-1e400}}',
        b'{"distinct_id":"user_1","properties":{"x":01}}',
        b'{"distinct_id":"user_1","properties":{"x":.5}}',
        b'{"distinct_id":"user_1","properties":{"x":+1}}',
        b'{"distinct_id":"user_1","properties":{"x":0x10}}',
        b'{"distinct_id":"user_1"',
        b'{"distinct_id":"us\ner_1"}',  # raw control character in a string
        b'{"distinct_id":"\\x41"}',
        b"\xef\xbb\xbf{}",  # a byte-order mark is not JSON
        b'{"distinct_id":"user_1"}\x00',
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_malformed_bodies_are_400(server: ReferenceServer, kind: str, body: bytes) -> None:
    assert_bad(single(server, kind, body))


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("track", "event_name", 5),
        ("track", "event_name", ["x"]),
        ("track", "distinct_id", 12345),
        ("track", "distinct_id", True),
        ("track", "distinct_id", {"id": "x"}),
        ("track", "properties", ["a"]),
        ("track", "properties", "plan=pro"),
        ("track", "properties", 1),
        ("track", "default_properties", []),
        ("track", "default_properties", "x"),
        ("track", "lib_version", 1.0),
        ("track", "timestamp", 1715263921),
        ("track", "timestamp", 1715263921482),
        ("track", "timestamp", {}),
        ("track", "id", 7),
        ("people", "distinct_id", 5),
        ("people", "properties", []),
        ("people", "properties", "x"),
        ("people", "timestamp", 0),
        ("alias", "alias_id", 5),
        ("alias", "alias_id", False),
        ("alias", "distinct_id", ["user_1"]),
        ("alias", "timestamp", 1.5),
    ],
)
def test_known_field_with_wrong_type_is_400(
    server: ReferenceServer, kind: str, field: str, value: Any
) -> None:
    assert_bad(single(server, kind, {**VALID[kind], field: value}))


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        # Fields of another payload type are unknown here, so any type passes.
        ("people", "event_name", 5),
        ("people", "default_properties", 5),
        ("people", "lib_version", []),
        ("alias", "properties", 5),
        ("alias", "event_name", {}),
        ("track", "alias_id", 5),
        # Unknown keys are ignored whatever they hold.
        ("track", "type", 1),
        ("track", "message_id", {"x": 1}),
        ("track", "anon_id", []),
        ("track", "user_id", 5),
        ("people", "uuid", None),
    ],
)
def test_unknown_fields_are_ignored(
    server: ReferenceServer, kind: str, field: str, value: Any
) -> None:
    assert_ok(single(server, kind, {**VALID[kind], field: value}))


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("track", "event_name"),
        ("track", "properties"),
        ("track", "default_properties"),
        ("track", "lib_version"),
        ("track", "timestamp"),
        ("track", "id"),
        ("people", "properties"),
        ("people", "timestamp"),
        ("alias", "alias_id"),
        ("alias", "timestamp"),
    ],
)
def test_null_fields_are_zero_values(server: ReferenceServer, kind: str, field: str) -> None:
    assert_ok(single(server, kind, {**VALID[kind], field: None}))


def test_field_names_match_case_insensitively(server: ReferenceServer) -> None:
    body = {
        "Distinct_ID": "user_1",
        "EVENT_NAME": "Upper",
        "Properties": {"Plan": "pro"},
        "LIB_version": "python-9",
    }
    assert_ok(single(server, "track", body))
    applied(server)
    [event] = server.events("user_1")
    assert event["event_name"] == "Upper"
    assert event["properties"] == {"Plan": "pro"}  # property keys keep their case
    assert event["lib_version"] == "python-9"


def test_go_folds_long_s_and_kelvin_sign(server: ReferenceServer) -> None:
    # Go's case folding maps U+017F (long s) to S and U+212A (Kelvin) to K. No wire field has a
    # k in its name, so a key with the Kelvin sign matches none (ignored, like any unknown key),
    # while property keys are kept exactly as sent, Kelvin sign included.
    assert _gojson.fold("\u212a") == _gojson.fold("k") == _gojson.fold("K")
    assert _gojson.fold("\u017f") == _gojson.fold("s")
    body = {
        "di\u017ftinct_id": "user_1",
        "event_name": "x",
        "\u212aey": "ignored",
        "properties": {"\u212aelvin": 1, "kelvin": 2},
    }
    assert_ok(single(server, "track", body))
    assert_ok(single(server, "people", {"distinct_id": "user_2", "properties": {"\u212a": "K"}}))
    applied(server)
    assert server.get_person("user_1") is not None
    [event] = server.events("user_1")
    assert event["properties"] == {"\u212aelvin": 1, "kelvin": 2}
    assert user_traits(server.get_person("user_2")) == {"\u212a": "K"}


def test_go_folds_dotted_and_dotless_i(server: ReferenceServer) -> None:
    assert_ok(single(server, "track", {"d\u0131stinct_id": "user_1", "event_name": "x"}))
    assert_ok(single(server, "track", {"d\u0130stinct_id": "user_2", "event_name": "x"}))


def test_duplicate_field_last_one_wins(server: ReferenceServer) -> None:
    assert_ok(single(server, "track", b'{"distinct_id":"a","distinct_id":"user_1"}'))
    assert_discarded(single(server, "track", b'{"distinct_id":"user_1","distinct_id":"a"}'))
    assert_discarded(single(server, "track", b'{"distinct_id":"user_1","DISTINCT_ID":"a"}'))
    assert_ok(single(server, "track", b'{"Distinct_Id":"a","distinct_id":"user_2"}'))
    applied(server)
    assert server.get_person("user_1") is not None
    assert server.get_person("user_2") is not None


@pytest.mark.xfail(
    strict=True,
    reason="Go reports a type error of an earlier duplicate key even when a later one is valid",
)
def test_duplicate_field_with_wrong_type_first_is_still_400(server: ReferenceServer) -> None:
    assert_bad(single(server, "track", b'{"distinct_id":5,"distinct_id":"user_1"}'))


@pytest.mark.xfail(
    strict=True,
    reason="Go's time decoder fails on the first duplicate before the last one is seen",
)
def test_duplicate_timestamp_with_bad_value_first_is_still_400(server: ReferenceServer) -> None:
    body = b'{"distinct_id":"user_1","timestamp":"yesterday","timestamp":null}'
    assert_bad(single(server, "track", body))


@pytest.mark.xfail(
    strict=True,
    reason="Go decodes a repeated object field into the map it already made (keys merge); "
    "the server keeps only the last object",
)
@pytest.mark.parametrize("second_key", ["properties", "Properties"])
def test_repeated_properties_objects_merge_like_go(
    server: ReferenceServer, second_key: str
) -> None:
    body = '{"distinct_id":"user_1","properties":{"a":1,"b":1},"' + second_key + '":{"b":2}}'
    assert_ok(single(server, "track", body.encode()))
    applied(server)
    [event] = server.events("user_1")
    assert event["properties"] == {"a": 1, "b": 2}


def test_repeated_properties_with_null_last_clears_the_map(server: ReferenceServer) -> None:
    body = b'{"distinct_id":"user_1","properties":{"a":1},"properties":null}'
    assert_ok(single(server, "track", body))
    applied(server)
    [event] = server.events("user_1")
    assert event["properties"] == {}


# --- property values (section 7.5) ---------------------------------------------------------------


def test_any_json_value_is_accepted_in_properties(server: ReferenceServer) -> None:
    properties = {
        "s": "x",
        "n": 49.99,
        "i": 1234567,
        "neg": -3,
        "b": True,
        "null": None,
        "list": [1, "two", [3]],
        "obj": {"nested": {"deep": [{"k": "v"}]}},
        "tiny": 1e-300,
        "big": 1.7976931348623157e308,
        "unicode": "Ghana 🇬🇭 <&>",
    }
    body = {**EVENT, "properties": properties, "default_properties": properties}
    assert_ok(single(server, "track", body))
    assert_ok(single(server, "people", {**PROFILE, "properties": properties}))


def test_number_underflow_is_zero_not_an_error(server: ReferenceServer) -> None:
    # Go's ParseFloat rounds a magnitude below the smallest subnormal to a signed zero.
    body = b'{"distinct_id":"user_1","properties":{"x":1e-400,"y":-1e-400}}'
    assert_ok(single(server, "track", body))
    assert_ok(single(server, "people", b'{"distinct_id":"user_1","properties":{"z":1e-400}}'))
    applied(server)
    [event] = server.events("user_1")
    x, y = event["properties"]["x"], event["properties"]["y"]
    assert (x, math.copysign(1, x)) == (0.0, 1.0)
    assert (y, math.copysign(1, y)) == (0.0, -1.0)
    z = user_traits(server.get_person("user_1"))["z"]
    assert (z, math.copysign(1, z)) == (0.0, 1.0)


@pytest.mark.parametrize(
    "number",
    [
        "9" * 299 + "e10",  # no 3-digit exponent, no 300-digit run, still > max float64
        "1" + "0" * 309,
        "1" + "0" * 5000,
        "0." + "0" * 100 + "1e420",
        "1.8e308",
    ],
)
def test_numbers_beyond_float64_are_400(server: ReferenceServer, number: str) -> None:
    body = b'{"distinct_id":"user_1","properties":{"x":%s}}' % number.encode()
    assert_bad(single(server, "track", body))
    applied(server)
    assert server.stats()["write_errors"] == 0


def test_large_numbers_within_float64_are_accepted(server: ReferenceServer) -> None:
    for number in ("1" + "0" * 300, "1.7976931348623157e308", "-" + "9" * 250, "1e-5000"):
        body = b'{"distinct_id":"user_1","properties":{"x":%s}}' % number.encode()
        assert_ok(single(server, "track", body))
    applied(server)
    assert server.stats()["events"] == 4
    assert server.stats()["write_errors"] == 0


# --- timestamps (section 7.6) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-05-09T14:32:01Z",
        "2026-05-09T14:32:01.482Z",
        "2026-05-09T14:32:01.123456789123Z",  # any number of fraction digits
        "2026-05-09T14:32:01+00:00",
        "2026-05-09T14:32:01.5-07:30",
        "2026-05-09T23:59:59+23:59",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_rfc3339_timestamps_with_zone_are_accepted(
    server: ReferenceServer, kind: str, stamp: str
) -> None:
    assert_ok(single(server, kind, {**VALID[kind], "timestamp": stamp}))


@pytest.mark.parametrize(
    "stamp",
    [
        "",
        "2026-05-09",
        "2026-05-09T14:32:01",  # no zone
        "2026-05-09 14:32:01Z",  # space instead of T
        "2026-05-09t14:32:01Z",  # lower-case t
        "2026-05-09T14:32:01z",  # lower-case z
        "2026-05-09T14:32:01.Z",
        "2026-05-09T14:32:01,5Z",  # comma fraction
        "2026-05-09T14:32Z",
        "2026-5-9T14:32:01Z",
        "2026-05-09T4:32:01Z",
        "2026-05-09T14:32:01+0000",
        "2026-05-09T14:32:01+00",
        "2026-05-09T14:32:01 +00:00",
        "2026-02-30T00:00:00Z",  # no such day
        "2026-13-01T00:00:00Z",
        "2026-05-09T24:00:00Z",
        "2026-05-09T23:59:60Z",  # no leap seconds
        "2026-05-09T14:32:01+24:00",
        "2026-05-09T14:32:01+01:60",
        " 2026-05-09T14:32:01Z",
        "2026-05-09T14:32:01Z ",
        "1715263921",
        "Sat, 09 May 2026 14:32:01 GMT",
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_other_timestamps_are_400(server: ReferenceServer, kind: str, stamp: str) -> None:
    assert_bad(single(server, kind, {**VALID[kind], "timestamp": stamp}))


def test_year_zero_is_a_valid_timestamp(server: ReferenceServer) -> None:
    assert_ok(single(server, "track", {**EVENT, "timestamp": "0000-06-01T00:00:00Z"}))


@pytest.mark.xfail(
    strict=True,
    reason="Go's Time.UnmarshalJSON parses the raw JSON string without unescaping it",
)
def test_escaped_characters_in_a_timestamp_are_400(server: ReferenceServer) -> None:
    body = b'{"distinct_id":"user_1","timestamp":"2026-05-09\\u005414:32:01Z"}'
    assert_bad(single(server, "track", body))


def _event_time(server: ReferenceServer, distinct_id: str = "user_1") -> str:
    applied(server)
    [event] = server.events(distinct_id)
    return str(event["timestamp"])


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def test_event_timestamp_is_kept(server: ReferenceServer) -> None:
    assert_ok(single(server, "track", {**EVENT, "timestamp": "2026-05-09T16:32:01.482+02:00"}))
    assert _event_time(server) == "2026-05-09T14:32:01.482Z"


@pytest.mark.parametrize(
    "not_sent",
    [None, "0001-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00", "0001-01-01T00:00:00.000Z"],
)
def test_zero_time_counts_as_not_sent(server: ReferenceServer, not_sent: Any) -> None:
    properties = {"$timestamp": "2025-01-02 03:04:05"}
    assert_ok(single(server, "track", {**EVENT, "timestamp": not_sent, "properties": properties}))
    assert _event_time(server) == "2025-01-02T03:04:05.000Z"


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"$timestamp": "2025-01-02T03:04:05Z"}, "2025-01-02T03:04:05.000Z"),
        ({"$timestamp": "2025-01-02T03:04:05.25+01:00"}, "2025-01-02T02:04:05.250Z"),
        ({"$timestamp": "2025-01-02 03:04:05"}, "2025-01-02T03:04:05.000Z"),
        ({"$timestamp": "2025-01-02 03:04:05.678"}, "2025-01-02T03:04:05.678Z"),
        ({"$time": "2025-01-02T03:04:05Z"}, "2025-01-02T03:04:05.000Z"),
        ({"$time": "2025-01-02 03:04:05"}, "2025-01-02T03:04:05.000Z"),
        # $timestamp wins over $time.
        (
            {"$timestamp": "2025-01-02T03:04:05Z", "$time": "2024-01-01T00:00:00Z"},
            "2025-01-02T03:04:05.000Z",
        ),
        # A non-string $timestamp is ignored, so $time is used.
        ({"$timestamp": 1735787045, "$time": "2025-01-02T03:04:05Z"}, "2025-01-02T03:04:05.000Z"),
    ],
)
def test_property_timestamp_fallback(
    server: ReferenceServer,
    properties: dict[str, Any],
    expected: str,
) -> None:
    assert_ok(single(server, "track", {**EVENT, "properties": properties}))
    assert _event_time(server) == expected


@pytest.mark.parametrize(
    "properties",
    [
        {},
        {"$timestamp": "yesterday", "$time": "2025-01-02T03:04:05Z"},  # $time not tried
        {"$timestamp": "2025-01-02T03:04:05"},
        {"$time": 1735787045},
        {"$timestamp": None},
    ],
)
def test_event_without_usable_time_gets_server_time(
    server: ReferenceServer,
    properties: dict[str, Any],
) -> None:
    before = _now_iso()
    assert_ok(single(server, "track", {**EVENT, "properties": properties}))
    after = _now_iso()
    assert before <= _event_time(server)[:19] <= after


def test_top_level_timestamp_wins_over_properties(server: ReferenceServer) -> None:
    body = {
        **EVENT,
        "timestamp": "2026-01-01T00:00:00Z",
        "properties": {"$timestamp": "2025-01-02T03:04:05Z"},
    }
    assert_ok(single(server, "track", body))
    assert _event_time(server) == "2026-01-01T00:00:00.000Z"


def test_profile_ignores_property_timestamps(server: ReferenceServer) -> None:
    before = _now_iso()
    body = {"distinct_id": "user_1", "properties": {"$timestamp": "2020-01-01T00:00:00Z"}}
    assert_ok(single(server, "people", body))
    after = _now_iso()
    applied(server)
    person = server.get_person("user_1")
    assert person is not None
    assert before <= person["last_seen"][:19] <= after


# --- event fields and enrichment (section 8) -----------------------------------------------------


def test_event_fields_are_stored(server: ReferenceServer) -> None:
    body = {
        "distinct_id": "user_1",
        "event_name": "",
        "properties": {"$session_id": "sess_1", "k": [1, 2]},
        "lib_version": "python-1.2.3",
        "id": "client-id-ignored",
    }
    assert_ok(single(server, "track", body))
    applied(server)
    [event] = server.events("user_1")
    assert event["event_name"] == ""
    assert event["session_id"] == "sess_1"
    assert event["properties"] == {"$session_id": "sess_1", "k": [1, 2]}
    assert event["lib_version"] == "python-1.2.3"
    assert event["event_id"].startswith("evt_") and len(event["event_id"]) == 25
    assert event["event_id"] != "client-id-ignored"


def test_non_string_session_id_is_not_a_session(server: ReferenceServer) -> None:
    assert_ok(single(server, "track", {**EVENT, "properties": {"$session_id": 42}}))
    applied(server)
    [event] = server.events("user_1")
    assert event["session_id"] is None


def test_event_device_keys_are_always_overwritten_from_user_agent(
    server: ReferenceServer,
) -> None:
    body = {
        **EVENT,
        "default_properties": {"$os": "Plan9", "$browser": "Mosaic", "$lib": "sankofa-python"},
        "properties": {"$os": "kept in properties"},
    }
    assert_ok(single(server, "track", body, headers={"User-Agent": "curl/8.5.0"}))
    applied(server)
    [event] = server.events("user_1")
    assert event["default_properties"] == {
        "$os": "Other",
        "$browser": "curl",
        "$device_model": "Other",
        "$lib": "sankofa-python",
    }
    assert event["properties"] == {"$os": "kept in properties"}


def test_empty_user_agent_parses_to_other(server: ReferenceServer) -> None:
    assert_ok(single(server, "track", EVENT))
    applied(server)
    [event] = server.events("user_1")
    defaults = event["default_properties"]
    assert (defaults["$os"], defaults["$browser"], defaults["$device_model"]) == (
        "Other",
        "Other",
        "Other",
    )


def test_profile_device_keys_are_filled_only_when_missing_empty_or_other(
    server: ReferenceServer,
) -> None:
    ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15"
    body = {
        "distinct_id": "user_1",
        "properties": {"$os": "Plan9", "$browser": "", "$device_model": "Other"},
    }
    assert_ok(single(server, "people", body, headers={"User-Agent": ua}))
    body = {"distinct_id": "user_2", "properties": {"$os": 7}}
    assert_ok(single(server, "people", body, headers={"User-Agent": ua}))
    applied(server)
    one, two = server.get_person("user_1"), server.get_person("user_2")
    assert one is not None and two is not None
    assert one["traits"] == {"$os": "Plan9", "$browser": "Safari", "$device_model": "Mac"}
    assert two["traits"] == {"$os": "Mac OS X", "$browser": "Safari", "$device_model": "Mac"}


# --- compressed bodies (section 4) ---------------------------------------------------------------


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("kind", KINDS)
def test_gzip_body_is_decoded_on_single_routes(server: ReferenceServer, kind: str) -> None:
    body = gzip.compress(json.dumps(VALID[kind]).encode())
    assert_ok(single(server, kind, body, headers={"Content-Encoding": "gzip"}))


def test_deflate_means_zlib_wrapped(server: ReferenceServer) -> None:
    body = _deflate(json.dumps(EVENT).encode())
    assert_ok(single(server, "track", body, headers={"Content-Encoding": "deflate"}))


def test_encoding_list_is_decoded_in_listed_order(server: ReferenceServer) -> None:
    body = gzip.compress(_deflate(json.dumps(EVENT).encode()))
    assert_ok(single(server, "track", body, headers={"Content-Encoding": "gzip, deflate"}))


def test_declared_gzip_on_a_plain_body_is_400(server: ReferenceServer) -> None:
    assert_bad(single(server, "track", EVENT, headers={"Content-Encoding": "gzip"}))


def test_list_starting_with_an_unknown_token_yields_an_empty_body(
    server: ReferenceServer,
) -> None:
    assert_bad(single(server, "track", EVENT, headers={"Content-Encoding": "identity, gzip"}))


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"\x1f\x8b\x08\x00garbage-after-a-gzip-magic"),
        ("gzip", gzip.compress(json.dumps(EVENT).encode())[:-8]),  # truncated
        ("deflate", b"\x78\x9cnot-zlib"),
        ("deflate", _raw_deflate(json.dumps(EVENT).encode())),  # raw deflate is not accepted
        ("gzip", _deflate(json.dumps(EVENT).encode())),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_undecodable_compressed_body_is_400(
    server: ReferenceServer, kind: str, encoding: str, body: bytes
) -> None:
    assert_bad(single(server, kind, body, headers={"Content-Encoding": encoding}))


@pytest.mark.parametrize("encoding", ["GZIP", "Deflate", "identity", "x-custom"])
def test_single_unknown_token_passes_the_body_through(
    server: ReferenceServer, encoding: str
) -> None:
    assert_ok(single(server, "track", EVENT, headers={"Content-Encoding": encoding}))


def test_gzip_token_is_case_sensitive(server: ReferenceServer) -> None:
    body = gzip.compress(json.dumps(EVENT).encode())
    assert_bad(single(server, "track", body, headers={"Content-Encoding": "GZIP"}))
