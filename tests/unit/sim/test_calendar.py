"""The simulator's snapshots are the server's snapshots: same calendar, same placements."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.model import Dataset
from computenet.model.center import CST
from computenet.scheduler import JobRequest, Reservation, build_snapshot, schedule_cycle
from computenet.sim import SimConfig, Simulation, make_policy, synthetic
from computenet.sim.calendar import OVERRUN_HOLD_S, CapacityCalendar
from computenet.sim.engine import Environment
from tests.unit.sim.conftest import tiny_network

EPOCH = datetime(2026, 1, 5, tzinfo=CST)
HOLD = timedelta(seconds=OVERRUN_HOLD_S)
NET = tiny_network()
POOLS = [(c.id, p.chip) for c in NET.centers for p in c.pools]

reservation = st.tuples(
    st.integers(0, len(POOLS) - 1),
    st.integers(1, 6),
    st.floats(0, 60 * 3600),
    st.floats(60, 30 * 3600),
)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(reservation, max_size=25),
    st.lists(st.floats(0, 50 * 3600), min_size=1, max_size=4),
    st.lists(st.integers(0, 20), min_size=len(POOLS), max_size=len(POOLS)),
)
def test_the_calendar_cuts_the_snapshot_the_server_would_build(
    res: list[tuple[int, int, float, float]], nows: list[float], reported: list[int]
) -> None:
    env = Environment(EPOCH)
    cal = CapacityCalendar(NET, env)
    for k, (p, n, start, length) in enumerate(res):
        cal.reserve(k, p, n, start, start + length)
    for now in sorted(nows):
        # The server: placements are instants to the microsecond, and a job's chips stay
        # reserved at least a minute past now even when it overruns (server/scheduling.py).
        now_dt = env.datetime(now)
        server = [
            Reservation(*POOLS[p], n, env.datetime(s), max(env.datetime(s + length), now_dt + HOLD))
            for p, n, s, length in res
        ]
        sim = cal.snapshot(
            env.seconds(now_dt),
            online=np.ones(len(NET.centers), dtype=bool),
            datasets={},
            reported_free=np.array(reported),
        )
        ref = build_snapshot(
            NET, now_dt, reservations=server, reported_free=dict(zip(POOLS, reported, strict=True))
        )
        np.testing.assert_array_equal(sim.free, ref.free)
        assert sim.now == ref.now


def test_released_reservations_give_their_chips_back() -> None:
    env = Environment(EPOCH)
    cal = CapacityCalendar(NET, env)
    cal.reserve("a", 0, 5, 100.0, 7200.0)
    cal.reserve("b", 0, 3, 3600.0, 4 * 3600.0)
    cal.release("a")
    cal.release("a")
    free = cal.free_window(0.0)
    assert free[0, 0] == NET.centers[0].pools[0].count
    assert free[0, 1] == NET.centers[0].pools[0].count - 3


def _jobs(now: datetime) -> list[JobRequest]:
    ds = Dataset(id="d", size_bytes=int(300e9), sha256="0" * 64, replicas=("city",))
    return [
        JobRequest(
            id="a",
            workload_class="llm-train",
            count=8,
            cu_hours=30.0,
            inputs=(ds,),
            deadline=now + timedelta(hours=30),
            submitted_at=now,
        ),
        JobRequest(id="b", workload_class="cv-train", count=4, cu_hours=5.0, submitted_at=now),
        JobRequest(
            id="c",
            workload_class="inference",
            count=2,
            cu_hours=2.0,
            submitted_at=now,
            latency_class="interactive",
            deadline=now + timedelta(hours=4),
        ),
    ]


class _Recorder:
    """Wraps a policy; at each cycle keeps what the server would know: reservations, reports."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.sim: Simulation | None = None
        self.cycles: list[tuple] = []  # type: ignore[type-arg]

    def keeps(self, job, now):  # type: ignore[no-untyped-def]
        return self.inner.keeps(job, now)

    def __call__(self, snap, jobs):  # type: ignore[no-untyped-def]
        assert self.sim is not None
        sim = self.sim
        now = snap.now
        held = [
            Reservation(*POOLS[p], n, sim.env.datetime(s), max(sim.env.datetime(e), now + HOLD))
            for _k, p, n, s, e in sim.cal.reservations()
        ]
        reported = dict(zip(POOLS, (sim.total - sim.held).tolist(), strict=True))
        out = self.inner(snap, jobs)
        self.cycles.append((snap, list(jobs), out, held, reported))
        return out


def test_the_simulator_and_the_live_server_place_the_same_job_the_same_way() -> None:
    wl = synthetic(NET, jobs=60, days=1, seed=11, max_count=8, scale=0.3)
    rec = _Recorder(make_policy("ours:greedy"))  # the server's default strategy
    sim = Simulation(wl, rec, SimConfig())
    rec.sim = sim
    sim.run()
    assert len(rec.cycles) > 5
    busy = 0
    for snap, jobs, decisions, held, reported in rec.cycles:
        # The server's path: build_snapshot from reservations and agent reports, then the cycle.
        live = build_snapshot(NET, snap.now, reservations=held, reported_free=reported)
        np.testing.assert_array_equal(live.free, snap.free)
        again = schedule_cycle(live, jobs, profile="min-cost")
        assert [d.placement for d in again] == [d.placement for d in decisions]
        assert [d.reasons for d in again] == [d.reasons for d in decisions]
        busy += bool(held)
    assert busy > 3, "the comparison covered cycles with chips already reserved"


def test_a_snapshot_from_the_calendar_and_from_reservations_place_jobs_alike() -> None:
    env = Environment(EPOCH)
    cal = CapacityCalendar(NET, env)
    now = 5.5 * 3600
    held = [(0, 12, 0.0, 9 * 3600.0), (2, 10, 3600.0, 20 * 3600.0), (1, 4, 6 * 3600.0, 8 * 3600.0)]
    server = []
    for k, (p, n, s, e) in enumerate(held):
        cal.reserve(k, p, n, s, e)
        server.append(Reservation(*POOLS[p], n, env.datetime(s), env.datetime(e)))
    online = np.ones(len(NET.centers), dtype=bool)
    sim_snap = cal.snapshot(now, online=online, datasets={})
    live_snap = build_snapshot(NET, env.datetime(now), reservations=server)
    jobs = _jobs(env.datetime(now))
    for profile in ("min-cost", "fastest", "balanced"):
        a = schedule_cycle(sim_snap, jobs, profile=profile)
        b = schedule_cycle(live_snap, jobs, profile=profile)
        assert [d.placement for d in a] == [d.placement for d in b]
