"""The market between regions: a region's own quote prices its option instead of the rate card.

A national network of two regions, ``gba`` (cheaper by this plane's declaration)
and ``yrd``: without quotes the scheduler picks gba; with the regions' own
quotes it picks the one whose quote is cheaper, says whose price it is, and a
region that says it cannot run the job is not picked, with its reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from computenet.catalog import network_from_dict
from computenet.model import JobSpec
from computenet.model.center import CST
from computenet.scheduler import build_snapshot, job_request, quote, schedule_cycle
from computenet.scheduler.region_quotes import QUOTED, RegionQuote
from computenet.scheduler.snapshot import JobRequest, Snapshot

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=CST)
STRATEGIES = ["greedy", "batch-optimizer", "lookahead"]


def center(cid: str, flat: float, service: float) -> dict[str, Any]:
    return {
        "id": cid,
        "region": cid,
        "lat": 22.5,
        "lon": 114.1,
        "pools": [{"chip": "H100", "count": 4}],
        "pue": 1.2,
        "tariff": {"flat": flat, "peak": 1, "valley": 1},
        "carbon_kg_per_kwh": 0.5,
        "service_price_per_cuh": service,
        "tags": ["region"],
    }


NET = network_from_dict(
    {
        "name": "cn",
        "centers": [center("gba", 0.5, 1.0), center("yrd", 0.8, 2.0)],
        "links": [],
    }
)


def req(job_id: str = "j1", **kw: Any) -> JobRequest:
    spec = {
        "class": "llm-train",
        "command": "true",
        "chips": {"count": 1, "types": ["H100"]},
        "work": {"cu_hours": 1.0},
        **kw,
    }
    return job_request(job_id, JobSpec.model_validate(spec), NET, NOON)


def priced(center: str, own: str, fee: str = "0.00", in_h: float = 1.0) -> RegionQuote:
    return RegionQuote(
        center=center,
        chip="H100",
        own_cny=Decimal(own),
        fee_cny=Decimal(fee),
        energy_cny=Decimal("0.10"),
        finish=NOON + timedelta(hours=in_h),
    )


def snap(quotes: dict[str, tuple[RegionQuote, ...]] | None = None) -> Snapshot:
    return build_snapshot(NET, NOON, quotes=quotes)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_without_quotes_the_rate_card_picks_and_no_reason_names_a_quote(strategy: str) -> None:
    d = schedule_cycle(snap(), [req()], strategy=strategy)[0]
    assert d.placement is not None and d.placement.center == "gba"
    assert not any(QUOTED in r for r in d.reasons)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_region_whose_own_quote_is_cheaper_is_picked_at_its_quoted_price(
    strategy: str,
) -> None:
    # gba is cheaper by the declaration, but its own scheduler asks ¥9.00 (its cheap
    # centers are busy); yrd's own quote is ¥3.00 + fee ¥0.08.
    quotes = {"j1": (priced("gba", "9.00"), priced("yrd", "3.00", "0.08", in_h=2.0))}
    d = schedule_cycle(snap(quotes), [req()], strategy=strategy)[0]
    p = d.placement
    assert p is not None and p.center == "yrd"
    assert p.total_cny == Decimal("3.08")
    assert p.cost.energy_cny == Decimal("0.10") and p.cost.transfer_cny == Decimal("0.00")
    assert p.finish == NOON + timedelta(hours=2)
    assert any(r.startswith(f"{QUOTED} yrd's own quote: ¥3.00 + fee ¥0.08") for r in d.reasons)


def test_a_quote_prices_only_its_own_job_and_region() -> None:
    quotes = {"other": (priced("gba", "99.00"),), "j1": (priced("yrd", "50.00"),)}
    got = schedule_cycle(snap(quotes), [req("j1"), req("j2")])
    by_id = {d.job_id: d for d in got}
    # j1: gba by its rate card (no quote from gba for j1) is cheaper than yrd's ¥50.
    p1 = by_id["j1"].placement
    assert p1 is not None and p1.center == "gba" and p1.total_cny < Decimal("50")
    # j2 has no quote at all: rate card, gba.
    p2 = by_id["j2"].placement
    assert p2 is not None and p2.center == "gba"


def test_a_region_that_cannot_run_the_job_is_left_out_with_its_reason() -> None:
    cannot = RegionQuote(center="gba", chip=None, reason="no center has 1 free H100 in 48 h")
    d = schedule_cycle(snap({"j1": (cannot,)}), [req()])[0]
    assert d.placement is not None and d.placement.center == "yrd"
    # Both say no: unplaced, and the regions' reasons are the job's.
    other = RegionQuote(center="yrd", chip="H100", reason="over its budget")
    d = schedule_cycle(snap({"j1": (cannot, other)}), [req()])[0]
    assert d.placement is None
    assert any("gba" in r and "no center has 1 free H100" in r for r in d.reasons)
    assert any("yrd" in r and "over its budget" in r for r in d.reasons)


def test_a_quoted_finish_past_the_deadline_or_a_price_over_the_budget_is_not_feasible() -> None:
    late = {"j1": (priced("gba", "1.00", in_h=5.0),)}
    d = schedule_cycle(snap(late), [req(deadline="3h")])[0]
    assert d.placement is not None and d.placement.center == "yrd"
    assert "not gba: would miss the deadline or the budget" in d.reasons
    dear = {"j1": (priced("gba", "40.00"),)}
    d = schedule_cycle(snap(dear), [req(budget_cny="20")])[0]
    assert d.placement is not None and d.placement.center == "yrd"


def test_the_user_quote_shows_the_regions_price_for_a_quoted_job() -> None:
    quotes = {"j1": (priced("gba", "9.00"),)}
    got = quote(snap(quotes), req())
    gba = [o for o in got.options if o.center == "gba"]
    assert gba and gba[0].total_cny == Decimal("9.00")
