"""What compute vouchers cost the scheduling cycle: the same cycle with and without them.

1000 pending jobs (20 % with a budget) over a generated 100-center network, all of one
tenant; B gives that tenant two vouchers (50 % everywhere, 80 % at ten centers), so every
budgeted job's options go through `scheduler.subsidy.check` instead of the kernel's
budget check. A and B alternate in one run; prints median wall and CPU seconds per
cycle and the B/A ratio, and how many jobs each placed.
Run: .venv/bin/python bench/vouchers_cycle.py [--repeats 5] [--jobs 1000] [--centers 100]
     [--budget-scale 0.02]  (tight budgets: most budgeted options go through the exact check)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from schedule_cycle import _time, jobs_for

from computenet.catalog.generate import generated_network
from computenet.metering.vouchers import Voucher
from computenet.scheduler import build_snapshot, kernel
from computenet.scheduler.greedy import greedy_cycle


def main() -> None:
    """Run A (no vouchers) and B (two vouchers) alternately and print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--centers", type=int, default=100)
    ap.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="multiply every budget (e.g. 0.02: budgets that only vouchers make fit)",
    )
    args = ap.parse_args()
    kernel.warm_up()
    net = generated_network(args.centers)
    now, datasets, jobs = jobs_for(net, args.jobs)
    scale = Decimal(str(args.budget_scale))
    jobs = [
        dataclasses.replace(
            j, tenant="t", budget_cny=None if j.budget_cny is None else j.budget_cny * scale
        )
        for j in jobs
    ]
    some = tuple(c.id for c in net.centers[:10])
    wallet = tuple(
        Voucher(
            id=i + 1,
            tenant="t",
            issuer=name,
            pct=Decimal(pct),
            cap_cny=Decimal("1000000"),
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=30),
            centers=centers,
        )
        for i, (name, pct, centers) in enumerate((("national", "50", ()), ("Shanghai", "80", some)))
    )
    budgeted = sum(j.budget_cny is not None for j in jobs)
    runs: dict[str, list[tuple[float, float, int]]] = {"A": [], "B": []}
    for _ in range(args.repeats):
        for name, vouchers in (("A", {}), ("B", {"t": wallet})):
            snap = build_snapshot(net, now, datasets=datasets, vouchers=vouchers)
            wall, cpu, out = _time(lambda s=snap: greedy_cycle(s, jobs))
            runs[name].append((wall, cpu, sum(d.placement is not None for d in out)))
    print(
        f"{args.jobs} jobs ({budgeted} with a budget × {args.budget_scale:g}),"
        f" {args.centers} centers, {args.repeats} repeats each, alternating"
    )
    med = {}
    for name, rs in runs.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        med[name] = (wall, cpu)
        print(f"{name}: median wall {wall:.3f} s, CPU {cpu:.3f} s, placed {rs[-1][2]}")
    print(f"B/A: wall {med['B'][0] / med['A'][0]:.2f}×, CPU {med['B'][1] / med['A'][1]:.2f}×")


if __name__ == "__main__":
    main()
