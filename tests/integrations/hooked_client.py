"""A client with the ``Client.track`` hook that request properties need (see the integrations).

Until ``Client`` has it, tests of the integrations' side use this subclass: ``track`` merges
the request's properties, read from ``_request_properties``, under the caller's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Optional

from sankofa_sdk import Client


class HookedClient(Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_properties: ContextVar[Optional[Mapping[str, str]]] = ContextVar(
            "sankofa_request_properties", default=None
        )

    def track(
        self,
        event_name: str,
        properties: Optional[Mapping[str, Any]] = None,
        *,
        default_properties: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        extra = self._request_properties.get()
        if extra is not None:
            merged = {k: v for k, v in extra.items() if properties is None or k not in properties}
            merged.update(default_properties or {})
            default_properties = merged
        super().track(event_name, properties, default_properties=default_properties, **kwargs)
