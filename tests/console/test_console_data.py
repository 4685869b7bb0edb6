"""The console's data routes: people and profiles, the live stream, the request log."""

from __future__ import annotations

import gzip
import json
import sqlite3
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer

from ..server.conftest import alias, batch, people, post, send_batch, track, ts
from .conftest import console

CHANGE = {"X-Sankofa-Console": "1"}


def send(server: ReferenceServer, *operations: Any, key: Any = None) -> None:
    reply = send_batch(server, *operations, **({} if key is None else {"key": key}))
    assert reply.status == 200, reply.body
    assert server.wait_until_applied(10)


def data(server: ReferenceServer, route: str, **params: Any) -> Any:
    reply = console(server, route, params)
    assert reply.status == 200, reply.body
    return reply.json()


# --- people --------------------------------------------------------------------------------------


def test_profile_follows_the_reserved_traits_and_types_every_trait(
    server: ReferenceServer,
) -> None:
    send(
        server,
        track("anon_1", "Viewed Pricing", timestamp=ts(0)),
        alias("anon_1", "user_1", timestamp=ts(1)),
        people(
            "user_1",
            {
                "$name": "Ama Mensah",
                "email": "ama@example.com",
                "$avatar": "https://img.example/ama.png",
                "$phone": "+233 20 000 0000",
                "plan": "pro",
                "seats": 3,
                "ratio": 0.5,
                "beta": True,
                "tags": ["a"],
                "big": 12345678901234567890,
            },
            timestamp=ts(2),
        ),
    )

    person = data(server, "person", id="anon_1")

    assert (person["distinct_id"], person["aliases"]) == ("user_1", ["anon_1"])
    assert (person["name"], person["email"], person["avatar"], person["phone"]) == (
        "Ama Mensah",
        "ama@example.com",
        "https://img.example/ama.png",
        "+233 20 000 0000",
    )
    traits = {t["key"]: (t["type"], t["text"], t["reserved"]) for t in person["traits"]}
    assert traits["plan"] == ("string", "pro", None)
    assert traits["seats"] == ("integer", "3", None)
    assert traits["ratio"] == ("number", "0.5", None)
    assert traits["beta"] == ("boolean", "true", None)
    assert traits["tags"] == ("array", '["a"]', None)
    assert traits["big"] == ("integer", "12345678901234567890", None)  # every digit, as text
    assert traits["$name"] == ("string", "Ama Mensah", "name")
    assert traits["email"] == ("string", "ama@example.com", "email")
    assert person["event_count"] == 1


def test_people_list_searches_email_and_filters_traits(server: ReferenceServer) -> None:
    send(
        server,
        people("user_1", {"$email": "kofi@mail.example", "plan": "pro"}, timestamp=ts(0)),
        people("user_2", {"email": "esi@mail.example", "plan": "free"}, timestamp=ts(1)),
    )

    by_email = data(server, "people", search="KOFI@")
    by_trait = data(server, "people", **{"trait.plan": "free"})
    keys = data(server, "trait-keys")["keys"]

    assert [p["distinct_id"] for p in by_email["people"]] == ["user_1"]
    assert by_email["people"][0]["email"] == "kofi@mail.example"
    assert [p["distinct_id"] for p in by_trait["people"]] == ["user_2"]
    assert {"$email", "email", "plan"} <= set(keys)


def test_people_list_pages(server: ReferenceServer) -> None:
    send(server, *(people(f"user_{i}", {"n": i}, timestamp=ts(i)) for i in range(5)))

    first = data(server, "people", limit=2)
    third = data(server, "people", limit=2, offset=4)

    assert [p["distinct_id"] for p in first["people"]] == ["user_4", "user_3"]
    assert [p["distinct_id"] for p in third["people"]] == ["user_0"]
    assert first["total"] == third["total"] == 5


def test_person_events_are_newest_first_across_stitched_ids(server: ReferenceServer) -> None:
    send(
        server,
        track("anon_1", "First", timestamp=ts(0)),
        alias("anon_1", "user_1", timestamp=ts(1)),
        track("user_1", "Second", timestamp=ts(2)),
    )

    events = data(server, "person/events", id="user_1")

    assert [(e["name"], e["distinct_id"]) for e in events["events"]] == [
        ("Second", "user_1"),
        ("First", "anon_1"),
    ]
    assert events["total"] == 2


