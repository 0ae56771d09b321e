"""Jobs: insert (idempotent), state changes with events, leases, logs.

Every state change goes through `transition`, which checks the state
machine and writes a `job_events` row in the same transaction.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import String, Table, func, insert, select, type_coerce, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from computenet.model import JobState, check_transition
from computenet.store.schema import JobEventRow, JobLogRow, JobRow

JOBS = cast(Table, JobRow.__table__)
EVENTS = cast(Table, JobEventRow.__table__)
ACTIVE_STATES = (JobState.SCHEDULED, JobState.STAGING, JobState.RUNNING)
HELD_STATES = ACTIVE_STATES


def find_by_key(s: Session, tenant: str, key: str) -> JobRow | None:
    """The tenant's job submitted with idempotency key `key`."""
    return s.scalar(select(JobRow).where(JobRow.tenant_id == tenant, JobRow.idempotency_key == key))


def insert_job(s: Session, row: JobRow, message: str = "submitted") -> tuple[JobRow, bool]:
    """Insert a new job with its first event; (existing job, False) when the key was seen.

    `row` stays a plain (unattached) object: the insert is one Core statement,
    which keeps submission cheap.
    """
    if row.idempotency_key:
        seen = find_by_key(s, row.tenant_id, row.idempotency_key)
        if seen is not None:
            return seen, False
    # A column left unset on `row` takes its default (a row built before the column was).
    values = {
        c.key: v
        for c in JOBS.columns
        if (v := getattr(row, c.key)) is not None or c.default is None
    }
    # On SQLite the write transaction is exclusive, so the lookup above settles races.
    if row.idempotency_key and s.get_bind().dialect.name != "sqlite":
        try:
            with s.begin_nested():
                s.execute(insert(JOBS), values)
        except IntegrityError:
            # A concurrent submit with the same key won the race.
            seen = find_by_key(s, row.tenant_id, row.idempotency_key)
            if seen is None:
                raise
            return seen, False
    else:
        s.execute(insert(JOBS), values)
    s.execute(
        insert(EVENTS),
        {
            "job_id": row.id,
            "at": row.submitted_at,
            "state": row.state,
            "message": message,
            "center": None,
        },
    )
    return row, True


def _keyed(s: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], JobRow]:
    """{(tenant, idempotency key): job} for the given pairs that have a job."""
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for tenant, key in keys:
        by_tenant[tenant].append(key)
    out: dict[tuple[str, str], JobRow] = {}
    for tenant, wanted in by_tenant.items():
        for start in range(0, len(wanted), 500):
            q = select(JobRow).where(
                JobRow.tenant_id == tenant, JobRow.idempotency_key.in_(wanted[start : start + 500])
            )
            out.update({(tenant, str(j.idempotency_key)): j for j in s.scalars(q)})
    return out


def insert_jobs(s: Session, jobs: Sequence[tuple[dict[str, Any], str]]) -> list[JobRow | None]:
    """Insert many new jobs, each with its first event, in the caller's transaction.

    `jobs` holds (column values, first event message) pairs. For each job the
    answer is None when it was inserted, or the tenant's job that already has
    its idempotency key (also when an earlier job of the same batch has it).

    On SQLite the statements are few and fixed per batch, not per job: one
    multi-row insert into jobs that skips taken keys (``ON CONFLICT DO
    NOTHING``; the write transaction is exclusive, so no other writer can
    take a key meanwhile), one into job_events, and a lookup of the batch's
    keys only when the insert skipped some. Elsewhere each job is inserted
    under a savepoint, so that a concurrent writer that took the key first
    is answered with its job.
    """
    out: list[JobRow | None] = [None] * len(jobs)
    first: dict[tuple[str, str], int] = {}
    repeats: list[int] = []
    fresh: list[int] = []
    for i, (values, _msg) in enumerate(jobs):
        key = values.get("idempotency_key")
        if key:
            pair = (str(values["tenant_id"]), str(key))
            if pair in first:
                repeats.append(i)
                continue
            first[pair] = i
        fresh.append(i)
    if s.get_bind().dialect.name == "sqlite":
        fresh = _insert_skipping_taken_keys(s, jobs, fresh, first, out)
    else:
        fresh = _insert_one_by_one(s, jobs, fresh, first, out)
    if fresh:
        s.execute(
            insert(EVENTS),
            [
                {
                    "job_id": jobs[i][0]["id"],
                    "at": jobs[i][0]["submitted_at"],
                    "state": jobs[i][0]["state"],
                    "message": jobs[i][1],
                    "center": None,
                }
                for i in fresh
            ],
        )
    for i in repeats:
        values = jobs[i][0]
        out[i] = find_by_key(s, values["tenant_id"], values["idempotency_key"])
    return out


