"""The bundled reference server: the Sankofa engine's ingestion API on loopback.

``ReferenceServer`` answers ``/api/v1/track``, ``/people``, ``/alias``, ``/batch`` and ``/health``
like the engine (the wire contract in the project's spec), stores what it accepts in an embedded
SQLite People store, and adds a read API, a way to wait for writes and fault injection so that
tests can check what arrived, and a browser console (``ReferenceServer.console_url``) to watch
it happen. Standard library only.

Run it from a shell with ``sankofa-server`` or ``python -m sankofa_sdk.server``; use it from
pytest through the ``sankofa_server`` and ``sankofa_client`` fixtures.
"""

from ._app import RequestRecord
from ._faults import Faults
from ._projects import Project
from ._server import ReferenceServer

__all__ = ["Faults", "Project", "ReferenceServer", "RequestRecord"]
