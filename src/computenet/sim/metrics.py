"""Figures of merit of a simulation run: money, energy, carbon, time, misses, data moved, use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

import numpy as np

from computenet.model import JobState
from computenet.sim.results import CODE, SimResult


@dataclass(frozen=True)
class PolicyMetrics:
    """One row of the comparison table (JSON-ready: floats and ints only)."""

    name: str
    jobs: int
    succeeded: int
    failed: int
    cancelled: int
    total_cny: float
    energy_cny: float
    service_cny: float
    transfer_cny: float
    cny_per_cuh: float
    kwh: float
    t_co2: float
    avg_jct_s: float
    p95_jct_s: float
    deadline_miss_pct: float
    budget_over_pct: float
    wan_tb: float
    util_east: float
    util_west: float
    ratio_to_bound: float | None
    wall_s: float
    policy_s: float
    placements: int
    cycles: int
    jobs_per_s: float
    placements_per_s: float

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON."""
        return asdict(self)


def total_cny(result: SimResult) -> Decimal:
    """Exact total ¥ of a run (sum of the per-job records, in fen)."""
    r = result.records
    fen = int(r.energy_fen.sum()) + int(r.service_fen.sum()) + int(r.transfer_fen.sum())
    return Decimal(fen) / 100


def deadline_missed(result: SimResult) -> np.ndarray:
    """Per job: it had a deadline and did not succeed by it."""
    wl, r = result.workload, result.records
    assert wl.deadline is not None
    has = ~np.isnan(wl.deadline)
    ok = (r.state == CODE[JobState.SUCCEEDED]) & (
        r.end <= np.nan_to_num(wl.deadline, nan=np.inf) + 1.0
    )
    out: np.ndarray = has & ~ok
    return out


def region_utilization(result: SimResult) -> dict[str, float]:
    """Share of each side's chip time held by jobs during the arrival window."""
    net = result.workload.network
    hours = max(int(np.ceil(result.workload.days * 24)), 1)
    used = result.util[:, :hours].sum(axis=1)
    out: dict[str, float] = {}
    for region in ("east", "west"):
        rows = [i for i, c in enumerate(net.centers) if c.region == region]
        cap = sum(net.centers[i].total_chips for i in rows) * hours * 3600.0
        out[region] = float(used[rows].sum() / cap) if cap else 0.0
    return out


def hub_utilization(result: SimResult) -> dict[str, np.ndarray]:
    """Hourly share of each hub's chips held (hub = the center's hub, else its id)."""
    net = result.workload.network
    hours = max(int(np.ceil(result.workload.days * 24)), 1)
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(net.centers):
        groups.setdefault(c.hub or c.id, []).append(i)
    out = {}
    for hub, rows in groups.items():
        cap = sum(net.centers[i].total_chips for i in rows) * 3600.0
        out[hub] = result.util[rows, :hours].sum(axis=0) / cap
    return out


def summarize(result: SimResult, bound_cny: float | None = None) -> PolicyMetrics:
    """The comparison row for one run; `bound_cny` is the LP lower bound, when known."""
    wl, r = result.workload, result.records
    assert wl.budget is not None
    n = len(wl)
    ok = r.state == CODE[JobState.SUCCEEDED]
    jct = (r.end - wl.arrival)[ok]
    tot = float(total_cny(result))
    cu = float(r.cu_hours.sum())
    has_budget = ~np.isnan(wl.budget)
    spent = (r.energy_fen + r.service_fen + r.transfer_fen) / 100.0
    over = has_budget & (spent > np.nan_to_num(wl.budget, nan=np.inf) + 0.005)
    has_deadline = int((~np.isnan(wl.deadline)).sum()) if wl.deadline is not None else 0
    util = region_utilization(result)
    return PolicyMetrics(
        name=result.policy,
        jobs=n,
        succeeded=int(ok.sum()),
        failed=int((r.state == CODE[JobState.FAILED]).sum()),
        cancelled=int((r.state == CODE[JobState.CANCELLED]).sum()),
        total_cny=tot,
        energy_cny=int(r.energy_fen.sum()) / 100.0,
        service_cny=int(r.service_fen.sum()) / 100.0,
        transfer_cny=int(r.transfer_fen.sum()) / 100.0,
        cny_per_cuh=tot / cu if cu else 0.0,
        kwh=float(r.kwh.sum()),
        t_co2=float(r.co2_kg.sum()) / 1000.0,
        avg_jct_s=float(jct.mean()) if jct.size else 0.0,
        p95_jct_s=float(np.percentile(jct, 95)) if jct.size else 0.0,
        deadline_miss_pct=100.0 * int(deadline_missed(result).sum()) / has_deadline
        if has_deadline
        else 0.0,
        budget_over_pct=100.0 * int(over.sum()) / int(has_budget.sum())
        if has_budget.any()
        else 0.0,
        wan_tb=float(r.wan_gb.sum()) / 1000.0,
        util_east=util["east"],
        util_west=util["west"],
        ratio_to_bound=tot / bound_cny if bound_cny else None,
        wall_s=result.wall_s,
        policy_s=result.policy_s,
        placements=result.placements,
        cycles=result.cycles,
        jobs_per_s=n / result.wall_s if result.wall_s > 0 else 0.0,
        placements_per_s=result.placements / result.policy_s if result.policy_s > 0 else 0.0,
    )
