"""Lower bounds on total cost: two LP relaxations of the placement problem.

Given every job of a workload (arrival, work, chips, inputs, deadline), no
schedule — by any policy — can cost less than the optimum of either LP below.
Both read the jobs the same way: eligible pools by every registered filter,
the true work, and a window from the job's arrival to its deadline
(`enforce_deadlines`), or to `end` (when it has none, when its deadline cannot
be met even alone on its fastest pool, or when deadlines are not enforced).
Without deadlines the bounds hold for every policy; with them, for every
policy that meets them. Inputs cost their cheapest replica's path price and
take no time (an agent may stage them before the chips are taken): no more
than any schedule pays or waits. Metering rounds each of a run's three
charges to the fen, so a bound gives back 1.5 fen per job.

**Preemptive** (`method="preemptive"`): fractional chip-hours anywhere in the window,

    minimize   Σ y[j,p,b] · (kW[p]·PUE[p]·tariff[p,b] + PFLOPS[j,p]·(service[p] + τ[j,p]))
    subject to Σ_{p,b} y[j,p,b] · PFLOPS[j,p] = CU·h[j]           (all work done)
               Σ_j y[j,p,b] ≤ chips[p] · hours[b]                  (capacity)
               0 ≤ y[j,p,b] ≤ n[j] · overlap(b, window[j])         (n chips at a time)

where y is chip-hours of job j on pool p during block b. Blocks are runs of
hours in which no tariff drops and no job's window opens or closes (priced at
their first hour, their cheapest); after the last arrival and deadline the
days fold into one periodic day of tariff segments whose capacity is pooled;
τ[j,p] is the cheapest ¥ per CU·h of bringing j's inputs to p's center. It may
run a long job only in valley hours, which no real schedule can.

**Time-indexed, non-preemptive** (`method="time-indexed"`): each job runs once,
on its n chips of one pool, without a break, for its run time
R[j,p] = CU·h[j] / (n[j] · PFLOPS[j,p]), started at a time t of its choice:

    minimize   Σ x[j,p,t] · c[j,p,t]
    subject to Σ_{p,t} x[j,p,t] = 1                                     (each job runs)
               Σ_{j,t} x[j,p,t] · n[j] · |[t, t+R) ∩ [h, h+1)| ≤ chips[p]  (pool p, hour h)
               x ≥ 0,   arrival[j] ≤ t ≤ window end[j] − R[j,p]

c[j,p,t] is the run's exact cost by the one cost model
(`metering.cost.option_costs`: energy integrated over the tariff hour by
hour, service, transfer). The capacity row is the instantaneous limit
integrated over the hour, so every schedule satisfies it. Finitely many
starts suffice, with no rounding of times: between two consecutive
*breakpoints* — the starts at which t or t + R is a whole hour, and the
window's first and last start — the cost and every hour's occupancy are
linear in t (tariff and rows are constant within an hour), so a run started
between two breakpoints is the convex combination of the runs started at
them, with the same cost and the same occupancy of every hour. Every schedule
is thus a feasible point of the LP over breakpoint starts (about two per hour
and pool) at its exact cost, and every solution of the preemptive LP's
relaxation covers it too: this LP is never below the preemptive one.

Long horizons: from the fold hour F on (the local midnight after the last
arrival and the last enforced deadline; the same F as the preemptive LP),
every window is open to `end`. There the hour rows of a pool are summed by
local hour of day into 24 rows (capacity: chips × the number of such hours
before `end`); a sum of valid rows is a valid row. The tariff repeats daily,
so starts t ≥ F and t + 24 h then give the same column (same cost, same summed
rows; the later one only ends later, so it is feasible only if the earlier is):
starts are generated up to F + 24 h. The LP stays as small as a few days
however late `end` is.

The preemptive LP is solved by column generation (a HiGHS master LP over a
few columns per job, priced against its duals). The time-indexed one has far
more columns (about two starts per hour, pool and job: 25 million for 20,000
jobs over ten days), so its duals are first raised by a deflected subgradient
ascent on the Lagrangian — each step prices every candidate start of every
job that a capacity price can reach, as n·(Ρ_p(t + R) − Ρ_p(t)) + service +
transfer, where Ρ_p integrates energy ¥ per chip-hour plus the hour's price
(one cumulative sum per pool, every start at once in numpy) — and, once that
stalls, column and row generation on a master LP seeded with what it found
proves the optimum (a capacity row joins the master when its solution
overfills it). The bound reported is the best Lagrangian value
L(π) = Σ_j min_j(cost + π) − Σ π·capacity over the prices π seen, which is a
valid lower bound for every π ≥ 0 — at every step, also when stopped by the
time limit — and equals the LP optimum at convergence. When deadlines cannot
all hold together no schedule meets them and L(π) grows without limit (the
master LP then leaves jobs unplaced at a prohibitive price, and says so).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import highspy
import numpy as np

from computenet.metering.cost import (
    energy_cny_per_chip_hour,
    meter_kw,
    option_costs,
    transfer_cny_vec,
)
from computenet.model import Network
from computenet.model.center import CST
from computenet.scheduler.index import NetworkIndex
from computenet.scheduler.plugins import FILTERS
from computenet.scheduler.plugins.filters import FilterContext
from computenet.scheduler.snapshot import JobRequest, Snapshot, build_snapshot
from computenet.scheduler.solver import quiet_highs

log = logging.getLogger(__name__)

ROUNDING_CNY_PER_JOB = 0.015

METHODS = ("auto", "both", "time-indexed", "preemptive")


@dataclass(frozen=True)
class Bound:
    """The lower bound and how it was obtained.

    `method` names the LP whose bound `cny` is; `time_indexed_cny` and
    `preemptive_cny` are each LP's own bound (None where it was not
    computed) and `parts` their full results, when both were. `iterations`
    counts pricing rounds (for the time-indexed LP: ascent steps plus master
    LPs); `lp_upper_cny` is the master LP's value once its solution met every
    row (inf before), so `gap` is inf when unknown.
    """

    cny: float
    lp_upper_cny: float
    gap: float
    iterations: int
    columns: int
    jobs: int
    blocks: int
    seconds: float
    deadlines_enforced: bool
    widened: int
    converged: bool
    notes: tuple[str, ...] = ()
    # How the master LP's final solution (≈ the bound) splits into the three charges.
    energy_cny: float = 0.0
    service_cny: float = 0.0
    transfer_cny: float = 0.0
    method: str = "preemptive"
    time_indexed_cny: float | None = None
    preemptive_cny: float | None = None
    parts: tuple[Bound, ...] = ()


@dataclass
class _Job:
    cu: float
    count: int
    pools: np.ndarray  # eligible pools
    b0: int
    b1: int  # inclusive
    overlap_h: np.ndarray  # [b1-b0+1] hours of the window inside each block
    cost: np.ndarray  # [P_j, B_j] ¥ per chip-hour, before duals
    work: np.ndarray  # [P_j] CU·h per chip-hour
    cap: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [B_j] chip-hours per pool
    service: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [P_j] ¥ per chip-hour
    transfer: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [P_j] ¥ per chip-hour


@dataclass
class _Instance:
    """The jobs as both LPs read them: eligible pools and windows, in hours since `t0`."""

    snap: Snapshot
    t0: datetime
    horizon_h: int
    fold: int  # from this hour on every window is open to the horizon
    staged: list[tuple[JobRequest, np.ndarray, float, float]]  # (job, pools, arrival, end)
    widened: int
    n_jobs: int
    enforce_deadlines: bool

    @property
    def h0_local(self) -> int:
        """Local (CST) hour of day at `t0`."""
        return self.t0.hour


def lower_bound(
    network: Network,
    jobs: Sequence[JobRequest],
    *,
    end: datetime,
    enforce_deadlines: bool = True,
    max_iterations: int = 60,
    time_limit_s: float = 300.0,
    tolerance: float = 1e-4,
    method: str = "auto",
) -> Bound:
    """A lower bound on the total ¥ of running `jobs` on `network` by `end`.

    `jobs` carry their true work (`cu_hours`) and `submitted_at`; `end` must be
    no earlier than the last instant any schedule being bounded uses.
    `method`: "time-indexed" or "preemptive" (see the module docstring),
    "both" (each, the larger bound reported), or "auto" (the time-indexed LP;
    the preemptive one too, with the time left if over a quarter of the
    limit, only if the first did not converge — at convergence it is never
    below the preemptive LP's value). The time limit (which also covers
    reading the jobs) and the iteration limit apply to each LP; stopped by
    either, an LP still gives a valid bound.
    """
    if method not in METHODS:
        raise ValueError(f"method '{method}' is not one of {', '.join(METHODS)}")
    t_start = time.perf_counter()
    if not jobs:
        return Bound(0.0, 0.0, 0.0, 0, 0, 0, 0, 0.0, enforce_deadlines, 0, True)
    inst = _stage(network, jobs, end, enforce_deadlines)
    staged_s = time.perf_counter() - t_start
    parts: list[Bound] = []
    if method in ("auto", "both", "time-indexed"):
        parts.append(_time_indexed(inst, max_iterations, time_limit_s - staged_s, tolerance))
    left = time_limit_s - (time.perf_counter() - t_start)
    if method in ("both", "preemptive"):
        parts.append(_preemptive(inst, max_iterations, time_limit_s - staged_s, tolerance))
    elif method == "auto" and not parts[0].converged and left > 0.25 * time_limit_s:
        parts.append(_preemptive(inst, max_iterations, left, tolerance))
    best = max(parts, key=lambda b: b.cny)
    by = {b.method: b.cny for b in parts}
    return replace(
        best,
        seconds=time.perf_counter() - t_start,
        time_indexed_cny=by.get("time-indexed"),
        preemptive_cny=by.get("preemptive"),
        parts=tuple(parts) if len(parts) > 1 else (),
        notes=best.notes
        + tuple(n for b in parts if b is not best for n in b.notes if n not in best.notes),
    )


def _stage(
    network: Network, jobs: Sequence[JobRequest], end: datetime, enforce_deadlines: bool
) -> _Instance:
    """Each job's eligible pools and window; the horizon and the fold hour."""
    first = min(j.submitted_at or end for j in jobs)
    t0 = first.astimezone(CST).replace(minute=0, second=0, microsecond=0)
    horizon_h = max(math.ceil((end - t0).total_seconds() / 3600.0), 1)
    snap = build_snapshot(network, t0)
    idx = snap.index
    n_pools = idx.n_pools

    staged: list[tuple[JobRequest, np.ndarray, float, float]] = []
    widened = 0
    masks: dict[object, np.ndarray] = {}
    for job in jobs:
        key = (
            job.workload_class,
            job.count,
            job.types,
            job.stack,
            job.memory_gb,
            tuple((d.id, d.replicas, d.residency) for d in job.inputs),
        )
        mask = masks.get(key)
        if mask is None:
            mask = np.ones(n_pools, dtype=bool)
            for f in FILTERS.values():
                mask &= f(FilterContext(snap, job, mask)).mask
            masks[key] = mask
        pools = np.flatnonzero(mask)
        if pools.size == 0 or job.cu_hours <= 0:
            continue
        a_h = max(((job.submitted_at or t0) - t0).total_seconds() / 3600.0, 0.0)
        if a_h >= horizon_h:
            continue
        d_h = float(horizon_h)
        if enforce_deadlines and job.deadline is not None:
            d_h = min(max((job.deadline - t0).total_seconds() / 3600.0, a_h), float(horizon_h))
        fastest = job.cu_hours / (job.count * float(idx.pflops[job.workload_class][pools].max()))
        if d_h - a_h < fastest - 1e-9:
            # Even alone on the fastest pool the deadline cannot hold: every schedule misses
            # it, and may then run the job whenever it likes.
            if d_h < horizon_h:
                widened += 1
            d_h = float(horizon_h)
        staged.append((job, pools, a_h, d_h))

    # After the last arrival or deadline (from the next local midnight on) nothing but
    # prices changes, and prices repeat daily: both LPs fold those days.
    h0_local = t0.hour
    last = max(
        [a for _j, _p, a, _d in staged] + [d for _j, _p, _a, d in staged if d < horizon_h],
        default=0.0,
    )
    fold = min(horizon_h, math.floor(last) + 1 + (24 - (h0_local + math.floor(last) + 1) % 24) % 24)
    return _Instance(snap, t0, horizon_h, fold, staged, widened, len(jobs), enforce_deadlines)


