"""The center protocol's write side: what the control plane does when an agent calls.

Each function is one endpoint of ``/center/v1`` (see docs/center-protocol.md):
register, heartbeat, status, logs, usage, replicas. A report from anyone but
the holder of a job's current lease and attempt is refused (409) and changes
nothing; a heartbeat that lists a job its center no longer holds gets that
job back in `cancel`. What a center says is checked (`server.center_checks`):
capacity against the network, a final state against its exit code and the
user's cancel, a log append against the end of the log. Lease expiry lives in
`server.reconciler`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from computenet.errors import ConflictError, NotFoundError, ValidationError
from computenet.model import TERMINAL_STATES, JobState, limits
from computenet.protocol import (
    PROTOCOL_VERSION,
    DatasetView,
    HeartbeatReply,
    HeartbeatRequest,
    LogAppend,
    RegisterReply,
    RegisterRequest,
    ReplicaReport,
    StatusReport,
    UsageReport,
)
from computenet.protocol.api import PathHop
from computenet.protocol.center import QuoteRequest
from computenet.protocol.datapaths import default_replica_path, replica_path_problem
from computenet.server import center_checks, preempting, quotes
from computenet.server.metering import meter
from computenet.server.views import dataset_view
from computenet.store import jobs as job_store
from computenet.store.centers import (
    add_replica,
    get_center,
    get_dataset,
    record_heartbeat,
    register_center,
    replicas,
)
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)

_FINAL = {x.value for x in TERMINAL_STATES}


def register(plane: ControlPlane, center_id: str, req: RegisterRequest) -> RegisterReply:
    """Record an agent (idempotent); a center keeps its data key across re-registrations."""
    try:
        declared = plane.network.center(center_id)
    except KeyError:
        raise NotFoundError(
            f"center '{center_id}' is not in network '{plane.network.name}'",
            field="center_id",
            hint="use a center id from the network file",
        ) from None
    if req.protocol_version.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
        raise ValidationError(
            f"protocol version {req.protocol_version} is not supported",
            field="protocol_version",
            hint=f"this server speaks center protocol {PROTOCOL_VERSION}",
        )
    center_checks.check_capacity(declared, req.capacity)  # a center is checked, not believed
    center_checks.fee_rate(declared)  # a region's fee tag is read when its runs are billed
    center_checks.check_data_url(req.data_url)
    with plane.db.write() as s:
        row = register_center(
            s,
            center_id,
            new_data_key=secrets.token_hex(32),
            at=datetime.now(UTC),
            real_now=plane.clock.real(),
            data_url=req.data_url,
            backend=req.backend,
            agent_version=req.agent_version,
            protocol_version=req.protocol_version,
            capacity=center_checks.own_capacity(declared, req.capacity),
            preempt=bool(req.preempt),
        )
        # Stops asked of a center that no longer preempts would never happen: withdrawn,
        # and the jobs held for them are looked at afresh by the next cycle.
        if not row.preempt and preempting.withdraw(s, center_id, plane.clock.now()):
            plane.cycle.calendar_changed()
        key, key_version = row.data_key, row.data_key_version
    log.info("center %s registered (backend %s, data %s)", center_id, req.backend, req.data_url)
    s_ = plane.settings
    return RegisterReply(
        center_id=center_id,
        heartbeat_interval_s=s_.heartbeat_interval_s,
        lease_timeout_s=s_.lease_timeout_s,
        fence_after_s=s_.lease_rule.fence_after_s,
        stop_grace_s=s_.lease_rule.stop_grace_s,
        time_scale=plane.network.time_scale,
        data_scale=plane.network.data_scale,
        data_key=key,
        data_key_version=key_version,
    )


def heartbeat(plane: ControlPlane, center_id: str, req: HeartbeatRequest) -> HeartbeatReply:
    """Renew the center's leases; reply with the listed jobs it must stop."""
    real = plane.clock.real()
    listed = list(dict.fromkeys(req.running))
    cancel: list[str] = []
    preempt: list[str] = []
    capacity: list[dict[str, Any]] = []
    with contextlib.suppress(KeyError):  # not in the network: it cannot have registered (409)
        declared = plane.network.center(center_id)
        center_checks.check_capacity(declared, req.capacity)
        center_checks.check_progress(declared, req.progress)
        center_checks.check_members(declared, req.members)
        quotes.check_quotes(declared, req.quotes)
        capacity = center_checks.own_capacity(declared, req.capacity)
    progress = {p.job_id: p for p in req.progress or []}
    asks: list[QuoteRequest] = []
    with plane.db.write() as s:
        row = get_center(s, center_id, for_update=True)
        if row is None:
            raise ConflictError(
                f"center '{center_id}' has not registered",
                field="center_id",
                hint="POST /center/v1/register first",
            )
        record_heartbeat(s, row, real, capacity, listed)
        key_version = row.data_key_version
        jobs = job_store.get_jobs(s, listed)
        for jid in listed:
            j = jobs.get(jid)
            if j is None or j.lease_center != center_id or j.state in _FINAL or j.cancel_requested:
                cancel.append(jid)
            p = progress.get(jid)
            if j is not None and p is not None and j.lease_center == center_id:
                keep_below(j, center_id, p.attempt, p.path)
        for j in job_store.held_by(s, center_id):
            if j.id in cancel:
                continue
            if j.cancel_requested:
                cancel.append(j.id)
            elif j.stop_for is not None:
                preempt.append(j.id)  # asked to stop for a shorter job (server/preempting.py)
        # Listing a job renews its lease; a job the center holds but stopped listing
        # (or never got: a lost lease reply) expires in the reconciler.
        job_store.renew_leases(s, center_id, listed, real)
        if req.quotes is not None:
            asks = _quote_requests(plane, s, center_id, req, real)
    plane.members.keep(center_id, req.members)  # a region's own centers, for display
    rule = plane.settings.lease_rule
    # Each list is bounded on the wire; what does not fit is still owed and is
    # found again, from the jobs' rows, at the next heartbeat.
    cancel, preempt = cancel[: limits.MAX_RUNNING], preempt[: limits.MAX_RUNNING]
    return HeartbeatReply(
        cancel=cancel,
        lease_timeout_s=rule.lease_timeout_s,
        fence_after_s=rule.fence_after_s,
        stop_grace_s=rule.stop_grace_s,
        data_key_version=key_version,
        quote_requests=asks or None,
        # Off the wire while empty (what agents older than the field get anyway).
        preempt=preempt or None,
    )


