"""A lower bound on total cost: the LP relaxation (fractional, preemptive) of the placement problem.

Given every job of a workload (arrival, work, chips, inputs, deadline), no
schedule — by any policy — can cost less than the optimum of this LP:

    minimize   Σ y[j,p,b] · (kW[p]·PUE[p]·tariff[p,b] + PFLOPS[j,p]·(service[p] + τ[j,p]))
    subject to Σ_{p,b} y[j,p,b] · PFLOPS[j,p] = CU·h[j]           (all work done)
               Σ_j y[j,p,b] ≤ chips[p] · hours[b]                  (capacity)
               0 ≤ y[j,p,b] ≤ n[j] · overlap(b, window[j])         (n chips at a time)

where y is chip-hours of job j on pool p during block b. Blocks are runs of
hours in which no tariff changes and no job's window opens or closes, so a
block's energy price is exact and its capacity is shared by the right jobs;
after the last arrival and deadline the days fold into one periodic day;
τ[j,p] is the cheapest ¥ per CU·h of bringing j's inputs to p's center.
A job's window runs from its arrival to its deadline (`enforce_deadlines`),
or to `end` (when it has none, when its deadline cannot be met even with the
network to itself, or when deadlines are not enforced). Without deadlines the
bound holds for every policy; with them, for every policy that meets them.

It is solved by column generation: a HiGHS master LP over a few columns per
job, priced against the duals. The bound reported is the best Lagrangian value
L(π) = Σ_j min_j(cost + π) − Σ π·capacity over the duals π seen, which is a
valid lower bound at every iteration and equals the LP optimum at convergence.
Metering rounds each of a run's three charges to the fen, so the bound gives
back 1.5 fen per job.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import highspy
import numpy as np

from computenet.metering.cost import energy_cny_per_chip_hour, transfer_cny_vec
from computenet.model import Network
from computenet.model.center import CST
from computenet.scheduler.plugins import FILTERS
from computenet.scheduler.plugins.filters import FilterContext
from computenet.scheduler.snapshot import JobRequest, build_snapshot
from computenet.scheduler.solver import quiet_highs

log = logging.getLogger(__name__)

ROUNDING_CNY_PER_JOB = 0.015


@dataclass(frozen=True)
class Bound:
    """The lower bound and how it was obtained."""

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


def lower_bound(
    network: Network,
    jobs: Sequence[JobRequest],
    *,
    end: datetime,
    enforce_deadlines: bool = True,
    max_iterations: int = 60,
    time_limit_s: float = 300.0,
    tolerance: float = 1e-4,
) -> Bound:
    """The LP lower bound on the total ¥ of running `jobs` on `network` by `end`.

    `jobs` carry their true work (`cu_hours`) and `submitted_at`; `end` must be
    no earlier than the last instant any schedule being bounded uses.
    """
    t_start = time.perf_counter()
    if not jobs:
        return Bound(0.0, 0.0, 0.0, 0, 0, 0, 0, 0.0, enforce_deadlines, 0, True)
    first = min(j.submitted_at or end for j in jobs)
    t0 = first.astimezone(CST).replace(minute=0, second=0, microsecond=0)
    horizon_h = max(math.ceil((end - t0).total_seconds() / 3600.0), 1)
    snap = build_snapshot(network, t0)
    idx = snap.index
    n_pools = idx.n_pools

    # First the jobs' eligible pools and windows (hours since t0).
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

    # Blocks: maximal runs of hours in which no tariff changes and no window opens or closes,
    # so that capacity is shared exactly among the jobs that may use it. After the last
    # arrival or deadline (from the next local midnight on) nothing but prices changes, and
    # prices repeat daily: those days fold into one day of tariff segments whose capacity is
    # pooled, which relaxes the LP further and keeps it small however late `end` is.
    changes = sorted(set(idx.tariff_change_hours)) or [0]
    h0_local = t0.hour
    last = max(
        [a for _j, _p, a, _d in staged] + [d for _j, _p, _a, d in staged if d < horizon_h],
        default=0.0,
    )
    fold = min(horizon_h, math.floor(last) + 1 + (24 - (h0_local + math.floor(last) + 1) % 24) % 24)
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
        tau = _transfer_per_cuh(snap, job)[idx.pool_center[pools]]
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
    cny = max(best_l - ROUNDING_CNY_PER_JOB * len(jobs), 0.0)
    gap = (upper - best_l) / upper if upper > 0 and math.isfinite(upper) else 0.0
    notes = []
    if widened:
        notes.append(
            f"{widened} deadlines cannot be met even alone; those jobs may run until the end"
        )
    if not converged:
        notes.append(f"column generation stopped before convergence (gap {gap:.2%})")
    return Bound(
        cny=cny,
        lp_upper_cny=upper,
        gap=gap,
        iterations=iters,
        columns=n_cols,
        jobs=len(prepared),
        blocks=n_blocks,
        seconds=time.perf_counter() - t_start,
        deadlines_enforced=enforce_deadlines,
        widened=widened,
        converged=converged,
        notes=tuple(notes),
        energy_cny=split[0],
        service_cny=split[1],
        transfer_cny=split[2],
    )


def _transfer_per_cuh(snap: object, job: JobRequest) -> np.ndarray:
    """Per center: the cheapest ¥ of bringing the job's inputs there, per CU·h of its work.

    Priced by the one cost model (each input a lot at its path's ¥/GB), from the
    cheapest replica rather than the one a policy picks: that keeps the bound valid.
    """
    idx = snap.index  # type: ignore[attr-defined]
    scale = snap.network.data_scale  # type: ignore[attr-defined]
    total = np.zeros(len(idx.center_node))
    for d in job.inputs:
        rows = [idx.paths.index(r) for r in d.replicas if r in idx.paths.nodes]
        if not rows or d.size_gb <= 0:
            continue
        price = idx.paths.price_per_gb[rows][:, idx.center_node].min(axis=0)
        total += transfer_cny_vec(d.size_gb * scale, price)
    return total / job.cu_hours


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


def bound_window_end(last: datetime, extra: timedelta = timedelta(days=30)) -> datetime:
    """A default `end`: the last instant of interest plus the simulator's drain allowance."""
    return last + extra
