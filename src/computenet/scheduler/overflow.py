"""Overflow up: a region offers its parent network what no center of its own can run.

A region (a ComputeNet network that joins a parent as one of its centers,
docs/federation.md) sees its parent as **one more center**: a center of its
network file tagged `parent` (`PARENT_TAG`), run by ``cnet agent --backend
uplink`` (`computenet.backends.uplink`), whose free chips are the parent's
free chips elsewhere. The one rule:

    a job goes to a parent-tagged center only when no other center can run it
    — by its deadline and within its budget, or at all (no such chips, none
    free within the horizon) — and only if it may leave this network.

It holds for every strategy because it wraps them (`local_first`, called by
`strategies.schedule_cycle`): a first pass places every job with the parent's
pools filtered out; the jobs left unplaced that may spill get a second pass,
with every pool, on the calendar less what the first pass placed. With the
greedy strategy a job left out of the first pass has no feasible option here
on the larger calendar, so none on the smaller one: the second pass can only
place it at the parent. A strategy may leave out a job that could run here
(`lookahead` defers a far start): the second pass takes only the jobs with
no feasible option here on what the first pass left (`_runs_here`).

A job may not spill when it says ``spill: never`` or came from another
network (`JobRequest.no_spill`, from `JobSpec.no_spill_reason`), or when it
reads an input dataset with a residency tag (it stays here, even when the
parent's center carries the tag): `spill_block` says why, and the `spill`
filter (`plugins/filters.py`) removes the parent's pools for it with that
reason. Inputs without residency go up with the job: the uplink agent stages
them from this network's replicas, checksum checked, and hands them to the
parent through its inbox center (`backends/network.py`, `inputs_to_stage`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from computenet.scheduler.ordering import signature
from computenet.scheduler.snapshot import JobRequest, Reservation, Snapshot, hold

if TYPE_CHECKING:
    from computenet.scheduler.framework import Decision

# The network-file tag of a center that is this network's parent (docs/federation.md).
PARENT_TAG = "parent"
# `JobRequest.no_spill` in the first pass for a job that may spill: the parent's pools are
# left out for it, and this reason is replaced by the second pass's.
LOCAL_PASS = "no center of this network can run it (only the parent network could)"

Cycle = Callable[..., list["Decision"]]


def parent_pools(snap: Snapshot) -> np.ndarray:
    """Per pool of the snapshot: whether its center is tagged `PARENT_TAG` (memoized)."""
    idx = snap.index
    key = ("parent-pools", PARENT_TAG)
    hit = idx.memo.get(key)
    if hit is None:
        by_center = np.array([PARENT_TAG in tags for tags in idx.center_tags], dtype=bool)
        hit = by_center[idx.pool_center] if by_center.size else np.zeros(0, dtype=bool)
        idx.memo[key] = hit
    return hit


def parent_ids(snap: Snapshot) -> list[str]:
    """The ids of the snapshot's parent-tagged centers, in network order."""
    return [c.id for c in snap.network.centers if PARENT_TAG in c.tags]


def spill_block(job: JobRequest) -> str:
    """Why `job` may not go to the parent network; empty when it may.

    Its own ``spill: never`` or its origin in another network (`JobRequest.no_spill`),
    else the residency of an input: a residency-bound dataset stays in this network.
    """
    if job.no_spill:
        return job.no_spill
    tags = sorted({d.residency for d in job.inputs if d.residency})
    return f"its inputs must stay in {', '.join(tags)} (residency)" if tags else ""


def local_first(
    run: Cycle,
    snapshot: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str,
    *,
    explain: bool = True,
    signatures: Sequence[Hashable] | None = None,
) -> list[Decision]:
    """`run`'s decisions for `jobs`, with the parent used only as the module doc says.

    A network without a parent-tagged center is scheduled by `run` alone.
    `signatures` are those of `jobs` as given: the first pass changes every job
    alike (`no_spill` set where it was empty), so look-alikes stay look-alikes.
    """
    parent = parent_pools(snapshot)
    if not jobs or not parent.any():
        return run(snapshot, jobs, profile, explain=explain, signatures=signatures)
    here = [j if j.no_spill else replace(j, no_spill=LOCAL_PASS) for j in jobs]
    decided = run(snapshot, here, profile, explain=explain, signatures=signatures)
    first = [_why_not_up(d, j.no_spill) for d, j in zip(decided, jobs, strict=True)]
    left = [
        k
        for k, d in enumerate(first)
        if d.placement is None and not d.rejected and not jobs[k].no_spill
    ]
    if not left:
        return first
    free = snapshot.free.astype(np.int64, copy=True)
    for d in first:
        pl = d.placement
        if pl is not None:
            hold(
                free,
                snapshot.index,
                snapshot.now,
                Reservation(pl.center, pl.chip, pl.count, pl.planned_start, pl.finish),
            )
    rest = replace(snapshot, free=np.maximum(free, 0))
    # A strategy may leave out a job that could run here (lookahead defers a far start):
    # only a job with no feasible option here, on what is left, goes further.
    sigs = {k: signatures[k] if signatures is not None else signature(jobs[k]) for k in left}
    here_ok: dict[Hashable, bool] = {}  # look-alikes get one answer
    for k in left:
        if sigs[k] not in here_ok:
            here_ok[sigs[k]] = _runs_here(rest, here[k], profile)
    left = [k for k in left if not here_ok[sigs[k]]]
    if not left:
        return first
    second = run(
        rest,
        [jobs[k] for k in left],
        profile,
        explain=explain,
        signatures=[signatures[k] for k in left] if signatures is not None else None,
    )
    out = list(first)
    for k, d in zip(left, second, strict=True):
        out[k] = _noted(snapshot, parent, d, first[k]) if d.placement is not None else d
    return out


def _runs_here(snap: Snapshot, job: JobRequest, profile: str) -> bool:
    """Whether `job` (its parent pools filtered out) has a feasible option on `snap`'s calendar."""
    from computenet.scheduler.framework import evaluate  # framework → filters → here
    from computenet.scheduler.plugins import PROFILES

    prof = PROFILES["fastest"] if job.latency_class == "interactive" else PROFILES[profile]
    try:
        return bool(evaluate(snap, snap.free, job, prof).feasible.any())
    except Exception:  # the strategy rejected it already, or will: not ours to decide
        return False


def _why_not_up(d: Decision, no_spill: str) -> Decision:
    """`d`, and when it leaves a job that may not spill unplaced, that it was not offered up."""
    if d.placement is not None or d.rejected or not no_spill:
        return d
    if any(no_spill in r for r in d.reasons):
        return d  # the spill filter said so already
    return replace(d, reasons=(*d.reasons, f"not offered to the parent network: {no_spill}"))


def _noted(snap: Snapshot, parent: np.ndarray, d: Decision, local: Decision) -> Decision:
    """`d` (placed by the second pass), with why it went to the parent when it did."""
    pl = d.placement
    assert pl is not None
    p = snap.index.pool_of.get((pl.center, pl.chip))
    if p is None or not parent[p]:
        return d
    why = "; ".join(local.reasons) or LOCAL_PASS
    note = f"overflow to the parent network (center {pl.center}): {why}"[:500]
    reasons = (note, *d.reasons)
    return replace(d, placement=pl.model_copy(update={"reasons": reasons}), reasons=reasons)
