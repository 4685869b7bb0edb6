"""What the engine's handlers decide about a body, before anything is queued (sections 3, 7, 9, 11).

These functions know nothing of HTTP or storage: they take the route, the Content-Type and the
body, and return either the final answer (400, 202) or the items to queue together with the
answer to give once they are queued.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from . import _gojson, _responses
from ._payloads import Alias, AmbiguousKeys, Event, InvalidPayload, Item, Profile, parse_item
from ._responses import Response
from ._useragent import Device

SINGLE_ROUTES = {"track": "track", "people": "people", "alias": "alias"}


class Plan(NamedTuple):
    """Items to queue, in the order they are applied, and the answer once they are queued."""

    items: list[Item]
    response: Response
    discarded: int
    operations: int


def json_media_type(content_type: Optional[str]) -> bool:
    """Fiber's single-route rule: the lower-cased media type, parameters cut, ends in ``json``."""
    if not content_type:
        return False
    return content_type.lower().split(";", 1)[0].endswith("json")


def plan_single(
    kind: str,
    content_type: Optional[str],
    body: bytes,
    device: Device,
    received_us: int,
    full: bool = False,
) -> Plan | Response:
    if not json_media_type(content_type):
        return _responses.BAD_REQUEST_TEXT
    for keep_pairs in (False, True):
        try:
            payload = _gojson.decode(body, keep_pairs=keep_pairs)
            item = parse_item(kind, payload, device, received_us, 0, full)
        except (_gojson.DecodeError, InvalidPayload):
            return _responses.BAD_REQUEST_TEXT
        except AmbiguousKeys:
            continue
        if item is None:
            return Plan([], _responses.DISCARDED, 1, 1)
        return Plan([item], _responses.OK_TEXT, 0, 1)
    raise AssertionError("keys are unambiguous once decoded in document order")


_BATCH_FIELDS = frozenset({"operations"})
_OPERATION_FIELDS = frozenset({"type", "payload"})
NO_PAYLOAD = object()


def batch_operations(body: bytes, keep_pairs: bool) -> list[tuple[str, Any]] | Response:
    """The (type, payload) pairs of a batch body, or the batch-level 400."""
    try:
        top = _gojson.decode(body, keep_pairs=keep_pairs)
    except _gojson.DecodeError:
        return _responses.INVALID_BATCH
    if top is None:
        return _responses.NO_OPERATIONS
    if not isinstance(top, dict):
        return _responses.INVALID_BATCH
    found, ambiguous = _gojson.fields(top, _BATCH_FIELDS)
    if ambiguous:
        raise AmbiguousKeys
    operations = found.get("operations")
    if operations is None:
        return _responses.NO_OPERATIONS
    if not isinstance(operations, list):
        return _responses.INVALID_BATCH
    if not operations:
        return _responses.NO_OPERATIONS
    pairs: list[tuple[str, Any]] = []
    # Go decodes the whole envelope before looking at any operation, so a shape error
    # anywhere wins over an unsupported type earlier in the array.
    for element in operations:
        if element is None:
            pairs.append(("", NO_PAYLOAD))
            continue
        if not isinstance(element, dict):
            return _responses.INVALID_BATCH
        op, ambiguous = _gojson.fields(element, _OPERATION_FIELDS)
        if ambiguous:
            raise AmbiguousKeys
        kind = op.get("type")
        if kind is not None and not isinstance(kind, str):
            return _responses.INVALID_BATCH
        pairs.append((kind or "", op.get("payload", NO_PAYLOAD)))
    return pairs


def plan_batch(
    body: bytes, device: Device, received_us: int, scope_info: dict[str, str], full: bool = False
) -> Plan | Response:
    """Validate a batch in array order; the first failure rejects all of it (section 9)."""
    for keep_pairs in (False, True):
        try:
            return _plan_batch(body, device, received_us, scope_info, keep_pairs, full)
        except AmbiguousKeys:
            continue
    raise AssertionError("keys are unambiguous once decoded in document order")


def _plan_batch(
    body: bytes,
    device: Device,
    received_us: int,
    scope_info: dict[str, str],
    keep_pairs: bool,
    full: bool,
) -> Plan | Response:
    operations = batch_operations(body, keep_pairs)
    if isinstance(operations, Response):
        return operations
    aliases: list[Item] = []
    people: list[Item] = []
    events: list[Item] = []
    discarded = 0
    for index, (kind, payload) in enumerate(operations):
        if kind not in SINGLE_ROUTES:
            return _responses.unsupported_type(kind)
        if payload is NO_PAYLOAD:
            return _responses.INVALID_PAYLOAD[kind]
        try:
            item = parse_item(kind, payload, device, received_us, index, full)
        except InvalidPayload:
            return _responses.INVALID_PAYLOAD[kind]
        if item is None:
            discarded += 1
        elif isinstance(item, Event):
            events.append(item)
        elif isinstance(item, Profile):
            people.append(item)
        else:
            assert isinstance(item, Alias)
            aliases.append(item)
    if not (aliases or people or events):
        return Plan([], _responses.DISCARDED_ALL, discarded, len(operations))
    response = _responses.batch_accepted(
        aliases=len(aliases),
        environment=scope_info["environment"],
        events=len(events),
        operations=len(operations),
        people=len(people),
        project_id=scope_info["project_id"],
        project_name=scope_info["project_name"],
    )
    # Queued like the engine: all aliases, then all profiles, then all events.
    return Plan(aliases + people + events, response, discarded, len(operations))


READABLE_FORMATS = frozenset({1, 2})
"""Stored formats whose bodies this code decodes (see ``_store.STORE_FORMAT``); both read with
today's rules, which are theirs. When the rules change, the new ones get a new format and the
bodies of older formats keep being read with the rules they were accepted under."""


def rebuild_events(
    route: str, body: bytes, device: Device, received_us: int, stored_format: int
) -> dict[int, Event]:
    """The events of a stored request with their property maps, by position in the request.

    The store keeps accepted bodies as they came; decoding them again with the rules of the
    format they were stored in, the User-Agent parse and receive time stored with them gives
    back exactly what was accepted.
    """
    if stored_format not in READABLE_FORMATS:
        raise ValueError(f"stored format {stored_format} is not one this server reads")
    info = {"environment": "", "project_id": "", "project_name": ""}
    if route == "batch":
        plan = plan_batch(body, device, received_us, info, full=True)
    else:
        plan = plan_single(route, "application/json", body, device, received_us, full=True)
    if not isinstance(plan, Plan):
        return {}
    return {item.position: item for item in plan.items if isinstance(item, Event)}
