"""A real server and agent on 127.0.0.1: a job runs, then /metrics is scraped and parsed.

The server is started as users start it (`python -m computenet.server`) with
``--metrics-token-file`` and ``--log-format json``; the scrape is parsed with
prometheus_client's own parser, so the text format is checked by its reader.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from computenet.catalog import load_network
from computenet.model import JobState
from computenet.model.center import CST
from computenet.sdk import Client
from tests.helpers.processes import log_tail, start_server, stop_process

pytestmark = pytest.mark.integration

NETWORK = """
name: metrics-itest
time_scale: 600
data_scale: 1
centers:
  - id: east
    region: east
    lat: 31.0
    lon: 121.0
    pools: [{chip: A100, count: 2}, {chip: H100, count: 1}]
    pue: 1.3
    tariff: {flat: 0.9, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 3
  - id: west
    region: west
    lat: 37.5
    lon: 105.2
    pools: [{chip: H100, count: 2}]
    pue: 1.15
    tariff: {flat: 0.3, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.6
    service_price_per_cuh: 1
links:
  - {a: east, b: west, bandwidth_gbps: 1, latency_ms: 20, price_per_gb: 0.05}
"""

Samples = dict[str, list[tuple[dict[str, str], float]]]


def until(
    what: str, check: Callable[[], Any], logs: Callable[[], str], timeout: float = 60.0
) -> Any:
    """Poll `check` until it returns something truthy; fail with the process logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


class Net:
    """A server with a metrics token, one agent (east), and a user."""

    def __init__(self, tmp: Path, url: str, admin: str, token: str, user_token: str) -> None:
        self.tmp, self.url, self.admin, self.token = tmp, url, admin, token
        self.user_token = user_token
        self.user = Client(url, user_token)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in sorted(self.tmp.glob("*.log")))

    def get(self, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}/metrics", headers=headers, timeout=30)

    def scrape(self) -> Samples:
        r = self.get(self.token)
        assert r.status_code == 200, r.text
        out: Samples = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                out.setdefault(s.name, []).append((dict(s.labels), s.value))
        return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    hits = [v for lab, v in samples.get(name, []) if labels.items() <= lab.items()]
    assert len(hits) == 1, (name, labels, samples.get(name))
    return hits[0]


@pytest.fixture
def net(tmp_path: Path, db_url: str) -> Iterator[Net]:
    network_file = tmp_path / "network.yaml"
    network_file.write_text(NETWORK)
    token = secrets.token_urlsafe(32)
    token_file = tmp_path / "metrics-token"
    token_file.write_text(token + "\n")
    url, admin, server = start_server(
        tmp_path,
        str(network_file),
        db=db_url,
        cycle_interval=0.2,
        heartbeat_interval=0.3,
        lease_timeout=2.0,
        epoch="2026-11-02T10:00:00+08:00",
        extra_args=["--metrics-token-file", str(token_file), "--log-format", "json"],
    )
    admin_client = Client(url, admin)
    admin_client.create_tenant("acme")
    n = Net(tmp_path, url, admin, token, admin_client.create_user("ann", "acme").token)
    user = n.user
    cmd = [
        sys.executable, "-m", "computenet.agent",
        "--center", "east", "--server", url,
        "--token", admin_client.center_token("east").token,
        "--network", str(network_file),
        "--state-dir", str(tmp_path / "east" / "state"),
        "--data-root", str(tmp_path / "east" / "data"),
    ]  # fmt: skip
    with (tmp_path / "agent-east.log").open("ab") as out:
        agent = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        until("east online", lambda: any(c.online for c in user.centers()), n.logs)
        yield n
    finally:
        stop_process(agent)
        stop_process(server)
        admin_client.close()
        user.close()


def test_a_live_scrape_follows_the_job_that_ran(net: Net) -> None:
    view = net.user.submit(
        {
            "name": "metrics",
            "class": "llm-train",
            "command": "echo hi",
            "chips": {"count": 1, "types": ["A100"]},
            "work": {"cu_hours": 0.5},
        }
    )
    done = net.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert done.state is JobState.SUCCEEDED, net.logs()
    assert done.finished_at is not None
    bill = net.user.bill(period=done.finished_at.astimezone(CST).strftime("%Y-%m"))
    assert bill.total_cny > Decimal(0)

    m = net.scrape()
    assert value(m, "computenet_jobs_total", state="SUCCEEDED") >= 1
    assert value(m, "computenet_center_up", center="east") == 1
    assert value(m, "computenet_center_up", center="west") == 0  # no agent there
    declared = load_network(net.tmp / "network.yaml")
    for center in declared.centers:
        per_chip: dict[str, int] = {}
        for p in center.pools:
            per_chip[p.chip] = per_chip.get(p.chip, 0) + p.count
        for chip, n in per_chip.items():
            got = value(m, "computenet_center_chips", center=center.id, chip=chip, state="total")
            assert got == n
    assert value(m, "computenet_scheduling_cycle_seconds_count") > 0
    assert value(m, "computenet_admission_wait_seconds_count") == 1
    assert value(m, "computenet_billed_cny_total", tenant="acme") == float(bill.total_cny)
    assert value(m, "computenet_jobs_total", state="PENDING") >= 1  # every job starts there

    # The admin may scrape too; nobody else.
    assert net.get(net.admin).status_code == 200
    missing = net.get(None)
    assert missing.status_code == 401
    assert "--metrics-token-file" in missing.json()["hint"]
    assert net.get("wrong-" + net.token).status_code == 401
    assert net.get(net.user_token).status_code == 403


def test_the_server_logs_one_json_object_per_line(net: Net) -> None:
    lines = [x for x in (net.tmp / "server.log").read_text().splitlines() if x.strip()]
    assert lines, net.logs()
    docs = [json.loads(x) for x in lines]  # every line is JSON, uvicorn's own included
    assert all({"time", "level", "logger", "message"} <= d.keys() for d in docs)
    assert any(d["logger"].startswith("computenet") for d in docs)
