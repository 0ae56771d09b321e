"""The reconciler: leases that expired, and jobs planned at centers that went offline.

Rules (after Kueue/MultiKueue): a center whose heartbeats stop for longer
than the lease timeout is treated as having lost everything it held — its
jobs go back to PENDING (attempt recorded, the center avoided next time) and
jobs merely planned there are re-planned. The center protocol's handlers
(register, heartbeat, reports) live in `server.center_protocol`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from computenet.model import TERMINAL_STATES, JobState
from computenet.store import jobs as job_store
from computenet.store.centers import list_centers
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)


def reconcile(plane: ControlPlane) -> int:
    """Return lost jobs to PENDING and re-plan jobs at offline centers; returns jobs touched."""
    real = plane.clock.real()
    now = plane.clock.now()
    touched = 0
    if not _anything_to_reconcile(plane, real):
        return 0
    with plane.db.write() as s:
        rows = {r.id: r for r in list_centers(s)}
        offline = [c.id for c in plane.network.centers if not plane.is_online(rows.get(c.id), real)]
        for cid in offline:
            for job in job_store.held_by(s, cid, for_update=True):
                timeout = plane.settings.lease_timeout_s
                why = f"{cid} stopped heartbeating (lease timeout {timeout:g}s)"
                lose(s, job, cid, now, why)
                touched += 1
        for job in job_store.scheduled_unleased(s, offline, for_update=True):
            _unplace(job)
            job.reasons = [f"{job_center(job)} went offline before starting it; re-planning"]
            job_store.transition(
                s, job, JobState.PENDING, now, job.reasons[0], center=job_center(job)
            )
            job.center = None
            touched += 1
        # Jobs a live agent stopped listing for a whole lease timeout are lost too.
        for job_id, since in list(plane.missing_since.items()):
            if real - since <= plane.settings.lease_timeout_s:
                continue
            plane.missing_since.pop(job_id, None)
            gone = job_store.get_job(s, job_id, for_update=True)
            if gone is None or gone.lease_center is None or gone.state in _FINAL:
                continue
            cid = gone.lease_center
            lose(s, gone, cid, now, f"{cid} no longer reports it")
            touched += 1
    if touched:
        log.info("reconciler requeued or re-planned %d job(s)", touched)
    return touched


_FINAL = {x.value for x in TERMINAL_STATES}


def _anything_to_reconcile(plane: ControlPlane, real: float) -> bool:
    """Whether `reconcile` has work, judged from a read (no write lock taken every second).

    The write transaction looks again, so a change between the two is never missed:
    at worst it waits for the next pass.
    """
    timeout = plane.settings.lease_timeout_s
    if any(real - since > timeout for since in list(plane.missing_since.values())):
        return True
    with plane.db.read() as s:
        rows = {r.id: r for r in list_centers(s)}
        offline = [c.id for c in plane.network.centers if not plane.is_online(rows.get(c.id), real)]
        if not offline:
            return False
        if job_store.scheduled_unleased(s, offline):
            return True
        return any(job_store.held_by(s, cid) for cid in offline)


def job_center(job: JobRow) -> str:
    """The center a job is placed at or leased by ('?' if none)."""
    return job.lease_center or job.center or "?"


def _unplace(job: JobRow) -> None:
    job.placement = None
    job.chip = None
    job.planned_start = None
    job.planned_finish = None
    job.estimated_cny = None
    job.lease_center = None
    job.leased_at = None
    job.staging_at = None
    job.started_at = None


def lose(s: Session, job: JobRow, cid: str, now: datetime, why: str) -> None:
    """`cid` lost `job`: back to PENDING (avoiding `cid`), or CANCELLED if a cancel was asked."""
    if job.cancel_requested:
        job.finished_at = now
        job_store.transition(
            s, job, JobState.CANCELLED, now, f"cancelled: {why} while stopping it", center=cid
        )
        return
    attempt = job.attempt
    _unplace(job)
    job.center = None
    avoid = list(job.avoid_centers or [])
    if cid not in avoid:
        avoid.append(cid)
    job.avoid_centers = avoid
    job.reasons = [f"lost at {cid} on attempt {attempt}: {why}; will run elsewhere"]
    job_store.transition(s, job, JobState.PENDING, now, job.reasons[0], center=cid)
