"""The dashboard's Services page: a service deployed with the echo model, requests sent
through a real `cnet gateway`, and the page showing the service, its replica's center and
the requests counted; the network map marks the replica's center (real server and agents)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Network
from tests.e2e.test_dashboard import go, sign_in
from tests.helpers.processes import cnet_argv, free_port, stop_process, wait_http

pytestmark = pytest.mark.e2e

Shots = Callable[[Any, str], Path]
ECHO = Path(__file__).resolve().parents[1] / "helpers" / "echo_model.py"
SERVICE = {
    "name": "echo-e2e",
    # The system python: jobs run as a uid of their own, which may not read the venv.
    "command": f"python3 {ECHO}",
    "chips": {"count": 1},
    "replicas": {"min": 1, "max": 2},
    "latency": {"p99_ttfb_ms": 500},
}
REQUESTS = 7


def wait(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return got


def test_the_services_page_shows_replicas_and_requests_through_a_gateway(
    page: Any, network: Network, shots: Shots, tmp_path: Path
) -> None:
    with network.api("alice") as alice:
        r = alice.post("/api/v1/services", json=SERVICE)
        assert r.status_code == 201, r.text
        view = wait(
            "a ready replica",
            lambda: (v := alice.get("/api/v1/services/echo-e2e").json())["ready"] >= 1 and v,
        )
        center = next(x["center"] for x in view["replicas"] if x["ready"])
        port = free_port()
        log = tmp_path / "gateway.log"
        cmd = cnet_argv(
            "gateway", "--url", network.url, "--token", network.tokens["alice"],
            "--port", str(port), "--network", "demo", "--site", "shanghai-users",
        )  # fmt: skip
        with log.open("ab") as out:
            gw = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            gw_url = f"http://127.0.0.1:{port}"
            wait_http(f"{gw_url}/healthz", gw, log=log)
            wait(
                "the gateway to see the replica",
                lambda: httpx.get(f"{gw_url}/healthz").json()["services"].get("echo-e2e"),
            )
            for i in range(REQUESTS):
                got = httpx.post(f"{gw_url}/services/echo-e2e/v1/chat/completions?i={i}", json={})
                assert got.status_code == 200, got.text
            wait(
                "the requests in the metrics",
                lambda: (
                    alice.get("/api/v1/services/echo-e2e/metrics").json()["totals"]["requests"]
                    == REQUESTS
                ),
                timeout=30,
            )
        finally:
            stop_process(gw)

        sign_in(page, network, "alice")
        go(page, "services")
        card = page.get_by_test_id("service-echo-e2e")
        card.wait_for()
        page.get_by_test_id("service-requests").filter(has_text=str(REQUESTS)).wait_for(
            timeout=15_000
        )
        assert int(page.get_by_test_id("service-requests").inner_text()) == REQUESTS
        replicas = page.get_by_role("table", name="Replicas of echo-e2e")
        assert center in replicas.inner_text() and "RUNNING" in replicas.inner_text()
        assert page.locator('svg[aria-label^="Requests per second: requests now"]').count() == 1
        shots(page, "services")

        # The map rings the center that runs the replica.
        go(page, "network")
        ring = page.locator(f'[data-replica-center="{center}"]')
        ring.wait_for(state="attached", timeout=15_000)
        label = page.locator(f'g[data-center="{center}"]').get_attribute("aria-label") or ""
        assert "serving echo-e2e" in label
        shots(page, "network-with-replica")

        alice.delete("/api/v1/services/echo-e2e").raise_for_status()
