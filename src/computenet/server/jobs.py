"""The user side of jobs: submit (validated, idempotent), list, detail, cancel, logs, quote."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from computenet.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from computenet.model import JobSpec, JobState
from computenet.protocol import JobDetail, JobView, LogChunk, QuoteView, SubmitRequest
from computenet.scheduler import job_request, quote
from computenet.server.auth import Principal
from computenet.server.scheduling import snapshot
from computenet.server.views import job_detail, job_view
from computenet.store import jobs as job_store
from computenet.store.billing import get_charge
from computenet.store.centers import datasets_as_model
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

LOG_CHUNK_BYTES = 1 << 20


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


def submit(plane: ControlPlane, who: Principal, req: SubmitRequest) -> tuple[JobView, bool]:
    """Validate and store a job as PENDING; (view, False) when the idempotency key was seen."""
    tenant = tenant_of(who)
    now = plane.clock.now()
    spec = req.spec
    if req.pin_center is not None:
        spec = spec.model_copy(update={"center": req.pin_center})
    job_id = f"j-{uuid.uuid4().hex[:12]}"
    with plane.db.read() as s:
        if req.idempotency_key:
            seen = job_store.find_by_key(s, tenant, req.idempotency_key)
            if seen is not None:
                return job_view(seen), False
        datasets = datasets_as_model(s, tenant=tenant, ids=spec.inputs)
    try:
        jr = job_request(job_id, spec, plane.network, now, datasets)
    except ValidationError as exc:
        if req.pin_center is not None and exc.field == "center":
            exc.field = "pin_center"
            raise exc from None
        raise _prefixed(exc, "spec.") from None
    row = JobRow(
        id=job_id,
        tenant_id=tenant,
        name=spec.name,
        workload_class=spec.workload_class,
        state=JobState.PENDING.value,
        spec=spec.model_dump(mode="json", by_alias=True),
        idempotency_key=req.idempotency_key,
        submitted_at=now,
        deadline=jr.deadline,
        priority=spec.priority,
        placement=None,
        reasons=["waiting for the next scheduling cycle"],
        chips=spec.chips.count,
        attempt=0,
        avoid_centers=[],
        cancel_requested=False,
        usage={},
        log_bytes=0,
    )
    with plane.db.write() as s:
        stored, created = job_store.insert_job(s, row, f"submitted by {who.subject}")
        return job_view(stored), created


def list_jobs(plane: ControlPlane, who: Principal, state: str | None, limit: int) -> list[JobView]:
    """The caller's jobs, newest first (all tenants' for admins)."""
    states = None
    if state:
        states = []
        for part in state.split(","):
            try:
                states.append(JobState(part.strip().upper()))
            except ValueError:
                raise ValidationError(
                    f"unknown state '{part}'",
                    field="state",
                    hint="one of " + ", ".join(x.value for x in JobState),
                ) from None
    with plane.db.read() as s:
        rows = job_store.list_jobs(s, tenant=scope_of(who), states=states, limit=limit)
        return [job_view(r) for r in rows]


def detail(plane: ControlPlane, who: Principal, job_id: str) -> JobDetail:
    """A job with placement, reasons and timeline; another tenant's job is 404."""
    with plane.db.read() as s:
        row = job_store.get_job(s, job_id, tenant=scope_of(who))
        if row is None:
            raise NotFoundError(f"no job '{job_id}'", field="job_id", hint="cnet jobs lists yours")
        view = job_detail(row, job_store.events(s, job_id), plane.clock.time_scale)
        charge = get_charge(s, job_id)
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


def cancel(plane: ControlPlane, who: Principal, job_id: str) -> JobView:
    """PENDING/SCHEDULED → CANCELLED now; STAGING/RUNNING → marked, the holder is told to stop."""
    now = plane.clock.now()
    with plane.db.write() as s:
        job = job_store.get_job(s, job_id, tenant=scope_of(who), for_update=True)
        if job is None:
            raise NotFoundError(f"no job '{job_id}'", field="job_id", hint="cnet jobs lists yours")
        state = JobState(job.state)
        if state == JobState.CANCELLED:
            return job_view(job)
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
        return job_view(job)


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
    jr = job_request("quote", spec, plane.network, now, datasets)
    result = quote(snap, jr, plane.settings.profile)
    return QuoteView(options=result.options, infeasible_reasons=result.infeasible_reasons, now=now)
