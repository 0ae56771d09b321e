"""Simulator scale: jobs/s and placements/s of the production scheduler on a virtual clock.

Usage:
    .venv/bin/python bench/sim_scale.py                 # both cases below
    .venv/bin/python bench/sim_scale.py --case china    # 100k jobs × 30 days, `china` (≤ 60 s)
    .venv/bin/python bench/sim_scale.py --case large    # 1M jobs on 1,000 centers (goal ≤ 10 min)
    .venv/bin/python bench/sim_scale.py --case china --jobs 20000 --days 7 --policy ours:min-cost

Prints figures only; never asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import time

from computenet.catalog import load_network
from computenet.catalog.generate import generated_network
from computenet.model import JobState
from computenet.sim import SimConfig, Simulation, make_policy, synthetic
from computenet.sim.metrics import summarize
from computenet.sim.results import CODE


def bench(net_name: str, jobs: int, days: float, policy: str, centers: int) -> None:
    t0 = time.perf_counter()
    net = generated_network(centers) if net_name == "generated" else load_network(net_name)
    t1 = time.perf_counter()
    wl = synthetic(net, jobs=jobs, days=days, seed=1)
    t2 = time.perf_counter()
    sim = Simulation(wl, make_policy(policy), SimConfig())
    r = sim.run()
    t3 = time.perf_counter()
    m = summarize(r)
    ok = int((r.records.state == CODE[JobState.SUCCEEDED]).sum())
    print(
        f"network {net.name}: {len(net.centers)} centers,"
        f" {sum(c.total_chips for c in net.centers):,} chips"
        f" (built in {t1 - t0:.1f} s)"
    )
    print(f"workload {wl.name}: {len(wl):,} jobs generated in {t2 - t1:.1f} s")
    print(
        f"policy {policy}: simulated {r.end_s / 86400:.1f} days in {r.wall_s:.1f} s wall"
        f" ({r.policy_s:.1f} s in the scheduler, {r.cycles:,} cycles, {r.events:,} events)"
    )
    print(f"  jobs/s        {len(wl) / r.wall_s:,.0f}")
    print(
        f"  placements/s  {r.placements / r.policy_s:,.0f} (scheduler only)"
        f"  {r.placements / r.wall_s:,.0f} (end to end)"
    )
    print(
        f"  succeeded {ok:,} / {len(wl):,}; total ¥{m.total_cny:,.0f};"
        f" miss {m.deadline_miss_pct:.2f} %;"
        f" util east {m.util_east:.1%} west {m.util_west:.1%}"
    )
    print(f"  end to end incl. generation: {t3 - t1:.1f} s")
    print(f"  {time.strftime('%Y-%m-%d %H:%M %Z')}, load average now {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--case", choices=("china", "large", "both"), default="both")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--days", type=float)
    ap.add_argument("--centers", type=int, default=1000)
    ap.add_argument("--policy", default="ours")
    a = ap.parse_args()
    if a.case in ("china", "both"):
        bench("china", a.jobs or 100_000, a.days or 30, a.policy, 0)
    if a.case in ("large", "both"):
        bench("generated", a.jobs or 1_000_000, a.days or 30, a.policy, a.centers)


if __name__ == "__main__":
    main()
