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

Under a profile that never shifts a start for cheaper power (`fastest`), every
later start is a wait for chips, and the cycle's second rule applies
(`waits_for_chips`): a batch job without a deadline whose best start is later
than now is not given a reservation either; it holds its chips for the rest of
the cycle and is decided again by the next one, with the jobs that arrived
meanwhile. Among such jobs — ties of the one order (`order_key`) but for their
submit time — the cycle takes the order whose plans finish them soonest in sum
(`soonest_order`: the standing order, shortest run first and smallest area
first, then single moves while one helps, within a budget of trial
placements). On the Gavel trace (seed0, average JCT against the floor of each
job alone on its fastest GPU) that is 1.106× against 1.136× for first come,
first reserved (1.091× with preemption, scheduler/preemption.py): a short job
that arrives while long ones wait runs first, and a job no longer starts at
the hour its reservation named when chips free earlier. No job is kept waiting
so longer than `MAX_CHIP_WAIT_H` after its submission: then it gets a
reservation, so that a stream of short jobs cannot starve a long one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime, timedelta
from typing import Any

from computenet.model import Placement
from computenet.model.center import CST
from computenet.scheduler.framework import Decision, place, shift_limit_h
from computenet.scheduler.greedy import greedy_cycle
from computenet.scheduler.ordering import order_key
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
# A job waiting for chips (`waits_for_chips`) is decided again every cycle at most this
# long after its submission; then it keeps a reservation like greedy's, in its place.
MAX_CHIP_WAIT_H = 24.0
# `soonest_order` reorders at most this many jobs of one tie group (the first in the
# one order; the rest follow them) and places at most this many trial plans a cycle.
SEARCH_JOBS = 16
SEARCH_PLACEMENTS = 2_000
# What an unplaceable job adds to a trial order's sum of finishes (hours): more than
# any plan within the horizon can take.
_UNPLACED_H = 1e4


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


def waits_for_chips(
    snapshot: Snapshot, job: JobRequest, placement: Placement, profile: str
) -> str | None:
    """Why `placement` of `job` should be decided by a later cycle (it waits for chips), or None.

    Only under a profile that never shifts a start (then a later start means
    the chips are busy until then), for batch jobs without a deadline (one
    with a deadline keeps its reservation, so that it holds), and never once
    the job has waited `MAX_CHIP_WAIT_H` since its submission.
    """
    if PROFILES[profile].shift or job.deadline is not None or job.latency_class != "batch":
        return None
    if placement.planned_start <= snapshot.now:
        return None
    if job.submitted_at is not None and snapshot.now - job.submitted_at >= timedelta(
        hours=MAX_CHIP_WAIT_H
    ):
        return None
    start = placement.planned_start.astimezone(CST)
    return (
        f"waits for chips: its best start is {start:%m-%d %H:%M} at {placement.center}"
        f" ({placement.count}× {placement.chip}); decided again by each cycle until it"
        " starts, with the jobs pending then (the order that finishes them soonest)"
    )


def _may_wait_for_chips(job: JobRequest) -> bool:
    return job.deadline is None and job.latency_class == "batch"


def soonest_order(
    snapshot: Snapshot, jobs: Sequence[JobRequest], profile: str
) -> Callable[[JobRequest, datetime], Any]:
    """The cycle's sort key: `order_key`, with jobs that may wait for chips reordered among ties.

    Under a profile that shifts starts this is `order_key` itself. Otherwise
    each run of jobs that tie in `order_key` but for submit time and id, and
    that `waits_for_chips` may leave pending (batch, no deadline), is put in
    the order whose plans — each job on its best option after the jobs before
    it, as the greedy cycle places them — finish soonest in sum: the standing
    order, shortest run first (alone on the fastest eligible chip) and
    smallest area first (that run × chips) are tried, then moving one job to
    another place while that helps. At most `SEARCH_JOBS` jobs of a run are
    reordered and `SEARCH_PLACEMENTS` trial plans placed; ties keep the
    earlier order. Pure: trial plans are placed on copies of the calendar.
    """
    prof = PROFILES[profile]
    now = snapshot.now
    if prof.shift or len(jobs) < 2:
        return order_key
    keys = [order_key(j, now) for j in jobs]
    base = sorted(range(len(jobs)), key=keys.__getitem__)
    rank = {k: r for r, k in enumerate(base)}
    budget = SEARCH_PLACEMENTS
    free = snapshot.free.copy()
    pos = 0
    while pos < len(base) and budget > 0:
        k0 = base[pos]
        end = pos + 1
        if _may_wait_for_chips(jobs[k0]):
            while (
                end < len(base)
                and end - pos < SEARCH_JOBS
                and _may_wait_for_chips(jobs[base[end]])
                and keys[base[end]][:-2] == keys[k0][:-2]
            ):
                end += 1
        group = base[pos:end]
        if len(group) > 1:
            best, budget = _search(snapshot, free, jobs, group, prof, budget)
            for r, k in zip(sorted(rank[k] for k in group), best, strict=True):
                rank[k] = r
            group = best
        for k in group:  # the calendar the jobs after this run are placed on
            place(snapshot, free, jobs[k], prof, False)
        pos = end
    by_id = {jobs[k].id: r for k, r in rank.items()}
    return lambda job, _now: by_id[job.id]


def _search(
    snapshot: Snapshot,
    free: Any,
    jobs: Sequence[JobRequest],
    group: list[int],
    prof: Any,
    budget: int,
) -> tuple[list[int], int]:
    """`soonest_order`'s search over one run of jobs: (the best order found, budget left)."""
    now = snapshot.now
    idx = snapshot.index
    n = len(group)

    def finishes(order: list[int]) -> float:
        cal = free.copy()
        total = 0.0
        for k in order:
            d = place(snapshot, cal, jobs[k], prof, False)
            p = d.placement
            total += _UNPLACED_H if p is None else (p.finish - now).total_seconds() / 3600.0
        return total

    def alone_h(k: int) -> float:
        j = jobs[k]
        return j.cu_hours / (j.count * float(idx.pflops[j.workload_class].max()))

    seeds = [
        group,
        sorted(group, key=alone_h),
        sorted(group, key=lambda k: alone_h(k) * jobs[k].count),
    ]
    best, best_v = group, math.inf
    for order in seeds:
        if budget < n:
            break
        budget -= n
        v = finishes(order)
        if v < best_v - 1e-9:
            best, best_v = order, v
    improved = True
    while improved and budget >= n:
        improved = False
        for i in range(n):
            for j in range(n):
                if i == j or budget < n:
                    continue
                trial = best[:i] + best[i + 1 :]
                trial.insert(j, best[i])
                budget -= n
                v = finishes(trial)
                if v < best_v - 1e-9:
                    best, best_v, improved = trial, v, True
    return best, budget


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

    def for_chips(snap: Snapshot, job: JobRequest, placement: Placement) -> str | None:
        # Decided again by the next cycle: nothing to keep until a later instant.
        return waits_for_chips(snap, job, placement, profile)

    shifts = PROFILES[profile].shift
    out = greedy_cycle(
        snapshot,
        jobs,
        profile,
        explain=explain,
        signatures=signatures,
        defer=rule if shifts else for_chips,
        order=order_key if shifts else soonest_order(snapshot, jobs, profile),
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
