"""The user side of jobs: submit (validated, idempotent), list, detail, cancel, logs, quote."""

from __future__ import annotations

import dataclasses
import os
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from computenet.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from computenet.metering import fee_cny, fen
from computenet.model import TERMINAL_STATES, Dataset, JobSpec, JobState, limits
from computenet.model.identifiers import network_prefix
from computenet.model.job import parse_states
from computenet.protocol import JobDetail, JobView, LogChunk, QuoteView, SubmitRequest
from computenet.protocol.api import PathHop, QuoteOption
from computenet.scheduler import job_request, quote
from computenet.server.auth import Principal
from computenet.server.center_checks import fee_rate
from computenet.server.center_protocol import BELOW
from computenet.server.limits import TenantLimits
from computenet.server.paging import decode_cursor, encode_cursor
from computenet.server.scheduling import snapshot
from computenet.server.views import job_detail, job_view, new_job_view
from computenet.server.vouchers import price_after_vouchers
from computenet.store import jobs as job_store
from computenet.store.billing import get_charge
from computenet.store.centers import datasets_as_model, list_centers
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

LOG_CHUNK_BYTES = 1 << 20
PENDING_REASON = "waiting for the next scheduling cycle"


class _JobIds:
    """Random job ids (``j-`` and 12 hex digits), drawn from a buffer of `os.urandom` bytes.

    One system call per 512 ids instead of one per id: a call that releases
    the GIL is a chance for another thread to keep it for a whole switch
    interval, which a request on the event loop would pay as latency.
    """

    _BYTES = 6

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        """A fresh id."""
        with self._lock:
            if self._pos + self._BYTES > len(self._buf):
                self._buf = os.urandom(512 * self._BYTES)
                self._pos = 0
            raw = self._buf[self._pos : self._pos + self._BYTES]
            self._pos += self._BYTES
        return f"j-{raw.hex()}"


_job_ids = _JobIds()


def tenant_of(who: Principal) -> str:
    """The tenant a caller submits into; `ForbiddenError` for tokens without one."""
    if who.role not in ("user", "admin") or not who.tenant:
        raise ForbiddenError(
            f"a {who.role} token without a tenant cannot own jobs or datasets",
            field="Authorization",
            hint="use a user token (cnet admin user NAME --tenant T)",
        )
    return who.tenant


def scope_of(who: Principal) -> str | None:
    """The tenant whose jobs the caller may see (None = all, for admins)."""
    return None if who.is_admin else tenant_of(who)


def _prefixed(exc: ValidationError, prefix: str) -> ValidationError:
    if exc.field and prefix:
        exc.field = f"{prefix}{exc.field}"
    return exc


def _spec_of(req: SubmitRequest) -> JobSpec:
    spec = req.spec
    if req.pin_center is not None:
        spec = spec.model_copy(update={"center": req.pin_center})
    return spec


def _capped(spec: JobSpec, lim: TenantLimits) -> tuple[JobSpec, str]:
    """`spec` with its priority capped by the tenant's ceiling, and what the event says of it."""
    ceiling = lim.priority_ceiling
    if ceiling is None or spec.priority <= ceiling:
        return spec, ""
    note = f"; priority {spec.priority} capped at {ceiling} (the tenant's priority ceiling)"
    return spec.model_copy(update={"priority": ceiling}), note


def _tenant_datasets(plane: ControlPlane, tenant: str, spec: JobSpec) -> dict[str, Dataset]:
    """The tenant's datasets among the spec's inputs (no database trip without inputs)."""
    if not spec.inputs:
        return {}
    with plane.db.read() as s:
        return datasets_as_model(s, tenant=tenant, ids=spec.inputs)


def _seen(plane: ControlPlane, tenant: str, key: str | None) -> JobRow | None:
    if not key:
        return None
    with plane.db.read() as s:
        return job_store.find_by_key(s, tenant, key)


