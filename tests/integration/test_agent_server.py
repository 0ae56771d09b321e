"""A real server and two real agent processes on 127.0.0.1: jobs, staging, a killed center."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from computenet.agent.data import create_replica
from computenet.model import JobState
from computenet.sdk import Client
from tests.helpers.processes import log_tail, pid_alive, start_server, stop_process

pytestmark = pytest.mark.integration

# Two centers with flat tariffs (no reason to wait for a cheaper hour): `east` has the
# A100s and the data, `west` has the H100s and cheaper power.
NETWORK = """
name: agent-itest
time_scale: 600
data_scale: 1
centers:
  - id: east
    region: east
    lat: 31.0
    lon: 121.0
    pools: [{chip: A100, count: 2}]
    pue: 1.3
    tariff: {flat: 0.9, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 3
    tags: [region:east]
  - id: west
    region: west
    lat: 37.5
    lon: 105.2
    pools: [{chip: H100, count: 2}]
    pue: 1.15
    tariff: {flat: 0.3, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.6
    service_price_per_cuh: 1
    tags: [region:west]
links:
  - {a: east, b: west, bandwidth_gbps: 1, latency_ms: 20, price_per_gb: 0.05}
"""


@dataclass
class Net:
    """A running server, its agents, and a user's client."""

    tmp: Path
    url: str
    admin: str
    network_file: Path
    user: Client
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def data_root(self, center: str) -> Path:
        return self.tmp / center / "data"

    def wait_online(self) -> None:
        until("every agent online", lambda: all(c.online for c in self.user.centers()), self)

    def start_agent(self, center: str, *extra: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"agent-{center}.log"
        cmd = [
            sys.executable, "-m", "computenet.agent",
            "--center", center, "--server", self.url, "--token", self.tokens[center],
            "--network", str(self.network_file),
            "--state-dir", str(self.tmp / center / "state"),
            "--data-root", str(self.data_root(center)), *extra,
        ]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.agents[center] = proc
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in sorted(self.tmp.glob("*.log")))


def until(what: str, check: Callable[[], Any], net: Net, timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy; fail with the process logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{net.logs()}")


@contextlib.contextmanager
def running_net(tmp_path: Path, db_url: str, lease_timeout: float = 2.0) -> Iterator[Net]:
    """A server on a two-center network and one agent per center, all stopped at the end."""
    network_file = tmp_path / "network.yaml"
    network_file.write_text(NETWORK)
    url, admin, server = start_server(
        tmp_path,
        str(network_file),
        db=db_url,
        cycle_interval=0.2,
        heartbeat_interval=0.3,
        lease_timeout=lease_timeout,
    )
    admin_client = Client(url, admin)
    admin_client.create_tenant("acme")
    user = Client(url, admin_client.create_user("ann", "acme").token)
    n = Net(tmp_path, url, admin, network_file, user)
    try:
        for center in ("east", "west"):
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
    with running_net(tmp_path, db_url) as n:
        yield n


def job(command: str, chips: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": "itest",
        "class": "llm-train",
        "command": command,
        "chips": {"count": 1, "types": chips},
        "work": {"cu_hours": 0.5},
        **extra,
    }


def all_logs(client: Client, job_id: str) -> str:
    return "".join(client.follow_logs(job_id, poll_s=0.2))


def test_a_job_runs_at_a_center_and_succeeds_with_its_logs(net: Net) -> None:
    view = net.user.submit(
        job('echo "hello from $CNET_CENTER on chip $CNET_CHIP_IDS"', ["A100", "H100"])
    )
    done = net.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert done.state is JobState.SUCCEEDED, net.logs()
    assert done.exit_code == 0
    assert done.center in ("east", "west")
    assert all_logs(net.user, view.id) == f"hello from {done.center} on chip 0\n"
    assert "run_real_s" in done.usage


def test_a_failing_job_reports_its_exit_code(net: Net) -> None:
    view = net.user.submit(job("echo broken; exit 3", ["H100"]))
    done = net.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.exit_code) == (JobState.FAILED, 3), net.logs()
    assert "broken" in all_logs(net.user, view.id)


def test_a_dataset_is_staged_between_agents_with_the_right_checksum(net: Net) -> None:
    replica = create_replica(
        net.data_root("east"), "corpus", 3_000_000, path="tenants/acme/sets/corpus.bin"
    )
    net.user.add_dataset("corpus", "east", replica.path, replica.size_bytes, replica.sha256)
    # Only west has H100s: the data must travel east → west before the job runs.
    view = net.user.submit(
        job('sha256sum "$CNET_INPUT_CORPUS" | cut -c1-64', ["H100"], inputs=["corpus"])
    )
    done = net.user.wait(view.id, poll_s=0.2, timeout_s=90)
    assert done.state is JobState.SUCCEEDED, net.logs()
    assert done.center == "west"
    assert all_logs(net.user, view.id).strip() == replica.sha256
    assert [e.state for e in done.events if e.state is not None][-3:] == [
        JobState.STAGING,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert done.usage.get("bytes_staged") == replica.size_bytes
    assert done.usage.get("staged_from") == "east"
    (dataset,) = net.user.datasets()
    assert {r["center"] for r in dataset.replicas} == {"east", "west"}
    staged = net.data_root("west") / "tenants" / "acme" / "corpus"  # the tenant's area
    assert staged.stat().st_size == replica.size_bytes


def test_a_job_whose_center_is_killed_reruns_elsewhere_and_succeeds(net: Net) -> None:
    marker, pidfile = net.tmp / "first-run", net.tmp / "first-run.pid"
    command = (
        f"if [ ! -e {marker} ]; then touch {marker}; echo $$ > {pidfile}; sleep 300; fi; "
        'echo "finished at $CNET_CENTER attempt $CNET_ATTEMPT"'
    )
    view = net.user.submit(job(command, ["A100", "H100"]))
    until("the first run to start", lambda: pidfile.exists() and pidfile.read_text().strip(), net)
    first_pid = int(pidfile.read_text())
    first = net.user.job(view.id).center
    assert first in net.agents

    net.agents[first].send_signal(signal.SIGKILL)  # the center vanishes, no goodbye
    net.agents[first].wait()
    until("the killed center's job process to die", lambda: not pid_alive(first_pid), net)

    done = net.user.wait(view.id, poll_s=0.2, timeout_s=90)
    assert done.state is JobState.SUCCEEDED, net.logs()
    assert done.center != first
    assert done.attempts >= 2
    assert f"finished at {done.center}" in all_logs(net.user, view.id)


def test_a_cancelled_running_job_is_stopped_at_its_center(net: Net) -> None:
    pidfile = net.tmp / "long.pid"
    view = net.user.submit(job(f"echo $$ > {pidfile}; sleep 300", ["H100"]))
    until("the job to start", lambda: pidfile.exists() and pidfile.read_text().strip(), net)
    net.user.cancel(view.id)
    done = net.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert done.state is JobState.CANCELLED, net.logs()
    until("the job's process to die", lambda: not pid_alive(int(pidfile.read_text())), net)


def test_a_sigtermed_agent_exits_cleanly_and_its_job_reruns_elsewhere(net: Net) -> None:
    marker, pidfile = net.tmp / "first-run", net.tmp / "first-run.pid"
    command = (
        f"if [ ! -e {marker} ]; then touch {marker}; echo $$ > {pidfile}; sleep 300; fi; "
        'echo "finished at $CNET_CENTER"'
    )
    view = net.user.submit(job(command, ["A100", "H100"]))
    until("the first run to start", lambda: pidfile.exists() and pidfile.read_text().strip(), net)
    first = net.user.job(view.id).center
    assert first in net.agents
    net.agents[first].send_signal(signal.SIGTERM)
    assert net.agents[first].wait(timeout=30) == 0
    assert not pid_alive(int(pidfile.read_text()))  # no orphan left behind

    done = net.user.wait(view.id, poll_s=0.2, timeout_s=90)
    assert (done.state, done.center) == (JobState.SUCCEEDED, "west" if first == "east" else "east")


def test_an_agent_restarted_with_keep_jobs_reattaches_to_its_running_job(
    tmp_path: Path, db_url: str
) -> None:
    with running_net(tmp_path, db_url, lease_timeout=20.0) as net:
        stop_process(net.agents["west"])
        net.start_agent("west", "--keep-jobs")
        net.wait_online()
        go, pidfile = net.tmp / "go", net.tmp / "job.pid"
        command = (
            f"echo $$ > {pidfile}; echo started once; "
            f"while [ ! -e {go} ]; do sleep 0.05; done; echo finished"
        )
        view = net.user.submit(job(command, ["H100"]))
        until("the job to start", lambda: pidfile.exists() and pidfile.read_text().strip(), net)
        until("RUNNING", lambda: net.user.job(view.id).state is JobState.RUNNING, net)

        net.agents["west"].send_signal(signal.SIGTERM)
        assert net.agents["west"].wait(timeout=30) == 0
        assert pid_alive(int(pidfile.read_text()))  # the job outlives its agent
        net.start_agent("west", "--keep-jobs")
        go.touch()

        done = net.user.wait(view.id, poll_s=0.2, timeout_s=60)
        assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1), net.logs()
        assert all_logs(net.user, view.id) == "started once\nfinished\n"
