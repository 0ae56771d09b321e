"""Inference services end to end: a real server, two agents, replicas, the gateway.

A service whose model server is `tests/helpers/echo_model.py` is deployed with
two replicas on the local backend; requests go through a real `cnet gateway`
process; one replica's process is killed and requests are still answered
while the control plane starts a new replica. Replicas follow the requests in
flight up and back down (autoscaling). Bad service files are refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computenet.cli.main import main as cnet
from computenet.errors import ValidationError
from computenet.model import JobState
from computenet.protocol.services import ServiceView
from tests.helpers.processes import cnet_argv, free_port, stop_process, wait_http
from tests.integration.test_agent_server import Net, running_net, until

pytestmark = pytest.mark.integration

ECHO = Path(__file__).resolve().parents[1] / "helpers" / "echo_model.py"


def service_file(tmp: Path, **over: object) -> Path:
    """A service file for the echo model (two replicas by default)."""
    spec: dict[str, object] = {
        "name": "echo",
        # The system python: jobs run as a uid of their own, which may not read the venv.
        "command": f"python3 {ECHO}",
        "chips": {"count": 1, "types": ["A100", "H100"]},
        "replicas": {"min": 2, "max": 3},
        "target_inflight": 4,
        "latency": {"p99_ttfb_ms": 500},
        "budget_cny_per_hour": 50,
    }
    spec.update(over)
    path = tmp / f"{spec['name']}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


@pytest.fixture
def net(tmp_path: Path, db_url: str) -> Iterator[Net]:
    with running_net(tmp_path, db_url) as n:
        yield n


def ready(net: Net, count: int) -> ServiceView | None:
    view = net.user.service("echo")
    return view if view.ready >= count else None


def start_gateway(net: Net) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = net.tmp / "gateway.log"
    cmd = cnet_argv(
        "gateway", "--url", net.url, "--token", net.user.token, "--port", str(port),
        "--network", str(net.network_file), "--site", "east",
    )  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, log=log)
    return f"http://127.0.0.1:{port}", proc


def test_a_service_is_reached_through_the_gateway_and_survives_a_killed_replica(
    net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    view = net.user.deploy_service(service_file(net.tmp))
    assert view.wanted == 2 and len(view.replicas) == 2
    view = until("two ready replicas", lambda: ready(net, 2), net, timeout=90)
    assert all(r.endpoint and r.center in ("east", "west") for r in view.replicas)
    auth = ["--url", net.url, "--token", net.user.token]
    assert cnet(["serve", "status", "echo", "--json", *auth]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["ready"], shown["wanted"]) == (2, 2)
    assert cnet(["serve", "ls", *auth]) == 0
    assert "echo" in capsys.readouterr().out
    gw_url, gw = start_gateway(net)
    try:
        until(
            "the gateway to see both replicas",
            lambda: httpx.get(f"{gw_url}/healthz").json()["services"].get("echo") == 2,
            net,
        )
        with httpx.Client(base_url=gw_url, timeout=10) as http:
            # An OpenAI-compatible path and body pass through untouched.
            r = http.post(
                "/services/echo/v1/chat/completions?x=1", json={"model": "echo", "messages": []}
            )
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["path"] == "/v1/chat/completions?x=1"
            assert got["method"] == "POST" and got["body_bytes"] > 0
            assert r.headers["x-cnet-replica"] in {x.job_id for x in view.replicas}
            # Streaming comes back as the replica sends it.
            with http.stream("GET", "/services/echo/v1/stream?n=5") as s:
                assert s.headers["content-type"] == "text/event-stream"
                text = "".join(s.iter_text())
            assert text.count("data: ") == 5
            # Session affinity: one session stays on one replica.
            seen = {
                http.get("/services/echo/v1/models", headers={"X-CNet-Session": "s1"}).headers[
                    "x-cnet-replica"
                ]
                for _ in range(10)
            }
            assert len(seen) == 1
            # Unknown services are a clear 404.
            miss = http.get("/services/nope/v1/models")
            assert miss.status_code == 404 and miss.json()["field"] == "name"

            # Kill one replica's model server: requests are still answered.
            victim = http.get("/services/echo/").json()
            victim_job = next(r.job_id for r in view.replicas if r.slot == int(victim["replica"]))
            os.kill(victim["pid"], signal.SIGKILL)
            for _ in range(30):
                r = http.get("/services/echo/v1/models")
                assert r.status_code == 200, r.text
        # The dead replica's job failed and a new replica took its place.
        until(
            "the killed replica's job to fail",
            lambda: net.user.job(victim_job).state is JobState.FAILED,
            net,
        )
        after = until(
            "a new replica to be ready",
            lambda: (v := ready(net, 2)) and victim_job not in {x.job_id for x in v.replicas} and v,
            net,
            timeout=90,
        )
        assert max(r.slot for r in after.replicas) == 2  # slot 2: the restart

        # Scale and delete.
        assert net.user.scale_service("echo", 3).wanted == 3
        until("three ready replicas", lambda: ready(net, 3), net, timeout=90)
        gone = net.user.delete_service("echo")
        assert len(gone.replicas) == 3
        for r in gone.replicas:
            until(f"{r.job_id} cancelled", lambda r=r: net.user.job(r.job_id).state
                  is JobState.CANCELLED, net)  # fmt: skip
        assert net.user.services() == []
    finally:
        stop_process(gw)


def test_bad_service_files_are_refused_naming_the_field(
    net: Net, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = service_file(tmp_path, name="bad", replicas={"min": 3, "max": 1})
    assert cnet(["serve", "deploy", str(bad), "--url", net.url, "--token", net.user.token]) == 2
    assert "replicas: max (1) is below min (3)" in capsys.readouterr().err
    bad = service_file(tmp_path, name="Bad")
    assert cnet(["serve", "deploy", str(bad), "--url", net.url, "--token", net.user.token]) == 2
    assert capsys.readouterr().err.startswith("error: name:")
    # The REST API refuses the same with 422 naming the field.
    r = httpx.post(
        f"{net.url}/api/v1/services",
        headers={"Authorization": f"Bearer {net.user.token}"},
        json={"name": "x", "command": "true", "chips": {"count": 0}},
    )
    assert r.status_code == 422 and r.json()["field"] == "chips.count"
    with pytest.raises(ValidationError) as err:
        net.user.deploy_service(dict(name="x", command="true", residency=["mars"]))
    assert err.value.field == "residency.0"
    assert net.user.services() == []


def test_replicas_follow_the_requests_in_flight_up_and_back_down(net: Net) -> None:
    # One request in flight per replica is the target; up after 1 s of demand, down after 2 s,
    # on the mean of the last second's readings (not the 30 s default look-back).
    file = service_file(
        net.tmp,
        replicas={"min": 1, "max": 3},
        target_inflight=1,
        autoscale={"up_delay_s": 1, "down_delay_s": 2, "lookback_s": 1},
    )
    net.user.deploy_service(file)
    until("one ready replica", lambda: ready(net, 1), net, timeout=90)
    gw_url, gw = start_gateway(net)
    stop = threading.Event()
    answered: list[int] = []

    def load() -> None:  # a caller that always has one slow request in flight
        with httpx.Client(base_url=gw_url, timeout=30) as http:
            while not stop.is_set():
                answered.append(http.get("/services/echo/v1/models?sleep=0.5").status_code)

    callers = [threading.Thread(target=load) for _ in range(3)]
    try:
        for c in callers:
            c.start()
        # Three in flight at a target of one: three replicas, all ready.
        until("three ready replicas", lambda: ready(net, 3), net, timeout=90)
        assert net.user.service("echo").wanted == 3
        stop.set()
        for c in callers:
            c.join()
        assert answered and set(answered) == {200}
        # Idle: back to min once the demand has stayed low for the down delay.
        until(
            "the service to scale back to one",
            lambda: (v := net.user.service("echo")).wanted == 1 and len(v.replicas) == 1,
            net,
            timeout=60,
        )
    finally:
        stop.set()
        stop_process(gw)


def test_replicas_lost_with_their_center_come_back_elsewhere_and_traffic_follows(
    net: Net,
) -> None:
    net.user.deploy_service(service_file(net.tmp))
    view = until("two ready replicas", lambda: ready(net, 2), net, timeout=90)
    lost = {r.center for r in view.replicas}
    gw_url, gw = start_gateway(net)
    try:
        until(
            "the gateway to see both replicas",
            lambda: httpx.get(f"{gw_url}/healthz").json()["services"].get("echo") == 2,
            net,
        )
        victim = sorted(lost)[0]
        net.agents[victim].send_signal(signal.SIGKILL)  # the center vanishes, no goodbye
        net.agents[victim].wait()
        killed = time.monotonic()

        def answered_elsewhere() -> bool:
            r = httpx.get(f"{gw_url}/services/echo/v1/models", timeout=10)
            v = net.user.service("echo")
            at = {x.job_id: x.center for x in v.replicas if x.ready}
            return r.status_code == 200 and at.get(r.headers["x-cnet-replica"]) != victim

        until("an answer from a replica away from the lost center", answered_elsewhere, net, 90)
        print(f"re-steered {time.monotonic() - killed:.1f} s after the center was killed")
        after = until("two ready replicas again", lambda: ready(net, 2), net, timeout=90)
        assert victim not in {r.center for r in after.replicas if r.ready}
    finally:
        stop_process(gw)
