"""Time one scheduling cycle for 1k and 10k pending jobs over a 100-center network.

Prints medians over repeats and per-job cost. Goal (issue 2): a 10k × 100 cycle ≤ 1 s.
Run: .venv/bin/python bench/schedule_cycle.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import datetime
from decimal import Decimal

from computenet.catalog.generate import generated_network
from computenet.model import Dataset, JobSpec
from computenet.model.center import CST
from computenet.scheduler import build_snapshot, job_request, schedule_cycle


def jobs_for(net, n: int, seed: int = 1):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    now = datetime(2026, 12, 1, 20, 0, tzinfo=CST)
    east = [c.id for c in net.centers if c.region == "east"]
    datasets = {
        f"d{i}": Dataset(
            id=f"d{i}",
            size_bytes=int(rng.uniform(1, 500) * 1e9),
            sha256="0" * 64,
            replicas=(rng.choice(east),),
        )
        for i in range(50)
    }
    classes = ["llm-train", "cv-train", "inference", "cpu-batch"]
    out = []
    for i in range(n):
        cls = rng.choice(classes)
        spec = JobSpec(
            **{
                "class": cls,
                "command": "true",
                "chips": {"count": rng.choice((1, 2, 4, 8))},
                "work": {
                    "cu_hours": round(rng.uniform(0.05, 20) if cls != "cpu-batch" else 0.02, 3)
                },
                "inputs": [f"d{rng.randrange(50)}"] if rng.random() < 0.5 else [],
                "deadline": f"{rng.choice((6, 12, 24, 48))}h" if rng.random() < 0.7 else None,
                "budget_cny": str(Decimal(rng.choice((500, 5000)))) if rng.random() < 0.2 else None,
            }
        )
        out.append(job_request(f"j{i}", spec, net, now, datasets))
    return now, datasets, out


def main() -> None:
    """Run the benchmark and print figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--centers", type=int, default=100)
    args = ap.parse_args()
    net = generated_network(args.centers, seed=7)
    print(f"network: {len(net.centers)} centers, {sum(len(c.pools) for c in net.centers)} pools")
    for n in (1_000, 10_000):
        now, datasets, jobs = jobs_for(net, n)
        times = []
        placed = 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            snap = build_snapshot(net, now, datasets=datasets)
            decisions = schedule_cycle(snap, jobs)
            times.append(time.perf_counter() - t0)
            placed = sum(d.placement is not None for d in decisions)
        med = statistics.median(times)
        print(
            f"{n:>6} jobs × {len(net.centers)} centers: cycle median {med:.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}), {med / n * 1e6:.0f} µs/job, "
            f"{placed} placed, goal ≤ 1 s for 10k: ratio {med / 1.0:.2f}× of goal"
        )


if __name__ == "__main__":
    main()
