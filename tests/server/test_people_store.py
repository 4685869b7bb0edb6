"""The People store: decision D1 merge, aliases, and the read API (methods and HTTP routes)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sankofa_sdk.server import ReferenceServer

from .conftest import (
    alias,
    applied,
    get,
    people,
    request,
    send_batch,
    track,
    ts,
    user_traits,
)


def send(server: ReferenceServer, *operations: Any, key: Optional[str] = None) -> None:
    reply = send_batch(server, *operations, **({} if key is None else {"key": key}))
    assert reply.status == 200, reply.body


def traits(server: ReferenceServer, distinct_id: str, **kw: Any) -> dict[str, Any]:
    applied(server)
    return user_traits(server.get_person(distinct_id, **kw))


# --- D1: key-by-key merge ----------------------------------------------------------------------


def test_keys_not_sent_are_kept(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "free", "seats": 1}, timestamp=ts(0)))
    send(server, people("user_1", {"seats": 5}, timestamp=ts(1)))
    assert traits(server, "user_1") == {"plan": "free", "seats": 5}


def test_null_deletes_a_key(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "free", "seats": 1}, timestamp=ts(0)))
    send(server, people("user_1", {"plan": None}, timestamp=ts(1)))
    assert traits(server, "user_1") == {"seats": 1}
    person = server.get_person("user_1")
    assert person is not None and "plan" not in person["traits"]


def test_deleting_an_unknown_key_is_harmless(server: ReferenceServer) -> None:
    send(server, people("user_1", {"never_set": None, "plan": "pro"}, timestamp=ts(0)))
    assert traits(server, "user_1") == {"plan": "pro"}


def test_later_timestamp_wins_per_key_even_when_it_arrives_first(
    server: ReferenceServer,
) -> None:
    send(server, people("user_1", {"plan": "new", "seats": 9}, timestamp=ts(10)))
    send(server, people("user_1", {"plan": "old", "region": "eu"}, timestamp=ts(5)))
    assert traits(server, "user_1") == {"plan": "new", "seats": 9, "region": "eu"}


def test_older_null_does_not_delete_a_newer_value(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "pro"}, timestamp=ts(10)))
    send(server, people("user_1", {"plan": None}, timestamp=ts(5)))
    assert traits(server, "user_1") == {"plan": "pro"}


def test_newer_value_brings_back_a_deleted_key(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": None}, timestamp=ts(10)))
    send(server, people("user_1", {"plan": "stale"}, timestamp=ts(5)))
    assert traits(server, "user_1") == {}
    send(server, people("user_1", {"plan": "fresh"}, timestamp=ts(11)))
    assert traits(server, "user_1") == {"plan": "fresh"}


def test_equal_timestamps_go_to_the_update_applied_last(server: ReferenceServer) -> None:
    for value in ("first", "second", "third"):
        send(server, people("user_1", {"plan": value}, timestamp=ts(3)))
    assert traits(server, "user_1") == {"plan": "third"}
    send(server, people("user_1", {"plan": None}, timestamp=ts(3)))
    assert traits(server, "user_1") == {}


def test_profile_zero_time_means_server_time(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "old"}, timestamp="2000-01-01T00:00:00Z"))
    send(server, people("user_1", {"plan": "now"}, timestamp="0001-01-01T00:00:00Z"))
    send(server, people("user_1", {"plan": "older"}, timestamp="2001-01-01T00:00:00Z"))
    assert traits(server, "user_1") == {"plan": "now"}


def test_timestamps_compare_as_instants_not_text(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "later"}, timestamp="2026-05-09T10:00:00-05:00"))
    send(server, people("user_1", {"plan": "earlier"}, timestamp="2026-05-09T14:00:00Z"))
    assert traits(server, "user_1") == {"plan": "later"}  # 15:00Z beats 14:00Z


def test_subsecond_precision_decides(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "b"}, timestamp="2026-05-09T14:00:00.002Z"))
    send(server, people("user_1", {"plan": "a"}, timestamp="2026-05-09T14:00:00.001Z"))
    assert traits(server, "user_1") == {"plan": "b"}


def test_trait_values_keep_their_json_types(server: ReferenceServer) -> None:
    values = {
        "s": "text <&>",
        "i": 12345678901234567,
        "f": 49.99,
        "b": False,
        "list": [1, "a", None, {"x": [True]}],
        "obj": {"nested": {"k": "v"}},
        "empty": "",
        "unicode": "Akwaaba 🇬🇭",
    }
    send(server, people("user_1", values, timestamp=ts(0)))
    assert traits(server, "user_1") == values


def test_trait_keys_are_case_sensitive(server: ReferenceServer) -> None:
    send(server, people("user_1", {"Plan": "a", "plan": "b"}, timestamp=ts(0)))
    assert traits(server, "user_1") == {"Plan": "a", "plan": "b"}


def test_reserved_traits_are_shown_on_their_own(server: ReferenceServer) -> None:
    values = {"name": "Ama", "email": "ama@example.com", "avatar": "https://x/a.png"}
    send(server, people("user_1", values, timestamp=ts(0)))
    applied(server)
    person = server.get_person("user_1")
    assert person is not None
    assert (person["name"], person["email"], person["avatar"], person["phone"]) == (
        "Ama",
        "ama@example.com",
        "https://x/a.png",
        None,
    )


def test_first_seen_last_seen_and_event_count(server: ReferenceServer) -> None:
    send(server, *(track("user_1", timestamp=ts(s)) for s in (50, 10, 90)))
    applied(server)
    person = server.get_person("user_1")
    assert person is not None
    assert (person["first_seen"], person["last_seen"], person["event_count"]) == (
        ts(10),
        ts(90),
        3,
    )
    send(server, people("user_1", {"plan": "pro"}, timestamp=ts(5)))
    send(server, track("user_1", timestamp=ts(200)))
    applied(server)
    person = server.get_person("user_1")
    assert person is not None
    assert (person["first_seen"], person["last_seen"], person["event_count"]) == (
        ts(5),
        ts(200),
        4,
    )


def test_person_with_only_events_has_no_traits(server: ReferenceServer) -> None:
    send(server, track("user_1"))
    applied(server)
    person = server.get_person("user_1")
    assert person is not None
    assert person["traits"] == {}
    assert server.stats()["people"] == 0  # no profile was sent


def test_unknown_person_is_none(server: ReferenceServer) -> None:
    assert server.get_person("nobody") is None


# --- aliases ------------------------------------------------------------------------------


def test_alias_links_both_directions(server: ReferenceServer) -> None:
    send(
        server,
        track("anon_1", "Viewed", timestamp=ts(1)),
        people("anon_1", {"utm": "ad"}, timestamp=ts(1)),
        alias("anon_1", "user_1"),
        people("user_1", {"plan": "pro"}, timestamp=ts(2)),
        track("user_1", "Paid", timestamp=ts(3)),
    )
    applied(server)
    for distinct_id in ("anon_1", "user_1"):
        person = server.get_person(distinct_id)
        assert person is not None
        assert person["distinct_id"] == "user_1"
        assert person["aliases"] == ["anon_1"]
        assert user_traits(person) == {"utm": "ad", "plan": "pro"}
        assert person["event_count"] == 2
        names = [e["event_name"] for e in server.events(distinct_id)]
        assert names == ["Paid", "Viewed"]
    events = server.events("user_1")
    assert [e["distinct_id"] for e in events] == ["user_1", "anon_1"]  # nothing rewritten


def test_linked_ids_merge_traits_by_timestamp(server: ReferenceServer) -> None:
    send(
        server,
        people("anon_1", {"plan": "trial", "color": "red"}, timestamp=ts(9)),
        people("user_1", {"plan": "pro", "color": "blue"}, timestamp=ts(5)),
        alias("anon_1", "user_1"),
    )
    assert traits(server, "user_1") == {"plan": "trial", "color": "red"}


def test_alias_chain_resolves_to_the_end(server: ReferenceServer) -> None:
    send(
        server,
        alias("anon_1", "anon_2"),
        alias("anon_2", "user_1"),
        track("anon_1"),
        people("user_1", {"plan": "pro"}),
    )
    applied(server)
    for distinct_id in ("anon_1", "anon_2", "user_1"):
        person = server.get_person(distinct_id)
        assert person is not None
        assert person["distinct_id"] == "user_1"
        assert person["aliases"] == ["anon_1", "anon_2"]


def test_display_id_follows_at_most_ten_hops(server: ReferenceServer) -> None:
    ids = [f"id_{i:02d}" for i in range(13)]
    send(server, *(alias(a, b) for a, b in itertools.pairwise(ids)), track("id_00"))
    applied(server)
    person = server.get_person("id_00")
    assert person is not None
    assert person["distinct_id"] == "id_10"
    assert sorted([person["distinct_id"], *person["aliases"]]) == ids


def test_alias_loops_terminate(server: ReferenceServer) -> None:
    send(
        server,
        alias("id_a", "id_b"),
        alias("id_b", "id_a"),
        alias("id_c", "id_c"),
        track("id_a"),
        track("id_c"),
    )
    applied(server)
    for distinct_id in ("id_a", "id_b"):
        person = server.get_person(distinct_id)
        assert person is not None
        assert sorted([person["distinct_id"], *person["aliases"]]) == ["id_a", "id_b"]
        assert person["event_count"] == 1
    person = server.get_person("id_c")
    assert person is not None
    assert (person["distinct_id"], person["aliases"]) == ("id_c", [])
    listed = server.list_people()
    assert listed["total"] == 2


def test_same_alias_id_later_mapping_replaces_earlier(server: ReferenceServer) -> None:
    send(server, alias("anon_1", "user_a"), track("user_a"), track("user_b"))
    send(server, alias("anon_1", "user_b"))
    applied(server)
    assert server.stats()["aliases"] == 1
    person_a = server.get_person("user_a")
    person_b = server.get_person("user_b")
    assert person_a is not None and person_b is not None
    assert person_a["aliases"] == []
    assert person_b["aliases"] == ["anon_1"]


def test_repeated_alias_is_stored_once(server: ReferenceServer) -> None:
    send(server, alias("anon_1", "user_1"), alias("anon_1", "user_1"))
    send(server, alias("anon_1", "user_1"))
    applied(server)
    assert server.stats()["aliases"] == 1


def test_alias_alone_makes_no_person(server: ReferenceServer) -> None:
    send(server, alias("anon_1", "user_1"))
    applied(server)
    assert server.get_person("user_1") is None
    assert server.list_people()["total"] == 0


def test_live_and_test_identities_never_link(server: ReferenceServer) -> None:
    send(server, track("anon_1"), people("user_1", {"plan": "live"}))
    send(server, alias("anon_1", "user_1"), key=server.test_api_key)
    send(server, people("user_1", {"plan": "test"}), key=server.test_api_key)
    applied(server)
    live = server.get_person("anon_1")
    assert live is not None and live["distinct_id"] == "anon_1" and live["aliases"] == []
    assert user_traits(server.get_person("user_1")) == {"plan": "live"}
    assert user_traits(server.get_person("user_1", environment="test")) == {"plan": "test"}
    test = server.get_person("anon_1", environment="test")
    assert test is not None and test["distinct_id"] == "user_1" and test["event_count"] == 0
    assert server.stats()["aliases"] == 0
    assert server.stats(environment="test")["aliases"] == 1


def test_projects_are_kept_apart(fresh: ReferenceServer) -> None:
    other = fresh.add_project("Other", project_id="proj_other")
    send(fresh, people("user_1", {"plan": "mine"}))
    send(fresh, people("user_1", {"plan": "theirs"}), key=other.api_key)
    assert traits(fresh, "user_1") == {"plan": "mine"}
    assert traits(fresh, "user_1", project_id="proj_other") == {"plan": "theirs"}
    with pytest.raises(ValueError):
        fresh.get_person("user_1", project_id="proj_missing")
    with pytest.raises(ValueError):
        fresh.get_person("user_1", environment="staging")


# --- list and search ------------------------------------------------------------------------


@pytest.fixture
def crowd(server: ReferenceServer) -> Iterator[ReferenceServer]:
    send(
        server,
        people(
            "user_ama",
            {"name": "Ama Mensah", "email": "ama@shop.example", "plan": "pro"},
            timestamp=ts(30),
        ),
        people(
            "user_kofi",
            {"name": "Kofi", "email": "KOFI@Mail.example", "plan": "free", "seats": 3},
            timestamp=ts(20),
        ),
        people("user_yaw", {"plan": "pro", "note": "likes ama"}, timestamp=ts(10)),
        alias("anon_x1", "user_yaw"),
        track("user_esi", timestamp=ts(40)),
        people("user_abena", {"active": True, "plan": "pro"}, timestamp=ts(5)),
    )
    applied(server)
    yield server


def ids(listing: dict[str, Any]) -> list[str]:
    return [p["distinct_id"] for p in listing["people"]]


def test_list_is_most_recently_seen_first(crowd: ReferenceServer) -> None:
    listing = crowd.list_people()
    assert ids(listing) == ["user_esi", "user_ama", "user_kofi", "user_yaw", "user_abena"]
    assert (listing["total"], listing["limit"], listing["offset"]) == (5, 50, 0)
    assert listing["people"][1] == crowd.get_person("user_ama")


def test_list_pages_with_limit_and_offset(crowd: ReferenceServer) -> None:
    first = crowd.list_people(limit=2)
    second = crowd.list_people(limit=2, offset=2)
    third = crowd.list_people(limit=2, offset=4)
    beyond = crowd.list_people(limit=2, offset=10)
    assert ids(first) + ids(second) + ids(third) == ids(crowd.list_people())
    assert [len(ids(p)) for p in (first, second, third, beyond)] == [2, 2, 1, 0]
    assert {p["total"] for p in (first, second, third, beyond)} == {5}
    assert (second["limit"], second["offset"]) == (2, 2)


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("user_k", ["user_kofi"]),
        ("KOFI@mail", ["user_kofi"]),  # email, case-insensitive
        ("mensah", ["user_ama"]),  # name
        ("anon_x", ["user_yaw"]),  # alias
        ("ama", ["user_ama"]),  # other traits (note) are not searched
        ("shop.example", ["user_ama"]),
        ("user_", ["user_esi", "user_ama", "user_kofi", "user_yaw", "user_abena"]),
        ("nobody", []),
    ],
)
def test_search_matches_ids_aliases_email_and_name(
    crowd: ReferenceServer, search: str, expected: list[str]
) -> None:
    listing = crowd.list_people(search=search)
    assert ids(listing) == expected
    assert listing["total"] == len(expected)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"plan": "pro"}, ["user_ama", "user_yaw", "user_abena"]),
        ({"plan": "pro", "name": "Ama Mensah"}, ["user_ama"]),
        ({"seats": 3}, ["user_kofi"]),
        ({"seats": "3"}, ["user_kofi"]),  # query-string form of a number
        ({"active": "true"}, ["user_abena"]),
        ({"active": True}, ["user_abena"]),
        ({"plan": "enterprise"}, []),
        ({"missing": "x"}, []),
    ],
)
def test_where_filters_on_trait_values(
    crowd: ReferenceServer,
    where: dict[str, Any],
    expected: list[str],
) -> None:
    assert ids(crowd.list_people(where=where)) == expected


def test_updated_since_keeps_people_updated_at_or_after(crowd: ReferenceServer) -> None:
    assert ids(crowd.list_people(updated_since=ts(20))) == ["user_ama", "user_kofi"]
    assert ids(crowd.list_people(updated_since=ts(20.001))) == ["user_ama"]
    assert ids(crowd.list_people(updated_since=ts(31))) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 501}, {"limit": 0}, {"limit": -1}, {"offset": -1}, {"updated_since": "yesterday"}],
)
def test_list_rejects_bad_arguments(crowd: ReferenceServer, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        crowd.list_people(**kwargs)


def test_list_accepts_limit_500(crowd: ReferenceServer) -> None:
    assert crowd.list_people(limit=500)["limit"] == 500


def test_test_environment_lists_apart(crowd: ReferenceServer) -> None:
    assert crowd.list_people(environment="test")["total"] == 0


# --- events ---------------------------------------------------------------------------------


def test_events_newest_first_and_paginated(server: ReferenceServer) -> None:
    send(server, *(track("user_1", f"e{s}", timestamp=ts(s)) for s in (3, 1, 4, 0, 2)))
    send(server, track("user_2", "other", timestamp=ts(9)))
    applied(server)
    names = [e["event_name"] for e in server.events("user_1")]
    assert names == ["e4", "e3", "e2", "e1", "e0"]
    assert [e["event_name"] for e in server.events("user_1", limit=2, offset=1)] == ["e3", "e2"]
    assert [e["event_name"] for e in server.events("user_1", event_name="e1")] == ["e1"]
    assert [e["event_name"] for e in server.events()][:2] == ["other", "e4"]
    assert len(server.events(limit=100)) == 6
    assert server.events("nobody") == []


# --- trait history, delete trait, delete person ------------------------------------------------


def test_trait_history_oldest_first_with_outcome(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "pro"}, timestamp=ts(10)))
    send(server, people("user_1", {"plan": "free", "seats": 2}, timestamp=ts(5)))
    send(server, people("user_1", {"plan": None}, timestamp=ts(20)))
    applied(server)
    history = server.trait_history("user_1", "plan")
    assert [(h["value"], h["took_effect"], h["timestamp"]) for h in history] == [
        ("free", False, ts(5)),
        ("pro", True, ts(10)),
        (None, True, ts(20)),
    ]
    assert {h["source"] for h in history} == {"ingest"}
    assert {h["distinct_id"] for h in history} == {"user_1"}
    everything = server.trait_history("user_1")
    assert {h["key"] for h in everything} >= {"plan", "seats"}
    assert server.trait_history("nobody") == []


def test_delete_trait(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "pro", "seats": 2}, timestamp=ts(0)))
    applied(server)
    assert server.delete_trait("user_1", "plan") is True
    assert traits(server, "user_1") == {"seats": 2}
    assert server.delete_trait("user_1", "plan") is False
    assert server.delete_trait("user_1", "never") is False
    assert server.delete_trait("nobody", "plan") is False
    # The delete is stamped now: an update stamped before it does not bring the value back,
    # one stamped after it does.
    send(server, people("user_1", {"plan": "stale"}, timestamp=ts(1)))
    assert traits(server, "user_1") == {"seats": 2}
    send(server, people("user_1", {"plan": "new"}, timestamp="2999-01-01T00:00:00Z"))
    assert traits(server, "user_1") == {"seats": 2, "plan": "new"}
    sources = [h["source"] for h in server.trait_history("user_1", "plan")]
    assert sources == ["ingest", "ingest", "delete", "ingest"]


def test_delete_trait_reaches_linked_ids(server: ReferenceServer) -> None:
    send(
        server,
        people("anon_1", {"plan": "trial"}, timestamp=ts(0)),
        people("user_1", {"plan": "pro"}, timestamp=ts(1)),
        alias("anon_1", "user_1"),
    )
    applied(server)
    assert server.delete_trait("anon_1", "plan") is True
    assert traits(server, "user_1") == {}


def test_delete_person_hides_it_and_keeps_events(server: ReferenceServer) -> None:
    send(
        server,
        people("user_1", {"plan": "pro"}),
        alias("anon_1", "user_1"),
        track("anon_1"),
        track("user_1"),
        people("user_2", {"plan": "free"}),
    )
    applied(server)
    before = server.stats()
    assert server.delete_person("anon_1") is True
    assert server.get_person("user_1") is None
    assert server.get_person("anon_1") is None
    assert server.events("user_1") == []
    assert server.trait_history("user_1") == []
    assert ids(server.list_people()) == ["user_2"]
    after = server.stats()
    assert after["events"] == before["events"] == 2
    assert after["people"] == before["people"] - 1
    assert server.delete_person("user_1") is False
    assert server.delete_trait("user_1", "plan") is False
    assert len(server.events()) == 2  # still counted in the project's event list


# --- HTTP read routes (/reference/v1) -------------------------------------------------------------


def read(server: ReferenceServer, method: str, path: str, key: Any = "live") -> Any:
    api_key = {"live": server.api_key, "test": server.test_api_key}.get(key, key)
    headers = {} if api_key is None else {"x-api-key": api_key}
    return request(server, method, "/reference/v1" + path, b"", headers)


def body(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    assert reply.content_type == "application/json"
    return json.loads(reply.body)


def test_http_person(crowd: ReferenceServer) -> None:
    assert body(read(crowd, "GET", "/people/anon_x1")) == crowd.get_person("user_yaw")
    reply = read(crowd, "GET", "/people/nobody")
    assert reply.status == 404
    assert reply.body == b'{"error":"Person not found","ok":false}'


def test_http_person_id_is_percent_decoded(server: ReferenceServer) -> None:
    odd = "user/with space?&é"
    send(server, people(odd, {"plan": "pro"}))
    applied(server)
    person = body(read(server, "GET", "/people/" + quote(odd, safe="")))
    assert person["distinct_id"] == odd


def test_http_list(crowd: ReferenceServer) -> None:
    assert body(read(crowd, "GET", "/people")) == crowd.list_people()
    listing = body(read(crowd, "GET", "/people?search=KOFI&limit=1"))
    assert ids(listing) == ["user_kofi"]
    listing = body(read(crowd, "GET", "/people?trait.plan=pro&limit=2&offset=1"))
    assert (ids(listing), listing["total"]) == (["user_yaw", "user_abena"], 3)
    listing = body(read(crowd, "GET", "/people?updated_since=" + quote(ts(20))))
    assert ids(listing) == ["user_ama", "user_kofi"]


def test_http_list_caps_limit_at_500(crowd: ReferenceServer) -> None:
    assert body(read(crowd, "GET", "/people?limit=10000"))["limit"] == 500


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=abc", "offset=-1", "offset=x", "updated_since=yesterday"],
)
def test_http_list_bad_query_is_400(crowd: ReferenceServer, query: str) -> None:
    reply = read(crowd, "GET", "/people?" + query)
    assert reply.status == 400
    assert json.loads(reply.body)["ok"] is False


def test_http_events_history_and_stats(server: ReferenceServer) -> None:
    send(
        server,
        *(track("user_1", f"e{s}", timestamp=ts(s)) for s in range(3)),
        people("user_1", {"plan": "pro"}, timestamp=ts(0)),
        track("a"),
    )
    applied(server)
    events = body(read(server, "GET", "/people/user_1/events?limit=2&offset=0"))["events"]
    assert [e["event_name"] for e in events] == ["e2", "e1"]
    assert events == server.events("user_1", limit=2)
    assert body(read(server, "GET", "/events?event_name=e0"))["events"] == server.events(
        event_name="e0"
    )
    history = body(read(server, "GET", "/people/user_1/history?key=plan"))["history"]
    assert history == server.trait_history("user_1", "plan")
    stats = body(read(server, "GET", "/stats"))
    counts = ("people", "events", "aliases", "discarded", "duplicate_insert_ids")
    assert {k: stats.pop(k) for k in counts} == {
        "people": 1,
        "events": 3,
        "aliases": 0,
        "discarded": 1,
        "duplicate_insert_ids": 0,
    }
    # The server-wide counters of ReferenceServer.stats() follow, this request counted too.
    assert stats == {
        "idempotent_replays": 0,
        "repeated_keys": 0,
        "repeated_after_success": 0,
        "requests": len(server.requests),
        "ingest_requests": 1,
        "rate_limited": 0,
        "pending": 0,
        "write_errors": 0,
        "faults_injected": 0,
    }
    assert read(server, "GET", "/people/nobody/events").status == 404


def test_http_wait(server: ReferenceServer) -> None:
    send(server, track())
    assert body(read(server, "POST", "/wait?timeout=5")) == {"applied": True}
    assert server.stats()["events"] == 1
    assert read(server, "POST", "/wait?timeout=9999").status == 400


def test_http_deletes(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "pro", "seats": 1}))
    applied(server)
    assert body(read(server, "DELETE", "/people/user_1/traits/plan")) == {"deleted": True}
    assert read(server, "DELETE", "/people/user_1/traits/plan").status == 404
    assert user_traits(server.get_person("user_1")) == {"seats": 1}
    assert body(read(server, "DELETE", "/people/user_1")) == {"deleted": True}
    assert read(server, "DELETE", "/people/user_1").status == 404
    assert read(server, "GET", "/people/user_1").status == 404


def test_http_reads_use_the_key_environment(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "test"}), key=server.test_api_key)
    applied(server)
    assert read(server, "GET", "/people/user_1").status == 404
    assert body(read(server, "GET", "/people/user_1", key="test"))["traits"]["plan"] == "test"


@pytest.mark.parametrize(
    ("key", "status", "error"),
    [
        (None, 401, b"Missing API Key"),
        ("", 401, b"Missing API Key"),
        ("sk_x", 403, b"Invalid API Key"),
    ],
)
def test_http_reads_need_a_key(
    server: ReferenceServer, key: Any, status: int, error: bytes
) -> None:
    for path in ("/stats", "/people", "/people/user_1", "/events"):
        reply = read(server, "GET", path, key=key)
        assert reply.status == status
        assert reply.body == b'{"error":"' + error + b'","ok":false}'


def test_http_reads_refuse_another_projects_id(fresh: ReferenceServer) -> None:
    other = fresh.add_project("Other", project_id="proj_other")
    send(fresh, people("user_1", {"plan": "pro"}), key=other.api_key)
    applied(fresh)
    reply = read(fresh, "GET", "/people/user_1?project_id=proj_other")
    assert (reply.status, reply.body) == (403, b'{"error":"Invalid API Key","ok":false}')
    assert read(fresh, "GET", f"/people?project_id={fresh.project_id}").status == 200
    own = read(fresh, "GET", "/people/user_1?project_id=proj_other", key=other.api_key)
    assert body(own)["traits"]["plan"] == "pro"


def test_http_unknown_read_route_is_404(server: ReferenceServer) -> None:
    reply = read(server, "GET", "/nope")
    assert (reply.status, reply.body) == (
        404,
        b'{"error":"Cannot GET /reference/v1/nope","ok":false}',
    )


def test_http_wrong_method_on_person_route_is_405(server: ReferenceServer) -> None:
    assert read(server, "POST", "/people/user_1").status == 405


def test_reads_are_not_ingest_requests(server: ReferenceServer) -> None:
    server.faults.fail_next(5, status=503)
    assert get(server, "/reference/v1/stats").status == 200
    assert get(server, "/health").status == 200


# --- property: the merge rule ------------------------------------------------------------------

KEYS = ["k0", "k1", "k2"]
update = st.tuples(
    st.sampled_from(KEYS),
    st.one_of(
        st.none(), st.integers(-5, 5), st.text(max_size=3), st.lists(st.booleans(), max_size=2)
    ),
    st.integers(0, 4),  # few distinct stamps: many ties
)
_person_ids = itertools.count()


@pytest.fixture(scope="module")
def merge_server() -> Iterator[ReferenceServer]:
    with ReferenceServer(rate_limit=None) as srv:
        yield srv


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    updates=st.lists(st.lists(update, min_size=1, max_size=4), min_size=1, max_size=6),
    per_request=st.integers(1, 3),
)
def test_merge_matches_the_model(
    merge_server: ReferenceServer,
    updates: list[Any],
    per_request: int,
) -> None:
    """Per key, the value of the update with the greatest (timestamp, apply order) wins."""
    distinct_id = f"merge_{next(_person_ids)}"
    operations = [
        people(distinct_id, {key: value for key, value, _ in group}, timestamp=ts(group[0][2]))
        for group in updates
    ]
    for start in range(0, len(operations), per_request):
        send(merge_server, *operations[start : start + per_request])
    model: dict[str, tuple[int, int, Any]] = {}
    for order, group in enumerate(updates):
        stamp = group[0][2]
        for key, value, _ in group:
            value = {k: v for k, v, _ in group}[key]  # the last duplicate key of a map wins
            if key not in model or (stamp, order) >= model[key][:2]:
                model[key] = (stamp, order, value)
    expected = {k: v for k, (_, _, v) in model.items() if v is not None}
    assert traits(merge_server, distinct_id) == expected


def test_stats_count_repeated_insert_ids(server: ReferenceServer) -> None:
    send(
        server,
        track("user_1", properties={"$insert_id": "i-1"}),
        track("user_1", properties={"$insert_id": "i-1"}),
        track("user_1", properties={"$insert_id": "i-2"}),
        track("user_1", properties={"$insert_id": 7}),  # not a string: not an insert id
        track("user_1"),
    )
    send(server, track("user_1", properties={"$insert_id": "i-2"}))
    applied(server)
    stats = server.stats()
    assert (stats["events"], stats["duplicate_insert_ids"]) == (6, 2)
