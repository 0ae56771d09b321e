"""Run the fault scenarios of tests/faults/ once each and print docs/reliability.md's table.

Each scenario starts a fresh real network on 127.0.0.1 (server + three local-backend
agents, lease timeout 4 s unless noted), injects its fault, waits for every job to
end, and reads the outcome from the server (timelines, bills, charge rows) and
from the jobs' own records. Columns:

- jobs: submitted; lost: did not end SUCCEEDED exactly once;
- run twice: two attempts running at once (server events or the jobs' own
  records), or a lost attempt still running when the control plane requeued it;
- billed twice: more than one charge row or bill line for a job;
- requeued: attempts beyond the first that the fault caused;
- recover: per requeued job, from its lost attempt's last sign of life (the
  job's own 0.1 s stamps) to the next attempt's start — median and max.

The PostgreSQL variant of the server-kill scenario needs scripts/services.sh's
PostgreSQL (`. var/services/env.sh`); the Slurm scenario its Slurm.

Run: .venv/bin/python bench/faults_report.py [--only NAME,...] [--markdown]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.faults import scenarios
from tests.faults.harness import Cluster, Outcome, fresh_pg_database

Scenario = Callable[[Cluster], tuple[Outcome, str]]


def _pg_url() -> str | None:
    url = os.environ.get("CNET_PG_URL")
    if url:
        return url
    from tests.helpers.services import read_env_file, services_dir

    return read_env_file(services_dir() / "env.sh").get("CNET_PG_URL")


def _slurm_conf() -> str:
    from tests.helpers.services import read_env_file, services_dir

    conf = os.environ.get("SLURM_CONF") or read_env_file(services_dir() / "env.sh").get(
        "SLURM_CONF"
    )
    if not conf:
        raise RuntimeError("no Slurm: bash scripts/services.sh start slurm")
    return conf


@contextlib.contextmanager
def cluster(db: str) -> Iterator[Cluster]:
    """A fresh cluster on SQLite or on a new PostgreSQL database; stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="cnet-faults-") as tmp:
        path = Path(tmp)
        if db == "sqlite":
            c = Cluster(path, f"sqlite:///{path / 'cnet.db'}")
            try:
                yield c
            finally:
                c.stop()
            return
        if db == "slurm":
            c = Cluster(path, f"sqlite:///{path / 'cnet.db'}", chip="CPU-node", centers=("east",))
            try:
                yield c
            finally:
                c.stop()
            return
        base = _pg_url()
        if not base:
            raise RuntimeError("no PostgreSQL: bash scripts/services.sh start postgres")
        with fresh_pg_database(base) as url:
            c = Cluster(path, url)
            try:
                yield c
            finally:
                c.stop()


SCENARIOS: dict[str, tuple[str, str, Scenario | None]] = {
    "agents-killed": ("(a) agents SIGKILLed", "sqlite", scenarios.agents_killed),
    "server-killed-sqlite": (
        "(b) control plane SIGKILLed, SQLite",
        "sqlite",
        scenarios.server_killed,
    ),
    "server-killed-pg": (
        "(b) control plane SIGKILLed, PostgreSQL",
        "postgres",
        scenarios.server_killed,
    ),
    "partition-drop": (
        "(c) partition: drop",
        "sqlite",
        lambda c: scenarios.partition(c, "drop"),
    ),
    "partition-blackhole": (
        "(c) partition: blackhole",
        "sqlite",
        lambda c: scenarios.partition(c, "blackhole"),
    ),
    "partition-half-open": (
        "(c) partition: half-open",
        "sqlite",
        lambda c: scenarios.partition(c, "half-open"),
    ),
    "slow-link": ("(c) slow link: delay", "sqlite", scenarios.slow_link),
    "brief-outage": ("outage shorter than T/2", "sqlite", scenarios.brief_outage),
    "lease-reply-lost": ("(d) lease reply lost", "sqlite", scenarios.lease_reply_lost),
    "agent-state-lost": ("(f) agent state file deleted", "sqlite", scenarios.agent_state_lost),
    "slurmctld-restarted": ("(e) slurmctld restarted mid-job", "slurm", None),
}


def main() -> int:
    """Run the scenarios and print one table row each."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    rows: list[dict[str, Any]] = []
    for name in names:
        title, db, run = SCENARIOS[name]
        t0 = time.monotonic()
        with cluster(db) as c:
            if db == "slurm":
                outcome, injected = scenarios.slurmctld_restarted(c, _slurm_conf())
            else:
                assert run is not None
                outcome, injected = run(c)
        row = outcome.row(title, injected)
        row["wall s"] = round(time.monotonic() - t0, 1)
        rows.append(row)
        print(row, flush=True)
    if args.markdown:
        cols = list(rows[0])
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join("—" if r[k] is None else str(r[k]) for k in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
