"""A service replica on the Slurm, Ray and (fake) Kubernetes backends, end to end.

A real server and one real agent (``cnet agent --backend slurm|ray|kubernetes``)
for a one-center network; a one-replica service running
`tests/helpers/echo_model.py` is deployed. On Slurm and Ray (the real services
scripts/services.sh starts; without them the test fails under ``CI=true`` and
is skipped elsewhere) the replica must become ready with an endpoint, answer
through a real ``cnet gateway``, and come back — a new replica, ready again —
after its job is cancelled at the scheduler (``scancel``, Ray's ``stop_job``).

On Kubernetes a pod listens at its pod IP, which the gateways may not be sent
to: the backend reports that address and the agent relays to it from its own
data host (agent/relay.py); the same test runs there, with the pod deleted
(``kubectl delete pod``) in place of the scheduler's cancel, and checks that the
advertised endpoint is the relay's port, not the pod's.
The agent runs the Kubernetes backend against the in-process fake API server
(tests/helpers/kubernetes_fake.py): this module, run as a script with
``k8s-agent ARGS``, is that agent process.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from computenet.backends._external import is_local_host
from computenet.backends.base import BackendJob
from computenet.cli.supervise import cnet_argv
from computenet.errors import BackendError
from computenet.model.service import SERVICE_ENV
from computenet.protocol.services import ServiceView
from computenet.sdk import Client
from tests.helpers.processes import (
    free_port,
    log_tail,
    start_server,
    stop_process,
    wait_http,
)
from tests.helpers.services import require_service

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ECHO = REPO / "tests" / "helpers" / "echo_model.py"

NETWORK = """
name: svc-backends
time_scale: 600
data_scale: 1
centers:
  - id: c1
    region: east
    lat: 31.0
    lon: 121.0
    pools: [{chip: CPU-node, count: 4}]
    pue: 1.3
    tariff: {flat: 0.5, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 1
    tags: [region:east]
"""


@dataclass
class One:
    """A server, one agent on `backend`, a user's client, and how to reach the backend."""

    backend: str
    tmp: Path
    url: str
    network_file: Path
    user: Client
    prefix: str
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in sorted(self.tmp.glob("*.log")))

    def until(self, what: str, check: Any, timeout: float = 120.0) -> Any:
        """Poll `check` until it returns something truthy; fail with the process logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")


def _slurm_output(prefix: str) -> Path:
    """The Slurm jobs' output folder of test `prefix`, made reachable by their user."""
    out = Path(tempfile.gettempdir()) / f"cnet-svc-{prefix}"
    # Jobs run as nobody when the agent runs as root: their output folder must be
    # reachable by that user, and pytest's tmp folders are not (0700).
    out.mkdir(mode=0o711, exist_ok=True)
    out.chmod(0o711)
    return out


def _agent_args(backend: str, tmp: Path, prefix: str, env: dict[str, str]) -> list[str]:
    """The `--backend` and `--backend-opt` arguments for `backend`."""
    if backend == "slurm":
        opts = {
            "partition": "debug",
            "account": "cnet",
            "chips_as": "cpus",
            "slurm_conf": env["SLURM_CONF"],
            "output_dir": str(_slurm_output(prefix)),
            "prefix": prefix,
        }
    elif backend == "ray":
        opts = {"address": env["RAY_ADDRESS"], "prefix": prefix}
    else:
        opts = {"prefix": prefix}
    args = ["--backend", "kubernetes" if backend == "kubernetes-fake" else backend]
    for k, v in opts.items():
        args += ["--backend-opt", f"{k}={v}"]
    return args


