"""The bundled reference server: the Sankofa engine's ingestion API on loopback.

``ReferenceServer`` answers ``/api/v1/track``, ``/people``, ``/alias``, ``/batch`` and ``/health``
like the engine (the wire contract in the project's spec), stores what it accepts in an embedded
SQLite People store, and adds a read API, a way to wait for writes and fault injection so that
tests can check what arrived, and a browser console (``ReferenceServer.console_url``) to watch
it happen. Standard library only.

Run it from a shell with ``sankofa-server`` or ``python -m sankofa_sdk.server``; use it from
pytest through the ``sankofa_server`` and ``sankofa_client`` fixtures.

Known divergences from the engine (besides decisions D1-D4 of the spec):

* Request framing follows RFC 9112 where fasthttp v1.51.0 is lenient: two Content-Length
  headers, Content-Length with Transfer-Encoding, a transfer coding other than ``chunked``, and a
  chunk-size line that is not hex digits followed by whitespace, an extension or CRLF (``0_0``,
  ``0x0``) are 400 and close, with messages of the server's own; fasthttp reads such requests.
  Where fasthttp refuses too, its error text is used; for a bad header it quotes its read buffer,
  which here is the request head only (fasthttp's may hold part of the body too).
* The decoded size of a compressed body is capped at 512 MiB in total (400 beyond); the engine
  has no cap.
* Dashboard reads (``GET /api/v1/people`` and ``/people/...``) answer the engine's 401s, but no
  token is valid: the server has no dashboard users. Other dashboard routes are 404 here.
* ``$os``/``$browser``/``$device_model`` come from uap-core, as in the engine, with the ``ua``
  extra installed (``pip install "sankofa-sdk[ua]"``); without it from a small stand-in for
  uap-core's parser (common browsers, HTTP libraries, headless Chrome), which answers ``Other``
  where uap-core may know better (Android device models, for one).
"""

from ._app import RequestRecord
from ._faults import Faults
from ._projects import Project
from ._server import ReferenceServer

__all__ = ["Faults", "Project", "ReferenceServer", "RequestRecord"]
