"""Preemption on the control plane: ask a center to stop a long preemptible job so that a
much shorter waiting one runs first, and put the stopped job back in the queue.

The rule is `scheduler.preemption` (pure, shared with the simulator); this module
gives it the cycle's inputs and carries out its answer:

1. Under a profile that preempts (`Profile.preempt`: `fastest`), each cycle asks
   the rule, before it places anything (`before_placing`), which RUNNING jobs to
   stop for which of the PENDING jobs it decides. Candidates: jobs whose spec
   says ``preemptible``, at centers whose agent registered `preempt`, not asked
   to stop already; jobs being stopped count as free chips. A victim is marked
   (`JobRow.stop_for`), with an event on both jobs, and its center's next
   heartbeat reply lists it in `preempt`. The job it was stopped for stays
   PENDING, told why, until the victim has stopped: then its chips are free and
   the cycle places it there (as the simulator, where a stop is immediate).
2. The agent stops the victim (SIGTERM, `stop_grace_s`, SIGKILL) and reports
   its end. `requeue` bills that attempt like any other (`metering.keep_part`),
   and puts the job back to PENDING with one preemption more, the work it has
   left, its center and chip (where its checkpoint is) and when it stopped: its
   next request is `preemption.resumed` (`scheduling.request_of`), queued behind
   the job it made room for. A SUCCEEDED report is a success; a cancel asked
   meanwhile wins (CANCELLED).

When the profile does not preempt, nothing here runs (no query).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy.orm import Session

from computenet.model import JobState
from computenet.scheduler import JobRequest, Snapshot, preemption
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.preemption import MAX_PREEMPTIONS, Preemption, Running, choose
from computenet.server.metering import keep_part, meter
from computenet.server.reconciler import unplace
from computenet.store import jobs as job_store
from computenet.store.centers import preempting_centers
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)


def running_of(j: JobRow, now: datetime) -> Running | None:
    """A leased job as the preemption rule sees it (None without a center, chip or plan)."""
    if not (j.lease_center and j.chip and j.planned_finish is not None):
        return None
    left = max((j.planned_finish - now).total_seconds(), 0.0)
    return Running(
        j.id, j.lease_center, j.chip, j.chips, left, int(j.preemptions or 0), int(j.priority or 0)
    )


class Seen(NamedTuple):
    """What `before_placing` works from, read in the cycle's own read transaction."""

    stopping: list[JobRow]  # asked to stop, end not reported yet
    candidates: list[JobRow]  # preemptible, RUNNING at an online center that preempts


def read(s: Session, snap: Snapshot) -> Seen:
    """Read `Seen` with the cycle's snapshot (`snap`: which centers are online)."""
    up = {c.id for c, on in zip(snap.network.centers, snap.online, strict=True) if on}
    capable = [cid for cid in preempting_centers(s) if cid in up]
    return Seen(job_store.stopping(s), job_store.preemptible_running(s, capable))


def before_placing(
    plane: ControlPlane,
    now: datetime,
    snap: Snapshot,
    requests: Sequence[JobRequest],
    signatures: Sequence[Hashable],
    seen: Seen,
) -> tuple[list[JobRequest], list[Hashable], dict[str, list[str]]]:
    """Ask for the stops this cycle calls for (module doc, step 1), before it places jobs.

    `requests` (with their `signatures`) are the PENDING jobs the cycle decides;
    `seen` is what `read` found. Returns them without the jobs that wait for a
    victim to stop (this cycle's or an earlier one's), and why those wait: they
    are placed once its chips are free.
    """
    profile = PROFILES[plane.settings.profile]
    held = {j.stop_for: (j.id, j.lease_center or "?") for j in seen.stopping if j.stop_for}
    victims = [r for j in seen.candidates if (r := running_of(j, now)) is not None]
    if victims and requests:
        waiting = [r for r in requests if r.id not in held]
        freeing = [r for j in seen.stopping if (r := running_of(j, now)) is not None]
        chosen = choose(snap, waiting, victims, profile, freeing)
        if chosen:
            held.update(_ask(plane, now, chosen))
    keep = [k for k, r in enumerate(requests) if r.id not in held]
    reasons = {
        r.id: [
            f"runs once {held[r.id][0]}, a longer preemptible job, has stopped at {held[r.id][1]}"
        ]
        for r in requests
        if r.id in held
    }
    return [requests[k] for k in keep], [signatures[k] for k in keep], reasons


