"""The `lookahead` strategy: far cheap starts of jobs with room before their deadline wait.

It is the greedy cycle with one rule (`scheduler.lookahead.defers`): what it
places it places exactly as greedy would; a batch job with a deadline whose
best start is far ahead, or a day later would still do, is left unplaced with
a reason (its chips held for the jobs after it in the same cycle); jobs
without a deadline and interactive jobs are never deferred.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog import load_network
from computenet.model import JobState, Network
from computenet.model.center import CST
from computenet.scheduler import Decision, JobRequest, build_snapshot, schedule_cycle
from computenet.scheduler.lookahead import COMMIT_H, LATER_DAY_H, MAX_WAITING, lookahead_cycle
from computenet.sim import SimConfig, Simulation, make_policy, synthetic
from computenet.sim.results import CODE

CHINA: Network = load_network("china")
DAY = datetime(2026, 1, 5, tzinfo=CST)
NOON = DAY + timedelta(hours=12)  # a flat hour: the valley (23:00) is 11 h ahead


def _job(now: datetime, deadline_h: float | None, **kw: object) -> JobRequest:
    fields: dict[str, object] = {
        "id": "j",
        "workload_class": "llm-train",
        "count": 16,
        "cu_hours": 40.0,
        "submitted_at": now,
        "deadline": None if deadline_h is None else now + timedelta(hours=deadline_h),
    }
    fields.update(kw)
    return JobRequest(**fields)  # type: ignore[arg-type]


def _one(now: datetime, job: JobRequest, strategy: str, patience: float = 4.0) -> Decision:
    return schedule_cycle(
        build_snapshot(CHINA, now, patience_h=patience), [job], strategy=strategy
    )[0]


def test_a_far_cheap_start_with_room_before_the_deadline_waits() -> None:
    job = _job(NOON, 60.0)
    greedy = _one(NOON, job, "greedy")
    assert greedy.placement is not None
    ahead_h = (greedy.placement.planned_start - NOON).total_seconds() / 3600.0
    assert ahead_h >= COMMIT_H  # greedy would reserve tonight's valley now
    d = _one(NOON, job, "lookahead")
    assert d.placement is None and not d.rejected
    assert d.reasons[0].startswith("waits: its best start is"), d.reasons
    assert greedy.placement.center in d.reasons[0]


def test_a_job_whose_deadline_leaves_no_room_is_placed_as_greedy_places_it() -> None:
    loose = _one(NOON, _job(NOON, 60.0), "greedy")
    assert loose.placement is not None
    # Deadline 30 min after that plan's finish: less room than the margin, so no wait.
    tight_h = (loose.placement.finish - NOON).total_seconds() / 3600.0 + 0.5
    job = _job(NOON, tight_h)
    g, la = _one(NOON, job, "greedy"), _one(NOON, job, "lookahead")
    assert la.placement is not None and g.placement is not None
    assert la.placement == g.placement


def test_a_near_start_waits_only_when_a_day_later_would_still_do() -> None:
    evening = DAY + timedelta(hours=22, minutes=30)  # the valley begins in 30 min
    short = _job(evening, 14.0)
    g = _one(evening, short, "greedy")
    assert g.placement is not None
    assert (g.placement.planned_start - evening).total_seconds() / 3600.0 < COMMIT_H
    assert _one(evening, short, "lookahead").placement == g.placement
    # The same job with days of slack: tomorrow's valley would do as well, so it waits.
    long = _job(evening, 14.0 + LATER_DAY_H + 6.0)
    assert _one(evening, long, "lookahead").placement is None


@settings(max_examples=20, deadline=None)
@given(
    minute=st.integers(0, 24 * 60 - 1),
    shapes=st.lists(
        st.tuples(st.integers(1, 16), st.floats(0.5, 60.0), st.booleans()),
        min_size=1,
        max_size=4,
    ),
)
def test_jobs_without_a_deadline_and_interactive_jobs_are_never_deferred(
    minute: int, shapes: list[tuple[int, float, bool]]
) -> None:
    now = DAY + timedelta(minutes=minute)
    jobs = [
        _job(
            now,
            (cuh + 2.0) if inter else None,
            id=f"j{k}",
            count=n,
            cu_hours=cuh,
            workload_class="inference" if inter else "llm-train",
            latency_class="interactive" if inter else "batch",
        )
        for k, (n, cuh, inter) in enumerate(shapes)
    ]
    snap = build_snapshot(CHINA, now, patience_h=24.0)
    assert schedule_cycle(snap, jobs, strategy="lookahead") == schedule_cycle(
        snap, jobs, strategy="greedy"
    )


def test_a_deferred_job_holds_its_chips_for_the_rest_of_the_cycle() -> None:
    # Two jobs that each need a whole 1,024-chip pool: the one with a deadline comes
    # first (order_key) and waits for tonight's valley; the one without a deadline, next
    # in the cycle, may not take those chips, so it is planned elsewhere or at other hours.
    big = {"count": 1024, "cu_hours": 400.0}
    first = _job(NOON, 70.0, id="a", **big)
    second = _job(NOON, None, id="b", **big)
    snap = build_snapshot(CHINA, NOON, patience_h=24.0)
    a = schedule_cycle(snap, [first], strategy="greedy")[0]
    alone = schedule_cycle(snap, [second], strategy="greedy")[0]
    assert a.placement is not None and alone.placement is not None
    assert (a.placement.center, a.placement.chip) == (alone.placement.center, alone.placement.chip)
    da, db = schedule_cycle(snap, [first, second], strategy="lookahead")
    assert da.placement is None and db.placement is not None
    overlap = (
        db.placement.center == a.placement.center
        and db.placement.chip == a.placement.chip
        and db.placement.planned_start < a.placement.finish
        and a.placement.planned_start < db.placement.finish
    )
    assert not overlap, (a.placement, db.placement)


def test_in_the_simulator_lookahead_meets_deadlines_and_finishes_every_job() -> None:
    wl = synthetic(CHINA, jobs=120, days=1, seed=7, scale=0.3)
    out = {}
    for strategy in ("greedy", "lookahead"):
        r = Simulation(wl, make_policy(f"ours:{strategy}"), SimConfig(seed=7)).run()
        ok = r.records.state == CODE[JobState.SUCCEEDED]
        late = np.nan_to_num(r.records.end - wl.deadline, nan=-1.0) > 0
        out[strategy] = (int(ok.sum()), int(late.sum()))
    assert out["lookahead"][0] == out["greedy"][0] == len(wl)
    assert out["lookahead"][1] <= out["greedy"][1]


def test_ours_in_the_simulator_is_lookahead() -> None:
    p = make_policy("ours")
    assert replace(p, name="x").strategy == "lookahead"


def test_the_simulator_keeps_a_deferred_decision_until_its_wake_and_no_longer() -> None:
    policy = make_policy("ours")
    job = _job(NOON, 60.0)
    first = policy(build_snapshot(CHINA, NOON), [job])[0]
    assert first.placement is None
    (_wake, asked, kept) = policy._waiting[job.id]
    assert asked == job and kept == first
    later = NOON + timedelta(minutes=5)
    assert policy(build_snapshot(CHINA, later), [job])[0] is first  # not evaluated again
    # The same id with a changed request (here: its deadline dropped) is decided afresh.
    free = replace(job, deadline=None)
    d = policy(build_snapshot(CHINA, later, patience_h=24.0), [free])[0]
    assert d.placement is not None and job.id not in policy._waiting
    # Past the wake instant the job is evaluated again: nearer its start it is placed.
    greedy = _one(NOON, job, "greedy")
    assert greedy.placement is not None
    near = greedy.placement.planned_start - timedelta(hours=COMMIT_H / 2)
    tight = replace(job, deadline=greedy.placement.finish + timedelta(hours=6))
    policy(build_snapshot(CHINA, NOON), [tight])
    d = policy(build_snapshot(CHINA, near), [tight])[0]
    assert d.placement is not None, d.reasons


def test_at_most_max_waiting_jobs_wait_at_once() -> None:
    jobs = [_job(NOON, 60.0, id=f"j{k}", count=1, cu_hours=2.0) for k in range(6)]
    snap = build_snapshot(CHINA, NOON)
    decided, wake = lookahead_cycle(snap, jobs, waiting=MAX_WAITING - 2)
    assert len(wake) == 2 and sum(d.placement is None for d in decided) == 2
    greedy = schedule_cycle(snap, jobs, strategy="greedy")
    # The first two (in order) wait; the rest are placed exactly as greedy places them.
    placed = [(d, g) for d, g in zip(decided, greedy, strict=True) if d.placement is not None]
    assert len(placed) == 4 and all(d.placement == g.placement for d, g in placed)
