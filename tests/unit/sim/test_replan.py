"""The simulator re-plans like the server: jobs behind chips that free early start sooner."""

from __future__ import annotations

import numpy as np

from computenet.catalog import load_network
from computenet.sim import SchedulerPolicy
from computenet.sim.results import SimConfig, SimResult
from computenet.sim.simulator import Simulation
from computenet.sim.workload import Workload

NET = load_network("demo")  # chongqing holds the only CPU-nodes: 8 of them
RATE = NET.throughput.delivered_pflops("cpu-batch", NET.chips["CPU-node"])


def _four_long_estimates_that_run_one_second() -> Workload:
    """Four jobs of 4 CPU-nodes, estimated at 3 hours each, that really run one second."""
    n = 4
    return Workload(
        name="early-ends",
        network=NET,
        arrival=np.zeros(n),
        classes=("cpu-batch",),
        cls=np.zeros(n, dtype=np.int64),
        count=np.full(n, 4),
        cu_hours=np.full(n, RATE * 3 * 4),
        shapes=((("CPU-node",), None, None),),
        runtime_factor=np.full(n, 1.0 / (3 * 3600)),
        days=1.0,
    )


def _run(replan: bool) -> SimResult:
    cfg = SimConfig(cycle_s=60.0, replan=replan)
    policy = SchedulerPolicy("ours", "min-cost")
    return Simulation(_four_long_estimates_that_run_one_second(), policy, cfg).run()


def test_jobs_behind_early_ends_start_within_a_cycle_when_plans_follow_reality() -> None:
    followed, fixed = _run(replan=True), _run(replan=False)
    first_end = np.sort(followed.records.end)[:2].max()
    later = np.sort(followed.records.run_start)[2:]
    assert (later <= first_end + 2 * 60.0).all()  # the next cycle, or the one after
    # Without re-planning they wait for the 3-hour estimates, as the server used to.
    assert (np.sort(fixed.records.run_start)[2:] >= 3 * 3600).all()
    assert (followed.records.state == fixed.records.state).all()
