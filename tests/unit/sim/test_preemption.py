"""The simulator preempts as the server does (`scheduler/preemption.py`), and bills each part.

A long preemptible job holds the only fast pool; a much shorter job arrives.
Under `fastest` the long one is stopped, the short one runs at once, and the
long one resumes at the same center, losing only the restore: its work is
conserved, and the two runs are billed with the server's `charge`.
"""

from __future__ import annotations

import numpy as np
import pytest

from computenet.catalog import load_network
from computenet.model import JobState
from computenet.scheduler.preemption import RESUME_S
from computenet.sim import SchedulerPolicy
from computenet.sim.results import CODE, Outage, SimConfig, SimResult
from computenet.sim.simulator import Simulation
from computenet.sim.workload import Workload

NET = load_network("gavel")  # one center per chip: 36 V100, 36 P100, 36 K80
RATE = NET.throughput.delivered_pflops("cv-train", NET.chips["V100"])  # per chip
LONG_H, SHORT_H, GAP_H = 20.0, 0.5, 2.0


def _long_then_short(preemptible: bool) -> Workload:
    """A 20 h job on all 36 V100, then (2 h later) a 0.5 h one on 36 V100; V100 only."""
    return Workload(
        name="long-then-short",
        network=NET,
        arrival=np.array([0.0, GAP_H * 3600.0]),
        classes=("cv-train",),
        cls=np.zeros(2, dtype=np.int64),
        count=np.full(2, 36),
        cu_hours=np.array([RATE * 36 * LONG_H, RATE * 36 * SHORT_H]),
        shapes=((("V100",), None, None),),
        preemptible=np.array([preemptible, preemptible]),
        days=2.0,
    )


def _run(preemptible: bool, profile: str) -> SimResult:
    policy = SchedulerPolicy(f"ours:{profile}", profile)
    return Simulation(_long_then_short(preemptible), policy, SimConfig(cycle_s=60.0)).run()


def test_a_much_shorter_job_preempts_and_the_long_one_resumes_at_its_center() -> None:
    r = _run(preemptible=True, profile="fastest").records
    assert (r.state == CODE[JobState.SUCCEEDED]).all()
    assert list(r.preemptions) == [1, 0]
    # The short job starts within a cycle of arriving, not after the 20 h one.
    assert r.run_start[1] <= GAP_H * 3600.0 + 60.0
    # The long one ran on V100 again (its checkpoint's center), for the rest plus the restore.
    ran_before = GAP_H * 3600.0
    rest = LONG_H * 3600.0 - ran_before
    assert r.run_start[0] >= r.end[1]
    assert r.end[0] - r.run_start[0] == pytest.approx(rest + RESUME_S, abs=1.0)
    # Both runs billed: the work done plus the restore's chip time.
    assert r.cu_hours[0] == pytest.approx(RATE * 36 * (LONG_H + RESUME_S / 3600.0), rel=1e-3)
    assert int(r.attempts[0]) == 1 and int(r.attempts[1]) == 0


def test_the_average_completion_falls_by_the_exchange() -> None:
    pre = _run(preemptible=True, profile="fastest").records
    fifo = _run(preemptible=False, profile="fastest").records
    assert fifo.preemptions.sum() == 0
    jct = lambda r: (r.end - np.array([0.0, GAP_H * 3600.0])).sum()  # noqa: E731
    # Shortest-remaining-first: the short job gains ~18 h, the long one loses 0.5 h + restore.
    assert jct(pre) < jct(fifo) - 15 * 3600.0


@pytest.mark.parametrize("profile", ["min-cost", "balanced", "green"])
def test_profiles_that_do_not_preempt_never_do(profile: str) -> None:
    r = _run(preemptible=True, profile=profile).records
    assert r.preemptions.sum() == 0
    assert r.run_start[1] >= r.end[0] - 1.0  # the short job waited for the long one


def test_a_resumed_job_that_loses_its_center_starts_over_elsewhere() -> None:
    wl = _long_then_short(preemptible=True)
    wl.shapes = (((), None, None),)  # any chip: V100 is the fastest, P100 the next
    resumed_at = GAP_H * 3600.0 + 3 * 3600.0  # the short job's 0.5 h is over by then
    cfg = SimConfig(cycle_s=60.0, outages=(Outage("v100", resumed_at, 40 * 86400.0),))
    policy = SchedulerPolicy("ours:fastest", "fastest")
    sim = Simulation(wl, policy, cfg)
    r = sim.run().records
    assert list(r.preemptions) == [1, 0]
    assert (r.state == CODE[JobState.SUCCEEDED]).all()
    assert sim.idx.pool_chip[int(r.pool[0])] != "V100"  # finished elsewhere
    assert r.run_start[0] >= resumed_at
    # It ran the whole job again there: the checkpoint stayed at the lost center.
    p100 = NET.throughput.delivered_pflops("cv-train", NET.chips[sim.idx.pool_chip[int(r.pool[0])]])
    assert r.end[0] - r.run_start[0] == pytest.approx(RATE * LONG_H / p100 * 3600.0, rel=1e-6)
