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
