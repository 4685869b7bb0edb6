"""Where Python apps live: middleware and hooks for web frameworks and workers.

- :mod:`sankofa_sdk.integrations.wsgi`: :class:`SankofaWSGIMiddleware`, any WSGI app.
- :mod:`sankofa_sdk.integrations.asgi`: :class:`SankofaASGIMiddleware`, any ASGI app
  (FastAPI, Starlette: ``app.add_middleware(SankofaASGIMiddleware, client=client)``).
- :mod:`sankofa_sdk.integrations.flask`: the ``Sankofa`` extension (``init_app``).
- :mod:`sankofa_sdk.integrations.django`: ``SankofaMiddleware`` configured by ``settings.SANKOFA``.
- :mod:`sankofa_sdk.integrations.celery`: ``setup_celery(client)``.
- :mod:`sankofa_sdk.integrations.opentelemetry`: ``instrument(client)``, the delivery pipeline's
  metrics on an OpenTelemetry ``MeterProvider``.
- :mod:`sankofa_sdk.integrations.prometheus`: ``SankofaCollector(client)``, the same metrics read
  at each Prometheus scrape.

The two middleware classes use the standard library only and are re-exported here, with
:func:`looks_like_anonymous_id`, their default check of a browser's anonymous id. The framework
modules import their framework when used, not when imported, and raise an ``ImportError`` naming
the missing package; the two metrics modules import their library when imported (nothing here
imports them).
"""

from __future__ import annotations

from ._common import looks_like_anonymous_id
from .asgi import SankofaASGIMiddleware
from .wsgi import SankofaWSGIMiddleware

__all__ = ["SankofaASGIMiddleware", "SankofaWSGIMiddleware", "looks_like_anonymous_id"]
