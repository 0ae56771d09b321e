"""Scheduler decisions on small hand-built networks."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from computenet.catalog import network_from_dict
from computenet.errors import ValidationError
from computenet.model import Dataset, JobSpec, Network
from computenet.model.center import CST
from computenet.scheduler import build_snapshot, job_request, quote, schedule_cycle
from computenet.scheduler.snapshot import Reservation

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=CST)


def two_centers(east_west_gbps: float = 10.0, west_peak: float = 1.0) -> Network:
    """An expensive eastern center holding the data and a cheap, fast western one."""
    flat = {"peak": 1, "valley": 1}
    return network_from_dict(
        {
            "name": "t",
            "centers": [
                {
                    "id": "east",
                    "region": "east",
                    "lat": 31,
                    "lon": 121,
                    "pools": [{"chip": "A100", "count": 8}],
                    "pue": 1.3,
                    "tariff": {"flat": 0.9, **flat},
                    "carbon_kg_per_kwh": 0.6,
                    "service_price_per_cuh": 3,
                    "tags": ["region:east"],
                },
                {
                    "id": "west",
                    "region": "west",
                    "lat": 37.5,
                    "lon": 105.2,
                    "pools": [{"chip": "H100", "count": 8}],
                    "pue": 1.15,
                    "tariff": {"flat": 0.36, "peak": west_peak, "valley": 1},
                    "carbon_kg_per_kwh": 0.7,
                    "service_price_per_cuh": 2,
                    "tags": ["region:west"],
                },
            ],
            "links": [
                {
                    "a": "east",
                    "b": "west",
                    "bandwidth_gbps": east_west_gbps,
                    "latency_ms": 13,
                    "price_per_gb": 0.05,
                }
            ],
        }
    )


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "class": "llm-train",
        "command": "true",
        "chips": {"count": 4},
        "work": {"cu_hours": 2.0},
    }
    base.update(kw)
    return JobSpec(**base)


def place(
    net: Network,
    s: JobSpec,
    datasets: dict[str, Dataset] | None = None,
    now: datetime = NOON,
    patience_h: float | None = None,
):
    ds = datasets or {}
    snap = build_snapshot(net, now, datasets=ds, patience_h=patience_h)
    (d,) = schedule_cycle(snap, [job_request("j", s, net, now, ds)])
    return d


def data_at_east(gb: float, residency: str | None = None) -> dict[str, Dataset]:
    return {
        "d": Dataset(
            id="d",
            size_bytes=int(gb * 1e9),
            sha256="a" * 64,
            replicas=("east",),
            residency=residency,
        )
    }


def test_job_moves_west_when_deadline_allows() -> None:
    d = place(two_centers(), spec(inputs=["d"], deadline="6h"), data_at_east(50))
    assert d.placement is not None
    assert d.placement.center == "west"
    assert d.placement.transfer_s > 0
    assert d.placement.cost.transfer_cny > 0


def test_job_stays_near_data_when_data_too_big_to_move_in_time() -> None:
    # 20 TB over 1 Gbps takes ~44 h: only the eastern center meets a 6 h deadline.
    d = place(
        two_centers(east_west_gbps=1), spec(inputs=["d"], deadline="6h"), data_at_east(20_000)
    )
    assert d.placement is not None
    assert d.placement.center == "east"
    assert any("not west" in r for r in d.reasons)


def test_start_shifts_into_cheaper_hour_when_deadline_allows() -> None:
    net = network_from_dict(
        {
            "name": "t",
            "centers": [
                {
                    "id": "only",
                    "lat": 30,
                    "lon": 110,
                    "pools": [{"chip": "H100", "count": 8}],
                    "pue": 1.2,
                    "tariff": {"flat": 0.6},
                    "carbon_kg_per_kwh": 0.5,
                    "service_price_per_cuh": 1,
                }
            ],
        }
    )
    evening = datetime(2026, 12, 1, 21, 30, tzinfo=CST)  # peak hour; valley starts 23:00
    slack = place(net, spec(deadline="12h"), now=evening)
    rush = place(net, spec(), now=evening, patience_h=0)
    assert slack.placement is not None and rush.placement is not None
    assert slack.placement.planned_start.hour == 23
    assert rush.placement.planned_start == evening
    # Without a deadline a job waits for the valley only within the operator's patience.
    patient = place(net, spec(), now=evening, patience_h=2)
    impatient = place(net, spec(), now=evening, patience_h=0.25)
    interactive = place(net, spec(latency_class="interactive"), now=evening, patience_h=24)
    assert patient.placement is not None and patient.placement.planned_start.hour == 23
    assert impatient.placement is not None and impatient.placement.planned_start == evening
    assert interactive.placement is not None and interactive.placement.planned_start == evening
    assert slack.placement.cost.energy_cny < rush.placement.cost.energy_cny
    assert any("cheaper tariff hour" in r for r in slack.reasons)


def test_no_shift_when_deadline_too_tight_for_it() -> None:
    net = two_centers(west_peak=1.0)
    d = place(net, spec(deadline="2h"))
    assert d.placement is not None
    assert d.placement.planned_start == NOON


def test_residency_is_kept_even_when_west_is_cheaper() -> None:
    d = place(two_centers(), spec(inputs=["d"], deadline="6h"), data_at_east(1, "region:east"))
    assert d.placement is not None
    assert d.placement.center == "east"


def test_infeasible_stack_gives_actionable_reason() -> None:
    d = place(two_centers(), spec(chips={"count": 2, "stack": "cann"}))
    assert d.placement is None
    assert "cann" in d.reasons[0]


def test_infeasible_deadline_names_fastest_finish() -> None:
    d = place(two_centers(), spec(work={"cu_hours": 500.0}, deadline="1h"))
    assert d.placement is None
    assert "deadline in 1h00m" in d.reasons[0] and "west" in d.reasons[0]


def test_budget_too_small_is_reported() -> None:
    d = place(two_centers(), spec(budget_cny=Decimal("0.5")))
    assert d.placement is None
    assert "budget" in d.reasons[0]


def test_cycle_does_not_overbook_a_pool() -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON)
    jobs = [
        job_request(f"j{i}", spec(chips={"count": 8, "types": ["H100"]}), net, NOON)
        for i in range(2)
    ]
    first, second = schedule_cycle(snap, jobs)
    assert first.placement is not None and second.placement is not None
    assert second.placement.planned_start >= first.placement.finish.replace(
        minute=0, second=0, microsecond=0
    )


def test_reservations_delay_start_until_chips_free() -> None:
    net = two_centers()
    busy = Reservation("west", "H100", 8, NOON, NOON.replace(hour=15))
    snap = build_snapshot(net, NOON, reservations=[busy])
    (d,) = schedule_cycle(
        snap, [job_request("j", spec(chips={"count": 8, "types": ["H100"]}), net, NOON)]
    )
    assert d.placement is not None
    assert d.placement.planned_start.hour == 15


def test_offline_center_is_not_used() -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON, online={"west": False})
    (d,) = schedule_cycle(snap, [job_request("j", spec(), net, NOON)])
    assert d.placement is not None and d.placement.center == "east"


def test_quote_marks_cheapest_and_fastest() -> None:
    net = two_centers()
    snap = build_snapshot(net, NOON)
    q = quote(snap, job_request("q", spec(), net, NOON))
    assert sum(o.cheapest for o in q.options) == 1
    assert sum(o.fastest for o in q.options) == 1
    cheapest = next(o for o in q.options if o.cheapest)
    assert all(cheapest.total_cny <= o.total_cny for o in q.options if o.feasible)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"chips": {"count": 1, "types": ["B200"]}}, "chips.types[0]"),
        ({"class": "quantum"}, "class"),
        ({"inputs": ["nope"]}, "inputs[0]"),
        ({"deadline": "2026-11-30T00:00:00+08:00"}, "deadline"),
    ],
)
def test_bad_spec_names_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        job_request("j", spec(**kw), two_centers(), NOON, {})
    assert err.value.field == field


def test_pinned_job_runs_at_its_center_even_when_another_is_cheaper() -> None:
    d = place(two_centers(), spec(center="east"))
    assert d.placement is not None and d.placement.center == "east"
    free = place(two_centers(), spec())
    assert free.placement is not None and free.placement.center == "west"


def test_a_full_network_gives_the_reasons_evaluate_gives() -> None:
    from computenet.scheduler.framework import evaluate
    from computenet.scheduler.framework import place as place_one
    from computenet.scheduler.plugins import PROFILES
    from computenet.scheduler.snapshot import Reservation

    net = two_centers()
    full = [
        Reservation(c.id, p.chip, p.count, NOON - timedelta(hours=1), NOON + timedelta(days=5))
        for c in net.centers
        for p in c.pools
    ]
    snap = build_snapshot(net, NOON, reservations=full)
    job = job_request("j", spec(deadline="12h"), net, NOON, {})
    d = place_one(snap, snap.free.copy(), job, PROFILES["min-cost"])
    assert d.placement is None
    assert d.reasons == tuple(evaluate(snap, snap.free, job, PROFILES["min-cost"]).why_not)
    assert any("free" in r for r in d.reasons)
