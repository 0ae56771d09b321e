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

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

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
     tariff: {flat: 0.6, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.55, service_price_per_cuh: 1.5,
     tags: [region]}
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
        self.procs["gba"] = _network_agent(
            self.tmp,
            "gba",
            server_url or self.national_url,
            self.gba_token,
            self.region_url,
            self.link_token_file,
        )
        return self.procs["gba"]

    def child_jobs(self, parent_id: str) -> list[JobView]:
        """The region's jobs delegated for national job `parent_id` (any attempt)."""
        return [j for j in self.link.jobs() if j.name.startswith(f"cn/{parent_id}:")]

    def logs(self) -> str:
        return logs_under(self.tmp)


def logs_under(tmp: Path) -> str:
    """The tail of every process log under `tmp`, for failure messages."""
    return "\n".join(f"--- {p.relative_to(tmp)}\n{log_tail(p)}" for p in sorted(tmp.rglob("*.log")))


def until(
    what: str, check: Callable[[], Any], where: Federation | Path, timeout: float = 45.0
) -> Any:
    """Poll `check` until it returns something truthy; fail with every process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    logs = where.logs() if isinstance(where, Federation) else logs_under(where)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


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


def _network_agent(
    tmp: Path, center: str, server_url: str, token: str, child_url: str, child_token_file: Path
) -> subprocess.Popen[bytes]:
    """`cnet agent --backend network` for `center` of the national network in tmp/national.yaml."""
    log = tmp / f"agent-{center}.log"
    cmd = [
        sys.executable, "-m", "computenet.agent",
        "--center", center, "--server", server_url, "--token", token,
        "--network", str(tmp / "national.yaml"),
        "--state-dir", str(tmp / center / "state"),
        "--data-root", str(tmp / center / "data"),
        "--backend", "network",
        "--backend-opt", f"url={child_url}",
        "--backend-opt", f"token_file={child_token_file}",
        "--backend-opt", "origin=cn",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class Region:
    """A regional plane and its local agents, with the account the nation's jobs run as."""

    url: str
    admin: Client
    link: Client
    link_token_file: Path


def _region(
    tmp: Path, name: str, network: str, procs: dict[str, subprocess.Popen[bytes]]
) -> Region:
    """Start region `name` (its plane and one local agent per center) into `procs`."""
    home = tmp / name
    home.mkdir()
    (home / "region.yaml").write_text(network)
    url, token, procs[name] = start_server(
        home, str(home / "region.yaml"), cycle_interval=0.2, heartbeat_interval=0.3,
        lease_timeout=20.0,
    )  # fmt: skip
    admin = Client(url, token)
    for center in admin.centers():
        procs[center.id] = _agent(
            home, center.id, url, admin.center_token(center.id).token, home / "region.yaml"
        )
    # The nation's jobs run in the region as one account of the region's.
    admin.create_tenant("national")
    link_token = admin.create_user("cn-link", "national").token
    token_file = tmp / f"{name}-link.token"
    token_file.write_text(link_token)
    os.chmod(token_file, 0o600)
    return Region(url, admin, Client(url, link_token), token_file)


@contextlib.contextmanager
def federation(tmp_path: Path, national_lease_timeout: float = 20.0) -> Iterator[Federation]:
    """Start both planes and every agent; stop all of them (by PID) at the end."""
    (tmp_path / "national").mkdir()
    (tmp_path / "national.yaml").write_text(NATIONAL)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        region = _region(tmp_path, "region", REGION, procs)
        clients += [region.admin, region.link]
        national_url, national_token, procs["national"] = start_server(
            tmp_path / "national",
            str(tmp_path / "national.yaml"),
            cycle_interval=0.2,
            heartbeat_interval=0.3,
            lease_timeout=national_lease_timeout,
        )
        national_admin = Client(national_url, national_token)
        national_admin.create_tenant("acme")
        user = Client(national_url, national_admin.create_user("ann", "acme").token)
        clients += [national_admin, user]
        fed = Federation(
            tmp_path,
            national_url,
            region.url,
            user,
            region.link,
            region.admin,
            national_admin.center_token("gba").token,
            region.link_token_file,
            procs,
        )
        until(
            "the region's centers online", lambda: all(c.online for c in region.link.centers()), fed
        )
        fed.start_network_agent()
        until("gba online at the national plane", lambda: user.centers()[0].online, fed)
        yield fed
    finally:
        stop_all(procs, clients)


def stop_all(procs: dict[str, subprocess.Popen[bytes]], clients: list[Client]) -> None:
    """Stop every process by PID, last started first (network agents before the planes they
    cancel in), and close the clients."""
    for proc in reversed(list(procs.values())):
        stop_process(proc)
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


