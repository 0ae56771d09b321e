"""Real Slurm enforces the planned time limit, and sacct's record reaches the usage report.

An agent (against the fake control plane of tests/unit/agent/fakeplane.py) drives
the Slurm backend on the cluster scripts/services.sh starts. Without Slurm these
fail under ``CI=true`` and are skipped elsewhere (tests/helpers/services.py).
The margins are 0 so the tiny plan becomes Slurm's smallest limit, one minute:
the timeout test takes a minute or two, as Slurm checks limits every 30 s or so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from computenet.agent import Agent, AgentConfig
from computenet.backends import slurm as slurm_backend
from computenet.backends.slurm import SlurmBackend
from tests.helpers.services import require_service
from tests.unit.agent.fakeplane import FakePlane, lease

pytestmark = pytest.mark.services


@pytest.fixture
def slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmBackend]:
    env = require_service("slurm")
    # These tests are about what the record carries, not how fast slurmdbd writes it:
    # on a loaded test machine it can lag past the agent's short production wait, and
    # the report would then (correctly) go without it.
    monkeypatch.setattr(slurm_backend, "ACCOUNTING_WAIT_S", 30.0)
    prefix = f"acct{uuid.uuid4().hex[:8]}"
    # Jobs run as nobody when the tests run as root: pytest's 0700 tmp is out of reach.
    output = Path(tempfile.mkdtemp(prefix="cnet-slurm-acct-"))
    output.chmod(0o711)
    backend = SlurmBackend(
        state_dir=tmp_path / "slurm-state",
        pools={"CPU-node": 8},
        chips_as="cpus",
        partition="debug",
        account="cnet",
        slurm_conf=env["SLURM_CONF"],
        prefix=prefix,
        center="east",
        output_dir=output,
        time_margin=0,
        time_margin_s=0,
    )
    yield backend
    slurm_env = {**os.environ, "SLURM_CONF": env["SLURM_CONF"]}
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %j"],
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    ).stdout
    ids = [i for i, _, n in (ln.partition(" ") for ln in out.splitlines()) if n.startswith(prefix)]
    if ids:
        subprocess.run(["scancel", *ids], env=slurm_env, timeout=20, check=False)
    shutil.rmtree(output, ignore_errors=True)


def _run_agent(plane: FakePlane, backend: SlurmBackend, tmp_path: Path) -> threading.Event:
    config = AgentConfig(
        center="east",
        server="http://control.test",
        token="tok",
        state_dir=tmp_path / "agent",
        tick_s=0.2,
        lease_interval_s=0.2,
        max_backoff_s=0.5,
    )
    stop = threading.Event()
    agent = Agent(config, backend=backend, stop_event=stop, transport=plane.transport)
    threading.Thread(target=agent.run, daemon=True).start()
    return stop


def test_a_job_overrunning_its_tiny_plan_is_killed_by_slurms_own_limit(
    slurm: SlurmBackend, tmp_path: Path
) -> None:
    plane = FakePlane()
    job = lease("overrun", "sleep 600", chip="CPU-node").model_copy(update={"planned_run_s": 1.0})
    plane.queue.append(job)
    stop = _run_agent(plane, slurm, tmp_path)
    try:
        plane.wait(lambda: plane.final("overrun") is not None, timeout=240, what="the timeout")
    finally:
        stop.set()
    final = plane.final("overrun")
    assert final is not None and final.state == "FAILED"
    assert "time limit" in final.message and "TIMEOUT" in final.message, final.message
    (usage,) = plane.usage["overrun"]
    assert usage.scheduler is not None and usage.scheduler.state == "TIMEOUT"
    assert usage.scheduler.time_limit_s == 60.0  # 1 s planned, no margin: Slurm's 1 minute
    assert usage.scheduler.elapsed_s >= 60  # ran to the limit, far short of its 600 s sleep
    assert usage.scheduler.cpus == 1


def test_a_finished_jobs_usage_report_carries_sacct_elapsed_time(
    slurm: SlurmBackend, tmp_path: Path
) -> None:
    plane = FakePlane()
    plane.queue.append(lease("short", "sleep 3", chip="CPU-node", count=2))
    stop = _run_agent(plane, slurm, tmp_path)
    try:
        plane.wait(lambda: plane.final("short") is not None, timeout=120, what="the end")
    finally:
        stop.set()
    final = plane.final("short")
    assert final is not None and final.state == "SUCCEEDED" and final.exit_code == 0
    (usage,) = plane.usage["short"]
    s = usage.scheduler
    assert s is not None and (s.scheduler, s.state, s.exit_code) == ("slurm", "COMPLETED", 0)
    assert s.job_id.isdigit() and 3 <= s.elapsed_s < 60
    assert s.cpus == 2 and s.mem_mb >= 0
    # 0.5 s plan → one minute. slurmdbd may write the limit after the job's first final
    # record (seen: the same job's sacct line had 00:01:00 a moment later); the overrun
    # test above checks the limit Slurm enforced.
    assert s.time_limit_s is None or s.time_limit_s >= 60
