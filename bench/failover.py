"""Control-plane failover: kill the leader replica again and again, under submit load.

Starts three `cnet server` replicas on one fresh PostgreSQL database (the one
scripts/services.sh runs, CNET_PG_URL) with the demo network; then each of
≥ 10 rounds runs, side by side (so both see the same machine load):

1. **Quiet**: submit load (api_submit.py's load generator: N client threads,
   keep-alive connections, one idempotency key per submission) against a
   follower replica while nothing fails; throughput and p99.
2. **Kill**: the same load against a follower replica; half a second in,
   the leader is SIGKILLed. Measured for each kill, from the kill:
   * to a new leader: the survivor's `leading_since` (it took the lease);
   * to the new leader's first cycle: its `first_cycle_real` (from /healthz:
     reconcile and a scheduling cycle completed in its new epoch);
   and the load's throughput and p99 over the whole failover window. The
   killed replica is then restarted (same port) before the next round, so
   every round has three replicas and a new leader to elect.

Printed: kill → new leader and kill → first cycle (median, p95, max over the
kills); submits/s and p99 quiet vs during failovers (medians) and their
ratios; then a store check: every acknowledged submission is in the database
exactly once. The leader lease is `--leader-lease` (default: the server's
default, 5 s): the expected takeover is between 2/3 and 4/3 of it (the lease
was renewed at most a third of it before the kill; followers try every
third). No agent runs: the submitted jobs stay PENDING, a backlog every new
leader reads in full on its first cycle (its cycle memory starts empty); so
that every round measures the same thing, each run (quiet or kill) starts
with the backlog emptied (`clear_backlog`), and the new leader's first cycle
sees what was submitted in the half second before the kill and since.
The machine's load is printed before and after: compare runs under similar load.

Run: .venv/bin/python bench/failover.py [--kills 10] [--clients 8] [--leader-lease 5]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_submit import _uptime, run_level
from tests.helpers.pg import scratch_database
from tests.helpers.processes import free_port, stop_process, wait_http
from tests.helpers.services import read_env_file, services_dir


def pg_base_url() -> str:
    """CNET_PG_URL from the environment or scripts/services.sh's env file."""
    url = os.environ.get("CNET_PG_URL") or read_env_file(services_dir() / "env.sh").get(
        "CNET_PG_URL"
    )
    if not url:
        sys.exit("PostgreSQL is needed: bash scripts/services.sh start postgres")
    return url


