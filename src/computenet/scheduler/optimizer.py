"""The batch optimizer: place the whole pending set jointly with a MILP (HiGHS).

`schedule_cycle` places jobs one by one, each on its cheapest option; when
jobs compete for the same cheap chips, the first comer wins even when the
set as a whole would be cheaper another way. This module evaluates every
job's options with the framework's own `evaluate` (so the estimates and the
filters are the production ones), keeps the most promising few per job, and
chooses one option or none per job with a mixed-integer program:

    maximize   Σ_j Σ_i (reward_j − cost_ji) · x_ji
    subject to Σ_i x_ji ≤ 1                                   (one option per job)
               Σ_{j,i covering slot s of pool p} n_j · x_ji ≤ free[p, s]   (capacity)
               x_ji ∈ {0, 1}

with reward_j = 2 · max_i cost_ji + 1, so that placing a job always beats
leaving it out and, among equally many placements, the cheaper set wins.
Deadline and budget are already in `evaluate`'s feasibility, and so is the
one rule for shifted starts (`framework.shift_limit_h`): a batch job without
a deadline may be held for a cheaper tariff hour at most the operator's
patience (`Snapshot.patience_h`) from now. Jobs the MILP leaves out (their
options collide) go through the greedy cycle on what capacity is left.
When every job's best option fits alongside the others, that set is the MILP's
optimum and no MILP is solved.

Pure and deterministic like every scheduler plugin: no clock, no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import highspy
import numpy as np
from scipy.sparse import coo_matrix

from computenet.scheduler.framework import (
    Decision,
    Options,
    evaluate,
    explain,
    rejected,
    to_placement,
)
from computenet.scheduler.greedy import greedy_cycle
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import HORIZON_SLOTS, JobRequest, Snapshot
from computenet.scheduler.solver import quiet_highs

log = logging.getLogger(__name__)

MAX_OPTIONS = 12
TIME_LIMIT_S = 10.0


@dataclass(frozen=True)
class Choice:
    """One candidate for the MILP: a job's option with its cost and the chips it holds."""

    job: int
    option: int
    cost: float
    pool: int
    slot: int
    n_slots: int
    count: int


def solve_assignment(
    choices: Sequence[Choice], n_jobs: int, free: np.ndarray, time_limit_s: float = TIME_LIMIT_S
) -> list[int | None]:
    """The chosen option index per job (None = left out), by the MILP in the module doc.

    Pure: `free[p, s]` is the free chips per pool and slot; each choice holds
    `count` chips of `pool` in slots [slot, slot + n_slots).
    """
    out: list[int | None] = [None] * n_jobs
    if not choices:
        return out
    n_var = len(choices)
    cost = np.array([c.cost for c in choices])
    job = np.array([c.job for c in choices])
    max_cost = np.zeros(n_jobs)
    np.maximum.at(max_cost, job, cost)
    reward = 2.0 * max_cost + 1.0
    objective = cost - reward[job]

    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    upper: list[float] = []
    # One option per job.
    for v, c in enumerate(choices):
        rows.append(c.job)
        cols.append(v)
        vals.append(1.0)
    upper.extend([1.0] * n_jobs)
    # Capacity, only where the candidates could overfill a slot.
    demand: dict[tuple[int, int], list[int]] = {}
    for v, c in enumerate(choices):
        for s in range(c.slot, min(c.slot + c.n_slots, HORIZON_SLOTS)):
            demand.setdefault((c.pool, s), []).append(v)
    r = n_jobs
    for (p, s), vs in demand.items():
        per_job: dict[int, int] = {}
        for v in vs:
            per_job[choices[v].job] = max(per_job.get(choices[v].job, 0), choices[v].count)
        if sum(per_job.values()) <= free[p, s]:
            continue
        for v in vs:
            rows.append(r)
            cols.append(v)
            vals.append(float(choices[v].count))
        upper.append(float(max(free[p, s], 0)))
        r += 1
    a = coo_matrix((vals, (rows, cols)), shape=(r, n_var)).tocsr()
    h = quiet_highs()
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.setOptionValue("presolve", "on")
    every = np.arange(n_var, dtype=np.int32)
    h.addVars(n_var, np.zeros(n_var), np.ones(n_var))
    h.changeColsCost(n_var, every, objective.astype(np.float64))
    h.changeColsIntegrality(n_var, every, np.full(n_var, highspy.HighsVarType.kInteger))
    h.addRows(
        r,
        np.full(r, -highspy.kHighsInf),
        np.array(upper, dtype=np.float64),
        a.nnz,
        a.indptr[:-1].astype(np.int32),
        a.indices.astype(np.int32),
        a.data.astype(np.float64),
    )
    h.run()
    sol = h.getSolution()
    if not sol.value_valid:
        status = h.getModelStatus()
        log.warning("batch optimizer: HiGHS found no solution (%s); falling back", status)
        return out
    x = np.asarray(sol.col_value)
    for v in np.flatnonzero(x > 0.5).tolist():
        out[choices[v].job] = choices[v].option
    return out


