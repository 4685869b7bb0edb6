"""Request dispatch: the engine's order of checks, its routes, and the reference read API.

Framework-free: :meth:`App.handle` takes a parsed request and returns the answer, so the rules
can be read (and tested) apart from sockets. The order follows spec section 2: size (checked by
the HTTP layer before the body is read), CORS preflight, rate limit, route, key, allowlist,
body, garbage id, buffer.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from email.message import Message
from typing import Any, Callable, NamedTuple, Optional, Union
from urllib.parse import parse_qs, unquote

from .._operations import parse_rfc3339, to_epoch
from . import _cors, _fault_control, _responses, _useragent
from ._encoding import decode_body
from ._faults import Fault, Faults
from ._idempotency import MAX_KEY_LENGTH, IdempotencyCache
from ._ingest import SINGLE_ROUTES, Plan, plan_batch, plan_single
from ._kept import KeptBodies
from ._payloads import now_us
from ._projects import Projects, Scope
from ._ratelimit import FixedWindowLimiter
from ._responses import Response
from ._store import PeopleStore, Unit
from ._writer import Writer

INGEST_PREFIX = "/api/v1"
READ_PREFIX = "/reference/v1"
MAX_LIST_LIMIT = 500
ADMISSION_WAIT = 2.0
"""Longest a request waits for the write buffer to drain below half before it is decoded."""


class Request(NamedTuple):
    method: str
    target: str
    headers: Union[Message, Mapping[str, str]]
    """Header lookup that ignores the case of names (``http.client.HTTPMessage``)."""
    body: bytes
    peer: str


class RequestRecord(NamedTuple):
    """One request as a test sees it in :attr:`ReferenceServer.requests` (no API key)."""

    method: str
    path: str
    status: Optional[int]
    """None when the connection was reset instead of answered."""
    idempotency_key: Optional[str]
    environment: Optional[str]
    replayed: bool
    fault: bool
    project_id: Optional[str] = None
    """The project of the request's key (None when the key was missing or unknown)."""
    received_at: float = 0.0
    """Seconds since the epoch when the request was handed to the app."""
    answer: bytes = b""
    """The answer's body as sent (empty for a reset connection)."""
    sequence: int = 0
    """Increases by one with each request; names the request in the console."""
    repeated_key: bool = False
    """An earlier ingestion request to the same project and environment carried this
    ``Idempotency-Key``: a resend. Counted in ``stats()["repeated_keys"]``."""


ConsoleRoutes = Callable[[Request, str], Optional[Response]]
"""Answers a request for the console, or None when the route is not the console's."""


