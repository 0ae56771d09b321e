"""Overflow up: a region uses its parent (a center tagged `parent`) only for what it cannot run."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from computenet.catalog import network_from_dict
from computenet.model import Dataset, JobSpec, Network
from computenet.model.center import CST
from computenet.model.job import ORIGIN_JOB_ENV
from computenet.scheduler import build_snapshot, job_request, schedule_cycle
from computenet.scheduler.framework import Decision
from computenet.scheduler.snapshot import JobRequest, Reservation, Snapshot

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=CST)
FLAT = {"peak": 1, "valley": 1}
LINK = {"a": "sz", "b": "cn", "bandwidth_gbps": 10, "latency_ms": 20, "price_per_gb": 0.05}


def center(cid: str, pools: dict[str, int], flat: float, tags: list[str]) -> dict[str, Any]:
    return {
        "id": cid,
        "region": "gba",
        "lat": 22.5,
        "lon": 114.1,
        "pools": [{"chip": c, "count": n} for c, n in pools.items()],
        "pue": 1.2,
        "tariff": {"flat": flat, **FLAT},
        "carbon_kg_per_kwh": 0.5,
        "service_price_per_cuh": 1,
        "tags": tags,
    }


def region(parent: bool = True) -> Network:
    """A region of one center (2 H100), and its parent seen as one center: cheaper, and A100 too."""
    tags = ["region", "parent"] if parent else ["region"]
    return network_from_dict(
        {
            "name": "gba",
            "centers": [
                center("sz", {"H100": 2}, 0.9, ["gba"]),
                center("cn", {"H100": 2, "A100": 2}, 0.3, tags),
            ],
            "links": [LINK],
        }
    )


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "class": "llm-train",
        "command": "true",
        "chips": {"count": 1, "types": ["H100"]},
        "work": {"cu_hours": 1.0},
    }
    base.update(kw)
    return JobSpec.model_validate(base)


def req(job_id: str, s: JobSpec, datasets: dict[str, Dataset] | None = None) -> JobRequest:
    return job_request(job_id, s, NET, NOON, datasets)


NET = region()


def snap(busy_h: float = 0.0, net: Network = NET) -> Snapshot:
    """The region at noon; sz's two H100 held for `busy_h` hours."""
    held = [Reservation("sz", "H100", 2, NOON, NOON + timedelta(hours=busy_h))] if busy_h else []
    return build_snapshot(net, NOON, reservations=held)


def one(s: Snapshot, r: JobRequest, strategy: str = "greedy") -> Decision:
    return schedule_cycle(s, [r], strategy=strategy)[0]


@pytest.mark.parametrize("strategy", ["greedy", "batch-optimizer"])
def test_a_job_the_region_can_run_stays_even_when_the_parent_is_cheaper(strategy: str) -> None:
    d = one(snap(), req("j1", spec()), strategy)
    assert d.placement is not None and d.placement.center == "sz"
    # Without the tag the parent is an ordinary center, and the cheaper one wins.
    plain = one(snap(net=region(parent=False)), req("j1", spec()), strategy)
    assert plain.placement is not None and plain.placement.center == "cn"


@pytest.mark.parametrize("strategy", ["greedy", "batch-optimizer"])
def test_a_chip_the_region_lacks_overflows_with_the_reason(strategy: str) -> None:
    d = one(snap(), req("j1", spec(chips={"count": 1, "types": ["A100"]})), strategy)
    assert d.placement is not None and d.placement.center == "cn"
    assert d.reasons[0].startswith("overflow to the parent network (center cn): no center of")
    assert d.placement.reasons == d.reasons


def test_spill_never_stays_pending_and_the_reason_names_spill() -> None:
    d = one(snap(), req("j1", spec(chips={"count": 1, "types": ["A100"]}, spill="never")))
    assert d.placement is None
    assert d.reasons == (
        "spill: never keeps it in this network: only the parent network (center cn) could run it"
        " (set spill: allow to let it overflow there)",
    )


def test_a_job_that_came_from_another_network_is_not_sent_up_again() -> None:
    s = spec(chips={"count": 1, "types": ["A100"]}, env={ORIGIN_JOB_ENV: "cn/j-1"})
    d = one(snap(), req("j1", s))
    assert d.placement is None
    assert d.reasons[0].startswith(f"it came from another network ({ORIGIN_JOB_ENV}=cn/j-1)")


