"""Fair share in the simulator: weights hold under saturation, and an idle tenant loses nothing.

Two tenants with weights 2:1 keep `china`'s GPUs saturated for a day (each
has more work queued at the start than the network runs in a day); a third
tenant is idle for the first half and then submits. Fair share is the
production rule (`scheduler/fairshare.py`), so this is what the server does.
"""

from __future__ import annotations

import numpy as np
import pytest

from computenet.catalog import load_network
from computenet.sim.policies import make_policy
from computenet.sim.results import SimConfig, SimResult
from computenet.sim.simulator import Simulation
from computenet.sim.workload import Workload

DAY = 86400.0
HALF = DAY / 2
PER_TENANT = 300  # 128-chip jobs of ~5 h: more than a day of china's GPUs each
LATE = 12  # the third tenant's jobs, submitted at HALF


def _workload() -> Workload:
    n = 2 * PER_TENANT + LATE
    arrival = np.concatenate(
        [
            np.arange(PER_TENANT) * 0.01,
            np.arange(PER_TENANT) * 0.01 + 0.005,
            HALF + np.arange(LATE) * 0.01,
        ]
    )
    tenant = np.array([0] * PER_TENANT + [1] * PER_TENANT + [2] * LATE)
    return Workload(
        name="fair-share",
        network=load_network("china"),
        arrival=arrival,
        classes=("llm-train",),
        cls=np.zeros(n, dtype=np.int64),
        count=np.full(n, 128),
        cu_hours=np.full(n, 250.0),
        tenant=tenant,
        tenants=("a", "b", "c"),
        tenant_weights=(2.0, 1.0, 1.0),
        days=1.0,
    )


@pytest.fixture(scope="module")
def run() -> tuple[Workload, SimResult]:
    wl = _workload()
    res = Simulation(wl, make_policy("ours"), SimConfig(drain_days=0.0)).run()
    return wl, res


def _started_cu_h(wl: Workload, res: SimResult, k: int, until: float) -> float:
    """CU·h of tenant `k`'s jobs that started running before `until`."""
    assert wl.tenant is not None
    rs = res.records.run_start
    mine = (wl.tenant == k) & np.isfinite(rs) & (rs < until)
    return float(wl.cu_hours[mine].sum())


def test_weights_two_to_one_hold_while_saturated(run: tuple[Workload, SimResult]) -> None:
    wl, res = run
    for until in (HALF, DAY):
        a, b = _started_cu_h(wl, res, 0, until), _started_cu_h(wl, res, 1, until)
        assert b > 0
        assert abs(a / b - 2.0) <= 0.05 * 2.0, (until, a, b)
    # Saturated: both tenants still had work waiting at the end of the day.
    assert wl.tenant is not None
    left = ~np.isfinite(res.records.run_start)
    assert left[wl.tenant == 0].any() and left[wl.tenant == 1].any()


def test_a_tenant_back_from_idle_starts_at_the_next_free_chips(
    run: tuple[Workload, SimResult],
) -> None:
    wl, res = run
    rec = res.records
    assert wl.tenant is not None
    late = np.flatnonzero(wl.tenant == 2)
    assert np.isfinite(rec.run_start[late]).all(), "every job of the late tenant ran"
    # The first chips that free after it arrives (a job ending) go to it within a cycle.
    ends = rec.end[np.isfinite(rec.end) & (rec.end >= HALF)]
    first_free = float(ends.min())
    cycle = SimConfig().cycle_s
    assert float(rec.placed[late].min()) <= first_free + cycle
    # And it loses nothing: no job of the busy tenants was placed after it arrived and
    # before its last job was (in the cycle that placed its jobs, they came first).
    last = float(rec.placed[late].max())
    busy = (wl.tenant != 2) & np.isfinite(rec.placed)
    assert not ((rec.placed >= HALF) & (rec.placed < last) & busy).any()
    assert last <= first_free + cycle  # here the chips that freed were enough for all