def _ask(
    plane: ControlPlane, now: datetime, chosen: Sequence[Preemption]
) -> dict[str, tuple[str, str]]:
    """Mark the chosen victims asked to stop, with an event on both jobs; returns
    {waiting job: (victim, center)} for the stops asked."""
    out: dict[str, tuple[str, str]] = {}
    with plane.db.write() as s:
        plane.fence(s)  # a deposed leader asks nothing (server.leader)
        ids = {p.victim for p in chosen} | {p.for_job for p in chosen}
        rows = job_store.get_jobs(s, sorted(ids), for_update=True)
        for p in chosen:
            v, w = rows.get(p.victim), rows.get(p.for_job)
            # Either may have changed since the read: the victim ended, was cancelled or
            # moved; the waiting job was cancelled. Then nothing is asked.
            if (
                v is None
                or v.state != JobState.RUNNING.value
                or v.stop_for is not None
                or v.cancel_requested
                or v.lease_center != p.center
                # Checked here too, where it is written: each stop bills one more part
                # (`JobRow.parts_billed`), so their number stays bounded.
                or int(v.preemptions or 0) >= MAX_PREEMPTIONS
            ):
                continue
            if w is None or w.state != JobState.PENDING.value or w.cancel_requested:
                continue
            v.stop_for = w.id
            why = (
                f"preempted at {p.center} for the shorter job {w.id}; it resumes at {p.center}"
                " from its checkpoint"
            )
            v.reasons = [f"{why} (asked {p.center} to stop it)"]
            job_store.add_event(s, v.id, now, why, center=p.center)
            for_w = f"runs once {v.id}, a longer preemptible job, has stopped at {p.center}"
            job_store.add_event(s, w.id, now, for_w, center=p.center)
            out[w.id] = (v.id, p.center)
    if out:
        log.info("preemption: asked %d job(s) to stop for shorter waiting ones", len(out))
    return out


def work_left(job: JobRow, at: datetime) -> float:
    """The share of its work `job` has left when its current attempt stops at `at`.

    The rule is `preemption.work_left` (the simulator plans with it too), fed from
    the stored plan: this attempt's planned run, how long it ran, and whether it
    resumed from a checkpoint (then it restored first).
    """
    before = 1.0 if job.work_left is None else float(job.work_left)
    planned = float((job.placement or {}).get("run_s") or 0.0)
    ran = (at - job.started_at).total_seconds() if job.started_at is not None else 0.0
    return preemption.work_left(before, ran, planned, resumed=job.resume_center is not None)


def requeue(
    plane: ControlPlane, s: Session, job: JobRow, at: datetime, center: str, text: str
) -> None:
    """The end of an attempt asked to stop for preemption (module doc, step 2).

    `job` is RUNNING at `center` with `stop_for` set, and its agent reported it
    stopped (not SUCCEEDED) at network time `at`; no cancel was asked.
    """
    for_job = job.stop_for
    job.finished_at = at
    keep_part(plane, job)  # this attempt ran and is reported: it is billed
    left = work_left(job, at)
    ran = (at - job.started_at) if job.started_at is not None else timedelta(0)
    chip = job.chip
    unplace(job)
    job.finished_at = None
    job.exit_code = None
    job.stop_for = None
    job.preemptions = int(job.preemptions or 0) + 1
    job.work_left = left
    job.resume_center = center
    job.resume_chip = chip
    job.stopped_at = at
    meter(plane, s, job)  # the charge row: the attempts billed so far
    job.usage = {}  # that attempt's usage is billed; the next attempt reports its own
    minutes = ran.total_seconds() / 60
    job.reasons = [
        f"preempted at {center} for the shorter job {for_job} after {minutes:.0f} min"
        f" ({center}: {text}); waiting to resume there from its checkpoint,"
        f" {left:.0%} of its work left"
    ]
    job_store.transition(s, job, JobState.PENDING, at, job.reasons[0], center=center)


def withdraw(s: Session, center_id: str, now: datetime) -> int:
    """`center_id` registered again without `preempt`: it will not stop the jobs it was
    asked to, so those stops are withdrawn (each job runs on; the job it was asked for
    is no longer held for its chips and is planned afresh). Returns how many."""
    n = 0
    for j in job_store.held_by(s, center_id, for_update=True):
        if j.stop_for is None:
            continue
        why = (
            f"{center_id} registered without preempt: it runs on (the stop asked for"
            f" {j.stop_for} is withdrawn)"
        )
        j.stop_for = None
        j.reasons = [why]
        job_store.add_event(s, j.id, now, why, center=center_id)
        n += 1
    return n
