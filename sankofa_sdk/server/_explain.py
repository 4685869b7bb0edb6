"""Why a request got its answer: operation counts, the reason for a refusal, the refused operation.

The engine's answers are terse (``{"error":"Invalid track payload"}`` names no operation), so
the console reads a refused request's kept body again with the same rules and says which
operation failed and how. Nothing here runs while a request is answered.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, Optional

from .._operations import MAX_REQUEST_BYTES, garbage_id_reason
from . import _gojson, _responses
from ._app import RequestRecord
from ._encoding import decode_body
from ._ingest import NO_PAYLOAD, SINGLE_ROUTES, batch_operations, json_media_type
from ._jsontext import operation_texts, pretty
from ._kept import MAX_KEPT_BYTES, KeptBody
from ._payloads import AmbiguousKeys, InvalidPayload, parse_item
from ._responses import Response
from ._useragent import Device

_DEVICE = Device("Other", "Other", "Other")
_UNDECODABLE_PREFIX = b"\x00"  # what decode_body gives for a body it could not decode

# Refusals whose answer says enough once it is put in words a developer can act on.
_HINTS = {
    (401, "Missing API Key"): "no x-api-key header",
    (403, "Invalid API Key"): "the x-api-key is neither a live nor a test key of any project",
    (403, "Unauthorized Origin"): "the Origin header is not in the project's authorized domains",
    (403, "Unauthorized IP Address"): "the caller's address is not in the project's authorized IPs",
    (405, "Method Not Allowed"): "this route does not take this method",
    (413, "Request Entity Too Large"): (
        f"the body as sent is over the {MAX_REQUEST_BYTES:,}-byte cap; nothing of it was read"
    ),
    (429, "Rate limit exceeded. Please wait a moment."): (
        "over the rate limit for this key; wait for Retry-After"
    ),
    (431, "Request Header Fields Too Large"): "the request line and headers are over 4 KiB",
    (503, "Buffer full"): "the write buffer is full; nothing of this request was queued",
}


class Explanation(NamedTuple):
    counts: Optional[dict[str, int]]
    """operations, events, people, aliases, discarded; None when they cannot be known."""
    reason: Optional[str]
    refused_index: Optional[int] = None
    refused_operation: Optional[str] = None
    """The exact text of the refused operation, indented."""
    body: Optional[str] = None
    """The kept request body as decoded, indented (requests not answered 200 only)."""


def route_kind(path: str) -> Optional[str]:
    """``batch``, ``track``, ``people`` or ``alias`` for an ingestion path, else None."""
    route = path.lower().rstrip("/")
    kind = route.rpartition("/")[2]
    if route == "/api/v1/" + kind and (kind in SINGLE_ROUTES or kind == "batch"):
        return kind
    return None


def _error_text(answer: bytes) -> Optional[str]:
    try:
        value = json.loads(answer)
    except ValueError:
        return None
    error = value.get("error") if isinstance(value, dict) else None
    return error if isinstance(error, str) else None


def _accepted_counts(kind: str, answer: bytes) -> Optional[dict[str, int]]:
    if kind != "batch":
        return {"operations": 1, {"track": "events"}.get(kind, kind): 1}
    try:
        value = json.loads(answer)
        counts = {
            "operations": int(value["operations_received"]),
            "events": int(value["events_received"]),
            "people": int(value["people_received"]),
            "aliases": int(value["aliases_received"]),
        }
    except (ValueError, KeyError, TypeError):
        return None
    counts["discarded"] = counts["operations"] - counts["events"] - counts["people"]
    counts["discarded"] -= counts["aliases"]
    return counts


def explain(record: RequestRecord, kept: Optional[KeptBody]) -> Explanation:
    """Counts and reasons for one logged request (``kept`` is its body, when it was kept)."""
    kind = route_kind(record.path)
    if record.fault:
        status = "reset the connection" if record.status is None else f"answered {record.status}"
        return Explanation(None, f"fault injected on purpose (server.faults): {status}")
    if record.status == 200 and kind is not None:
        return Explanation(_accepted_counts(kind, record.answer), None)
    body = None if kept is None else decode_body(kept.body, kept.content_encoding)
    shown = None if body is None else pretty(body.decode("utf-8", "replace"))
    if kind is not None and record.status in (202, 400) and body is None:
        size = "" if record.status != 400 else f" (over {MAX_KEPT_BYTES:,} bytes or too long ago)"
        return Explanation(None, f"the request body was not kept{size}")
    if kind is not None and body is not None and record.status == 202:
        return _discarded(kind, body)._replace(body=shown)
    if kind is not None and body is not None and record.status == 400:
        assert kept is not None
        found = _refused(kind, body, kept.content_type, kept.content_encoding)
        return found._replace(body=shown)
    error = _error_text(record.answer)
    if record.status == 404:
        return Explanation(None, f"no such route ({error})", body=shown)
    if record.status is not None and error is not None:
        hint = _HINTS.get((record.status, error), error)
        return Explanation(None, hint, body=shown)
    return Explanation(None, None, body=shown)


def _payloads(kind: str, body: bytes, keep_pairs: bool = False) -> list[tuple[str, Any]] | Response:
    """The (type, payload) pairs of a body, or the engine's 400 for its envelope."""
    if kind != "batch":
        try:
            return [(kind, _gojson.decode(body, keep_pairs=keep_pairs))]
        except _gojson.DecodeError:
            return _responses.BAD_REQUEST_TEXT
    try:
        return batch_operations(body, keep_pairs)
    except AmbiguousKeys:
        return batch_operations(body, True)


