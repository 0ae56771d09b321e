"""Simulator scale: jobs/s and placements/s of the production scheduler on a virtual clock.

Usage:
    .venv/bin/python bench/sim_scale.py                 # both cases below
    .venv/bin/python bench/sim_scale.py --case china    # 100k jobs × 30 days, `china` (≤ 60 s)
    .venv/bin/python bench/sim_scale.py --case large    # 1M jobs on 1,000 centers (goal ≤ 10 min)
    .venv/bin/python bench/sim_scale.py --case china --jobs 20000 --days 7 --policy ours:min-cost

Prints figures only; never asserts on timings. The scheduler's kernels are
loaded (`kernel.warm_up()`) before the clock starts, as a server does at
start. `fingerprint` is a hash of every job's outcome (state, pool, placement
and start instants, planned and billed fen, reasons): two versions of the code
that decide alike print the same one, so a speed-up can be checked not to
change a decision (run the old and the new side by side).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import numpy as np

from computenet.catalog import load_network
from computenet.catalog.generate import generated_network
from computenet.model import JobState
from computenet.scheduler import kernel
from computenet.sim import SimConfig, Simulation, make_policy, synthetic
from computenet.sim.metrics import summarize
from computenet.sim.results import CODE, SimResult


def fingerprint(r: SimResult) -> str:
    """A hash of every job's outcome in `r` (equal runs, equal hashes)."""
    h = hashlib.sha256()
    rec = r.records
    for name in (
        "state",
        "pool",
        "placed",
        "hold_start",
        "run_start",
        "end",
        "planned_fen",
        "energy_fen",
        "service_fen",
        "transfer_fen",
    ):
        h.update(np.ascontiguousarray(getattr(rec, name)).tobytes())
    h.update(repr(sorted(rec.reasons.items())).encode())
    return h.hexdigest()[:16]


def bench(net_name: str, jobs: int, days: float, policy: str, centers: int) -> None:
    warm = kernel.warm_up()
    t0 = time.perf_counter()
    net = generated_network(centers) if net_name == "generated" else load_network(net_name)
    t1 = time.perf_counter()
    wl = synthetic(net, jobs=jobs, days=days, seed=1)
    t2 = time.perf_counter()
    sim = Simulation(wl, make_policy(policy), SimConfig())
    c0 = time.process_time()
    r = sim.run()
    cpu = time.process_time() - c0
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
        f" ({r.policy_s:.1f} s in the scheduler, {r.cycles:,} cycles, {r.events:,} events;"
        f" {cpu:.1f} s CPU; kernels warmed up before in {warm:.1f} s)"
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
    print(f"  end to end incl. generation: {t3 - t1:.1f} s; fingerprint {fingerprint(r)}")
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
