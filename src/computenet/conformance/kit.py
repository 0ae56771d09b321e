"""The conformance kit: play a control plane, start a center with a command, drive it.

`run_kit(command)` starts a real ComputeNet server (127.0.0.1, fresh SQLite
database) on a two-center network — ``tested``, the center under test, with
`TESTED_POOLS`, and ``peer``, a center the kit plays whose data endpoint
serves the inputs — and starts `command` with, in its environment:

- ``CNET_SERVER_URL``: where to call the control plane (the kit's recording
  proxy, `proxy.RecordingProxy`, which can cut the center off);
- ``CNET_CENTER_ID``: ``tested``;
- ``CNET_CENTER_TOKEN_FILE``: a 0600 file holding the center's token;
- ``CNET_POOLS``: the chips the network declares for it (``H100=4``);
- ``XDG_STATE_HOME``: a fresh directory, also the command's working directory.

Then it drives the center through the scenarios in order, each judged by what
the control plane and the proxy saw and by the jobs' own traces (a job of the
kit touches a file while it runs, so the kit sees when it really stopped).
Every wait is bounded by `timeout_s`. docs/center-protocol.md ("Conformance")
says what each scenario checks; `scenarios` has them, `driver.run_kit` runs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from computenet.conformance.peer import PeerCenter
from computenet.conformance.proxy import Call, RecordingProxy
from computenet.protocol.api import JobDetail
from computenet.protocol.fencing import LeaseRule, lease_rule
from computenet.sdk import Client

log = logging.getLogger(__name__)

TESTED = "tested"
PEER = "peer"
TESTED_POOLS = {"H100": 4}
TENANT = "kit"
LEASE_TIMEOUT_S = 6.0
HEARTBEAT_INTERVAL_S = 0.5
INPUT_BYTES = 256 * 1024

NETWORK_YAML = f"""
name: conformance
time_scale: 600
data_scale: 1
centers:
  - id: {TESTED}
    region: east
    lat: 31.0
    lon: 121.0
    pools: [{{chip: H100, count: {TESTED_POOLS["H100"]}}}]
    pue: 1.2
    tariff: {{flat: 0.5, peak: 1, valley: 1}}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 1
  - id: {PEER}
    region: west
    lat: 37.5
    lon: 105.2
    pools: [{{chip: A100, count: 1}}]
    pue: 1.2
    tariff: {{flat: 0.5, peak: 1, valley: 1}}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 1
links:
  - {{a: {TESTED}, b: {PEER}, bandwidth_gbps: 10, latency_ms: 5, price_per_gb: 0.01}}
"""


@dataclass
class Result:
    """One scenario's verdict and why."""

    name: str
    passed: bool
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        """``PASS name: detail`` (or FAIL)."""
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


class Failed(Exception):
    """A scenario's check failed; the message says what the center did wrong."""