def _insert_skipping_taken_keys(
    s: Session,
    jobs: Sequence[tuple[dict[str, Any], str]],
    fresh: list[int],
    first: dict[tuple[str, str], int],
    out: list[JobRow | None],
) -> list[int]:
    """SQLite: insert `fresh` in one statement; jobs whose key was taken get `out` set."""
    if not fresh:
        return fresh
    stmt = sqlite_insert(JOBS).on_conflict_do_nothing(
        index_elements=["tenant_id", "idempotency_key"]
    )
    res = s.execute(stmt, [jobs[i][0] for i in fresh])
    if int(getattr(res, "rowcount", -1)) == len(fresh):
        return fresh
    # Some keys were taken before this batch: answer those with the job that has the key.
    taken = set()
    for pair, row in _keyed(s, first).items():
        i = first[pair]
        if row.id != jobs[i][0]["id"]:
            out[i] = row
            taken.add(i)
    return [i for i in fresh if i not in taken]


def _insert_one_by_one(
    s: Session,
    jobs: Sequence[tuple[dict[str, Any], str]],
    fresh: list[int],
    first: dict[tuple[str, str], int],
    out: list[JobRow | None],
) -> list[int]:
    """Other databases: skip keys already taken, then insert each job under a savepoint."""
    if first:
        for pair, row in _keyed(s, first).items():
            out[first[pair]] = row
    kept = []
    for i in fresh:
        if out[i] is not None:
            continue
        values = jobs[i][0]
        try:
            with s.begin_nested():
                s.execute(insert(JOBS), values)
            kept.append(i)
        except IntegrityError:
            # A concurrent submit with the same key won the race.
            seen = find_by_key(s, values["tenant_id"], values.get("idempotency_key") or "")
            if seen is None:
                raise
            out[i] = seen
    return kept


def get_job(
    s: Session, job_id: str, *, tenant: str | None = None, for_update: bool = False
) -> JobRow | None:
    """The job `job_id`, only if it belongs to `tenant` (any tenant when None)."""
    q = select(JobRow).where(JobRow.id == job_id)
    if tenant is not None:
        q = q.where(JobRow.tenant_id == tenant)
    if for_update:
        q = q.with_for_update()
    return s.scalar(q)


def get_jobs(s: Session, ids: Sequence[str], *, for_update: bool = False) -> dict[str, JobRow]:
    """Jobs by id (missing ids are left out)."""
    if not ids:
        return {}
    # A fixed order keeps row locks from deadlocking on PostgreSQL.
    q = select(JobRow).where(JobRow.id.in_(list(ids))).order_by(JobRow.id)
    if for_update:
        q = q.with_for_update()
    return {j.id: j for j in s.scalars(q)}


def list_jobs(
    s: Session,
    *,
    tenant: str | None = None,
    states: Iterable[str] | None = None,
    limit: int = 100,
) -> list[JobRow]:
    """Newest jobs first, filtered by tenant and states."""
    q = select(JobRow).order_by(JobRow.submitted_at.desc(), JobRow.id.desc()).limit(limit)
    if tenant is not None:
        q = q.where(JobRow.tenant_id == tenant)
    if states is not None:
        q = q.where(JobRow.state.in_([str(x) for x in states]))
    return list(s.scalars(q))