def _quote_requests(
    plane: ControlPlane, s: Session, center_id: str, req: HeartbeatRequest, real: float
) -> list[QuoteRequest]:
    """A region's heartbeat (server/quotes.py): keep its quotes, hand it the next jobs to price."""
    plane.quotes.received(center_id, req.quotes, real)
    ids = plane.quotes.take(center_id, real)
    if not ids:
        return []
    declared = plane.network.center(center_id)
    rows = job_store.get_jobs(s, ids)
    out = []
    for jid in ids:
        row = rows.get(jid)
        if row is None or row.state != JobState.PENDING.value or row.cancel_requested:
            continue
        ask = quotes.quote_request(plane, row, declared)
        if ask is not None:
            out.append(ask)
    return out


def _held(s: Session, center_id: str, job_id: str, attempt: int) -> JobRow:
    job = job_store.get_job(s, job_id, for_update=True)
    if job is None:
        raise NotFoundError(f"no job '{job_id}'", field="job_id")
    if job.lease_center != center_id or job.attempt != attempt:
        raise ConflictError(
            f"center '{center_id}' does not hold job '{job_id}' attempt {attempt}"
            f" (current attempt {job.attempt} at {job.lease_center or 'no center'})",
            field="attempt",
            hint="stop this run: its lease was lost or the job was cancelled",
        )
    return job