class _ReadError(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class App:
    def __init__(
        self,
        projects: Projects,
        store: PeopleStore,
        writer: Writer,
        limiter: Optional[FixedWindowLimiter],
        idempotency: IdempotencyCache,
        faults: Faults,
        sleep: Callable[[float], None] = time.sleep,
        *,
        deduplicate: bool = True,
    ) -> None:
        self.projects = projects
        self.store = store
        self.writer = writer
        self.limiter = limiter
        self.idempotency = idempotency
        self.faults = faults
        self.deduplicate = deduplicate
        """False applies every request, as the engine does: a repeated key is not replayed."""
        self.records: deque[RequestRecord] = deque(maxlen=100_000)
        self.kept = KeptBodies()
        self.console: Optional[ConsoleRoutes] = None
        self.request_count = 0
        self.ingest_count = 0
        """Requests to /api/v1 (what a client sends), however they were answered."""
        self.rate_limited_count = 0
        """Requests answered 429 by the rate limiter."""
        self._count_lock = threading.Lock()
        # next() is atomic: handler threads share it. A stored request keeps its number, so
        # numbering goes on from the last one a reopened store holds.
        self._sequence = itertools.count(store.last_sequence() + 1)
        self._sleep = sleep

    # --- entry --------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | Fault:
        """Answer one request (or say to reset its connection, for an injected fault)."""
        path = request.target.split("?", 1)[0]
        route = path.lower()
        if len(route) > 1 and route.endswith("/"):
            route = route[:-1]
        is_ingest = route == INGEST_PREFIX or route.startswith(INGEST_PREFIX + "/")
        if not is_ingest and self.console is not None:
            # The console's own requests stay out of the request log and the counters.
            console_answer = self.console(request, route)
            if console_answer is not None:
                return console_answer
        received_at = time.time()
        sequence = next(self._sequence)  # taken first: the writer stores it with the body
        with self._count_lock:
            self.request_count += 1
            self.ingest_count += is_ingest
        before_limit, after_limit = _cors.layers(path, route)
        cors = _cors.Headers()
        lookup = request.headers.get
        preflight = None
        if before_limit is not None:
            preflight = _cors.apply(before_limit, request.method, lookup, cors)
        if preflight is None and after_limit is not None and not is_ingest:
            # Outside /api/v1 there is no limiter: the dashboard layer may answer a preflight.
            preflight = _cors.apply(after_limit, request.method, lookup, cors)
            after_limit = None
        if preflight is not None:  # not rate limited, never reaches the key checks
            self.record(request, path, preflight, received_at=received_at, sequence=sequence)
            return preflight
        replayed = False
        key_scope = self._key_scope(request, route) if is_ingest else None
        repeated = key_scope is not None and self.idempotency.note(*key_scope)
        scope: Optional[Scope] = None
        extra: tuple[tuple[str, str], ...] = ()
        answer: Response | Fault
        fault = self._fault() if is_ingest else None
        if fault is not None:
            answer = fault if fault.reset else fault.response  # type: ignore[assignment]
        else:
            verdict = None
            if is_ingest and self.limiter is not None:
                verdict = self.limiter.hit(request.headers.get("x-api-key"), request.peer)
            if verdict is not None and not verdict.allowed:
                with self._count_lock:
                    self.rate_limited_count += 1
                answer = Response(
                    429, _responses.RATE_LIMITED_BODY, _responses.JSON, verdict.headers
                )
            else:
                if verdict is not None:
                    extra = verdict.headers
                if after_limit is not None:
                    _cors.apply(after_limit, request.method, lookup, cors)
                answer, scope, replayed = self._route(request, route, path, sequence)
        if isinstance(answer, Response):
            extra += cors.items()
            if extra:
                answer = answer._replace(headers=answer.headers + extra)
            if key_scope is not None and 200 <= answer.status < 300:
                self.idempotency.succeeded(*key_scope)
        self.record(
            request,
            path,
            answer,
            scope,
            replayed,
            fault is not None,
            received_at,
            sequence,
            repeated,
        )
        return answer

    def _key_scope(self, request: Request, route: str) -> Optional[tuple[str, str]]:
        """The (scope, key) of a sent batch or item's ``Idempotency-Key``, to count resends.

        Every POST to an ingestion route whose key authenticates counts, whatever it is then
        answered (an injected fault or a 429 too): a client's resends, in either mode.
        """
        if request.method != "POST":
            return None
        kind = route[len(INGEST_PREFIX) + 1 :]
        if kind not in SINGLE_ROUTES and kind != "batch":
            return None
        idem_key = request.headers.get("Idempotency-Key")
        if idem_key is None or not 0 < len(idem_key) <= MAX_KEY_LENGTH:
            return None
        scope = self.projects.authenticate(request.headers.get("x-api-key"))
        if isinstance(scope, Response):
            return None
        return f"{scope.project.id}:{scope.environment}", idem_key

    def counters(self) -> dict[str, int]:
        """Server-wide counters (``stats()`` adds them to a project's counts)."""
        return {
            "idempotent_replays": self.idempotency.replays,
            "repeated_keys": self.idempotency.repeated,
            "repeated_after_success": self.idempotency.repeated_after_success,
            "requests": self.request_count,
            "ingest_requests": self.ingest_count,
            "rate_limited": self.rate_limited_count,
            "pending": self.writer.pending_items,
            "write_errors": self.writer.write_errors,
            "faults_injected": self.faults.injected,
        }

    def clear(self, idempotency: IdempotencyCache) -> None:
        """Forget the request log, kept bodies, the request counter and rate-limit windows."""
        with self._count_lock:
            self.request_count = 0
            self.ingest_count = 0
            self.rate_limited_count = 0
        self.records.clear()
        self.kept.clear()
        if self.limiter is not None:
            self.limiter.clear()
        self.idempotency = idempotency

    def record(
        self,
        request: Request,
        path: str,
        answer: Response | Fault,
        scope: Optional[Scope] = None,
        replayed: bool = False,
        fault: bool = False,
        received_at: Optional[float] = None,
        sequence: int = 0,
        repeated_key: bool = False,
    ) -> None:
        """Add a request to the log (the HTTP layer calls it for requests it refused unread)."""
        sequence = sequence or next(self._sequence)
        if isinstance(answer, Response):
            status: Optional[int] = answer.status
            body = answer.body
        else:
            status, body = None, b""
        if status != 200:
            headers = request.headers
            self.kept.keep(
                sequence,
                request.body,
                headers.get("Content-Type"),
                headers.get("Content-Encoding"),
            )
        self.records.append(
            RequestRecord(
                request.method,
                path,
                status,
                request.headers.get("Idempotency-Key"),
                None if scope is None else scope.environment,
                replayed,
                fault,
                None if scope is None else scope.project.id,
                time.time() if received_at is None else received_at,
                body,
                sequence,
                repeated_key,
            )
        )

    def _fault(self) -> Optional[Fault]:
        delay = self.faults.latency()
        if delay:
            self._sleep(delay)
        return self.faults.pick()

    def _route(
        self, request: Request, route: str, path: str, sequence: int = 0
    ) -> tuple[Response, Optional[Scope], bool]:
        method = request.method
        if route == "/health":
            if method in ("GET", "HEAD"):
                body = b"" if method == "HEAD" else _responses.HEALTH.body
                return _responses.HEALTH._replace(body=body), None, False
            return _responses.method_not_allowed("GET, HEAD"), None, False
        if route.startswith(INGEST_PREFIX + "/"):
            kind = route[len(INGEST_PREFIX) + 1 :]
            if _is_people_read(kind):
                # The engine's dashboard reads: a JWT, never an API key (spec section 16).
                if method in ("GET", "HEAD"):
                    return _dashboard_auth(request.headers.get("Authorization")), None, False
                if kind != "people":
                    return _responses.method_not_allowed("GET, HEAD"), None, False
                if method != "POST":
                    return _responses.method_not_allowed("GET, HEAD, POST"), None, False
            if kind in SINGLE_ROUTES or kind == "batch":
                if method != "POST":
                    return _responses.method_not_allowed("POST"), None, False
                return self._ingest(request, kind, sequence)
        if route == READ_PREFIX or route.startswith(READ_PREFIX + "/"):
            return self._read(request, path), None, False
        return _responses.not_found(method, path), None, False

    # --- ingestion ----------------------------------------------------------------------

    def _ingest(
        self, request: Request, kind: str, sequence: int = 0
    ) -> tuple[Response, Optional[Scope], bool]:
        scope = self.projects.authenticate(request.headers.get("x-api-key"))
        if isinstance(scope, Response):
            return scope, None, False
        project, environment = scope
        refusal = self.projects.check_allowlists(
            project, request.headers.get("Origin"), request.peer
        )
        if refusal is not None:
            return refusal, scope, False
        idem_key = request.headers.get("Idempotency-Key")
        if idem_key is not None and not (0 < len(idem_key) <= MAX_KEY_LENGTH):
            idem_key = None
        idem_scope = f"{project.id}:{environment}"
        if not self.deduplicate:
            idem_key = None  # applied afresh, its answer not remembered (the engine's way)
        if idem_key is not None:
            remembered = self.idempotency.claim(idem_scope, idem_key)
            if remembered is not None:
                return remembered, scope, True
        response: Optional[Response] = None
        try:
            response = self._accept(request, kind, scope, idem_scope, idem_key, sequence)
            return response, scope, False
        finally:
            if idem_key is not None:
                self.idempotency.release(idem_scope, idem_key, response)

    def _accept(
        self,
        request: Request,
        kind: str,
        scope: Scope,
        idem_scope: str,
        idem_key: Optional[str],
        sequence: int = 0,
    ) -> Response:
        project, environment = scope
        self.writer.wait_for_room(ADMISSION_WAIT)
        device = _useragent.parse(request.headers.get("User-Agent") or "")
        received = now_us()
        body = decode_body(request.body, request.headers.get("Content-Encoding"))
        if kind == "batch":
            plan = plan_batch(
                body,
                device,
                received,
                {
                    "environment": environment,
                    "project_id": project.id,
                    "project_name": project.name,
                },
            )
        else:
            plan = plan_single(kind, request.headers.get("Content-Type"), body, device, received)
        if not isinstance(plan, Plan):
            return plan
        if plan.items and self.faults.buffer_is_full:
            return _responses.BUFFER_FULL
        replayable = None
        if idem_key is not None:
            response = plan.response
            replayable = (
                idem_scope,
                idem_key,
                response.status,
                response.content_type,
                response.body,
                time.time(),
            )
        unit = Unit(
            project.id,
            environment,
            plan.items,
            received,
            plan.discarded,
            replayable,
            kind,
            body,
            device,
            sequence,
            request.headers.get("Idempotency-Key"),
        )
        if not self.writer.push(unit):
            return _responses.BUFFER_FULL
        return plan.response

    # --- reference read API (decision D3) -------------------------------------------------

    def _read(self, request: Request, path: str) -> Response:
        scope = self.projects.authenticate(request.headers.get("x-api-key"))
        if isinstance(scope, Response):
            return scope
        query = {k: v[-1] for k, v in parse_qs(request.target.partition("?")[2]).items()}
        if query.get("project_id", scope.project.id) != scope.project.id:
            return _responses.INVALID_KEY  # another project's data: the engine's 403
        parts = [unquote(p) for p in path.split("/")[3:] if p]
        try:
            return self._read_route(request.method, parts, query, scope, request.body)
        except _ReadError as exc:
            return exc.response

    def _read_route(
        self, method: str, parts: list[str], query: dict[str, str], scope: Scope, body: bytes
    ) -> Response:
        project, env = scope.project.id, scope.environment
        store = self.store
        name = [p.lower() if i % 2 == 0 else p for i, p in enumerate(parts)]
        if name == ["stats"] and method == "GET":
            return _json({**store.stats(project, env), **self.counters()})
        if name == ["faults"] and method == "POST":
            try:
                _fault_control.apply(self.faults, body)
            except ValueError as exc:  # FaultRequestError, or a share Faults refuses
                raise _bad(str(exc)) from None
            return _json({"ok": True})
        if name == ["wait"] and method == "POST":
            applied = self.writer.wait_until_applied(_number(query, "timeout", 10.0, 0, 300))
            return _json({"applied": applied})
        if name == ["events"] and method == "GET":
            limit, offset = _page(query)
            return _json(
                {
                    "events": store.events(
                        project, env, event_name=query.get("event_name"), limit=limit, offset=offset
                    )
                }
            )
        if name == ["people"] and method == "GET":
            limit, offset = _page(query)
            where = {k[len("trait.") :]: v for k, v in query.items() if k.startswith("trait.")}
            since = query.get("updated_since")
            return _json(
                store.list_people(
                    project,
                    env,
                    search=query.get("search"),
                    where=where,
                    updated_since_us=None if since is None else _timestamp(since),
                    limit=limit,
                    offset=offset,
                )
            )
        if len(parts) >= 2 and name[0] == "people":
            return self._person_route(method, parts[1], name[2:], parts[2:], query, scope)
        return _responses.not_found(method, "/reference/v1/" + "/".join(parts))

    def _person_route(
        self,
        method: str,
        distinct_id: str,
        name: list[str],
        rest: list[str],
        query: dict[str, str],
        scope: Scope,
    ) -> Response:
        project, env = scope.project.id, scope.environment
        store = self.store
        result: Any = None
        if not name and method == "GET":
            result = store.get_person(project, env, distinct_id)
        elif not name and method == "DELETE":
            result = {"deleted": True} if store.delete_person(project, env, distinct_id) else None
        elif name == ["events"] and method == "GET":
            limit, offset = _page(query)
            found = store.events(
                project,
                env,
                distinct_id,
                event_name=query.get("event_name"),
                limit=limit,
                offset=offset,
            )
            result = None if found is None else {"events": found}
        elif name == ["history"] and method == "GET":
            found = store.trait_history(project, env, distinct_id, query.get("key"))
            result = None if found is None else {"history": found}
        elif len(name) == 2 and name[0] == "traits" and method == "DELETE":
            deleted = store.delete_trait(project, env, distinct_id, rest[1])
            result = {"deleted": True} if deleted else None
        else:
            return _responses.error(405, "Method Not Allowed")
        if result is None:
            return _responses.error(404, "Person not found")
        return _json(result)


def _is_people_read(kind: str) -> bool:
    parts = kind.split("/")
    if parts[0] != "people" or len(parts) > 3 or "" in parts:
        return False
    if len(parts) == 3:
        return parts[2] == "heatmap" or (parts[1] == "properties" and parts[2] in KEYS_OR_VALUES)
    return True


KEYS_OR_VALUES = ("keys", "values")


def _dashboard_auth(authorization: Optional[str]) -> Response:
    """The engine's ``RequireAuth`` answer: the reference server has no dashboard users, so a
    well-formed ``Bearer`` token is refused as invalid (no token verifies)."""
    value = (authorization or "").rstrip(" ")
    if not value:
        return _responses.UNAUTHORIZED_MISSING_TOKEN
    parts = value.split(" ")
    if len(parts) != 2 or parts[0] != "Bearer":
        return _responses.UNAUTHORIZED_TOKEN_FORMAT
    return _responses.UNAUTHORIZED_INVALID_TOKEN


def _json(value: Any) -> Response:
    return Response(200, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def _bad(message: str) -> _ReadError:
    return _ReadError(_responses.error(400, message))


def _number(query: dict[str, str], key: str, default: float, low: float, high: float) -> float:
    text = query.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise _bad(f"{key} must be a number") from None
    if not low <= value <= high:
        raise _bad(f"{key} must be between {low:g} and {high:g}")
    return value


def _page(query: dict[str, str]) -> tuple[int, int]:
    limit = int(_number(query, "limit", 50, 1, 1_000_000))
    offset = int(_number(query, "offset", 0, 0, 1e12))
    return min(limit, MAX_LIST_LIMIT), offset


def _timestamp(text: str) -> int:
    try:
        return round(to_epoch(parse_rfc3339(text)) * 1_000_000)
    except ValueError:
        raise _bad("updated_since must be an RFC 3339 timestamp") from None
