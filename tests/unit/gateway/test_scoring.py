"""The gateway's decision: raw metrics, normalized per category, one score."""

from __future__ import annotations

from datetime import datetime

from computenet.catalog.loader import network_from_dict
from computenet.gateway import scoring
from computenet.gateway.proxy import Gateway, Replica, Service
from computenet.network.paths import PathTable

NET = {
    "name": "t",
    "centers": [
        {"id": "near", "region": "east", "lat": 31, "lon": 121,
         "pools": [{"chip": "H100", "count": 2}],
         "pue": 1.2, "tariff": {"flat": 1.0, "peak": 1, "valley": 1}, "carbon_kg_per_kwh": 0.5,
         "service_price_per_cuh": 1},
        {"id": "far", "region": "west", "lat": 37, "lon": 105,
         "pools": [{"chip": "H100", "count": 2}],
         "pue": 1.2, "tariff": {"flat": 0.3, "peak": 1, "valley": 1}, "carbon_kg_per_kwh": 0.5,
         "service_price_per_cuh": 1},
    ],
    "sites": [{"id": "shanghai", "lat": 31.2, "lon": 121.5}],
    "links": [
        {"a": "shanghai", "b": "near", "bandwidth_gbps": 10, "latency_ms": 2, "price_per_gb": 0},
        {"a": "shanghai", "b": "far", "bandwidth_gbps": 10, "latency_ms": 40, "price_per_gb": 0},
    ],
}  # fmt: skip


def raw(key: str, rtt: float, inflight: int, tariff: float) -> scoring.Raw:
    return scoring.Raw(key, f"127.0.0.1:{len(key)}", key, rtt, inflight, tariff)


def test_the_score_weighs_rtt_load_and_price_after_normalizing_each() -> None:
    ranked = scoring.score(
        [raw("near", 4, 0, 1.2), raw("far", 80, 0, 0.36)], objective_ms=100, target_inflight=4
    )
    near, far = sorted(ranked, key=lambda s: s.raw.key != "near")
    assert (near.rtt, near.load, near.price) == (0.04, 0.0, 1.0)
    assert (far.rtt, far.price) == (0.8, 0.0)
    assert ranked[0].raw.key == "near"  # 0.5*0.04 + 0.15 < 0.5*0.8
    # A busy near replica (twice its target) loses to the idle far one.
    ranked = scoring.score(
        [raw("near", 4, 8, 1.2), raw("far", 80, 0, 0.36)], objective_ms=100, target_inflight=4
    )
    assert ranked[0].raw.key == "far"


def test_rtt_comes_from_the_links_and_the_tariff_from_the_center_now() -> None:
    net = network_from_dict(NET)
    paths = PathTable.build(net)
    assert scoring.rtt_ms(paths, net, "shanghai", "far") == 80.0
    assert scoring.rtt_ms(paths, net, None, "far") == 0.0
    now = datetime.fromisoformat("2026-12-05T12:00:00+08:00")
    assert abs(scoring.tariff_now(net, "far", now) - 0.36) < 1e-9


def test_a_session_stays_on_its_replica_and_a_failed_one_is_left_out() -> None:
    gw = Gateway("http://x", "t", network=network_from_dict(NET), site="shanghai")
    svc = Service("s", 100.0, 4, [Replica("a", "h:1", "near"), Replica("b", "h:2", "far")])
    assert gw.choose(svc, None, set()).key == "a"
    gw.inflight["a"] = 20  # very busy: the best is now b ...
    assert gw.choose(svc, "s1", set()).key == "b"
    gw.inflight["a"] = 0  # ... and the session stays on b when a is best again
    assert gw.choose(svc, "s1", set()).key == "b"
    assert gw.choose(svc, None, set()).key == "a"
    gw.failed_until["a"] = float("inf")
    assert gw.choose(svc, None, set()).key == "b"
    assert gw.choose(svc, None, {"b"}) is None


def test_chip_speed_is_normalized_against_the_fastest_candidate_and_weighed() -> None:
    def fast(key: str, rtt: float, speed: float) -> scoring.Raw:
        return scoring.Raw(key, "h:1", key, rtt, 0, 1.0, speed)

    ranked = scoring.score(
        [fast("slow", 10, 0.5), fast("quick", 10, 2.0)], objective_ms=100, target_inflight=4
    )
    by = {s.raw.key: s for s in ranked}
    assert (by["quick"].slow, by["slow"].slow) == (0.0, 0.75)
    assert ranked[0].raw.key == "quick"
    assert abs(by["slow"].score - by["quick"].score - scoring.W_SPEED * 0.75) < 1e-12
    # Speed trades against distance: a 4x faster chip 20 ms further (0.2 of the objective,
    # 0.45*0.2 = 0.09) still wins (0.15*0.75 = 0.1125); 40 ms further (0.18) it loses.
    ranked = scoring.score(
        [fast("slow", 0, 0.5), fast("quick", 20, 2.0)], objective_ms=100, target_inflight=4
    )
    assert ranked[0].raw.key == "quick"
    ranked = scoring.score(
        [fast("slow", 0, 0.5), fast("quick", 40, 2.0)], objective_ms=100, target_inflight=4
    )
    assert ranked[0].raw.key == "slow"
    # An unknown speed (0) anywhere: speed counts for no one.
    ranked = scoring.score(
        [fast("a", 10, 0.0), fast("b", 10, 2.0)], objective_ms=100, target_inflight=4
    )
    assert all(s.slow == 0.0 for s in ranked)


def test_the_weights_are_the_documented_ones_and_sum_to_one() -> None:
    from pathlib import Path

    assert (scoring.W_RTT, scoring.W_LOAD, scoring.W_PRICE, scoring.W_SPEED) == (
        0.45, 0.3, 0.1, 0.15,
    )  # fmt: skip
    assert abs(scoring.W_RTT + scoring.W_LOAD + scoring.W_PRICE + scoring.W_SPEED - 1) < 1e-12
    doc = (Path(__file__).resolve().parents[3] / "docs" / "services.md").read_text()
    assert "0.45·rtt + 0.3·load + 0.1·price + 0.15·slow" in doc


def test_speed_comes_from_the_catalog_chip_and_the_inference_efficiency() -> None:
    net = network_from_dict(NET)
    h100 = scoring.speed_pflops(net.chips, net.throughput, "H100", 2)
    expected = 2 * net.chips["H100"].bf16_tflops * net.throughput.efficiency["inference"]["H100"]
    assert abs(h100 - expected / 1000) < 1e-12 and h100 > 0
    assert scoring.speed_pflops(net.chips, net.throughput, None, 1) == 0.0
    assert scoring.speed_pflops(net.chips, net.throughput, "nope", 1) == 0.0
    gw = Gateway("http://x", "t", network=net, site="shanghai")
    svc = Service("s", 100.0, 4, [Replica("a", "h:1", "near", "H100")], chips=2)
    assert gw.ranked(svc, set())[0].raw.speed_pflops == h100
    # Without --network the catalog's chips and efficiencies give the same speeds.
    bare = Gateway("http://x", "t")
    a100 = Service("s", 100.0, 4, [Replica("a", "h:1", "x", "A100")], chips=2)
    assert bare.ranked(svc, set())[0].raw.speed_pflops == h100
    assert 0 < bare.ranked(a100, set())[0].raw.speed_pflops < h100
