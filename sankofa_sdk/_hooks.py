"""What the app may do to each operation before it is queued: super properties and ``before_send``.

Both run on the caller's thread, after the call's own checks and before the queue, so what is
queued (in memory or in the spool) is final. A client with neither pays one attribute test per
call. Aliases carry no data of the app's and are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

from ._errors import ValidationError
from ._operations import format_epoch
from ._serialize import Operation
from ._validate import check_event_name, copy_mapping

BeforeSend = Callable[[dict[str, Any]], Optional[dict[str, Any]]]


class Dropped(Exception):
    """``before_send`` returned None: the app dropped the operation on purpose."""


class OperationHooks:
    def __init__(
        self, super_properties: Optional[Mapping[str, Any]], before_send: Optional[BeforeSend]
    ) -> None:
        self._super = dict(super_properties) if super_properties else None
        self._before_send = before_send

    def __bool__(self) -> bool:
        return self._super is not None or self._before_send is not None

    def apply(self, op: Operation) -> Operation:
        """``op`` as it is to be queued. Raises ``Dropped`` when ``before_send`` drops it, and
        ``ValidationError`` (its cause chained) when the hook raises or returns something that
        is not an operation or cannot be read; nothing else (the caller's ``track()`` must not
        raise the app's exceptions)."""
        kind, distinct_id, name, properties, defaults, stamp = op
        if kind == "alias":
            return op
        if kind == "track" and self._super is not None:
            # The call's own properties win over the client-wide ones.
            properties = {**self._super, **properties} if properties else dict(self._super)
        hook = self._before_send
        if hook is None:
            return (kind, distinct_id, name, properties, defaults, stamp)
        given: dict[str, Any] = {
            "type": kind,
            "distinct_id": distinct_id,
            "properties": properties if properties is not None else {},
            "timestamp": format_epoch(stamp),
        }
        if kind == "track":
            given["event_name"] = name
            given["default_properties"] = defaults if defaults is not None else {}
        try:
            changed = hook(given)
        except Exception as exc:
            raise _refused(f"before_send raised {_text(exc)}") from exc
        if changed is None:
            raise Dropped
        try:
            mapping = isinstance(changed, Mapping)
            if mapping:
                properties = copy_mapping(changed.get("properties"), "properties")
                if kind == "track":
                    name = check_event_name(changed.get("event_name"))
                    defaults = copy_mapping(changed.get("default_properties"), "default_properties")
        except ValidationError as exc:
            raise _refused(f"before_send returned {exc}") from exc
        except Exception as exc:  # the app's mapping, its keys or its values raising anything
            raise _refused(f"before_send returned what could not be read: {_text(exc)}") from exc
        if not mapping:
            raise _refused(f"before_send must return a dict or None, not {type(changed).__name__}")
        # The id and the time are the call's: a hook that wants another user calls again.
        return (kind, distinct_id, name, properties, defaults, stamp)


def _refused(message: str) -> ValidationError:
    return ValidationError(message, reason="before_send")


def _text(exc: Exception) -> str:
    """``repr(exc)``, or its type's name when that raises too: never raises."""
    try:
        return repr(exc)
    except Exception:
        return type(exc).__name__