def _cancel_at_backend(one: One) -> list[str]:
    """Cancel every live job of this test at the scheduler itself; the ids cancelled."""
    if one.backend == "kubernetes-fake":
        return [p["name"] for p in _kubectl(one, "delete") if p["phase"] == "Running"]
    if one.backend == "slurm":
        senv = {**os.environ, "SLURM_CONF": one.env["SLURM_CONF"]}
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i %j"], env=senv, capture_output=True, text=True, timeout=30
        ).stdout
        rows = (ln.partition(" ") for ln in out.splitlines())
        ids = [i for i, _, name in rows if name.startswith(one.prefix + "-")]
        if ids:
            subprocess.run(["scancel", *ids], env=senv, timeout=30, check=True)
        return ids
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(one.env["RAY_ADDRESS"])
    ids = [
        j.submission_id or ""
        for j in client.list_jobs()
        if (j.submission_id or "").startswith(one.prefix + "-") and not j.status.is_terminal()
    ]
    for sid in ids:
        client.stop_job(sid)
    return ids


def _kubectl(one: One, verb: str) -> list[dict[str, Any]]:
    """``kubectl get|delete pods`` on the fake API server inside the agent process.

    The fake lives in the agent's process, so the test asks it through a request
    file that the agent's `_kubectl_watch` thread answers: each pod's name, phase,
    podIP and container ``$PORT`` (before deletion for ``delete``).
    """
    box = one.tmp / "k8s"
    answer = box / "kubectl.out.json"
    answer.unlink(missing_ok=True)
    tmp = box / "kubectl.req.tmp"
    tmp.write_text(verb)
    tmp.rename(box / "kubectl.req")
    got: list[dict[str, Any]] = one.until(
        f"kubectl {verb}", lambda: answer.exists() and json.loads(answer.read_text()), 30
    )
    return got


SERVING = [
    pytest.param("slurm", marks=[pytest.mark.services]),
    pytest.param("ray", marks=[pytest.mark.services]),
    pytest.param("kubernetes-fake"),
]
"""The backends whose agents run replicas (Slurm and Ray on the agent's host, Kubernetes
through the agent's relay to the pod)."""


@pytest.fixture
def one(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[One]:
    backend: str = request.param
    env = require_service(backend) if backend in ("slurm", "ray") else {}
    network_file = tmp_path / "network.yaml"
    network_file.write_text(NETWORK)
    url, admin, server = start_server(
        tmp_path,
        str(network_file),
        db=db_url,
        cycle_interval=0.2,
        heartbeat_interval=0.3,
        lease_timeout=10.0,
    )
    admin_client = Client(url, admin)
    admin_client.create_tenant("acme")
    user = Client(url, admin_client.create_user("ann", "acme").token)
    prefix = f"sv{uuid.uuid4().hex[:8]}"
    o = One(backend, tmp_path, url, network_file, user, prefix, env, [server])
    try:
        token = admin_client.center_token("c1").token
        state = tmp_path / "c1" / "state"
        if backend == "kubernetes-fake":
            head = [sys.executable, "-m", "tests.integration.test_service_backends", "k8s-agent"]
        else:
            head = cnet_argv("agent")
        cmd = [
            *head, "--center", "c1", "--server", url, "--token", token,
            "--network", str(network_file), "--state-dir", str(state),
            "--data-root", str(tmp_path / "c1" / "data"),
            *_agent_args(backend, tmp_path, prefix, env),
        ]  # fmt: skip
        agent_env = {**os.environ, **env, "CNET_K8S_FAKE_DIR": str(tmp_path / "k8s")}
        with (tmp_path / "agent-c1.log").open("ab") as log:
            o.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=agent_env)
            )
        o.until("the agent online", lambda: all(c.online for c in user.centers()), 60)
        yield o
    finally:
        with contextlib.suppress(Exception):
            user.delete_service("echo")
        for proc in reversed(o.procs):
            stop_process(proc, timeout=30)
        if backend in ("slurm", "ray"):
            with contextlib.suppress(Exception):
                _cancel_at_backend(o)  # nothing of this test stays queued or running
        if backend == "slurm":
            shutil.rmtree(_slurm_output(prefix), ignore_errors=True)
        admin_client.close()
        user.close()


def _deploy(one: One) -> ServiceView:
    spec = {
        "name": "echo",
        # The system python: the job runs as another user (Slurm's --uid nobody, the
        # Ray cluster's user), which may not read the venv.
        "command": f"python3 {ECHO}",
        "chips": {"count": 1, "types": ["CPU-node"]},
        "replicas": {"min": 1, "max": 1},
        "target_inflight": 4,
        "latency": {"p99_ttfb_ms": 500},
        "budget_cny_per_hour": 50,
    }
    path = one.tmp / "echo.yaml"
    path.write_text(json.dumps(spec))
    return one.user.deploy_service(path)


