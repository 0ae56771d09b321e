"""The reconciler: leases that expired, and jobs planned at centers that went offline.

Rules (after Kueue/MultiKueue, with the fencing rule of `protocol.fencing`):
every leased job carries `lease_renewed`, the real time the control plane
last heard its holder list it (set at lease, renewed by heartbeats, in the
database so that a restart or another replica sees it). A job whose lease was
not renewed for `requeue_after_s` (1.25 × the lease timeout) goes back to
PENDING (attempt recorded, the center avoided next time) — SCHEDULED jobs
too, whose lease reply never reached the agent. By then the agent has fenced
it: agents stop their jobs at half the lease timeout without an acknowledged
heartbeat. Expiry counts from when this replica became leader at the
earliest (`plane.leading_since`), so a restarted control plane first gives
agents a full period to heartbeat instead of requeueing everything at once.
Jobs merely planned at an offline center (never leased) are re-planned. The
center protocol's handlers (register, heartbeat, reports) live in
`server.center_protocol`. Only the leader runs `reconcile`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from computenet.model import JobState
from computenet.store import jobs as job_store
from computenet.store.centers import list_centers
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)


def reconcile(plane: ControlPlane) -> int:
    """Return jobs whose lease expired to PENDING, re-plan jobs at offline centers.

    Returns the number of jobs touched.
    """
    real = plane.clock.real()
    now = plane.clock.now()
    touched = 0
    expire_before = _expire_before(plane, real)
    if not _anything_to_reconcile(plane, real, expire_before):
        return 0
    rule = plane.settings.lease_rule
    with plane.db.write() as s:
        plane.fence(s)  # a deposed leader requeues nothing (server.leader)
        rows = {r.id: r for r in list_centers(s)}
        if expire_before is not None:
            for job in job_store.expired_leases(s, expire_before, for_update=True):
                cid = job.lease_center or "?"
                if plane.is_online(rows.get(cid), real):
                    why = f"{cid} no longer reports it"
                else:
                    why = f"{cid} stopped heartbeating"
                why += f" (lease not renewed for {rule.requeue_after_s:g}s)"
                lose(s, job, cid, now, why)
                touched += 1
        offline = [c.id for c in plane.network.centers if not plane.is_online(rows.get(c.id), real)]
        for job in job_store.scheduled_unleased(s, offline, for_update=True):
            center = unplace(job)
            job.reasons = [f"{center} went offline before starting it; re-planning"]
            job_store.transition(s, job, JobState.PENDING, now, job.reasons[0], center=center)
            touched += 1
    if touched:
        log.info("reconciler requeued or re-planned %d job(s)", touched)
    return touched


def _expire_before(plane: ControlPlane, real: float) -> float | None:
    """Leases last renewed before this real time have expired (None: none can yet).

    Expiry counts from max(last renewal, when this replica started leading): a
    replica that just took over has not been listening for long enough to know.
    """
    before = real - plane.settings.lease_rule.requeue_after_s
    return before if plane.leading_since <= before else None


def _anything_to_reconcile(plane: ControlPlane, real: float, expire_before: float | None) -> bool:
    """Whether `reconcile` has work, judged from a read (no write lock taken every second).

    The write transaction looks again, so a change between the two is never missed:
    at worst it waits for the next pass.
    """
    with plane.db.read() as s:
        if expire_before is not None and job_store.any_expired_lease(s, expire_before):
            return True
        rows = {r.id: r for r in list_centers(s)}
        offline = [c.id for c in plane.network.centers if not plane.is_online(rows.get(c.id), real)]
        return bool(offline) and bool(job_store.scheduled_unleased(s, offline))


def job_center(job: JobRow) -> str:
    """The center a job is placed at or leased by ('?' if none)."""
    return job.lease_center or job.center or "?"


def unplace(job: JobRow) -> str:
    """Clear a job's plan, center and lease (the one way: requeue, re-plan and preemption
    use it); returns the center it had (`job_center`), for the event that says why."""
    center = job_center(job)
    job.center = None
    job.placement = None
    job.chip = None
    job.planned_start = None
    job.planned_finish = None
    job.estimated_cny = None
    job.lease_center = None
    job.leased_at = None
    job.staging_at = None
    job.started_at = None
    job.lease_renewed = None
    return center


def lose(s: Session, job: JobRow, cid: str, now: datetime, why: str) -> None:
    """`cid` lost `job`: back to PENDING (avoiding `cid`), or CANCELLED if a cancel was asked."""
    if job.cancel_requested:
        job.finished_at = now
        job_store.transition(
            s, job, JobState.CANCELLED, now, f"cancelled: {why} while stopping it", center=cid
        )
        return
    attempt = job.attempt
    unplace(job)
    # A preempted job's checkpoint is at `cid`, which it now avoids: it starts over
    # elsewhere (and a stop asked of it is moot).
    job.stop_for = None
    job.work_left = None
    job.resume_center = None
    job.resume_chip = None
    avoid = list(job.avoid_centers or [])
    if cid not in avoid:
        avoid.append(cid)
    job.avoid_centers = avoid
    job.reasons = [f"lost at {cid} on attempt {attempt}: {why}; will run elsewhere"]
    job_store.transition(s, job, JobState.PENDING, now, job.reasons[0], center=cid)
