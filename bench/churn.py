"""Load held while agents churn: submits/s and latency with an agent SIGKILLed every few seconds.

Starts the fault suite's network (tests/faults/harness.py: a real server on SQLite
and three real local-backend agents, lease timeout 4 s), then runs the REST
submit load of bench/api_submit.py (`run_level`: C client threads, each with its
own keep-alive connection, submitting back to back) three times in one run:

1. quiet — agents up, nothing killed;
2. churn — the same load while one agent is SIGKILLed every `--kill-every`
   seconds and restarted a second later (its jobs are fenced, requeued, re-run);
3. quiet again — to see whether the backlog the first two left, not the churn,
   moved the figures.

Submitted jobs run `true` on one chip, so the agents lease and run them
meanwhile. Prints submits/s, p50/p99/max latency and errors per phase, the
churn/quiet ratios, and a store check (every acknowledged submission stored once).
Compare figures only between phases of one run.

Run: .venv/bin/python bench/churn.py [--clients 8] [--per-client 300] [--kill-every 3]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_submit import _uptime, run_level
from tests.faults.harness import Cluster


def churn(c: Cluster, stop: threading.Event, every_s: float, kills: list[float]) -> None:
    """SIGKILL a random agent every `every_s` seconds, restart it 1 s later, until `stop`."""
    rnd = random.Random(7)
    while not stop.wait(every_s):
        victim = rnd.choice(c.centers)
        c.kill_agent(victim, signal.SIGKILL)
        kills.append(time.monotonic())
        time.sleep(1.0)
        c.start_agent(victim)


def row(label: str, r: dict[str, Any]) -> str:
    """One printed line of a phase."""
    return (
        f"{label:<14} {r['requests']:>8} {r['errors']:>6} {r['per_s']:>8.0f}"
        f" {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.0f}"
    )


def main() -> int:
    """Run the three phases against one network and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--per-client", type=int, default=300)
    ap.add_argument("--kill-every", type=float, default=3.0, help="seconds between agent kills")
    args = ap.parse_args()
    print(f"before: {_uptime()} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="cnet-churn-") as tmp:
        path = Path(tmp)
        c = Cluster(path, f"sqlite:///{path / 'cnet.db'}")
        try:
            c.start()
            assert c.server is not None
            print(
                f"network: server {c.url} (SQLite), agents {', '.join(c.centers)} (local),"
                f" lease timeout {c.lease_timeout:g} s; {args.clients} clients ×"
                f" {args.per_client} submits per phase"
            )
            print(
                f"{'phase':<14} {'requests':>8} {'errors':>6} {'subm/s':>8} {'p50 ms':>7}"
                f" {'p99 ms':>7} {'max ms':>7}"
            )
            results: dict[str, dict[str, Any]] = {}
            pid = c.server.pid

            def level(tag: str) -> dict[str, Any]:
                return run_level(
                    c.url, c.user_token, args.clients, args.per_client, tag, "stdlib", pid
                )

            results["quiet"] = level("quiet")
            print(row("quiet", results["quiet"]), flush=True)
            stop, kills = threading.Event(), list[float]()
            killer = threading.Thread(target=churn, args=(c, stop, args.kill_every, kills))
            killer.start()
            try:
                results["churn"] = level("churn")
            finally:
                stop.set()
                killer.join()
            print(row("churn", results["churn"]) + f"   ({len(kills)} agent SIGKILLs)")
            results["quiet again"] = level("again")
            print(row("quiet again", results["quiet again"]))
            q, ch = results["quiet"], results["churn"]
            print(
                f"churn / quiet: throughput ×{ch['per_s'] / q['per_s']:.2f},"
                f" p99 ×{ch['p99_ms'] / q['p99_ms']:.2f}"
            )
            acknowledged = [j for r in results.values() for j in r["created"]]
            stored = _stored_ids(c.db_url)
            missing = set(acknowledged) - stored
            dupes = len(acknowledged) - len(set(acknowledged))
            print(
                f"store check: {len(acknowledged)} acknowledged, {len(missing)} missing,"
                f" {dupes} acknowledged twice"
            )
        finally:
            c.stop()
    print(f"after:  {_uptime()}")
    return 0


def _stored_ids(db_url: str) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {str(r[0]) for r in conn.execute(sa.text("SELECT id FROM jobs"))}
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