def _preemptive(
    inst: _Instance, max_iterations: int, time_limit_s: float, tolerance: float
) -> Bound:
    """The preemptive LP's bound (see the module docstring)."""
    t_start = time.perf_counter()
    snap, staged, horizon_h, fold = inst.snap, inst.staged, inst.horizon_h, inst.fold
    idx = snap.index
    n_pools = idx.n_pools
    # Blocks: maximal runs of hours in which no tariff changes and no window opens or closes,
    # so that capacity is shared exactly among the jobs that may use it. The days after the
    # fold become one day of tariff segments whose capacity is pooled, which relaxes the LP
    # further and keeps it small however late `end` is.
    changes = sorted(set(idx.tariff_change_hours)) or [0]
    h0_local = inst.h0_local
    cuts = {0, fold}
    cuts.update(h for h in range(1, fold) if (h0_local + h) % 24 in changes)
    for _job, _pools, a_h, d_h in staged:
        cuts.add(math.floor(a_h))
        cuts.add(min(math.ceil(d_h), fold))
    starts = sorted(c for c in cuts if c < fold)
    bounds_h = np.array([*starts, fold], dtype=np.float64)
    n_regular = len(starts)
    block_len = list(np.diff(bounds_h))
    block_of_hour = np.repeat(np.arange(n_regular), np.diff(bounds_h).astype(np.int64))
    local = [(h0_local + h) % 24 for h in starts]
    segment_hours: dict[int, float] = {}
    for h in range(fold, horizon_h):
        x = (h0_local + h) % 24
        seg = max((c for c in changes if c <= x), default=changes[-1])
        segment_hours[seg] = segment_hours.get(seg, 0.0) + 1.0
    for seg, hours in sorted(segment_hours.items()):
        block_len.append(hours)
        local.append(seg)
    n_blocks = len(block_len)
    lengths = np.array(block_len)
    energy = energy_cny_per_chip_hour(
        idx.tdp_kw, idx.pue, idx.tariff[:, np.array(local, dtype=np.int64)]
    )
    capacity = idx.pool_total[:, None] * lengths[None, :]  # [P, B] chip-hours

    prepared: list[_Job] = []
    for job, pools, a_h, d_h in staged:
        work = idx.pflops[job.workload_class][pools]
        tau = _transfer_cny(snap, job)[idx.pool_center[pools]] / job.cu_hours
        b0 = int(block_of_hour[min(math.floor(a_h), fold - 1)]) if fold > 0 else 0
        if d_h >= horizon_h - 1e-9:
            b1 = n_blocks - 1
        else:
            b1 = int(block_of_hour[max(min(math.ceil(d_h), fold) - 1, 0)])
        bs = np.arange(b0, b1 + 1)
        reg = bs[bs < n_regular]
        overlap = np.empty(bs.size)
        overlap[: reg.size] = np.maximum(
            np.minimum(bounds_h[reg + 1], d_h) - np.maximum(bounds_h[reg], a_h), 0.0
        )
        overlap[reg.size :] = lengths[bs[reg.size :]]
        cost = energy[np.ix_(pools, bs)] + (work * (idx.service[pools] + tau))[:, None]
        prepared.append(
            _Job(
                job.cu_hours,
                job.count,
                pools,
                b0,
                b1,
                overlap,
                cost,
                work,
                job.count * overlap,
                work * idx.service[pools],
                work * tau,
            )
        )

    result = _column_generation(
        prepared,
        n_pools,
        n_blocks,
        capacity,
        max_iterations,
        time_limit_s - (time.perf_counter() - t_start),
        tolerance,
    )
    best_l, upper, iters, n_cols, converged, split = result
    cny = max(best_l - ROUNDING_CNY_PER_JOB * inst.n_jobs, 0.0)
    gap = (upper - best_l) / upper if upper > 0 and math.isfinite(upper) else 0.0
    notes = []
    if inst.widened:
        notes.append(
            f"{inst.widened} deadlines cannot be met even alone; those jobs may run until the end"
        )
    if not converged:
        notes.append(
            f"the preemptive LP stopped before convergence (gap {gap:.2%}); its bound holds"
        )
    return Bound(
        cny=cny,
        lp_upper_cny=upper,
        gap=gap,
        iterations=iters,
        columns=n_cols,
        jobs=len(prepared),
        blocks=n_blocks,
        seconds=time.perf_counter() - t_start,
        deadlines_enforced=inst.enforce_deadlines,
        widened=inst.widened,
        converged=converged,
        notes=tuple(notes),
        energy_cny=split[0],
        service_cny=split[1],
        transfer_cny=split[2],
        method="preemptive",
        preemptive_cny=cny,
    )


