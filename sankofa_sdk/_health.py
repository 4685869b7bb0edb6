"""``Client.health()``: whether delivery works, from what the client already knows.

No request is made: the answer comes from the last answers the engine gave (``DeliveryObserver``)
and the queue, spool and pacer as they stand (``PipelineState``), so a readiness probe or a
dashboard may ask as often as it likes. Three levels, the worst issue deciding:

- ``failing``: operations are not getting through (engine unreachable, refusing the key or the
  host, quota used up) or will not be taken (the client is shut down);
- ``degraded``: they get through, with a risk (queue or spool nearly full, spool unwritable,
  request budget exhausted for now, a batch refused and being split);
- ``ok``: none of that.
"""

from __future__ import annotations

import datetime
import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from ._answers import Verdict

if TYPE_CHECKING:
    from ._delivery import Worker
    from ._delivery.observe import PipelineState

__all__ = ["QUEUE_THRESHOLD", "Health", "HealthIssue", "HealthStatus"]

QUEUE_THRESHOLD = 0.8
"""Default share of the queue's bound (and of ``max_spool_bytes``) above which health is
degraded: calls are dropped once it is full."""


class HealthStatus(str, enum.Enum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILING = "failing"


_RANK = {HealthStatus.OK: 0, HealthStatus.DEGRADED: 1, HealthStatus.FAILING: 2}


class HealthIssue(NamedTuple):
    """One reason the status is not ``ok``."""

    code: str
    """``engine_unreachable``, ``engine_refuses``, ``quota_exceeded``, ``engine_rejects``,
    ``queue_high``, ``spool_high``, ``spool_unwritable``, ``budget_exhausted`` or ``closed``."""
    status: HealthStatus
    message: str
    since: Optional[float] = None
    """Unix time it began, where known."""


@dataclass(frozen=True)
class Health:
    """What :meth:`Client.health` returns."""

    status: HealthStatus
    issues: tuple[HealthIssue, ...] = ()
    checked_at: float = 0.0
    """Unix time of the check."""

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (``status`` is ``ok``)."""
        return self.status is HealthStatus.OK

    @property
    def level(self) -> int:
        """0 ok, 1 degraded, 2 failing: the number a gauge shows."""
        return _RANK[self.status]

    @property
    def reason(self) -> str:
        """The issues in a sentence ("ok" when there are none)."""
        return "; ".join(issue.message for issue in self.issues) or "ok"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view, as the framework helpers answer it."""
        return {
            "status": self.status.value,
            "issues": [
                {
                    "code": issue.code,
                    "status": issue.status.value,
                    "message": issue.message,
                    "since": _iso(issue.since) if issue.since is not None else None,
                }
                for issue in self.issues
            ],
            "checked_at": _iso(self.checked_at),
        }


def check_health(
    worker: Worker,
    *,
    closed: bool,
    disabled: bool,
    queue_threshold: float = QUEUE_THRESHOLD,
    state: Optional[PipelineState] = None,
) -> Health:
    """The client's health now (see the module's docstring); ``state``: the pipeline as just
    read, if the caller has it."""
    if isinstance(queue_threshold, bool) or not 0 < queue_threshold <= 1:
        raise ValueError(f"queue_threshold must be above 0 and at most 1, not {queue_threshold!r}")
    now = time.time()
    if disabled:
        return Health(HealthStatus.OK, (), now)
    issues: list[HealthIssue] = []
    failing, degraded = HealthStatus.FAILING, HealthStatus.DEGRADED
    if closed:
        issues.append(HealthIssue("closed", failing, "the client is shut down; calls are dropped"))
    engine = worker.observer.engine
    if state is None:
        state = worker.pipeline_state()
    if engine.unreachable_since is not None:
        issues.append(
            HealthIssue(
                "engine_unreachable",
                failing,
                f"engine unreachable since {_iso(engine.unreachable_since)} "
                f"({engine.unreachable_detail}); {state.queued:,} operation(s) waiting",
                engine.unreachable_since,
            )
        )
    if engine.refused_since is not None:
        status = engine.refused_status
        if engine.refused_verdict in (Verdict.REJECTED, Verdict.TOO_LARGE):
            issues.append(
                HealthIssue(
                    "engine_rejects",
                    degraded,
                    f"engine refused a batch (HTTP {status}) at {_iso(engine.refused_since)}; "
                    "the operations it refuses are dropped and reported, the rest delivered",
                    engine.refused_since,
                )
            )
        elif engine.refused_verdict is not Verdict.QUOTA_EXCEEDED:
            issues.append(
                HealthIssue(
                    "engine_refuses",
                    failing,
                    f"engine answers HTTP {status} since {_iso(engine.refused_since)}; "
                    "operations are dropped (check api_key and host)",
                    engine.refused_since,
                )
            )
    quota = engine.refused_since is not None and engine.refused_verdict is Verdict.QUOTA_EXCEEDED
    if quota or state.quota_for > 0:
        issues.append(
            HealthIssue(
                "quota_exceeded",
                failing,
                "the plan's quota is used up; operations are dropped until it renews "
                f"(tried again in {state.quota_for:.0f} s)",
                engine.refused_since,
            )
        )
    elif state.paused_for > 0 and engine.rate_limited_since is not None:
        issues.append(
            HealthIssue(
                "budget_exhausted",
                degraded,
                f"request budget exhausted since {_iso(engine.rate_limited_since)} (HTTP 429); "
                f"sending again in {state.paused_for:.0f} s",
                engine.rate_limited_since,
            )
        )
    if state.queue_utilization >= queue_threshold:
        issues.append(
            HealthIssue(
                "queue_high",
                degraded,
                f"queue at {state.queue_utilization:.0%} of its bound (max_queue_size, "
                "max_queue_bytes); calls are dropped when it is full",
            )
        )
    if state.spool_utilization is not None and state.spool_utilization >= queue_threshold:
        issues.append(
            HealthIssue(
                "spool_high",
                degraded,
                f"spool at {state.spool_utilization:.0%} of max_spool_bytes; calls are "
                "dropped when it is full",
            )
        )
    if state.spool_writable is False:
        issues.append(
            HealthIssue(
                "spool_unwritable",
                degraded,
                "the spool cannot be written; calls are kept in memory only",
            )
        )
    worst = max((issue.status for issue in issues), key=_RANK.__getitem__, default=None)
    return Health(worst or HealthStatus.OK, tuple(issues), now)


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(
        timespec="seconds"
    )
