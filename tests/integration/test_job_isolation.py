"""A job on the local backend, through a real agent and server, cannot reach the network's secrets.

The agent takes its token from a 0600 file; its environment also carries the
operator's client config path and a planted secret, as a careless operator's
shell would. A job that prints its environment and tries to read the agent's
``/proc/<pid>/environ``, its state file, its token file, the operator's config
and another tenant's running job's log must find none of it; as root it runs
as a uid of its own. A SIGKILLed agent's jobs die within seconds, even a
process that left the job's process group, and a restarted agent stops what an
earlier one left running that it does not hold; a job detached by a clean stop
with ``--keep-jobs`` stops by itself at the agent's fence if no agent takes it back.
"""

from __future__ import annotations

import contextlib
import json
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

from computenet.agent.data import create_replica
from computenet.model import JobState
from computenet.sdk import Client
from tests.helpers.processes import log_tail, pid_alive, start_server, stop_process

pytestmark = pytest.mark.integration

ROOT = os.geteuid() == 0
NETWORK = """
name: isolation-itest
time_scale: 600
data_scale: 1
centers:
  - id: east
    region: east
    lat: 31.0
    lon: 121.0
    pools: [{chip: A100, count: 3}]
    pue: 1.3
    tariff: {flat: 0.9, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 3
    tags: [region:east]
"""
PLANTED = "planted-agent-secret-5f1c"


@dataclass
class Net:
    """A server, one agent (center east) and two tenants' users."""

    tmp: Path
    url: str
    admin: str
    network_file: Path
    ann: Client  # tenant acme
    bob: Client  # tenant other
    center_token: str = ""
    agent: subprocess.Popen[bytes] | None = None
    config_file: Path = field(default_factory=Path)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "east" / "state"

    @property
    def token_file(self) -> Path:
        return self.tmp / "secrets" / "east.token"

    def start_agent(self, *extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CNET_CONFIG": str(self.config_file),  # the operator's client config
            "CNET_PLANTED": PLANTED,
        }
        env.pop("CNET_CENTER_TOKEN", None)
        cmd = [
            sys.executable, "-m", "computenet.agent", "--center", "east", "--server", self.url,
            "--token-file", str(self.token_file), "--network", str(self.network_file),
            "--state-dir", str(self.state_dir), "--data-root", str(self.tmp / "east" / "data"),
            *extra,
        ]  # fmt: skip
        with (self.tmp / "agent.log").open("ab") as out:
            self.agent = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        until("the agent online", lambda: all(c.online for c in self.ann.centers()), self)
        return self.agent

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in sorted(self.tmp.glob("*.log")))


