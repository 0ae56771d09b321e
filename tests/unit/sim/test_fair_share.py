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


def test_plans_made_ahead_while_alone_are_given_back_when_another_tenant_comes() -> None:
    # Tenant a alone queues more than a day of work: its jobs are planned hours ahead.
    # Tenant b's jobs, submitted together just before 05:50 (the next cycle), start at
    # the next chips that free.
    per, late, at = 300, 4, 6 * 3600.0 - 610.0
    n = per + late
    wl = Workload(
        name="alone-then-not",
        network=load_network("china"),
        arrival=np.concatenate([np.arange(per) * 0.01, at + np.arange(late) * 0.01]),
        classes=("llm-train",),
        cls=np.zeros(n, dtype=np.int64),
        count=np.full(n, 128),
        cu_hours=np.full(n, 250.0),
        tenant=np.array([0] * per + [1] * late),
        tenants=("a", "b"),
        days=1.0,
    )
    res = Simulation(wl, make_policy("ours"), SimConfig(drain_days=0.0)).run()
    rec = res.records
    assert wl.tenant is not None
    b = np.flatnonzero(wl.tenant == 1)
    ends = rec.end[np.isfinite(rec.end) & (rec.end >= at)]
    cycle = SimConfig().cycle_s
    assert float(rec.run_start[b].max()) <= min(float(ends.min()), at) + cycle
    # a's jobs that started after b arrived started only once b's had.
    a_after = (wl.tenant == 0) & (rec.run_start >= at)
    assert not (rec.run_start[a_after] < float(rec.run_start[b].max())).any()