def _transfer_cny(snap: Snapshot, job: JobRequest) -> np.ndarray:
    """Per center: the cheapest ¥ of bringing the job's inputs there.

    Priced by the one cost model (each input a lot at its path's ¥/GB), from the
    cheapest replica rather than the one a policy picks: that keeps the bound valid.
    """
    idx = snap.index
    scale = snap.network.data_scale
    total = np.zeros(len(idx.center_node))
    for d in job.inputs:
        rows = [idx.paths.index(r) for r in d.replicas if r in idx.paths.nodes]
        if not rows or d.size_gb <= 0:
            continue
        price = idx.paths.price_per_gb[rows][:, idx.center_node].min(axis=0)
        total += transfer_cny_vec(d.size_gb * scale, price)
    return total


def _knapsack(job: _Job, c: np.ndarray) -> tuple[float, np.ndarray]:
    """Cheapest way to do the job's work alone at ¥/chip-hour `c`: ¥, and the options used."""
    per_cu = (c / job.work[:, None]).ravel()
    cap_cu = (job.work[:, None] * job.cap[None, :]).ravel()
    order = np.argsort(per_cu, kind="stable")
    filled = np.cumsum(cap_cu[order])
    k = int(np.searchsorted(filled, job.cu - 1e-12))
    if k >= order.size:
        # The window cannot hold the work (rounding): take everything, price the rest at the worst.
        rest = job.cu - float(filled[-1]) if filled.size else job.cu
        value = float(per_cu[order] @ cap_cu[order]) + max(rest, 0.0) * float(per_cu.max(initial=0))
        return value, order
    used = order[: k + 1]
    part = job.cu - (float(filled[k - 1]) if k > 0 else 0.0)
    value = float(per_cu[order[:k]] @ cap_cu[order[:k]]) + part * float(per_cu[order[k]])
    return value, used


