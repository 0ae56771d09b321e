"""A real server and agent: jobs planned behind chips that free early start when they free."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from computenet.model import JobState
from computenet.protocol.api import JobDetail
from tests.helpers.plane import CENTER, local_plane, one_center_network

pytestmark = pytest.mark.integration

# One center of 8 CPU-nodes at a flat price; network time runs 600× real time.
NETWORK = one_center_network("replan-itest", time_scale=600, cpu_nodes=8)

# Half the pool each, estimated at 3 hours, really one second.
JOB = {
    "name": "short",
    "class": "cpu-batch",
    "command": "sleep 1",
    "chips": {"count": 4, "types": ["CPU-node"]},
    "work": {"reference_chip": "CPU-node", "reference_hours": 3},
    "center": CENTER,
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
    with local_plane(tmp_path, db_url, NETWORK) as plane:
        user = plane.user
        ids = [user.submit(dict(JOB)).id for _ in range(4)]
        done = [user.wait(j, poll_s=0.2, timeout_s=90) for j in ids]
        logs = plane.tails()
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