def _discarded(kind: str, body: bytes) -> Explanation:
    """A 202: every operation was dropped by the garbage-id rule; say why for the first."""
    pairs = _payloads(kind, body)
    if isinstance(pairs, Response):
        return Explanation(None, "discarded by the garbage-id rule")
    reason = "discarded by the garbage-id rule"
    for _, payload in pairs:
        if isinstance(payload, dict):
            distinct_id = payload.get("distinct_id")
            why = garbage_id_reason(distinct_id if isinstance(distinct_id, str) else "")
            if why is not None:
                reason = f"discarded by the garbage-id rule: distinct_id {why}"
                break
    counts = {"operations": len(pairs), "discarded": len(pairs)}
    return Explanation(counts, reason)


def _refused(
    kind: str, body: bytes, content_type: Optional[str], content_encoding: Optional[str]
) -> Explanation:
    """A 400: the first rule the body breaks, in the engine's order of checks."""
    if kind != "batch" and not json_media_type(content_type):
        return Explanation(None, f"Content-Type {content_type!r} is not JSON (…/json)")
    if body.startswith(_UNDECODABLE_PREFIX) and content_encoding:
        return Explanation(None, f"the body could not be decoded as {content_encoding!r}")
    try:
        _gojson.decode(body)
    except _gojson.DecodeError as exc:
        return Explanation(None, f"the body is not JSON the engine reads: {exc}")
    for keep_pairs in (False, True):
        pairs = _payloads(kind, body, keep_pairs)
        if isinstance(pairs, Response):
            return Explanation(None, _envelope_problem(body))
        try:
            return _first_refused(kind, body, pairs)
        except AmbiguousKeys:
            continue  # as the engine does: decode again keeping the keys' document order
    return Explanation(None, None)


def _first_refused(kind: str, body: bytes, pairs: list[tuple[str, Any]]) -> Explanation:
    counts = {"operations": len(pairs)}
    for index, (op_kind, payload) in enumerate(pairs):
        if op_kind not in SINGLE_ROUTES:
            problem: Optional[str] = f"type {op_kind!r} is not track, people or alias"
        elif payload is NO_PAYLOAD:
            problem = "it has no payload"
        else:
            try:
                parse_item(op_kind, payload, _DEVICE, 0, index)
                problem = None
            except InvalidPayload as exc:
                problem = str(exc)
        if problem is None:
            continue
        if kind != "batch":
            return Explanation(counts, f"{kind} payload: {problem}", 0, None)
        texts = operation_texts(body.decode("utf-8", "replace"))
        text = texts[index] if texts is not None and index < len(texts) else None
        return Explanation(
            counts,
            f"operation {index} ({op_kind or 'no type'}): {problem}",
            index,
            None if text is None else pretty(text),
        )
    return Explanation(counts, None)


def _envelope_problem(body: bytes) -> str:
    top = _gojson.decode(body)
    if top is None:
        return "the body is null: no operations"
    if not isinstance(top, dict):
        return 'the body is not an object {"operations": [...]}'
    operations, _ = _gojson.fields(top, frozenset({"operations"}))
    value = operations.get("operations")
    if value is None or value == []:
        return "the batch has no operations"
    if not isinstance(value, list):
        return "operations is not an array"
    for index, element in enumerate(value):
        if element is not None and not isinstance(element, dict):
            return f"operation {index} is not an object"
        if isinstance(element, dict):
            fields, _ = _gojson.fields(element, frozenset({"type"}))
            if fields.get("type") is not None and not isinstance(fields["type"], str):
                return f"operation {index}: type is not a string"
    return "the batch envelope is not valid"
