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
   none waits PENDING with the reason and its best later start. It holds no
   reservation for later, so a tenant that comes back from idle gets the
   next chips that free, in fair-share order, and no running job is stopped.
   Without this step a job would decline the chips free now to wait for a
   cheaper or faster pool, and lose its turn to the next tenant's job.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from datetime import timedelta

from computenet.model.center import CST
from computenet.scheduler.framework import Decision, place, rejected
from computenet.scheduler.ordering import order_key, signature, with_shares
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import JobRequest, Snapshot

Decide = Callable[[Snapshot, Sequence[JobRequest]], list[Decision]]


# Under contention a placement is committed only when it starts within this much of now
# (the simulator's default cycle).
FAIR_START_WINDOW = timedelta(minutes=5)
FAIR_WAIT_REASON = "fair share: waiting for chips free now"
# Why a plan made ahead went back to PENDING (server and simulator).
RECLAIMED = "fair share: plan given back to be decided again with other tenants' jobs"


def contended(snap: Snapshot, decisions: Sequence[Decision]) -> bool:
    """Whether some placement cannot start now (chips are short this cycle)."""
    limit = snap.now + FAIR_START_WINDOW
    return any(d.placement is not None and d.placement.planned_start > limit for d in decisions)


def start_now_cycle(
    snap: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str,
    signatures: Sequence[Hashable] | None = None,
) -> list[Decision]:
    """Jobs in `order_key` order, each on its best option that starts now, or left waiting.

    A job whose best option starts later tries again without that pool,
    until an option starts now or none is left; a later look-alike of a job
    that found nothing (same `signature`) finds nothing either, since a
    cycle only takes chips. `signatures[k]`, when given, is what the caller
    counts as `jobs[k]`'s look-alike key.
    """
    prof = PROFILES[profile]
    limit = snap.now + FAIR_START_WINDOW
    idx = snap.index
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
        excluded: list[int] = []
        later: str | None = None
        while True:
            trial = free.copy()
            trial[excluded] = 0
            try:
                d = place(snap, trial, job, job_prof)
            except Exception as exc:  # one job's error leaves only that job out
                d = rejected(job, exc)
                break
            p = d.placement
            if p is None or p.planned_start <= limit:
                break
            if later is None:
                at = p.planned_start.astimezone(CST).strftime("%Y-%m-%d %H:%M")
                later = f"{FAIR_WAIT_REASON} (best start {at} CST at {p.center})"
            excluded.append(idx.pool_of[(p.center, p.chip)])
        if d.placement is not None:
            trial[excluded] = free[excluded]
            free = trial
        elif later is not None:
            d = Decision(job.id, None, (later,))
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