def test_a_deadline_the_region_would_miss_overflows_and_without_one_it_waits_here() -> None:
    busy = snap(busy_h=10)
    late = one(busy, req("j1", spec(deadline="4h")))
    assert late.placement is not None and late.placement.center == "cn"
    assert "deadline in 4h00m" in late.reasons[0] and "at sz" in late.reasons[0]
    patient = one(busy, req("j2", spec()))
    assert patient.placement is not None and patient.placement.center == "sz"
    assert patient.placement.planned_start >= NOON + timedelta(hours=10)
    # With spill: never the deadline job waits here, unplaced, with the deadline's reason.
    kept = one(busy, req("j3", spec(deadline="4h", spill="never")))
    assert kept.placement is None and "deadline in 4h00m" in kept.reasons[0]
    assert kept.reasons[-1] == (
        "not offered to the parent network: spill: never keeps it in this network"
    )


def test_no_chips_here_within_the_horizon_overflows() -> None:
    d = one(snap(busy_h=100), req("j1", spec()))
    assert d.placement is not None and d.placement.center == "cn"


def test_the_second_job_of_a_cycle_overflows_when_the_first_took_the_regions_chips() -> None:
    jobs = [req("j1", spec(chips={"count": 2}, deadline="3h")), req("j2", spec(deadline="3h"))]
    d1, d2 = schedule_cycle(snap(), jobs)
    assert d1.placement is not None and d1.placement.center == "sz"
    assert d2.placement is not None and d2.placement.center == "cn"


def test_resident_inputs_keep_a_job_here_and_others_go_up_with_it() -> None:
    data = {
        "eu": Dataset(id="eu", size_bytes=10, sha256="0" * 64, replicas=("sz",), residency="gba"),
        "free": Dataset(id="free", size_bytes=10, sha256="0" * 64, replicas=("sz",)),
    }
    a100 = {"count": 1, "types": ["A100"]}
    bound = one(snap(), req("j1", spec(chips=a100, inputs=["eu"]), data))
    assert bound.placement is None
    # The residency filter already keeps it out of a center without the tag.
    assert bound.reasons == ("inputs must stay in gba: no eligible center there",)
    # Without a residency tag the input goes up with the job (the uplink stages it).
    loose = one(snap(), req("j2", spec(chips=a100, inputs=["free"]), data))
    assert loose.placement is not None and loose.placement.center == "cn"
    assert loose.reasons[0].startswith("overflow to the parent network (center cn)")


def test_a_parent_that_carries_the_residency_tag_still_gets_no_resident_inputs() -> None:
    net = network_from_dict(
        {
            "name": "gba",
            "centers": [
                center("sz", {"H100": 2}, 0.9, ["gba"]),
                center("cn", {"A100": 2}, 0.3, ["region", "parent", "gba"]),
            ],
            "links": [LINK],
        }
    )
    data = {
        "eu": Dataset(id="eu", size_bytes=1, sha256="0" * 64, replicas=("sz",), residency="gba")
    }
    r = job_request(
        "j1", spec(chips={"count": 1, "types": ["A100"]}, inputs=["eu"]), net, NOON, data
    )
    d = schedule_cycle(build_snapshot(net, NOON), [r])[0]
    assert d.placement is None
    assert d.reasons[0].startswith("its inputs must stay in gba (residency)")


def test_an_offline_parent_is_named() -> None:
    s = build_snapshot(NET, NOON, online={"cn": False})
    d = one(s, req("j1", spec(chips={"count": 1, "types": ["A100"]})))
    assert d.placement is None and d.reasons == ("the eligible centers are offline: cn",)


def test_spill_is_left_out_of_the_json_while_it_is_the_default() -> None:
    assert "spill" not in spec().model_dump(mode="json", by_alias=True)
    assert spec(spill="never").model_dump(mode="json")["spill"] == "never"
    with pytest.raises(ValueError, match="spill"):
        spec(spill="sometimes")


def test_a_job_lookahead_defers_waits_here_and_is_not_sent_up() -> None:
    # sz is free in 5 h, the deadline 12 h off: the region can run it, later, and lookahead
    # leaves it for a later cycle; the parent, free now, would have taken it.
    d = one(snap(busy_h=5), req("j1", spec(deadline="12h")), "lookahead")
    assert d.placement is None and d.reasons[0].startswith("waits: its best start"), d.reasons
    assert "at sz" in d.reasons[0]
    # What it cannot run at all still goes up under lookahead.
    a100 = one(snap(), req("j2", spec(chips={"count": 1, "types": ["A100"]})), "lookahead")
    assert a100.placement is not None and a100.placement.center == "cn"
