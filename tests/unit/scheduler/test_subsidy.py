"""The budget check counts what a tenant pays after its compute vouchers (scheduler/subsidy)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.scheduler.test_placement import NOON, two_centers

from computenet.metering.vouchers import Voucher, paid_vec
from computenet.model import JobSpec
from computenet.scheduler import build_snapshot, job_request, quote, schedule_cycle
from computenet.scheduler.subsidy import ceiling

SPEC = {"name": "j", "class": "llm-train", "command": "x", "chips": {"count": 2}}


def voucher(
    vid: int, pct: str, cap: str, centers: tuple[str, ...] = (), hours: float = 240
) -> Voucher:
    return Voucher(
        id=vid,
        tenant="acme",
        issuer="Shanghai",
        pct=Decimal(pct),
        cap_cny=Decimal(cap),
        valid_from=NOON - timedelta(days=1),
        valid_until=NOON + timedelta(hours=hours),
        centers=centers,
    )


def cheapest_price(net, spec) -> Decimal:  # type: ignore[no-untyped-def]
    jr = job_request("q", spec, net, NOON)
    opts = quote(build_snapshot(net, NOON), jr).options
    return min(o.total_cny for o in opts if o.feasible)


def test_the_budget_is_checked_against_the_price_after_vouchers() -> None:
    net = two_centers()
    free = JobSpec.model_validate({**SPEC, "work": {"cu_hours": 50}})
    price = cheapest_price(net, free)
    spec = free.model_copy(
        update={"budget_cny": (price * Decimal("0.7")).quantize(Decimal("0.01"))}
    )
    job = dataclasses.replace(job_request("j", spec, net, NOON), tenant="acme")
    plain = build_snapshot(net, NOON)
    (d,) = schedule_cycle(plain, [job])
    assert d.placement is None and any("budget" in r for r in d.reasons)
    wallets = {"acme": (voucher(1, "50", "100000"),)}
    (d,) = schedule_cycle(build_snapshot(net, NOON, vouchers=wallets), [job])
    assert d.placement is not None
    # Another tenant's vouchers do not help; nor do spent, expired or elsewhere vouchers.
    for w in (
        {"beta": wallets["acme"]},
        {"acme": (voucher(1, "50", "0.01"),)},
        {"acme": (voucher(1, "50", "100000", hours=-1),)},
        # valid now, but expired before the job would finish (the charge's time)
        {"acme": (voucher(1, "50", "100000", hours=1),)},
        {"acme": (voucher(1, "50", "100000", centers=("nowhere",)),)},
    ):
        (d,) = schedule_cycle(build_snapshot(net, NOON, vouchers=w), [job])
        assert d.placement is None, w
        assert any("after your vouchers" in r for r in d.reasons) or "beta" in w


def test_a_voucher_for_one_center_makes_only_that_center_fit_the_budget() -> None:
    net = two_centers()
    spec = JobSpec.model_validate({**SPEC, "work": {"cu_hours": 50}, "chips": {"count": 2}})
    jr = job_request("q", spec, net, NOON)
    opts = quote(build_snapshot(net, NOON), jr).options
    by_center = {o.center: min(x.total_cny for x in opts if x.center == o.center) for o in opts}
    assert set(by_center) == {"east", "west"}
    dear, cheap = sorted(by_center, key=lambda c: by_center[c], reverse=True)
    # A budget under both prices; a 90 % voucher only at the dearer center.
    budget = (by_center[cheap] * Decimal("0.5")).quantize(Decimal("0.01"))
    job = dataclasses.replace(
        job_request("j", spec.model_copy(update={"budget_cny": budget}), net, NOON), tenant="acme"
    )
    snap = build_snapshot(net, NOON, vouchers={"acme": (voucher(1, "90", "100000", (dear,)),)})
    (d,) = schedule_cycle(snap, [job])
    assert d.placement is not None and d.placement.center == dear
    # The placement's price is the network's; the tenant pays 10 % of it, within the budget.
    assert d.placement.total_cny * Decimal("0.1") <= budget


@settings(max_examples=300, deadline=None)
@given(
    budget=st.decimals(min_value=Decimal("0.01"), max_value=10**5, places=2),
    terms=st.lists(
        st.tuples(
            st.decimals(min_value=Decimal("0.01"), max_value=100, places=2),
            st.decimals(min_value=0, max_value=10**5, places=2),
        ),
        max_size=4,
    ),
    cost=st.floats(min_value=0, max_value=10**6),
)
def test_the_ceiling_keeps_every_price_that_fits_after_vouchers(
    budget: Decimal, terms: list[tuple[Decimal, Decimal]], cost: float
) -> None:
    net = two_centers()
    spec = JobSpec.model_validate({**SPEC, "work": {"cu_hours": 1}, "budget_cny": str(budget)})
    job = job_request("j", spec, net, NOON)
    wallet = tuple(voucher(i + 1, str(p), str(cap)) for i, (p, cap) in enumerate(terms))
    top = ceiling(job, wallet)
    where, when = np.zeros(2, np.int64), np.zeros(2)
    pays = paid_vec(wallet, np.array([cost, top]), where, ["east"], "llm-train", when, NOON)
    if pays[0] <= float(budget):
        assert cost <= top
    # And it is tight: at the ceiling itself the tenant pays the budget, give or take the
    # fen rounding of each voucher's share (half a fen each, either way) and the float margin.
    slack = 0.005 * len(terms) + 1e-5 + 1e-6 * float(budget)
    assert float(budget) - slack <= pays[1] <= float(budget) + slack
