"""Figures of merit of a simulation run: money, energy, carbon, time, misses, data moved, use."""

from __future__ import annotations

from collections.abc import Sequence
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


# The comparison table (CLI and HTML report): header, PolicyMetrics field. Job
# completion times sit next to cost, so that what a saving costs in time shows.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("policy", "name"),
    ("total ¥", "total_cny"),
    ("avg JCT h", "avg_jct_s"),
    ("p95 JCT h", "p95_jct_s"),
    ("miss %", "deadline_miss_pct"),
    ("¥/CU·h", "cny_per_cuh"),
    ("kWh", "kwh"),
    ("t CO2", "t_co2"),
    ("WAN TB", "wan_tb"),
    ("util E", "util_east"),
    ("util W", "util_west"),
    ("× bound", "ratio_to_bound"),
)


def cell(m: PolicyMetrics, key: str) -> str:
    """One table cell, formatted for people."""
    v = getattr(m, key)
    if key == "name":
        return str(v)
    if v is None:
        return "–"
    if key in ("avg_jct_s", "p95_jct_s"):
        return f"{v / 3600:.2f}"
    if key in ("util_east", "util_west"):
        return f"{100 * v:.1f} %"
    if key == "ratio_to_bound":
        return f"{v:.3f}"
    if key in ("total_cny", "kwh"):
        return f"{v:,.0f}"
    if key in ("t_co2", "wan_tb", "deadline_miss_pct", "cny_per_cuh"):
        return f"{v:,.2f}"
    return str(v)


def is_ours(name: str) -> bool:
    """Whether a policy name is the production scheduler (`ours`, `ours:…`), not a baseline."""
    return name == "ours" or name.startswith("ours:")


@dataclass(frozen=True)
class Tradeoff:
    """What one of our policies saves against the cheapest baseline, and what it costs in time.

    `extra_*_jct_h` are ours minus the cheapest baseline's job completion
    times (hours; negative: ours is also faster); `vs_fastest_jct_h` is ours
    minus the fastest baseline's average (the most time any baseline saves).
    """

    policy: str
    baseline: str
    saved_cny: float
    saved_pct: float
    extra_avg_jct_h: float
    extra_p95_jct_h: float
    fastest_baseline: str
    vs_fastest_jct_h: float

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON."""
        return asdict(self)

    def text(self) -> str:
        """One line for people."""
        return (
            f"{self.policy} saves ¥{self.saved_cny:,.0f} ({self.saved_pct:.1f} %) against the"
            f" cheapest baseline, {self.baseline}, for {self.extra_avg_jct_h:+.2f} h average"
            f" JCT ({self.extra_p95_jct_h:+.2f} h p95); {self.vs_fastest_jct_h:+.2f} h average"
            f" against the fastest baseline, {self.fastest_baseline}"
        )


def tradeoffs(metrics: Sequence[PolicyMetrics]) -> list[Tradeoff]:
    """For each of our policies: ¥ saved against the cheapest baseline, at what JCT.

    Empty without a baseline. A run that did not finish every job counts
    what it finished (the comparison's notes say so).
    """
    base = [m for m in metrics if not is_ours(m.name)]
    if not base:
        return []
    cheap = min(base, key=lambda m: m.total_cny)
    fast = min(base, key=lambda m: m.avg_jct_s)
    out = []
    for m in metrics:
        if not is_ours(m.name):
            continue
        saved = cheap.total_cny - m.total_cny
        out.append(
            Tradeoff(
                policy=m.name,
                baseline=cheap.name,
                saved_cny=saved,
                saved_pct=100.0 * saved / cheap.total_cny if cheap.total_cny else 0.0,
                extra_avg_jct_h=(m.avg_jct_s - cheap.avg_jct_s) / 3600.0,
                extra_p95_jct_h=(m.p95_jct_s - cheap.p95_jct_s) / 3600.0,
                fastest_baseline=fast.name,
                vs_fastest_jct_h=(m.avg_jct_s - fast.avg_jct_s) / 3600.0,
            )
        )
    return out


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
