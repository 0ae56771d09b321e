"""Re-planning against a calendar: moves never overlap, and small gains move nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from computenet.catalog import load_network
from computenet.model import JobSpec
from computenet.model.center import CST
from computenet.scheduler import Reservation, build_snapshot, job_request
from computenet.scheduler.replan import MIN_EARLIER, Planned, replan

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
NET = load_network("demo")
# All 8 of chongqing's CPU-nodes for 3 hours.
SPEC = JobSpec.model_validate(
    {
        "name": "fill",
        "class": "cpu-batch",
        "command": "true",
        "chips": {"count": 8, "types": ["CPU-node"]},
        "work": {"reference_chip": "CPU-node", "reference_hours": 3},
        "center": "chongqing",
    }
)


def _planned(job_id: str, start: datetime, cost: str = "100") -> Planned:
    req = job_request(job_id, SPEC, NET, NOW - timedelta(minutes=1))
    held = Reservation("chongqing", "CPU-node", 8, start, start + timedelta(hours=3))
    return Planned(req, held, Decimal(cost))


def test_jobs_moved_into_freed_chips_never_overlap() -> None:
    # chongqing is idle: its jobs ended early (no patience: start as soon as chips free)
    snap = build_snapshot(NET, NOW, patience_h=0)
    late = [_planned("a", NOW + timedelta(hours=3)), _planned("b", NOW + timedelta(hours=6))]
    moves = {m.job_id: m.placement for m in replan(snap, late, "min-cost")}
    assert moves["a"].planned_start == NOW
    assert moves["b"].planned_start >= moves["a"].finish
    assert moves["b"].planned_start < NOW + timedelta(hours=6)
    assert all(
        m.reasons[0].startswith("re-planned: chips freed early")
        for m in replan(snap, late, "min-cost")
    )


def test_a_start_only_slightly_earlier_and_no_cheaper_moves_nothing() -> None:
    snap = build_snapshot(NET, NOW)
    near = _planned("a", NOW + MIN_EARLIER - timedelta(minutes=1), cost="0.01")
    assert replan(snap, [near], "min-cost") == []


def test_a_job_keeps_its_plan_while_the_chips_are_still_held() -> None:
    busy = Reservation("chongqing", "CPU-node", 8, NOW, NOW + timedelta(hours=3))
    snap = build_snapshot(NET, NOW, reservations=[busy])
    quoted_low = _planned("a", NOW + timedelta(hours=3), cost="1")  # no cheaper plan either
    assert replan(snap, [quoted_low], "min-cost") == []