def _column_generation(
    jobs: list[_Job],
    n_pools: int,
    n_blocks: int,
    capacity: np.ndarray,
    max_iterations: int,
    time_left_s: float,
    tolerance: float,
) -> tuple[float, float, int, int, bool, tuple[float, float, float]]:
    """Master LP over a growing set of columns.

    Returns (best bound, master LP value, iterations, columns, converged, and the master
    solution's energy, service and transfer ¥).
    """
    t_start = time.perf_counter()
    n = len(jobs)
    if n == 0:
        return 0.0, 0.0, 0, 0, True, (0.0, 0.0, 0.0)
    h = quiet_highs()  # silenced through its own options: no process-wide redirect
    h.setOptionValue("threads", 1)
    h.setOptionValue("simplex_strategy", 1)
    inf = highspy.kHighsInf
    cu = np.array([j.cu for j in jobs])
    # Rows: one per job (work), then one per (pool, block) (capacity).
    lower = np.concatenate([cu, np.full(n_pools * n_blocks, -inf)])
    upper = np.concatenate([cu, capacity.ravel().astype(np.float64)])
    h.addRows(
        len(lower),
        lower,
        upper,
        0,
        np.zeros(len(lower), dtype=np.int32),
        np.zeros(0, dtype=np.int32),
        np.zeros(0),
    )
    # Each job may also leave work undone at a prohibitive price, so the master stays feasible.
    worst = max(float((j.cost / j.work[:, None]).max()) for j in jobs)
    penalty = 1000.0 * max(worst, 1.0)
    h.addCols(
        n,
        np.full(n, penalty),
        np.zeros(n),
        np.full(n, inf),
        n,
        np.arange(n, dtype=np.int32),
        np.arange(n, dtype=np.int32),
        np.ones(n),
    )
    seen: set[tuple[int, int, int]] = set()
    pi = np.zeros((n_pools, n_blocks))

    in_master: list[tuple[int, int, int]] = []

    def add_columns(picks: list[tuple[int, int, int]]) -> int:
        fresh = [(j, r, b) for j, r, b in picks if (j, r, b) not in seen]
        if not fresh:
            return 0
        seen.update(fresh)
        in_master.extend(fresh)
        costs = np.empty(len(fresh))
        ups = np.empty(len(fresh))
        idx_rows = np.empty(2 * len(fresh), dtype=np.int32)
        vals = np.empty(2 * len(fresh))
        for k, (j, r, b) in enumerate(fresh):
            job = jobs[j]
            bb = b - job.b0
            costs[k] = job.cost[r, bb]
            ups[k] = job.cap[bb]
            idx_rows[2 * k] = j
            idx_rows[2 * k + 1] = n + int(job.pools[r]) * n_blocks + b
            vals[2 * k] = job.work[r]
            vals[2 * k + 1] = 1.0
        h.addCols(
            len(fresh),
            costs,
            np.zeros(len(fresh)),
            ups,
            2 * len(fresh),
            np.arange(0, 2 * len(fresh), 2, dtype=np.int32),
            idx_rows,
            vals,
        )
        return len(fresh)

    # Start from each job's cheapest plan on its own.
    best = -math.inf
    picks: list[tuple[int, int, int]] = []
    for j, job in enumerate(jobs):
        _, used = _knapsack(job, job.cost)
        width = job.b1 - job.b0 + 1
        picks.extend((j, int(u) // width, job.b0 + int(u) % width) for u in used)
    add_columns(picks)
    upper_value = math.inf
    iters = 0
    converged = False
    while iters < max_iterations:
        iters += 1
        h.run()
        upper_value = h.getInfo().objective_function_value
        sol = h.getSolution()
        dual = np.asarray(sol.row_dual)
        mu = dual[:n]
        pi = np.maximum(-dual[n:], 0.0).reshape(n_pools, n_blocks)
        value = -float((pi * capacity).sum())
        picks = []
        for j, job in enumerate(jobs):
            width = job.b1 - job.b0 + 1
            c = job.cost + pi[job.pools, job.b0 : job.b1 + 1]
            v, used = _knapsack(job, c)
            value += v
            # Columns with negative reduced cost: cost + π − μ·work < 0.
            rc = (c - mu[j] * job.work[:, None]).ravel()
            neg = np.flatnonzero(rc < -1e-9 * max(1.0, abs(mu[j])))
            if neg.size:
                neg = neg[np.argsort(rc[neg])[:4]]
                picks.extend((j, int(u) // width, job.b0 + int(u) % width) for u in neg)
            picks.extend((j, int(u) // width, job.b0 + int(u) % width) for u in used)
        best = max(best, value)
        added = add_columns(picks)
        if upper_value - best <= tolerance * max(abs(upper_value), 1.0) or added == 0:
            converged = True
            break
        if time.perf_counter() - t_start > time_left_s:
            break
    y = np.asarray(h.getSolution().col_value)[n:]
    split = [0.0, 0.0, 0.0]
    for (j, r, b), v in zip(in_master, y.tolist(), strict=True):
        if v > 0:
            job = jobs[j]
            svc, tr = float(job.service[r]), float(job.transfer[r])
            split[0] += v * (float(job.cost[r, b - job.b0]) - svc - tr)
            split[1] += v * svc
            split[2] += v * tr
    return best, upper_value, iters, n + len(seen), converged, (split[0], split[1], split[2])


# ----------------------------------------------------------------- time-indexed LP

# Elements priced at once: bounds the temporaries of a pricing pass.
_CHUNK = 1 << 21


@dataclass
class _Segments:
    """One row per (job, eligible pool) whose run fits the job's window; rows grouped by job."""

    job: np.ndarray  # [S] the job's row in the master LP
    pool: np.ndarray  # [S]
    run_h: np.ndarray  # [S] hours the run takes
    first: np.ndarray  # [S] earliest start, hours since t0
    last: np.ndarray  # [S] latest start generated
    chips: np.ndarray  # [S] chips held, as float
    kw: np.ndarray  # [S] kW at the meter
    service: np.ndarray  # [S] ¥
    transfer: np.ndarray  # [S] ¥

    @property
    def fixed(self) -> np.ndarray:
        """¥ that do not depend on the start: service and transfer."""
        out: np.ndarray = self.service + self.transfer
        return out


def _segments(inst: _Instance) -> tuple[_Segments, int]:
    """The (job, pool) rows, and how many jobs cannot finish by the horizon on any pool."""
    snap = inst.snap
    idx = snap.index
    # Starts after the fold repeat daily (module docstring): one day of them suffices.
    start_cap = inst.fold + 24.0
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("job", "pool", "run", "first", "last", "chips", "kw", "svc", "tr")
    }
    kept = 0
    dropped = 0
    for job, pools, a_h, d_h in inst.staged:
        run = job.cu_hours / (job.count * idx.pflops[job.workload_class][pools])
        last = d_h - run
        ok = last >= a_h - 1e-9
        if not ok.any():
            dropped += 1
            continue
        pools, run, last = pools[ok], run[ok], np.maximum(last[ok], a_h)
        kw = meter_kw(job.count, idx.tdp_kw[pools], idx.pue[pools])
        zero = np.zeros(pools.size)
        _, svc, tr = option_costs(
            kw,
            idx.cum_tariff,
            pools,
            zero,
            zero,
            job.cu_hours,
            idx.service[pools],
            _transfer_cny(snap, job)[idx.pool_center[pools]],
        )
        cols["job"].append(np.full(pools.size, kept, dtype=np.int64))
        cols["pool"].append(pools)
        cols["run"].append(run)
        cols["first"].append(np.full(pools.size, a_h))
        cols["last"].append(np.minimum(last, max(start_cap, a_h)))
        cols["chips"].append(np.full(pools.size, float(job.count)))
        cols["kw"].append(kw)
        cols["svc"].append(np.broadcast_to(svc, pools.shape))
        cols["tr"].append(tr)
        kept += 1
    if kept == 0:
        empty = np.zeros(0)
        return _Segments(*(empty.astype(np.int64),) * 2, *(empty,) * 7), dropped
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    return (
        _Segments(
            cat["job"],
            cat["pool"].astype(np.int64),
            cat["run"],
            cat["first"],
            cat["last"],
            cat["chips"],
            cat["kw"],
            cat["svc"],
            cat["tr"],
        ),
        dropped,
    )


def _start_counts(
    seg: _Segments, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per segment of `rows`: how many breakpoint starts; the first whole hour after the
    first start and how many whole hours follow it before the last start; the first whole
    hour after the first run's end (runs ending on whole hours are counted the same way)."""
    a, last, run = seg.first[rows], seg.last[rows], seg.run_h[rows]
    i_lo = np.floor(a) + 1.0
    n_int = np.maximum(np.ceil(last) - i_lo, 0.0)
    e_lo = np.floor(a + run) + 1.0
    n_end = np.maximum(np.ceil(last + run) - e_lo, 0.0)
    return (2 + n_int + n_end).astype(np.int64), i_lo, n_int, e_lo


def _starts(seg: _Segments, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every breakpoint start of segments `rows`: (position in `rows` of each, start hour).

    Per segment, in this order: the window's first and last start, each whole
    hour between them, and each start between them at which the run ends on a
    whole hour.
    """
    count, i_lo, n_int, e_lo = _start_counts(seg, rows)
    k = np.repeat(np.arange(rows.size), count)
    first = np.cumsum(count) - count
    off = np.arange(k.size) - first[k]
    # Offsets 2.. run through the whole hours, then through the whole-hour ends.
    on_hour = off < (n_int + 2.0)[k]
    t = np.where(on_hour, (i_lo - 2.0)[k], (e_lo - 2.0 - n_int - seg.run_h[rows])[k]) + off
    t[first] = seg.first[rows]
    t[first + 1] = seg.last[rows]
    return k, t


def _integral(flat: np.ndarray, base: np.ndarray, x: np.ndarray) -> np.ndarray:
    """∫₀ˣ of a per-hour rate whose cumulative sums are `flat[base + h]` (h = 0..top+1).

    0 ≤ x ≤ top, the horizon: no run ends past it (a rounding error above it
    still reads the last hour's entries).
    """
    h = x.astype(np.int64)
    at = base + h
    lo = flat.take(at)
    out: np.ndarray = lo + (x - h) * (flat.take(at + 1) - lo)
    return out


def _first_per_group(hit: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Of the sorted positions `hit` (in groups `group[hit]`), the first one of each group."""
    g = group[hit]
    first = np.ones(hit.size, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    out: np.ndarray = hit[first]
    return out


class _Pricer:
    """Each segment's cheapest start against per-hour duals, its candidates generated and
    priced in chunks (never all held at once)."""

    def __init__(self, inst: _Instance, seg: _Segments) -> None:
        idx = inst.snap.index
        self.seg = seg
        self.top = inst.horizon_h
        hours = np.arange(self.top + 1)
        # ¥ per chip-hour of energy in each hour since t0, by the cost model's own helper.
        self.energy = energy_cny_per_chip_hour(
            idx.tdp_kw, idx.pue, idx.tariff[:, (inst.h0_local + hours) % 24]
        )
        self.stride = self.top + 2
        self.base = seg.pool * self.stride
        self.priced = 0  # candidates priced so far

    def cheapest(
        self, dual: np.ndarray, rows: np.ndarray, with_max: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For segments `rows`: the least of chips · ∫ (energy + `dual`) over a run, the start
        that has it, and (`with_max`) the most. `dual` is [P, hours + 1] ¥ per chip-hour."""
        seg = self.seg
        rate = self.energy + dual
        cum = np.zeros((rate.shape[0], self.stride))
        np.cumsum(rate, axis=1, out=cum[:, 1:])
        flat = cum.ravel()
        low = np.empty(rows.size)
        at = np.empty(rows.size)
        high = np.zeros(rows.size)
        count = _start_counts(seg, rows)[0]
        ends = np.cumsum(count)
        i0 = 0
        while i0 < rows.size:
            i1 = max(int(np.searchsorted(ends, ends[i0] - count[i0] + _CHUNK, "right")), i0 + 1)
            r = rows[i0:i1]
            k, t = _starts(seg, r)
            b = self.base.take(r).take(k)
            # Per chip: a segment's chips are one number, applied to its least and most.
            e = _integral(flat, b, t + seg.run_h.take(r).take(k)) - _integral(flat, b, t)
            cnt = count[i0:i1]
            first = np.cumsum(cnt) - cnt
            mn = np.minimum.reduceat(e, first)
            low[i0:i1] = mn * seg.chips.take(r)
            at[i0:i1] = t[_first_per_group(np.flatnonzero(e <= mn[k]), k)]
            if with_max:
                high[i0:i1] = np.maximum.reduceat(e, first) * seg.chips.take(r)
            self.priced += e.size
            i0 = i1
        return low, at, high


class _Master:
    """The restricted master LP: one row per job, the capacity rows found binding so far,
    a prohibitive "left out" column per job and the runs generated so far."""

    def __init__(self, n_jobs: int, capacity: np.ndarray, penalty: np.ndarray) -> None:
        self.n = n_jobs
        self.capacity = capacity
        self.row_of = np.full(capacity.size, -1, dtype=np.int64)  # HiGHS row, -1: not in it
        self.n_rows = n_jobs
        h = self.h = quiet_highs()  # silenced through its own options: no process-wide redirect
        h.setOptionValue("threads", 1)
        inf = highspy.kHighsInf
        h.addRows(
            n_jobs,
            np.ones(n_jobs),
            np.ones(n_jobs),
            0,
            np.zeros(n_jobs, dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            np.zeros(0),
        )
        # A job may also stay unplaced at a prohibitive price, so the master is always feasible.
        h.addCols(
            n_jobs,
            penalty,
            np.zeros(n_jobs),
            np.full(n_jobs, inf),
            n_jobs,
            np.arange(n_jobs, dtype=np.int32),
            np.arange(n_jobs, dtype=np.int32),
            np.ones(n_jobs),
        )
        # Every column's entries on every capacity row (also those not yet in the LP).
        self.cols = 0
        self.e_col: list[np.ndarray] = []
        self.e_row: list[np.ndarray] = []
        self.e_val: list[np.ndarray] = []
        self.split: list[np.ndarray] = []
        self.left_out = 0.0  # jobs (fractions) the last solution leaves unplaced

    def add_columns(
        self,
        job: np.ndarray,
        cost: np.ndarray,
        col: np.ndarray,
        row: np.ndarray,
        val: np.ndarray,
        split: np.ndarray,
    ) -> None:
        """Add runs: their jobs, costs and entries (`col` numbers them from 0) on capacity rows."""
        m = job.size
        inside = self.row_of[row] >= 0
        c = np.concatenate([np.arange(m), col[inside]])
        r = np.concatenate([job, self.row_of[row[inside]]])
        v = np.concatenate([np.ones(m), val[inside]])
        order = np.lexsort((r, c))
        starts = np.searchsorted(c[order], np.arange(m)).astype(np.int32)
        self.h.addCols(
            m,
            cost,
            np.zeros(m),
            np.full(m, highspy.kHighsInf),
            order.size,
            starts,
            r[order].astype(np.int32),
            v[order],
        )
        self.e_col.append(col + self.cols)
        self.e_row.append(row)
        self.e_val.append(val)
        self.split.append(split)
        self.cols += m

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All columns' entries on capacity rows: (column, capacity row, chip-hours)."""
        if len(self.e_col) > 1:
            self.e_col = [np.concatenate(self.e_col)]
            self.e_row = [np.concatenate(self.e_row)]
            self.e_val = [np.concatenate(self.e_val)]
        if not self.e_col:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0)
        return self.e_col[0], self.e_row[0], self.e_val[0]

    def add_rows(self, rows: np.ndarray) -> None:
        """Bring capacity rows into the LP, with the entries of the columns already there."""
        self.row_of[rows] = self.n_rows + np.arange(rows.size)
        self.n_rows += rows.size
        col, row, val = self.entries()
        inside = np.isin(row, rows)
        pos = self.row_of[row[inside]]
        c = col[inside] + self.n
        order = np.lexsort((c, pos))
        first_row = self.n_rows - rows.size
        starts = np.searchsorted(pos[order], first_row + np.arange(rows.size)).astype(np.int32)
        self.h.addRows(
            rows.size,
            np.full(rows.size, -highspy.kHighsInf),
            self.capacity[rows],
            order.size,
            starts,
            c[order].astype(np.int32),
            val[inside][order],
        )

    def solve(self, time_left_s: float) -> tuple[bool, float, np.ndarray, np.ndarray, np.ndarray]:
        """Solve within `time_left_s`: whether it was solved, the value, the jobs' duals,
        the capacity rows' prices π ≥ 0 (0 off the LP), and the runs' values."""
        h = self.h
        # HiGHS's time limit counts its run time over every solve of this instance.
        h.setOptionValue("time_limit", h.getRunTime() + max(time_left_s, 0.1))
        h.run()
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            log.debug("master LP not solved: %s", h.modelStatusToString(status))
            return False, math.inf, np.zeros(0), np.zeros(0), np.zeros(0)
        value = float(h.getInfo().objective_function_value)
        sol = h.getSolution()
        dual = np.asarray(sol.row_dual)
        pi = np.zeros(self.capacity.size)
        inside = np.flatnonzero(self.row_of >= 0)
        pi[inside] = np.maximum(-dual[self.row_of[inside]], 0.0)
        values = np.asarray(sol.col_value)
        self.left_out = float(values[: self.n].sum())
        return True, value, dual[: self.n], pi, values[self.n :]

    def split_of(self, x: np.ndarray) -> list[float]:
        """Energy, service and transfer ¥ of the runs at values `x`."""
        if not self.split or x.size == 0:
            return [0.0, 0.0, 0.0]
        parts = np.concatenate(self.split, axis=1)[:, : x.size]
        out: list[float] = (parts @ x).tolist()
        return out

    def over(self, x: np.ndarray) -> np.ndarray:
        """Capacity rows outside the LP that the runs' values `x` overfill."""
        col, row, val = self.entries()
        use = np.bincount(row, weights=val * x[col], minlength=self.capacity.size)
        bad = (use > self.capacity + 1e-7 * np.maximum(self.capacity, 1.0)) & (self.row_of < 0)
        out: np.ndarray = np.flatnonzero(bad)
        return out


class _Lagrangian:
    """L(π) of the time-indexed LP: every job's cheapest run against capacity prices π.

    L(π) = Σ_j min over j's runs of (cost + π · rows) − π · capacity is a lower
    bound for every π ≥ 0. A segment is priced again only when its window
    touches a priced hour and its cheapest run without prices could still beat
    the job's best run found without pricing it (each run costs at least that).
    """

    def __init__(self, inst: _Instance, seg: _Segments, capacity: np.ndarray) -> None:
        self.seg = seg
        self.capacity = capacity
        self.n_pools = inst.snap.index.n_pools
        self.fold, self.top, self.h0 = inst.fold, inst.horizon_h, inst.h0_local
        self.hour_local = (inst.h0_local + np.arange(self.fold, self.top + 1)) % 24
        self.pricer = _Pricer(inst, seg)
        self.fixed = seg.fixed
        self.job_first = np.flatnonzero(np.r_[True, seg.job[1:] != seg.job[:-1]])
        self.lo = np.floor(seg.first).astype(np.int64)
        self.hi = np.minimum(np.ceil(seg.last + seg.run_h).astype(np.int64), self.top + 1)
        self.base = seg.pool * (self.top + 2)
        zero = np.zeros((self.n_pools, self.top + 1))
        self.low0, self.at0, self.high0 = self.pricer.cheapest(
            zero, np.arange(seg.job.size), with_max=True
        )

    def per_job(self, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each job's least `total` over its segments, and the segment that has it."""
        m = np.minimum.reduceat(total, self.job_first)
        return m, _first_per_group(np.flatnonzero(total <= m[self.seg.job]), self.seg.job)

    def dual_by_hour(self, pi: np.ndarray) -> np.ndarray:
        """Capacity prices per (pool, hour since t0), from prices per capacity row."""
        p, fold = self.n_pools, self.fold
        out = np.empty((p, self.top + 1))
        out[:, :fold] = pi[: p * fold].reshape(p, fold)
        out[:, fold:] = pi[p * fold :].reshape(p, 24)[:, self.hour_local]
        return out

    def evaluate(self, pi: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """L(π), each job's least cost + π · rows, its segment and the start of that run."""
        seg = self.seg
        dual = self.dual_by_hour(pi)
        cum = np.zeros((self.n_pools, self.top + 2))
        np.cumsum(dual > 0, axis=1, out=cum[:, 1:])
        touch = cum[seg.pool, self.hi] > cum[seg.pool, self.lo]
        low, at = self.low0, self.at0
        if touch.any():
            np.cumsum(dual, axis=1, out=cum[:, 1:])
            flat = cum.ravel()
            low = self.low0 + seg.chips * (
                _integral(flat, self.base, self.at0 + seg.run_h)
                - _integral(flat, self.base, self.at0)
            )
            best = np.minimum.reduceat(low + self.fixed, self.job_first)[seg.job]
            # Ties are priced too: which of two equal runs is picked steers the ascent.
            need = np.flatnonzero(touch & (self.low0 + self.fixed <= best + 1e-9))
            if need.size:
                at = self.at0.copy()
                low[need], at[need], _ = self.pricer.cheapest(dual, need)
        m, pick = self.per_job(low + self.fixed)
        return float(m.sum() - pi @ self.capacity), m, pick, at

    def usage(self, segs: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Chip-hours the runs (one per job) put on each capacity row."""
        _, row, val = _run_rows(self.seg, segs, starts, self.n_pools, self.fold, self.h0)
        return np.bincount(row, weights=val, minlength=self.capacity.size)


def _ascend(
    lag: _Lagrangian, deadline: float, max_steps: int = 2000
) -> tuple[float, np.ndarray, int, bool, bool, list[tuple[np.ndarray, np.ndarray]]]:
    """Raise L(π) by deflected subgradient steps (Camerini–Fratta–Maffioli direction,
    Polyak step towards a target just above the best value, the target lowered when
    progress stalls).

    Returns the best value and its π, the steps taken, whether it stalled (target
    within 1e-6 of the best), whether the picked runs met every row exactly (then
    L(π) is the optimum) and the runs picked near the end (to seed the master LP).
    """
    cap = lag.capacity
    pi = np.zeros(cap.size)
    best, best_pi = -math.inf, pi
    direction = np.zeros(cap.size)
    eps, stall, steps = 0.01, 0, 0
    picked: list[tuple[np.ndarray, np.ndarray]] = []
    # At least one step: L(0), each job's cheapest run with capacity ignored, is a bound.
    while steps == 0 or (steps < max_steps and time.perf_counter() < deadline):
        steps += 1
        value, _m, pick, at = lag.evaluate(pi)
        if steps == 1 or value > best + 1e-9 * abs(best):
            best, best_pi, stall = value, pi, 0
        else:
            stall += 1
            if stall >= 5:
                eps, stall = eps / 2, 0
        if steps % 25 == 0:
            log.debug("ascent step %d: L(π) = %.2f, best %.2f", steps, value, best)
        picked = [*picked[-9:], (pick, at[pick])]
        g = lag.usage(pick, at[pick]) - cap
        g[(pi <= 0) & (g < 0)] = 0.0  # projected: a row at price 0 with room cannot go lower
        if not g.any():
            # The runs fit and every priced row is full: a schedule that costs L(π).
            return value, pi, steps, True, True, picked
        dot = float(g @ direction)
        if dot < 0:
            g = g - 1.5 * dot / float(direction @ direction) * direction
        direction = g
        if eps < 1e-6:
            return best, best_pi, steps, True, False, picked
        pi = np.maximum(pi + (best * (1 + eps) + 1e-9 - value) / float(g @ g) * g, 0.0)
    return best, best_pi, steps, False, False, picked


def _time_indexed(
    inst: _Instance, max_iterations: int, time_limit_s: float, tolerance: float
) -> Bound:
    """The time-indexed, non-preemptive LP's bound (see the module docstring).

    Two phases, both raising the same Lagrangian bound: a subgradient ascent
    (cheap steps, scales to many jobs), then — once it stalls, with the time
    left — column generation on a master LP seeded with the runs and rows the
    ascent found, which proves the optimum. Rows as well as columns are
    generated: a capacity row joins the master when its solution overfills
    it; a row not in the master has price 0.
    """
    t_start = time.perf_counter()
    deadline = t_start + time_limit_s
    idx = inst.snap.index
    seg, dropped = _segments(inst)
    n = int(seg.job[-1]) + 1 if seg.job.size else 0
    n_pools = idx.n_pools
    fold, top, h0 = inst.fold, inst.horizon_h, inst.h0_local
    # Capacity rows: (pool, hour) for hours before the fold, then (pool, local hour) after
    # it, with chips × how many such hours there are before the horizon.
    per_local = np.bincount((h0 + np.arange(fold, top)) % 24, minlength=24).astype(np.float64)
    chips = idx.pool_total.astype(np.float64)
    capacity = np.concatenate(
        [np.repeat(chips, fold), (chips[:, None] * per_local[None, :]).ravel()]
    )
    notes: list[str] = []
    if inst.widened:
        notes.append(
            f"{inst.widened} deadlines cannot be met even alone; those jobs may run until the end"
        )
    if dropped:
        notes.append(f"{dropped} jobs cannot finish before the end on any pool: left out")
    if n == 0:
        return _ti_bound(inst, 0.0, 0.0, 0, 0, 0, True, [0.0] * 3, notes, t_start)

    lag = _Lagrangian(inst, seg, capacity)
    log.debug(
        "time-indexed LP: %d jobs, %d segments, %d candidate starts, set up in %.1f s",
        n,
        seg.job.size,
        lag.pricer.priced,
        time.perf_counter() - t_start,
    )
    best, best_pi, steps, stalled, exact, picked = _ascend(lag, deadline)
    plan = _plan_split(seg, idx, h0, *picked[-1])
    log.debug(
        "ascent: %d steps, bound %.2f (%s) after %.1f s",
        steps,
        best,
        "exact" if exact else "stalled" if stalled else "time limit",
        time.perf_counter() - t_start,
    )
    if exact:
        return _ti_bound(inst, best, best, steps, n, n, True, plan, notes, t_start)
    # Column generation follows whenever time is left: after a stall, and also after the
    # ascent's step cap (it can creep up by tiny amounts for all of its steps).
    if time.perf_counter() >= deadline:
        notes.append(
            f"the time-indexed LP's bound comes from {steps} subgradient steps stopped by the"
            " time limit (no master LP): it holds, short of the LP optimum by an unknown gap"
        )
        return _ti_bound(inst, best, math.inf, steps, 0, n, False, plan, notes, t_start)

    # Column generation, from the runs the ascent picked last and the rows it priced.
    penalty = 10.0 * np.maximum.reduceat(lag.high0 + lag.fixed, lag.job_first) + 1.0
    master = _Master(n, capacity, penalty)
    seen: set[tuple[int, float]] = set()

    def add(segs: np.ndarray, starts: np.ndarray) -> int:
        keep = [
            k
            for k, key in enumerate(zip(segs.tolist(), starts.tolist(), strict=True))
            if key not in seen
        ]
        if not keep:
            return 0
        s, t = segs[keep], starts[keep]
        seen.update(zip(s.tolist(), t.tolist(), strict=True))
        zeros = np.zeros(s.size)
        # The columns' objective: the cost model's vector form, at each exact start.
        energy, _, _ = option_costs(
            seg.kw[s], idx.cum_tariff, seg.pool[s], h0 + t, seg.run_h[s], 0.0, zeros, zeros
        )
        col, row, val = _run_rows(seg, s, t, n_pools, fold, h0)
        split = np.stack([energy, seg.service[s], seg.transfer[s]])
        master.add_columns(seg.job[s], energy + lag.fixed[s], col, row, val, split)
        return int(s.size)

    for segs, starts in picked:
        add(segs, starts)
    master.add_rows(np.flatnonzero(best_pi > 0))
    upper = math.inf
    iters = 0
    converged = False
    x = np.zeros(0)
    while iters < max_iterations and time.perf_counter() < deadline:
        iters += 1
        solved, value, mu, pi, x = master.solve(deadline - time.perf_counter())
        if not solved:
            break
        over = master.over(x)
        if over.size == 0:
            upper = value  # the master's solution meets every row: a feasible LP point
        lagrangian, m, pick, at = lag.evaluate(pi)
        best = max(best, lagrangian)
        log.debug(
            "master LP %d: %.2f (%s), %d rows, %d columns, bound %.2f after %.1f s",
            iters,
            value,
            "feasible" if over.size == 0 else f"{over.size} rows overfilled",
            master.n_rows - n,
            master.cols,
            best,
            time.perf_counter() - t_start,
        )
        rc = m - mu
        neg = pick[rc < -1e-7 * np.maximum(1.0, np.abs(mu))]
        added = add(neg, at[neg])
        if over.size:
            master.add_rows(over)
        elif upper - best <= tolerance * max(abs(upper), 1.0) or added == 0:
            converged = True
            break
    split = master.split_of(x) if x.size else plan
    if converged and master.left_out > 1e-6:
        notes.append(
            f"about {master.left_out:.1f} jobs cannot be placed with every deadline met: no"
            " schedule meets them all, and the bound holds only for one that would"
        )
    if not converged:
        gap = (
            f"gap {(upper - best) / upper:.2%}"
            if math.isfinite(upper) and upper > 0
            else "no master solution met every row yet, so the gap is unknown"
        )
        notes.append(
            f"the time-indexed LP stopped before convergence ({steps} subgradient steps,"
            f" {iters} master LPs; {gap}): its bound holds"
        )
    return _ti_bound(
        inst, best, upper, steps + iters, n + master.cols, n, converged, split, notes, t_start
    )


def _plan_split(
    seg: _Segments, idx: NetworkIndex, h0: int, segs: np.ndarray, starts: np.ndarray
) -> list[float]:
    """Energy, service and transfer ¥ of one run per job (the Lagrangian plan)."""
    zeros = np.zeros(segs.size)
    energy, _, _ = option_costs(
        seg.kw[segs],
        idx.cum_tariff,
        seg.pool[segs],
        h0 + starts,
        seg.run_h[segs],
        0.0,
        zeros,
        zeros,
    )
    return [float(energy.sum()), float(seg.service[segs].sum()), float(seg.transfer[segs].sum())]


def _ti_bound(
    inst: _Instance,
    best: float,
    upper: float,
    iters: int,
    cols: int,
    jobs: int,
    converged: bool,
    split: list[float],
    notes: list[str],
    t_start: float,
) -> Bound:
    """The time-indexed LP's `Bound` from its best Lagrangian value `best`."""
    cny = max(best - ROUNDING_CNY_PER_JOB * inst.n_jobs, 0.0)
    gap = math.inf  # no feasible master solution: the gap is unknown
    if math.isfinite(upper):
        gap = (upper - best) / upper if upper > 0 else 0.0
    return Bound(
        cny=cny,
        lp_upper_cny=upper,
        gap=gap,
        iterations=iters,
        columns=cols,
        jobs=jobs,
        blocks=inst.fold + (24 if inst.fold < inst.horizon_h else 0),
        seconds=time.perf_counter() - t_start,
        deadlines_enforced=inst.enforce_deadlines,
        widened=inst.widened,
        converged=converged,
        notes=tuple(notes),
        energy_cny=split[0],
        service_cny=split[1],
        transfer_cny=split[2],
        method="time-indexed",
        time_indexed_cny=cny,
    )


def _run_rows(
    seg: _Segments, s: np.ndarray, t: np.ndarray, n_pools: int, fold: int, h0: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs (segment `s`, start `t`) as entries (run, capacity row, chips × hours held in
    that row's hour); hours from the fold on fall in their pool's row for that local hour."""
    m = s.size
    end = t + seg.run_h[s]
    h_lo = np.floor(t).astype(np.int64)
    count = np.maximum(np.ceil(end).astype(np.int64) - h_lo, 1)
    col = np.repeat(np.arange(m), count)
    hour = h_lo[col] + (np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count))
    occ = np.minimum(end[col], hour + 1.0) - np.maximum(t[col], hour)
    pool = seg.pool[s][col]
    row = np.where(hour < fold, pool * fold + hour, n_pools * fold + pool * 24 + (h0 + hour) % 24)
    keep = occ > 1e-9
    n_cap = n_pools * (fold + 24)
    key = col[keep] * n_cap + row[keep]
    uniq, inv = np.unique(key, return_inverse=True)
    vals = np.bincount(inv, weights=seg.chips[s][col[keep]] * occ[keep])
    return uniq // n_cap, uniq % n_cap, vals