def _new_job(
    plane: ControlPlane,
    tenant: str,
    req: SubmitRequest,
    spec: JobSpec,
    datasets: dict[str, Dataset],
    now: datetime,
) -> dict[str, Any]:
    """Validate `spec` (ValidationError naming the request field) and return the row to insert."""
    job_id = _job_ids.next()
    try:
        jr = job_request(job_id, spec, plane.network, now, datasets)
    except ValidationError as exc:
        if req.pin_center is not None and exc.field == "center":
            exc.field = "pin_center"
            raise exc from None
        raise _prefixed(exc, "spec.") from None
    return {
        "id": job_id,
        "tenant_id": tenant,
        "name": spec.name,
        "workload_class": spec.workload_class,
        "state": JobState.PENDING.value,
        "spec": spec.model_dump(mode="json", by_alias=True),
        "idempotency_key": req.idempotency_key,
        "submitted_at": now,
        "deadline": jr.deadline,
        "priority": spec.priority,
        "placement": None,
        "reasons": [PENDING_REASON],
        "center": None,
        "chip": None,
        "chips": spec.chips.count,
        "planned_start": None,
        "planned_finish": None,
        "estimated_cny": None,
        "attempt": 0,
        "lease_center": None,
        "leased_at": None,
        "avoid_centers": [],
        "cancel_requested": False,
        "exit_code": None,
        "staging_at": None,
        "started_at": None,
        "finished_at": None,
        "usage": {},
        "cost_cny": None,
        "log_bytes": 0,
        "preemptible": spec.preemptible,
        "preemptions": 0,
        "stop_for": None,
        "work_left": None,
        "resume_center": None,
        "resume_chip": None,
        "parts_billed": None,
    }


def submit(plane: ControlPlane, who: Principal, req: SubmitRequest) -> tuple[JobView, bool]:
    """Validate and store a job as PENDING; (view, False) when the idempotency key was seen.

    Returns once the job is committed. A request whose key was seen gets the
    first job back, even if this request's spec would not pass validation now.
    """
    tenant = tenant_of(who)
    lim = plane.admission.limits(tenant)
    plane.admission.take(tenant, lim)
    now = plane.clock.now()
    spec, capped = _capped(_spec_of(req), lim)
    try:
        values = _new_job(plane, tenant, req, spec, _tenant_datasets(plane, tenant, spec), now)
    except ValidationError:
        seen = _seen(plane, tenant, req.idempotency_key)
        if seen is not None:
            return job_view(seen, network_prefix(plane.network)), False
        raise
    seen = plane.submitter.store(values, f"submitted by {who.subject}{capped}")
    return (
        (job_view(seen, network_prefix(plane.network)), False)
        if seen is not None
        else (new_job_view(values, network_prefix(plane.network)), True)
    )


async def submit_async(
    plane: ControlPlane, who: Principal, req: SubmitRequest
) -> tuple[JobView, bool]:
    """`submit` for the event loop: validates in place, waits for the group commit.

    The database is touched only by the submit writer thread (and, for specs
    with inputs or a failed validation, by one read in the thread pool).
    """
    tenant = tenant_of(who)
    # The rate first, from memory: a flood costs no database work. The tenant's
    # overrides are re-read (off the loop) only every few seconds.
    lim = plane.admission.cached(tenant)
    if lim is None:
        lim = await run_in_threadpool(plane.admission.refresh, tenant)
    plane.admission.take(tenant, lim)
    now = plane.clock.now()
    spec, capped = _capped(_spec_of(req), lim)
    datasets: dict[str, Dataset] = {}
    if spec.inputs:
        datasets = await run_in_threadpool(_tenant_datasets, plane, tenant, spec)
    try:
        values = _new_job(plane, tenant, req, spec, datasets, now)
    except ValidationError:
        if req.idempotency_key:
            seen = await run_in_threadpool(_seen, plane, tenant, req.idempotency_key)
            if seen is not None:
                return job_view(seen, network_prefix(plane.network)), False
        raise
    seen = await plane.submitter.store_async(values, f"submitted by {who.subject}{capped}")
    return (
        (job_view(seen, network_prefix(plane.network)), False)
        if seen is not None
        else (new_job_view(values, network_prefix(plane.network)), True)
    )


def list_jobs(
    plane: ControlPlane,
    who: Principal,
    state: str | None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[JobView], str | None]:
    """A page of the caller's jobs, newest first (all tenants' for admins), and the next cursor.

    The cursor is the (submit time, id) of the page's last job: the next page
    starts strictly after it in that order, whatever was submitted meanwhile.
    """
    states = parse_states(state)
    q = select(JobRow).order_by(JobRow.submitted_at.desc(), JobRow.id.desc()).limit(limit + 1)
    tenant = scope_of(who)
    if tenant is not None:
        q = q.where(JobRow.tenant_id == tenant)
    if states is not None:
        q = q.where(JobRow.state.in_([x.value for x in states]))
    if cursor:
        at_text, last_id = decode_cursor(cursor, 2)
        try:
            at = datetime.fromisoformat(at_text)
        except ValueError:
            raise ValidationError("not a cursor this list gave out", field="cursor") from None
        q = q.where(
            or_(JobRow.submitted_at < at, and_(JobRow.submitted_at == at, JobRow.id < last_id))
        )
    with plane.db.read() as s:
        rows = list(s.scalars(q))
        prefix = network_prefix(plane.network)
        views = [job_view(r, prefix) for r in rows[:limit]]
    more = len(rows) > limit
    nxt = (
        encode_cursor(rows[limit - 1].submitted_at.isoformat(), rows[limit - 1].id)
        if more
        else None
    )
    return views, nxt


