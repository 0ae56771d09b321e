"""Preemption (`scheduler/preemption.py`): a much shorter waiting job may stop a preemptible one.

The rule is pure; the server's cycle and the simulator call the same `choose`
and `resumed`, so these tests hold both to it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog import load_network
from computenet.model import Network
from computenet.model.center import CST
from computenet.scheduler import JobRequest, build_snapshot
from computenet.scheduler.index import network_index
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.preemption import (
    MAX_PREEMPTIONS,
    MIN_WORK_LEFT,
    RESUME_S,
    SHORTER_BY,
    Running,
    choose,
    resumed,
    work_left,
)
from computenet.scheduler.snapshot import Reservation, Snapshot

GAVEL: Network = load_network("gavel")  # one center per chip: 36 V100, 36 P100, 36 K80
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=CST)
FASTEST = PROFILES["fastest"]
IDX = network_index(GAVEL)
V100 = IDX.pool_of[("v100", "V100")]


def _job(jid: str, cu_hours: float, count: int = 8, **kw: object) -> JobRequest:
    fields: dict[str, object] = {
        "id": jid,
        "workload_class": "cv-train",
        "count": count,
        "cu_hours": cu_hours,
        "submitted_at": NOW,
    }
    fields.update(kw)
    return JobRequest(**fields)  # type: ignore[arg-type]


def _run_s(job: JobRequest, pool: int = V100) -> float:
    """The job's run on `pool`, as the scheduler plans it."""
    return job.cu_hours / (float(IDX.pflops[job.workload_class][pool]) * job.count) * 3600.0


def _full(*held: tuple[str, int, float]) -> Snapshot:
    """Every pool full (so a waiting job cannot start anywhere), and `held` reservations."""
    res = [
        Reservation(c.id, c.pools[0].chip, c.pools[0].count, NOW, NOW + timedelta(hours=50))
        for c in GAVEL.centers
    ]
    res += [
        Reservation(c, GAVEL.center(c).pools[0].chip, n, NOW, NOW + timedelta(hours=h))
        for c, n, h in held
    ]
    return build_snapshot(GAVEL, NOW, reservations=res)


def _v100_running(left_h: float, jid: str = "long", count: int = 36, **kw: object) -> Running:
    return Running(jid, "v100", "V100", count, left_h * 3600.0, **kw)  # type: ignore[arg-type]


def test_a_short_job_stops_a_long_preemptible_one_on_its_fastest_pool() -> None:
    short = _job("short", 0.2)
    assert _run_s(short) < 3600.0
    out = choose(_full(), [short], [_v100_running(20.0)], FASTEST)
    assert [(p.victim, p.center, p.chip, p.for_job) for p in out] == [
        ("long", "v100", "V100", "short")
    ]


def test_only_a_profile_that_preempts_does() -> None:
    short = _job("short", 1.0)
    for name, profile in PROFILES.items():
        out = choose(_full(), [short], [_v100_running(20.0)], profile)
        assert bool(out) == profile.preempt, name
    assert [n for n, p in PROFILES.items() if p.preempt] == ["fastest"]


def test_the_victim_must_have_much_longer_left_than_the_waiting_job_runs() -> None:
    short = _job("short", 1.0)
    edge_h = (SHORTER_BY * _run_s(short) + RESUME_S) / 3600.0
    assert not choose(_full(), [short], [_v100_running(edge_h * 0.999)], FASTEST)
    assert choose(_full(), [short], [_v100_running(edge_h * 1.001)], FASTEST)


def test_no_preemption_when_the_fastest_pool_has_room_now() -> None:
    free = build_snapshot(
        GAVEL, NOW, reservations=[Reservation("v100", "V100", 20, NOW, NOW + timedelta(hours=30))]
    )
    out = choose(free, [_job("short", 1.0)], [_v100_running(30.0, count=20)], FASTEST)
    assert out == []


def test_a_job_is_preempted_at_most_max_times_and_never_by_lower_priority() -> None:
    short = _job("short", 1.0)
    again = _v100_running(20.0, preemptions=MAX_PREEMPTIONS)
    assert not choose(_full(), [short], [again], FASTEST)
    assert not choose(_full(), [short], [_v100_running(20.0, priority=3)], FASTEST)
    assert choose(
        _full(), [_job("short", 1.0, priority=3)], [_v100_running(20.0, priority=3)], FASTEST
    )


def test_victims_longest_left_first_until_the_job_fits() -> None:
    running = [_v100_running(h, f"r{h:g}", count=8) for h in (5.0, 30.0, 10.0, 20.0)]
    out = choose(_full(), [_job("wide", 1.0, count=16)], running, FASTEST)
    assert [p.victim for p in out] == ["r30", "r20"]


