"""The `lookahead` strategy: reserve a far cheap hour only when the job cannot wait.

Against the LP bound on `china` (bench/sim_quality.py), almost all that the
one-by-one schedule loses on jobs with deadlines is contention for the
cheapest valley hours: a job with days of slack arrives first and reserves
tonight's valley, and a job with hours of slack that arrives in the evening
finds it full and runs in flat or peak hours, at another center or on a
slower chip. The LP gives tonight's valley to the tight job and a later night
to the slack one. A scheduler that does not know what will arrive can still
avoid the first half of the mistake: do not reserve a start far ahead while
the deadline leaves room to decide later.

So this strategy is the greedy cycle (jobs in `order_key` order: the nearest
deadline first) with one rule (`defers`): a batch job with a deadline whose
best option finishes with room to spare before the deadline is left unplaced
this cycle — its chips still counted as taken for the jobs after it — when
that option starts `COMMIT_H` or more from now, or when the deadline would
still hold with the same start a day later (`LATER_DAY_H`: tomorrow's
valley would do as well, so tonight's is left to jobs that cannot wait). A
later cycle decides it again, together with the jobs that arrived
meanwhile, the nearest deadlines first. A job is placed once its best start
is near and its deadline leaves no later day, or once its deadline leaves
no room. Jobs without a deadline are never deferred (their wait is the
operator's patience, counted from each cycle) and neither are interactive
jobs.

Measured (`bench/sim_quality.py --only china`, synthetic 5,000 jobs, 3 days,
seed 11; docs/performance.md has the table): 1.067× the LP bound with the
batch optimizer, 1.050× with this rule, the same 0.05 % misses; jobs with
deadlines finish later (average JCT 6.7 → 8.6 h), as their deadlines allow.
`COMMIT_H` was chosen on that workload (1 h: 1.056×, 3 h: 1.052×, 4 h:
1.050×, 5 h: 1.055×), so the last points are tuned, not general.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta

from computenet.model import Placement
from computenet.model.center import CST
from computenet.scheduler.framework import Decision, shift_limit_h
from computenet.scheduler.greedy import greedy_cycle
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import JobRequest, Snapshot

# A best start at least this many hours ahead is decided again by a later cycle ...
COMMIT_H = 4.0
# ... while the deadline leaves this much room after the planned finish: hours, plus
# a share of the run, so that losing the awaited start to a tighter job later still
# leaves options that meet the deadline.
DEFER_MARGIN_H = 1.0
DEFER_MARGIN_SHARE = 0.25
# A job whose deadline would still hold were it started this many hours after its best
# start (the same tariff hour a day later) is deferred however near that start is.
LATER_DAY_H = 24.0
# No job is left unplaced by this rule longer than this after its submission: then it
# gets its best plan like greedy's, so that a job with a week of slack is not shown as
# pending for days (users give up on such jobs: the simulator withdraws them after 7).
MAX_DEFER_H = 72.0
# At most this many jobs wait at once: beyond it the rest of the cycle is placed as by
# greedy, so that a long backlog of waiting jobs never crowds out the others. A server
# or simulator looks at a bounded batch of pending jobs per cycle, nearest deadline
# first (the simulator's `max_batch`, 512): without the cap, 100k jobs × 30 days on
# `china` filled it with waiting jobs and left 7 % of jobs, those without deadlines,
# pending until withdrawn. 448 leaves 64 places per cycle for the others.
MAX_WAITING = 448


def defers(snapshot: Snapshot, job: JobRequest, placement: Placement) -> str | None:
    """Why `placement` of `job` should be decided by a later cycle, or None to keep it.

    Never once the job has waited `MAX_DEFER_H` since its submission.
    """
    if job.deadline is None or job.latency_class != "batch":
        return None
    # Only where the one shifting rule lets the job wait as long as its deadline holds.
    if math.isfinite(shift_limit_h(snapshot, job, PROFILES["min-cost"])):
        return None
    if job.submitted_at is not None and snapshot.now >= _last_deferral(job.submitted_at):
        return None
    ahead_h = (placement.planned_start - snapshot.now).total_seconds() / 3600.0
    room_h = (job.deadline - placement.finish).total_seconds() / 3600.0
    need_h = DEFER_MARGIN_H + DEFER_MARGIN_SHARE * placement.run_s / 3600.0
    if (ahead_h < COMMIT_H and room_h < LATER_DAY_H + need_h) or room_h < need_h:
        return None
    start = placement.planned_start.astimezone(CST)
    return (
        f"waits: its best start is {start:%m-%d %H:%M} at {placement.center}"
        f" (¥{placement.total_cny}), {room_h:.1f} h before its deadline; decided again"
        " nearer the time, with the jobs that arrive meanwhile (nearest deadline first)"
    )


def _last_deferral(submitted_at: datetime) -> datetime:
    return submitted_at + timedelta(hours=MAX_DEFER_H)


def lookahead_cycle(
    snapshot: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str = "min-cost",
    *,
    explain: bool = True,
    signatures: Sequence[Hashable] | None = None,
    waiting: int = 0,
    explain_placed: bool = True,
) -> tuple[list[Decision], dict[str, datetime]]:
    """`lookahead`'s decisions, and for each deferred job the instant worth deciding it again.

    Until then (its best start less `COMMIT_H`, at the latest `MAX_DEFER_H`
    after its submission) the same option, were it
    still the best, would be deferred again: a caller that keeps the decision
    of a deferred job until that instant (the simulator, to keep long
    backlogs fast) skips only evaluations whose outcome it knows, unless
    chips freed or taken meanwhile change the job's best option. `waiting`:
    jobs already waiting that are not in `jobs` (kept so by such a caller);
    with them at most `MAX_WAITING` wait. `explain_placed`: as `greedy_cycle`'s.
    """
    wake: dict[str, datetime] = {}

    def rule(snap: Snapshot, job: JobRequest, placement: Placement) -> str | None:
        if waiting + len(wake) >= MAX_WAITING:
            return None
        why = defers(snap, job, placement)
        if why is not None:
            at = placement.planned_start - timedelta(hours=COMMIT_H)
            if job.submitted_at is not None:
                at = min(at, _last_deferral(job.submitted_at))
            wake[job.id] = at
        return why

    shifts = PROFILES[profile].shift
    out = greedy_cycle(
        snapshot,
        jobs,
        profile,
        explain=explain,
        signatures=signatures,
        defer=rule if shifts else None,
        explain_placed=explain_placed,
    )
    return out, wake


def lookahead(
    snapshot: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str = "min-cost",
    *,
    explain: bool = True,
    signatures: Sequence[Hashable] | None = None,
) -> list[Decision]:
    """The `lookahead` strategy: the greedy cycle, far starts deferred (`defers`)."""
    return lookahead_cycle(snapshot, jobs, profile, explain=explain, signatures=signatures)[0]
