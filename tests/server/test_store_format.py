"""The stored format is versioned: a ``--db`` file reads back as it was written.

Events are rebuilt from the request bodies the store keeps, so the rules that decode a body are
part of the stored format; each body carries the format it was written in and the file carries
the newest format it may hold.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sankofa_sdk.server import ReferenceServer
from sankofa_sdk.server._store import STORE_FORMAT, PeopleStore

from .conftest import applied, people, send_batch, track

PROPERTIES = {"plan": "pro", "n": 1e-400, "list": [1, "two"], "nested": {"a": None}}


def _write(db: Path) -> list[dict[str, Any]]:
    with ReferenceServer(db_path=str(db), rate_limit=None) as server:
        reply = send_batch(
            server,
            track("user_1", properties=PROPERTIES, default_properties={"$lib": "x"}),
            people("user_1", {"plan": "pro"}),
            headers={"User-Agent": "curl/8.5.0"},
        )
        assert reply.status == 200
        return applied(server).events("user_1")


def _format_of(db: Path) -> tuple[int, list[Any]]:
    with sqlite3.connect(db) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(bodies)")]
        formats = (
            [row[0] for row in conn.execute("SELECT format FROM bodies")]
            if "format" in columns
            else []
        )
    return version, formats


def test_new_files_and_bodies_carry_the_current_format(tmp_path: Path) -> None:
    db = tmp_path / "people.db"
    _write(db)
    assert _format_of(db) == (STORE_FORMAT, [STORE_FORMAT])


def test_a_format_1_file_reads_back_as_it_was_written(tmp_path: Path) -> None:
    db = tmp_path / "people.db"
    written = _write(db)
    # Make it a file of the first stored format explicitly: no format marks at all.
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE bodies DROP COLUMN format")
        conn.execute("PRAGMA user_version = 0")
    conn.close()
    assert _format_of(db) == (0, [])
    with ReferenceServer(db_path=str(db), rate_limit=None) as reopened:
        assert reopened.events("user_1") == written
        assert written[0]["properties"] == {**PROPERTIES, "n": 0.0}
        assert written[0]["default_properties"]["$browser"] == "curl"
    # Opening it brings the marks; its old bodies stay format 1 (no mark), read as before.
    assert _format_of(db) == (STORE_FORMAT, [None])


def test_a_file_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "people.db"
    _write(db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {STORE_FORMAT + 1}")
    conn.close()
    with pytest.raises(ValueError, match=f"stored format {STORE_FORMAT + 1}"):
        PeopleStore(str(db))
    with pytest.raises(ValueError, match="newer reference server"):
        ReferenceServer(db_path=str(db))


def test_a_body_of_an_unknown_format_is_not_misread(tmp_path: Path) -> None:
    db = tmp_path / "people.db"
    _write(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE bodies SET format = 99")
    conn.close()
    store = PeopleStore(str(db))
    try:
        with pytest.raises(ValueError, match="stored format 99"):
            store.events("proj_reference", "live", "user_1")
    finally:
        store.close()
