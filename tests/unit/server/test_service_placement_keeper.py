"""The keeper's placement over the day, in process (fake wall clock, an hour per real second).

Center `a`'s power is cheap in the morning and dear from noon; `b`'s is flat
in between. A replica placed at `a` in the morning moves to `b` after noon,
make before break: the new one starts while the old one serves, and the old
one stops only once the new one is ready. The hourly budget stops a replica
whose cost rose past it only once that has held the file's down delay. A
replica pinned at a center that filled up before it started is placed again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from computenet.catalog import load_network
from computenet.server.services import keep
from tests.unit.server.conftest import Net, make_net

_A = [0.3] * 12 + [1.5] * 12  # ¥/kWh by local hour
NETWORK = f"""
name: keeper-day
time_scale: 3600
centers:
  - id: a
    lat: 31.0
    lon: 121.0
    pools: [{{chip: A100, count: 2}}]
    pue: 1.0
    tariff: {{hourly: {_A}}}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 0
  - id: b
    lat: 37.5
    lon: 105.2
    pools: [{{chip: A100, count: 2}}]
    pue: 1.0
    tariff: {{flat: 0.9, peak: 1, valley: 1}}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 0
sites:
  - {{id: u, lat: 31.1, lon: 121.1}}
links:
  - {{a: u, b: a, bandwidth_gbps: 1, latency_ms: 2, price_per_gb: 0.01}}
  - {{a: u, b: b, bandwidth_gbps: 1, latency_ms: 20, price_per_gb: 0.01}}
