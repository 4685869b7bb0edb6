"""What the job-runner integrations (Celery, RQ, Dramatiq) share: the identity a job takes along
from where it was enqueued, and the identity it runs in.

A job enqueued inside an identity (a web request's, a ``client.context()``, a task's) carries
that identity's ids in its message, under :data:`CARRIED`: ``{"distinct_id": ..., "anonymous_id":
...}``, the first only once the identity is identified. The job then runs in
``client.context(distinct_id, anonymous_id=...)``: its calls without ``distinct_id=`` are that
user's (or that anonymous visitor's, and an ``identify`` in the job stitches the visitor to the
user), while an explicit ``distinct_id=`` wins as everywhere. A job that carries nothing (enqueued
outside any identity, or with the switch off) runs in a fresh anonymous identity of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from typing import Any, Optional

from .._client import Client
from .._errors import ValidationError
from .._identity import IdentityScope
from .._log import ThrottledWarning, logger
from .._validate import check_distinct_id

CARRIED = "sankofa_identity"
"""The message header (Celery), job meta key (RQ) or message option (Dramatiq) of the ids."""

_warnings = ThrottledWarning(interval=60.0)


def identity_to_carry(client: Optional[Client]) -> Optional[dict[str, str]]:
    """The ids a job enqueued now takes along, or None outside any identity."""
    if client is None:
        return None
    carried = client._identity.carried()
    if carried is None:
        return None
    distinct_id, anonymous_id = carried
    ids = {"anonymous_id": anonymous_id}
    if distinct_id is not None:
        ids["distinct_id"] = distinct_id
    return ids


def carried_ids(carried: object) -> tuple[Optional[str], Optional[str]]:
    """``(distinct_id, anonymous_id)`` from what a job carried; (None, None) when it carried
    nothing usable (logged: the job then runs anonymously)."""
    if carried is None:
        return None, None  # the common case: one test, nothing else
    try:
        if not isinstance(carried, Mapping):
            raise ValidationError(f"not a mapping: {type(carried).__name__}", reason="invalid")
        distinct_id, anonymous_id = carried.get("distinct_id"), carried.get("anonymous_id")
        if distinct_id is not None:
            distinct_id = check_distinct_id(distinct_id)
        if anonymous_id is not None:
            anonymous_id = check_distinct_id(anonymous_id, "anonymous_id")
    except ValidationError as exc:
        _warnings.warn(
            "carried", "a job carried an unusable %s (%s); it runs anonymously", CARRIED, exc
        )
        return None, None
    return distinct_id, anonymous_id


@contextmanager
def job_identity(client: Client, carried: object) -> Iterator[None]:
    """The identity a job runs in, around it: the one it carried, else a fresh one."""
    identities = client._identity
    token = identities.open_job(*carried_ids(carried))
    try:
        yield
    finally:
        identities.restore(token)


class OpenIdentities:
    """Job identities opened by a runner's "job starts" hook and ended by its "job ended" hook,
    which run on the job's thread. Kept lean: they run around every job.

    Keyed by thread as well as by job: a threads pool may run one job id twice at once (a
    redelivered message), and each run must end the identity its own thread opened.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[Hashable, int], list[tuple[IdentityScope, Token[Any]]]] = {}

    def enter(self, job: Hashable, client: Client, carried: object) -> None:
        identities = client._identity
        opened = (identities, identities.open_job(*carried_ids(carried)))
        key = (job, threading.get_ident())
        with self._lock:
            self._open.setdefault(key, []).append(opened)

    def leave(self, job: Hashable) -> None:
        key = (job, threading.get_ident())
        with self._lock:
            stack = self._open.get(key)
            opened = stack.pop() if stack else None
            if stack == []:
                del self._open[key]
        if opened is None:
            return
        identities, token = opened
        try:
            identities.restore(token)
        except ValueError:  # opened in another context (an unusual pool): nothing to undo
            logger.debug("a job's identity ended in another context")
