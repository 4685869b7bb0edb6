"""``ReferenceServer``: the engine's ingestion API on loopback, for tests and local development."""

from __future__ import annotations

import secrets
import threading
from types import TracebackType
from typing import Any, Optional, Union

from .._operations import MAX_REQUEST_BYTES, parse_rfc3339, to_epoch
from ._app import App, RequestRecord
from ._console import Console
from ._console_api import ConsoleApi
from ._faults import Faults
from ._http import HTTPServer
from ._idempotency import IdempotencyCache
from ._projects import Project, Projects
from ._ratelimit import FixedWindowLimiter
from ._responses import Response
from ._store import PeopleStore
from ._writer import Writer

RateLimit = Union[None, int, tuple[int, int]]
DEFAULT_RATE_LIMIT = (500, 60)


class ReferenceServer:
    """A local server that answers like the Sankofa engine's ingestion API.

    ``with ReferenceServer() as server:`` starts it on 127.0.0.1 on a free port; point a client
    at ``server.url`` with ``server.api_key``. What it accepts goes through a bounded buffer to
    an embedded SQLite People store (in memory unless ``db_path`` is given), which the read
    methods below query. ``server.faults`` breaks it on purpose. ``server.console_url`` opens a
    console in the browser that shows people, a live stream and every request answered.

    Args:
        host, port: where to listen (port 0 picks a free one).
        db_path: SQLite file to keep data in; in memory when None.
        api_key, test_api_key: keys of the default project (generated when None).
        rate_limit: requests per 60 s per key (the engine's 500), ``(requests, seconds)``, or
            None for no limit.
        rate_limit_headers: False answers like the hosted engine: no ``X-RateLimit-*`` headers
            and no ``Retry-After`` on 429.
        buffer_size: items of each kind the write buffer holds before answering 503.
        idempotency_window: seconds a repeated ``Idempotency-Key`` gets the first answer.
        deduplicate: False applies every request as the engine does, which ignores
            ``Idempotency-Key``: a repeated key is applied again like a fresh request (and
            its answer is not remembered). True (the default) is decision D4, an extension:
            a repeat within ``idempotency_window`` gets the first answer and changes nothing.
            Either way ``stats()["repeated_keys"]`` counts the ingestion requests whose key
            had been seen before (resends) and each such entry of :attr:`requests` has
            ``repeated_key`` set.
        max_body_bytes: larger bodies (as sent) get 413.
        authorized_domains, authorized_ips: the default project's allowlists (comma-separated).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: Optional[str] = None,
        api_key: Optional[str] = None,
        test_api_key: Optional[str] = None,
        project_id: str = "proj_reference",
        project_name: str = "Reference",
        rate_limit: RateLimit = DEFAULT_RATE_LIMIT,
        rate_limit_headers: bool = True,
        buffer_size: int = 10_000,
        idempotency_window: float = 600.0,
        deduplicate: bool = True,
        max_body_bytes: int = MAX_REQUEST_BYTES,
        authorized_domains: str = "",
        authorized_ips: str = "",
    ) -> None:
        self.host = host
        self._requested_port = port
        self.max_body_bytes = max_body_bytes
        self.deduplicate = deduplicate
        self.projects = Projects()
        self.project = self.add_project(
            project_name,
            project_id=project_id,
            api_key=api_key,
            test_api_key=test_api_key,
            authorized_domains=authorized_domains,
            authorized_ips=authorized_ips,
        )
        self.faults = Faults()
        self._store = PeopleStore(str(db_path) if db_path is not None else None)
        self._writer = Writer(self._store, buffer_size)
        self._idempotency = IdempotencyCache(idempotency_window)
        if deduplicate:
            self._load_replays()
        limiter = None
        if rate_limit is not None:
            limit, window = (rate_limit, 60) if isinstance(rate_limit, int) else rate_limit
            limiter = FixedWindowLimiter(limit, window, headers=rate_limit_headers)
        self._app = App(
            self.projects,
            self._store,
            self._writer,
            limiter,
            self._idempotency,
            self.faults,
            deduplicate=deduplicate,
        )
        self._console_token = secrets.token_urlsafe(32)
        self._app.console = Console(
            ConsoleApi(self._store, self.projects, self._app), self._console_token
        )
        self._http: Optional[HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def __repr__(self) -> str:
        state = "running" if self._http is not None else "stopped"
        return f"ReferenceServer(url={self.url!r}, {state})"

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> ReferenceServer:
        """Listen and serve in a background thread; returns self."""
        if self._closed:
            raise RuntimeError("a stopped ReferenceServer cannot be started again")
        if self._http is None:
            self._http = HTTPServer(
                (self.host, self._requested_port), self._app, self.max_body_bytes
            )
            self._thread = threading.Thread(
                target=self._http.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="sankofa-server-http",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop listening, finish requests in progress, apply the buffer, close the database.

        Returns True when everything accepted was written. Idempotent.
        """
        if self._closed:
            return True
        self._closed = True
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http.stop_accepting(timeout)
        applied = self._writer.close(timeout)
        if applied:
            self._store.close()
        return applied

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._http is None:
            return self._requested_port
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to give the client as ``host``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def console_url(self) -> str:
        """The browser console's address, with the secret token that opens it.

        The console shows people, a live stream of operations and every request answered;
        without the token it answers 401. A new token is made for each server.
        """
        return f"{self.url}/?token={self._console_token}"

    # --- projects -----------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The default project's live key."""
        return self.project.api_key

    @property
    def test_api_key(self) -> str:
        """The default project's test key (its data is kept apart from live data)."""
        return self.project.test_api_key

    @property
    def project_id(self) -> str:
        return self.project.id

    def add_project(
        self,
        name: str,
        *,
        project_id: Optional[str] = None,
        api_key: Optional[str] = None,
        test_api_key: Optional[str] = None,
        authorized_domains: str = "",
        authorized_ips: str = "",
    ) -> Project:
        """Add a project with its own keys; its data is invisible to other projects' keys."""
        fields: dict[str, Any] = {
            "id": project_id or f"proj_{len(self.projects.all()) + 1}",
            "name": name,
            "authorized_domains": authorized_domains,
            "authorized_ips": authorized_ips,
        }
        if api_key is not None:
            fields["api_key"] = api_key
        if test_api_key is not None:
            fields["test_api_key"] = test_api_key
        return self.projects.add(Project(**fields))

    # --- waiting and state ----------------------------------------------------------------------

    def wait_until_applied(self, timeout: Optional[float] = 10.0) -> bool:
        """Block until everything accepted so far is in SQLite; False on timeout."""
        return self._writer.wait_until_applied(timeout)

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests received so far, oldest first (method, path, status, Idempotency-Key,
        ``replayed``, ``repeated_key``...)."""
        return list(self._app.records)

    def clear(self) -> None:
        """Forget everything a test could see of earlier ones (between tests).

        Waits for the writer, then empties the store (people, events, aliases, counters,
        remembered answers), the request log and the bodies kept for the console, resets the
        request counter, starts every key's rate-limit window afresh, forgets the
        ``Idempotency-Key`` answers held in memory, and clears injected faults. Projects and
        their keys stay.
        """
        self.wait_until_applied(None)
        self._store.clear()
        self._idempotency = IdempotencyCache(self._idempotency.window)
        self._app.clear(self._idempotency)
        self.faults.clear()

    # --- read API (decision D3) ---------------------------------------------------------------

    def _scope(self, project_id: Optional[str], environment: str) -> tuple[str, str]:
        if environment not in ("live", "test"):
            raise ValueError("environment must be 'live' or 'test'")
        project = project_id or self.project.id
        if self.projects.get(project) is None:
            raise ValueError(f"no project {project!r}")
        return project, environment

    def get_person(
        self, distinct_id: str, *, environment: str = "live", project_id: Optional[str] = None
    ) -> Optional[dict[str, Any]]:
        """A person's profile with aliases resolved (any linked id finds it), or None.

        Keys: ``distinct_id`` (the display id), ``aliases``, ``traits``, ``first_seen``,
        ``last_seen``, ``event_count``, and the reserved traits ``name``, ``email``,
        ``avatar``, ``phone`` (each from ``name`` or ``$name``, whichever was set last).
        """
        return self._store.get_person(*self._scope(project_id, environment), distinct_id)

    def list_people(
        self,
        *,
        search: Optional[str] = None,
        where: Optional[dict[str, Any]] = None,
        updated_since: Optional[str] = None,
        limit: int = 50,
        offset: int = 0,
        environment: str = "live",
        project_id: Optional[str] = None,
    ) -> dict[str, Any]:
        """People, most recently seen first: ``{"people", "total", "limit", "offset"}``.

        ``search`` matches ids, aliases, and the reserved ``email`` and ``name`` (either
        spelling, the one set last; case-insensitive substring);
        ``where`` keeps people whose traits equal the given values; ``updated_since`` (RFC 3339)
        keeps people whose traits were updated by an update stamped at or after it.
        """
        if not 1 <= limit <= 500 or offset < 0:
            raise ValueError("limit must be between 1 and 500 and offset at least 0")
        since = (
            None if updated_since is None else round(to_epoch(parse_rfc3339(updated_since)) * 1e6)
        )
        return self._store.list_people(
            *self._scope(project_id, environment),
            search=search,
            where=where,
            updated_since_us=since,
            limit=limit,
            offset=offset,
        )

    def events(
        self,
        distinct_id: Optional[str] = None,
        *,
        event_name: Optional[str] = None,
        limit: int = 50,
        offset: int = 0,
        environment: str = "live",
        project_id: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        """Events newest first: of one person (all linked ids) or, without an id, of everyone."""
        found = self._store.events(
            *self._scope(project_id, environment),
            distinct_id,
            event_name=event_name,
            limit=limit,
            offset=offset,
        )
        return found or []

    def trait_history(
        self,
        distinct_id: str,
        key: Optional[str] = None,
        *,
        environment: str = "live",
        project_id: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        """Each value a person's traits were sent with, oldest first, and which took effect."""
        found = self._store.trait_history(*self._scope(project_id, environment), distinct_id, key)
        return found or []

    def delete_trait(
        self,
        distinct_id: str,
        key: str,
        *,
        environment: str = "live",
        project_id: Optional[str] = None,
    ) -> bool:
        """Remove one trait from a person; False when there was nothing to remove."""
        return self._store.delete_trait(*self._scope(project_id, environment), distinct_id, key)

    def delete_person(
        self, distinct_id: str, *, environment: str = "live", project_id: Optional[str] = None
    ) -> bool:
        """Soft-delete a person: hidden from reads from now on, its events kept."""
        return self._store.delete_person(*self._scope(project_id, environment), distinct_id)

    def stats(
        self, *, environment: str = "live", project_id: Optional[str] = None
    ) -> dict[str, int]:
        """Counts for one project and environment, plus server-wide request counters.

        Per project and environment: ``people``, ``events``, ``aliases``, ``discarded``,
        ``duplicate_insert_ids``. Server-wide: ``idempotent_replays`` (repeats answered from
        memory, never with ``deduplicate=False``), ``repeated_keys`` (ingestion requests whose
        ``Idempotency-Key`` an earlier one with the same API key carried, however either was
        answered: resends), ``repeated_after_success`` (of those, the ones whose key an
        earlier request had been answered 2xx for: a batch sent again after it was taken),
        ``requests``, ``ingest_requests`` (those to ``/api/v1``), ``rate_limited`` (answered
        429), ``pending``, ``write_errors``, ``faults_injected``.
        ``GET /reference/v1/stats`` answers the same.
        """
        counts = self._store.stats(*self._scope(project_id, environment))
        counts.update(self._app.counters())
        return counts

    def _load_replays(self) -> None:
        import time

        for scope, key, status, content_type, body, created in self._store.recent_replays(
            time.time() - self._idempotency.window
        ):
            self._idempotency.remember(scope, key, Response(status, body, content_type), created)