class Replicas:
    """Three (or N) `cnet server` processes on one database; each keeps its port across restarts."""

    def __init__(self, db_url: str, tmp: Path, n: int, leader_lease: float) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.leader_lease = leader_lease
        self.ports = [free_port() for _ in range(n)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def start(self, i: int) -> None:
        """Start replica `i` and wait until it answers."""
        log = self.tmp / f"server-{i}.log"
        cmd = [
            sys.executable, "-m", "computenet.cli", "server", "--db", self.db_url,
            "--port", str(self.ports[i]), "--network", "demo",
            "--leader-lease", str(self.leader_lease), "--log-level", "warning",
        ]  # fmt: skip
        with log.open("ab") as out:
            self.procs[i] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_http(f"{self.url(i)}/healthz", self.procs[i], timeout=120, log=log)

    def health(self, i: int) -> dict[str, Any] | None:
        if self.procs[i].poll() is not None:
            return None
        try:
            return dict(httpx.get(f"{self.url(i)}/healthz", timeout=2).json())
        except httpx.HTTPError:
            return None

    def leader(self, timeout_s: float = 60.0) -> tuple[int, int]:
        """(replica, epoch) of the one replica that leads and has run its first cycle."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i in self.procs:
                h = self.health(i)
                if h and h.get("leader") and h.get("first_cycle_real"):
                    return i, int(h["epoch"])
            time.sleep(0.05)
        raise TimeoutError("no replica leads")

    def stop_all(self) -> None:
        for p in self.procs.values():
            stop_process(p)


def pct(xs: list[float], q: float) -> float:
    """The q-quantile of `xs` (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def clear_backlog(db_url: str) -> int:
    """Mark every PENDING job CANCELLED, straight in the database; how many there were.

    Bench bookkeeping, not how a user cancels: each round then starts from
    the same empty backlog (a new leader reads the whole backlog on its first
    cycle, so a backlog growing round after round would mix two measurements).
    """
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            n = conn.execute(
                sa.text("UPDATE jobs SET state = 'CANCELLED' WHERE state = 'PENDING'")
            ).rowcount
    finally:
        engine.dispose()
    return int(n)


def one_kill(reps: Replicas, token: str, clients: int, per_client: int, tag: str) -> dict[str, Any]:
    """Load a follower, kill the leader half a second in; the failover's figures."""
    clear_backlog(reps.db_url)
    leader, epoch = reps.leader()
    target = next(i for i in reps.procs if i != leader)
    result: dict[str, Any] = {}

    def load() -> None:
        result.update(
            run_level(
                reps.url(target), token, clients, per_client, tag, "stdlib",
                reps.procs[target].pid,
            )
        )  # fmt: skip

    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(0.5)
    killed = time.time()
    os.kill(reps.procs[leader].pid, signal.SIGKILL)
    reps.procs[leader].wait(timeout=30)
    new: dict[str, Any] | None = None
    deadline = time.monotonic() + 20 * reps.leader_lease
    while new is None and time.monotonic() < deadline:
        for i in reps.procs:
            if i == leader:
                continue
            h = reps.health(i)
            if (
                h
                and h.get("leader")
                and int(h.get("epoch") or 0) > epoch
                and h.get("first_cycle_real")
            ):
                new = h
                break
        else:
            time.sleep(0.02)
    loader.join()
    if new is None:
        raise TimeoutError(f"no new leader within {20 * reps.leader_lease:g}s of the kill")
    reps.start(leader)  # back to full strength for the next round
    return {
        "to_leader_s": float(new["leading_since"]) - killed,
        "to_first_cycle_s": float(new["first_cycle_real"]) - killed,
        "epoch": int(new["epoch"]),
        "load": result,
    }


def main() -> None:
    """Start the replicas, measure quiet load, then the kills; print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--leader-lease", type=float, default=5.0)
    args = ap.parse_args()
    from computenet.server.admin import create_user
    from computenet.store import upgrade_db

    scratch = contextlib.ExitStack()
    db_url = scratch.enter_context(scratch_database(pg_base_url(), "cnet_bench_failover"))
    print(f"before: {_uptime()} ({os.cpu_count()} cores)")
    tmp = Path(f"/tmp/cnet-bench-failover-{uuid.uuid4().hex[:6]}")
    tmp.mkdir(parents=True)
    reps = Replicas(db_url, tmp, args.replicas, args.leader_lease)
    acknowledged: list[str] = []
    try:
        upgrade_db(db_url)
        token = create_user(db_url, "bench", "bench", create_tenant_if_missing=True).token
        for i in range(args.replicas):
            reps.start(i)
        leader, _ = reps.leader()
        print(
            f"{args.replicas} replicas on PostgreSQL (network demo), leader lease"
            f" {args.leader_lease:g}s, {args.clients} submit clients; logs in {tmp}"
        )
        # Quiet: the same load against a follower, sized to last about one failover.
        follower = next(i for i in reps.procs if i != leader)
        warm = run_level(
            reps.url(follower), token, args.clients, 50, "warm", "stdlib",
            reps.procs[follower].pid,
        )  # fmt: skip
        window = 1.5 * args.leader_lease + 2.0
        per_client = max(50, int(warm["per_s"] * window / args.clients))
        acknowledged += warm["created"]
        print(f"each run: {args.clients} clients × {per_client} submissions")
        quiet: list[dict[str, Any]] = []
        rounds: list[dict[str, Any]] = []
        print(
            f"{'round':>5} {'quiet/s':>7} {'p99 ms':>7} | {'epoch':>5} {'→leader s':>9}"
            f" {'→cycle s':>8} {'failover/s':>10} {'p99 ms':>7} {'max ms':>7} {'errors':>6}"
        )
        for k in range(args.kills):
            # Side by side: a quiet run, then a run with a kill, under the same machine load.
            clear_backlog(db_url)
            leader, _ = reps.leader()
            follower = next(i for i in reps.procs if i != leader)
            q = run_level(
                reps.url(follower), token, args.clients, per_client, f"quiet{k}", "stdlib",
                reps.procs[follower].pid,
            )  # fmt: skip
            acknowledged += q["created"]
            quiet.append(q)
            r = one_kill(reps, token, args.clients, per_client, f"kill{k}")
            acknowledged += r["load"]["created"]
            rounds.append(r)
            ld = r["load"]
            print(
                f"{k + 1:>5} {q['per_s']:>7.0f} {q['p99_ms']:>7.1f} | {r['epoch']:>5}"
                f" {r['to_leader_s']:>9.2f} {r['to_first_cycle_s']:>8.2f} {ld['per_s']:>10.0f}"
                f" {ld['p99_ms']:>7.1f} {ld['max_ms']:>7.0f} {ld['errors'] + q['errors']:>6}"
            )
            for run in (q, ld):
                if run["errors"]:
                    print(f"     first error: {run['first_error']}")
        to_leader = [r["to_leader_s"] for r in rounds]
        to_cycle = [r["to_first_cycle_s"] for r in rounds]
        ratio = statistics.median(to_leader) / args.leader_lease
        print(
            f"kill → new leader:       median {statistics.median(to_leader):.2f}s,"
            f" p95 {pct(to_leader, 0.95):.2f}s, max {max(to_leader):.2f}s"
            f" (median / lease {ratio:.2f})"
        )
        print(
            f"kill → first cycle:      median {statistics.median(to_cycle):.2f}s,"
            f" p95 {pct(to_cycle, 0.95):.2f}s, max {max(to_cycle):.2f}s over {len(rounds)} kills"
        )
        q_rate = statistics.median(q["per_s"] for q in quiet)
        q_p99 = statistics.median(q["p99_ms"] for q in quiet)
        f_rate = statistics.median(r["load"]["per_s"] for r in rounds)
        f_p99 = statistics.median(r["load"]["p99_ms"] for r in rounds)
        errors = sum(r["load"]["errors"] for r in rounds) + sum(q["errors"] for q in quiet)
        print(
            f"submits (to a surviving replica): quiet {q_rate:.0f}/s p99 {q_p99:.1f} ms;"
            f" during failovers {f_rate:.0f}/s p99 {f_p99:.1f} ms"
            f" (ratios {f_rate / q_rate:.2f}, p99 {f_p99 / q_p99:.2f}); {errors} errors"
        )
        pairs = list(zip(quiet, (r["load"] for r in rounds), strict=True))
        print(
            "per round, failover / quiet: throughput median"
            f" {statistics.median(f['per_s'] / q['per_s'] for q, f in pairs):.2f},"
            f" p99 median {statistics.median(f['p99_ms'] / q['p99_ms'] for q, f in pairs):.2f}"
        )
    finally:
        reps.stop_all()
        engine = sa.create_engine(db_url)
        try:
            with engine.connect() as conn:
                stored = [r[0] for r in conn.execute(sa.text("SELECT id FROM jobs"))]
        finally:
            engine.dispose()
        scratch.close()
    missing = set(acknowledged) - set(stored)
    print(
        f"store check: {len(acknowledged)} acknowledged as new, {len(missing)} missing,"
        f" {len(acknowledged) - len(set(acknowledged))} acknowledged twice,"
        f" {len(stored) - len(set(stored))} stored twice"
    )
    print(f"after:  {_uptime()}")


if __name__ == "__main__":
    main()