def test_trait_history_says_which_value_when_and_from_which_update(
    server: ReferenceServer,
) -> None:
    send(server, people("user_1", {"plan": "free"}, timestamp=ts(0)))
    send(server, people("user_1", {"plan": "pro"}, timestamp=ts(10)))
    send(server, people("user_1", {"plan": "stale"}, timestamp=ts(5)))

    history = [
        h for h in data(server, "person/history", id="user_1")["history"] if h["key"] == "plan"
    ]

    assert [(h["text"], h["took_effect"]) for h in history] == [
        ("pro", True),
        ("stale", False),
        ("free", True),
    ]
    assert history[0]["timestamp"] == ts(10)
    assert history[0]["distinct_id"] == "user_1" and history[0]["update_id"] > 0


def test_trait_history_names_the_request_each_value_came_in(server: ReferenceServer) -> None:
    reply = send_batch(
        server, people("user_1", {"plan": "free"}), headers={"Idempotency-Key": "key-1"}
    )
    assert reply.status == 200
    send(server, track("user_1"), people("user_1", {"plan": "pro"}, timestamp=ts(10)))
    first, second = (r for r in server.requests if r.path == "/api/v1/batch")

    history = data(server, "person/history", id="user_1")["history"]
    by_value = {h["text"]: h["request"] for h in history if h["key"] == "plan"}

    assert by_value["free"]["sequence"] == first.sequence
    assert by_value["free"]["idempotency_key"] == "key-1"
    assert by_value["pro"]["sequence"] == second.sequence
    assert by_value["pro"]["idempotency_key"] is None
    for request in by_value.values():
        assert request["in_log"] is True and request["route"] == "batch"
        assert request["received_at"].endswith("Z")
    shown = data(server, "request", sequence=by_value["free"]["sequence"])
    assert (shown["path"], shown["idempotency_key"]) == ("/api/v1/batch", "key-1")


def test_request_numbers_go_on_across_a_reopened_store(tmp_path: Any) -> None:
    db = str(tmp_path / "people.db")
    with ReferenceServer(rate_limit=None, db_path=db) as first:
        send(first, people("user_1", {"plan": "free"}))
        numbered = first.requests[-1].sequence
    with ReferenceServer(rate_limit=None, db_path=db) as second:
        send(second, people("user_1", {"plan": "pro"}, timestamp=ts(10)))
        later = second.requests[-1].sequence
        history = data(second, "person/history", id="user_1")["history"]

    requests = {h["text"]: h["request"] for h in history}
    assert later > numbered
    assert (requests["free"]["sequence"], requests["free"]["in_log"]) == (numbered, False)
    assert (requests["pro"]["sequence"], requests["pro"]["in_log"]) == (later, True)


def test_deleting_from_the_console_uses_the_read_api_rules(server: ReferenceServer) -> None:
    send(server, people("user_1", {"plan": "pro", "seats": 2}), alias("anon_1", "user_1"))

    trait = console(
        server, "person/trait", {"id": "anon_1", "key": "plan"}, method="DELETE", headers=CHANGE
    )
    again = console(
        server, "person/trait", {"id": "user_1", "key": "plan"}, method="DELETE", headers=CHANGE
    )
    whole = console(server, "person", {"id": "user_1"}, method="DELETE", headers=CHANGE)

    assert (trait.json(), again.json()) == ({"deleted": True}, {"deleted": False})
    assert whole.json() == {"deleted": True}
    assert server.get_person("user_1") is None and server.get_person("anon_1") is None
    assert console(server, "person", {"id": "user_1"}).status == 404


def test_projects_list_every_project_with_people_per_environment(
    server: ReferenceServer,
) -> None:
    other = server.add_project("Other", project_id="proj_other")
    send(server, people("user_1", {"plan": "pro"}), people("user_2", {"plan": "pro"}))
    send(server, people("user_3", {"plan": "pro"}), key=server.test_api_key)
    send(server, people("user_4", {"plan": "pro"}), key=other.api_key)

    projects = data(server, "projects")["projects"]

    assert [(p["id"], p["name"], p["people"]) for p in projects] == [
        ("proj_reference", "Reference", {"live": 2, "test": 1}),
        ("proj_other", "Other", {"live": 1, "test": 0}),
    ]


