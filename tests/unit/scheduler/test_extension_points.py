"""Extension points hold: a registered filter or strategy takes part like a built-in one."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pytest
from tests.unit.scheduler.test_placement import NOON, spec, two_centers

from computenet.errors import ValidationError
from computenet.scheduler import (
    NO_DEADLINE,
    STRATEGIES,
    Decision,
    JobRequest,
    Snapshot,
    build_snapshot,
    job_request,
    order_key,
    schedule_cycle,
)
from computenet.scheduler.plugins import FILTERS, FilterPlugin
from computenet.scheduler.plugins.filters import FilterContext, FilterResult
from computenet.sim.policies import make_policy


@contextmanager
def west_closed() -> Iterator[list[str]]:
    """A filter, registered while in use, that closes the western center; yields its calls."""
    calls: list[str] = []

    def not_west(ctx: FilterContext) -> FilterResult:
        calls.append(ctx.job.id)
        net, idx = ctx.snapshot.network, ctx.snapshot.index
        ok = np.array([net.centers[c].id != "west" for c in idx.pool_center])
        return FilterResult(ok, "west is closed for maintenance")

    FILTERS.register(FilterPlugin("west-closed", not_west, lambda job: None))
    try:
        yield calls
    finally:
        FILTERS.unregister("west-closed")


def test_a_registered_filter_moves_placements_not_only_explanations() -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON)
    jobs = [job_request(f"j{i}", spec(chips={"count": 1}), net, NOON) for i in range(3)]
    assert {d.placement.center for d in schedule_cycle(snap, jobs) if d.placement} == {"west"}
    with west_closed() as calls:
        placed = schedule_cycle(build_snapshot(net, NOON), jobs)
        assert {d.placement.center for d in placed if d.placement} == {"east"}
        # Its mask depends on nothing of the job: evaluated once for all of them.
        assert len(calls) == 1


def test_a_registered_filter_that_removes_every_pool_names_its_reason() -> None:
    net = two_centers()
    with west_closed():
        (d,) = schedule_cycle(
            build_snapshot(net, NOON), [job_request("j", spec(center="west"), net, NOON)]
        )
    assert d.placement is None
    assert "west is closed for maintenance" in d.reasons


def _hold_all(
    snapshot: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str = "min-cost",
    *,
    explain: bool = True,
    signatures: Sequence[Hashable] | None = None,
) -> list[Decision]:
    return [Decision(j.id, None, (f"held by the test strategy ({profile})",)) for j in jobs]


@pytest.fixture
def hold_all() -> Iterator[str]:
    """A strategy registered for the test that places nothing."""
    STRATEGIES.register("hold-all", _hold_all)
    try:
        yield "hold-all"
    finally:
        STRATEGIES.unregister("hold-all")


def test_a_registered_strategy_is_selectable_by_name_in_the_cycle_and_the_simulator(
    hold_all: str,
) -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON)
    jobs = [job_request("j", spec(), net, NOON)]
    (d,) = schedule_cycle(snap, jobs, "fastest", strategy=hold_all)
    assert d.placement is None and d.reasons == ("held by the test strategy (fastest)",)
    (s,) = make_policy(f"ours:{hold_all}")(snap, jobs)
    assert s.reasons == ("held by the test strategy (min-cost)",)
    (s,) = make_policy(f"ours:{hold_all}:balanced")(snap, jobs)
    assert s.reasons == ("held by the test strategy (balanced)",)


def test_an_unknown_strategy_or_profile_is_refused_with_the_choices() -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON)
    with pytest.raises(ValidationError) as err:
        schedule_cycle(snap, [], strategy="nope")
    assert err.value.field == "strategy" and "greedy" in (err.value.hint or "")
    with pytest.raises(ValidationError):
        schedule_cycle(snap, [], "batch-optimizer")  # a strategy, not a profile
    with pytest.raises(ValidationError):
        make_policy("ours:nope")


def test_jobs_without_a_deadline_come_after_every_job_with_one() -> None:
    net = two_centers()
    late = job_request("a", spec(deadline="700d"), net, NOON, check_deadline=False)
    none = job_request("b", spec(), net, NOON)
    assert late.deadline is not None and late.deadline < NOON + NO_DEADLINE
    assert sorted([none, late], key=lambda j: order_key(j, NOON)) == [late, none]
