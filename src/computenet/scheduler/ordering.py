"""The one order in which a cycle looks at jobs, and what makes two jobs look alike.

Server, simulator and every strategy sort pending jobs with `order_key`:
priority first (higher first; a tenant's ceiling caps it at submit), then the
fair-share tag (smaller first), then deadline (sooner first; a job without
one comes after every job with one), then submit time, then id.

Fair share (`with_shares`): among tenants, weighted fair queueing over CU·h.
A job's tag is its tenant's decayed usage (`scheduler/tenancy.py`) plus the
CU·h of the tenant's jobs ahead of it in this cycle, divided by the tenant's
weight; so under contention tenants receive CU·h in proportion to their
weights, an idle tenant's share goes to the busy ones (nobody waits for it),
and a tenant that returns with little recent usage has the smallest tags:
its jobs come first at the next cycle, without preempting anything running.
With one tenant pending every tag is 0 and the order is as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

# DEFAULT_PATIENCE_H, the other half of the no-deadline rule (how long such a job may
# be held for cheaper power), lives with the snapshot that carries it.
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H, JobRequest
from computenet.scheduler.tenancy import TenantUse

__all__ = [
    "DEFAULT_PATIENCE_H",
    "NO_DEADLINE",
    "StandingKey",
    "deadline_or_far",
    "order_key",
    "share_tags",
    "signature",
    "standing_key",
    "with_shares",
]

# The one "no deadline" rule: a job without a deadline is treated as due this far
# ahead — after every real deadline (bounded by limits.MAX_AHEAD), and still a datetime.
NO_DEADLINE = timedelta(days=36500)


def deadline_or_far(job: JobRequest, now: datetime) -> datetime:
    """The job's deadline, or `now + NO_DEADLINE` when it has none."""
    return job.deadline if job.deadline is not None else now + NO_DEADLINE


def order_key(job: JobRequest, now: datetime) -> tuple[int, float, datetime, datetime, str]:
    """Sort key of `job` in a cycle at `now` (smaller first)."""
    return (
        -job.priority,
        job.share,
        deadline_or_far(job, now),
        job.submitted_at or now,
        job.id,
    )


def share_tags(jobs: Sequence[JobRequest], tenants: Mapping[str, TenantUse]) -> list[float]:
    """Each job's fair-share tag (see the module's docstring); all 0 with one tenant.

    A tenant missing from `tenants` has no usage and weight 1.
    """
    if len({j.tenant for j in jobs}) < 2:
        return [0.0] * len(jobs)
    base = sorted(
        range(len(jobs)),
        key=lambda k: (
            -jobs[k].priority,
            jobs[k].deadline is None,
            jobs[k].deadline or _NO_DATE,
            jobs[k].submitted_at or _NO_DATE,
            jobs[k].id,
        ),
    )
    ahead: dict[str, float] = {}
    tags = [0.0] * len(jobs)
    for k in base:
        job = jobs[k]
        use = tenants.get(job.tenant)
        weight = use.weight if use is not None and use.weight > 0 else 1.0
        usage = use.usage if use is not None else 0.0
        before = ahead.get(job.tenant, 0.0)
        tags[k] = (usage + before) / weight
        ahead[job.tenant] = before + job.cu_hours
    return tags


def with_shares(jobs: Sequence[JobRequest], tenants: Mapping[str, TenantUse]) -> list[JobRequest]:
    """`jobs` with their fair-share tags set (the same objects where the tag is unchanged)."""
    tags = share_tags(jobs, tenants)
    return [
        j if j.share == t else dataclasses.replace(j, share=t)
        for j, t in zip(jobs, tags, strict=True)
    ]


# Stands for "no deadline" in `standing_key`, where the flag before it already orders.
_NO_DATE = datetime.min.replace(tzinfo=UTC)


# The type of `standing_key`'s result (the simulator's backlog heap holds it).
StandingKey = tuple[int, float, bool, datetime, datetime, str]


def standing_key(job: JobRequest) -> StandingKey:
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
    return (-job.priority, job.share, job.deadline is None, deadline, job.submitted_at, job.id)


# Every JobRequest field but the three that only order jobs or name them.
_SIGNATURE_FIELDS = tuple(
    f.name for f in dataclasses.fields(JobRequest) if f.name not in ("id", "submitted_at", "share")
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