def test_each_environment_counts_the_people_its_list_shows(server: ReferenceServer) -> None:
    send(
        server,
        people("user_1", {"plan": "pro"}),  # a profile only
        track("user_2", "Opened App"),  # events only
        track("anon_3"),  # events under an id that became a profile's alias
        people("user_3", {"plan": "pro"}),
        alias("anon_3", "user_3"),
        alias("anon_4", "user_4"),  # an alias alone is nobody yet
        track("user_5"),  # deleted below: its events stay, it is not listed
        track("user_6"),  # linked to user_5 through an alias: deleted with it
        alias("user_6", "user_5"),
    )
    send(server, track("user_7"), key=server.test_api_key)
    deleted = console(server, "person", {"id": "user_5"}, method="DELETE", headers=CHANGE)
    assert deleted.json() == {"deleted": True}

    counts = data(server, "projects")["projects"][0]["people"]
    listed = {env: data(server, "people", env=env)["total"] for env in ("live", "test")}

    assert counts == listed == {"live": 3, "test": 1}


def test_a_missing_or_foreign_scope_is_refused(server: ReferenceServer) -> None:
    assert console(server, "people", {"project": "proj_missing"}).status == 400
    assert console(server, "people", {"env": "staging"}).status == 400
    assert console(server, "nothing").status == 404


# --- live stream -------------------------------------------------------------------------------


def test_stream_shows_new_operations_of_every_kind_after_the_cursor(
    server: ReferenceServer,
) -> None:
    send(server, track("user_0", "Before"))
    start = data(server, "stream")

    send(
        server,
        alias("anon_1", "user_1"),
        people("user_1", {"$name": "Ama", "plan": "pro"}),
        track("user_1", "Signed Up"),
    )
    after = data(server, "stream", after=start["cursor"])

    assert [r["name"] for r in start["rows"]] == ["Before"]
    assert sorted(r["kind"] for r in after["rows"]) == ["alias", "people", "track"]
    rows = {r["kind"]: r for r in after["rows"]}
    assert rows["track"]["name"] == "Signed Up"
    assert rows["people"]["summary"] == "$name, plan"
    assert rows["alias"]["summary"] == "anon_1 \u2192 user_1"
    assert data(server, "stream", after=after["cursor"])["rows"] == []


def test_stream_keeps_to_its_project_and_environment(server: ReferenceServer) -> None:
    other = server.add_project("Other", project_id="proj_other")
    start = data(server, "stream")["cursor"]
    send(server, track("user_1", "Ours"))
    send(server, track("user_1", "Test"), key=server.test_api_key)
    send(server, track("user_1", "Theirs"), people("user_1", {"a": 1}), key=other.api_key)

    ours = data(server, "stream", after=start)["rows"]
    theirs = data(server, "stream", project="proj_other")["rows"]

    assert [r["name"] for r in ours] == ["Ours"]
    assert sorted(r["kind"] for r in theirs) == ["people", "track"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kinds": "track"}, ["track:Checkout", "track:Signed Up"]),
        ({"kinds": "people,alias"}, ["alias", "people"]),
        ({"event_name": "check"}, ["track:Checkout"]),
        ({"distinct_id": "USER_2"}, ["track:Checkout"]),
        ({"distinct_id": "anon"}, ["alias"]),
    ],
)
def test_stream_filters_by_kind_event_name_and_distinct_id(
    server: ReferenceServer, params: dict[str, str], expected: list[str]
) -> None:
    send(
        server,
        alias("anon_1", "user_1"),
        people("user_1", {"plan": "pro"}),
        track("user_1", "Signed Up"),
        track("user_2", "Checkout"),
    )

    rows = data(server, "stream", **params)["rows"]

    shown = sorted(r["kind"] + (":" + r["name"] if r["kind"] == "track" else "") for r in rows)
    assert shown == expected


