"""Quotes: every option for a job with price and finish time; nothing is submitted."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from computenet.protocol import QuoteOption
from computenet.scheduler.framework import MAX_FINISH_H, evaluate, to_placement
from computenet.scheduler.patience import hours_text, patience_note
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import JobRequest, Snapshot


@dataclass(frozen=True)
class QuoteResult:
    """The options table, why there is none when it is empty, and notes on every option.

    `notes` says, for a job without a deadline, how long it may be held for
    cheaper power (the operator's patience, `scheduler.patience`).
    """

    options: list[QuoteOption]
    infeasible_reasons: list[str]
    notes: list[str] = field(default_factory=list)


def quote(snapshot: Snapshot, job: JobRequest, profile: str = "min-cost") -> QuoteResult:
    """Options per pool (earliest start, and the cheapest shifted start when allowed)."""
    prof = PROFILES[profile]
    opts = evaluate(snapshot, snapshot.free, job, prof)
    keep: list[int] = []
    held: dict[int, float] = {}  # option → hours it starts after the pool's earliest
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
                held[cheapest] = float(opts.start_h[cheapest] - opts.start_h[first])
    rows: list[QuoteOption] = []
    for i in keep:
        why = [] if opts.feasible[i] else ["misses the deadline or the budget"]
        if i in held:
            why.append(f"held {hours_text(held[i])} for a cheaper tariff hour")
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
                reasons=why,
            )
        )
    feasible = [r for r in rows if r.feasible]
    if feasible:
        min(feasible, key=lambda r: (r.total_cny, r.finish)).cheapest = True
        min(feasible, key=lambda r: (r.finish, r.total_cny)).fastest = True
    rows.sort(key=lambda r: (not r.feasible, r.total_cny, r.finish))
    note = patience_note(snapshot, job, prof)
    return QuoteResult(
        options=rows,
        infeasible_reasons=[] if feasible else list(opts.why_not),
        notes=[note] if note else [],
    )
