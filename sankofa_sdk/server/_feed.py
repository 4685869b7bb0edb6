"""The console's live stream: operations in the store newer than a cursor, and their text.

It reads what the writer already stored (request bodies, and the events, profile updates and
aliases that point into them), so watching the stream adds nothing to the ingestion path. Each
operation is shown as it arrived, byte for byte but for indentation. Profile updates and aliases
stored before their request was kept (an older ``--db`` file) are shown as stored, marked so.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

from .._operations import format_epoch
from ._jsontext import operation_texts, pretty

KINDS = ("track", "people", "alias")
SCAN_LIMIT = 20_000
"""A first look searches at most this many of the latest rows of each kind, so a rare filter
on a large store cannot hold the store's lock (and the writer) for long."""
SERVER_TRAITS = ("$os", "$browser", "$device_model")


class Cursor(NamedTuple):
    """Where a stream stands: the last event and profile update seen, the latest alias stamp."""

    track: int = 0
    people: int = 0
    alias: int = 0

    def __str__(self) -> str:
        return f"{self.track}.{self.people}.{self.alias}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Raises ValueError for text that is not three integers joined by dots."""
        track, people, alias = (int(part) for part in text.split("."))
        return cls(track, people, alias)


class Filters(NamedTuple):
    kinds: frozenset[str] = frozenset(KINDS)
    event_name: str = ""
    """Part of the event name, any case (ASCII); other kinds have none, so they drop out."""
    distinct_id: str = ""
    """Part of the distinct id (either id of an alias), any case (ASCII)."""


def _iso(us: Optional[int]) -> Optional[str]:
    return None if us is None else format_epoch(us / 1_000_000)


def _newer(
    db: sqlite3.Connection,
    sql: str,
    args: list[Any],
    contains: list[tuple[tuple[str, ...], str]],
    order: str,
    limit: int,
) -> list[tuple[Any, ...]]:
    """Run ``sql`` with, for each ``(columns, needle)``, "one of the columns contains it"."""
    for columns, needle in contains:
        if needle:
            either = " OR ".join(f"instr(lower({c}), lower(?)) > 0" for c in columns)
            sql += f" AND ({either})"
            args = [*args, *[needle] * len(columns)]
    return db.execute(f"{sql} ORDER BY {order} DESC LIMIT ?", [*args, limit]).fetchall()


def _row(
    ref: str, at_us: int, ts_us: int, distinct_id: str, name: str = "", summary: str = ""
) -> dict[str, Any]:
    """One stream row; ``_us`` orders rows of different kinds and is removed before sending."""
    return {
        "id": ref,
        "kind": ref.partition(":")[0],
        "at": _iso(at_us),
        "timestamp": _iso(ts_us),
        "distinct_id": distinct_id,
        "name": name,
        "summary": summary,
        "_us": at_us,
    }


def stream(
    db: sqlite3.Connection,
    project: str,
    env: str,
    filters: Filters,
    after: Optional[Cursor],
    limit: int,
) -> tuple[list[dict[str, Any]], Cursor]:
    """The newest ``limit`` operations after ``after`` (or the latest ones), newest first.

    Returns them with the cursor to ask from next time. The caller holds the store's lock.
    """
    scope = (project, env)
    # Event and update ids count across projects, so their newest is the rowid's (no scan);
    # rows of other projects in a range are filtered out by the queries below.
    now = Cursor(
        db.execute("SELECT max(id) FROM events").fetchone()[0] or 0,
        db.execute("SELECT max(id) FROM profile_updates").fetchone()[0] or 0,
        db.execute(
            "SELECT max(ts) FROM aliases WHERE project_id = ? AND environment = ?", scope
        ).fetchone()[0]
        or 0,
    )
    start = after or Cursor(
        max(now.track - SCAN_LIMIT, 0), max(now.people - SCAN_LIMIT, 0), -(2**63)
    )
    rows: list[dict[str, Any]] = []
    if "track" in filters.kinds:
        found = _newer(
            db,
            "SELECT id, event_name, distinct_id, received_at, ts FROM events"
            " WHERE project_id = ? AND environment = ? AND id > ? AND id <= ?",
            [*scope, start.track, now.track],
            [(("event_name",), filters.event_name), (("distinct_id",), filters.distinct_id)],
            "id",
            limit,
        )
        rows += event_rows(found)
    if "people" in filters.kinds and not filters.event_name:
        rows += _updates(db, scope, filters.distinct_id, start.people, now.people, limit)
    if "alias" in filters.kinds and not filters.event_name:
        # Aliases are kept one row per alias id and ordered only by their own timestamp: one
        # stamped earlier than the newest shown appears on the next full load, not live.
        found = _newer(
            db,
            "SELECT alias_id, distinct_id, ts FROM aliases WHERE project_id = ?"
            " AND environment = ? AND ts > ? AND ts <= ?",
            [*scope, start.alias, now.alias],
            [(("alias_id", "distinct_id"), filters.distinct_id)],
            "ts",
            limit,
        )
        rows += [
            _row("alias:" + json.dumps([alias]), ts, ts, target, summary=f"{alias} \u2192 {target}")
            for alias, target, ts in found
        ]
    rows.sort(key=lambda row: (row["_us"], row["id"]), reverse=True)
    for row in rows:
        del row["_us"]
    return rows[:limit], now


