"""A real server (profile `fastest`) and agent: a short job preempts a long preemptible one,
which saved its progress under $CNET_CHECKPOINT_DIR and resumes from it at the same center."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from computenet.catalog.loader import network_from_dict
from computenet.cli.demo import job_python
from computenet.metering import charge
from computenet.model import JobState
from computenet.protocol.api import JobDetail
from computenet.sdk import Client
from tests.helpers.plane import CENTER, LocalPlane, local_plane, one_center_network

pytestmark = pytest.mark.integration

# One center of 4 CPU-nodes; network time runs 60× real time (a network minute a second).
NETWORK = one_center_network("preempt-itest", time_scale=60, cpu_nodes=4)
STEPS = 60

# Counts steps into $CNET_CHECKPOINT_DIR/step (resuming from it), 0.1 s a step; on
# SIGTERM it saves and exits 143 (what a stopped command exits with).
SCRIPT = f"""
import os, signal, sys, time
path = os.path.join(os.environ["CNET_CHECKPOINT_DIR"], "step")
step = int(open(path).read()) if os.path.exists(path) else 0
print(f"start at step {{step}}", flush=True)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while step < {STEPS}:
    time.sleep(0.1)
    step += 1
    with open(path + ".tmp", "w") as f:
        f.write(str(step))
    os.replace(path + ".tmp", path)
    if stop:
        print(f"stopped at step {{step}}", flush=True)
        sys.exit(143)
print(f"done at step {{step}}", flush=True)
"""

# Every chip for 3 hours as planned (3 real minutes), really about 6 seconds.
LONG: dict[str, Any] = {
    "name": "long",
    "class": "cpu-batch",
    "command": f"{shlex.quote(job_python())} -c {shlex.quote(SCRIPT)}",
    "chips": {"count": 4, "types": ["CPU-node"]},
    "work": {"reference_chip": "CPU-node", "reference_hours": 3},
    "center": CENTER,
    "preemptible": True,
}
# The same chips for a minute.
SHORT: dict[str, Any] = {
    "name": "short",
    "class": "cpu-batch",
    "command": "sleep 1",
    "chips": {"count": 4, "types": ["CPU-node"]},
    "work": {"reference_chip": "CPU-node", "reference_hours": 1 / 60},
    "center": CENTER,
}


@pytest.fixture
def plane(tmp_path: Path, db_url: str) -> Iterator[LocalPlane]:
    """A server with profile `fastest` and one local agent, and a user."""
    with local_plane(tmp_path, db_url, NETWORK, server_args=["--profile", "fastest"]) as p:
        yield p


def _running(user: Client, job_id: str, timeout_s: float = 60) -> JobDetail:
    deadline = time.monotonic() + timeout_s
    while True:
        j = user.job(job_id)
        if j.state is JobState.RUNNING:
            return j
        assert j.state not in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED), j
        assert time.monotonic() < deadline, f"{job_id} not running: {j.reasons}"
        time.sleep(0.1)


def _at(job: JobDetail, state: JobState) -> list[datetime]:
    return [e.at for e in job.events if e.state is state]


def _log(user: Client, job_id: str) -> str:
    return user.logs(job_id).text


def _cost(started: datetime, finished: datetime) -> Decimal:
    """What 4 CPU-nodes at chongqing cost from `started` to `finished` (the meter's rule)."""
    net = network_from_dict(yaml.safe_load(NETWORK))
    ch = charge(
        net.center(CENTER), net.chips["CPU-node"], net.throughput, "cpu-batch", 4, started, finished
    )
    return Decimal(ch.total_cny)


def test_a_short_job_preempts_a_long_preemptible_one_which_resumes_from_its_checkpoint(
    plane: LocalPlane,
) -> None:
    user = plane.user
    lid = user.submit(dict(LONG)).id
    _running(user, lid)
    time.sleep(1.5)  # some steps saved
    sid = user.submit(dict(SHORT)).id
    short = user.wait(sid, poll_s=0.2, timeout_s=90)
    long = user.wait(lid, poll_s=0.2, timeout_s=120)
    logs = plane.tails()
    assert short.state is JobState.SUCCEEDED, logs
    assert long.state is JobState.SUCCEEDED, logs
    # The long job was asked to stop for the short one, went back to PENDING, and ran again
    # at the same center, on a later attempt, after the short one.
    asked = [e for e in long.events if e.message.startswith(f"preempted at {CENTER}")]
    assert asked and sid in asked[0].message, logs
    assert long.preemptions == 1 and long.attempts == 2, logs
    assert len(_at(long, JobState.PENDING)) == 2, logs  # submitted, then requeued
    assert all(e.center == CENTER for e in long.events if e.state is JobState.RUNNING), logs
    ran_short = _at(short, JobState.RUNNING)[0]
    stopped = _at(long, JobState.PENDING)[-1]
    resumed = _at(long, JobState.RUNNING)[-1]
    assert stopped <= ran_short <= resumed, logs
    # Its output: stopped at some step, then started again from that step, and finished.
    text = _log(user, lid)
    assert "start at step 0" in text, text
    stop_line = next(x for x in text.splitlines() if x.startswith("stopped at step "))
    k = int(stop_line.rsplit(" ", 1)[1])
    assert 0 < k < STEPS, text
    assert f"start at step {k}" in text, text
    assert f"done at step {STEPS}" in text, text
    # Billed for both attempts: the stopped one and the one that finished.
    first = _cost(_at(long, JobState.RUNNING)[0], stopped)
    second = _cost(resumed, _at(long, JobState.SUCCEEDED)[0])
    assert first > 0 and second > 0
    line = next(x for x in user.bill().lines if x.job_id == lid)
    assert line.total_cny == first + second, (line, first, second)
    assert long.cost_cny == first + second


def test_a_long_job_that_is_not_preemptible_runs_to_its_end_first(plane: LocalPlane) -> None:
    user = plane.user
    lid = user.submit({**LONG, "preemptible": False}).id
    _running(user, lid)
    time.sleep(1.5)
    sid = user.submit(dict(SHORT)).id
    long = user.wait(lid, poll_s=0.2, timeout_s=90)
    short = user.wait(sid, poll_s=0.2, timeout_s=90)
    logs = plane.tails()
    assert long.state is JobState.SUCCEEDED and short.state is JobState.SUCCEEDED, logs
    assert long.preemptions == 0 and long.attempts == 1, logs
    assert not any("preempted" in e.message for e in long.events), logs
    assert _at(short, JobState.RUNNING)[0] >= _at(long, JobState.SUCCEEDED)[0], logs
    assert f"done at step {STEPS}" in _log(user, lid)
