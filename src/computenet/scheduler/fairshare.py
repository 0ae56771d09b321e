"""A scheduling cycle under fair share: the one rule the server and the simulator follow.

With one tenant pending, a cycle is the configured strategy and profile,
unchanged. With two or more (`fair_cycle`):

1. Every job gets its fair-share tag (`ordering.with_shares`: the tenant's
   decayed CU·h over its weight, plus the CU·h of its jobs ahead), so the
   cycle takes the tenants' jobs interleaved in proportion to their weights.
2. No batch job is held for cheaper power (patience 0): a hold would keep
   chips that another tenant may be owed.
3. The configured cycle decides first. If every placement starts now (within
   `tenancy.FAIR_START_WINDOW`), nothing is contended and its decisions stand.
4. Otherwise chips are short, and they go to jobs in fair-share order as they
   free (`start_now_cycle`): each job in turn takes its profile's best option
   among those that start now (within `FAIR_START_WINDOW`), and a job with
   none waits PENDING with the reason and its earliest start. It holds no
   reservation for later, so a tenant that comes back from idle gets the
   next chips that free, in fair-share order, and no running job is stopped.
   Without this step a job would decline the chips free now to wait for a
   cheaper or faster pool, and lose its turn to the next tenant's job.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from datetime import timedelta

import numpy as np

from computenet.model.center import CST
from computenet.scheduler.framework import Decision, evaluate, rejected, to_placement
from computenet.scheduler.ordering import order_key, signature, with_shares
from computenet.scheduler.plugins import PROFILES, Profile
from computenet.scheduler.snapshot import HORIZON_SLOTS, JobRequest, Snapshot

Decide = Callable[[Snapshot, Sequence[JobRequest]], list[Decision]]


# Under contention a placement is committed only when it starts within this much of now
# (the simulator's default cycle).
FAIR_START_WINDOW = timedelta(minutes=5)
FAIR_WAIT_REASON = "fair share: waiting for chips free now"
FAIR_PLACED = "fair share: chips short, so the best option that starts now"
# Why a plan made ahead went back to PENDING (server and simulator).
RECLAIMED = "fair share: plan given back to be decided again with other tenants' jobs"


def contended(snap: Snapshot, decisions: Sequence[Decision]) -> bool:
    """Whether some placement cannot start now (chips are short this cycle)."""
    limit = snap.now + FAIR_START_WINDOW
    return any(d.placement is not None and d.placement.planned_start > limit for d in decisions)


def _best_now(
    snap: Snapshot, free: np.ndarray, job: JobRequest, profile: Profile, window_h: float
) -> tuple[Decision, str | None]:
    """The job's best option among those starting within `window_h`, its chips taken from
    `free`; or no placement, with the reason and (when it has one) its best later start."""
    opts = evaluate(snap, free, job, profile)
    ok = opts.feasible
    if not ok.any():
        return Decision(job.id, None, tuple(opts.why_not) or ("no feasible option",)), None
    now = ok & (opts.start_h <= window_h)
    if not now.any():
        later = np.flatnonzero(ok)
        k = int(later[np.argmin(opts.start_h[later])])
        p = to_placement(snap, job, opts, k)
        at = p.planned_start.astimezone(CST).strftime("%Y-%m-%d %H:%M")
        why = f"{FAIR_WAIT_REASON} (earliest start {at} CST at {p.center})"
        return Decision(job.id, None, (why,)), why
    idx = np.flatnonzero(now)
    score = profile.score(opts.cost[idx], opts.finish_h[idx], opts.co2[idx])
    k = int(idx[int(np.argmin(score))])
    placement = to_placement(snap, job, opts, k, (FAIR_PLACED,))
    o = opts.at(k)
    free[o.pool, o.slot : min(o.slot + o.n_slots, HORIZON_SLOTS)] -= job.count
    return Decision(job.id, placement, (FAIR_PLACED,)), None


def start_now_cycle(
    snap: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str,
    signatures: Sequence[Hashable] | None = None,
) -> list[Decision]:
    """Jobs in `order_key` order, each on its best option that starts now, or left waiting.

    One evaluation per job, as in the greedy cycle: the profile's best among
    the feasible options that start within `FAIR_START_WINDOW`. A later
    look-alike of a job that found nothing (same `signature`) finds nothing
    either, since a cycle only takes chips. `signatures[k]`, when given, is
    what the caller counts as `jobs[k]`'s look-alike key.
    """
    prof = PROFILES[profile]
    window_h = FAIR_START_WINDOW.total_seconds() / 3600.0
    free = snap.free.copy()
    order = sorted(range(len(jobs)), key=lambda k: order_key(jobs[k], snap.now))
    out: dict[int, Decision] = {}
    nothing: dict[Hashable, tuple[str, ...]] = {}
    for k in order:
        job = jobs[k]
        sig = signatures[k] if signatures is not None else signature(job)
        if sig in nothing:
            out[k] = Decision(job.id, None, nothing[sig])
            continue
        job_prof = PROFILES["fastest"] if job.latency_class == "interactive" else prof
        try:
            d, _ = _best_now(snap, free, job, job_prof, window_h)
        except Exception as exc:  # one job's error leaves only that job out
            d = rejected(job, exc)
        out[k] = d
        if d.placement is None:
            nothing[sig] = d.reasons
    return [out[k] for k in range(len(jobs))]


def fair_cycle(
    snap: Snapshot,
    jobs: Sequence[JobRequest],
    decide: Decide,
    profile: str,
    signatures: Sequence[Hashable] | None = None,
) -> tuple[list[JobRequest], list[Decision]]:
    """One cycle over `jobs` with fair share among their tenants (see the module's docstring).

    `snap.tenants` holds each tenant's usage and weight; `decide(snapshot, jobs)`
    is the configured cycle and `profile` its profile; `signatures` as for
    `start_now_cycle`. Returns the jobs with
    their tags (in the same order) and one decision each.
    """
    tagged = with_shares(jobs, snap.tenants)
    if len({j.tenant for j in jobs}) < 2:
        return tagged, decide(snap, tagged)
    calm = replace(snap, patience_h=0.0)
    first = decide(calm, tagged)
    if not contended(calm, first):
        return tagged, first
    return tagged, start_now_cycle(calm, tagged, profile, signatures)
