"""Reserved traits (decision D2): ``name``/``$name`` and the others are one trait, set last wins."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from sankofa_sdk.server import ReferenceServer

from .conftest import alias, applied, get, people, send_batch, ts

RESERVED = ("name", "email", "avatar", "phone")


def send(server: ReferenceServer, *operations: Any) -> None:
    reply = send_batch(server, *operations)
    assert reply.status == 200, reply.body


def reserved(server: ReferenceServer, distinct_id: str) -> dict[str, Any]:
    applied(server)
    person = server.get_person(distinct_id)
    assert person is not None
    return {key: person[key] for key in RESERVED}


def found(server: ReferenceServer, search: str) -> list[str]:
    return [p["distinct_id"] for p in server.list_people(search=search)["people"]]


def test_dollar_spellings_fill_the_reserved_fields(server: ReferenceServer) -> None:
    values = {
        "$name": "Ama Mensah",
        "$email": "ama@example.com",
        "$avatar": "https://img.example/ama.png",
        "$phone": "+233 20 000 0000",
    }
    send(server, people("user_1", values, timestamp=ts(0)))

    assert reserved(server, "user_1") == {
        "name": "Ama Mensah",
        "email": "ama@example.com",
        "avatar": "https://img.example/ama.png",
        "phone": "+233 20 000 0000",
    }
    person = server.get_person("user_1")
    assert person is not None and person["traits"]["$name"] == "Ama Mensah"  # stored as sent


@pytest.mark.parametrize(
    ("first", "then"),
    [("name", "$name"), ("$name", "name")],
)
def test_the_spelling_set_last_wins(server: ReferenceServer, first: str, then: str) -> None:
    send(server, people("user_1", {first: "Old Name"}, timestamp=ts(0)))
    send(server, people("user_1", {then: "New Name"}, timestamp=ts(1)))

    assert reserved(server, "user_1")["name"] == "New Name"


def test_last_means_the_later_timestamp_not_the_later_arrival(server: ReferenceServer) -> None:
    send(server, people("user_1", {"$email": "new@example.com"}, timestamp=ts(10)))
    send(server, people("user_1", {"email": "late@example.com"}, timestamp=ts(5)))

    assert reserved(server, "user_1")["email"] == "new@example.com"


def test_removing_the_winning_spelling_shows_the_other(server: ReferenceServer) -> None:
    send(server, people("user_1", {"avatar": "https://img.example/a.png"}, timestamp=ts(0)))
    send(server, people("user_1", {"$avatar": "https://img.example/b.png"}, timestamp=ts(1)))
    send(server, people("user_1", {"$avatar": None}, timestamp=ts(2)))

    assert reserved(server, "user_1")["avatar"] == "https://img.example/a.png"


def test_one_update_with_both_spellings_shows_the_bare_name(server: ReferenceServer) -> None:
    send(server, people("user_1", {"$phone": "+1 555 0100", "phone": "+1 555 0199"}))

    assert reserved(server, "user_1")["phone"] == "+1 555 0199"


def test_spellings_on_stitched_ids_resolve_across_the_person(server: ReferenceServer) -> None:
    send(
        server,
        people("anon_1", {"name": "Visitor"}, timestamp=ts(0)),
        alias("anon_1", "user_1", timestamp=ts(1)),
        people("user_1", {"$name": "Kofi Boateng"}, timestamp=ts(2)),
    )

    assert reserved(server, "anon_1")["name"] == "Kofi Boateng"


def test_search_finds_dollar_email_and_name(server: ReferenceServer) -> None:
    send(
        server,
        people("user_1", {"$email": "Kofi@Mail.example", "$name": "Kofi Boateng"}),
        people("user_2", {"plan": "pro"}),
    )
    applied(server)

    assert found(server, "kofi@mail") == ["user_1"]
    assert found(server, "boateng") == ["user_1"]


def test_search_matches_the_winning_value_only(server: ReferenceServer) -> None:
    send(server, people("user_1", {"name": "Old Name"}, timestamp=ts(0)))
    send(server, people("user_1", {"$name": "New Name"}, timestamp=ts(1)))
    applied(server)

    assert found(server, "new name") == ["user_1"]
    assert found(server, "old name") == []


def test_read_api_fields_and_search_follow_the_dollar_spelling(server: ReferenceServer) -> None:
    send(server, people("user_1", {"name": "Old", "email": "old@example.com"}, timestamp=ts(0)))
    send(server, people("user_1", {"$name": "Ada", "$email": "ada@example.com"}, timestamp=ts(1)))
    applied(server)

    person = get(server, "/reference/v1/people/user_1").json()
    listing = get(server, "/reference/v1/people?search=" + quote("ada@example")).json()

    assert (person["name"], person["email"]) == ("Ada", "ada@example.com")
    assert [p["distinct_id"] for p in listing["people"]] == ["user_1"]
