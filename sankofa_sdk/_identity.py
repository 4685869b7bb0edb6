"""Identity scoped to the current context: a thread, an asyncio task or a ``client.context()``.

The state is an immutable tuple stored in a ``ContextVar`` and replaced, never changed in place:
asyncio tasks start with a copy of their parent's context, so mutating a shared object would
leak one task's ``identify`` into its siblings.

The one exception is a request's identity, opened by the web integrations: there the variable
holds a :class:`SharedIdentity`, a cell whose tuple is replaced in place, so that threads and
tasks of the request (a framework's thread pool runs sync endpoints on a *copy* of the context)
change the identity of the whole request, as one visitor. A ``client.context()`` opened inside
the request is a plain, private identity again.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import NamedTuple, Optional, Union


class Identity(NamedTuple):
    distinct_id: str
    """The id calls use when they do not pass one: the known id once identified."""
    anonymous_id: str
    identified: bool
    anonymous_used: bool
    """True once a call was sent under the anonymous id, so identify must stitch it."""


def _anonymous() -> Identity:
    anon = str(uuid.uuid4())
    return Identity(anon, anon, False, False)


class SharedIdentity:
    """One request's identity, shared by every copy of the request's context.

    It mirrors the fields the per-call fast path reads, so that path needs no type check.
    """

    __slots__ = ("anonymous_used", "distinct_id", "identified", "identity")

    def __init__(self, identity: Identity) -> None:
        self.replace(identity)

    def replace(self, identity: Identity) -> None:
        self.identity = identity
        self.distinct_id = identity.distinct_id
        self.identified = identity.identified
        self.anonymous_used = identity.anonymous_used


Held = Union[Identity, SharedIdentity]
"""What the context variable holds."""


def _seeded(distinct_id: Optional[str], anonymous_id: Optional[str]) -> Identity:
    identity = _anonymous()
    if anonymous_id is not None:
        identity = Identity(anonymous_id, anonymous_id, False, True)
    if distinct_id is not None:
        identity = identity._replace(distinct_id=distinct_id, identified=True)
    return identity


MAX_REMEMBERED_ALIASES = 10_000
"""How many anonymous ids a client remembers having stitched (about 2 MB at most)."""


class IdentityScope:
    """Per-context identity of one client."""

    def __init__(self) -> None:
        # None: no identity yet (made when first needed), as in a job that carried none.
        self._var: ContextVar[Optional[Held]] = ContextVar("sankofa_identity")
        # anonymous id -> the user this process last aliased it to, oldest first. A web app
        # seeds each request from the browser's cookie, so calling identify() in every request
        # would otherwise send the same alias once per request.
        self._aliased: dict[str, str] = {}

    def _get(self) -> Optional[Identity]:
        held = self._var.get(None)
        return held.identity if isinstance(held, SharedIdentity) else held

    def _set(self, identity: Identity) -> None:
        held = self._var.get(None)
        if isinstance(held, SharedIdentity):
            held.replace(identity)
        else:
            self._var.set(identity)

    def current(self) -> Identity:
        identity = self._get()
        if identity is None:
            identity = _anonymous()
            self._set(identity)
        return identity

    def distinct_id_for_call(self) -> str:
        """The id to send for a call without ``distinct_id``; marks an anonymous id as used."""
        held = self._var.get(None)  # an Identity or a SharedIdentity alike: runs for every call
        if held is not None and (held.identified or held.anonymous_used):
            return held.distinct_id
        identity = (self._get() or _anonymous())._replace(anonymous_used=True)
        self._set(identity)
        return identity.distinct_id

    def identify(self, distinct_id: str, anonymous_id: Optional[str]) -> Optional[str]:
        """Switch this context to ``distinct_id``; return the id to alias from, if any.

        An alias is due when the caller names the anonymous id, or when this context is still
        anonymous and its id was already used. None is due when this context is already
        ``distinct_id`` (identified as that user, e.g. by a web integration's ``user_id`` hook),
        nor when this client already aliased the same anonymous id to the same user (the same
        browser identified again in a later request). A known id is never aliased to another
        known id.
        """
        current = self.current()
        source: Optional[str] = None
        already = current.identified and current.distinct_id == distinct_id
        if anonymous_id is not None:
            if anonymous_id != distinct_id and not already:
                source = anonymous_id
        elif not current.identified and current.anonymous_used:
            source = current.anonymous_id
        if source is not None and not self._first_alias(source, distinct_id):
            source = None
        anon = anonymous_id if anonymous_id is not None else current.anonymous_id
        self._set(Identity(distinct_id, anon, True, True))
        return source

    def _first_alias(self, anonymous_id: str, distinct_id: str) -> bool:
        """Note ``anonymous_id → distinct_id``; False when it is the alias last sent for that id.

        Only the last user matters: a browser signed in as A, then B, then A again is aliased
        again to A (the engine keeps the latest alias of an id).
        """
        # No lock (a lock held by another thread at a fork would stay held in the child): each
        # dict operation is atomic, and a race costs at most one alias sent twice.
        aliased = self._aliased
        last = aliased.pop(anonymous_id, None)
        aliased[anonymous_id] = distinct_id  # now the newest
        if len(aliased) > MAX_REMEMBERED_ALIASES:
            # RuntimeError, KeyError: another thread changed the dict meanwhile.
            with contextlib.suppress(StopIteration, RuntimeError, KeyError):
                del aliased[next(iter(aliased))]
        return last != distinct_id

    def carried(self) -> Optional[tuple[Optional[str], str]]:
        """What a job enqueued in this context takes along: (the known id, or None while
        anonymous; the anonymous id). None when this context never had an identity."""
        identity = self._get()
        if identity is None:
            return None
        return (identity.distinct_id if identity.identified else None, identity.anonymous_id)

    def reset(self) -> None:
        """Forget the known id and start a fresh anonymous one."""
        self._set(_anonymous())

    @contextmanager
    def scope(
        self, distinct_id: Optional[str], anonymous_id: Optional[str] = None
    ) -> Iterator[Identity]:
        """A nested identity for the duration of a ``with`` block, restored afterwards.

        A given ``anonymous_id`` counts as used (it came from outside, e.g. a browser that sent
        events under it), so an ``identify`` in the block stitches it to the user.
        """
        identity = _seeded(distinct_id, anonymous_id)
        token = self._var.set(identity)
        try:
            yield identity
        finally:
            self._var.reset(token)

    # --- a request's identity, for the web integrations ----------------------------------

    def open_job(
        self, distinct_id: Optional[str], anonymous_id: Optional[str]
    ) -> Token[Optional[Held]]:
        """Give this context a job's identity until :meth:`restore`: the ids the job carried
        (seeded as :meth:`scope` does), else none yet, so that a fresh anonymous identity is
        made only if the job needs one (a job that names its users never pays for it)."""
        if distinct_id is None and anonymous_id is None:
            return self._var.set(None)
        return self._var.set(_seeded(distinct_id, anonymous_id))

    def open_request(self, anonymous_id: Optional[str]) -> Token[Optional[Held]]:
        """Give this context a new request's identity, shared by every copy of the context.

        Returns the token for :meth:`restore`; a context made for the request alone may
        instead simply be dropped.
        """
        return self._var.set(SharedIdentity(_seeded(None, anonymous_id)))

    def held(self) -> Optional[Held]:
        """What this context holds, to carry into code that runs outside it (see :meth:`hold`)."""
        return self._var.get(None)

    def hold(self, held: Held) -> Token[Optional[Held]]:
        """Hold what :meth:`held` returned elsewhere, until :meth:`restore` with the token."""
        return self._var.set(held)

    def restore(self, token: Token[Optional[Held]]) -> None:
        self._var.reset(token)
