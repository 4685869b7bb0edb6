"""Calls become the JSON the engine gets: in chunks, on the delivery thread.

An operation that cannot be sent (its JSON alone is over the engine's request limit, or the
encoder raises on it) is reported here, counted as failed, and takes its place in the order
without being queued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Optional

from .._errors import DeliveryError
from .._log import ThrottledWarning, logger
from .._operations import MAX_REQUEST_BYTES
from .._queue import Backlog
from .._serialize import (
    Operation,
    Reported,
    batch_body,
    encode_operation,
    encode_operations,
)

ENVELOPE = batch_body([])
MAX_OPERATION_BYTES = MAX_REQUEST_BYTES - len(ENVELOPE) - 64
"""A single operation whose JSON is larger than this cannot be sent, even alone."""

Fail = Callable[[list[Reported], DeliveryError], None]


class OperationEncoder:
    def __init__(self, lib_version: str, debug: bool, fail: Fail) -> None:
        self._lib_version = lib_version
        self._debug = debug
        self._fail = fail
        self._warnings = ThrottledWarning()

    def debugging(self) -> bool:
        return self._debug and logger.isEnabledFor(logging.DEBUG)

    def encode_into(self, backlog: Backlog, ops: list[Operation], called_at: float = 0.0) -> None:
        """Encode ``ops`` together (their insert ids made at once) and queue them in order;
        ``called_at`` is the Unix time of the first one's call (see ``Encoded.called_at``)."""
        if not ops:
            return
        try:
            encoded, cut = encode_operations(ops, self._lib_version)
        except Exception:  # an operation the client should not have queued: find it alone
            for op in ops:
                data = self.encode(op)
                if data is None:
                    backlog.skip_seq()
                else:
                    backlog.add(data, None, called_at)
            return
        if not cut and max(map(len, encoded)) <= MAX_OPERATION_BYTES and not self.debugging():
            backlog.add_many(encoded, called_at)  # the common case, without a look at each
            return
        for index, data in enumerate(encoded):
            if self.checked(ops[index], data, cut.get(index)) is None:
                backlog.skip_seq()
            else:
                backlog.add(data, None, called_at)

    def encode(self, op: Operation, insert_id: Optional[str] = None) -> Optional[bytes]:
        """One operation's JSON; None (reported) when it cannot be sent."""
        try:
            data, problems = encode_operation(op, self._lib_version, insert_id)
        except Exception as exc:
            # Accepted, so not "invalid" (a refusal at the call): counted as failed.
            self._fail(
                [op], DeliveryError(f"could not encode operation: {exc!r}", reason="unencodable")
            )
            return None
        return self.checked(op, data, problems)

    def checked(self, op: Operation, data: bytes, problems: Optional[list[str]]) -> Optional[bytes]:
        """``data`` if it can be sent; None (reported) when it is too large even alone."""
        if problems:
            self._warnings.warn(
                "cut:" + op[0],
                "%s %r: some values were cut: %s",
                op[0],
                op[2],
                "; ".join(problems),
            )
        if len(data) > MAX_OPERATION_BYTES:
            message = (
                f"operation is {len(data)} bytes of JSON; the engine takes at most "
                f"{MAX_REQUEST_BYTES} per request"
            )
            self._fail([op], DeliveryError(message, reason="too_large"))
            return None
        if self.debugging():
            logger.debug("queued %s", data.decode("utf-8", "replace"))
        return data
