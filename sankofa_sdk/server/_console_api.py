"""The console's data routes (``/console/api/...``): JSON for the page, read from the store and
the request log. Authentication and headers are the caller's (:mod:`._console`).

Values go out with their JSON type and as text made here, so the page never parses a trait
value itself (a browser would round integers beyond 2**53) and only ever sets text.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional

from .._operations import format_epoch
from ._app import App, RequestRecord
from ._explain import Explanation, explain
from ._feed import KINDS, Cursor, Filters, event_rows, operation, stream
from ._projects import Projects
from ._responses import Response
from ._store import RESERVED_TRAITS, PeopleStore

JSON_UTF8 = "application/json; charset=utf-8"
MAX_ANSWER_CHARS = 2000
"""A request's answer in the list is cut here; the detail view has all of it."""


class BadQuery(Exception):
    """A console request with parameters it cannot use (answered 400)."""


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value, ensure_ascii=False).encode(), JSON_UTF8)


def typed(value: Any) -> dict[str, str]:
    """A value's JSON type and its text: strings as they are, anything else as JSON."""
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "number"
    elif isinstance(value, str):
        return {"type": "string", "text": value}
    else:
        kind = {dict: "object", list: "array", type(None): "null"}.get(type(value), "value")
    return {"type": kind, "text": json.dumps(value, ensure_ascii=False)}


def _text(value: Any) -> Optional[str]:
    return None if value is None else typed(value)["text"]