class PendingHead(NamedTuple):
    """The few columns of a PENDING job a scheduling cycle reads (a tuple: cheap to make)."""

    id: str
    tenant_id: str
    submitted_at: datetime
    avoid_centers: tuple[str, ...]
    reasons: tuple[str, ...]
    # A preempted job's resume point (`JobRow.work_left`, `resume_center`, `resume_chip`).
    work_left: float | None = None
    resume_center: str | None = None
    resume_chip: str | None = None
    stopped_at: datetime | None = None


def pending_keys(s: Session) -> list[tuple[str, str]]:
    """(id, centers to avoid as stored JSON text) of every PENDING, not-cancelled job.

    The cheapest look at the pending set, read every cycle: no ORM, no JSON
    decoding, no sort. Equal text means equal centers to avoid.
    """
    q = select(JOBS.c.id, type_coerce(JOBS.c.avoid_centers, String)).where(
        JOBS.c.state == JobState.PENDING.value, JOBS.c.cancel_requested.is_(False)
    )
    return [(r[0], r[1] if isinstance(r[1], str) else json.dumps(r[1])) for r in s.execute(q)]


@functools.lru_cache(maxsize=4096)
def _json_strings(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text) or ())


def _strings(value: str | list[str] | None) -> tuple[str, ...]:
    """A stored JSON list of strings as a tuple (decoding each distinct text once)."""
    if isinstance(value, str):
        return _json_strings(value)
    return tuple(value or ())


def pending_heads(s: Session, ids: Sequence[str] | None = None) -> list[PendingHead]:
    """PENDING, not-cancelled jobs (without their specs), oldest first; only `ids` if given.

    Reasons and avoided centers repeat across a backlog, so their JSON is
    read as text and each distinct text decoded once.
    """
    cols = (
        JOBS.c.id,
        JOBS.c.tenant_id,
        JOBS.c.submitted_at,
        type_coerce(JOBS.c.avoid_centers, String),
        type_coerce(JOBS.c.reasons, String),
        JOBS.c.preemptions,
    )
    pending = (JOBS.c.state == JobState.PENDING.value, JOBS.c.cancel_requested.is_(False))
    if ids is None:
        rows = list(s.execute(select(*cols).where(*pending)))
    else:
        rows = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows.extend(s.execute(select(*cols).where(*pending, JOBS.c.id.in_(chunk))))
    heads = [
        PendingHead(
            id=r[0],
            tenant_id=r[1],
            submitted_at=r[2],
            avoid_centers=_strings(r[3]),
            reasons=_strings(r[4]),
        )
        for r in rows
    ]
    # A preempted job's resume point, read only for such jobs (rare): a backlog of
    # 100k jobs pays one integer column for it, not four.
    again = [k for k, r in enumerate(rows) if r[5]]
    if again:
        points = _resume_points(s, [heads[k].id for k in again])
        for k in again:
            p = points.get(heads[k].id)
            if p is not None:
                heads[k] = heads[k]._replace(
                    work_left=p[0], resume_center=p[1], resume_chip=p[2], stopped_at=p[3]
                )
    heads.sort(key=lambda h: (h.submitted_at, h.id))
    return heads


def _resume_points(
    s: Session, ids: Sequence[str]
) -> dict[str, tuple[float | None, str | None, str | None, datetime | None]]:
    """{job id: (work left, resume center, resume chip, stopped at)} for `ids`."""
    out = {}
    cols = (JOBS.c.id, JOBS.c.work_left, JOBS.c.resume_center, JOBS.c.resume_chip)
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        q = select(*cols, JOBS.c.stopped_at).where(JOBS.c.id.in_(chunk))
        out.update({r[0]: (r[1], r[2], r[3], r[4]) for r in s.execute(q)})
    return out


