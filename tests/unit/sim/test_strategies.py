"""The simulator runs any registered cycle strategy by name, as the server does."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from computenet.catalog import load_network
from computenet.model import JobState
from computenet.sim import make_policy
from computenet.sim.results import CODE, SimConfig
from computenet.sim.simulator import Simulation
from computenet.sim.workload import Workload
from tests.helpers.strategies import counting_greedy

NET = load_network("demo")
SEEN: list[int] = []


@pytest.fixture
def counting() -> Iterator[str]:
    """Greedy, registered under another name for the test, counting its cycles."""
    global SEEN
    with counting_greedy("counting") as calls:
        SEEN = calls
        yield "counting"


def test_a_registered_strategy_runs_the_simulation(counting: str) -> None:
    n = 3
    wl = Workload(
        name="three",
        network=NET,
        arrival=np.array([0.0, 60.0, 120.0]),
        classes=("cpu-batch",),
        cls=np.zeros(n, dtype=np.int64),
        count=np.full(n, 2),
        cu_hours=np.full(n, 0.5),
        shapes=((("CPU-node",), None, None),),
        days=1.0,
    )
    res = Simulation(wl, make_policy(f"ours:{counting}"), SimConfig(cycle_s=60.0)).run()
    assert sum(SEEN) >= n
    assert np.all(res.records.state == CODE[JobState.SUCCEEDED]), res.records.reasons
