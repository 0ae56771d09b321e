"""Transfers share a link's bandwidth max-min fairly."""

from __future__ import annotations

import random

import pytest

from computenet.catalog import network_from_dict
from computenet.sim.links import LinkModel


def _line() -> LinkModel:
    """a —10 Gbps— b —5 Gbps— c."""
    net = network_from_dict(
        {
            "name": "line",
            "centers": [
                {
                    "id": i,
                    "lat": 30.0,
                    "lon": 100.0 + k,
                    "pools": [{"chip": "A100", "count": 1}],
                    "pue": 1.2,
                    "tariff": {"flat": 0.5},
                    "carbon_kg_per_kwh": 0.5,
                    "service_price_per_cuh": 1.0,
                }
                for k, i in enumerate(("a", "b", "c"))
            ],
            "links": [
                {"a": "a", "b": "b", "bandwidth_gbps": 10, "latency_ms": 1, "price_per_gb": 0.01},
                {"a": "b", "b": "c", "bandwidth_gbps": 5, "latency_ms": 1, "price_per_gb": 0.01},
            ],
        }
    )
    return LinkModel(net)


def _drain(m: LinkModel) -> dict[object, float]:
    done: dict[object, float] = {}
    while m.active:
        t = m.next_completion()
        for tr in m.finish_due(t):
            done[tr.key] = t
    return done


def test_one_transfer_gets_the_whole_bottleneck() -> None:
    m = _line()
    m.start("x", "a", "c", 10.0, 0.0)  # 80 Gbit over the 5 Gbps bottleneck
    assert _drain(m) == {"x": pytest.approx(16.0)}


def test_two_transfers_on_one_link_take_twice_as_long() -> None:
    m = _line()
    m.start("x", "a", "b", 10.0, 0.0)
    m.start("y", "a", "b", 10.0, 0.0)
    done = _drain(m)
    assert done["x"] == pytest.approx(16.0) and done["y"] == pytest.approx(16.0)


def test_a_transfer_speeds_up_when_its_neighbour_ends() -> None:
    m = _line()
    m.start("short", "a", "b", 5.0, 0.0)  # 40 Gbit
    m.start("long", "a", "b", 15.0, 0.0)  # 120 Gbit
    done = _drain(m)
    # Both at 5 Gbps until 8 s (short done: 40 Gbit); long has 80 left at 10 Gbps: 16 s.
    assert done["short"] == pytest.approx(8.0)
    assert done["long"] == pytest.approx(16.0)


def test_max_min_fairness_gives_the_unconstrained_transfer_the_rest() -> None:
    m = _line()
    m.start("through", "a", "c", 100.0, 0.0)  # limited to 5 Gbps by b—c
    m.start("local", "a", "b", 100.0, 0.0)  # gets the remaining 5 of a—b... and no less
    rates = {k: t.rate_gbps for k, t in m.active.items()}
    assert rates == {"through": pytest.approx(5.0), "local": pytest.approx(5.0)}
    m.start("c-only", "b", "c", 100.0, 0.0)
    rates = {k: t.rate_gbps for k, t in m.active.items()}
    # b—c now split 2.5/2.5, so the a—b local transfer gets 7.5.
    assert rates == {
        "through": pytest.approx(2.5),
        "c-only": pytest.approx(2.5),
        "local": pytest.approx(7.5),
    }


def test_a_cancelled_transfer_reports_what_it_moved_and_frees_the_link() -> None:
    m = _line()
    m.start("x", "a", "b", 10.0, 0.0)
    m.start("y", "a", "b", 10.0, 0.0)
    moved = m.cancel("x", 4.0)  # 4 s at 5 Gbps = 20 Gbit = 2.5 GB
    assert moved == pytest.approx(2.5)
    assert m.active["y"].rate_gbps == pytest.approx(10.0)
    assert _drain(m) == {"y": pytest.approx(4.0 + 60.0 / 10.0)}


def test_no_path_means_no_transfer() -> None:
    net = network_from_dict(
        {
            "name": "split",
            "centers": [
                {
                    "id": i,
                    "lat": 30.0,
                    "lon": 100.0 + k,
                    "pools": [{"chip": "A100", "count": 1}],
                    "pue": 1.2,
                    "tariff": {"flat": 0.5},
                    "carbon_kg_per_kwh": 0.5,
                    "service_price_per_cuh": 1.0,
                }
                for k, i in enumerate(("a", "b"))
            ],
        }
    )
    assert LinkModel(net).start("x", "a", "b", 1.0, 0.0) is None


def test_each_link_counts_its_transfers_that_cross_other_links() -> None:
    """The count the even-split shortcut reads equals a look at every sharing transfer."""
    rng = random.Random(3)
    m = _line()
    now, n = 0.0, 0
    for _ in range(300):
        if m.active and rng.random() < 0.3:
            m.cancel(rng.choice(list(m.active)), now)
        elif m.active and rng.random() < 0.3:
            now = max(now, m.next_completion())
            m.finish_due(now)
        else:
            src, dst = rng.sample(("a", "b", "c"), 2)
            m.start(n, src, dst, rng.uniform(0.1, 5.0), now)
            n += 1
        now += rng.uniform(0.0, 0.5)
        for li, users in m._users.items():
            crossing = sum(len(m.active[k].links) > 1 for k in users)
            assert m._multi.get(li, 0) == crossing