def event_rows(rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Stream rows for ``(id, event_name, distinct_id, received_at, ts)`` rows of ``events``."""
    return [
        _row(f"track:{row_id}", received, ts, distinct_id, name)
        for row_id, name, distinct_id, received, ts in rows
    ]


def _updates(
    db: sqlite3.Connection,
    scope: tuple[str, str],
    distinct_id: str,
    after: int,
    upto: int,
    limit: int,
) -> list[dict[str, Any]]:
    updates = _newer(
        db,
        "SELECT id, distinct_id, applied_at, ts FROM profile_updates WHERE project_id = ?"
        " AND environment = ? AND id > ? AND id <= ? AND source = 'ingest'",
        [*scope, after, upto],
        [(("distinct_id",), distinct_id)],
        "id",
        limit,
    )
    keys: dict[int, list[str]] = {row[0]: [] for row in updates}
    if keys:
        marks = ",".join("?" * len(keys))
        for update_id, key, value in db.execute(
            "SELECT update_id, key, value FROM trait_history"
            f" WHERE update_id IN ({marks}) ORDER BY rowid",
            list(keys),
        ):
            if key not in SERVER_TRAITS:
                keys[update_id].append(key if value is not None else f"-{key}")
    return [
        _row(f"people:{update_id}", applied, ts, did, summary=_keys_summary(keys[update_id]))
        for update_id, did, applied, ts in updates
    ]


def _keys_summary(keys: list[str], shown: int = 4) -> str:
    if not keys:
        return "no traits of its own"
    more = f" (+{len(keys) - shown})" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def operation(db: sqlite3.Connection, project: str, env: str, ref: str) -> Optional[dict[str, Any]]:
    """The text of one stream row's operation: ``{"text", "exact", "note"}``, or None."""
    kind, _, key = ref.partition(":")
    scope = (project, env)
    if kind == "track" and key.isdigit():
        found = db.execute(
            "SELECT body_id, idx FROM events WHERE id = ? AND project_id = ? AND environment = ?",
            (int(key), *scope),
        ).fetchone()
        return None if found is None else _arrived(db, *found)
    if kind == "people" and key.isdigit():
        found = db.execute(
            "SELECT body_id, idx FROM profile_updates WHERE id = ? AND project_id = ?"
            " AND environment = ? AND source = 'ingest'",
            (int(key), *scope),
        ).fetchone()
        if found is None:
            return None
        arrived = _arrived(db, *found)
        if arrived is not None:
            arrived["note"] += (
                "; $os, $browser and $device_model are added from the User-Agent when not sent"
            )
        return arrived or _update_text(db, scope, int(key))
    if kind == "alias":
        try:
            (alias_id,) = json.loads(key)
        except (ValueError, TypeError):
            return None
        found = db.execute(
            "SELECT alias_id, distinct_id, ts, body_id, idx FROM aliases WHERE project_id = ?"
            " AND environment = ? AND alias_id = ?",
            (*scope, alias_id),
        ).fetchone()
        if found is None:
            return None
        arrived = _arrived(db, found[3], found[4])
        if arrived is not None:
            return arrived
        payload = {"alias_id": found[0], "distinct_id": found[1], "timestamp": _iso(found[2])}
        return {
            "text": json.dumps({"type": "alias", "payload": payload}, indent=2, ensure_ascii=False),
            "exact": False,
            "note": (
                "as stored: this alias was stored by an older version of the reference server,"
                " which kept its ids, not its request"
            ),
        }
    return None


def _arrived(
    db: sqlite3.Connection, body_id: Optional[int], index: Optional[int]
) -> Optional[dict[str, Any]]:
    """The operation at ``index`` of a stored request, as it arrived; None when not kept."""
    if body_id is None:
        return None
    found = db.execute(
        "SELECT route, body, sequence FROM bodies WHERE id = ?", (body_id,)
    ).fetchone()
    if found is None:
        return None
    route, body, sequence = found
    text = bytes(body).decode("utf-8", "replace")
    if route == "batch":
        texts = operation_texts(text) or []
        text = texts[index] if index is not None and index < len(texts) else text
    return {
        "text": pretty(text),
        "exact": True,
        "note": f"as it arrived on /api/v1/{route}",
        "sequence": sequence,
    }


def _update_text(
    db: sqlite3.Connection, scope: tuple[str, str], update_id: int
) -> Optional[dict[str, Any]]:
    found = db.execute(
        "SELECT distinct_id, ts FROM profile_updates WHERE id = ? AND project_id = ?"
        " AND environment = ?",
        (update_id, *scope),
    ).fetchone()
    if found is None:
        return None
    values = db.execute(
        "SELECT key, value FROM trait_history WHERE update_id = ? ORDER BY rowid", (update_id,)
    ).fetchall()
    properties = {key: None if value is None else json.loads(value) for key, value in values}
    payload = {"distinct_id": found[0], "properties": properties, "timestamp": _iso(found[1])}
    return {
        "text": json.dumps({"type": "people", "payload": payload}, indent=2, ensure_ascii=False),
        "exact": False,
        "note": (
            "as stored: this update was stored by an older version of the reference server,"
            " which kept its values, not its request; $os, $browser and $device_model are"
            " added from the User-Agent when not sent"
        ),
    }
