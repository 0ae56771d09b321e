"""The operator's patience: a job without a deadline is held for cheaper power at most that long.

Checked for both strategies on the scheduler's own snapshots, in the
simulator, in quotes, and where it is configured (bad values are refused
naming the field).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog import load_network
from computenet.errors import ValidationError
from computenet.model import JobState, Network
from computenet.model.center import CST
from computenet.scheduler import JobRequest, build_snapshot, quote, schedule_cycle
from computenet.scheduler.patience import MAX_PATIENCE_H, check_patience
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H
from computenet.sim import SimConfig, Simulation, make_policy, synthetic
from computenet.sim.results import CODE

CHINA: Network = load_network("china")
DAY = datetime(2026, 1, 5, tzinfo=CST)
STRATEGIES = ("greedy", "batch-optimizer")
CLASSES = ("llm-train", "cv-train", "cpu-batch", "inference")


def _jobs(now: datetime, shapes: list[tuple[int, int, float]]) -> list[JobRequest]:
    """Batch jobs without a deadline, one per (class index, chips, CU·h)."""
    return [
        JobRequest(
            id=f"j{k}",
            workload_class=CLASSES[c],
            count=n,
            cu_hours=cuh,
            submitted_at=now,
        )
        for k, (c, n, cuh) in enumerate(shapes)
    ]


def _held_h(now: datetime, start: datetime) -> float:
    return (start - now).total_seconds() / 3600.0


@settings(max_examples=25, deadline=None)
@given(
    minute=st.integers(0, 24 * 60 - 1),
    patience=st.sampled_from([0.0, 0.25, 1.0, 2.5, 4.0, 6.0, 24.0]),
    strategy=st.sampled_from(STRATEGIES),
    shapes=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 4), st.floats(0.5, 40.0)),
        min_size=1,
        max_size=4,
    ),
)
def test_no_deadline_job_is_never_planned_later_than_the_patience(
    minute: int, patience: float, strategy: str, shapes: list[tuple[int, int, float]]
) -> None:
    # An empty network: every job could start now, so any later start is a hold.
    now = DAY + timedelta(minutes=minute)
    snap = build_snapshot(CHINA, now, patience_h=patience)
    for d in schedule_cycle(snap, _jobs(now, shapes), strategy=strategy):
        assert d.placement is not None, d.reasons
        assert _held_h(now, d.placement.planned_start) <= patience + 1e-9, d.reasons


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_patience_holds_for_cheaper_power_only_as_long_as_allowed(strategy: str) -> None:
    # 21:30 on `china`: a peak hour for most provinces, cheaper hours ahead.
    evening = DAY + timedelta(hours=21, minutes=30)
    job = _jobs(evening, [(0, 4, 20.0)])

    def held(patience: float) -> float:
        (d,) = schedule_cycle(
            build_snapshot(CHINA, evening, patience_h=patience), job, strategy=strategy
        )
        assert d.placement is not None
        return _held_h(evening, d.placement.planned_start)

    assert held(0.0) == 0.0  # patience 0: never held
    free_choice = held(MAX_PATIENCE_H)
    assert free_choice > 0.0  # holding pays off here...
    for p in (free_choice / 2, free_choice, 4.0):
        assert held(p) <= p  # ...but never past the patience
    assert held(free_choice / 2) < free_choice
    # A deadline, not the patience, limits a job that has one.
    late = JobRequest(
        id="d",
        workload_class="llm-train",
        count=4,
        cu_hours=20.0,
        submitted_at=evening,
        deadline=evening + timedelta(hours=20),
    )
    (d,) = schedule_cycle(build_snapshot(CHINA, evening, patience_h=0.0), [late], strategy=strategy)
    assert d.placement is not None and d.placement.planned_start > evening


def test_the_optimizer_says_a_held_job_was_held_within_the_patience() -> None:
    evening = DAY + timedelta(hours=21, minutes=30)
    snap = build_snapshot(CHINA, evening, patience_h=4.0)
    (d,) = schedule_cycle(snap, _jobs(evening, [(0, 4, 20.0)]), strategy="batch-optimizer")
    assert d.placement is not None and d.placement.planned_start > evening
    assert any("no deadline" in r and "patience" in r for r in d.reasons), d.reasons


def _sim(patience: float, strategy: str = "batch-optimizer") -> tuple[np.ndarray, np.ndarray]:
    """Hours each job was held after its placement, and which jobs succeeded."""
    wl = synthetic(
        CHINA,
        jobs=60,
        days=1,
        seed=4,
        deadline_share=0,
        interactive_share=0,
        max_count=4,
        scale=0.3,
    )
    policy = make_policy(f"ours:{strategy}")
    r = Simulation(wl, policy, SimConfig(patience_h=patience)).run()
    assert r.overcommits == 0  # no job waited for chips: every later start was a hold
    ok = r.records.state == CODE[JobState.SUCCEEDED]
    return (r.records.hold_start - r.records.placed) / 3600.0, ok


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_simulator_holds_jobs_without_a_deadline_at_most_the_patience(strategy: str) -> None:
    never, ok0 = _sim(0.0, strategy)
    assert ok0.all() and np.all(never == 0.0)
    held, ok = _sim(2.0, strategy)
    assert ok.all()
    assert held.max() <= 2.0 + 1e-9
    longer, _ = _sim(12.0, strategy)
    # The limit binds: given more patience, some job waits longer for cheap power.
    assert longer.max() > 2.0


def test_quotes_say_how_long_a_job_without_a_deadline_may_wait() -> None:
    evening = DAY + timedelta(hours=21, minutes=30)
    (job,) = _jobs(evening, [(0, 4, 20.0)])
    q = quote(build_snapshot(CHINA, evening, patience_h=DEFAULT_PATIENCE_H), job)
    assert q.notes == [
        f"no deadline: may wait up to {DEFAULT_PATIENCE_H:g} h for cheaper power"
        " (operator default); give a deadline to choose how long it may wait"
    ]
    held = [o for o in q.options if o.planned_start > evening]
    assert held and all(_held_h(evening, o.planned_start) <= DEFAULT_PATIENCE_H for o in held)
    assert all(any(r.startswith("held ") for r in o.reasons) for o in held)
    six = quote(build_snapshot(CHINA, evening, patience_h=6.5), job)
    assert "up to 6.5 h" in six.notes[0] and "operator setting" in six.notes[0]
    never = quote(build_snapshot(CHINA, evening, patience_h=0.0), job)
    assert "never held" in never.notes[0]
    assert all(o.planned_start == evening for o in never.options)
    with_deadline = JobRequest(
        id="q",
        workload_class="llm-train",
        count=4,
        cu_hours=20.0,
        submitted_at=evening,
        deadline=evening + timedelta(hours=20),
    )
    assert quote(build_snapshot(CHINA, evening), with_deadline).notes == []


@pytest.mark.parametrize("bad", [-1.0, MAX_PATIENCE_H + 1, math.nan, math.inf])
def test_a_bad_patience_is_refused_naming_the_field(bad: float) -> None:
    with pytest.raises(ValidationError) as err:
        check_patience(bad, "--patience")
    assert err.value.field == "--patience"
    with pytest.raises(ValidationError) as err:
        SimConfig(patience_h=bad)
    assert err.value.field == "patience_h"
    assert check_patience(0) == 0.0 and check_patience(MAX_PATIENCE_H) == MAX_PATIENCE_H
