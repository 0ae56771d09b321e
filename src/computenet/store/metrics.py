"""The reads behind ``GET /metrics`` (server/metrics.py): aggregates, no ORM objects.

Each is one query over the store at scrape time; JSON columns are read as text
(cast, so PostgreSQL's ``json`` groups too) and each distinct text decoded once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, Text, and_, exists, func, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session, aliased

from computenet.model import JobState
from computenet.model.job import TERMINAL_STATES
from computenet.store.schema import ChargeRow, JobEventRow, JobRow

JOBS = cast(Table, JobRow.__table__)
EVENTS = cast(Table, JobEventRow.__table__)
CHARGES = cast(Table, ChargeRow.__table__)

# A center has taken the job: the end of its admission wait.
STARTED = (JobState.STAGING.value, JobState.RUNNING.value)


class Waiting(NamedTuple):
    """Jobs waiting, grouped: state (PENDING or SCHEDULED), center, class, reasons."""

    state: str
    center: str | None
    workload_class: str
    reasons: tuple[str, ...]
    jobs: int


def waiting(s: Session) -> list[Waiting]:
    """PENDING (not cancelled) and SCHEDULED jobs counted by center, class and reasons."""
    reasons = sql_cast(JOBS.c.reasons, Text)
    q = (
        select(JOBS.c.state, JOBS.c.center, JOBS.c.workload_class, reasons, func.count())
        .where(
            JOBS.c.state.in_([JobState.PENDING.value, JobState.SCHEDULED.value]),
            JOBS.c.cancel_requested.is_(False),
        )
        .group_by(JOBS.c.state, JOBS.c.center, JOBS.c.workload_class, reasons)
    )
    decoded: dict[str | None, tuple[str, ...]] = {}
    out = []
    for state, center, klass, text, n in s.execute(q):
        if text not in decoded:
            decoded[text] = tuple(json.loads(text) or ()) if text else ()
        out.append(Waiting(str(state), center, str(klass), decoded[text], int(n)))
    return out


def jobs_entered(s: Session) -> dict[str, int]:
    """{state: jobs that ever entered it} from the timeline (a requeued job counts once)."""
    q = (
        select(EVENTS.c.state, func.count(func.distinct(EVENTS.c.job_id)))
        .where(EVENTS.c.state.is_not(None))
        .group_by(EVENTS.c.state)
    )
    return {str(state): int(n) for state, n in s.execute(q)}


class Start(NamedTuple):
    """A job's first start at a center (its first STAGING or RUNNING event)."""

    event_id: int
    submitted_at: datetime
    started_at: datetime


def first_starts(s: Session, after_event: int, limit: int = 10_000) -> list[Start]:
    """First starts recorded in events with id > `after_event`, in event order (a page)."""
    earlier = aliased(JobEventRow)
    q = (
        select(JobEventRow.id, JobRow.submitted_at, JobEventRow.at)
        .join(JobRow, JobRow.id == JobEventRow.job_id)
        .where(
            JobEventRow.id > after_event,
            JobEventRow.state.in_(STARTED),
            ~exists().where(
                and_(
                    earlier.job_id == JobEventRow.job_id,
                    earlier.state.in_(STARTED),
                    earlier.id < JobEventRow.id,
                )
            ),
        )
        .order_by(JobEventRow.id)
        .limit(limit)
    )
    return [Start(int(i), sub, at) for i, sub, at in s.execute(q)]


def billed_by_tenant(s: Session) -> dict[str, Decimal]:
    """{tenant: ¥ charged, all periods}, exact (money is stored as text: summed here)."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for tenant, total in s.execute(select(ChargeRow.tenant_id, ChargeRow.total_cny)):
        out[str(tenant)] += total
    return dict(out)


def finished_usage(s: Session) -> Iterator[tuple[str, dict[str, Any]]]:
    """(center, usage report) of every finished job that reported usage."""
    q = select(JOBS.c.center, sql_cast(JOBS.c.usage, Text)).where(
        JOBS.c.state.in_([x.value for x in TERMINAL_STATES]), JOBS.c.center.is_not(None)
    )
    for center, text in s.execute(q):
        if text and text not in ("{}", "null"):
            usage = json.loads(text)
            if usage:
                yield str(center), usage
