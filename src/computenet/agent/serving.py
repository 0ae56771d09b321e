"""Service replicas at the agent: their port and their readiness probe (docs/services.md).

A replica is an ordinary job whose environment names its service
(`computenet.model.service.SERVICE_ENV`). The agent picks a free port for it,
passes it in ``$PORT`` and ``$CNET_SERVICE_PORT``, and reports RUNNING only once
an HTTP GET on that port answers (any status: the server is up), with the
``host:port`` in the report's `endpoint` (center protocol v1, an added field).

A backend whose replica listens elsewhere (Kubernetes: the pod's IP) says where
through its optional `service_address`; the agent then opens a `Relay` on its
own data host to that address, probes through it and advertises the relay's
port, and closes it with the replica (`forget`).
"""

from __future__ import annotations

import http.client
import logging
import socket
import time

from computenet.agent.jobs import HeldJob
from computenet.agent.relay import Relay
from computenet.backends.base import service_address
from computenet.model.service import PORT_ENVS, READY_PATH_ENV, SERVICE_ENV
from computenet.protocol import LeasedJob

PROBE_TIMEOUT_S = 0.25
"""How long one probe waits: it runs in the agent's loop, so it must stay short."""
PROBE_EVERY_S = 0.3
"""The least time between two probes of one replica."""

logger = logging.getLogger(__name__)

_last_probe: dict[str, float] = {}
_relays: dict[str, Relay] = {}
"""Held job key → the relay to its replica, for replicas that listen off this host."""


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


def _probe_target(held: HeldJob, data_host: str, backend: object) -> tuple[str, int] | None:
    """Where to probe the replica (host, port): its port advertised at this agent's host.

    The replica's own port on this host (probed at 127.0.0.1), or for one that
    listens elsewhere the port of the relay to it (opened once per attempt,
    probed through itself); None while that address is not known yet.
    """
    relay = _relays.get(held.key)
    if relay is not None:
        return advertised_host(data_host), relay.port
    try:
        address = service_address(backend, held.handle) if held.handle else None
    except Exception as exc:  # the cluster's API hiccuped: the next probe asks again
        logger.warning("%s: where its replica listens is unknown: %s", held.job_id, exc)
        return None
    if address is None:
        if held.handle and callable(getattr(backend, "service_address", None)):
            return None  # it listens elsewhere, but not yet (no pod IP)
        assert held.service_port is not None
        return "127.0.0.1", held.service_port
    relay = Relay(data_host or "0.0.0.0", address)
    relay.start()
    _relays[held.key] = relay
    return advertised_host(data_host), relay.port


def forget(key: str) -> None:
    """The replica of held job `key` ended here: close its relay, drop its probe state."""
    _last_probe.pop(key, None)
    relay = _relays.pop(key, None)
    if relay is not None:
        relay.close()


def close_relays() -> None:
    """Close every relay (the agent stops)."""
    for key in list(_relays):
        forget(key)


def ready_endpoint(held: HeldJob, data_host: str, backend: object = None) -> str | None:
    """``host:port`` once the replica answers its readiness probe; None until then."""
    if held.service_port is None:
        return None
    now = time.monotonic()
    if now - _last_probe.get(held.key, 0.0) < PROBE_EVERY_S:
        return None
    _last_probe[held.key] = now
    target = _probe_target(held, data_host, backend)
    if target is None:
        return None
    host, port = target
    path = held.leased.get("spec", {}).get("env", {}).get(READY_PATH_ENV, "/")
    conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    _last_probe.pop(held.key, None)
    return f"{advertised_host(data_host)}:{port}"