def spec_texts(s: Session, ids: Sequence[str]) -> dict[str, str | dict[str, Any]]:
    """{job id: stored spec} for `ids`, as JSON text where the database keeps text (SQLite).

    For `JobSpec.model_validate_json`, which parses and validates in one
    step, several times faster than decoding to dicts first. Databases whose
    driver decodes JSON itself give dicts.
    """
    out: dict[str, str | dict[str, Any]] = {}
    col = type_coerce(JOBS.c.spec, String)
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        rows = s.execute(select(JOBS.c.id, col).where(JOBS.c.id.in_(chunk)))
        out.update({jid: spec for jid, spec in rows})
    return out


def set_pending_reasons(s: Session, reasons: dict[str, list[str]]) -> None:
    """Update why jobs are still PENDING (jobs that left PENDING meanwhile are untouched).

    Jobs waiting for the same reasons share one UPDATE (a backlog mostly does).
    """
    if not reasons:
        return
    by_text: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for jid, why in reasons.items():
        by_text[tuple(why)].append(jid)
    conn = s.connection()
    for text, ids in by_text.items():
        for start in range(0, len(ids), 500):
            conn.execute(
                update(JOBS)
                .where(
                    JOBS.c.id.in_(ids[start : start + 500]),
                    JOBS.c.state == JobState.PENDING.value,
                )
                .values(reasons=list(text))
            )


def active_jobs(s: Session) -> list[JobRow]:
    """Jobs holding (or about to hold) chips: SCHEDULED, STAGING, RUNNING."""
    return list(s.scalars(select(JobRow).where(JobRow.state.in_([x.value for x in ACTIVE_STATES]))))


def preemptible_running(s: Session, centers: Sequence[str]) -> list[JobRow]:
    """RUNNING preemptible jobs leased to one of `centers`, not asked to stop nor cancelled:
    what a cycle may preempt (scheduler/preemption.py)."""
    if not centers:
        return []
    q = select(JobRow).where(
        JobRow.state == JobState.RUNNING.value,
        JobRow.preemptible.is_(True),
        JobRow.stop_for.is_(None),
        JobRow.cancel_requested.is_(False),
        JobRow.lease_center.in_(list(centers)),
    )
    return list(s.scalars(q))


def stopping(s: Session) -> list[JobRow]:
    """Jobs asked to stop for preemption whose end their agent has not reported yet."""
    q = select(JobRow).where(
        JobRow.stop_for.is_not(None), JobRow.state.in_([x.value for x in HELD_STATES])
    )
    return list(s.scalars(q))


def held_by(s: Session, center: str, *, for_update: bool = False) -> list[JobRow]:
    """Non-final jobs whose current lease is held by `center`."""
    q = select(JobRow).where(
        JobRow.lease_center == center, JobRow.state.in_([x.value for x in HELD_STATES])
    )
    if for_update:
        q = q.with_for_update()
    return list(s.scalars(q))


def scheduled_unleased(
    s: Session, centers: Iterable[str], *, for_update: bool = False
) -> list[JobRow]:
    """SCHEDULED jobs placed at one of `centers` that no agent has leased yet."""
    wanted = list(centers)
    if not wanted:
        return []
    q = select(JobRow).where(
        JobRow.state == JobState.SCHEDULED.value,
        JobRow.lease_center.is_(None),
        JobRow.center.in_(wanted),
    )
    if for_update:
        q = q.with_for_update()
    return list(s.scalars(q))


def transition(
    s: Session,
    job: JobRow,
    new: JobState,
    at: datetime,
    message: str,
    *,
    center: str | None = None,
) -> None:
    """Move `job` to `new` (IllegalTransition if the state machine forbids it) and log an event."""
    check_transition(JobState(job.state), new)
    job.state = new.value
    add_event(s, job.id, at, message, state=new, center=center)
    s.flush()


def add_event(
    s: Session,
    job_id: str,
    at: datetime,
    message: str,
    *,
    state: JobState | None = None,
    center: str | None = None,
) -> None:
    """Append a line to the job's timeline."""
    s.add(
        JobEventRow(
            job_id=job_id,
            at=at,
            state=state.value if state else None,
            message=message,
            center=center,
        )
    )


