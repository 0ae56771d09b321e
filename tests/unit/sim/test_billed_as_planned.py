"""In the simulator, a job that runs exactly to plan is billed what its placement estimated."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog import load_network
from computenet.model import JobState
from computenet.sim import SchedulerPolicy
from computenet.sim.results import CODE, SimConfig
from computenet.sim.simulator import Simulation
from computenet.sim.workload import Workload

NET = load_network("demo")  # time-of-use tariffs, inputs from other centers cost ¥/GB
CLASSES = ("llm-train", "cv-train", "inference")
DAY_S = 86_400.0

jobs = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=0.9),  # arrival within its own day
        st.integers(min_value=0, max_value=len(CLASSES) - 1),
        st.integers(min_value=1, max_value=4),  # chips
        st.floats(min_value=0.05, max_value=3.0),  # CU·h
        st.floats(min_value=0.0, max_value=0.05),  # GB of input (× the demo's data scale)
        st.integers(min_value=0, max_value=len(NET.node_ids) - 1),  # where the input is
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=12, deadline=None)
@given(specs=jobs)
def test_a_job_that_runs_to_plan_is_billed_its_estimate_within_a_fen(
    specs: list[tuple[float, int, int, float, float, int]],
) -> None:
    n = len(specs)
    # One job a day: nothing shares a link or a pool, so every job runs exactly to plan.
    arrival = np.array([(k + a) * DAY_S for k, (a, *_rest) in enumerate(specs)])
    wl = Workload(
        name="to-plan",
        network=NET,
        arrival=arrival,
        classes=CLASSES,
        cls=np.array([s[1] for s in specs], dtype=np.int64),
        count=np.array([s[2] for s in specs], dtype=np.int64),
        cu_hours=np.array([s[3] for s in specs]),
        data_gb=np.array([s[4] for s in specs]),
        data_loc=np.array([s[5] for s in specs], dtype=np.int64),
        days=float(n),
    )
    cfg = SimConfig(cycle_s=60.0, prefetch=False)
    res = Simulation(wl, SchedulerPolicy("ours", "min-cost"), cfg).run()
    r = res.records
    for i in range(n):
        assert r.state[i] == CODE[JobState.SUCCEEDED]
        billed = int(r.energy_fen[i] + r.service_fen[i] + r.transfer_fen[i])
        assert abs(billed - int(r.planned_fen[i])) <= 1, (i, billed, int(r.planned_fen[i]))