@dataclass
class Kit:
    """Everything a run holds: processes, proxy, peer, clients, the jobs' trace directory."""

    command: Sequence[str]
    timeout_s: float
    work: Path
    server: subprocess.Popen[bytes] | None = None
    center: subprocess.Popen[bytes] | None = None
    proxy: RecordingProxy | None = None
    peer: PeerCenter | None = None
    client: Client | None = None  # the kit tenant's user
    db_url: str = ""
    url: str = ""
    token_file: Path | None = None
    traces: Path | None = None
    jobs: dict[str, str] = field(default_factory=dict)  # scenario's job name → job id
    rule: LeaseRule = field(default_factory=lambda: lease_rule(LEASE_TIMEOUT_S))

    @property
    def user(self) -> Client:
        """The user API client of the kit's tenant (once the server runs)."""
        assert self.client is not None, "the control plane has not started"
        return self.client

    # -------------------------------------------------------------- processes

    def start_server(self) -> None:
        """A real control plane on a free port with the kit's network and short timings."""
        from computenet.cli.supervise import free_port, wait_http
        from computenet.server import admin

        net_file = self.work / "network.yaml"
        net_file.write_text(NETWORK_YAML)
        self.db_url = f"sqlite:///{self.work / 'control-plane.db'}"
        admin.create_tenant(self.db_url, TENANT)
        admin.bootstrap_admin(self.db_url)
        user = admin.create_user(self.db_url, "kit-user", TENANT)
        from computenet.catalog import load_network

        net = load_network(net_file)
        tokens = {
            c.id: admin.create_center_token(self.db_url, c.id, net).token for c in net.centers
        }
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable, "-m", "computenet.server", "--db", self.db_url,
            "--host", "127.0.0.1", "--port", str(port), "--network", str(net_file),
            "--heartbeat-interval", str(HEARTBEAT_INTERVAL_S),
            "--lease-timeout", str(LEASE_TIMEOUT_S), "--cycle-interval", "0.2",
            "--log-level", "warning",
        ]  # fmt: skip
        log_file = (self.work / "control-plane.log").open("ab")
        self.server = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log_file.close()
        wait_http(f"{self.url}/healthz", timeout_s=60)
        self.client = Client(self.url, user.token)
        self.proxy = RecordingProxy(self.url)
        from computenet.cli.supervise import write_secret

        self.token_file = write_secret(self.work / "secrets" / f"{TESTED}.token", tokens[TESTED])
        # The jobs' traces: world-writable like /tmp, since a center may run jobs as other uids.
        self.work.chmod(0o711)
        self.traces = self.work / "traces"
        self.traces.mkdir()
        self.traces.chmod(0o1777)
        self._start_peer(tokens[PEER])

    def _start_peer(self, token: str) -> None:
        data = self.work / "peer-data"
        area = data / "tenants" / TENANT
        area.mkdir(parents=True)
        good = secrets.token_bytes(INPUT_BYTES)
        (area / "corpus.bin").write_bytes(good)
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF  # same size, one byte off: only a checksum tells
        (area / "corrupt.bin").write_bytes(bytes(bad))
        self.peer = PeerCenter(self.url, PEER, token, data, {"A100": 1})
        self.peer.start()
        sha = hashlib.sha256(good).hexdigest()
        for name in ("corpus", "corrupt"):
            self.user.add_dataset(name, PEER, f"tenants/{TENANT}/{name}.bin", len(good), sha)

    def start_center(self) -> None:
        """Start the command under test in its own session, with the kit's environment."""
        assert self.proxy is not None and self.token_file is not None
        home = self.work / "center"
        home.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "CNET_SERVER_URL": self.proxy.url,
            "CNET_CENTER_ID": TESTED,
            "CNET_CENTER_TOKEN_FILE": str(self.token_file),
            "CNET_POOLS": ",".join(f"{c}={n}" for c, n in TESTED_POOLS.items()),
            "XDG_STATE_HOME": str(home / "state"),
        }
        for secret in ("CNET_TOKEN", "CNET_CENTER_TOKEN", "CNET_ADMIN_TOKEN", "CNET_CONFIG"):
            env.pop(secret, None)
        out = (self.work / "center.log").open("ab")
        try:
            self.center = subprocess.Popen(
                list(self.command),
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise Failed(f"cannot start the center: {exc}") from None
        finally:
            out.close()

    def stop_center(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM the center's process group, SIGKILL what is left after `grace_s`."""
        proc = self.center
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        _signal_group(proc.pid, signal.SIGKILL)  # what it started and left behind, too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        return proc.returncode

    def close(self) -> None:
        """Stop everything this run started (by PID), server last."""
        self.stop_center()
        if self.peer is not None:
            self.peer.close()
        if self.proxy is not None:
            self.proxy.close()
        if self.client is not None:
            self.client.close()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(timeout=5)

    # ----------------------------------------------------------------- jobs

    def submit(self, name: str, command: str, inputs: Sequence[str] = ()) -> str:
        """Submit a one-chip H100 job (only the center under test has H100s)."""
        view = self.user.submit(
            {
                "name": name,
                "class": "llm-train",
                "command": command,
                "chips": {"count": 1, "types": ["H100"]},
                "work": {"cu_hours": 0.01},
                "inputs": list(inputs),
            }
        )
        self.jobs[name] = view.id
        return str(view.id)

    def trace(self, name: str) -> Path:
        """The file a looping job of this name touches while it runs."""
        assert self.traces is not None
        return self.traces / f"{name}.alive"

    def looping(self, name: str) -> str:
        """A command that touches its trace file every 0.2 s until stopped."""
        return f"while :; do touch {self.trace(name)}; sleep 0.2; done"

    def answered(self, path_regex: str, since: float = 0.0) -> list[Call]:
        """Calls to `path_regex` since `since` that the control plane answered 200."""
        assert self.proxy is not None
        return [c for c in self.proxy.calls_to(path_regex, since) if c.status == 200]

    def job(self, job_id: str) -> JobDetail:
        """The job as its user sees it."""
        return self.user.job(job_id)

    def logs(self, job_id: str) -> str:
        """The job's whole log as its user sees it."""
        text, offset = "", 0
        while True:
            chunk = self.user.logs(job_id, offset)
            text += str(chunk.text)
            if chunk.next_offset == offset:
                return text
            offset = chunk.next_offset

    def wait_state(self, job_id: str, states: set[str], what: str) -> JobDetail:
        """Wait (within the timeout) until the job is in one of `states`."""
        view: JobDetail = self.until(what, lambda: _in(self.job(job_id), states))
        return view

    def until(self, what: str, check: Callable[[], Any], timeout_s: float | None = None) -> Any:
        """Poll `check` until truthy; Failed naming `what` at the timeout."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            self.center_alive()
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise Failed(f"timed out after {timeout_s or self.timeout_s:g}s waiting for {what}")
            time.sleep(0.1)

    def center_alive(self) -> None:
        """Failed when the center under test has exited."""
        if self.center is not None and self.center.poll() is not None:
            raise Failed(f"the center exited with status {self.center.returncode}")

    def stopped_at(self, name: str, timeout_s: float, quiet_s: float = 1.0) -> float | None:
        """When the looping job `name` last touched its trace, once quiet for `quiet_s`.

        None if it still runs after `timeout_s`.
        """
        path = self.trace(name)
        deadline = time.monotonic() + timeout_s
        last, still_since = trace_mtime(path), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = trace_mtime(path)
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= quiet_s:
                return last
        return None

    def running_trace(self, name: str) -> None:
        """Wait until the looping job `name` really runs (its trace is fresh)."""
        path = self.trace(name)
        self.until(
            f"job {name} to start touching its trace", lambda: time.time() - trace_mtime(path) < 1
        )


def trace_mtime(path: Path) -> float:
    """When a job last touched `path` (0 when it never did)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _in(view: JobDetail, states: set[str]) -> JobDetail | None:
    return view if view.state.value in states else None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def event_states(view: JobDetail) -> list[str]:
    """The states in a job's timeline, in order."""
    return [e.state.value for e in view.events if e.state is not None]


def absolute_paths(command: Sequence[str]) -> list[str]:
    """`command` with each word that names an existing relative path made absolute.

    The center runs in a fresh directory of its own, so ``python center.py``
    given from the caller's directory still finds ``center.py``.
    """
    out = []
    for word in command:
        if word and not word.startswith("-") and not os.path.isabs(word) and os.path.exists(word):
            word = os.path.abspath(word)
        out.append(word)
    return out