def test_chips_being_freed_count_and_a_victim_serves_one_job() -> None:
    short = _job("s1", 1.0)
    stopping = [_v100_running(20.0, "going", count=8)]
    # The 8 chips already being freed are the short job's: nothing more is stopped.
    assert not choose(_full(), [short], [_v100_running(20.0, count=8)], FASTEST, stopping)
    # Two waiting jobs, one victim of 8 chips: only the shorter waiting job gets it.
    two = [_job("s2", 2.0), short]
    out = choose(_full(), two, [_v100_running(20.0, count=8)], FASTEST)
    assert [(p.victim, p.for_job) for p in out] == [("long", "s1")]


def test_a_resumed_request_is_the_work_left_plus_the_restore_pinned_to_its_center() -> None:
    job = _job("j", 40.0, count=8)
    r = resumed(IDX, job, 0.25, "v100", "V100", NOW + timedelta(hours=1))
    assert r.pin_center == "v100" and r.submitted_at > NOW + timedelta(hours=1)
    assert np.isclose(_run_s(r), 0.25 * _run_s(job) + RESUME_S)
    assert resumed(IDX, job, 7.0, "v100", "V100", NOW).cu_hours > job.cu_hours  # left is clamped


def test_work_left_is_read_from_the_plan_and_a_restore_is_no_progress() -> None:
    assert work_left(1.0, 1800.0, 3600.0, resumed=False) == pytest.approx(0.5)
    # A resumed attempt planned 600 s of restore + 3,600 s of work, stopped after 2,400 s:
    # it did half of the 40 % it had left.
    assert work_left(0.4, RESUME_S + 1800.0, RESUME_S + 3600.0, resumed=True) == pytest.approx(0.2)
    assert work_left(0.4, RESUME_S / 2, RESUME_S + 3600.0, resumed=True) == pytest.approx(0.4)
    assert work_left(1.0, 10_000.0, 3600.0, resumed=False) == MIN_WORK_LEFT  # overran its plan
    assert work_left(1.0, 10.0, 0.0, resumed=False) == 1.0  # no plan: nothing known done


@settings(max_examples=80, deadline=None)
@given(
    waiting=st.lists(
        st.tuples(st.floats(0.05, 5.0), st.sampled_from([4, 8, 16, 32])), min_size=1, max_size=6
    ),
    running=st.lists(
        st.tuples(
            st.sampled_from(["v100", "p100", "k80"]),
            st.sampled_from([4, 8, 16, 36]),
            st.floats(0.1, 100.0),
            st.integers(0, MAX_PREEMPTIONS),
        ),
        min_size=3,
        max_size=12,
    ),
)
def test_every_preemption_follows_the_rule(
    waiting: list[tuple[float, int]], running: list[tuple[str, int, float, int]]
) -> None:
    # The running jobs hold their chips (those that fit in their pool).
    used = {c.id: 0 for c in GAVEL.centers}
    runs, held = [], []
    for k, (c, n, h, p) in enumerate(running):
        if used[c] + n > 36:
            continue
        used[c] += n
        chip = GAVEL.center(c).pools[0].chip
        runs.append(Running(f"r{k}", c, chip, n, h * 3600.0, p))
        held.append(Reservation(c, chip, n, NOW, NOW + timedelta(hours=h)))
    snap = build_snapshot(GAVEL, NOW, reservations=held)
    jobs = [_job(f"w{k}", cu, n) for k, (cu, n) in enumerate(waiting)]
    out = choose(snap, jobs, runs, FASTEST)
    by_id = {r.id: r for r in runs}
    jobs_by_id = {j.id: j for j in jobs}
    victims = [p.victim for p in out]
    assert len(victims) == len(set(victims))  # a job is stopped once
    for p in out:
        r, j = by_id[p.victim], jobs_by_id[p.for_job]
        assert r.preemptions < MAX_PREEMPTIONS and (r.center, r.chip) == (p.center, p.chip)
        pool = IDX.pool_of[(p.center, p.chip)]
        best = min(_run_s(j, q) for q in range(IDX.n_pools))
        assert np.isclose(_run_s(j, pool), best)  # only on its fastest pool
        assert r.left_s > SHORTER_BY * best + RESUME_S
        # Stopped only where the waiting jobs that are fastest there do not all fit now.
        there = [
            w for w in jobs if np.isclose(_run_s(w, pool), min(_run_s(w, q) for q in range(3)))
        ]
        assert snap.free[pool, 0] < sum(w.count for w in there)
    for jid in {p.for_job for p in out}:
        counts = [by_id[p.victim].count for p in out if p.for_job == jid]
        # No more than needed: without the last one taken, the job would not fit.
        assert sum(counts[:-1]) < jobs_by_id[jid].count
