"""A national plane over a region, as real processes on 127.0.0.1 (docs/federation.md).

The national network has one center, ``gba``, which is a whole ComputeNet
network: its own control plane with two centers (``sz``, ``gz``) run by local
agents. ``cnet agent --backend network`` joins ``gba`` to the national plane
through the center protocol and drives the region through its user API. The
federation tests and `bench/federation.py` build on these.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from computenet.protocol import JobView
from computenet.sdk import Client
from tests.helpers.processes import (
    log_tail,
    start_server,
    stop_process,
)

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
        self.procs["gba"] = network_agent(
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


def center_agent(
    tmp: Path, center: str, url: str, token: str, network: Path
) -> subprocess.Popen[bytes]:
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


def network_agent(
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


def start_region(
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
        procs[center.id] = center_agent(
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
        region = start_region(tmp_path, "region", REGION, procs)
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
