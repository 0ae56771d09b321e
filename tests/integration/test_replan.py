"""A real server and agent: jobs planned behind chips that free early start when they free."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from computenet.model import JobState
from computenet.protocol.api import JobDetail
from computenet.sdk import Client
from tests.helpers.processes import log_tail, start_server, stop_process

pytestmark = pytest.mark.integration

# One center of 8 CPU-nodes at a flat price; network time runs 600× real time.
NETWORK = """
name: replan-itest
time_scale: 600
data_scale: 1
centers:
  - id: chongqing
    region: west
    lat: 29.6
    lon: 106.5
    pools: [{chip: CPU-node, count: 8}]
    pue: 1.25
    tariff: {flat: 0.6, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 0.8
    tags: [region:west]
links: []
"""

# Half the pool each, estimated at 3 hours, really one second.
JOB = {
    "name": "short",
    "class": "cpu-batch",
    "command": "sleep 1",
    "chips": {"count": 4, "types": ["CPU-node"]},
    "work": {"reference_chip": "CPU-node", "reference_hours": 3},
    "center": "chongqing",
}


def _first_plan(job: JobDetail) -> datetime:
    """The planned start of the job's first placement (from its SCHEDULED event)."""
    (msg,) = [e.message for e in job.events if e.state is JobState.SCHEDULED][:1]
    when = msg.split(", start ")[1].split(",")[0]
    return datetime.fromisoformat(when).replace(tzinfo=job.submitted_at.tzinfo)


def _when(job: JobDetail, state: JobState) -> datetime:
    return next(e.at for e in job.events if e.state is state)


def test_jobs_waiting_behind_jobs_that_end_early_start_when_the_chips_free(
    tmp_path: Path, db_url: str
) -> None:
    network_file = tmp_path / "network.yaml"
    network_file.write_text(NETWORK)
    url, admin, server = start_server(
        tmp_path,
        str(network_file),
        db=db_url,
        cycle_interval=0.2,
        heartbeat_interval=0.3,
        lease_timeout=5.0,
    )
    admin_client = Client(url, admin)
    admin_client.create_tenant("acme")
    user = Client(url, admin_client.create_user("ann", "acme").token)
    agent: subprocess.Popen[bytes] | None = None
    log = tmp_path / "agent.log"
    try:
        token = admin_client.center_token("chongqing").token
        cmd = [
            sys.executable, "-m", "computenet.agent", "--center", "chongqing",
            "--server", url, "--token", token, "--network", str(network_file),
            "--state-dir", str(tmp_path / "state"), "--data-root", str(tmp_path / "data"),
        ]  # fmt: skip
        with log.open("ab") as out:
            agent = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not all(c.online for c in user.centers()):
            assert time.monotonic() < deadline, log_tail(log)
            time.sleep(0.1)
        ids = [user.submit(dict(JOB)).id for _ in range(4)]
        done = [user.wait(j, poll_s=0.2, timeout_s=90) for j in ids]
        logs = f"{log_tail(log)}\n{log_tail(tmp_path / 'server.log')}"
        assert all(j.state is JobState.SUCCEEDED for j in done), logs
        first = [j for j in done if not any("re-planned" in e.message for e in j.events)]
        moved = [j for j in done if j not in first]
        assert len(first) == 2 and len(moved) == 2, logs
        for j in moved:
            planned = _first_plan(j)
            began = _when(j, JobState.RUNNING)
            # Planned behind two 3-hour jobs, it ran hours before that plan ...
            assert (planned - began).total_seconds() > 2 * 3600, logs
            # A job may move more than once (each move only ever brings it sooner).
            replans = [e for e in j.events if "re-planned" in e.message]
            assert replans and all("chips freed early" in e.message for e in replans), logs
            event = replans[0]
            # ... re-planned within a few cycles of its predecessors ending (network time:
            # a cycle is 0.2 real s, 2 network minutes at 600×).
            ended = max(_when(f, JobState.SUCCEEDED) for f in first)
            assert (event.at - ended).total_seconds() < 3600, logs
    finally:
        if agent is not None:
            stop_process(agent)
        stop_process(server)
        admin_client.close()
        user.close()
