"""Tenancy in the scheduler: fair-share tags and order, quota reasons, the quota filter,
the per-cycle count of a tenant's placements, and the start-now cycle under contention."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal

from computenet.catalog import network_from_dict
from computenet.model import JobSpec, Network
from computenet.model.center import CST
from computenet.scheduler import build_snapshot, job_request, schedule_cycle
from computenet.scheduler.fairshare import FAIR_WAIT_REASON, fair_cycle
from computenet.scheduler.ordering import order_key, share_tags, standing_key, with_shares
from computenet.scheduler.snapshot import JobRequest, Reservation
from computenet.scheduler.tenancy import Quota, TenantUse, admit, decay, quota_block

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=CST)


def net() -> Network:
    flat = {"flat": 0.5, "peak": 1, "valley": 1}
    center = {"region": "r", "lat": 31, "lon": 121, "pue": 1.2, "tariff": flat}
    return network_from_dict(
        {
            "name": "t",
            "centers": [
                {**center, "id": "a", "pools": [{"chip": "A100", "count": 8}],
                 "carbon_kg_per_kwh": 0.5, "service_price_per_cuh": 3},
                {**center, "id": "h", "pools": [{"chip": "H100", "count": 8}],
                 "carbon_kg_per_kwh": 0.5, "service_price_per_cuh": 1},
            ],
        }
    )  # fmt: skip


def req(i: int, tenant: str, types: tuple[str, ...] = ("A100", "H100"), **kw: object) -> JobRequest:
    spec = JobSpec.model_validate(
        {"class": "llm-train", "command": "x", "chips": {"count": 4, "types": list(types)},
         "work": {"cu_hours": 10}, **kw}
    )  # fmt: skip
    r = job_request(f"j{i:03d}", spec, net(), NOON + timedelta(seconds=i))
    return dataclasses.replace(r, tenant=tenant)


def test_tags_interleave_tenants_by_weight_and_an_idle_tenant_comes_first() -> None:
    jobs = [req(i, "a") for i in range(6)] + [req(10 + i, "b") for i in range(3)]
    uses = {"a": TenantUse(usage=0.0, weight=2.0), "b": TenantUse(usage=0.0, weight=1.0)}
    tagged = with_shares(jobs, uses)
    order = [j.tenant for j in sorted(tagged, key=lambda j: order_key(j, NOON))]
    assert order == ["a", "b", "a", "a", "b", "a", "a", "b", "a"]
    # A tenant back from idle (no usage) is ahead of busy ones with any usage.
    uses = {**uses, "a": TenantUse(usage=500.0, weight=2.0), "b": TenantUse(usage=300.0)}
    late = [req(20, "c")]
    tagged = with_shares(jobs + late, uses)
    assert min(tagged, key=lambda j: order_key(j, NOON)).tenant == "c"
    # The standing order (the simulator's backlog) is the same order.
    assert sorted(tagged, key=lambda j: order_key(j, NOON)) == sorted(tagged, key=standing_key)


def test_one_tenant_has_no_tags_and_priority_still_comes_first() -> None:
    jobs = [req(i, "a") for i in range(3)]
    assert share_tags(jobs, {}) == [0.0, 0.0, 0.0]
    assert with_shares(jobs, {})[0] is jobs[0]
    urgent = req(9, "b", priority=5)
    tagged = with_shares([*jobs, urgent], {"b": TenantUse(usage=1e6)})
    assert min(tagged, key=lambda j: order_key(j, NOON)).id == urgent.id


def test_decay_halves_usage_each_half_life() -> None:
    assert decay(100.0, 7 * 86400.0) == 50.0
    assert decay(100.0, 0.0) == 100.0


def test_quota_reasons_name_the_use_and_the_limit() -> None:
    use = TenantUse(
        quotas=(
            Quota("chips", Decimal(16), "H100"),
            Quota("cu_hours", Decimal(500), period="day"),
            Quota("cny", Decimal("100.00"), period="month"),
        ),
        chips={"H100": 16, "A100": 4},
        cu_hours={"day": 495.0, "month": 495.0},
        cny={"day": Decimal(10), "month": Decimal("99.99")},
    )
    assert quota_block(use, "H100", 1, 0.0) == "tenant quota: 16 of 16 H100 in use"
    assert quota_block(use, "A100", 4, 5.0) is None  # the chips quota is of H100 only
    why = quota_block(use, "A100", 4, 6.0)
    assert why is not None and why.startswith("tenant quota: 495.0 of 500 CU·h used this day")
    spent = dataclasses.replace(use, cny={"month": Decimal(100)})
    assert quota_block(spent, "A100", 1, 0.0) == "tenant quota: ¥100.00 of ¥100.00 spent this month"
    every = TenantUse(quotas=(Quota("chips", Decimal(8)),), chips={"H100": 4, "A100": 4})
    assert quota_block(every, "A100", 1, 0.0) == "tenant quota: 8 of 8 chips in use"


def test_the_quota_filter_sends_a_job_elsewhere_or_holds_it_with_the_reason() -> None:
    use = TenantUse(quotas=(Quota("chips", Decimal(4), "H100"),), chips={"H100": 4})
    snap = dataclasses.replace(build_snapshot(net(), NOON), tenants={"acme": use})
    either, only_h = req(1, "acme"), req(2, "acme", types=("H100",))
    other = req(3, "other", types=("H100",))
    d_either, d_only, d_other = schedule_cycle(snap, [either, only_h, other], "min-cost")
    assert d_either.placement is not None and d_either.placement.chip == "A100"
    assert d_only.placement is None
    assert "tenant quota: 4 of 4 H100 in use" in d_only.reasons
    assert d_other.placement is not None and d_other.placement.chip == "H100"


def test_two_placements_that_pass_a_quota_together_are_cut_in_order() -> None:
    use = TenantUse(quotas=(Quota("chips", Decimal(6), "H100"),), chips={"H100": 0})
    snap = dataclasses.replace(build_snapshot(net(), NOON), tenants={"acme": use})
    jobs = [req(1, "acme", types=("H100",)), req(2, "acme", types=("H100",))]
    decisions = schedule_cycle(snap, jobs, "min-cost")
    assert all(d.placement is not None for d in decisions)  # each fits on its own
    lots = [("acme", j.cu_hours, d.placement) for j, d in zip(jobs, decisions, strict=True)]
    assert admit(snap.tenants, lots) == [None, "tenant quota: 4 of 6 H100 in use"]  # type: ignore[arg-type]


def test_under_contention_jobs_take_chips_free_now_and_nothing_later_is_held() -> None:
    # The cheap H100s are busy for three hours; the A100s are free.
    busy = Reservation("h", "H100", 8, NOON - timedelta(hours=1), NOON + timedelta(hours=3))
    snap = build_snapshot(net(), NOON, reservations=[busy])
    uses = {"a": TenantUse(usage=0.0), "b": TenantUse(usage=50.0)}
    snap = dataclasses.replace(snap, tenants=uses)
    jobs = [req(1, "b", types=("H100",)), req(2, "a"), req(3, "a"), req(4, "b")]

    def decide(sn, rq):  # type: ignore[no-untyped-def]
        return schedule_cycle(sn, rq, "min-cost")

    tagged, decisions = fair_cycle(snap, jobs, decide, "min-cost")
    by_id = {d.job_id: d for d in decisions}
    # The H100-only job cannot start now: it waits, holding nothing for later.
    assert by_id["j001"].placement is None
    assert by_id["j001"].reasons[0].startswith(FAIR_WAIT_REASON)
    # Tenant a (less usage) gets the free A100s first; b's flexible job is left out.
    assert {k for k, d in by_id.items() if d.placement is not None} == {"j002", "j003"}
    assert all(
        d.placement.planned_start <= NOON + timedelta(minutes=5)
        for d in decisions
        if d.placement is not None
    )
    assert [t.share for t in tagged][1] == 0.0
