"""Submissions per second and latency through the REST API, SQLite store, 1/8/32 clients.

Starts a real server process on 127.0.0.1 (network `demo`, a fresh SQLite file),
then for each concurrency level runs that many client threads, each with its
own HTTP connection, submitting jobs back to back for a fixed number of
requests. Prints throughput, p50 and p99 latency. Goal (issue 2): ≥ 500/s with
p99 ≤ 50 ms at 8 clients. The scheduling loop keeps running meanwhile, as in
production, so the figures include its contention for the database.

Run: .venv/bin/python bench/api_submit.py [--per-client 200] [--clients 1,8,32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers.processes import start_server, stop_process  # noqa: E402

JOB = {
    "class": "inference",
    "command": "true",
    "chips": {"count": 1},
    "work": {"cu_hours": 0.01},
}


def run_level(url: str, token: str, clients: int, per_client: int, tag: str) -> dict[str, float]:
    """Run one concurrency level; return throughput and latency percentiles."""
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker(w: int) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            c.get("/api/v1/whoami")  # open the connection before timing
            barrier.wait()
            for i in range(per_client):
                t0 = time.perf_counter()
                r = c.post(
                    "/api/v1/jobs",
                    json={"spec": {**JOB, "name": f"b{w}-{i}"}, "idempotency_key": f"{tag}-{w}-{i}"},
                )
                mine.append(time.perf_counter() - t0)
                bad += r.status_code >= 300
        with lock:
            lat.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": errors,
        "per_s": len(lat) / wall,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    }


def main() -> None:
    """Start the server, run each level, print a table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-client", type=int, default=200)
    ap.add_argument("--clients", default="1,8,32")
    args = ap.parse_args()
    from computenet.server.admin import create_tenant, create_user

    with tempfile.TemporaryDirectory() as tmp:
        url, admin, proc = start_server(Path(tmp), network="demo")
        try:
            db = f"sqlite:///{Path(tmp) / 'cnet.db'}"
            create_tenant(db, "bench")
            token = create_user(db, "bench-user", "bench").token
            httpx.get(f"{url}/healthz").raise_for_status()
            print(f"server {url} (SQLite, network demo); {args.per_client} submissions per client")
            print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'subm/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
            for n in (int(x) for x in args.clients.split(",")):
                r = run_level(url, token, n, args.per_client, f"c{n}")
                print(
                    f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['per_s']:>8.0f}"
                    f" {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}"
                )
                if n == 8:
                    print(
                        f"        goal at 8 clients: ≥500/s (ratio {r['per_s'] / 500:.2f}),"
                        f" p99 ≤ 50 ms (ratio {r['p99_ms'] / 50:.2f})"
                    )
        finally:
            stop_process(proc)


if __name__ == "__main__":
    main()