"""


@pytest.fixture
def day(tmp_path: Path, db_url: str) -> Iterator[Net]:
    path = tmp_path / "net.yaml"
    path.write_text(NETWORK)
    with contextlib.contextmanager(make_net)(db_url, network=load_network(path)) as net:
        net.register("a")
        net.register("b")
        yield net


def deploy(net: Net, **over: Any) -> None:
    spec: dict[str, Any] = {
        "name": "svc",
        "command": "serve",
        "chips": {"count": 1, "types": ["A100"]},
        "replicas": {"min": 0, "max": 1},
        "latency": {"p99_ttfb_ms": 500},
        "autoscale": {"up_delay_s": 0, "down_delay_s": 2},
    }
    spec.update(over)
    r = net.client.post("/api/v1/services", json=spec, headers=net.user())
    assert r.status_code == 201, r.text


def service(net: Net) -> dict[str, Any]:
    r = net.client.get("/api/v1/services/svc", headers=net.user())
    assert r.status_code == 200, r.text
    return dict(r.json())


def step(net: Net, running: dict[str, list[str]], full: tuple[str, ...] = ()) -> None:
    """One real second (an hour of the network): heartbeats (centers in `full` with no chip
    free), a load report from `u`, a keeper pass."""
    net.time.advance(1.0)
    for cid in ("a", "b"):
        if cid in full:
            r = net.client.post(
                "/center/v1/heartbeat",
                json={
                    "center_id": cid,
                    "capacity": [{"chip": "A100", "total": 2, "free": 0}],
                    "running": running.get(cid, []),
                },
                headers=net.center(cid),
            )
            assert r.status_code == 200, r.text
        else:
            net.heartbeat(cid, running.get(cid, []))
    r = net.client.post(
        "/api/v1/services/svc/load",
        json={"gateway": "g", "inflight": 1, "site": "u"},
        headers=net.user(),
    )
    assert r.status_code == 204, r.text
    keep(net.plane)


def start(net: Net, cid: str, job_id: str, port: int) -> None:
    """Schedule, lease and run `job_id` at `cid`, ready at 127.0.0.1:`port`."""
    net.tick()
    leased = {j["job_id"]: j for j in net.lease(cid)}
    assert job_id in leased, net.job(job_id)["reasons"]
    attempt = int(leased[job_id]["attempt"])
    assert net.report(cid, job_id, attempt, "STAGING").status_code == 200
    ok = net.report(cid, job_id, attempt, "RUNNING", endpoint=f"127.0.0.1:{port}")
    assert ok.status_code == 200, ok.text


def test_a_replica_moves_to_the_center_that_became_cheaper_make_before_break(day: Net) -> None:
    deploy(day)
    step(day, {})  # 11:00: a costs 0.3, b 0.9
    (first,) = service(day)["replicas"]
    assert first["why"].startswith("a, for u"), first["why"]
    start(day, "a", first["job_id"], 5001)
    running = {"a": [first["job_id"]]}
    new = None
    for _ in range(8):  # from noon a costs 1.5: b is 40 % cheaper; held 2 s, then a move
        step(day, running)
        reps = service(day)["replicas"]
        if len(reps) == 2:
            new = next(r for r in reps if r["job_id"] != first["job_id"])
            break
    assert new is not None, service(day)
    assert "moving replica" in new["why"] and "¥0.36/h against ¥0.60/h" in new["why"]
    assert any("moving replica" in n for n in service(day)["notes"])
    # Make before break: the old one still serves while the new one starts.
    old = next(r for r in service(day)["replicas"] if r["job_id"] == first["job_id"])
    assert old["ready"] and old["center"] == "a"
    step(day, running)
    assert len(service(day)["replicas"]) == 2
    start(day, "b", new["job_id"], 5002)
    running["b"] = [new["job_id"]]
    step(day, running)
    (only,) = service(day)["replicas"]
    assert (only["job_id"], only["center"], only["ready"]) == (new["job_id"], "b", True)
    # The old one is told to stop (its center stops it: a cancel asked of a running job).
    assert any("cancel requested" in e["message"] for e in day.job(first["job_id"])["events"])


def test_the_budget_stops_a_replica_only_once_its_cost_held_over_it(day: Net) -> None:
    # ¥0.2/h: a replica at a costs 0.12 in the morning, 0.60 from noon; at b 0.36.
    deploy(day, budget_cny_per_hour=0.2)
    step(day, {})  # 11:00
    (first,) = service(day)["replicas"]
    start(day, "a", first["job_id"], 5001)
    running = {"a": [first["job_id"]]}
    step(day, running)  # 12:00: over the budget from now
    view = service(day)
    assert len(view["replicas"]) == 1 and any("stop soon" in n for n in view["notes"])
    stopped_after = None
    for i in range(1, 6):
        step(day, running)
        if not service(day)["replicas"]:
            stopped_after = i
            break
    assert stopped_after is not None and stopped_after >= 2  # held the 2 s down delay first
    notes = service(day)["notes"]
    assert any("not started: the hourly budget" in n for n in notes), notes  # b costs 0.36
    assert service(day)["wanted"] == 1


def test_a_replica_pinned_at_a_center_that_filled_up_is_placed_again(day: Net) -> None:
    from computenet.server.services import PIN_WAIT_S

    deploy(day)
    step(day, {})  # 11:00: placed at a, the cheaper
    (first,) = service(day)["replicas"]
    assert first["why"].startswith("a, for u")
    waited = 0
    while len(service(day)["replicas"]) == 1 and service(day)["replicas"][0]["slot"] == 0:
        step(day, {}, full=("a",))  # other work took a's chips before the replica started
        waited += 1
        assert waited <= PIN_WAIT_S + 3, service(day)
    assert waited >= PIN_WAIT_S - 1  # it waited its turn first
    (again,) = service(day)["replicas"]
    assert again["why"].startswith("b, for u"), again["why"]
    assert day.job(first["job_id"])["state"] == "CANCELLED"


def test_the_service_time_is_measured_from_the_gateways_ttfb_less_the_round_trip(
    day: Net,
) -> None:
    from datetime import UTC, datetime

    from computenet.protocol.service_stats import GROWTH, StatsReport, bucket_of
    from computenet.server.service_stats import store_of
    from computenet.server.services import measured_service_ms
    from computenet.store import services as store

    deploy(day, replicas={"min": 1, "max": 1})
    with day.plane.db.read() as s:
        row = store.list_services(s)[0]
        key = (row.tenant_id, row.name)
    now = datetime.fromtimestamp(day.plane.clock.real(), UTC)

    def report(n: int, ms: float) -> None:
        body = StatsReport(
            gateway="g",
            window_s=2,
            requests=n,
            errors=0,
            bytes_in=0,
            bytes_out=0,
            ttfb_ms={bucket_of(ms): n},
            latency_ms={},
        )
        store_of(day.plane).add(key, now, body, 1, 1.0)

    report(50, 300.0)
    assert measured_service_ms(day.plane, key, {"u": 1.0}, ["a"]) is None  # 50: too few
    report(60, 300.0)
    got = measured_service_ms(day.plane, key, {"u": 1.0}, ["a"])
    # u is 4 ms RTT from a (2 ms each way): the p99 (300 ms, within one bucket) less 4 ms.
    assert got is not None and 300.0 - 4.0 <= got <= 300.0 * GROWTH - 4.0
    far = measured_service_ms(day.plane, key, {"u": 1.0}, ["b"])  # 40 ms from b
    assert far is not None and far == pytest.approx(got - 36.0)
    # With a replica at each, the site's nearest counts (the gateways route near).
    assert measured_service_ms(day.plane, key, {"u": 1.0}, ["a", "b"]) == got
    assert measured_service_ms(day.plane, key, {"u": 1.0}, []) is None
