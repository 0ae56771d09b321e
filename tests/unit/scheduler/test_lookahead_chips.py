"""`lookahead` under a profile that never shifts a start: jobs that wait for chips.

Under `fastest` a later start can only be a wait for chips. Such a job (batch,
no deadline) is left pending with a reason and decided again by the next
cycle; among such jobs the cycle takes the order whose plans finish them
soonest in sum (`soonest_order`). Also here: a job that may be held for cheaper
power has the last start its patience allows among its options.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog import load_network
from computenet.model import Network
from computenet.model.center import CST
from computenet.scheduler import JobRequest, build_snapshot, schedule_cycle
from computenet.scheduler.framework import evaluate, place
from computenet.scheduler.greedy import greedy_cycle
from computenet.scheduler.lookahead import MAX_CHIP_WAIT_H, soonest_order, waits_for_chips
from computenet.scheduler.ordering import order_key
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import Reservation, Snapshot

GAVEL: Network = load_network("gavel")  # one center per chip: 36 V100, 36 P100, 36 K80
CHINA: Network = load_network("china")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=CST)


def _job(jid: str, cu_hours: float, count: int = 32, **kw: object) -> JobRequest:
    fields: dict[str, object] = {
        "id": jid,
        "workload_class": "cv-train",
        "count": count,
        "cu_hours": cu_hours,
        "types": ("V100",),
        "submitted_at": NOW,
    }
    fields.update(kw)
    return JobRequest(**fields)  # type: ignore[arg-type]


def _busy_v100(hours: float) -> Snapshot:
    """The V100 pool fully taken for `hours` from now."""
    held = [Reservation("v100", "V100", 36, NOW, NOW + timedelta(hours=hours))]
    return build_snapshot(GAVEL, NOW, reservations=held)


def test_a_job_that_must_wait_for_chips_is_left_pending_with_its_reason() -> None:
    snap = _busy_v100(3.0)
    job = _job("a", 10.0)
    (g,) = schedule_cycle(snap, [job], "fastest", strategy="greedy")
    assert g.placement is not None and g.placement.planned_start > NOW  # greedy reserves
    (d,) = schedule_cycle(snap, [job], "fastest", strategy="lookahead")
    assert d.placement is None and not d.rejected
    assert d.reasons[0].startswith("waits for chips: its best start is"), d.reasons
    assert waits_for_chips(snap, job, g.placement, "fastest") == d.reasons[0]


def test_a_job_that_can_start_now_is_placed_as_greedy_places_it() -> None:
    snap = build_snapshot(GAVEL, NOW)
    job = _job("a", 10.0)
    (g,) = schedule_cycle(snap, [job], "fastest", strategy="greedy")
    (d,) = schedule_cycle(snap, [job], "fastest", strategy="lookahead")
    assert d.placement is not None and d.placement == g.placement
    assert d.placement.planned_start == NOW


def test_deadlines_interactive_jobs_and_cost_profiles_keep_their_reservations() -> None:
    snap = _busy_v100(3.0)
    for job, profile in (
        (_job("d", 10.0, deadline=NOW + timedelta(days=2)), "fastest"),
        (_job("i", 10.0, latency_class="interactive"), "fastest"),
        (_job("c", 10.0), "min-cost"),
    ):
        (d,) = schedule_cycle(snap, [job], profile, strategy="lookahead")
        assert d.placement is not None and d.placement.planned_start > NOW, (job.id, d.reasons)


def test_a_job_that_waited_its_limit_gets_its_reservation() -> None:
    snap = _busy_v100(3.0)
    old = _job("a", 10.0, submitted_at=NOW - timedelta(hours=MAX_CHIP_WAIT_H))
    (d,) = schedule_cycle(snap, [old], "fastest", strategy="lookahead")
    assert d.placement is not None and d.placement.planned_start > NOW


def test_a_short_job_submitted_later_runs_before_a_long_one() -> None:
    # One pool for both (32 of 36 V100 each): first come first reserved runs the
    # 20 h job now and the 1 h job after it; the soonest order finishes both sooner.
    snap = build_snapshot(GAVEL, NOW)
    long_ = _job("long", 300.0, submitted_at=NOW - timedelta(minutes=5))
    short = _job("short", 15.0)
    g = {d.job_id: d for d in schedule_cycle(snap, [long_, short], "fastest", strategy="greedy")}
    assert g["long"].placement is not None and g["long"].placement.planned_start == NOW
    d = {d.job_id: d for d in schedule_cycle(snap, [long_, short], "fastest", strategy="lookahead")}
    assert d["short"].placement is not None and d["short"].placement.planned_start == NOW
    assert d["long"].placement is None
    assert d["long"].reasons[0].startswith("waits for chips"), d["long"].reasons


def test_the_one_order_stands_across_its_ties() -> None:
    # A job with a deadline comes before every job without one, however long it runs.
    snap = build_snapshot(GAVEL, NOW)
    jobs = [
        _job("short", 15.0),
        _job("dl", 300.0, deadline=NOW + timedelta(days=3), submitted_at=NOW + timedelta(1)),
        _job("long", 300.0, submitted_at=NOW - timedelta(hours=1)),
    ]
    key = soonest_order(snap, jobs, "fastest")
    ranked = sorted(jobs, key=lambda j: key(j, NOW))
    assert ranked[0].id == "dl"
    assert [j.id for j in ranked[1:]] == ["short", "long"]
    assert soonest_order(snap, jobs, "min-cost") is order_key
    # Fair share (`JobRequest.share`) and priority come before any reordering too.
    ahead = [_job("short", 15.0, share=2.0), _job("long", 300.0, share=1.0)]
    key = soonest_order(snap, ahead, "fastest")
    assert [j.id for j in sorted(ahead, key=lambda j: key(j, NOW))] == ["long", "short"]
    ahead = [_job("short", 15.0), _job("long", 300.0, priority=1)]
    key = soonest_order(snap, ahead, "fastest")
    assert [j.id for j in sorted(ahead, key=lambda j: key(j, NOW))] == ["long", "short"]


def _sum_finish(snap: Snapshot, jobs: list[JobRequest], key: object) -> float:
    free = snap.free.copy()
    total = 0.0
    for j in sorted(jobs, key=lambda j: key(j, snap.now)):  # type: ignore[operator]
        p = place(snap, free, j, PROFILES["fastest"], False).placement
        total += 1e4 if p is None else (p.finish - snap.now).total_seconds() / 3600.0
    return total


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from((1, 4, 8, 16, 32)),
            st.floats(0.5, 400.0),
            st.sampled_from((("V100",), ("P100",), ())),
            st.integers(0, 120),
        ),
        min_size=2,
        max_size=7,
    ),
    st.integers(0, 36),
)
def test_the_soonest_order_never_finishes_later_than_the_standing_order(
    specs: list[tuple[int, float, tuple[str, ...], int]], busy: int
) -> None:
    held = [Reservation("v100", "V100", busy, NOW, NOW + timedelta(hours=2))] if busy else []
    snap = build_snapshot(GAVEL, NOW, reservations=held)
    jobs = [
        _job(f"j{k}", cu, count=n, types=types, submitted_at=NOW - timedelta(minutes=m))
        for k, (n, cu, types, m) in enumerate(specs)
    ]
    key = soonest_order(snap, jobs, "fastest")
    assert _sum_finish(snap, jobs, key) <= _sum_finish(snap, jobs, order_key) + 1e-9
    # Each job is decided once, as the greedy cycle does in that order.
    out = greedy_cycle(snap, jobs, "fastest", order=key)
    assert [d.job_id for d in out] == [j.id for j in jobs]


def test_a_job_without_a_deadline_may_start_at_the_last_hour_its_patience_allows() -> None:
    # At 13:00 on china no tariff changes within 4 h (they are at 11, 22 and 23): the
    # options are now and 17:00, the latest start the patience allows, which puts
    # more of a long run into the night's cheaper hours.
    at = datetime(2026, 1, 5, 13, 0, tzinfo=CST)
    snap = build_snapshot(CHINA, at, patience_h=4.0)
    job = JobRequest("n", "llm-train", 8, 30.0, submitted_at=at)  # 10.5 h on H800
    opts = evaluate(snap, snap.free, job, PROFILES["min-cost"])
    assert set(np.unique(opts.slot).tolist()) == {0, 4}
    (d,) = schedule_cycle(snap, [job], "min-cost")
    assert d.placement is not None
    assert d.placement.planned_start == at + timedelta(hours=4)
    never = build_snapshot(CHINA, at, patience_h=0.0)
    assert set(np.unique(evaluate(never, never.free, job, PROFILES["min-cost"]).slot)) == {0}
