"""The greedy strategy: jobs one by one in the cycle's order, each on its best option.

A backlog is often many jobs alike in everything but id and submit time (a
sweep, a queue of retries, a full network). A job left unplaced holds
nothing, so until the next placement changes the calendar, every look-alike
of an unplaced job gets the same answer: it is evaluated once. Decisions are
exactly those of evaluating every job (`look_alikes=False`, held equal by a test).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from typing import Any

from computenet.model import Placement
from computenet.scheduler.framework import Decision, place, place_explaining_later, rejected
from computenet.scheduler.ordering import order_key, signature
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import JobRequest, Snapshot


def greedy_cycle(
    snapshot: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str = "min-cost",
    *,
    explain: bool = True,
    signatures: Sequence[Hashable] | None = None,
    look_alikes: bool = True,
    defer: Callable[[Snapshot, JobRequest, Placement], str | None] | None = None,
    explain_placed: bool = True,
    order: Callable[[JobRequest, datetime], Any] = order_key,
) -> list[Decision]:
    """Place `jobs` one by one in `order_key` order, reserving chips as it goes.

    `signatures[k]`, when given, is `signature(jobs[k])` (the server keeps them).
    `defer(snapshot, job, placement)`, when given, may return a reason to leave a
    placed job unplaced this cycle (its chips stay taken for the jobs after it):
    the `lookahead` strategy's rule (`scheduler/lookahead.py`). With `explain` but
    not `explain_placed`, only decisions left unplaced carry reasons (a deferred
    job's are written when it is deferred): the same decisions, without the work
    of explaining placements a caller does not read (the simulator). `order`: the
    sort key (default `order_key`, the one order; `lookahead` refines it within its
    ties).
    """
    prof = PROFILES[profile]
    lazy = explain and not explain_placed
    free = snapshot.free.copy()
    now = snapshot.now
    ranked = sorted(range(len(jobs)), key=lambda k: order(jobs[k], now))
    out: dict[int, Decision] = {}
    unplaced: dict[Hashable, Decision] = {}  # since the last placement: signature → decision
    for k in ranked:
        job = jobs[k]
        # A signature is looked up only while some job is unplaced since the last
        # placement, and made for a job only when it is (`signature` costs microseconds).
        sig: Hashable = None
        if look_alikes and unplaced:
            sig = signatures[k] if signatures is not None else signature(job)
        same = unplaced.get(sig) if sig is not None else None
        if same is not None:
            out[k] = Decision(job.id, None, same.reasons, rejected=same.rejected)
            continue
        job_prof = PROFILES["fastest"] if job.latency_class == "interactive" else prof
        reasons_of: Callable[[], tuple[str, ...]] | None = None
        try:
            if lazy:
                d, reasons_of = place_explaining_later(snapshot, free, job, job_prof)
            else:
                d = place(snapshot, free, job, job_prof, explain)
        except Exception as exc:
            # One job's error (a value no check foresaw, a bug) must not stop the
            # cycle for every other job: that job alone is left out, with the reason.
            d = rejected(job, exc)
        held = d.placement is not None  # its chips are taken from `free` either way
        if defer is not None and d.placement is not None:
            why = defer(snapshot, job, d.placement)
            if why is not None:
                said = reasons_of() if reasons_of is not None else d.reasons
                d = Decision(job.id, None, (why, *said))
        out[k] = d
        if held:
            # The calendar changed; a deferred job's answer is no look-alike's either.
            unplaced.clear()
        elif look_alikes:
            if sig is None:
                sig = signatures[k] if signatures is not None else signature(job)
            unplaced[sig] = d
    return [out[k] for k in range(len(jobs))]
