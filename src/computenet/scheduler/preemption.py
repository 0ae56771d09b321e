"""Preemption: stop a long preemptible job so that a much shorter waiting one runs now.

Jobs that declare ``preemptible: true`` agree to be stopped (SIGTERM, a grace
period, then SIGKILL) and to resume later *at the same center* from what they
saved under ``$CNET_CHECKPOINT_DIR`` (docs/user-guide.md, "Preemptible jobs").
Under a profile that minimizes completion time (`Profile.preempt`, the
`fastest` profile), a job waiting for chips may take them from such jobs,
shortest remaining first, as Gavel's and Tiresias's schedulers do with rounds
and least-attained-service; here it happens only when it clearly pays:

* the waiting job is short against the victim: the victim's planned time
  left exceeds `SHORTER_BY` × the waiting job's run plus `RESUME_S` (what
  the victim loses restoring its checkpoint), so the sum of completion times
  falls by at least that margin (shortest-remaining-first's exchange);
* only on the waiting job's fastest eligible pool, and only when no chips of
  it are free now (chips being freed by jobs already asked to stop count as
  free, so a cycle that runs before a victim has stopped asks for no more);
* a job is preempted at most `MAX_PREEMPTIONS` times, never by a job of
  lower priority; victims are taken longest time left first, until the job fits.

The victim goes back to the queue with the work it had left plus the restore
(`resumed`), pinned to its center where its checkpoint is, and queued as of
when it stopped. Pure: the server's
cycle (`server.scheduling`) and the simulator (`sim.simulator`) both call
`choose` and `resumed`; what differs is only how a victim is stopped.

Measured on Gavel's seed0-2869ce trace (`bench/sim_quality.py --only gavel`,
docs/performance.md): average JCT 1.091 × the floor against 1.106 × without
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from computenet.scheduler.framework import job_pools
from computenet.scheduler.index import NetworkIndex
from computenet.scheduler.plugins import Profile
from computenet.scheduler.snapshot import JobRequest, Snapshot

# A victim's time left must exceed this many times the waiting job's run (plus RESUME_S).
SHORTER_BY = 2.0
# Seconds a resumed job spends restoring its checkpoint (added to its plan).
RESUME_S = 600.0
# A job is preempted at most this many times.
MAX_PREEMPTIONS = 1
# The least fraction of its work a preempted job is planned with again: progress is
# estimated from its planned run, and a job never resumes with nothing to do.
MIN_WORK_LEFT = 0.02


@dataclass(frozen=True)
class Running:
    """A running job as preemption sees it (callers pass only preemptible ones)."""

    id: str
    center: str
    chip: str
    count: int
    left_s: float  # planned seconds of its run still to go
    preemptions: int = 0
    priority: int = 0


@dataclass(frozen=True)
class Preemption:
    """Stop `victim` (at `center`, on `chip`) so that `for_job` may run there."""

    victim: str
    center: str
    chip: str
    for_job: str


def choose(
    snap: Snapshot,
    waiting: Sequence[JobRequest],
    running: Sequence[Running],
    profile: Profile,
    stopping: Sequence[Running] = (),
) -> list[Preemption]:
    """The jobs to stop this cycle, and for whom (see the module docstring).

    `waiting`: pending jobs, in any order (the shortest go first); `running`:
    the preemptible running jobs; `stopping`: jobs already asked to stop and
    still holding their chips (counted as free).
    """
    if not profile.preempt or not waiting or not running:
        return []
    idx = snap.index
    free = snap.free[:, 0].astype(np.int64).copy()
    for r in stopping:
        p = idx.pool_of.get((r.center, r.chip))
        if p is not None:
            free[p] += r.count
    by_pool: dict[int, list[Running]] = {}
    for r in running:
        p = idx.pool_of.get((r.center, r.chip))
        if p is not None and r.preemptions < MAX_PREEMPTIONS:
            by_pool.setdefault(p, []).append(r)
    if not by_pool:
        return []
    fastest: list[tuple[float, int, JobRequest]] = []
    for job in waiting:
        jp = job_pools(snap, job, profile)
        if jp.pools.size == 0:
            continue
        run_s = job.cu_hours / (jp.pflops * job.count) * 3600.0 + jp.transfer_s
        k = int(np.argmin(run_s))
        fastest.append((float(run_s[k]), int(jp.pools[k]), job))
    fastest.sort(key=lambda t: (t[0], t[2].id))
    taken: set[str] = set()
    out: list[Preemption] = []
    for run_s, p, job in fastest:
        if free[p] >= job.count:
            free[p] -= job.count  # it can start there now: what it takes is not free for others
            continue
        floor = SHORTER_BY * run_s + RESUME_S
        cands = sorted(
            (
                r
                for r in by_pool.get(p, ())
                if r.id not in taken and r.left_s > floor and r.priority <= job.priority
            ),
            key=lambda r: (-r.left_s, r.id),
        )
        need = job.count - int(free[p])
        chosen: list[Running] = []
        for r in cands:
            if need <= 0:
                break
            chosen.append(r)
            need -= r.count
        if need > 0:
            continue
        for r in chosen:
            taken.add(r.id)
            free[p] += r.count
            out.append(Preemption(r.id, r.center, r.chip, job.id))
        free[p] -= job.count
    return out


def work_left(before: float, ran_s: float, planned_run_s: float, resumed: bool) -> float:
    """The share of its work a job has left when an attempt stops, as its plan tells it.

    `before`: the share it had when the attempt began (1 for a first run); `ran_s`
    and `planned_run_s`: how long the attempt ran and was planned to run. A resumed
    attempt (`resumed`) spent its first `RESUME_S` restoring, which is no progress.
    What ran is taken off what it had left; at least `MIN_WORK_LEFT`. The server and
    the simulator both plan a resumed job with this (the simulator's true progress
    is its own).
    """
    if resumed:
        ran_s, planned_run_s = ran_s - RESUME_S, planned_run_s - RESUME_S
    done = min(max(ran_s, 0.0) / planned_run_s, 1.0) if planned_run_s > 0 else 0.0
    return min(max(before * (1.0 - done), MIN_WORK_LEFT), 1.0)


def resumed(
    index: NetworkIndex,
    job: JobRequest,
    left: float,
    center: str,
    chip: str,
    stopped_at: datetime,
) -> JobRequest:
    """The request of a preempted job: the work it had left (a fraction of its work,
    `left`), plus `RESUME_S` of restoring on the chips it ran on, pinned to `center`
    (where its checkpoint is), queued as of when it stopped (`stopped_at`): behind the
    job it was stopped for, which would otherwise find it first in the cycle's order
    and lose the chips back to it."""
    left = min(max(left, 0.0), 1.0)
    p = index.pool_of.get((center, chip))
    restore = 0.0
    if p is not None:
        restore = RESUME_S / 3600.0 * float(index.pflops[job.workload_class][p]) * job.count
    return replace(
        job,
        cu_hours=max(job.cu_hours * left + restore, 1e-6),
        pin_center=center,
        # A microsecond after the stop: after the job it was stopped for even when that
        # one arrived at the very instant (ties are ordered by id).
        submitted_at=stopped_at + timedelta(microseconds=1),
    )
