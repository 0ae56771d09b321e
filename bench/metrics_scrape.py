"""How long one ``GET /metrics`` render takes as the job history grows (SQLite).

For each history size N: a fresh SQLite file with N finished jobs (each with
four timeline events, a usage report with one transfer lot, and a bill line)
plus N/10 pending jobs, then a control plane on it (no loop) and
`Metrics.render()` timed: the first scrape (which also reads the whole
timeline for the admission wait) and the median of the next five (the steady
state: state families re-read, only new timeline events). The machine's load
is printed beside the figures; compare sizes within one run.

Run: .venv/bin/python bench/metrics_scrape.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from computenet.catalog import load_network
from computenet.model.center import CST
from computenet.server.plane import ControlPlane
from computenet.server.settings import Settings
from computenet.store import Database, upgrade_db
from computenet.store.schema import ChargeRow, JobEventRow, JobRow, TenantRow

EPOCH = datetime(2026, 11, 2, 10, 0, tzinfo=CST)


def fill(url: str, n: int) -> None:
    """N finished jobs with events, usage and charges, and N/10 pending ones."""
    upgrade_db(url)
    db = Database(url)
    centers = [c.id for c in load_network("demo").centers]
    with db.write() as s:
        s.execute(insert(TenantRow), [{"id": f"t{i}", "created_at": EPOCH} for i in range(10)])
    for start in range(0, n, 5000):
        jobs: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        charges: list[dict[str, Any]] = []
        for i in range(start, min(n, start + 5000)):
            at = EPOCH + timedelta(minutes=i)
            center = centers[i % len(centers)]
            jid = f"j{i:08d}"
            jobs.append(
                {
                    "id": jid,
                    "tenant_id": f"t{i % 10}",
                    "name": "bench",
                    "workload_class": "llm-train",
                    "state": "SUCCEEDED",
                    "spec": {},
                    "submitted_at": at,
                    "center": center,
                    "chip": "H100",
                    "chips": 2,
                    "reasons": [],
                    "avoid_centers": [],
                    "usage": {
                        "transfers": [{"source": centers[(i + 1) % len(centers)], "bytes": 1000}]
                    },
                }
            )
            for k, state in enumerate(("PENDING", "SCHEDULED", "RUNNING", "SUCCEEDED")):
                events.append(
                    {
                        "job_id": jid,
                        "at": at + timedelta(minutes=k),
                        "state": state,
                        "message": state.lower(),
                    }
                )
            charges.append(
                {
                    "job_id": jid,
                    "tenant_id": f"t{i % 10}",
                    "period": "2026-11",
                    "job_name": "bench",
                    "center": center,
                    "chip": "H100",
                    "chips": 2,
                    "chip_hours": 1.0,
                    "cu_hours": 1.0,
                    "kwh": 1.0,
                    "co2_kg": 0.5,
                    "energy_cny": Decimal("1.00"),
                    "service_cny": Decimal("2.00"),
                    "transfer_cny": Decimal("0.10"),
                    "total_cny": Decimal("3.10"),
                }
            )
        with db.write() as s:
            s.execute(insert(JobRow), jobs)
            s.execute(insert(JobEventRow), events)
            s.execute(insert(ChargeRow), charges)
    with db.write() as s:
        s.execute(
            insert(JobRow),
            [
                {
                    "id": f"p{i:08d}",
                    "tenant_id": "t0",
                    "name": "waiting",
                    "workload_class": "llm-train",
                    "state": "PENDING",
                    "spec": {},
                    "submitted_at": EPOCH,
                    "reasons": ["no eligible center has 8 free H100 chips within the next 48 h"],
                    "avoid_centers": [],
                    "usage": {},
                }
                for i in range(max(1, n // 10))
            ],
        )
    db.dispose()


def measure(n: int, tmp: Path) -> tuple[float, float, int]:
    """(first scrape s, median of the next five s, bytes of the text) for history size n."""
    url = f"sqlite:///{tmp / f'metrics-{n}.db'}"
    fill(url, n)
    plane = ControlPlane(
        Settings(db_url=url, network=load_network("demo"), epoch=EPOCH, run_loop=False)
    )
    try:
        t0 = time.perf_counter()
        text = plane.metrics.render()
        first = time.perf_counter() - t0
        again = []
        for _ in range(5):
            t0 = time.perf_counter()
            plane.metrics.render()
            again.append(time.perf_counter() - t0)
    finally:
        plane.stop()
    return first, statistics.median(again), len(text)


def main() -> None:
    """Print the render time per history size."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()}")
    print(f"{'finished jobs':>14} {'first scrape':>13} {'next scrapes':>13} {'text bytes':>11}")
    with tempfile.TemporaryDirectory() as d:
        for n in (int(x) for x in args.sizes.split(",")):
            first, steady, size = measure(n, Path(d))
            print(f"{n:>14,} {first * 1000:>10.0f} ms {steady * 1000:>10.0f} ms {size:>11,}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
