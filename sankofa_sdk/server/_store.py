"""The People store: SQLite tables for profiles, traits, aliases and events, and their reads.

Writes come only from the background writer, one transaction per group of accepted requests.
Profiles follow decision D1 (key-by-key merge, ``null`` deletes, per key the later timestamp
wins, ties to the update applied last); aliases are resolved at read time through the alias
graph in both directions, loop-safe, as the engine's readers do (spec section 15).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Optional

from .._operations import format_epoch
from ._ingest import rebuild_events
from ._payloads import Alias, Event, Item, Profile
from ._useragent import Device

MAX_DISPLAY_HOPS = 10
RESERVED_TRAITS = ("name", "email", "avatar", "phone")
"""Traits a profile shows in their own place (decision D2). The official SDKs send them as
``$name``, ``$email``, ``$avatar`` and ``$phone``; both spellings are the same reserved trait."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, distinct_id TEXT NOT NULL,
    first_seen INTEGER, last_seen INTEGER, has_profile INTEGER NOT NULL DEFAULT 0, traits_updated INTEGER, deleted_at INTEGER,
    PRIMARY KEY (project_id, environment, distinct_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS traits (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, distinct_id TEXT NOT NULL,
    key TEXT NOT NULL, value TEXT, ts INTEGER NOT NULL, update_id INTEGER NOT NULL,
    PRIMARY KEY (project_id, environment, distinct_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profile_updates (
    id INTEGER PRIMARY KEY, project_id TEXT NOT NULL, environment TEXT NOT NULL,
    distinct_id TEXT NOT NULL, ts INTEGER NOT NULL, applied_at INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT 'ingest', body_id INTEGER, idx INTEGER
);
CREATE INDEX IF NOT EXISTS profile_updates_person
    ON profile_updates (project_id, environment, distinct_id);
CREATE TABLE IF NOT EXISTS trait_history (
    update_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT, won INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trait_history_update ON trait_history (update_id);
CREATE TABLE IF NOT EXISTS aliases (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, alias_id TEXT NOT NULL,
    distinct_id TEXT NOT NULL, ts INTEGER NOT NULL, body_id INTEGER, idx INTEGER,
    PRIMARY KEY (project_id, environment, alias_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aliases_target ON aliases (project_id, environment, distinct_id);
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY, route TEXT NOT NULL, body BLOB NOT NULL, device TEXT NOT NULL,
    received_at INTEGER NOT NULL, sequence INTEGER, idempotency_key TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, project_id TEXT NOT NULL,
    environment TEXT NOT NULL, distinct_id TEXT NOT NULL, event_name TEXT NOT NULL,
    lib_version TEXT NOT NULL, ts INTEGER NOT NULL, received_at INTEGER NOT NULL,
    session_id TEXT, insert_id TEXT, body_id INTEGER NOT NULL, idx INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_person ON events (project_id, environment, distinct_id);
CREATE TABLE IF NOT EXISTS counters (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (project_id, environment, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL, key TEXT NOT NULL, status INTEGER NOT NULL, content_type TEXT NOT NULL,
    body BLOB NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (scope, key)
) WITHOUT ROWID;
"""

STORE_FORMAT = 2
"""The stored format this code writes, kept in the file (``PRAGMA user_version``) and on each
stored body (``bodies.format``).

Events are rebuilt from their stored request bodies when read (:func:`._ingest.rebuild_events`),
so the rules that decode a body are part of the stored format. A body is always read with the
rules of the format it was written in: a change to those rules gets a new format number and
leaves the reading of older numbers as it was. Format 1 is every body stored before formats were
recorded (no ``format`` value); format 2 adds the version marks, with the same decoding rules.
A file written in a newer format than this code knows is refused rather than misread.
"""

_ADDED_COLUMNS = {
    "profile_updates": ("body_id INTEGER", "idx INTEGER"),
    "aliases": ("body_id INTEGER", "idx INTEGER"),
    "bodies": ("sequence INTEGER", "idempotency_key TEXT", "format INTEGER"),
}
"""Columns newer than the first stored format; a store written before them gets them empty
(its profile updates and aliases then have no request to show)."""

_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode


class Unit(NamedTuple):
    """What one accepted request asks the writer to apply, in one piece."""

    project_id: str
    environment: str
    items: Sequence[Item]
    received_us: int
    discarded: int = 0
    replayable: Optional[tuple[str, str, int, str, bytes, float]] = None
    """(scope, Idempotency-Key, status, content type, body, time) to remember the answer by."""
    route: str = "batch"
    body: bytes = b""
    """The request body as decoded (events are rebuilt from it when read)."""
    device: Device = Device("Other", "Other", "Other")
    sequence: int = 0
    """The request's number in the request log (0 when it has none)."""
    idempotency_key: Optional[str] = None


class Person(NamedTuple):
    ids: list[str]
    display_id: str


def _iso(us: Optional[int]) -> Optional[str]:
    return None if us is None else format_epoch(us / 1_000_000)


def _event_ids(count: int) -> str:
    """Random text for ``count`` event ids, 21 characters each (slice it).

    The engine's ids are "evt_" and a 21-character nanoid; one call for a whole batch is much
    cheaper than one per event.
    """
    return secrets.token_urlsafe(16 * count + 16)


class PeopleStore:
    """SQLite storage shared by the writer thread and readers (one connection, one lock)."""

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path
        self._db = sqlite3.connect(
            path or ":memory:", check_same_thread=False, isolation_level=None
        )
        self._lock = threading.RLock()
        with self._lock:
            if path:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            written = self._db.execute("PRAGMA user_version").fetchone()[0]
            if written > STORE_FORMAT:
                self._db.close()
                raise ValueError(
                    f"{path} holds stored format {written}, written by a newer reference server;"
                    f" this one reads formats up to {STORE_FORMAT}"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {STORE_FORMAT}")
            for table, columns in _ADDED_COLUMNS.items():
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def last_sequence(self) -> int:
        """The highest request number a stored request carries (0 when none does)."""
        with self._lock:
            row = self._db.execute("SELECT max(sequence) FROM bodies").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, held for a few reads that must see the same state (the console's)."""
        with self._lock:
            yield self._db

    # --- writes -------------------------------------------------------------------------

    def apply(self, units: Iterable[Unit]) -> None:
        """Apply accepted requests in one transaction, in the order they were accepted."""
        applied_at = time.time_ns() // 1000
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for unit in units:
                    self._apply_unit(db, unit, applied_at)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _apply_unit(self, db: sqlite3.Connection, unit: Unit, applied_at: int) -> None:
        project, env = unit.project_id, unit.environment
        if not unit.items:
            body_id = None
        else:
            # Kept once per request: events are rebuilt from it, and every operation is shown
            # as it arrived from it.
            body_id = db.execute(
                "INSERT INTO bodies"
                " (route, body, device, received_at, sequence, idempotency_key, format)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    unit.route,
                    unit.body,
                    "\t".join(unit.device),
                    unit.received_us,
                    unit.sequence or None,
                    unit.idempotency_key,
                    STORE_FORMAT,
                ),
            ).lastrowid
        events = [item for item in unit.items if type(item) is Event]
        for item in unit.items:
            if type(item) is Profile:
                self._apply_profile(db, project, env, item, applied_at, body_id=body_id)
            elif type(item) is Alias:
                db.execute(
                    "INSERT INTO aliases VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET"
                    " distinct_id = excluded.distinct_id, ts = excluded.ts,"
                    " body_id = excluded.body_id, idx = excluded.idx",
                    (
                        project,
                        env,
                        item.alias_id,
                        item.distinct_id,
                        item.timestamp_us,
                        body_id,
                        item.position,
                    ),
                )
        if events:
            ids = _event_ids(len(events))
            received = unit.received_us
            db.executemany(
                "INSERT INTO events (event_id, project_id, environment, distinct_id, event_name,"
                " lib_version, ts, received_at, session_id, insert_id, body_id, idx)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        "evt_" + ids[21 * n : 21 * n + 21],
                        project,
                        env,
                        e.distinct_id,
                        e.event_name,
                        e.lib_version,
                        e.timestamp_us,
                        received,
                        e.session_id,
                        e.insert_id,
                        body_id,
                        e.position,
                    )
                    for n, e in enumerate(events)
                ],
            )
        if unit.discarded:
            self._count(db, project, env, "discarded", unit.discarded)
        if unit.replayable is not None:
            db.execute("INSERT OR REPLACE INTO idempotency VALUES (?,?,?,?,?,?)", unit.replayable)

    def _apply_profile(
        self,
        db: sqlite3.Connection,
        project: str,
        env: str,
        item: Profile,
        applied_at: int,
        source: str = "ingest",
        body_id: Optional[int] = None,
    ) -> None:
        ts, did = item.timestamp_us, item.distinct_id
        update_id = db.execute(
            "INSERT INTO profile_updates (project_id, environment, distinct_id, ts, applied_at,"
            " source, body_id, idx) VALUES (?,?,?,?,?,?,?,?)",
            (project, env, did, ts, applied_at, source, body_id, item.position),
        ).lastrowid
        history = []
        for key, value in item.properties.items():
            text = None if value is None else _dumps(value)
            won = db.execute(
                "INSERT INTO traits VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET"
                " value = excluded.value, ts = excluded.ts, update_id = excluded.update_id"
                " WHERE excluded.ts >= traits.ts",
                (project, env, did, key, text, ts, update_id),
            ).rowcount
            history.append((update_id, key, text, 1 if won else 0))
        db.executemany("INSERT INTO trait_history VALUES (?,?,?,?)", history)
        db.execute(
            "INSERT INTO identities (project_id, environment, distinct_id, first_seen, last_seen,"
            " has_profile, traits_updated) VALUES (?,?,?,?,?,1,?) ON CONFLICT DO UPDATE SET"
            " first_seen = min(coalesce(first_seen, excluded.first_seen), excluded.first_seen),"
            " last_seen = max(coalesce(last_seen, excluded.last_seen), excluded.last_seen),"
            " has_profile = 1,"
            " traits_updated = max(coalesce(traits_updated, excluded.traits_updated),"
            " excluded.traits_updated)",
            (project, env, did, ts, ts, ts),
        )

    def _count(self, db: sqlite3.Connection, project: str, env: str, name: str, n: int) -> None:
        db.execute(
            "INSERT INTO counters VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET"
            " value = value + excluded.value",
            (project, env, name, n),
        )

    def clear(self) -> None:
        with self._lock:
            for table in (
                "bodies",
                "identities",
                "traits",
                "profile_updates",
                "trait_history",
                "aliases",
                "events",
                "counters",
                "idempotency",
            ):
                self._db.execute(f"DELETE FROM {table}")

    # --- identity resolution --------------------------------------------------------------

    def _group(self, project: str, env: str, distinct_id: str) -> Person:
        """Every id linked to ``distinct_id`` by aliases, either direction, and its display id."""
        db = self._db
        ids = {distinct_id}
        frontier = [distinct_id]
        while frontier:
            marks = ",".join("?" * len(frontier))
            rows = db.execute(
                f"SELECT alias_id, distinct_id FROM aliases WHERE project_id = ? AND environment = ?"
                f" AND (alias_id IN ({marks}) OR distinct_id IN ({marks}))",
                (project, env, *frontier, *frontier),
            ).fetchall()
            frontier = [i for row in rows for i in row if i not in ids]
            ids.update(frontier)
        display, visited = distinct_id, {distinct_id}
        for _ in range(MAX_DISPLAY_HOPS):
            row = db.execute(
                "SELECT distinct_id FROM aliases WHERE project_id = ? AND environment = ?"
                " AND alias_id = ?",
                (project, env, display),
            ).fetchone()
            if row is None or row[0] in visited:
                break
            display = row[0]
            visited.add(display)
        return Person(sorted(ids), display)

    # --- reads ----------------------------------------------------------------------------

    def get_person(self, project: str, env: str, distinct_id: str) -> Optional[dict[str, Any]]:
        with self._lock:
            person = self._group(project, env, distinct_id)
            return self._person(project, env, person)

    def _person(self, project: str, env: str, person: Person) -> Optional[dict[str, Any]]:
        db = self._db
        marks = ",".join("?" * len(person.ids))
        args = (project, env, *person.ids)
        # Profiles keep their own first/last seen; events are counted where they are (keeping
        # per-person counters up to date on every event halved the writer's speed).
        rows = db.execute(
            f"SELECT first_seen, last_seen, has_profile, deleted_at FROM identities"
            f" WHERE project_id = ? AND environment = ? AND distinct_id IN ({marks})",
            args,
        ).fetchall()
        if any(r[3] is not None for r in rows):
            return None
        first_event, last_event, event_count = db.execute(
            f"SELECT min(ts), max(ts), count(*) FROM events"
            f" WHERE project_id = ? AND environment = ? AND distinct_id IN ({marks})",
            args,
        ).fetchone()
        if not event_count and not any(r[2] for r in rows):
            return None
        traits, reserved = self._traits(project, env, person.ids)
        firsts = [r[0] for r in rows if r[0] is not None] + [first_event] * bool(event_count)
        lasts = [r[1] for r in rows if r[1] is not None] + [last_event] * bool(event_count)
        result: dict[str, Any] = {
            "distinct_id": person.display_id,
            "aliases": [i for i in person.ids if i != person.display_id],
            "traits": traits,
            "first_seen": _iso(min(firsts)) if firsts else None,
            "last_seen": _iso(max(lasts)) if lasts else None,
            "event_count": event_count,
        }
        result.update(reserved)  # decision D2: shown as the documents describe
        return result

    def _traits(
        self, project: str, env: str, ids: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A person's traits, and the reserved ones each resolved from its two spellings."""
        marks = ",".join("?" * len(ids))
        best: dict[str, tuple[int, int, Optional[str]]] = {}
        for key, value, ts, update_id in self._db.execute(
            f"SELECT key, value, ts, update_id FROM traits WHERE project_id = ?"
            f" AND environment = ? AND distinct_id IN ({marks})",
            (project, env, *ids),
        ):
            current = best.get(key)
            if current is None or (ts, update_id) > current[:2]:
                best[key] = (ts, update_id, value)
        traits = {k: json.loads(v) for k, (_, _, v) in sorted(best.items()) if v is not None}
        reserved: dict[str, Any] = {}
        for name in RESERVED_TRAITS:
            # The spelling set last wins; one update sending both gives the bare name, the
            # documents' spelling. A removed spelling leaves the other one in place.
            candidates = [
                (best[key][:2], key == name, key) for key in ("$" + name, name) if key in traits
            ]
            reserved[name] = traits[max(candidates)[2]] if candidates else None
        return traits, reserved

    def list_people(
        self,
        project: str,
        env: str,
        *,
        search: Optional[str] = None,
        where: Optional[dict[str, Any]] = None,
        updated_since_us: Optional[int] = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        with self._lock:
            candidates = [
                r[0]
                for r in self._db.execute(
                    "SELECT distinct_id FROM identities WHERE project_id = ? AND environment = ?"
                    " AND has_profile = 1 AND deleted_at IS NULL"
                    " UNION SELECT DISTINCT distinct_id FROM events"
                    " WHERE project_id = ? AND environment = ?",
                    (project, env, project, env),
                )
            ]
            people: dict[str, dict[str, Any]] = {}
            grouped: set[str] = set()
            for distinct_id in candidates:
                if distinct_id in grouped:
                    continue
                person = self._group(project, env, distinct_id)
                grouped.update(person.ids)
                found = self._person(project, env, person)
                if found is not None and found["distinct_id"] not in people:
                    found["_traits_updated"] = self._traits_updated(project, env, person.ids)
                    people[found["distinct_id"]] = found
        matches = [p for p in people.values() if _matches(p, search, where or {}, updated_since_us)]
        matches.sort(key=lambda p: (p["last_seen"] or "", p["distinct_id"]), reverse=True)
        for p in matches:
            p.pop("_traits_updated", None)
        return {
            "people": matches[offset : offset + limit],
            "total": len(matches),
            "limit": limit,
            "offset": offset,
        }

    def _traits_updated(self, project: str, env: str, ids: Sequence[str]) -> Optional[int]:
        marks = ",".join("?" * len(ids))
        row = self._db.execute(
            f"SELECT max(traits_updated) FROM identities WHERE project_id = ? AND environment = ?"
            f" AND distinct_id IN ({marks})",
            (project, env, *ids),
        ).fetchone()
        return None if row is None else row[0]

    def events(
        self,
        project: str,
        env: str,
        distinct_id: Optional[str] = None,
        *,
        event_name: Optional[str] = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Optional[list[dict[str, Any]]]:
        """Events newest first; ``None`` when ``distinct_id`` names no visible person."""
        with self._lock:
            sql = (
                "SELECT event_id, event_name, distinct_id, lib_version, ts, received_at,"
                " session_id, body_id, idx FROM events WHERE project_id = ? AND environment = ?"
            )
            args: list[Any] = [project, env]
            if distinct_id is not None:
                person = self._group(project, env, distinct_id)
                if self._person(project, env, person) is None:
                    return None
                sql += f" AND distinct_id IN ({','.join('?' * len(person.ids))})"
                args.extend(person.ids)
            if event_name is not None:
                sql += " AND event_name = ?"
                args.append(event_name)
            sql += " ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?"
            args += [limit, offset]
            rows = self._db.execute(sql, args).fetchall()
            rebuilt = self._rebuild({r[7] for r in rows})
        result = []
        for event_id, name, did, lib_version, ts, received, session, body_id, idx in rows:
            event = rebuilt.get(body_id, {}).get(idx)
            result.append(
                {
                    "event_id": event_id,
                    "event_name": name,
                    "distinct_id": did,
                    "properties": event.properties if event else None,
                    "default_properties": event.default_properties if event else None,
                    "lib_version": lib_version,
                    "timestamp": _iso(ts),
                    "received_at": _iso(received),
                    "session_id": session,
                }
            )
        return result

    def _rebuild(self, body_ids: set[int]) -> dict[int, dict[int, Event]]:
        """Decode stored request bodies again to get their events' property maps."""
        rebuilt: dict[int, dict[int, Event]] = {}
        ids = sorted(body_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for body_id, route, body, device, received, stored_format in self._db.execute(
                f"SELECT id, route, body, device, received_at, format FROM bodies"
                f" WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                rebuilt[body_id] = rebuild_events(
                    route, body, Device(*device.split("\t")), received, stored_format or 1
                )
        return rebuilt

    def trait_history(
        self, project: str, env: str, distinct_id: str, key: Optional[str] = None
    ) -> Optional[list[dict[str, Any]]]:
        """Every value each trait was sent with, oldest first, and whether it took effect."""
        with self._lock:
            person = self._group(project, env, distinct_id)
            if self._person(project, env, person) is None:
                return None
            marks = ",".join("?" * len(person.ids))
            sql = (
                "SELECT h.key, h.value, h.won, u.id, u.distinct_id, u.ts, u.applied_at, u.source,"
                " b.sequence, b.received_at, b.idempotency_key, b.route"
                " FROM trait_history h JOIN profile_updates u ON u.id = h.update_id"
                " LEFT JOIN bodies b ON b.id = u.body_id"
                f" WHERE u.project_id = ? AND u.environment = ? AND u.distinct_id IN ({marks})"
            )
            args: list[Any] = [project, env, *person.ids]
            if key is not None:
                sql += " AND h.key = ?"
                args.append(key)
            rows = self._db.execute(sql + " ORDER BY u.ts, u.id", args).fetchall()
        return [
            {
                "key": r[0],
                "value": None if r[1] is None else json.loads(r[1]),
                "took_effect": bool(r[2]),
                "update_id": r[3],
                "distinct_id": r[4],
                "timestamp": _iso(r[5]),
                "applied_at": _iso(r[6]),
                "source": r[7],
                "request": None
                if r[9] is None
                else {
                    "sequence": r[8],
                    "received_at": _iso(r[9]),
                    "idempotency_key": r[10],
                    "route": r[11],
                },
            }
            for r in rows
        ]

    def delete_trait(self, project: str, env: str, distinct_id: str, key: str) -> bool:
        """Remove one trait from a person; an update stamped later can set it again."""
        now = time.time_ns() // 1000
        with self._lock:
            person = self._group(project, env, distinct_id)
            if self._person(project, env, person) is None:
                return False
            marks = ",".join("?" * len(person.ids))
            holders = [
                r[0]
                for r in self._db.execute(
                    f"SELECT distinct_id FROM traits WHERE project_id = ? AND environment = ?"
                    f" AND key = ? AND value IS NOT NULL AND distinct_id IN ({marks})",
                    (project, env, key, *person.ids),
                )
            ]
            if not holders:
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for holder in holders:
                    self._apply_profile(
                        self._db, project, env, Profile(holder, {key: None}, now), now, "delete"
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return True

    def delete_person(self, project: str, env: str, distinct_id: str) -> bool:
        """Soft-delete: the person and its aliases disappear from reads; events are kept."""
        now = time.time_ns() // 1000
        with self._lock:
            person = self._group(project, env, distinct_id)
            if self._person(project, env, person) is None:
                return False
            self._db.executemany(
                "INSERT INTO identities (project_id, environment, distinct_id, deleted_at)"
                " VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET deleted_at = excluded.deleted_at",
                [(project, env, i, now) for i in person.ids],
            )
            return True

    def stats(self, project: str, env: str) -> dict[str, int]:
        with self._lock:
            db, args = self._db, (project, env)
            scope = "WHERE project_id = ? AND environment = ?"
            people = db.execute(
                f"SELECT count(*) FROM identities {scope} AND has_profile = 1"
                " AND deleted_at IS NULL",
                args,
            ).fetchone()[0]
            events, duplicates = db.execute(
                f"SELECT count(*), count(insert_id) - count(DISTINCT insert_id) FROM events {scope}",
                args,
            ).fetchone()
            aliases = db.execute(f"SELECT count(*) FROM aliases {scope}", args).fetchone()[0]
            counters = defaultdict(
                int, db.execute(f"SELECT name, value FROM counters {scope}", args).fetchall()
            )
        return {
            "people": people,
            "events": events,
            "aliases": aliases,
            "discarded": counters["discarded"],
            "duplicate_insert_ids": duplicates or 0,
        }

    def recent_replays(self, since: float) -> list[tuple[str, str, int, str, bytes, float]]:
        """Remembered answers younger than ``since`` (seconds since the epoch), oldest first."""
        with self._lock:
            self._db.execute("DELETE FROM idempotency WHERE created_at < ?", (since,))
            return self._db.execute(
                "SELECT scope, key, status, content_type, body, created_at FROM idempotency"
                " ORDER BY created_at"
            ).fetchall()


def _matches(
    person: dict[str, Any],
    search: Optional[str],
    where: dict[str, Any],
    updated_since_us: Optional[int],
) -> bool:
    traits = person["traits"]
    if search:
        needle = search.casefold()
        haystack = [person["distinct_id"], *person["aliases"]]
        haystack += [str(person[k]) for k in ("email", "name") if person.get(k) is not None]
        if not any(needle in text.casefold() for text in haystack):
            return False
    for key, wanted in where.items():
        if key not in traits:
            return False
        value = traits[key]
        if value != wanted and not (isinstance(wanted, str) and _as_text(value) == wanted):
            return False
    if updated_since_us is not None:
        updated = person.get("_traits_updated")
        if updated is None or updated < updated_since_us:
            return False
    return True


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return _dumps(value)