def _number(query: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    text = query.get(key, "")
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadQuery(f"{key} must be a whole number from {low} to {high}")
    return int(text)


Id = tuple[str, str, str]
"""(project, environment, distinct id)."""


def _count_people(
    seen: list[Any], deleted: list[Any], links: list[Any]
) -> dict[tuple[str, str], int]:
    """People per (project, environment): groups of ids joined by aliases (either way) with at
    least one id in ``seen`` and none in ``deleted``, as the store groups a person's ids."""
    parent: dict[Id, Id] = {}

    def root(key: Id) -> Id:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for project, env, alias_id, distinct_id in links:
        a, b = root((project, env, alias_id)), root((project, env, distinct_id))
        if a != b:
            parent[a] = b
    gone = {root((project, env, distinct_id)) for project, env, distinct_id in deleted}
    people = {root((project, env, distinct_id)) for project, env, distinct_id in seen} - gone
    counts: dict[tuple[str, str], int] = {}
    for project, env, _ in people:
        counts[project, env] = counts.get((project, env), 0) + 1
    return counts


class ConsoleApi:
    def __init__(self, store: PeopleStore, projects: Projects, app: App) -> None:
        self.store = store
        self.projects = projects
        self.app = app
        self._explained: OrderedDict[int, Explanation] = OrderedDict()
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], Callable[[dict[str, str]], Any]] = {
            ("GET", "projects"): self.project_list,
            ("GET", "people"): self.people,
            ("GET", "trait-keys"): self.trait_keys,
            ("GET", "person"): self.person,
            ("DELETE", "person"): self.delete_person,
            ("GET", "person/events"): self.person_events,
            ("GET", "person/history"): self.person_history,
            ("DELETE", "person/trait"): self.delete_trait,
            ("GET", "stream"): self.stream,
            ("GET", "operation"): self.operation,
            ("GET", "requests"): self.requests,
            ("GET", "request"): self.request,
        }

    def handle(self, method: str, name: str, query: dict[str, str]) -> Response:
        route = self._routes.get((method, name))
        if route is None:
            known = any(path == name for _, path in self._routes)
            return json_response({"error": "no such console route"}, 405 if known else 404)
        try:
            result = route(query)
        except BadQuery as exc:
            return json_response({"error": str(exc)}, 400)
        if result is None:
            return json_response({"error": "not found"}, 404)
        return json_response(result)

    # --- scope ----------------------------------------------------------------------------

    def _scope(self, query: dict[str, str]) -> tuple[str, str]:
        project, env = query.get("project", ""), query.get("env", "live")
        if self.projects.get(project) is None:
            raise BadQuery("project names no project of this server")
        if env not in ("live", "test"):
            raise BadQuery("env must be live or test")
        return project, env

    def project_list(self, query: dict[str, str]) -> dict[str, Any]:
        """Projects with the number of people in each environment, as the People list counts.

        The list shows everyone with a profile or an event, ids stitched by aliases counted
        once, and nobody deleted (:meth:`PeopleStore.list_people`). Counted here from the ids
        alone, in three reads for every project at once: the list's own way reads each person
        whole, and the page asks on each view it opens.
        """
        projects = self.projects.all()
        with self.store.reading() as db:
            seen = db.execute(
                "SELECT project_id, environment, distinct_id FROM identities"
                " WHERE has_profile = 1 AND deleted_at IS NULL"
                " UNION SELECT DISTINCT project_id, environment, distinct_id FROM events"
            ).fetchall()
            deleted = db.execute(
                "SELECT project_id, environment, distinct_id FROM identities"
                " WHERE deleted_at IS NOT NULL"
            ).fetchall()
            links = db.execute(
                "SELECT project_id, environment, alias_id, distinct_id FROM aliases"
            ).fetchall()
        counts = _count_people(seen, deleted, links)
        return {
            "projects": [
                {
                    "id": project.id,
                    "name": project.name,
                    "people": {env: counts.get((project.id, env), 0) for env in ("live", "test")},
                }
                for project in projects
            ]
        }

    # --- people ---------------------------------------------------------------------------

    def people(self, query: dict[str, str]) -> dict[str, Any]:
        project, env = self._scope(query)
        where = {k[len("trait.") :]: v for k, v in query.items() if k.startswith("trait.")}
        listing = self.store.list_people(
            project,
            env,
            search=query.get("search") or None,
            where=where,
            limit=_number(query, "limit", 25, 1, 200),
            offset=_number(query, "offset", 0, 0, 10**9),
        )
        listing["people"] = [
            {
                "distinct_id": p["distinct_id"],
                "aliases": len(p["aliases"]),
                "first_seen": p["first_seen"],
                "last_seen": p["last_seen"],
                "event_count": p["event_count"],
                **{key: _text(p[key]) for key in RESERVED_TRAITS},
            }
            for p in listing["people"]
        ]
        return listing

    def trait_keys(self, query: dict[str, str]) -> dict[str, Any]:
        project, env = self._scope(query)
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT DISTINCT key FROM traits WHERE project_id = ? AND environment = ?"
                " AND value IS NOT NULL ORDER BY key LIMIT 1000",
                (project, env),
            ).fetchall()
        return {"keys": [row[0] for row in rows]}

    def _person_or_none(self, query: dict[str, str]) -> Optional[dict[str, Any]]:
        project, env = self._scope(query)
        return self.store.get_person(project, env, query.get("id", ""))

    def person(self, query: dict[str, str]) -> Optional[dict[str, Any]]:
        found = self._person_or_none(query)
        if found is None:
            return None
        reserved = {key: found[key] for key in RESERVED_TRAITS}
        names = {spelling: key for key in RESERVED_TRAITS for spelling in (key, "$" + key)}
        return {
            "distinct_id": found["distinct_id"],
            "aliases": found["aliases"],
            "first_seen": found["first_seen"],
            "last_seen": found["last_seen"],
            "event_count": found["event_count"],
            **{key: _text(value) for key, value in reserved.items()},
            "traits": [
                {"key": key, "reserved": names.get(key), **typed(value)}
                for key, value in found["traits"].items()
            ],
        }

    def person_events(self, query: dict[str, str]) -> Optional[dict[str, Any]]:
        found = self._person_or_none(query)
        if found is None:
            return None
        project, env = self._scope(query)
        ids = [found["distinct_id"], *found["aliases"]]
        limit = _number(query, "limit", 25, 1, 200)
        offset = _number(query, "offset", 0, 0, 10**9)
        marks = ",".join("?" * len(ids))
        where = f"WHERE project_id = ? AND environment = ? AND distinct_id IN ({marks})"
        with self.store.reading() as db:
            rows = db.execute(
                f"SELECT id, event_name, distinct_id, received_at, ts FROM events {where}"
                " ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?",
                (project, env, *ids, limit, offset),
            ).fetchall()
            total = db.execute(f"SELECT count(*) FROM events {where}", (project, env, *ids))
            count = total.fetchone()[0]
        events = event_rows(rows)
        for event in events:
            del event["_us"]
        return {"events": events, "total": count, "limit": limit, "offset": offset}

    def person_history(self, query: dict[str, str]) -> Optional[dict[str, Any]]:
        project, env = self._scope(query)
        history = self.store.trait_history(project, env, query.get("id", ""))
        if history is None:
            return None
        records = self.app.records
        oldest = records[0].sequence if records else None
        for entry in history:
            request = entry["request"]
            if request is not None:
                # The log keeps the latest requests of this run; older ones are told by their
                # identity only (the Requests view cannot open them).
                number = request["sequence"]
                request["in_log"] = bool(number and oldest is not None and number >= oldest)
        return {
            "history": [
                {
                    "key": entry["key"],
                    **typed(entry["value"]),
                    "took_effect": entry["took_effect"],
                    "timestamp": entry["timestamp"],
                    "applied_at": entry["applied_at"],
                    "distinct_id": entry["distinct_id"],
                    "update_id": entry["update_id"],
                    "source": entry["source"],
                    "request": entry["request"],
                }
                for entry in reversed(history)
            ]
        }

    def delete_person(self, query: dict[str, str]) -> dict[str, Any]:
        project, env = self._scope(query)
        return {"deleted": self.store.delete_person(project, env, query.get("id", ""))}

    def delete_trait(self, query: dict[str, str]) -> dict[str, Any]:
        project, env = self._scope(query)
        key = query.get("key", "")
        return {"deleted": self.store.delete_trait(project, env, query.get("id", ""), key)}

    # --- live stream ----------------------------------------------------------------------

    def stream(self, query: dict[str, str]) -> dict[str, Any]:
        project, env = self._scope(query)
        kinds = frozenset(k for k in query.get("kinds", ",".join(KINDS)).split(",") if k)
        if not kinds <= set(KINDS):
            raise BadQuery("kinds must be a comma-separated list of track, people and alias")
        after = None
        if query.get("after"):
            try:
                after = Cursor.parse(query["after"])
            except ValueError:
                raise BadQuery("after must be a cursor this route gave") from None
        filters = Filters(kinds, query.get("event_name", ""), query.get("distinct_id", ""))
        limit = _number(query, "limit", 100, 1, 500)
        with self.store.reading() as db:
            rows, cursor = stream(db, project, env, filters, after, limit)
        return {"rows": rows, "cursor": str(cursor)}

    def operation(self, query: dict[str, str]) -> Optional[dict[str, Any]]:
        project, env = self._scope(query)
        with self.store.reading() as db:
            return operation(db, project, env, query.get("ref", ""))

    # --- requests ---------------------------------------------------------------------------

    def _explain(self, record: RequestRecord) -> Explanation:
        with self._lock:
            known = self._explained.get(record.sequence)
        if known is not None:
            return known
        found = explain(record, self.app.kept.get(record.sequence))
        with self._lock:
            self._explained[record.sequence] = found
            while len(self._explained) > 1000:
                self._explained.popitem(last=False)
        return found

    def _request_row(self, record: RequestRecord, answer_chars: int) -> dict[str, Any]:
        explained = self._explain(record)
        answer = record.answer.decode("utf-8", "replace")
        return {
            "sequence": record.sequence,
            "at": format_epoch(record.received_at),
            "method": record.method,
            "path": record.path,
            "status": record.status,
            "environment": record.environment,
            "project_id": record.project_id,
            "replayed": record.replayed,
            "fault": record.fault,
            "idempotency_key": record.idempotency_key,
            "answer": answer[:answer_chars],
            "answer_cut": len(answer) > answer_chars,
            "counts": explained.counts,
            "reason": explained.reason,
        }

    def requests(self, query: dict[str, str]) -> dict[str, Any]:
        project, env = self._scope(query)
        before = _number(query, "before", 0, 0, 2**62)
        limit = _number(query, "limit", 50, 1, 500)
        rows = []
        for record in reversed(list(self.app.records)):  # list(): a copy taken in one step
            if before and record.sequence >= before:
                continue
            if record.project_id is not None and (record.project_id, record.environment) != (
                project,
                env,
            ):
                continue
            rows.append(self._request_row(record, MAX_ANSWER_CHARS))
            if len(rows) == limit:
                break
        return {"requests": rows}

    def request(self, query: dict[str, str]) -> Optional[dict[str, Any]]:
        sequence = _number(query, "sequence", 0, 1, 2**62)
        for record in reversed(list(self.app.records)):
            if record.sequence == sequence:
                explained = self._explain(record)
                row = self._request_row(record, len(record.answer) + 1)
                row.update(
                    body=explained.body,
                    refused_index=explained.refused_index,
                    refused_operation=explained.refused_operation,
                )
                return row
        return None
