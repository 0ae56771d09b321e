"""The LP lower bounds side by side: today's preemptive LP and the time-indexed one.

Usage:
    .venv/bin/python bench/lp_bound.py                      # both china cases
    .venv/bin/python bench/lp_bound.py --case 5k --new-limit 120
    .venv/bin/python bench/lp_bound.py --no-ours            # skip the `ours` run

For each case (the `china` synthetic workloads of bench/sim_quality.py:
synthetic:jobs=5000,days=3,seed=11 and synthetic:jobs=20000,days=7,seed=1) it
runs `ours` once (for the horizon `compare` would bound and for its cost),
then each bound alone, and prints ¥, seconds, iterations and whether it
converged; a bound stopped by its time limit is still valid (its best
Lagrangian value). Goal: the time-indexed bound for 20k jobs in ≤ 60 s.

Prints figures only; never asserts.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import replace
from datetime import timedelta

import numpy as np

from computenet.catalog import load_network
from computenet.scheduler.bounds import Bound, lower_bound
from computenet.sim import SimConfig
from computenet.sim.metrics import total_cny
from computenet.sim.runner import parse_workload, run_policy

CASES = {
    "5k": ("synthetic:jobs=5000,days=3,seed=11", 11),
    "20k": ("synthetic:jobs=20000,days=7,seed=1", 1),
}


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _row(name: str, b: Bound, ours: float | None) -> str:
    ratio = f"  ours ×{ours / b.cny:6.3f}" if ours and b.cny > 0 else ""
    upper = f"LP ≤ ¥{b.lp_upper_cny:12,.0f}" if np.isfinite(b.lp_upper_cny) else "LP ≤ ?" + " " * 12
    return (
        f"  {name:13s} ¥{b.cny:12,.0f}  {upper}  {b.seconds:7.1f} s  {b.iterations:5d} it"
        f"  {'converged' if b.converged else 'stopped  '}{ratio}"
    )


def case(spec: str, seed: int, old_limit: float, new_limit: float, ours_run: bool) -> None:
    """One workload: ours (optional), the preemptive bound, the time-indexed bound."""
    net = load_network("china")
    wl = parse_workload(spec, net)
    cfg = SimConfig(seed=seed)
    print(f"\n== china, {wl.name}: {len(wl)} jobs ({_load()}) ==")
    end_s = wl.days * 86400.0 + cfg.drain_days * 86400.0
    ours: float | None = None
    if ours_run:
        t = time.perf_counter()
        r = run_policy(wl, "ours", cfg)
        ours = float(total_cny(r))
        # The horizon `compare` bounds: the last end of the run, plus an hour.
        end_s = max(float(np.nanmax(r.records.end)), wl.days * 86400.0) + 3600.0
        print(f"  ours          ¥{ours:12,.0f}  ({time.perf_counter() - t:.0f} s simulated)")
    assert wl.runtime_factor is not None
    reqs = [
        replace(wl.request(i, cfg.epoch), cu_hours=float(wl.cu_hours[i] * wl.runtime_factor[i]))
        for i in range(len(wl))
    ]
    end = cfg.epoch + timedelta(seconds=end_s)
    print(f"  horizon {end_s / 3600:.1f} h")
    old = lower_bound(net, reqs, end=end, method="preemptive", time_limit_s=old_limit)
    print(_row("preemptive", old, ours), flush=True)
    new = lower_bound(net, reqs, end=end, method="time-indexed", time_limit_s=new_limit)
    print(_row("time-indexed", new, ours), flush=True)
    ratio = f"×{new.cny / old.cny:.4f}" if old.cny > 0 else "–"
    print(f"  time-indexed / preemptive: {ratio}; {new.columns:,} columns in the master; {_load()}")
    for note in new.notes:
        print(f"  note: {note}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--case", choices=(*CASES, "all"), default="all")
    ap.add_argument("--old-limit", type=float, default=300.0, help="seconds (compare's limit)")
    ap.add_argument("--new-limit", type=float, default=60.0, help="seconds")
    ap.add_argument("--no-ours", action="store_true", help="bound to days + drain instead")
    ap.add_argument("--verbose", action="store_true", help="log the bound's steps to stderr")
    a = ap.parse_args()
    if a.verbose:
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("computenet.scheduler.bounds").setLevel(logging.DEBUG)
    for name in CASES if a.case == "all" else (a.case,):
        spec, seed = CASES[name]
        case(spec, seed, a.old_limit, a.new_limit, not a.no_ours)


if __name__ == "__main__":
    main()
