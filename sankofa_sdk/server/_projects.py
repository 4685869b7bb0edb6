"""Projects, their live and test keys, and the engine's allowlist rules (sections 5 and 6)."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from . import _responses
from ._responses import Response

# The engine replaces loopback and private peers with this address before the IP allowlist.
NORMALIZED_PRIVATE_IP = "143.105.209.117"


def new_key(environment: str) -> str:
    """A key in the engine's format: ``sk_live_``/``sk_test_`` and 32 lowercase hex digits."""
    return f"sk_{environment}_{secrets.token_hex(16)}"


@dataclass
class Project:
    """One project of the reference server, with its two keys and optional allowlists."""

    id: str
    name: str
    api_key: str = field(default_factory=lambda: new_key("live"))
    test_api_key: str = field(default_factory=lambda: new_key("test"))
    authorized_domains: str = ""
    authorized_ips: str = ""

    def __repr__(self) -> str:  # keys stay out of reprs and logs
        return f"Project(id={self.id!r}, name={self.name!r})"


class Scope(NamedTuple):
    """Whose data a request reads or writes: a project and one of its environments."""

    project: Project
    environment: str


def normalize_ip(peer: str) -> str:
    if peer in ("127.0.0.1", "::1") or peer.startswith(("192.168.", "10.", "172.")):
        return NORMALIZED_PRIVATE_IP
    return peer


def _listed(allowlist: str, value: str) -> bool:
    return any(entry.strip() == value for entry in allowlist.split(","))


class Projects:
    """The key table: exact-match lookup of live keys first, then test keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: dict[str, Project] = {}

    def add(self, project: Project) -> Project:
        with self._lock:
            for other in self._projects.values():
                taken = {other.api_key, other.test_api_key}
                if project.api_key in taken or project.test_api_key in taken:
                    raise ValueError("an API key may belong to one project only")
            if project.api_key == project.test_api_key:
                raise ValueError("the live and test keys must differ")
            self._projects[project.id] = project
        return project

    def get(self, project_id: str) -> Optional[Project]:
        return self._projects.get(project_id)

    def all(self) -> list[Project]:
        return list(self._projects.values())

    def authenticate(self, api_key: Optional[str]) -> Scope | Response:
        """The project and environment of a key, or the engine's 401/403."""
        if not api_key:
            return _responses.MISSING_KEY
        projects = list(self._projects.values())
        for project in projects:
            if project.api_key == api_key:
                return Scope(project, "live")
        for project in projects:
            if project.test_api_key == api_key:
                return Scope(project, "test")
        return _responses.INVALID_KEY

    @staticmethod
    def check_allowlists(project: Project, origin: Optional[str], peer: str) -> Optional[Response]:
        """The engine's Origin/IP allowlist rule; ``None`` when the request may pass."""
        if origin:
            if project.authorized_domains and not _listed(project.authorized_domains, origin):
                return _responses.UNAUTHORIZED_ORIGIN
            return None  # an Origin header bypasses the IP allowlist
        if project.authorized_ips and not _listed(project.authorized_ips, normalize_ip(peer)):
            return _responses.UNAUTHORIZED_IP
        return None
