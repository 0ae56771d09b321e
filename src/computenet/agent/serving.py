"""Service replicas at the agent: their port and their readiness probe (docs/services.md).

A replica is an ordinary job whose environment names its service
(`computenet.model.service.SERVICE_ENV`). The agent picks a free port for it,
passes it in ``$PORT`` and ``$CNET_SERVICE_PORT``, and reports RUNNING only once
an HTTP GET on that port answers (any status: the server is up), with the
``host:port`` in the report's `endpoint` (center protocol v1, an added field).
"""

from __future__ import annotations

import http.client
import socket
import time

from computenet.agent.jobs import HeldJob
from computenet.model.service import PORT_ENVS, READY_PATH_ENV, SERVICE_ENV
from computenet.protocol import LeasedJob

PROBE_TIMEOUT_S = 0.25
"""How long one probe waits: it runs in the agent's loop, so it must stay short."""
PROBE_EVERY_S = 0.3
"""The least time between two probes of one replica."""

_last_probe: dict[str, float] = {}


def is_replica(job: LeasedJob) -> bool:
    """Whether `job` is a service replica."""
    return SERVICE_ENV in job.spec.env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def give_port(held: HeldJob, job: LeasedJob, env: dict[str, str]) -> None:
    """For a replica: choose its port (once per attempt) and put it in `env`."""
    if not is_replica(job):
        return
    if held.service_port is None:
        held.service_port = free_port()
    for name in PORT_ENVS:
        env[name] = str(held.service_port)


def advertised_host(data_host: str) -> str:
    """The host others reach this center's replicas at (the data endpoint's host)."""
    return "127.0.0.1" if data_host in ("", "0.0.0.0", "::") else data_host


def ready_endpoint(held: HeldJob, data_host: str) -> str | None:
    """``host:port`` once the replica answers its readiness probe; None until then."""
    port = held.service_port
    if port is None:
        return None
    now = time.monotonic()
    if now - _last_probe.get(held.key, 0.0) < PROBE_EVERY_S:
        return None
    _last_probe[held.key] = now
    path = held.leased.get("spec", {}).get("env", {}).get(READY_PATH_ENV, "/")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    _last_probe.pop(held.key, None)
    return f"{advertised_host(data_host)}:{port}"
