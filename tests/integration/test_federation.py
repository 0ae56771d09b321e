"""A region is a center: a national control plane delegates to a regional one, real processes.

The national network has one center, ``gba``, which is a whole ComputeNet
network: its own control plane with two centers (``sz``, ``gz``) run by local
agents. ``cnet agent --backend network`` joins ``gba`` to the national plane
through the center protocol and drives the region through its user API
(docs/federation.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from computenet.model import JobState
from computenet.protocol import JobView
from computenet.sdk import Client
from tests.helpers.processes import (
    log_tail,
    pid_alive,
    start_server,
    stop_process,
    wait_http,
)
from tests.helpers.proxy import TcpProxy

pytestmark = pytest.mark.integration

# Flat tariffs: no reason for either plane to wait for a cheaper hour.
REGION = """
name: gba
time_scale: 600
data_scale: 1
centers:
  - {id: sz, region: gba, lat: 22.5, lon: 114.1, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
  - {id: gz, region: gba, lat: 23.1, lon: 113.3, pools: [{chip: H100, count: 2}], pue: 1.3,
     tariff: {flat: 0.7, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.6, service_price_per_cuh: 2}
links:
  - {a: sz, b: gz, bandwidth_gbps: 10, latency_ms: 2, price_per_gb: 0.01}
"""

# The nation sees the region as one center with the region's chips.
NATIONAL = """
name: cn
time_scale: 600
data_scale: 1
centers:
  - {id: gba, region: gba, lat: 22.8, lon: 113.7, pools: [{chip: H100, count: 4}], pue: 1.25,
     tariff: {flat: 0.6, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.55, service_price_per_cuh: 1.5}
links: []
"""


@dataclass
class Federation:
    """A national plane, a regional plane with two local centers, and the network agent."""

    tmp: Path
    national_url: str
    region_url: str
    user: Client  # a user of the national plane
    link: Client  # the region's account the national plane's jobs run as
    region_admin: Client
    gba_token: str
    link_token_file: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_network_agent(self, server_url: str | None = None) -> subprocess.Popen[bytes]:
        """`cnet agent --backend network` for gba, against the national plane (or a proxy)."""
        log = self.tmp / "agent-gba.log"
        cmd = [
            sys.executable, "-m", "computenet.agent",
            "--center", "gba", "--server", server_url or self.national_url,
            "--token", self.gba_token,
            "--network", str(self.tmp / "national.yaml"),
            "--state-dir", str(self.tmp / "gba" / "state"),
            "--data-root", str(self.tmp / "gba" / "data"),
            "--backend", "network",
            "--backend-opt", f"url={self.region_url}",
            "--backend-opt", f"token_file={self.link_token_file}",
            "--backend-opt", "origin=cn",
        ]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.procs["gba"] = proc
        return proc

    def child_jobs(self, parent_id: str) -> list[JobView]:
        """The region's jobs delegated for national job `parent_id` (any attempt)."""
        return [j for j in self.link.jobs() if j.name.startswith(f"cn/{parent_id}:")]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.relative_to(self.tmp)}\n{log_tail(p)}" for p in sorted(self.tmp.rglob("*.log"))
        )


def until(what: str, check: Callable[[], Any], fed: Federation, timeout: float = 45.0) -> Any:
    """Poll `check` until it returns something truthy; fail with every process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{fed.logs()}")


def _agent(tmp: Path, center: str, url: str, token: str, network: Path) -> subprocess.Popen[bytes]:
    log = tmp / f"agent-{center}.log"
    cmd = [
        sys.executable, "-m", "computenet.agent",
        "--center", center, "--server", url, "--token", token,
        "--network", str(network),
        "--state-dir", str(tmp / center / "state"),
        "--data-root", str(tmp / center / "data"),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def federation(tmp_path: Path, national_lease_timeout: float = 20.0) -> Iterator[Federation]:
    """Start both planes and every agent; stop all of them (by PID) at the end."""
    region_dir, national_dir = tmp_path / "region", tmp_path / "national"
    region_dir.mkdir()
    national_dir.mkdir()
    (region_dir / "region.yaml").write_text(REGION)
    (tmp_path / "national.yaml").write_text(NATIONAL)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        region_url, region_token, procs["region"] = start_server(
            region_dir,
            str(region_dir / "region.yaml"),
            cycle_interval=0.2,
            heartbeat_interval=0.3,
            lease_timeout=20.0,
        )
        national_url, national_token, procs["national"] = start_server(
            national_dir,
            str(tmp_path / "national.yaml"),
            cycle_interval=0.2,
            heartbeat_interval=0.3,
            lease_timeout=national_lease_timeout,
        )
        region_admin = Client(region_url, region_token)
        national_admin = Client(national_url, national_token)
        clients += [region_admin, national_admin]
        for center in ("sz", "gz"):
            token = region_admin.center_token(center).token
            procs[center] = _agent(
                region_dir, center, region_url, token, region_dir / "region.yaml"
            )
        # The nation's jobs run in the region as one account of the region's.
        region_admin.create_tenant("national")
        link_token = region_admin.create_user("cn-link", "national").token
        token_file = tmp_path / "gba-link.token"
        token_file.write_text(link_token)
        os.chmod(token_file, 0o600)
        national_admin.create_tenant("acme")
        user = Client(national_url, national_admin.create_user("ann", "acme").token)
        link = Client(region_url, link_token)
        clients += [user, link]
        fed = Federation(
            tmp_path,
            national_url,
            region_url,
            user,
            link,
            region_admin,
            national_admin.center_token("gba").token,
            token_file,
            procs,
        )
        until("the region's centers online", lambda: all(c.online for c in link.centers()), fed)
        fed.start_network_agent()
        until("gba online at the national plane", lambda: user.centers()[0].online, fed)
        yield fed
    finally:
        for name in ("gba", "sz", "gz", "national", "region"):
            if name in procs:
                stop_process(procs[name])
        for client in clients:
            client.close()


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    with federation(tmp_path) as f:
        yield f


def job(command: str, count: int = 1) -> dict[str, Any]:
    return {
        "name": "fed",
        "class": "llm-train",
        "command": command,
        "chips": {"count": count, "types": ["H100"]},
        "work": {"cu_hours": 0.5},
    }


def all_logs(client: Client, job_id: str) -> str:
    return "".join(client.follow_logs(job_id, poll_s=0.2))


def test_the_region_is_one_center_with_its_largest_job_shape(fed: Federation) -> None:
    (gba,) = fed.user.centers()
    assert gba.backend == "network"
    (pool,) = gba.pools
    # 2 + 2 free H100 in two centers: 4 free, and no job of more than 2 fits now.
    assert (pool["total"], pool["free"], pool["largest_free"]) == (4, 4, 2), fed.logs()
    now = fed.user.quote(job("true", count=2)).options[0]
    later = fed.user.quote(job("true", count=3)).options[0]
    assert now.planned_start <= fed.user.quote(job("true")).now
    assert later.planned_start > now.planned_start


def test_a_job_submitted_at_the_top_runs_in_a_regional_center(fed: Federation) -> None:
    view = fed.user.submit(job('echo "hello from $CNET_CENTER for $CNET_ORIGIN_JOB"', count=2))
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.center, done.exit_code) == (JobState.SUCCEEDED, "gba", 0), fed.logs()
    (child,) = fed.child_jobs(view.id)  # exactly one job in the region
    assert child.name == f"cn/{view.id}:1"
    assert (child.state, child.chips) == (JobState.SUCCEEDED, 2)
    assert child.center in ("sz", "gz")
    assert all_logs(fed.user, view.id) == f"hello from {child.center} for cn/{view.id}\n"


def test_a_failing_job_fails_at_the_top_with_the_regions_exit_code(fed: Federation) -> None:
    view = fed.user.submit(job("echo broken; exit 3"))
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.exit_code) == (JobState.FAILED, 3), fed.logs()
    assert "broken" in all_logs(fed.user, view.id)


@pytest.mark.xfail(
    strict=True,
    reason="server/center_protocol.report_usage keeps only the usage fields it names, not"
    " UsageReport.metered (its owner adds it; docs/federation.md)",
)
def test_the_national_bill_is_what_the_region_metered(fed: Federation) -> None:
    view = fed.user.submit(job("sleep 1; echo done"))
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert done.state is JobState.SUCCEEDED, fed.logs()
    (child,) = fed.child_jobs(view.id)
    region_line = next(x for x in fed.link.bill().lines if x.job_id == child.id)
    national_line = next(x for x in fed.user.bill().lines if x.job_id == view.id)
    assert region_line.total_cny > 0
    assert (national_line.energy_cny, national_line.service_cny, national_line.total_cny) == (
        region_line.energy_cny,
        region_line.service_cny,
        region_line.total_cny,
    )


def test_cancel_at_the_top_cancels_the_regional_job(fed: Federation) -> None:
    pidfile = fed.tmp / "long.pid"
    view = fed.user.submit(job(f"echo $$ > {pidfile}; sleep 300"))
    until("the job to start in the region", lambda: pidfile.exists() and pidfile.read_text(), fed)
    fed.user.cancel(view.id)
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=45)
    assert done.state is JobState.CANCELLED, fed.logs()
    (child,) = fed.child_jobs(view.id)
    until(
        "the regional job cancelled",
        lambda: fed.link.job(child.id).state is JobState.CANCELLED,
        fed,
    )
    until("its process gone", lambda: not pid_alive(int(pidfile.read_text())), fed)


def test_a_killed_network_agent_restarted_makes_no_second_regional_job(fed: Federation) -> None:
    go, pidfile = fed.tmp / "go", fed.tmp / "job.pid"
    command = (
        f"echo $$ > {pidfile}; echo started; while [ ! -e {go} ]; do sleep 0.05; done; echo end"
    )
    view = fed.user.submit(job(command))
    until("the job to start in the region", lambda: pidfile.exists() and pidfile.read_text(), fed)
    until("RUNNING at the top", lambda: fed.user.job(view.id).state is JobState.RUNNING, fed)

    fed.procs["gba"].send_signal(signal.SIGKILL)  # no goodbye, no cancel in the region
    fed.procs["gba"].wait()
    assert pid_alive(int(pidfile.read_text()))  # the region's job runs on
    fed.start_network_agent()  # same state dir: it finds its job in the region again
    go.touch()

    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1), fed.logs()
    (child,) = fed.child_jobs(view.id)  # still exactly one regional job
    assert child.state is JobState.SUCCEEDED
    assert all_logs(fed.user, view.id) == "started\nend\n"


def test_a_region_cut_off_from_the_nation_stops_the_delegated_job(tmp_path: Path) -> None:
    with federation(tmp_path, national_lease_timeout=3.0) as fed:
        port = int(fed.national_url.rsplit(":", 1)[1])
        with TcpProxy(port) as proxy:
            stop_process(fed.procs["gba"])
            fed.start_network_agent(proxy.url)  # the region reaches the nation via the proxy
            until("gba online again", lambda: fed.user.centers()[0].online, fed)
            marker, pidfile = fed.tmp / "first-run", fed.tmp / "first.pid"
            command = (
                f"if [ ! -e {marker} ]; then touch {marker}; echo $$ > {pidfile}; sleep 300; fi;"
                " echo finished"
            )
            view = fed.user.submit(job(command))
            until("the first run to start", lambda: pidfile.exists() and pidfile.read_text(), fed)
            (first,) = fed.child_jobs(view.id)

            proxy.set_mode("blackhole")  # the region's uplink is cut, longer than the lease
            # Fenced by the agent's own lease rule: the regional job is cancelled there ...
            until(
                "the delegated job stopped in the region",
                lambda: fed.link.job(first.id).state is JobState.CANCELLED,
                fed,
            )
            until("its process gone", lambda: not pid_alive(int(pidfile.read_text())), fed)
            # ... and the nation requeues it; once the link is back it runs again, once.
            until("requeued", lambda: fed.user.job(view.id).state is JobState.PENDING, fed)
            proxy.set_mode("pass")
            done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
            assert done.state is JobState.SUCCEEDED, fed.logs()
            children = fed.child_jobs(view.id)
            assert [c.state for c in children].count(JobState.SUCCEEDED) == 1, fed.logs()
            assert fed.link.job(first.id).state is JobState.CANCELLED
            assert len({c.name for c in children}) == len(children)  # one per attempt


def test_a_regional_plane_sigkilled_mid_run_and_restarted_completes_the_job_once(
    fed: Federation,
) -> None:
    go, pidfile = fed.tmp / "go", fed.tmp / "job.pid"
    command = f"echo $$ > {pidfile}; while [ ! -e {go} ]; do sleep 0.05; done; echo end"
    view = fed.user.submit(job(command))
    until("the job to start in the region", lambda: pidfile.exists() and pidfile.read_text(), fed)
    until("RUNNING at the top", lambda: fed.user.job(view.id).state is JobState.RUNNING, fed)

    region = fed.procs["region"]
    region.send_signal(signal.SIGKILL)  # the region's control plane vanishes mid-run
    region.wait()
    port = fed.region_url.rsplit(":", 1)[1]
    region_dir = fed.tmp / "region"
    cmd = [
        sys.executable, "-m", "computenet.server",
        "--db", f"sqlite:///{region_dir / 'cnet.db'}",
        "--host", "127.0.0.1", "--port", port,
        "--network", str(region_dir / "region.yaml"),
        "--cycle-interval", "0.2", "--heartbeat-interval", "0.3", "--lease-timeout", "20",
    ]  # fmt: skip
    with (region_dir / "server.log").open("ab") as out:
        fed.procs["region"] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_http(f"{fed.region_url}/healthz", fed.procs["region"], timeout=60)
    go.touch()

    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1), fed.logs()
    (child,) = fed.child_jobs(view.id)  # one regional job, run once
    assert (child.state, child.attempts) == (JobState.SUCCEEDED, 1)
    assert all_logs(fed.user, view.id) == "end\n"
