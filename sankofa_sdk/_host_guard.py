"""The host guard: a test runner's say over which hosts new clients may send to.

A test suite whose app reads its production settings would send real data from every test run.
While a guard is set (the pytest plugin sets one for the length of a run), each client made
with the HTTP transport asks it once, at construction, whether it may send to its host; a
client it refuses accepts calls and sends nothing, as with ``send=False``. Clients made before
the guard was set, or with a ``transport`` of their own, are not asked.
"""

from __future__ import annotations

from typing import Callable, Optional

from ._log import logger

HostGuard = Callable[[str], bool]
"""``guard(host) -> bool``: may a client made now send to ``host`` (its base URL, as
``Client.host`` has it)? The guard says why it refused, if it wants to."""

_guard: Optional[HostGuard] = None


def set_host_guard(guard: Optional[HostGuard]) -> Optional[HostGuard]:
    """Make ``guard`` decide for clients made from now on (None: every host is allowed);
    returns the guard it replaces, for the caller to put back when it is done."""
    global _guard
    previous, _guard = _guard, guard
    return previous


def may_send_to(host: str) -> bool:
    """What the guard says about ``host`` (True while none is set; a guard that raises
    refuses: it is there to keep data in)."""
    guard = _guard
    if guard is None:
        return True
    try:
        return bool(guard(host))
    except Exception:
        logger.exception("the host guard raised; the client will send nothing")
        return False