def detail(plane: ControlPlane, who: Principal, job_id: str) -> JobDetail:
    """A job with placement, reasons and timeline; another tenant's job is 404."""
    with plane.db.read() as s:
        row = job_store.get_job(s, job_id, tenant=scope_of(who))
        if row is None:
            raise NotFoundError(f"no job '{job_id}'", field="job_id", hint="cnet jobs lists yours")
        view = job_detail(
            row,
            job_store.events(s, job_id),
            plane.clock.time_scale,
            network_prefix(plane.network),
        )
        charge = get_charge(s, job_id)
        view.queue_position = queue_position(s, row)
    roll_up(view, row, plane.network.name)
    if charge is not None:
        # The metered split next to the placement's estimate (exact ¥ as strings).
        view.usage.update(
            {
                "energy_cny": str(charge.energy_cny),
                "service_cny": str(charge.service_cny),
                "transfer_cny": str(charge.transfer_cny),
                "total_cny": str(charge.total_cny),
                "kwh": charge.kwh,
                "cu_hours": charge.cu_hours,
                "co2_kg": charge.co2_kg,
            }
        )
    return view


_WAITING = (JobState.PENDING.value, JobState.SCHEDULED.value)
_FINAL = {x.value for x in TERMINAL_STATES}


def queue_position(s: Session, row: JobRow) -> int | None:
    """The job's place among the jobs waiting at this plane (1: next), or None.

    Waiting means PENDING or SCHEDULED and not yet handed to a center (a job a
    region holds waits in the region: its place there is in the path). The
    order is the plan's: placed jobs by planned start, then jobs not placed yet
    by priority; ties by submit time, then id. Every tenant's jobs count (only
    their number is shown).
    """
    if row.state not in _WAITING or row.lease_center is not None:
        return None
    earlier = or_(
        JobRow.submitted_at < row.submitted_at,
        and_(JobRow.submitted_at == row.submitted_at, JobRow.id < row.id),
    )
    if row.planned_start is not None:
        ahead = or_(
            JobRow.planned_start < row.planned_start,
            and_(JobRow.planned_start == row.planned_start, earlier),
        )
    else:
        ahead = or_(
            JobRow.planned_start.is_not(None),
            JobRow.priority > row.priority,
            and_(JobRow.priority == row.priority, earlier),
        )
    n = s.scalar(
        select(func.count())
        .select_from(JobRow)
        .where(JobRow.state.in_(_WAITING), JobRow.lease_center.is_(None), ahead)
    )
    return int(n or 0) + 1


def roll_up(view: JobDetail, row: JobRow, network: str) -> None:
    """Fill `view.path`: this plane's hop, then the levels below as the region reported them.

    For a job not final whose region said why it waits (or where it runs), the
    deepest level's reason comes first in `reasons`, named by its network.
    """
    own = view.reasons[0][: limits.MAX_REASON_CHARS] if view.reasons else None
    hop = PathHop(
        network=network,
        center=view.center,
        chip=view.chip,
        count=view.chips if view.center else None,
        job_id=view.id,
        state=view.state.value,
        reason=own,
        position=view.queue_position,
    )
    lower = below(row)
    view.path = [hop, *lower][: limits.MAX_PATH_HOPS]
    if row.state in _FINAL:
        return
    deepest = next((h for h in reversed(lower) if h.reason), None)
    if deepest is not None:
        view.reasons = [f"{deepest.network}: {deepest.reason}", *view.reasons]


def below(row: JobRow) -> list[PathHop]:
    """The region's last report of where the current attempt is, if it is about this run."""
    got = (row.usage or {}).get(BELOW)
    if not isinstance(got, dict) or row.state == JobState.PENDING.value:
        return []
    if got.get("attempt") != row.attempt or got.get("center") != (row.lease_center or row.center):
        return []
    return [PathHop.model_validate(h) for h in got.get("path") or []]