def _ready(one: One) -> ServiceView | None:
    """The service once a replica of it is ready with an endpoint."""
    view = one.user.service("echo")
    return view if any(r.ready and r.endpoint for r in view.replicas) else None


def _gateway(one: One) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = one.tmp / "gateway.log"
    cmd = cnet_argv(
        "gateway", "--url", one.url, "--token", str(one.user.token), "--port", str(port),
        "--network", str(one.network_file), "--site", "c1",
    )  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    one.procs.append(proc)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, log=log)
    return f"http://127.0.0.1:{port}", proc


def _ask(gw_url: str, job_id: str) -> dict[str, Any] | None:
    """The echo model's answer through the gateway when replica `job_id` gave it."""
    try:
        r = httpx.post(f"{gw_url}/services/echo/v1/chat/completions", json={"m": 1}, timeout=10)
    except httpx.HTTPError:
        return None
    if r.status_code != 200 or r.headers.get("x-cnet-replica") != job_id:
        return None
    got: dict[str, Any] = r.json()
    return got


@pytest.mark.parametrize("one", SERVING, indirect=True)
def test_a_replica_serves_and_is_restarted_after_its_backend_job_is_cancelled(one: One) -> None:
    _deploy(one)
    view = one.until("a ready replica", lambda: _ready(one), timeout=180)
    (first,) = [r for r in view.replicas if r.ready]
    assert first.center == "c1"
    host, _, port = (first.endpoint or "").rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    if one.backend == "kubernetes-fake":
        # Advertised at the agent's host on the relay's port, not the pod's own address.
        (pod,) = [p for p in _kubectl(one, "get") if p["phase"] == "Running"]
        assert pod["port"] and int(port) != pod["port"], (first.endpoint, pod)
    # The endpoint itself is the echo model (its readiness answer names the replica slot).
    direct = httpx.get(f"http://{first.endpoint}/v1/models", timeout=10)
    assert direct.status_code == 200 and direct.json()["path"] == "/v1/models"

    gw_url, _ = _gateway(one)
    got = one.until("an answer through the gateway", lambda: _ask(gw_url, first.job_id), 60)
    assert got["path"] == "/v1/chat/completions" and got["method"] == "POST"
    assert got["body_bytes"] > 0

    # Cancel the replica's job at the scheduler itself, behind the agent's back. Nobody
    # cancelled it in the network, so the control plane refuses that end and requeues the
    # job once its lease lapses (a new attempt); a job that failed instead is replaced by
    # the keeper with a new replica job. Either way a new model server must answer.
    attempts = one.user.job(first.job_id).attempts
    cancelled = _cancel_at_backend(one)
    assert len(cancelled) == 1, cancelled

    def restarted() -> ServiceView | None:
        view = one.user.service("echo")
        for r in view.replicas:
            if r.ready and (r.job_id != first.job_id or one.user.job(r.job_id).attempts > attempts):
                return view
        return None

    after = one.until("a restarted replica to be ready", restarted, timeout=180)
    (second,) = [r for r in after.replicas if r.ready]
    again = one.until(
        "an answer from the restarted replica", lambda: _ask(gw_url, second.job_id), 60
    )
    assert again["pid"] != got["pid"]  # another model server process answered


