"""Quotes: every option for a job with price and finish time; nothing is submitted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from computenet.protocol import QuoteOption
from computenet.scheduler.framework import MAX_FINISH_H, evaluate, to_placement
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import JobRequest, Snapshot


@dataclass(frozen=True)
class QuoteResult:
    """The options table, and why there is none when it is empty."""

    options: list[QuoteOption]
    infeasible_reasons: list[str]


def quote(snapshot: Snapshot, job: JobRequest, profile: str = "min-cost") -> QuoteResult:
    """Options per pool (earliest start, and the cheapest shifted start when allowed)."""
    opts = evaluate(snapshot, snapshot.free, job, PROFILES[profile])
    keep: list[int] = []
    # An option finishing beyond the horizon of deadlines is not shown (nor representable).
    shown = opts.finish_h <= MAX_FINISH_H
    for p in np.unique(opts.pool[shown]):
        mine = np.flatnonzero((opts.pool == p) & shown)
        first = int(mine[np.argmin(opts.start_h[mine])])
        keep.append(first)
        ok = mine[opts.feasible[mine]]
        if ok.size:
            cheapest = int(ok[np.argmin(opts.cost[ok])])
            if cheapest != first:
                keep.append(cheapest)
    rows: list[QuoteOption] = []
    for i in keep:
        pl = to_placement(snapshot, job, opts, i)
        rows.append(
            QuoteOption(
                center=pl.center,
                chip=pl.chip,
                count=pl.count,
                planned_start=pl.planned_start,
                finish=pl.finish,
                energy_cny=pl.cost.energy_cny,
                service_cny=pl.cost.service_cny,
                transfer_cny=pl.cost.transfer_cny,
                total_cny=pl.total_cny,
                kwh=pl.kwh,
                co2_kg=pl.co2_kg,
                transfer_s=pl.transfer_s,
                run_s=pl.run_s,
                feasible=bool(opts.feasible[i]),
                reasons=[] if opts.feasible[i] else ["misses the deadline or the budget"],
            )
        )
    feasible = [r for r in rows if r.feasible]
    if feasible:
        min(feasible, key=lambda r: (r.total_cny, r.finish)).cheapest = True
        min(feasible, key=lambda r: (r.finish, r.total_cny)).fastest = True
    rows.sort(key=lambda r: (not r.feasible, r.total_cny, r.finish))
    return QuoteResult(options=rows, infeasible_reasons=[] if feasible else list(opts.why_not))