def region_quote(
    option: QuoteOption, card: dict[str, Any], cu_hours: float, fee: Decimal, now: datetime
) -> None:
    """Set an option's region price and finish from the region's rate card (docs/federation.md).

    The region's own price for the job is its ¥ per CU·h × the job's CU·h, to the
    fen, plus the region's declared fee on it; it finishes after the region's
    wait now, then this option's transfer and run.
    """
    own = fen(Decimal(str(card["quote_cny_per_cuh"])) * Decimal(repr(float(cu_hours))))
    option.region_cny = own + fee_cny(own, fee)
    wait = float(card.get("quote_wait_s") or 0.0)
    option.region_finish = now + timedelta(seconds=wait + option.transfer_s + option.run_s)


def cancel(plane: ControlPlane, who: Principal, job_id: str) -> JobView:
    """PENDING/SCHEDULED → CANCELLED now; STAGING/RUNNING → marked, the holder is told to stop."""
    now = plane.clock.now()
    with plane.db.write() as s:
        job = job_store.get_job(s, job_id, tenant=scope_of(who), for_update=True)
        if job is None:
            raise NotFoundError(f"no job '{job_id}'", field="job_id", hint="cnet jobs lists yours")
        state = JobState(job.state)
        if state == JobState.CANCELLED:
            return job_view(job, network_prefix(plane.network))
        if state in (JobState.SUCCEEDED, JobState.FAILED):
            raise ConflictError(
                f"job '{job_id}' already {state.value}", field="state", hint="nothing to cancel"
            )
        if state in (JobState.PENDING, JobState.SCHEDULED):
            job.finished_at = now
            job.reasons = [f"cancelled by {who.subject}"]
            job_store.transition(
                s,
                job,
                JobState.CANCELLED,
                now,
                f"cancelled by {who.subject}",
                center=job.lease_center,
            )
        elif not job.cancel_requested:
            job.cancel_requested = True
            holder = job.lease_center or "its center"
            job.reasons = [f"cancel requested by {who.subject}; waiting for {holder} to stop it"]
            job_store.add_event(s, job.id, now, job.reasons[0], center=job.lease_center)
        return job_view(job, network_prefix(plane.network))


def logs(plane: ControlPlane, who: Principal, job_id: str, offset: int) -> LogChunk:
    """Log text from byte `offset`; `complete` once the job is final and everything was read."""
    if offset < 0:
        raise ValidationError("must be >= 0", field="offset")
    with plane.db.read() as s:
        job = job_store.get_job(s, job_id, tenant=scope_of(who))
        if job is None:
            raise NotFoundError(f"no job '{job_id}'", field="job_id", hint="cnet jobs lists yours")
        text, nxt = job_store.read_log(s, job_id, offset, LOG_CHUNK_BYTES)
        final = job.state in {
            x.value for x in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
        }
        return LogChunk(
            text=text, offset=offset, next_offset=nxt, complete=final and nxt >= job.log_bytes
        )


def quote_job(plane: ControlPlane, who: Principal, spec: JobSpec) -> QuoteView:
    """Every option for `spec` right now, cheapest and fastest marked; nothing is stored."""
    now = plane.clock.now()
    tenant = who.tenant
    with plane.db.read() as s:
        datasets = datasets_as_model(s, tenant=tenant, ids=spec.inputs) if tenant else {}
        snap = snapshot(plane, s, now)
        cards = {
            (row.id, str(p["chip"])): p
            for row in list_centers(s)
            for p in row.capacity or []
            if p.get("quote_cny_per_cuh") is not None
        }
    jr = job_request("quote", spec, plane.network, now, datasets)
    jr = dataclasses.replace(jr, tenant=tenant or "")  # its vouchers count in the budget
    try:
        result = quote(snap, jr, plane.settings.profile)
    except (ArithmeticError, ValueError) as exc:
        # The schema bounds every number; should a combination still overflow, say so (not 500).
        raise ValidationError(
            f"this job cannot be quoted: {exc}",
            field="work",
            hint="ask for less work, or more or faster chips",
        ) from exc
    for option in result.options:
        card = cards.get((option.center, option.chip))
        if card is not None:
            fee = fee_rate(plane.network.center(option.center))
            region_quote(option, card, jr.cu_hours, fee, now)
    # Price before and after the tenant's compute vouchers (server/vouchers.py).
    price_after_vouchers(result.options, snap.vouchers.get(tenant or "", ()), jr.workload_class)
    return QuoteView(
        options=result.options,
        infeasible_reasons=result.infeasible_reasons,
        now=now,
        notes=result.notes,
    )