def _uncontended(
    choices: Sequence[Choice], n_jobs: int, free: np.ndarray
) -> list[int | None] | None:
    """Each job's best option, when they all fit together (then that is the MILP's optimum)."""
    best: dict[int, Choice] = {}
    for c in choices:
        b = best.get(c.job)
        if b is None or c.cost < b.cost:
            best[c.job] = c
    used = np.zeros_like(free)
    for c in best.values():
        used[c.pool, c.slot : min(c.slot + c.n_slots, HORIZON_SLOTS)] += c.count
    if np.any(used > free):
        return None
    out: list[int | None] = [None] * n_jobs
    for j, c in best.items():
        out[j] = c.option
    return out


def optimize_cycle(
    snapshot: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str = "min-cost",
    *,
    max_options: int = MAX_OPTIONS,
    time_limit_s: float = TIME_LIMIT_S,
) -> list[Decision]:
    """One scheduling cycle that places `jobs` jointly; same contract as `schedule_cycle`.

    How long a job without a deadline may be held for cheaper power is the
    snapshot's (`Snapshot.patience_h`, the operator's setting), as in every strategy.
    """
    prof = PROFILES[profile]
    all_opts: list[Options] = []
    choices: list[Choice] = []
    for k, job in enumerate(jobs):
        job_prof = PROFILES["fastest"] if job.latency_class == "interactive" else prof
        opts = evaluate(snapshot, snapshot.free, job, job_prof)
        all_opts.append(opts)
        idx = np.flatnonzero(opts.feasible)
        if idx.size == 0:
            continue
        # The MILP minimizes the profile's objective: ¥ for cost profiles, else its score.
        pure_cost = job_prof.cost > 0 and job_prof.time == 0 and job_prof.carbon == 0
        score = (
            opts.cost[idx]
            if pure_cost
            else job_prof.score(opts.cost[idx], opts.finish_h[idx], opts.co2[idx])
        )
        order = np.argsort(score, kind="stable")[:max_options]
        fastest = int(np.argmin(opts.finish_h[idx]))
        if fastest not in order:
            order = np.append(order, fastest)
        keep = idx[order]
        choices.extend(
            Choice(k, i, v, p, s, n, job.count)
            for i, v, p, s, n in zip(
                keep.tolist(),
                score[order].tolist(),
                opts.pool[keep].tolist(),
                opts.slot[keep].tolist(),
                opts.n_slots[keep].tolist(),
                strict=True,
            )
        )
    chosen = _uncontended(choices, len(jobs), snapshot.free)
    if chosen is None:
        chosen = solve_assignment(choices, len(jobs), snapshot.free, time_limit_s)

    free = snapshot.free.copy()
    out: list[Decision | None] = [None] * len(jobs)
    placed = sum(1 for c in chosen if c is not None)
    for k, i in enumerate(chosen):
        if i is None:
            continue
        job, opts = jobs[k], all_opts[k]
        p, s = int(opts.pool[i]), int(opts.slot[i])
        free[p, s : min(s + int(opts.n_slots[i]), HORIZON_SLOTS)] -= job.count
        score = np.where(opts.feasible, opts.cost, np.inf)
        reasons = (
            f"batch optimizer: placed jointly with {placed - 1} other pending jobs",
            *explain(snapshot, job, opts, i, score),
        )
        out[k] = Decision(job.id, to_placement(snapshot, job, opts, i, reasons), reasons)
    rest = [k for k in range(len(jobs)) if out[k] is None]
    if rest:
        left = replace(snapshot, free=np.maximum(free, 0))
        for k, d in zip(rest, greedy_cycle(left, [jobs[k] for k in rest], profile), strict=True):
            out[k] = d
    return [d for d in out if d is not None]


def batch_optimizer(
    snapshot: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str = "min-cost",
    *,
    explain: bool = True,
    signatures: Sequence[Hashable] | None = None,
) -> list[Decision]:
    """The `batch-optimizer` strategy: `optimize_cycle`, and if it fails, without the culprits.

    Each job is then evaluated on its own to find the ones that raise; the
    others go through the optimizer again, or, should it fail once more,
    through the greedy cycle, so that the set still gets scheduled.
    """
    try:
        return optimize_cycle(snapshot, jobs, profile)
    except Exception as exc:
        log.warning("batch optimizer failed (%r); looking for the job that fails", exc)
    bad: dict[str, Decision] = {}
    for job in jobs:
        try:
            evaluate(snapshot, snapshot.free, job, PROFILES[profile])
        except Exception as one:
            bad[job.id] = rejected(job, one)
    rest = [j for j in jobs if j.id not in bad]
    try:
        good = optimize_cycle(snapshot, rest, profile)
    except Exception:
        good = greedy_cycle(snapshot, rest, profile, explain=explain)
    by_id = {d.job_id: d for d in good} | bad
    return [by_id[j.id] for j in jobs]
