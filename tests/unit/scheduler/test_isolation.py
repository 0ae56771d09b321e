"""One job's error never stops the cycle: that job is rejected with the reason, others placed."""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.scheduler.test_placement import NOON, spec, two_centers

from computenet.scheduler import REJECTED, build_snapshot, job_request, quote, schedule_cycle


@pytest.mark.parametrize(
    ("profile", "strategy"),
    [("min-cost", "greedy"), ("fastest", "greedy"), ("min-cost", "batch-optimizer")],
)
def test_a_poison_request_is_rejected_and_the_others_are_placed(
    profile: str, strategy: str
) -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON)
    good = [job_request(f"ok-{i}", spec(chips={"count": 1}), net, NOON) for i in range(3)]
    # What validation would never let through, as an old database or a bug might hold it.
    poison = [
        dataclasses.replace(good[0], id="inf", cu_hours=float("inf")),
        dataclasses.replace(good[0], id="nan", cu_hours=float("nan")),
        dataclasses.replace(good[0], id="huge", cu_hours=1e308, priority=10),
    ]
    decisions = {
        d.job_id: d for d in schedule_cycle(snap, [*poison, *good], profile, strategy=strategy)
    }
    for r in good:
        assert decisions[r.id].placement is not None, decisions[r.id].reasons
    for r in poison:
        d = decisions[r.id]
        assert d.placement is None
        assert d.rejected and d.reasons[0].startswith(REJECTED), d.reasons


def test_a_rejected_job_carries_the_error_as_its_reason() -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON)
    ok = job_request("ok", spec(chips={"count": 1}), net, NOON)
    bad = dataclasses.replace(ok, id="bad", cu_hours=float("inf"))
    d = {x.job_id: x for x in schedule_cycle(snap, [bad, ok])}
    assert d["bad"].rejected and d["bad"].reasons[0].startswith(f"{REJECTED}: ")
    assert d["ok"].placement is not None and not d["ok"].rejected


def test_the_largest_job_allowed_is_quoted_without_error() -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON)
    big = job_request("big", spec(chips={"count": 1}, work={"cu_hours": 1e7}), net, NOON)
    result = quote(snap, big)
    assert result.options == [] and result.infeasible_reasons
    (d,) = schedule_cycle(snap, [big])
    assert d.placement is None and "days" in d.reasons[0]