def _report_time(plane: ControlPlane, job: JobRow, at: datetime | None) -> datetime:
    """Network time of a report: the agent's `at` (real) clamped to [lease, now], else now."""
    real = plane.clock.real()
    if at is not None:
        ts = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        real = min(max(ts, job.leased_at or ts), real)
    return plane.clock.to_network(real)


def report_status(plane: ControlPlane, center_id: str, job_id: str, rep: StatusReport) -> JobRow:
    """Apply a status report from the job's lease holder (idempotent for repeats)."""
    with plane.db.write() as s:
        job = _held(s, center_id, job_id, rep.attempt)
        # A job asked to stop for preemption may end CANCELLED, or FAILED with no exit code:
        # the control plane asked for it, as for a cancel.
        stopped = job.stop_for is not None
        center_checks.check_status(rep, cancel_requested=job.cancel_requested or stopped)
        new = JobState(rep.state)
        if new == JobState.FAILED and job.cancel_requested:
            new = JobState.CANCELLED
        if job.state == new.value:
            return job
        at = _report_time(plane, job, rep.at)
        text = rep.message or _default_message(new, rep.exit_code)
        if stopped and new in (JobState.FAILED, JobState.CANCELLED) and not job.cancel_requested:
            # Stopped for a shorter job: billed, then back in the queue to resume here.
            preempting.requeue(plane, s, job, at, center_id, text)
            return job
        job_store.transition(s, job, new, at, f"{center_id}: {text}", center=center_id)
        if new == JobState.STAGING:
            job.staging_at = at
        elif new == JobState.RUNNING:
            job.started_at = at
            job.reasons = [f"running at {center_id} on {job.chips}× {job.chip}"]
        else:
            job.finished_at = at
            job.exit_code = rep.exit_code
            job.stop_for = None  # it ended on its own, or was cancelled: nothing left to stop
            job.reasons = [f"{new.value.lower()} at {center_id}: {text}"]
            meter(plane, s, job)
        return job


def _default_message(state: JobState, exit_code: int | None) -> str:
    if state in (JobState.SUCCEEDED, JobState.FAILED) and exit_code is not None:
        return f"{state.value.lower()} (exit code {exit_code})"
    return state.value.lower()


def append_log(plane: ControlPlane, center_id: str, job_id: str, rep: LogAppend) -> int:
    """Append output from the lease holder; returns the bytes added (0 for a retry).

    `offset` counts UTF-8 bytes of this attempt's log: bytes already stored are
    never rewritten (a resend or an overlap adds only what lies past the end), and
    an append that starts past the end is refused (422 ``offset``), never stored
    at the end with a gap that would swallow the chunks sent into it later.

    A job's log is kept up to `MAX_JOB_LOG_BYTES`, ending with a line that says
    so; output past it is accepted and dropped (the agent moves on).
    """
    with plane.db.write() as s:
        job = _held(s, center_id, job_id, rep.attempt)
        room = limits.MAX_JOB_LOG_BYTES - job.log_bytes
        if room <= 0:
            return 0
        center_checks.check_log_offset(
            rep.offset, job_store.attempt_log_bytes(s, job_id, rep.attempt)
        )
        text = rep.text
        data = text.encode("utf-8")
        if len(data) > room:
            note = f"\n[cnet: log cut at {limits.MAX_JOB_LOG_BYTES} bytes]\n".encode()
            keep = max(0, room - len(note))
            text = (data[:keep] + note).decode("utf-8", errors="ignore")
        return job_store.append_log(s, job, rep.attempt, rep.offset, text)