def until(what: str, check: Callable[[], Any], net: Net, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{net.logs()}")


def job(command: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "iso",
        "class": "llm-train",
        "command": command,
        "chips": {"count": 1, "types": ["A100"]},
        "work": {"cu_hours": 0.5},
        **extra,
    }


@pytest.fixture
def net(tmp_path: Path, db_url: str) -> Iterator[Net]:
    with running_net(tmp_path, db_url) as n:
        yield n


@contextlib.contextmanager
def running_net(tmp_path: Path, db_url: str, lease_timeout: float = 3.0) -> Iterator[Net]:
    """The server, two tenants' users, center east's token in a 0600 file, and its agent."""
    network_file = tmp_path / "network.yaml"
    network_file.write_text(NETWORK)
    url, admin, server = start_server(
        tmp_path, str(network_file), db=db_url, cycle_interval=0.2, heartbeat_interval=0.3,
        lease_timeout=lease_timeout,
    )  # fmt: skip
    admin_client = Client(url, admin)
    for tenant in ("acme", "other"):
        admin_client.create_tenant(tenant)
    ann = Client(url, admin_client.create_user("ann", "acme").token)
    bob = Client(url, admin_client.create_user("bob", "other").token)
    n = Net(tmp_path, url, admin, network_file, ann, bob)
    n.center_token = admin_client.center_token("east").token
    n.token_file.parent.mkdir(mode=0o700)
    fd = os.open(n.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(n.center_token + "\n")
    n.config_file = tmp_path / "secrets" / "config.json"
    n.config_file.write_text(json.dumps({"url": url, "token": ann.token, "admin_token": admin}))
    n.config_file.chmod(0o600)
    try:
        n.start_agent()
        yield n
    finally:
        if n.agent is not None:
            stop_process(n.agent)
        stop_process(server)
        for c in (admin_client, ann, bob):
            c.close()


def _job_dir(net: Net, job_id: str) -> Path:
    """The local backend's job dir of `job_id` (read as the test, from the backend's records)."""
    records = json.loads((net.state_dir / "backend" / "local-backend.json").read_text())["jobs"]
    (rec,) = [r for r in records if r["job_id"] == job_id]
    return Path(rec["jobdir"])


def test_a_job_sees_no_credential_and_cannot_read_the_agents_or_other_jobs_files(
    net: Net,
) -> None:
    assert net.agent is not None
    other_secret = "other-tenants-output-77a1"
    bobs = create_replica(net.tmp / "east" / "data", "bobs", 1000, path="tenants/other/bobs.bin")
    bobs_file = net.tmp / "east" / "data" / bobs.path
    victim = net.bob.submit(
        job(f"echo {other_secret}; head -c 1 {bobs_file} >/dev/null && echo OWN-DATA; sleep 300")
    )
    until("bob's job to read its data", lambda: "OWN-DATA" in _log(net, victim.id), net)
    assert other_secret in _log(net, victim.id)
    victim_log = _job_dir(net, victim.id) / "output.log"

    targets = {
        "agent-environ": f"/proc/{net.agent.pid}/environ",
        "state-file": str(net.state_dir / "agent-state.json"),
        "backend-state": str(net.state_dir / "backend" / "local-backend.json"),
        "other-job-log": str(victim_log),
        "operator-config": str(net.config_file),
        "other-tenant-data": str(bobs_file),
    }
    if ROOT:  # without root the token file is the agent user's, as the job is (no isolation)
        targets["token-file"] = str(net.token_file)
    reads = "".join(
        f'if cat "{path}" >/dev/null 2>&1; then echo "READ {name}"; tr "\\0" "\\n" < "{path}";'
        f' else echo "DENIED {name}"; fi; '
        for name, path in targets.items()
    )
    probe = net.ann.submit(job(f'echo "uid=$(id -u)"; echo "--env"; env; echo "--reads"; {reads}'))
    done = net.ann.wait(probe.id, poll_s=0.2, timeout_s=60)
    assert done.state is JobState.SUCCEEDED, net.logs()
    out = "".join(net.ann.follow_logs(probe.id, poll_s=0.2))

    assert net.bob.token
    for secret in (net.center_token, net.admin, net.bob.token, other_secret, PLANTED):
        assert secret not in out, (secret, out)
    env_part = out.split("--env\n", 1)[1].split("--reads\n", 1)[0]
    names = {line.split("=", 1)[0] for line in env_part.splitlines() if "=" in line}
    assert "CNET_CONFIG" not in names and "CNET_PLANTED" not in names, names
    assert not {n for n in names if "TOKEN" in n}, names
    assert {"CNET_JOB_ID", "CNET_CHIP", "CNET_CENTER", "HOME", "TMPDIR", "PATH"} <= names
    allowed = {"PATH", "LANG", "HOME", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD"}
    assert {n for n in names if not n.startswith("CNET_")} <= allowed, names
    reads_part = out.split("--reads\n", 1)[1]
    if ROOT:
        uid = int(out.split("uid=", 1)[1].split()[0])
        assert uid != 0 and uid != os.geteuid()
        assert [f"DENIED {name}" in reads_part for name in targets] == [True] * len(targets), out
    assert "DENIED other-job-log" in reads_part or not ROOT, out
    net.bob.cancel(victim.id)


def test_agent_state_and_token_files_are_private(net: Net) -> None:
    done = net.ann.wait(net.ann.submit(job("true")).id, poll_s=0.2, timeout_s=60)
    assert done.state is JobState.SUCCEEDED, net.logs()
    state = net.state_dir / "agent-state.json"
    until("the state file", state.exists, net)
    assert state.stat().st_mode & 0o777 == 0o600
    assert net.state_dir.stat().st_mode & 0o077 in (0, 0o011)  # never listable by others
    logs = list((net.state_dir / "backend" / "jobs").glob("*/output.log"))
    assert logs and all(p.stat().st_mode & 0o777 == 0o600 for p in logs)


@pytest.mark.parametrize("keep_jobs", [False, True], ids=["default", "keep-jobs"])
def test_a_sigkilled_agents_jobs_die_within_seconds(net: Net, keep_jobs: bool) -> None:
    assert net.agent is not None
    if keep_jobs:  # --keep-jobs detaches jobs on a clean stop only, never on SIGKILL
        stop_process(net.agent)
        net.start_agent("--keep-jobs")
        assert net.agent is not None
    pids = net.tmp / "pids"
    command = f"setsid sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; sleep 300"
    if not ROOT:  # only a uid of its own lets the agent find what left the process group
        command = f"echo $$ >> {pids}; sleep 300"
    view = net.ann.submit(job(command))
    until("the job to start", lambda: pids.exists() and len(_pids(pids)) >= 1 + ROOT, net)
    started = _pids(pids)
    assert all(pid_alive(p) for p in started)
    until("RUNNING", lambda: net.ann.job(view.id).state is JobState.RUNNING, net)

    net.agent.send_signal(signal.SIGKILL)
    net.agent.wait()
    until("every job process to die", lambda: not any(pid_alive(p) for p in started), net, 15)


def _detached_job(net: Net) -> int:
    """Start a job under an agent with --keep-jobs, stop the agent cleanly; the job's pid."""
    assert net.agent is not None
    stop_process(net.agent)
    net.start_agent("--keep-jobs")
    pidfile = net.tmp / "kept.pid"
    view = net.ann.submit(job(f"echo $$ > {pidfile}; sleep 300"))
    until("the job to start", lambda: pidfile.exists() and pidfile.read_text().strip(), net)
    until("RUNNING", lambda: net.ann.job(view.id).state is JobState.RUNNING, net)
    assert net.agent is not None
    net.agent.send_signal(signal.SIGTERM)  # a clean stop with --keep-jobs detaches the job
    assert net.agent.wait(timeout=30) == 0
    job_pid = int(pidfile.read_text())
    assert pid_alive(job_pid)
    return job_pid


def test_a_restarted_agent_stops_jobs_it_does_not_hold(tmp_path: Path, db_url: str) -> None:
    # A long lease: the detached job would stop by itself only at the agent's fence (T/2).
    with running_net(tmp_path, db_url, lease_timeout=60.0) as net:
        job_pid = _detached_job(net)
        (net.state_dir / "agent-state.json").unlink()  # the agent forgets it held the job
        net.start_agent("--keep-jobs")
        until("the unheld job to be stopped", lambda: not pid_alive(job_pid), net, 15)


def test_a_detached_job_no_agent_takes_back_stops_at_the_fence(net: Net) -> None:
    job_pid = _detached_job(net)  # lease timeout 3 s: the fence is 1.5 s after the last ack
    until("the detached job to stop by itself", lambda: not pid_alive(job_pid), net, 15)


def _pids(path: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(x) for x in path.read_text().split()]
    return []


def _log(net: Net, job_id: str) -> str:
    return str(net.bob.logs(job_id).text)