def last_event_id(s: Session) -> int:
    """The id of the newest job event (0 if none): it changes with every state change."""
    return int(s.scalar(select(func.max(JobEventRow.id))) or 0)


def events(s: Session, job_id: str) -> list[JobEventRow]:
    """The job's timeline, oldest first."""
    return list(
        s.scalars(select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id))
    )


def lease_candidates(s: Session, center: str, now: datetime, limit: int) -> list[str]:
    """Ids of SCHEDULED, unleased, not-cancelled jobs placed at `center` and due by `now`."""
    q = (
        select(JobRow.id)
        .where(
            JobRow.state == JobState.SCHEDULED.value,
            JobRow.center == center,
            JobRow.lease_center.is_(None),
            JobRow.cancel_requested.is_(False),
            JobRow.planned_start <= now,
        )
        .order_by(JobRow.priority.desc(), JobRow.planned_start, JobRow.id)
        .limit(limit)
    )
    return list(s.scalars(q))


def try_lease(s: Session, job_id: str, center: str, real_now: float) -> bool:
    """Atomically lease `job_id` to `center` (compare-and-set on an empty lease holder).

    Returns False when another caller took it first or it is no longer due.
    """
    res = s.execute(
        update(JobRow)
        .where(
            JobRow.id == job_id,
            JobRow.state == JobState.SCHEDULED.value,
            JobRow.center == center,
            JobRow.lease_center.is_(None),
        )
        .values(
            lease_center=center,
            leased_at=real_now,
            lease_renewed=real_now,
            attempt=JobRow.attempt + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(res, "rowcount", 0) == 1)


def replan(
    s: Session,
    job_id: str,
    old_center: str,
    old_start: datetime,
    values: dict[str, Any],
    at: datetime,
    message: str,
) -> bool:
    """Move an unleased SCHEDULED job to a new plan (compare-and-set), logging `message`.

    The update holds only while the job is still SCHEDULED, unleased, not
    being cancelled and on the plan the caller read (`old_center`,
    `old_start`); so a lease taken meanwhile (`try_lease`, which sets the
    lease holder) and a re-plan cannot both win. Returns whether it moved.
    """
    res = s.execute(
        update(JobRow)
        .where(
            JobRow.id == job_id,
            JobRow.state == JobState.SCHEDULED.value,
            JobRow.lease_center.is_(None),
            JobRow.cancel_requested.is_(False),
            JobRow.center == old_center,
            JobRow.planned_start == old_start,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(res, "rowcount", 0) != 1:
        return False
    add_event(s, job_id, at, message, center=values.get("center"))
    return True


def scheduled_ahead(s: Session, after: datetime, limit: int) -> list[JobRow]:
    """SCHEDULED, unleased, not-cancelled jobs planned to start after `after`, soonest first."""
    q = (
        select(JobRow)
        .where(
            JobRow.state == JobState.SCHEDULED.value,
            JobRow.lease_center.is_(None),
            JobRow.cancel_requested.is_(False),
            JobRow.planned_start > after,
        )
        .order_by(JobRow.priority.desc(), JobRow.planned_start, JobRow.id)
        .limit(limit)
    )
    return list(s.scalars(q))


def renew_leases(s: Session, center: str, job_ids: Sequence[str], real_now: float) -> int:
    """Renew the leases `center` holds on `job_ids` (a heartbeat listed them); returns how many.

    Only jobs whose current lease `center` holds, in a held state, are renewed:
    listing a job leased elsewhere, or one that ended, renews nothing.
    """
    done = 0
    ids = list(job_ids)
    for start in range(0, len(ids), 500):
        res = s.execute(
            update(JobRow)
            .where(
                JobRow.id.in_(ids[start : start + 500]),
                JobRow.lease_center == center,
                JobRow.state.in_([x.value for x in HELD_STATES]),
            )
            .values(lease_renewed=real_now)
            .execution_options(synchronize_session=False)
        )
        done += int(getattr(res, "rowcount", 0) or 0)
    return done


def _renewed() -> Any:
    """When a lease was last renewed: `lease_renewed`, else (rows leased before it) `leased_at`."""
    return func.coalesce(JobRow.lease_renewed, JobRow.leased_at, 0.0)


def expired_leases(s: Session, before: float, *, for_update: bool = False) -> list[JobRow]:
    """Leased, non-final jobs whose lease was last renewed before `before` (real unix seconds).

    SCHEDULED jobs count too: a lease whose reply never reached the agent is
    never renewed, and expires like any other.
    """
    q = (
        select(JobRow)
        .where(
            JobRow.lease_center.is_not(None),
            JobRow.state.in_([x.value for x in HELD_STATES]),
            _renewed() < before,
        )
        .order_by(JobRow.id)
    )
    if for_update:
        q = q.with_for_update()
    return list(s.scalars(q))


def any_expired_lease(s: Session, before: float) -> bool:
    """Whether `expired_leases(s, before)` would find anything (a cheap read)."""
    q = (
        select(JobRow.id)
        .where(
            JobRow.lease_center.is_not(None),
            JobRow.state.in_([x.value for x in HELD_STATES]),
            _renewed() < before,
        )
        .limit(1)
    )
    return s.scalar(q) is not None


def counts_by_center(s: Session) -> dict[str, dict[str, int]]:
    """{center: {state: n}} over active jobs."""
    q = (
        select(JobRow.center, JobRow.state, func.count())
        .where(JobRow.state.in_([x.value for x in ACTIVE_STATES]), JobRow.center.is_not(None))
        .group_by(JobRow.center, JobRow.state)
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for center, state, n in s.execute(q):
        out[str(center)][str(state)] = int(n)
    return dict(out)


def attempt_log_bytes(s: Session, job_id: str, attempt: int) -> int:
    """Bytes of attempt `attempt`'s log the control plane has: where its next append goes."""
    have = s.scalar(
        select(func.max(JobLogRow.attempt_offset)).where(
            JobLogRow.job_id == job_id, JobLogRow.attempt == attempt
        )
    )
    return int(have or 0)


def append_log(s: Session, job: JobRow, attempt: int, offset: int, text: str) -> int:
    """Append agent output at byte `offset` of attempt `attempt`; retries never duplicate text.

    Returns the number of bytes added to the job's log.
    """
    end = attempt_log_bytes(s, job.id, attempt)
    data = text.encode("utf-8")
    if offset + len(data) <= end:
        return 0
    if offset < end:
        data = data[end - offset :]
    clean = data.decode("utf-8", errors="replace")
    stored = clean.encode("utf-8")
    s.add(
        JobLogRow(
            job_id=job.id,
            attempt=attempt,
            # The attempt's log length once this chunk is in: the next retry's dedup mark.
            attempt_offset=max(offset, end) + len(data),
            start_offset=job.log_bytes,
            nbytes=len(stored),
            text=clean,
        )
    )
    job.log_bytes = job.log_bytes + len(stored)
    s.flush()
    return len(stored)


def read_log(s: Session, job_id: str, offset: int, limit: int = 1 << 20) -> tuple[str, int]:
    """Text of the job's log from byte `offset` (at most `limit` bytes) and the next offset."""
    rows = list(
        s.scalars(
            select(JobLogRow)
            .where(JobLogRow.job_id == job_id, JobLogRow.start_offset + JobLogRow.nbytes > offset)
            .order_by(JobLogRow.start_offset)
        )
    )
    if not rows:
        return "", offset
    raw = bytearray()
    first = rows[0].start_offset
    for r in rows:
        raw += r.text.encode("utf-8")
        if len(raw) - (offset - first) >= limit:
            break
    chunk = bytes(raw[max(offset - first, 0) :])
    cut = min(len(chunk), limit)
    # Never split a UTF-8 character: back up to a character boundary.
    while 0 < cut < len(chunk) and (chunk[cut] & 0xC0) == 0x80:
        cut -= 1
    return chunk[:cut].decode("utf-8", errors="replace"), offset + cut
