"""Placement of service replicas by demand, end to end: a real server and two agents.

Load reports from a user site (what `cnet gateway --site` sends) steer where
the keeper puts replicas: on the cheapest center within the latency objective,
the near one when the objective is tight. A report with requests waiting
starts a replica of a service at zero at once; the hourly budget caps how many
run; a replica pinned at a center that vanishes is replaced at another; when
the demand moves to another site, the replica follows, the new one started
before the old one stops.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from computenet.cli.main import main as cnet
from computenet.protocol.services import ServiceView
from computenet.sdk import Client
from tests.helpers.processes import start_server, stop_process
from tests.integration.test_agent_server import Net, until

pytestmark = pytest.mark.integration

ECHO = Path(__file__).resolve().parents[1] / "helpers" / "echo_model.py"

# Users sit next to `near` (4 ms RTT); `far` is 64 ms away and its power costs a third;
# west-users sit next to `far`.
# Flat tariffs: the fast network clock's hour does not change the answer.
NETWORK = """
name: placement-itest
time_scale: 600
data_scale: 1
centers:
  - id: near
    region: east
    lat: 31.2
    lon: 121.5
    pools: [{chip: A100, count: 2}]
    pue: 1.3
    tariff: {flat: 0.9, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 3
  - id: far
    region: west
    lat: 37.5
    lon: 105.2
    pools: [{chip: A100, count: 4}]
    pue: 1.15
    tariff: {flat: 0.3, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.6
    service_price_per_cuh: 1
sites:
  - {id: users, lat: 31.2, lon: 121.4, region: east}
  - {id: west-users, lat: 37.4, lon: 105.1, region: west}
links:
  - {a: users, b: near, bandwidth_gbps: 1, latency_ms: 2, price_per_gb: 0.01}
  - {a: west-users, b: far, bandwidth_gbps: 1, latency_ms: 2, price_per_gb: 0.01}
  - {a: near, b: far, bandwidth_gbps: 1, latency_ms: 30, price_per_gb: 0.05}
"""


@contextmanager
def placement_net(tmp_path: Path, db_url: str) -> Iterator[Net]:
    """A server on the two-center network above and one agent per center."""
    network_file = tmp_path / "network.yaml"
    network_file.write_text(NETWORK)
    url, admin, server = start_server(
        tmp_path,
        str(network_file),
        db=db_url,
        cycle_interval=0.2,
        heartbeat_interval=0.3,
        lease_timeout=2.0,
    )
    admin_client = Client(url, admin)
    admin_client.create_tenant("acme")
    user = Client(url, admin_client.create_user("ann", "acme").token)
    n = Net(tmp_path, url, admin, network_file, user)
    try:
        for center in ("near", "far"):
            n.tokens[center] = admin_client.center_token(center).token
            n.start_agent(center)
        n.wait_online()
        yield n
    finally:
        for proc in n.agents.values():
            stop_process(proc)
        stop_process(server)
        admin_client.close()
        user.close()


@pytest.fixture
def net(tmp_path: Path, db_url: str) -> Iterator[Net]:
    with placement_net(tmp_path, db_url) as n:
        yield n


def deploy(net: Net, name: str, **over: Any) -> ServiceView:
    spec: dict[str, Any] = {
        "name": name,
        "command": f"python3 {ECHO}",  # the system python: the job's own uid may not read the venv
        "chips": {"count": 1, "types": ["A100"]},
        "replicas": {"min": 0, "max": 1},
        "target_inflight": 4,
        "latency": {"p99_ttfb_ms": 500},
    }
    spec.update(over)
    return net.user.deploy_service(spec)


def report(net: Net, name: str, **body: Any) -> httpx.Response:
    """One load report, as a gateway at `users` sends it."""
    return httpx.post(
        f"{net.url}/api/v1/services/{name}/load",
        headers={"Authorization": f"Bearer {net.user.token}"},
        json={"gateway": "gw-users", "inflight": 0, "site": "users", **body},
        timeout=10,
    )


@contextmanager
def reporting(net: Net, bodies: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Keep the reports fresh (each counts for 10 s), every second, as a gateway does."""
    stop = threading.Event()

    def once() -> None:
        for name, body in bodies.items():
            assert report(net, name, **body).status_code == 204

    def loop() -> None:
        while not stop.wait(1.0):
            once()

    once()  # before anything the test does next

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def ready_at(net: Net, name: str) -> list[str] | None:
    v = net.user.service(name)
    centers = [r.center or "?" for r in v.replicas if r.ready]
    return centers if centers and len(centers) == len(v.replicas) else None


def test_replicas_go_to_the_cheapest_center_in_the_objective_and_come_back_elsewhere(
    net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    # `cheap`: 500 ms objective (250 ms for the network): far fits and is cheaper. It
    # starts at zero and waits long before scaling up: a waiting request starts it at once.
    deploy(net, "cheap", autoscale={"up_delay_s": 3600, "down_delay_s": 3600})
    # `tight`: 60 ms (30 ms for the network): only near fits. Scaled by hand.
    deploy(net, "tight", latency={"p99_ttfb_ms": 60})
    assert net.user.service("cheap").wanted == 0
    with reporting(net, {"cheap": {"inflight": 0, "waiting": 1}, "tight": {"inflight": 2}}):
        assert net.user.scale_service("tight", 1).wanted == 1
        until("a replica of cheap from zero", lambda: net.user.service("cheap").wanted == 1, net)
        assert until("cheap ready", lambda: ready_at(net, "cheap"), net, timeout=90) == ["far"]
        assert until("tight ready", lambda: ready_at(net, "tight"), net, timeout=90) == ["near"]
    cheap = net.user.service("cheap")
    why = cheap.replicas[0].why or ""
    assert why.startswith("far, for users") and "cheapest of 2" in why, why
    assert "within 30 ms" in (net.user.service("tight").replicas[0].why or "")
    assert cheap.cost_cny_per_hour is not None and cheap.cost_cny_per_hour > 0
    assert cheap.replicas[0].cost_cny_per_hour == cheap.cost_cny_per_hour
    # The job's own timeline says why it sits there.
    job_id = cheap.replicas[0].job_id
    events = [e.message for e in net.user.job(job_id).events]
    assert any(m.startswith("placement: far, for users") for m in events), events
    assert cnet(["serve", "status", "cheap", "--url", net.url, "--token", net.user.token]) == 0
    out = capsys.readouterr().out
    assert "placed at far, for users" in out and "/h now" in out

    # far vanishes: its pinned replica is lost with it and comes back at near.
    net.agents["far"].send_signal(signal.SIGKILL)
    net.agents["far"].wait()
    killed = time.monotonic()
    with reporting(net, {"cheap": {"inflight": 1}}):
        until("cheap back at near", lambda: ready_at(net, "cheap") == ["near"], net, timeout=90)
    print(f"replica ready at near {time.monotonic() - killed:.1f} s after far was killed")
    assert "near, for users" in (net.user.service("cheap").replicas[0].why or "")
    # Its old job, pinned at the lost center, was cancelled rather than left waiting for it.
    assert net.user.job(job_id).state.value == "CANCELLED"
    assert net.user.job(job_id).state.value in ("CANCELLED", "FAILED")


def test_the_hourly_budget_caps_the_replicas_and_a_bad_site_is_refused(
    net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    # One replica at far costs about ¥0.28/h; ¥0.6 pays for two, not three.
    deploy(net, "capped", replicas={"min": 0, "max": 3}, budget_cny_per_hour=0.6)
    with reporting(net, {"capped": {"inflight": 9}}):
        assert net.user.scale_service("capped", 3).wanted == 3
        view = until("two ready replicas", lambda: ready_at(net, "capped"), net, timeout=90)
        assert view == ["far", "far"]
        v = net.user.service("capped")
        assert (v.wanted, len(v.replicas)) == (3, 2)
        assert v.cost_cny_per_hour is not None and 0 < v.cost_cny_per_hour <= 0.6
        assert any("not started: the hourly budget" in n for n in v.notes), v.notes
    # replicas.min wins over a budget too small for it, and says so.
    deploy(net, "floor", replicas={"min": 1, "max": 1}, budget_cny_per_hour=0.1)
    v = until("floor's replica", lambda: ready_at(net, "floor") and net.user.service("floor"), net)
    assert len(v.replicas) == 1
    assert any("replicas.min (1) wins" in n for n in v.notes), v.notes
    assert "over budget" in (v.replicas[0].why or ""), v.replicas[0].why
    # A site that is no node of the network: 422 naming it; an old gateway's body still works.
    assert cnet(["serve", "ls", "--url", net.url, "--token", net.user.token]) == 0
    listed = capsys.readouterr().out
    assert "capped" in listed and "0.6" in listed  # the budget beside the cost now
    bad = report(net, "capped", site="mars")
    assert bad.status_code == 422 and bad.json()["field"] == "site", bad.text
    old = httpx.post(
        f"{net.url}/api/v1/services/capped/load",
        headers={"Authorization": f"Bearer {net.user.token}"},
        json={"gateway": "old", "inflight": 1},
        timeout=10,
    )
    assert old.status_code == 204
    # Gateway names are bounded: past MAX_GATEWAYS fresh ones a new name is refused,
    # while a known gateway still reports.
    from computenet.server.services import MAX_GATEWAYS

    codes = [report(net, "capped", gateway=f"gw-{i}").status_code for i in range(MAX_GATEWAYS + 1)]
    refused = codes.index(422)  # "gw-users" and "old" may still hold two places
    assert MAX_GATEWAYS - 2 <= refused < MAX_GATEWAYS + 1, codes
    assert set(codes[:refused]) == {204} and set(codes[refused:]) == {422}, codes
    known = report(net, "capped", gateway="gw-0", inflight=1)
    assert known.status_code == 204, known.text
    shown = json.loads(net.user.service("capped").model_dump_json())
    assert "notes" in shown and "cost_cny_per_hour" in shown


def test_a_replica_follows_the_demand_to_another_site_make_before_break(net: Net) -> None:
    # 60 ms objective (30 ms for the network): near serves users, far serves west-users.
    # down_delay_s 1: a better center must hold 1 s, and one move per second at most.
    deploy(
        net,
        "mover",
        replicas={"min": 1, "max": 1},
        latency={"p99_ttfb_ms": 60},
        autoscale={"up_delay_s": 3600, "down_delay_s": 1, "lookback_s": 1},
    )
    with reporting(net, {"mover": {"inflight": 2}}):
        until("mover at near", lambda: ready_at(net, "mover") == ["near"], net, timeout=90)
    first = net.user.service("mover").replicas[0].job_id
    seen: list[int] = []

    def moved() -> bool:
        v = net.user.service("mover")
        seen.append(v.ready)
        return [r.center for r in v.replicas if r.ready] == ["far"] and len(v.replicas) == 1

    with reporting(net, {"mover": {"inflight": 2, "site": "west-users"}}):
        until("mover at far", moved, net, timeout=90)
    assert min(seen) >= 1, seen  # never without a ready replica while it moved
    after = net.user.service("mover").replicas[0]
    assert after.why is not None and f"moving replica {first} from near" in after.why
    until("the old replica stopped", lambda: net.user.job(first).state.value == "CANCELLED", net)
