"""Re-planning: a SCHEDULED job that no agent has leased yet moves to a better plan.

When a job ends (or is cancelled, or fails) before its planned finish, its
chips are free from the next cycle on, and a job planned to start after it
may now start earlier, or more cheaply. `replan` asks the scheduler again,
job by job, each against the calendar without its own reservation, and keeps
a new plan only when it is better by a margin (hysteresis), so that plans do
not flap:

    a new plan replaces the old one only if it starts no later and finishes
    no later, and either starts at least `MIN_EARLIER` earlier or costs at
    least `MIN_SAVING` (and at least ¥0.01) less.

The new plan is the scheduler's own choice under the server's profile, with
the job's budget and deadline checked as for any placement; an earlier start
may cost more than the old quote (a job without a deadline runs as soon as
chips are free, as it would have had they been free when it was placed). A
plan never moves later, and every move either moves it earlier by
`MIN_EARLIER` or makes it cheaper at no later start, so no sequence of moves
can come back to a plan it left: plans cannot flap.
Whether the job was leased meanwhile is for the store to settle (a
compare-and-set, `computenet.store.jobs.replan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal

import numpy as np

from computenet.model import Placement
from computenet.model.center import CST
from computenet.scheduler.snapshot import JobRequest, Reservation, Snapshot, hold
from computenet.scheduler.strategies import schedule_cycle

# The hysteresis: how much earlier, or how much cheaper (a fraction), a new plan must be.
MIN_EARLIER = timedelta(minutes=15)
MIN_SAVING = Decimal("0.02")
# At most this many planned jobs are looked at per cycle (server and simulator alike).
REPLAN_BATCH = 64
_MIN_SAVING_CNY = Decimal("0.01")


@dataclass(frozen=True)
class Planned:
    """A SCHEDULED job's current plan: its request, the chips it holds, when, at what cost."""

    request: JobRequest
    held: Reservation
    cost_cny: Decimal


@dataclass(frozen=True)
class Replan:
    """A better plan for a job, with the reason it replaced the old one."""

    job_id: str
    placement: Placement
    reasons: tuple[str, ...]  # why it moved, then the scheduler's reasons for the new plan


def better(new: Placement, old: Planned) -> str | None:
    """Why `new` should replace `old` under the hysteresis rule, or None to keep `old`."""
    if new.planned_start > old.held.start or new.finish > old.held.end:
        return None
    earlier = old.held.start - new.planned_start
    saved = old.cost_cny - new.total_cny
    was, now = old.held.start.astimezone(CST), new.planned_start.astimezone(CST)
    change = f"start {was:%m-%d %H:%M} → {now:%m-%d %H:%M}, ¥{old.cost_cny} → ¥{new.total_cny}"
    if earlier >= MIN_EARLIER:
        minutes = round(earlier.total_seconds() / 60)
        return f"re-planned: chips freed early, starts {minutes} min sooner ({change})"
    if saved >= max(old.cost_cny * MIN_SAVING, _MIN_SAVING_CNY):
        return f"re-planned: a cheaper start opened, ¥{saved} less ({change})"
    return None


def replan(snap: Snapshot, planned: Sequence[Planned], profile: str) -> list[Replan]:
    """Better plans for `planned` (in the order given), each kept only if `better` says so.

    `snap` is the cycle's snapshot built without the reservations of
    `planned` (everything else held, agents' reports applied). Each job is
    evaluated against it less every other job's plan (moves made so far
    included), so no two plans overlap.
    """
    free = snap.free.astype(np.int64, copy=True)
    for p in planned:
        hold(free, snap.index, snap.now, p.held)
    out: list[Replan] = []
    for p in planned:
        hold(free, snap.index, snap.now, p.held, sign=-1)
        trial = replace(snap, free=np.maximum(free, 0))
        d = schedule_cycle(trial, [p.request], profile)[0]
        why = better(d.placement, p) if d.placement is not None else None
        if d.placement is None or why is None:
            hold(free, snap.index, snap.now, p.held)
            continue
        pl = d.placement
        hold(
            free,
            snap.index,
            snap.now,
            Reservation(pl.center, pl.chip, pl.count, pl.planned_start, pl.finish),
        )
        out.append(Replan(p.request.id, pl, (why, *d.reasons)))
    return out
