"""Per-request metering and scale from zero, end to end: a real server, agents, a gateway.

Requests sent through a real `cnet gateway` show up in the control plane's
``/api/v1/services/NAME/metrics`` with exact counts (requests, errors, bytes),
latency percentiles and the replicas' cost; `cnet serve status` prints them.
A request to a service at zero replicas is held while the gateway reports it
as waiting; the keeper scales the service from zero for it (not after the
autoscale up delay, which is longer than the test waits), and the request is
answered once the replica is ready.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computenet.cli.main import main as cnet
from computenet.protocol.services import ServiceView
from tests.helpers.processes import cnet_argv, free_port, stop_process, wait_http
from tests.integration.test_agent_server import Net, running_net, until
from tests.integration.test_inference_services import service_file

pytestmark = pytest.mark.integration


@pytest.fixture
def net(tmp_path: Path, db_url: str) -> Iterator[Net]:
    with running_net(tmp_path, db_url) as n:
        yield n


def ready_view(net: Net, name: str) -> ServiceView | None:
    view = net.user.service(name)
    return view if view.ready >= 1 else None


def start_gateway(net: Net, *extra: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = net.tmp / "gateway.log"
    cmd = cnet_argv(
        "gateway", "--url", net.url, "--token", net.user.token, "--port", str(port),
        "--network", str(net.network_file), "--site", "east", *extra,
    )  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, log=log)
    return f"http://127.0.0.1:{port}", proc


def test_requests_through_the_gateway_are_counted_exactly_with_their_cost(
    net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    net.user.deploy_service(service_file(net.tmp, replicas={"min": 1, "max": 2}))
    net.user.deploy_service(service_file(net.tmp, name="zero", replicas={"min": 0, "max": 1}))
    view = until("a ready replica", lambda: ready_view(net, "echo"), net, timeout=90)
    # The replica view names the chip it was placed on (the gateway's speed metric reads it).
    assert all(r.chip in ("A100", "H100") for r in view.replicas if r.ready)
    gw_url, gw = start_gateway(net, "--hold-s", "0")  # no hold: "zero" answers 503 at once
    try:
        until(
            "the gateway to see the replica",
            lambda: httpx.get(f"{gw_url}/healthz").json()["services"].get("echo") == 1,
            net,
        )
        sent_in = got_out = 0
        with httpx.Client(base_url=gw_url, timeout=10) as http:
            for i in range(10):
                r = http.get(f"/services/echo/v1/models?i={i}")
                assert r.status_code == 200
                # The replica's Date and Server headers, once each (not the gateway's too).
                assert len(r.headers.get_list("date")) == 1, r.headers
                assert len(r.headers.get_list("server")) == 1, r.headers
                got_out += len(r.content)
            for i in range(5):
                body = b"x" * (100 + i)
                r = http.post("/services/echo/v1/chat/completions", content=body)
                assert r.status_code == 200 and r.json()["body_bytes"] == len(body)
                sent_in += len(body)
                got_out += len(r.content)
            for _ in range(5):
                r = http.get("/services/echo/v1/stream?n=4")
                assert r.status_code == 200 and r.text.count("data: ") == 4
                got_out += len(r.content)
            for _ in range(3):
                assert http.get("/services/zero/v1/models").status_code == 503

        def counted(name: str, n: int) -> object:
            m = net.user.service_metrics(name)
            return m if m.totals.requests >= n else None

        m = until("20 requests in the metrics", lambda: counted("echo", 20), net, timeout=30)
        time.sleep(2.5)  # one more report window: nothing is counted twice
        m = net.user.service_metrics("echo")
        t = m.totals
        assert (t.requests, t.errors, t.bytes_in, t.bytes_out) == (20, 0, sent_in, got_out)
        assert sum(p.requests for p in m.series) == 20
        assert t.p50_ttfb_ms is not None and t.p99_ttfb_ms is not None
        assert t.p99_latency_ms is not None
        assert 0 < t.p50_ttfb_ms <= t.p99_ttfb_ms <= t.p99_latency_ms
        assert t.replicas == 1 and m.series[-1].replicas == 1
        assert t.cost_cny_per_hour > 0 and m.series[-1].cost_cny_per_hour > 0
        assert t.cny_per_1k_requests is not None and t.cu_hours_per_request is not None
        assert t.cny_per_1k_requests == pytest.approx(float(t.cost_cny) * 1000 / 20)
        zero = until("the 503s in the metrics", lambda: counted("zero", 3), net, timeout=30)
        assert (zero.totals.requests, zero.totals.errors) == (3, 3)
        assert zero.totals.error_rate == 1.0 and zero.totals.replicas == 0

        auth = ["--url", net.url, "--token", net.user.token]
        assert cnet(["serve", "status", "echo", *auth]) == 0
        out = capsys.readouterr().out
        assert "requests served: 20" in out and "errors: 0 (0.00%)" in out
        assert "per 1k requests: ¥" in out

        # A report with more errors than requests is refused naming the field.
        bad = httpx.post(
            f"{net.url}/api/v1/services/echo/stats",
            headers={"Authorization": f"Bearer {net.user.token}"},
            json={"gateway": "g", "window_s": 1, "requests": 1, "errors": 2,
                  "bytes_in": 0, "bytes_out": 0},
        )  # fmt: skip
        assert bad.status_code == 422 and bad.json()["field"] == "errors"
        assert net.user.service_metrics("echo").totals.requests == 20
        # A service deleted and deployed again starts a new series.
        net.user.delete_service("zero")
        net.user.deploy_service(service_file(net.tmp, name="zero", replicas={"min": 0, "max": 1}))
        assert net.user.service_metrics("zero").totals.requests == 0
    finally:
        stop_process(gw)


def test_a_request_to_a_service_scaled_to_zero_is_held_until_a_replica_is_ready(
    net: Net,
) -> None:
    cold = service_file(
        net.tmp,
        name="cold",
        replicas={"min": 0, "max": 1},
        autoscale={"up_delay_s": 600, "down_delay_s": 600},
    )
    net.user.deploy_service(cold)
    assert net.user.service("cold").wanted == 0
    gw_url, gw = start_gateway(net, "--hold-s", "120")
    answers: list[httpx.Response] = []

    def call() -> None:
        answers.append(httpx.get(f"{gw_url}/services/cold/v1/models", timeout=150))

    caller = threading.Thread(target=call)
    try:
        until(
            "the gateway to know the service",
            lambda: "cold" in httpx.get(f"{gw_url}/healthz").json()["services"],
            net,
        )
        caller.start()
        until(
            "the request to be held",
            lambda: httpx.get(f"{gw_url}/healthz").json()["waiting"].get("cold") == 1,
            net,
        )
        assert not answers  # held, not refused
        # The gateway reports the held request as waiting (at once, not at its next 2 s
        # report); the keeper scales the service from zero without its 600 s up delay.
        until("the keeper to start a replica", lambda: net.user.service("cold").wanted == 1, net)
        caller.join(timeout=150)
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        view = net.user.service("cold")
        assert answers[0].headers["x-cnet-replica"] in {r.job_id for r in view.replicas}
        assert httpx.get(f"{gw_url}/healthz").json()["waiting"] == {}
        m = until(
            "the held request in the metrics",
            lambda: (x := net.user.service_metrics("cold")).totals.requests == 1 and x,
            net,
            timeout=30,
        )
        assert m.totals.errors == 0
    finally:
        stop_process(gw)
        caller.join(timeout=5)
