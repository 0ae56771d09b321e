"""A real control plane with one local agent on a one-center CPU network, for integration tests.

Several integration tests need the same thing: a server on a tiny network, a tenant
with one user, and a real local agent that is online before the test starts. This
module starts it once and stops every process it started, by PID.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from computenet.sdk import Client
from tests.helpers.processes import log_tail, start_server, stop_process

CENTER = "chongqing"
"""The one center of `one_center_network`."""


def one_center_network(name: str, *, time_scale: float, cpu_nodes: int) -> str:
    """A network file with `CENTER` alone: `cpu_nodes` CPU-nodes at a flat price, no links."""
    return f"""
name: {name}
time_scale: {time_scale}
data_scale: 1
centers:
  - id: {CENTER}
    region: west
    lat: 29.6
    lon: 106.5
    pools: [{{chip: CPU-node, count: {cpu_nodes}}}]
    pue: 1.25
    tariff: {{flat: 0.6, peak: 1, valley: 1}}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 0.8
    tags: [region:west]
links: []
"""


@dataclass
class LocalPlane:
    """A running server and local agent, and user ``ann`` of tenant ``acme``."""

    user: Client
    logs: list[Path]

    def tails(self) -> str:
        """The end of every process's log, for an assertion's message."""
        return "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in self.logs)


@contextmanager
def local_plane(
    tmp_path: Path, db_url: str, network: str, *, server_args: Sequence[str] = ()
) -> Iterator[LocalPlane]:
    """Start a server on `network` (YAML text) and a local agent for `CENTER`; both online."""
    network_file = tmp_path / "network.yaml"
    network_file.write_text(network)
    url, admin, server = start_server(
        tmp_path,
        str(network_file),
        db=db_url,
        cycle_interval=0.2,
        heartbeat_interval=0.3,
        lease_timeout=5.0,
        extra_args=server_args,
    )
    admin_client = Client(url, admin)
    admin_client.create_tenant("acme")
    user = Client(url, admin_client.create_user("ann", "acme").token)
    agent: subprocess.Popen[bytes] | None = None
    log = tmp_path / "agent.log"
    try:
        token = admin_client.center_token(CENTER).token
        cmd = [
            sys.executable, "-m", "computenet.agent", "--center", CENTER,
            "--server", url, "--token", token, "--network", str(network_file),
            "--state-dir", str(tmp_path / "state"), "--data-root", str(tmp_path / "data"),
        ]  # fmt: skip
        with log.open("ab") as out:
            agent = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not all(c.online for c in user.centers()):
            assert time.monotonic() < deadline, log_tail(log)
            time.sleep(0.1)
        yield LocalPlane(user, [log, tmp_path / "server.log"])
    finally:
        if agent is not None:
            stop_process(agent)
        stop_process(server)
        admin_client.close()
        user.close()
