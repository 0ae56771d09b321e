"""Time one scheduling cycle for 1k and 10k pending jobs over a 100-center network.

Prints medians over repeats and per-job cost, wall and CPU time (CPU time is
steadier on a shared machine). Goals (issue 8): a 10k × 100 cycle ≤ 1 s, a
10k × 1,000 cycle ≤ 5 s. `--compare` also times, alternating in the same run,
the cycle without writing reasons. Before the timed cycles it calls
`kernel.warm_up()` (as the server does at start) and prints how long that
took: it loads the compiled kernels (`scheduler/kernel.py`) from numba's
cache, or compiles them when the cache is empty (a fresh clone, a changed
kernel), which would otherwise be the first cycle's.
Run: .venv/bin/python bench/schedule_cycle.py [--repeats 3] [--centers 100,1000] [--compare]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import datetime
from decimal import Decimal

from computenet.catalog.generate import generated_network
from computenet.model import Dataset, JobSpec
from computenet.model.center import CST
from computenet.scheduler import build_snapshot, job_request, kernel
from computenet.scheduler.greedy import greedy_cycle


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


def _time(fn):  # type: ignore[no-untyped-def]
    """(wall s, CPU s of this process, result): CPU time is steadier on a shared machine."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def main() -> None:
    """Run the benchmark and print figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--centers", default="100", help="network sizes, comma-separated")
    ap.add_argument("--jobs", default="1000,10000", help="pending jobs per cycle, comma-separated")
    ap.add_argument(
        "--compare",
        action="store_true",
        help="also time explain=False, alternating",
    )
    args = ap.parse_args()
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}, load: {os.getloadavg()[0]:.2f}")
    first = True
    for centers in (int(x) for x in args.centers.split(",")):
        net = generated_network(centers, seed=7)
        if first:
            print(f"kernel.warm_up() (kernels loaded or compiled): {kernel.warm_up():.2f} s")
            first = False
        run(net, args)


def run(net, args) -> None:  # type: ignore[no-untyped-def]
    """Time the cycles on `net` for every job count."""
    goal = 1.0 if len(net.centers) <= 100 else 5.0
    print(f"network: {len(net.centers)} centers, {sum(len(c.pools) for c in net.centers)} pools")
    modes: dict[str, dict[str, bool]] = {"with reasons": {}}
    if args.compare:
        modes["without reasons"] = {"explain": False}
    for n in (int(x) for x in args.jobs.split(",")):
        now, datasets, jobs = jobs_for(net, n)
        times: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        placed: dict[str, list[object]] = {}
        for _ in range(args.repeats):
            for mode, kw in modes.items():
                snap = build_snapshot(net, now, datasets=datasets)
                wall, cpu, decisions = _time(
                    lambda kw=kw, snap=snap, jobs=jobs: greedy_cycle(snap, jobs, **kw)
                )
                times[mode].append((wall, cpu))
                placed[mode] = [d.placement is not None for d in decisions]
        base = statistics.median(c for _, c in times["with reasons"])
        for mode, ts in times.items():
            wall = statistics.median(w for w, _ in ts)
            cpu = statistics.median(c for _, c in ts)
            print(
                f"{n:>6} jobs × {len(net.centers)} centers [{mode}]: wall median {wall:.3f} s,"
                f" CPU median {cpu:.3f} s ({cpu / n * 1e6:.0f} µs/job),"
                f" {sum(placed[mode])} placed, CPU {cpu / base:.2f}× with reasons"
                + (f"; goal ≤ {goal:g} s: {cpu / goal:.2f}× of goal" if n == 10_000 else "")
            )
        assert len({tuple(p) for p in placed.values()}) == 1, "modes placed different jobs"


if __name__ == "__main__":
    main()
