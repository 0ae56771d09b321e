"""Placement of service replicas by demand, moves, the hourly budget (scheduler/serving.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from computenet.catalog.loader import load_network
from computenet.metering.pricing import charge
from computenet.model.center import CST
from computenet.model.job import ChipRequest
from computenet.model.service import parse_service_text
from computenet.scheduler.serving import (
    NETWORK_SHARE,
    Spot,
    budget_keep,
    choose,
    misplaced,
    network_share,
    replica_cost_cny_per_hour,
    rtt_limit_ms,
    service_p99_ms,
    suits,
)
from computenet.server.services import Report, autoscale, demand_by_site
from computenet.store.schema import ServiceRow

# users sit next to `near`; `mid` is 40 ms RTT away and `far` 120 ms.
RTT = {
    ("users", "near"): 4.0,
    ("users", "mid"): 40.0,
    ("users", "far"): 120.0,
    ("west-users", "near"): 120.0,
    ("west-users", "mid"): 60.0,
    ("west-users", "far"): 4.0,
}
SPOTS = [Spot("near", 9.0, 4), Spot("mid", 6.0, 4), Spot("far", 3.0, 4)]


def test_the_cheapest_center_within_the_objective_wins() -> None:
    # 500 ms objective: the network may use 250 ms of it, so every center fits; far is cheapest.
    got = choose({"users": 5.0}, SPOTS, RTT, 500.0)
    assert got is not None and (got.center, got.fits, got.site) == ("far", True, "users")
    assert "cheapest of 3" in got.reason and "¥3.00/h" in got.reason
    # 100 ms: 50 ms for the network, so far (120 ms) is out and mid is the cheapest left.
    got = choose({"users": 5.0}, SPOTS, RTT, 100.0)
    assert got is not None and got.center == "mid"
    # 20 ms: only the near center fits, dear as it is.
    got = choose({"users": 5.0}, SPOTS, RTT, 20.0)
    assert got is not None and (got.center, got.fits) == ("near", True)
    assert rtt_limit_ms(20.0) == 10.0


def test_no_center_within_the_objective_takes_the_nearest_and_says_so() -> None:
    got = choose({"users": 1.0}, SPOTS, RTT, 4.0)  # 2 ms: even near (4 ms) is too far
    assert got is not None and (got.center, got.fits) == ("near", False)
    assert "no center with free chips within 2 ms" in got.reason


def test_a_full_center_is_passed_over_and_no_demand_or_room_falls_back() -> None:
    full = [Spot("near", 9.0, 4), Spot("mid", 6.0, 4), Spot("far", 3.0, 0)]
    got = choose({"users": 1.0}, full, RTT, 500.0)
    assert got is not None and got.center == "mid"
    assert choose({}, SPOTS, RTT, 500.0) is None  # no site reports: the scheduler decides
    assert choose({"users": 0.0}, SPOTS, RTT, 500.0) is None
    assert choose({"users": 1.0}, [Spot("near", 9.0, 0)], RTT, 500.0) is None


def test_replicas_follow_the_sites_weights() -> None:
    # 20 ms: each site is served only by its own near center.
    demand = {"users": 3.0, "west-users": 1.0}
    placed: list[str] = []
    for _ in range(4):
        got = choose(demand, SPOTS, RTT, 20.0, placed)
        assert got is not None
        placed.append(got.center)
    assert sorted(placed) == ["far", "near", "near", "near"]  # 3 : 1, as the demand
    assert placed[0] == "near"  # the heavier site first
    # The other way round, the west gets three.
    placed = []
    for _ in range(4):
        got = choose({"users": 1.0, "west-users": 3.0}, SPOTS, RTT, 20.0, placed)
        assert got is not None
        placed.append(got.center)
    assert placed.count("far") == 3


def test_a_replica_moves_out_of_the_objective_or_for_a_clearly_cheaper_center() -> None:
    # The demand moved west: a replica at near is 120 ms from it (limit 50 ms).
    mv = misplaced({"west-users": 5.0}, SPOTS, RTT, 100.0, ["near"])
    assert mv is not None and (mv.index, mv.to.center) == (0, "far")
    assert "over the 50 ms limit" in mv.reason
    # Both fit (500 ms): far is 3 vs 6 at mid, more than 20 % cheaper: move.
    mv = misplaced({"users": 5.0}, SPOTS, RTT, 500.0, ["mid"])
    assert mv is not None and mv.to.center == "far" and "¥3.00/h against ¥6.00/h" in mv.reason
    # Only 10 % cheaper: stay (hysteresis in price).
    close = [Spot("mid", 6.0, 4), Spot("far", 5.5, 4)]
    assert misplaced({"users": 5.0}, close, RTT, 500.0, ["mid"]) is None
    # Already where it should be; or no room elsewhere: no move.
    assert misplaced({"users": 5.0}, SPOTS, RTT, 500.0, ["far"]) is None
    no_room = [Spot("mid", 6.0, 0), Spot("far", 3.0, 0)]
    assert misplaced({"users": 5.0}, no_room, RTT, 500.0, ["mid"]) is None
    # Of two replicas, the one out of the objective moves (not the one in it).
    mv = misplaced({"users": 5.0}, SPOTS, RTT, 20.0, ["near", "far"])
    assert mv is not None and mv.index == 1 and mv.to.center == "near"
    # A replica serving a smaller site that needs it stays, though the bigger one could
    # use it too (3 : 1 demand, one replica each: no move takes the west's only one).
    assert misplaced({"users": 3.0, "west-users": 1.0}, SPOTS, RTT, 20.0, ["near", "far"]) is None


def test_the_budget_keeps_the_longest_affordable_prefix_but_never_below_min() -> None:
    assert budget_keep([3.0, 3.0, 3.0], 7.0, 1) == 2
    assert budget_keep([3.0, 3.0, 3.0], 9.0, 1) == 3
    assert budget_keep([3.0, 3.0, 3.0], None, 0) == 3
    assert budget_keep([5.0, 5.0], 4.0, 0) == 0  # scale to zero allowed
    assert budget_keep([5.0, 5.0, 5.0], 4.0, 2) == 2  # min wins (the keeper warns)


def test_a_replicas_hourly_cost_is_the_metering_price_of_the_coming_hour() -> None:
    net = load_network("demo")
    center = net.centers[0]
    chip = net.chips[center.pools[0].chip]
    now = datetime(2026, 12, 5, 9, 30, tzinfo=CST)
    cost = replica_cost_cny_per_hour(net, center, chip, 2, now)
    billed = charge(center, chip, net.throughput, "inference", 2, now, now + timedelta(hours=1))
    assert cost == billed.total_cny and cost > Decimal(0)
    # A peak hour costs more than a valley hour where the tariff has them.
    by_hour = {
        h: replica_cost_cny_per_hour(net, center, chip, 1, now.replace(hour=h)) for h in (3, 9)
    }
    assert by_hour[9] > by_hour[3]


def test_chip_suitability_follows_the_request() -> None:
    net = load_network("demo")
    a100 = net.chips["A100"]
    assert suits(a100, ChipRequest(types=("A100", "H100")), net)
    assert not suits(a100, ChipRequest(types=("H100",)), net)
    assert not suits(a100, ChipRequest(memory_gb=200), net)


def test_demand_by_site_weights_in_flight_and_waiting() -> None:
    reports = [Report(2.0, "a", 0), Report(1.0, "a", 3), Report(4.0, None, 0), Report(0, "b", 0)]
    assert demand_by_site(reports) == {"a": 6.0, "b": 0.0}
    assert demand_by_site([Report(0, "a", 0), Report(0, "b", 0)]) == {"a": 1.0, "b": 1.0}


def test_requests_held_at_zero_replicas_start_one_at_once() -> None:
    spec = parse_service_text(
        "name: c\ncommand: x\nreplicas: {min: 0, max: 3}\ntarget_inflight: 2\n"
        "autoscale: {up_delay_s: 30, down_delay_s: 600}"
    )
    row = ServiceRow(name="c", wanted=0, load={"gw": [0.0, 1000.0, "a", 1]})
    autoscale(row, spec, 1000.0)
    assert row.wanted == 1  # no up_delay: a request is waiting
    row = ServiceRow(name="c", wanted=0, load={"gw": [0.0, 1000.0, "a", 5]})
    autoscale(row, spec, 1000.0)
    assert row.wanted == 3  # five waiting at two each: three (the max)
    row = ServiceRow(name="c", wanted=0, load={"gw": [0.0, 1000.0, "a", 0]})
    autoscale(row, spec, 1000.0)
    assert row.wanted == 0
    # An old gateway's report (no site, no waiting) still scales as before.
    row = ServiceRow(name="c", wanted=0, load={"gw": [3.0, 1000.0]})
    autoscale(row, spec, 1000.0)
    assert (row.wanted, row.above_since) == (0, 1000.0)


def test_the_network_gets_what_the_measured_service_time_leaves_within_bounds() -> None:
    assert network_share(500.0, None) == NETWORK_SHARE == 0.5  # no measure yet: half
    assert network_share(500.0, 410.0) == pytest.approx(0.18)  # a slow prefill: 90 ms left
    assert network_share(500.0, 600.0) == 0.1  # slower than the objective: still 10 %
    assert network_share(500.0, 0.0) == 0.9  # instant: 10 % kept for queueing
    assert rtt_limit_ms(500.0, 410.0) == pytest.approx(90.0)
    assert rtt_limit_ms(500.0) == 250.0
    # The service's own p99: the observed p99 TTFB less the round trip in it, at least 0.
    assert service_p99_ms(None, 10.0) is None
    assert service_p99_ms(300.0, 40.0) == 260.0
    assert service_p99_ms(30.0, 40.0) == 0.0


def test_a_slow_service_is_placed_nearer_and_a_fast_one_may_go_further() -> None:
    # 200 ms objective: by default 100 ms for the network, so mid (40 ms) is the cheapest fit.
    got = choose({"users": 5.0}, SPOTS, RTT, 200.0)
    assert got is not None and got.center == "mid"
    # The model measured at 170 ms p99: 30 ms left, only near fits.
    got = choose({"users": 5.0}, SPOTS, RTT, 200.0, service_ms=170.0)
    assert got is not None and (got.center, got.fits) == ("near", True)
    assert "within 30 ms RTT" in got.reason
    # Measured at 60 ms: 140 ms left, far (120 ms) fits and is cheapest.
    got = choose({"users": 5.0}, SPOTS, RTT, 200.0, service_ms=60.0)
    assert got is not None and got.center == "far"
    # A replica at mid is outside the objective once the model is known to be slow.
    assert misplaced({"users": 5.0}, SPOTS, RTT, 200.0, ["mid"]) is None
    mv = misplaced({"users": 5.0}, SPOTS, RTT, 200.0, ["mid"], service_ms=170.0)
    assert mv is not None and mv.to.center == "near" and "over the 30 ms limit" in mv.reason
