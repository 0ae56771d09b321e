"""The batch optimizer: the MILP matches brute force; joint placement beats first-come."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.model.center import CST
from computenet.scheduler import JobRequest, build_snapshot, schedule_cycle
from computenet.scheduler.optimizer import Choice, optimize_cycle, solve_assignment
from computenet.scheduler.snapshot import HORIZON_SLOTS
from tests.unit.sim.conftest import tiny_network

choice = st.tuples(
    st.integers(0, 1),  # pool
    st.integers(0, 3),  # slot
    st.integers(1, 3),  # slots held
    st.floats(1.0, 100.0),  # cost
)


def _objective(choices: list[Choice], picked: list[int | None], n: int) -> float:
    reward = np.zeros(n)
    for c in choices:
        reward[c.job] = max(reward[c.job], c.cost)
    reward = 2 * reward + 1
    by = {(c.job, c.option): c for c in choices}
    return sum(by[(j, o)].cost - reward[j] for j, o in enumerate(picked) if o is not None)


def _fits(choices: list[Choice], picked: list[int | None], free: np.ndarray) -> bool:
    used = np.zeros_like(free)
    by = {(c.job, c.option): c for c in choices}
    for j, o in enumerate(picked):
        if o is None:
            continue
        c = by[(j, o)]
        used[c.pool, c.slot : min(c.slot + c.n_slots, HORIZON_SLOTS)] += c.count
    return bool(np.all(used <= free))


@settings(max_examples=80, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.integers(1, 4), st.lists(choice, min_size=1, max_size=3)),
        min_size=1,
        max_size=4,
    ),
    cap=st.lists(st.integers(0, 6), min_size=2, max_size=2),
)
def test_the_milp_matches_brute_force_on_tiny_instances(jobs, cap) -> None:  # type: ignore[no-untyped-def]
    free = np.repeat(np.array(cap)[:, None], HORIZON_SLOTS, axis=1)
    choices = [
        Choice(j, i, cost, pool, slot, held, count)
        for j, (count, opts) in enumerate(jobs)
        for i, (pool, slot, held, cost) in enumerate(opts)
    ]
    picked = solve_assignment(choices, len(jobs), free)
    assert _fits(choices, picked, free)
    best = min(
        _objective(choices, list(combo), len(jobs))
        for combo in itertools.product(*[[None, *range(len(opts))] for _, opts in jobs])
        if _fits(choices, list(combo), free)
    )
    assert abs(_objective(choices, picked, len(jobs)) - best) < 1e-6


def test_joint_placement_fits_jobs_that_first_come_first_served_cannot() -> None:
    net = tiny_network(east_chips=8, west_chips=8)
    now = datetime(2026, 1, 5, 12, 0, tzinfo=CST)
    snap = build_snapshot(net, now)
    # A (first, small) fits anywhere; B (big, urgent) meets its deadline only on the
    # western H800s, and only if it starts now: about 2 h there, 5 h on the eastern A100s.
    a = JobRequest(
        id="a", workload_class="llm-train", count=4, cu_hours=2.0, priority=5, submitted_at=now
    )
    b = JobRequest(
        id="b",
        workload_class="llm-train",
        count=8,
        cu_hours=5.7,
        submitted_at=now,
        deadline=now + timedelta(hours=3),
    )
    greedy = schedule_cycle(snap, [a, b])
    assert greedy[0].placement is not None and greedy[0].placement.center == "west"
    assert greedy[1].placement is None
    joint = optimize_cycle(snap, [a, b])
    pa, pb = joint[0].placement, joint[1].placement
    assert pa is not None and pb is not None
    assert pb.center == "west" and pb.planned_start == now
    # A moves out of B's way: to the east, or to the west once B is done.
    assert pa.center == "east" or pa.planned_start >= pb.finish
    assert joint[0].reasons[0].startswith("batch optimizer")


def test_the_optimizer_never_overfills_a_pool() -> None:
    net = tiny_network(east_chips=8, west_chips=8)
    now = datetime(2026, 1, 5, 9, 30, tzinfo=CST)
    snap = build_snapshot(net, now)
    jobs = [
        JobRequest(
            id=f"j{k}",
            workload_class="llm-train",
            count=4,
            cu_hours=6.0 + k,
            submitted_at=now,
            deadline=now + timedelta(hours=20),
        )
        for k in range(7)
    ]
    out = optimize_cycle(snap, jobs)
    assert [d.job_id for d in out] == [j.id for j in jobs]
    used = np.zeros_like(snap.free)
    hour0 = snap.hour0
    for d in out:
        if d.placement is None:
            continue
        p = snap.index.pool_of[(d.placement.center, d.placement.chip)]
        s0 = (
            0
            if d.placement.planned_start <= now
            else int((d.placement.planned_start - hour0).total_seconds() // 3600)
        )
        s1 = int(np.ceil((d.placement.finish - hour0).total_seconds() / 3600))
        used[p, s0 : min(s1, HORIZON_SLOTS)] += d.placement.count
    assert np.all(used <= snap.free)