def test_a_network_agent_killed_for_good_has_its_regional_job_stopped_at_its_fence(
    tmp_path: Path,
) -> None:
    with federation(tmp_path, national_lease_timeout=3.0) as fed:
        marker, pidfile = fed.tmp / "first-run", fed.tmp / "first.pid"
        command = (
            f"if [ ! -e {marker} ]; then touch {marker}; echo $$ > {pidfile}; sleep 300; fi;"
            " echo finished"
        )
        view = fed.user.submit(job(command))
        until("the first run to start", lambda: pidfile.exists() and pidfile.read_text(), fed)
        (first,) = fed.child_jobs(view.id)

        fed.procs["gba"].send_signal(signal.SIGKILL)  # nobody left to fence: its watchdog does
        fed.procs["gba"].wait()
        until(
            "the regional job cancelled",
            lambda: fed.link.job(first.id).state is JobState.CANCELLED,
            fed,
        )
        until("its process gone", lambda: not pid_alive(int(pidfile.read_text())), fed)
        until("requeued at the top", lambda: fed.user.job(view.id).state is JobState.PENDING, fed)
        fed.start_network_agent()  # back: the next attempt runs, once
        done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
        assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2), fed.logs()
        states = sorted(c.state.value for c in fed.child_jobs(view.id))
        assert states == ["CANCELLED", "SUCCEEDED"]


# Two regions of one center each; the nation prefers gba (cheaper power).
GBA_ONE = """
name: gba
time_scale: 600
centers:
  - {id: sz, region: gba, lat: 22.5, lon: 114.1, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
links: []
"""
YRD_ONE = GBA_ONE.replace("name: gba", "name: yrd").replace(
    "id: sz, region: gba", "id: sh, region: yrd"
)
NATIONAL_TWO = """
name: cn
time_scale: 600
data_scale: 1
centers:
  - {id: gba, region: gba, lat: 22.8, lon: 113.7, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.4, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1,
     tags: [region]}
  - {id: yrd, region: yrd, lat: 31.2, lon: 121.5, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.8, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1,
     tags: [region]}
links:
  - {a: gba, b: yrd, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}
"""


def test_a_region_partitioned_mid_run_the_job_completes_once_in_the_other(
    tmp_path: Path,
) -> None:
    (tmp_path / "national").mkdir()
    (tmp_path / "national.yaml").write_text(NATIONAL_TWO)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        gba = _region(tmp_path, "gba-region", GBA_ONE, procs)
        yrd = _region(tmp_path, "yrd-region", YRD_ONE, procs)
        clients += [gba.admin, gba.link, yrd.admin, yrd.link]
        url, token, procs["national"] = start_server(
            tmp_path / "national",
            str(tmp_path / "national.yaml"),
            cycle_interval=0.2,
            heartbeat_interval=0.3,
            lease_timeout=3.0,
        )
        admin = Client(url, token)
        admin.create_tenant("acme")
        user = Client(url, admin.create_user("ann", "acme").token)
        clients += [admin, user]
        with TcpProxy(int(url.rsplit(":", 1)[1])) as proxy:
            # gba reaches the nation through a link the test can cut; yrd directly.
            for name, region, via in (("gba", gba, proxy.url), ("yrd", yrd, url)):
                center_token = admin.center_token(name).token
                procs[name] = _network_agent(
                    tmp_path, name, via, center_token, region.url, region.link_token_file
                )
            until("both regions online", lambda: all(c.online for c in user.centers()), tmp_path)

            marker, pidfile = tmp_path / "first-run", tmp_path / "first.pid"
            command = (
                f"if [ ! -e {marker} ]; then touch {marker}; echo $$ > {pidfile}; sleep 300; fi;"
                ' echo "finished at $CNET_CENTER"'
            )
            view = user.submit(job(command))
            until("the run in gba", lambda: pidfile.exists() and pidfile.read_text(), tmp_path)
            assert user.job(view.id).center == "gba"
            (first,) = [j for j in gba.link.jobs() if j.name.startswith(f"cn/{view.id}:")]

            proxy.set_mode("blackhole")  # gba is cut off from the nation mid-run, for good
            until(
                "gba's run stopped there",
                lambda: gba.link.job(first.id).state is JobState.CANCELLED,
                tmp_path,
            )
            until("its process gone", lambda: not pid_alive(int(pidfile.read_text())), tmp_path)

            done = user.wait(view.id, poll_s=0.2, timeout_s=60)
            assert (done.state, done.center) == (JobState.SUCCEEDED, "yrd"), logs_under(tmp_path)
            assert all_logs(user, view.id).endswith("finished at sh\n")
            # Exactly once: one run finished, in yrd; gba's was stopped; one national charge.
            ours = f"cn/{view.id}:"
            assert [j.state for j in gba.link.jobs() if j.name.startswith(ours)] == [
                JobState.CANCELLED
            ]
            assert [j.state for j in yrd.link.jobs() if j.name.startswith(ours)] == [
                JobState.SUCCEEDED
            ]
            assert [(x.job_id, x.center) for x in user.bill().lines] == [(view.id, "yrd")]
    finally:
        stop_all(procs, clients)