def test_an_events_operation_is_shown_as_it_arrived(server: ReferenceServer) -> None:
    body = (
        b'{"operations":[{"type":"people","payload":{"distinct_id":"user_1","properties":{}}},'
        b'{"payload":{"event_name":"Paid","distinct_id":"user_1",'
        b'"properties":{"amount":12345678901234567890,"z":1.50,"note":"<b>\\u00e9</b>"}},'
        b'"type":"track"}]}'
    )
    reply = post(server, "/api/v1/batch", gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert reply.status == 200 and server.wait_until_applied()
    (row,) = data(server, "stream", kinds="track")["rows"]

    shown = data(server, "operation", ref=row["id"])

    assert shown["exact"] is True
    assert "".join(shown["text"].split()) == (
        '{"payload":{"event_name":"Paid","distinct_id":"user_1","properties":'
        '{"amount":12345678901234567890,"z":1.50,"note":"<b>\\u00e9</b>"}},"type":"track"}'
    )


def test_profile_and_alias_operations_are_shown_as_they_arrived(server: ReferenceServer) -> None:
    people_text = (
        '{ "payload" :{"properties":{ "z" :1.50,  "a":"\\u00e9", "z":2},'
        '"distinct_id":"user_1" ,"timestamp":"' + ts(1) + '"},"type":"people"}'
    )
    alias_text = '{"type":"alias","payload":{ "distinct_id" :"user_1","alias_id":"anon_1"}}'
    body = '{"operations" : [ ' + alias_text + " ,\n  " + people_text + "]}"
    reply = post(
        server,
        "/api/v1/batch",
        gzip.compress(body.encode()),
        headers={"Content-Encoding": "gzip"},
    )
    assert reply.status == 200 and server.wait_until_applied()
    sequence = server.requests[-1].sequence
    rows = {r["kind"]: r for r in data(server, "stream")["rows"]}

    update = data(server, "operation", ref=rows["people"]["id"])
    stitch = data(server, "operation", ref=rows["alias"]["id"])

    for shown, sent in ((update, people_text), (stitch, alias_text)):
        assert shown["exact"] is True and "as it arrived on /api/v1/batch" in shown["note"]
        assert shown["sequence"] == sequence
        # Only whitespace between tokens changes: key order, duplicates and spelling stay.
        assert "".join(shown["text"].split()) == "".join(sent.split())
    assert update["text"].index('"z"') < update["text"].index('"a"')
    assert update["text"].count('"z"') == 2 and "1.50" in update["text"]
    assert "\\u00e9" in update["text"]
    assert "$os" in update["note"]  # the server's additions are named, not shown as sent
    assert console(server, "operation", {"ref": "track:999"}).status == 404
    assert console(server, "operation", {"ref": "people:999"}).status == 404


def test_single_route_profile_and_alias_are_shown_as_they_arrived(
    server: ReferenceServer,
) -> None:
    sent = {
        "people": b'{"properties":{"plan":"pro"},  "distinct_id":"user_1"}',
        "alias": b'{"distinct_id":"user_1",\n"alias_id":"anon_1"}',
    }
    for kind, body in sent.items():
        assert post(server, f"/api/v1/{kind}", body).status == 200
    assert server.wait_until_applied()
    rows = {r["kind"]: r for r in data(server, "stream")["rows"]}

    for kind, body in sent.items():
        shown = data(server, "operation", ref=rows[kind]["id"])
        assert shown["exact"] is True and f"/api/v1/{kind}" in shown["note"]
        assert "".join(shown["text"].split()) == "".join(body.decode().split())


OLD_TABLES = """
CREATE TABLE profile_updates (
    id INTEGER PRIMARY KEY, project_id TEXT NOT NULL, environment TEXT NOT NULL,
    distinct_id TEXT NOT NULL, ts INTEGER NOT NULL, applied_at INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT 'ingest'
);
CREATE TABLE aliases (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, alias_id TEXT NOT NULL,
    distinct_id TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (project_id, environment, alias_id)
) WITHOUT ROWID;
CREATE TABLE bodies (
    id INTEGER PRIMARY KEY, route TEXT NOT NULL, body BLOB NOT NULL, device TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE trait_history (
    update_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT, won INTEGER NOT NULL
);
CREATE TABLE identities (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, distinct_id TEXT NOT NULL,
    first_seen INTEGER, last_seen INTEGER, has_profile INTEGER NOT NULL DEFAULT 0,
    traits_updated INTEGER, deleted_at INTEGER,
    PRIMARY KEY (project_id, environment, distinct_id)
) WITHOUT ROWID;
CREATE TABLE traits (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, distinct_id TEXT NOT NULL,
    key TEXT NOT NULL, value TEXT, ts INTEGER NOT NULL, update_id INTEGER NOT NULL,
    PRIMARY KEY (project_id, environment, distinct_id, key)
) WITHOUT ROWID;
"""


def test_a_store_written_before_requests_were_kept_shows_its_rows_as_stored(
    tmp_path: Any,
) -> None:
    db = str(tmp_path / "old.db")
    old = sqlite3.connect(db)
    old.executescript(OLD_TABLES)
    scope = ("proj_reference", "live")
    old.execute("INSERT INTO profile_updates VALUES (1,?,?,'user_1',5,6,'ingest')", scope)
    old.execute("INSERT INTO trait_history VALUES (1,'plan','\"pro\"',1)")
    old.execute("INSERT INTO traits VALUES (?,?,'user_1','plan','\"pro\"',5,1)", scope)
    old.execute("INSERT INTO identities VALUES (?,?,'user_1',5,5,1,5,NULL)", scope)
    old.execute("INSERT INTO aliases VALUES (?,?,'anon_1','user_1',4)", scope)
    old.commit()
    old.close()

    with ReferenceServer(rate_limit=None, db_path=db) as reopened:
        rows = {r["kind"]: r for r in data(reopened, "stream")["rows"]}
        update = data(reopened, "operation", ref=rows["people"]["id"])
        stitch = data(reopened, "operation", ref=rows["alias"]["id"])
        (entry,) = data(reopened, "person/history", id="user_1")["history"]
        send(reopened, people("user_2", {"plan": "free"}))
        fresh = [r for r in data(reopened, "stream", kinds="people")["rows"] if r != rows["people"]]
        exact = data(reopened, "operation", ref=fresh[0]["id"])

    for shown in (update, stitch):
        assert shown["exact"] is False and "as stored" in shown["note"]
        assert "older version" in shown["note"]
    assert json.loads(update["text"])["payload"]["properties"] == {"plan": "pro"}
    assert json.loads(stitch["text"])["payload"]["alias_id"] == "anon_1"
    assert entry["text"] == "pro" and entry["request"] is None
    assert exact["exact"] is True  # the reopened file keeps requests from now on


# --- requests ----------------------------------------------------------------------------------


def requests_shown(server: ReferenceServer, **params: Any) -> list[dict[str, Any]]:
    return data(server, "requests", **params)["requests"]  # type: ignore[no-any-return]


def test_requests_are_newest_first_with_answer_counts_and_reason(server: ReferenceServer) -> None:
    send(server, track(), people("user_1", {"a": 1}), alias("anon_9", "user_1"), track("x"))
    post(server, "/api/v1/track", b"{}", key=None)

    refused, accepted = requests_shown(server)

    assert (refused["status"], refused["reason"], refused["project_id"]) == (
        401,
        "no x-api-key header",
        None,
    )
    assert accepted["status"] == 200 and accepted["reason"] is None
    assert accepted["answer"].startswith('{"aliases_received":1,')
    assert accepted["counts"] == {
        "operations": 4,
        "events": 1,
        "people": 1,
        "aliases": 1,
        "discarded": 1,
    }


def test_a_400_names_the_refused_operation_and_why(server: ReferenceServer) -> None:
    body = batch(track("user_1"), people("user_1", {"a": 1}), track("user_1", properties=[1]))
    post(server, "/api/v1/batch", body)
    (shown,) = requests_shown(server)

    detail = data(server, "request", sequence=shown["sequence"])

    assert shown["reason"] == "operation 2 (track): properties is not an object"
    assert shown["counts"] == {"operations": 3}
    assert detail["refused_index"] == 2
    assert json.loads(detail["refused_operation"]) == body["operations"][2]
    assert json.loads(detail["body"]) == body
    assert detail["answer"] == '{"error":"Invalid track payload"}'


def test_injected_faults_are_marked(server: ReferenceServer) -> None:
    server.faults.fail_next(1, status=503)
    post(server, "/api/v1/batch", batch(track()))

    (shown,) = requests_shown(server)

    assert (shown["status"], shown["fault"]) == (503, True)
    assert "fault injected on purpose" in shown["reason"]


def test_requests_are_kept_to_their_project_and_environment(server: ReferenceServer) -> None:
    fresh = server
    other = fresh.add_project("Other", project_id="proj_other")
    post(fresh, "/api/v1/batch", batch(track()))
    post(fresh, "/api/v1/batch", batch(track()), key=fresh.test_api_key)
    post(fresh, "/api/v1/batch", batch(track()), key=other.api_key)
    post(fresh, "/api/v1/batch", batch(track()), key="sk_live_unknown")

    def shown(**params: str) -> list[tuple[Any, Any]]:
        return [(r["project_id"], r["environment"]) for r in requests_shown(fresh, **params)]

    assert shown() == [(None, None), ("proj_reference", "live")]
    assert shown(env="test") == [(None, None), ("proj_reference", "test")]
    assert shown(project="proj_other") == [(None, None), ("proj_other", "live")]


def test_older_requests_page_by_sequence(server: ReferenceServer) -> None:
    for _ in range(5):
        post(server, "/api/v1/batch", batch(track()))
    newest = requests_shown(server, limit=2)

    older = requests_shown(server, limit=2, before=newest[-1]["sequence"])

    sequences = [r["sequence"] for r in newest + older]
    assert sequences == sorted(sequences, reverse=True) and len(set(sequences)) == 4