def report_usage(plane: ControlPlane, center_id: str, job_id: str, rep: UsageReport) -> JobRow:
    """Record measured usage; a finished job is re-metered with it."""
    with plane.db.write() as s:
        job = _held(s, center_id, job_id, rep.attempt)
        declared = plane.network.center(center_id)
        center_checks.check_metered(declared, rep.metered)
        if rep.path is not None:
            center_checks.check_progress(declared, [], field="path")
        below = (job.usage or {}).get(BELOW)
        job.usage = {
            "run_real_s": rep.run_real_s,
            "staging_real_s": rep.staging_real_s,
            "bytes_staged": rep.bytes_staged,
            "staged_from": rep.staged_from,
            "transfers": [t.model_dump() for t in rep.transfers],
            "metered": rep.metered.model_dump(mode="json") if rep.metered else None,
        }
        if below is not None:
            job.usage[BELOW] = below
        if rep.scheduler is not None:
            # Flat scalars, so the job's detail (`JobDetail.usage`) shows them; not billed.
            for k, v in rep.scheduler.model_dump(mode="json").items():
                if v is not None:
                    job.usage["scheduler" if k == "scheduler" else f"scheduler_{k}"] = v
        if rep.path is not None:
            keep_below(job, center_id, rep.attempt, rep.path)
        if job.state in _FINAL:
            meter(plane, s, job)
        return job


# Where a job's path below this plane is kept (`JobRow.usage`, a JSON object): the
# region that reported it, for which attempt, and its hops (docs/federation.md).
BELOW = "below"


def keep_below(job: JobRow, center_id: str, attempt: int, path: list[PathHop]) -> None:
    """Store a region's report of where `job` is below it, when it says something new."""
    if attempt != job.attempt:
        return  # an older run's path: the current one is what the user asks about
    new = {
        "center": center_id,
        "attempt": attempt,
        "path": [h.model_dump(mode="json", exclude_none=True) for h in path],
    }
    usage = job.usage or {}
    old = usage.get(BELOW)
    if _settled(old, center_id, attempt) and not _settled(new, center_id, attempt):
        # A heartbeat taken before the run ended can arrive after the usage report
        # that carried the final path: the region's job does not come back to life.
        return
    if old != new:
        job.usage = {**usage, BELOW: new}  # a new object: the JSON column sees the change


def _settled(below: object, center_id: str, attempt: int) -> bool:
    """Whether a kept path below is this run's and ended at the region (its first hop final)."""
    if not isinstance(below, dict) or below.get("center") != center_id:
        return False
    hops = below.get("path") or []
    return (
        below.get("attempt") == attempt
        and bool(hops)
        and isinstance(hops[0], dict)
        and hops[0].get("state") in _FINAL
    )


def report_replica(
    plane: ControlPlane, center_id: str, dataset_id: str, rep: ReplicaReport
) -> DatasetView:
    """Record a verified copy of a dataset at the reporting center."""
    with plane.db.write() as s:
        ds = get_dataset(s, dataset_id)
        if ds is None:
            raise NotFoundError(f"no dataset '{dataset_id}'", field="dataset_id")
        declared = plane.network.center(center_id)
        if center_checks.REGION_TAG in declared.tags:
            # A region's copy is inside it, not under an agent's data root (docs/federation.md).
            center_checks.check_region_replica(rep.path)
        else:
            problem = replica_path_problem(rep.path, ds.tenant_id)
            if problem is not None:  # a copy lives in its tenant's area, like the first
                raise ValidationError(
                    f"path '{rep.path}' {problem}",
                    field="path",
                    hint=f"put the copy at {default_replica_path(ds.tenant_id, dataset_id)}",
                )
        if rep.sha256 != ds.sha256:
            raise ValidationError(
                f"checksum {rep.sha256[:12]}… does not match the dataset's {ds.sha256[:12]}…",
                field="sha256",
                hint="fetch the dataset again; the copy is corrupt",
            )
        if ds.residency and ds.residency not in declared.tags:
            raise ValidationError(
                f"dataset '{dataset_id}' must stay within '{ds.residency}'",
                field="center_id",
                hint="delete this copy",
            )
        add_replica(s, dataset_id, center_id, rep.path, datetime.now(UTC))
        return dataset_view(ds, replicas(s, [dataset_id]).get(dataset_id, []))
