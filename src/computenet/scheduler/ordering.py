"""The one order in which a cycle looks at jobs, and what makes two jobs look alike.

Server, simulator and every strategy sort pending jobs with `order_key`:
priority first (higher first), then deadline (sooner first; a job without
one comes after every job with one), then submit time, then id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

# DEFAULT_PATIENCE_H, the other half of the no-deadline rule (how long such a job may
# be held for cheaper power), lives with the snapshot that carries it.
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H, JobRequest

__all__ = [
    "DEFAULT_PATIENCE_H",
    "NO_DEADLINE",
    "deadline_or_far",
    "order_key",
    "signature",
    "standing_key",
]

# The one "no deadline" rule: a job without a deadline is treated as due this far
# ahead — after every real deadline (bounded by limits.MAX_AHEAD), and still a datetime.
NO_DEADLINE = timedelta(days=36500)


def deadline_or_far(job: JobRequest, now: datetime) -> datetime:
    """The job's deadline, or `now + NO_DEADLINE` when it has none."""
    return job.deadline if job.deadline is not None else now + NO_DEADLINE


def order_key(job: JobRequest, now: datetime) -> tuple[int, datetime, datetime, str]:
    """Sort key of `job` in a cycle at `now` (smaller first)."""
    return (-job.priority, deadline_or_far(job, now), job.submitted_at or now, job.id)


# Stands for "no deadline" in `standing_key`, where the flag before it already orders.
_NO_DATE = datetime.min.replace(tzinfo=UTC)


def standing_key(job: JobRequest) -> tuple[int, bool, datetime, datetime, str]:
    """`order_key` without the clock, for a job with a submit time: the same order.

    No real deadline is `NO_DEADLINE` away, so a job without one sorts after
    every job with one whatever `now` is, and among themselves by submit time:
    a job's place in the order never moves with the clock. A queue that lives
    across cycles (the simulator's backlog) keeps its jobs in this order once
    instead of sorting them every cycle. A test holds the two orders equal.
    """
    if job.submitted_at is None:
        raise ValueError(f"job {job.id} has no submit time: order it with order_key")
    deadline = job.deadline if job.deadline is not None else _NO_DATE
    return (-job.priority, job.deadline is None, deadline, job.submitted_at, job.id)


# Every JobRequest field but the two that only order jobs or name them.
_SIGNATURE_FIELDS = tuple(
    f.name for f in dataclasses.fields(JobRequest) if f.name not in ("id", "submitted_at")
)


def _hashable(v: object) -> Hashable:
    if isinstance(v, tuple | list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, BaseModel):
        return repr(v)
    return v


def signature(job: JobRequest) -> Hashable:
    """What evaluating `job` depends on besides the snapshot and capacity (look-alikes share it)."""
    sig = tuple(getattr(job, name) for name in _SIGNATURE_FIELDS)
    try:
        hash(sig)
    except TypeError:  # e.g. input datasets (pydantic models)
        return tuple(_hashable(v) for v in sig)
    return sig
