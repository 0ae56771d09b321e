"""The agent's long-poll lease: a job placed while its lease call waits runs at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.agent.fakeplane import FakePlane, lease
from tests.unit.agent.test_loop import Agents


@pytest.fixture
def holding() -> FakePlane:
    return FakePlane(hold_leases=True)


@pytest.fixture
def agents(holding: FakePlane, tmp_path: Path) -> Iterator[Agents]:
    a = Agents(holding, tmp_path)
    yield a
    a.close()


def test_a_job_placed_while_the_lease_call_waits_runs(holding: FakePlane, agents: Agents) -> None:
    agents.start()
    holding.wait(lambda: any(w > 0 for w in holding.lease_waits), what="a waiting lease call")
    with holding.lock:
        holding.queue.append(lease("prompt", "echo quick"))
    holding.wait(lambda: holding.final("prompt") is not None, what="the job's end")
    assert holding.states("prompt") == ["RUNNING", "SUCCEEDED"]  # nothing to stage: no STAGING


def test_lease_calls_wait_only_while_the_last_heartbeat_is_fresh(tmp_path: Path) -> None:
    plane = FakePlane(lease_timeout_s=4.0, heartbeat_interval_s=0.2, hold_leases=True)
    a = Agents(plane, tmp_path)
    try:
        a.start()
        plane.wait(lambda: len(plane.lease_waits) >= 4, what="several lease calls")
    finally:
        a.close()
    # Fence after 2 s; new jobs only while the last acknowledged heartbeat is younger than
    # 1 s: a call may wait 80 % of what is left of that, so at most 0.8 s.
    assert any(w > 0 for w in plane.lease_waits)
    assert max(plane.lease_waits) <= 0.8


def test_an_agent_told_not_to_wait_polls_as_before(holding: FakePlane, agents: Agents) -> None:
    agents.start(lease_wait_s=0.0)
    with holding.lock:
        holding.queue.append(lease("polled", "true"))
    holding.wait(lambda: holding.final("polled") is not None, what="the job's end")
    assert holding.lease_waits and set(holding.lease_waits) == {0.0}
