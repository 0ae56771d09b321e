"""Parked jobs (`SchedulerPolicy.decide_due`) and the collector: the same runs, only faster.

The simulator keeps deferred jobs out of the cycle itself when the policy
decides only the due jobs; these tests hold every job's outcome equal to a
run through the plain `Policy` contract (every pending job handed over each
cycle, `keeps` asked), and the garbage collector's settings as they were.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pytest

from computenet.model import Network
from computenet.scheduler import Decision, JobRequest, Snapshot, lookahead
from computenet.sim import Outage, SimConfig, Simulation, make_policy, synthetic
from computenet.sim.policies import SchedulerPolicy
from computenet.sim.results import SimResult


@dataclass
class _Plain:
    """A `SchedulerPolicy` seen only through the `Policy` protocol (no `decide_due`)."""

    inner: SchedulerPolicy

    @property
    def name(self) -> str:
        return self.inner.name

    def __call__(self, snapshot: Snapshot, jobs: Sequence[JobRequest]) -> list[Decision]:
        return self.inner(snapshot, jobs)

    def keeps(self, job: JobRequest, now: datetime) -> bool:
        return self.inner.keeps(job, now)


def _outcomes(r: SimResult) -> tuple[object, ...]:
    rec = r.records
    arrays = tuple(
        getattr(rec, name).tobytes()
        for name in ("state", "pool", "placed", "hold_start", "run_start", "end", "planned_fen")
    )
    return (*arrays, sorted(rec.reasons.items()), r.cycles, r.placements)


@pytest.mark.parametrize(
    ("policy", "max_batch", "outage", "max_waiting"),
    [
        ("ours", 512, False, None),  # the whole backlog in each cycle
        ("ours", 512, False, 3),  # parked jobs count against MAX_WAITING
        ("ours", 6, True, None),  # a backlog longer than the batch, requeues, expiring deadlines
        ("ours", 6, True, 2),
        ("ours:fastest", 6, False, None),  # nothing deferred to an instant: nothing parked
        ("ours:greedy", 8, False, None),
    ],
)
def test_parking_deferred_jobs_decides_as_handing_them_over(
    net: Network,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    max_batch: int,
    outage: bool,
    max_waiting: int | None,
) -> None:
    if max_waiting is not None:
        monkeypatch.setattr(lookahead, "MAX_WAITING", max_waiting)
    wl = synthetic(net, jobs=150, days=1, seed=5, max_count=8, scale=2.0)
    outs = (Outage("west", 3 * 3600.0, 10 * 3600.0),) if outage else ()
    cfg = SimConfig(max_batch=max_batch, outages=outs)
    fast_policy = make_policy(policy, seed=1)
    assert isinstance(fast_policy, SchedulerPolicy)
    fast = Simulation(wl, fast_policy, cfg)
    assert fast._decide_due is not None
    plain = Simulation(wl, _Plain(make_policy(policy, seed=1)), cfg)  # type: ignore[arg-type]
    assert plain._decide_due is None
    a, b = fast.run(), plain.run()
    assert _outcomes(a) == _outcomes(b)
    if policy == "ours":
        # Something was parked and woke up again, so the shortcut was exercised.
        assert fast._wakes or any("waits:" in why for why in a.records.reasons.values()), (
            "lookahead deferred no job in this workload"
        )
    assert int(np.sum(a.records.planned_fen)) > 0


def test_a_run_puts_the_collector_back_as_it_was(net: Network) -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    wl = synthetic(net, jobs=20, days=1, seed=2)
    seen: list[tuple[int, int, int]] = []
    sim = Simulation(wl, make_policy("ours"), SimConfig())
    run_all = sim._run_all

    def spy() -> SimResult:
        seen.append(gc.get_threshold())
        return run_all()

    sim._run_all = spy  # type: ignore[method-assign]
    sim.run()
    assert seen and seen[0][0] >= 100_000  # collected rarely while it ran
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
