"""What tenancy costs a scheduling cycle, database and scheduler sides, A/B in one run.

Database (SQLite file): the queries every server cycle now makes for tenancy
(`several_pending_tenants`, `reclaimable`, `tenant_uses`) over a backlog of
--pending PENDING and --scheduled SCHEDULED jobs and --charges finished charges,
all of one tenant (A: the common case, no quotas) and then of two tenants with a
quota each (B: fair share on, every charge read). Scheduler: `greedy_cycle` over
--jobs jobs on a generated network, of one tenant without quotas (A) and of two
tenants with a chips quota each under `fair_cycle` (B). Prints median wall and CPU
seconds and the B/A ratios.
Run: .venv/bin/python bench/tenancy_cycle.py [--repeats 5] [--jobs 1000] [--centers 100]
     [--pending 10000] [--scheduled 2000] [--charges 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from schedule_cycle import _time, jobs_for

from computenet.catalog.generate import generated_network
from computenet.scheduler import build_snapshot, kernel
from computenet.scheduler.fairshare import fair_cycle
from computenet.scheduler.greedy import greedy_cycle
from computenet.scheduler.tenancy import Quota, TenantUse
from computenet.server import admin
from computenet.server.scheduling import CycleMemory, _charged
from computenet.store import Database, upgrade_db
from computenet.store.quotas import (
    check_quota,
    reclaimable,
    set_quota,
    several_pending_tenants,
    tenant_uses,
)
from computenet.store.schema import ChargeRow, JobRow


def _fill(db: Database, tenants: list[str], args: argparse.Namespace, now: Any) -> None:
    z = Decimal(0)
    with db.write() as s:
        for k in range(args.pending + args.scheduled):
            t = tenants[k % len(tenants)]
            sched = k >= args.pending
            s.add(
                JobRow(
                    id=f"{t}-{k}", tenant_id=t, name="b", workload_class="llm-train",
                    state="SCHEDULED" if sched else "PENDING", spec={}, submitted_at=now,
                    priority=0, reasons=[], chip="A100" if sched else None, chips=8,
                    center="c" if sched else None,
                    planned_start=now + timedelta(hours=2) if sched else None,
                    placement={"cu_hours": 10.0} if sched else None, avoid_centers=[], usage={},
                )
            )  # fmt: skip
        s.flush()
        for k in range(args.charges):
            t = tenants[k % len(tenants)]
            fin = now - timedelta(hours=k % 700)
            s.add(
                JobRow(
                    id=f"{t}-done-{k}", tenant_id=t, name="b", workload_class="llm-train",
                    state="SUCCEEDED", spec={}, submitted_at=fin, priority=0, reasons=[],
                    chips=8, avoid_centers=[], usage={},
                )
            )  # fmt: skip
        s.flush()  # the jobs before their charges (foreign keys)
        for k in range(args.charges):
            t = tenants[k % len(tenants)]
            fin = now - timedelta(hours=k % 700)
            s.add(
                ChargeRow(
                    job_id=f"{t}-done-{k}", tenant_id=t, period=fin.strftime("%Y-%m"),
                    job_name="b", center="c", chip="A100", chips=8, started_at=fin,
                    finished_at=fin, chip_hours=8.0, cu_hours=8.0, kwh=0.0, co2_kg=0.0,
                    energy_cny=z, service_cny=z, transfer_cny=z, total_cny=Decimal("10.00"),
                )
            )  # fmt: skip


def _db_side(url: str, now: Any) -> Callable[[], Any]:
    """One server cycle's tenancy look-ups, as `server.scheduling.run_cycle` makes them
    (the charges read again only when they changed: here, in the first cycle)."""
    db = Database(url)
    memory = CycleMemory()

    def one() -> Any:
        with db.read() as s:
            fair = several_pending_tenants(s)
            reclaimable(s, now + timedelta(minutes=5))
            charged = _charged(memory, s, now) if fair else None
            return tenant_uses(s, now, fair_share=fair, charged=charged)

    return one


def main() -> None:
    """Run A and B alternately, database side then scheduler side, and print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--centers", type=int, default=100)
    ap.add_argument("--pending", type=int, default=10000)
    ap.add_argument("--scheduled", type=int, default=2000)
    ap.add_argument("--charges", type=int, default=20000)
    args = ap.parse_args()
    kernel.warm_up()
    net = generated_network(args.centers)
    now, datasets, jobs = jobs_for(net, args.jobs)

    tmp = Path(tempfile.mkdtemp(prefix="cnet-tenancy-bench-"))
    dbs: dict[str, Callable[[], Any]] = {}
    for name, tenants in (("A", ["t"]), ("B", ["t", "u"])):
        url = f"sqlite:///{tmp / name}.db"
        upgrade_db(url)
        for t in tenants:
            admin.create_tenant(url, t)
        db = Database(url)
        _fill(db, tenants, args, now)
        if name == "B":
            with db.write() as s:
                for t in tenants:
                    set_quota(s, t, check_quota("chips", 64, "A100", None), now)
        db.dispose()
        dbs[name] = _db_side(url, now)
    side: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for _ in range(args.repeats):
        for name, fn in dbs.items():
            wall, cpu, _out = _time(fn)
            side[name].append((wall, cpu))
    print(
        f"database: {args.pending} pending, {args.scheduled} scheduled, {args.charges} charges;"
        f" A one tenant, B two with quotas; {args.repeats} repeats"
    )
    _report(side)

    one = [dataclasses.replace(j, tenant="t") for j in jobs]
    two = [dataclasses.replace(j, tenant="tu"[k % 2]) for k, j in enumerate(jobs)]
    quota = (Quota("chips", Decimal(64), "A100"),)
    uses = {t: TenantUse(quotas=quota, usage=100.0 * (k + 1)) for k, t in enumerate("tu")}
    sched: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for _ in range(args.repeats):
        snap = build_snapshot(net, now, datasets=datasets)
        wall, cpu, _a = _time(lambda s=snap: greedy_cycle(s, one))
        sched["A"].append((wall, cpu))
        snap_b = dataclasses.replace(build_snapshot(net, now, datasets=datasets), tenants=uses)

        def b(s: Any = snap_b) -> Any:
            return fair_cycle(s, two, lambda sn, rq: greedy_cycle(sn, rq), "min-cost")

        wall, cpu, _b = _time(b)
        sched["B"].append((wall, cpu))
    print(
        f"scheduler: {args.jobs} jobs, {args.centers} centers; A one tenant (greedy),"
        f" B two tenants with quotas (fair_cycle over greedy)"
    )
    _report(sched)


def _report(runs: dict[str, list[tuple[float, float]]]) -> None:
    med = {}
    for name, rs in runs.items():
        med[name] = (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
        print(
            f"  {name}: median wall {med[name][0] * 1000:.1f} ms, CPU {med[name][1] * 1000:.1f} ms"
        )
    print(f"  B/A: wall {med['B'][0] / med['A'][0]:.2f}×, CPU {med['B'][1] / med['A'][1]:.2f}×")


if __name__ == "__main__":
    main()