@pytest.mark.parametrize("backend", SERVING[:2])
def test_slurm_and_ray_refuse_a_replica_when_no_node_is_the_agents_host(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replicas are pinned to the node on the agent's host; a cluster without one (the
    # agent on a login node) must refuse the replica, not run it where no probe reaches.
    env = require_service(backend)
    module = importlib.import_module(f"computenet.backends.{backend}")
    monkeypatch.setattr(module, "is_local_host", lambda host: False)
    prefix = f"sv{uuid.uuid4().hex[:8]}"
    made: Any
    if backend == "slurm":
        made = module.SlurmBackend(
            state_dir=tmp_path / "state", pools={"CPU-node": 4}, chips_as="cpus",
            partition="debug", account="cnet", slurm_conf=env["SLURM_CONF"], prefix=prefix,
            output_dir=_slurm_output(prefix),
        )  # fmt: skip
    else:
        made = module.RayBackend(pools={"CPU-node": 4}, address=env["RAY_ADDRESS"], prefix=prefix)
    job = BackendJob(
        job_id="j-replica", attempt=1, command="sleep 60", chip="CPU-node", count=1,
        env={SERVICE_ENV: "echo", "PORT": "8000"},
    )  # fmt: skip
    with pytest.raises(BackendError, match="cannot run a service replica here"):
        made.submit(job, "j-replica:1")
    assert made.find("j-replica:1") is None  # nothing reached the scheduler
    # An ordinary job is not pinned and still runs.
    plain = BackendJob(job_id="j-plain", attempt=1, command="true", chip="CPU-node", count=1)
    try:
        assert made.submit(plain, "j-plain:1")
    finally:
        if backend == "slurm":
            shutil.rmtree(_slurm_output(prefix), ignore_errors=True)


def test_the_agents_own_host_is_told_from_other_nodes() -> None:
    import socket

    assert is_local_host("127.0.0.1") and is_local_host("localhost")
    assert is_local_host(socket.gethostname())
    # A documentation-only address (TEST-NET-3) and a name that cannot resolve are not.
    assert not is_local_host("203.0.113.7")
    assert not is_local_host("no-such-node.invalid") and not is_local_host("")


# ---------------------------------------------------------------- the k8s agent process


def fake_kubernetes_backend(**options: Any) -> Any:
    """`KubernetesBackend` over an in-process fake API server (one 8-CPU node)."""
    from computenet.backends.kubernetes import KubernetesBackend
    from tests.helpers.kubernetes_fake import FakeKubernetes, FakeNode

    workdir = Path(os.environ["CNET_K8S_FAKE_DIR"])
    workdir.mkdir(parents=True, exist_ok=True)
    node = FakeNode("cpu-1", {"cpu": "8", "memory": "32Gi"})
    cluster = FakeKubernetes(nodes=[node], workdir=workdir)
    known = inspect.signature(KubernetesBackend).parameters
    options = {k: v for k, v in options.items() if k in known}
    threading.Thread(target=_kubectl_watch, args=(cluster, workdir), daemon=True).start()
    return KubernetesBackend(**options, batch_api=cluster.batch_api(), core_api=cluster.core_api())


def _kubectl_watch(cluster: Any, workdir: Path) -> None:
    """Answer the test's `_kubectl` requests against the in-process fake (agent side)."""
    core = cluster.core_api()
    request = workdir / "kubectl.req"
    while True:
        time.sleep(0.1)
        if not request.exists():
            continue
        verb = request.read_text().strip()
        request.unlink()
        pods = []
        for pod in core.list_namespaced_pod("default").items or []:
            env = {e.name: e.value for e in pod.spec.containers[0].env or []}
            pods.append(
                {
                    "name": pod.metadata.name,
                    "phase": pod.status.phase,
                    "pod_ip": pod.status.pod_ip,
                    "port": int(env["PORT"]) if env.get("PORT") else None,
                }
            )
            if verb == "delete":
                core.delete_namespaced_pod(pod.metadata.name, "default")
        tmp = workdir / "kubectl.out.tmp"
        tmp.write_text(json.dumps(pods))
        tmp.rename(workdir / "kubectl.out.json")


def _k8s_agent(argv: list[str]) -> int:
    """``cnet agent ARGS`` whose ``kubernetes`` backend talks to the fake API server."""
    from computenet.agent.__main__ import main
    from computenet.backends import registry

    registry.BACKENDS["kubernetes"] = ("__main__", "fake_kubernetes_backend")
    return int(main(argv))


if __name__ == "__main__" and sys.argv[1:2] == ["k8s-agent"]:
    sys.exit(_k8s_agent(sys.argv[2:]))
