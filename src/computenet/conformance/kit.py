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

Then it drives the center through `SCENARIOS` in order, each judged by what
the control plane and the proxy saw and by the jobs' own traces (a job of the
kit touches a file while it runs, so the kit sees when it really stopped).
Every wait is bounded by `timeout_s`. docs/center-protocol.md ("Conformance")
says what each scenario checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from computenet.conformance.peer import PeerCenter
from computenet.conformance.proxy import RecordingProxy
from computenet.errors import ComputeNetError
from computenet.protocol.fencing import lease_rule

log = logging.getLogger(__name__)

TESTED = "tested"
PEER = "peer"
TESTED_POOLS = {"H100": 4}
TENANT = "kit"
LEASE_TIMEOUT_S = 6.0
HEARTBEAT_INTERVAL_S = 0.5
INPUT_BYTES = 256 * 1024

SCENARIOS = (
    "register-and-heartbeat",
    "lease-stage-run",
    "exit-code",
    "corrupt-source-refused",
    "retries-idempotent",
    "cancel",
    "stale-attempt-refused",
    "lease-lost-when-cut-off",
    "unknown-protocol-version",
)
"""Every scenario, in the order they run."""

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

# What the kit's main job prints: several appends, multibyte characters.
_OK_LINES = ("conformance: héllo, 世界 ✓", "line 2 — ünïcödé", "done")
_RETRY_LINES = ("retry α", "retry β", "retry γ")


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
    user: Any = None
    db_url: str = ""
    url: str = ""
    token_file: Path | None = None
    traces: Path | None = None
    jobs: dict[str, str] = field(default_factory=dict)  # scenario's job name → job id
    rule: Any = field(default_factory=lambda: lease_rule(LEASE_TIMEOUT_S))

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
        from computenet.sdk import Client

        self.user = Client(self.url, user.token)
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
        if self.user is not None:
            self.user.close()
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

    def answered(self, path_regex: str, since: float = 0.0) -> list[Any]:
        """Calls to `path_regex` since `since` that the control plane answered 200."""
        assert self.proxy is not None
        return [c for c in self.proxy.calls_to(path_regex, since) if c.status == 200]

    def job(self, job_id: str) -> Any:
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

    def wait_state(self, job_id: str, states: set[str], what: str) -> Any:
        """Wait (within the timeout) until the job is in one of `states`."""
        return self.until(what, lambda: _in(self.job(job_id), states))

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
        last, still_since = _mtime(path), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = _mtime(path)
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= quiet_s:
                return last
        return None

    def running_trace(self, name: str) -> None:
        """Wait until the looping job `name` really runs (its trace is fresh)."""
        path = self.trace(name)
        self.until(
            f"job {name} to start touching its trace", lambda: time.time() - _mtime(path) < 1
        )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _in(view: Any, states: set[str]) -> Any:
    return view if str(view.state) in states or view.state.value in states else None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _states(view: Any) -> list[str]:
    return [e.state.value for e in view.events if e.state is not None]


# ----------------------------------------------------------------- scenarios


def register_and_heartbeat(kit: Kit) -> str:
    """The center registers (protocol 1, declared capacity, a data URL) and heartbeats."""
    assert kit.proxy is not None
    t0 = time.time()
    regs = kit.until(
        "a successful register",
        lambda: kit.answered(r"/center/v1/register$"),
    )
    body = regs[0].body or {}
    version = str(body.get("protocol_version", "1"))
    if version.split(".")[0] != "1":
        raise Failed(f"registered with protocol_version {version!r}, not 1")
    chips = {p.get("chip") for p in body.get("capacity", [])}
    if not chips or not chips <= set(TESTED_POOLS):
        raise Failed(
            f"registered capacity {body.get('capacity')} is not the declared {TESTED_POOLS}"
        )
    since = regs[0].received
    beats = kit.until(
        "three acknowledged heartbeats",
        lambda: (lambda hb: hb if len(hb) >= 3 else None)(
            kit.answered(r"/center/v1/heartbeat$", since)
        ),
    )
    gaps = [b.received - a.received for a, b in itertools.pairwise(beats)]
    slowest = max(gaps)
    if slowest > kit.rule.fence_after_s:
        raise Failed(
            f"heartbeats {slowest:.1f}s apart, over fence_after_s {kit.rule.fence_after_s}"
        )
    online = kit.until(
        "the control plane to show the center online",
        lambda: any(c.id == TESTED and c.online for c in kit.user.centers()),
    )
    assert online
    return (
        f"registered {regs[0].received - t0:.1f}s after the first check, protocol {version},"
        f" capacity {sorted(chips)}; heartbeats every ≤{slowest:.2f}s"
    )


def submit_batch(kit: Kit) -> None:
    """The jobs of the run scenarios, all at once (they fit the center's chips together)."""
    assert kit.proxy is not None
    ok = "; sleep 0.5; ".join(f"printf '%s\\n' '{line}'" for line in _OK_LINES)
    kit.submit("run", ok, inputs=["corpus"])
    kit.submit("exit-code", "printf 'failing\\n'; exit 3")
    assert kit.traces is not None
    kit.submit("corrupt", f"touch {kit.traces / 'corrupt.ran'}; echo ran", inputs=["corrupt"])
    retry = "; sleep 0.6; ".join(f"printf '%s\\n' '{line}'" for line in _RETRY_LINES)
    rid = kit.submit("retry", retry)
    kit.proxy.lose_reply_once(rf"/center/v1/jobs/{rid}/(logs|status|usage)$")


def lease_stage_run(kit: Kit) -> str:
    """Lease → STAGING → fetch from the peer with a ticket → replica → RUNNING → SUCCEEDED."""
    assert kit.proxy is not None and kit.peer is not None
    jid = kit.jobs["run"]
    done = kit.wait_state(jid, {"SUCCEEDED", "FAILED", "CANCELLED"}, "the staged job to end")
    if done.state.value != "SUCCEEDED":
        raise Failed(f"ended {done.state.value} ({'; '.join(done.reasons)})")
    states = _states(done)
    tail = [s for s in states if s in ("STAGING", "RUNNING", "SUCCEEDED")]
    if tail != ["STAGING", "RUNNING", "SUCCEEDED"]:
        raise Failed(
            f"reported {tail}; a job with inputs to fetch goes STAGING, RUNNING, SUCCEEDED"
        )
    if done.exit_code not in (0, None):
        raise Failed(f"SUCCEEDED with exit code {done.exit_code}")
    fetched = [f for f in kit.peer.fetches if f.dataset == "corpus" and f.status == 200]
    if not fetched:
        refused = [f.problem for f in kit.peer.fetches if f.dataset == "corpus"]
        raise Failed(f"never fetched the input from the peer with a valid ticket ({refused})")
    if fetched[0].center != TESTED:
        raise Failed(f"fetched naming itself {fetched[0].center!r} in X-CNet-Center")
    (ds,) = [d for d in kit.user.datasets() if d.id == "corpus"]
    if TESTED not in {r.get("center") for r in ds.replicas}:
        raise Failed("did not report its verified copy (POST /center/v1/datasets/corpus/replicas)")
    want = "".join(f"{line}\n" for line in _OK_LINES)
    got = kit.logs(jid)
    if got != want:
        raise Failed(f"log is {got!r}, the job printed {want!r}")
    appends = [c for c in kit.proxy.calls_to(rf"/center/v1/jobs/{jid}/logs$") if c.status]
    if any(c.status != 200 for c in appends):
        bad = next(c for c in appends if c.status != 200)
        raise Failed(f"a log append was refused {bad.status}: {bad.answer}")
    usage = [
        c.body for c in kit.proxy.calls_to(rf"/center/v1/jobs/{jid}/usage$") if c.status == 200
    ]
    if not usage:
        raise Failed("no usage report (POST /center/v1/jobs/{id}/usage) before the final state")
    u = usage[-1]
    staged = int(u.get("bytes_staged", 0)) or sum(
        int(t.get("bytes", 0)) for t in u.get("transfers", [])
    )
    if staged != INPUT_BYTES:
        raise Failed(f"usage says {staged} bytes staged; it fetched {INPUT_BYTES}")
    sources = {u.get("staged_from")} | {t.get("source") for t in u.get("transfers", [])}
    if PEER not in sources:
        raise Failed(f"usage does not name the source center {PEER!r}: {u}")
    return (
        f"staged {INPUT_BYTES} bytes from {PEER} (ticket checked, sha256 verified, replica"
        f" reported), {len(appends)} log append(s), usage run {u.get('run_real_s')}s"
    )


def exit_code(kit: Kit) -> str:
    """A command that exits 3 ends FAILED with exit code 3 and its output."""
    jid = kit.jobs["exit-code"]
    done = kit.wait_state(jid, {"SUCCEEDED", "FAILED", "CANCELLED"}, "the failing job to end")
    if (done.state.value, done.exit_code) != ("FAILED", 3):
        raise Failed(f"ended {done.state.value} with exit code {done.exit_code}; want FAILED, 3")
    if kit.logs(jid) != "failing\n":
        raise Failed(f"log is {kit.logs(jid)!r}, want 'failing\\n'")
    return "FAILED with exit code 3 and its output"


def corrupt_source_refused(kit: Kit) -> str:
    """An input whose only source sends wrong bytes: the job never runs, no replica."""
    assert kit.traces is not None
    jid = kit.jobs["corrupt"]
    done = kit.wait_state(jid, {"SUCCEEDED", "FAILED", "CANCELLED"}, "the corrupt-input job")
    if done.state.value != "FAILED":
        raise Failed(f"ended {done.state.value}; a job whose inputs cannot be had is FAILED")
    if "RUNNING" in _states(done) or (kit.traces / "corrupt.ran").exists():
        raise Failed("ran the job on an input whose sha256 does not match")
    (ds,) = [d for d in kit.user.datasets() if d.id == "corrupt"]
    if TESTED in {r.get("center") for r in ds.replicas}:
        raise Failed("reported the corrupt copy as a replica")
    return f"FAILED before running ({'; '.join(done.reasons)[:80]})"


def retries_idempotent(kit: Kit) -> str:
    """The first answer to each log, status and usage call is lost: the center resends."""
    assert kit.proxy is not None
    jid = kit.jobs["retry"]
    done = kit.wait_state(
        jid, {"SUCCEEDED", "FAILED", "CANCELLED"}, "the job whose answers are lost"
    )
    if done.state.value != "SUCCEEDED":
        raise Failed(f"ended {done.state.value} ({'; '.join(done.reasons)})")
    want = "".join(f"{line}\n" for line in _RETRY_LINES)
    got = kit.logs(jid)
    if got != want:
        raise Failed(f"log is {got!r} after resent appends, want {want!r}")
    calls = kit.proxy.calls_to(rf"/center/v1/jobs/{jid}/")
    lost = [c for c in calls if c.lost == "lose-once"]
    kinds = {c.path.rsplit("/", 1)[1] for c in lost}
    for kind in ("logs", "status"):
        if kind not in kinds:
            raise Failed(f"made no {kind} call whose answer could be lost")
    for c in lost:
        # A resend may come after the job is final (the lost answer was the final status's).
        if not _resent(kit, c, within_s=5.0):
            raise Failed(
                f"did not resend {c.path.rsplit('/', 1)[1]} {c.body} after losing its answer"
            )
    return f"{len(lost)} answers lost, each call resent, log and state exactly once"


def _resent(kit: Kit, lost: Any, within_s: float) -> bool:
    """Whether the call whose answer was `lost` is sent again and answered within `within_s`."""
    assert kit.proxy is not None
    deadline = time.monotonic() + within_s
    while True:
        again = kit.proxy.calls_to(re.escape(lost.path) + "$", lost.received + 1e-6)
        if any(d.status == 200 and _resends(lost.body, d.body) for d in again):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _resends(lost: Any, later: Any) -> bool:
    """Whether call body `later` repeats `lost`: the same report, or logs that cover it."""
    if not isinstance(lost, dict) or not isinstance(later, dict):
        return False
    if lost.get("attempt") != later.get("attempt"):
        return False
    if "offset" in lost:  # a log append may be resent with more text behind it
        start, end = int(lost["offset"]), int(lost["offset"]) + len(str(lost["text"]).encode())
        at = int(later.get("offset", -1))
        return at <= start and at + len(str(later.get("text", "")).encode()) >= end
    if "state" in lost:
        return bool(lost["state"] == later.get("state"))
    return True  # usage: the same attempt's usage again


def cancel(kit: Kit) -> str:
    """A user cancels a running job: the center stops it and reports CANCELLED."""
    jid = kit.submit("cancel", kit.looping("cancel"))
    kit.wait_state(jid, {"RUNNING"}, "the job to run")
    kit.running_trace("cancel")
    asked = time.time()
    kit.user.cancel(jid)
    bound = 2 * HEARTBEAT_INTERVAL_S + kit.rule.stop_grace_s + 2.0
    stopped = kit.stopped_at("cancel", bound + 3.0)
    if stopped is None or stopped - asked > bound:
        ran = "still runs" if stopped is None else f"ran {stopped - asked:.1f}s"
        raise Failed(f"the job {ran} after the cancel (bound {bound:.1f}s)")
    done = kit.wait_state(jid, {"CANCELLED", "SUCCEEDED", "FAILED"}, "CANCELLED")
    if done.state.value != "CANCELLED":
        raise Failed(f"ended {done.state.value} after a cancel")
    return f"stopped {max(0.0, stopped - asked):.1f}s after the cancel (bound {bound:.1f}s)"


def stale_attempt_refused(kit: Kit) -> str:
    """The control plane takes a running job back: reports of the old attempt get 409, it stops."""
    assert kit.proxy is not None
    jid = kit.submit("stale", kit.looping("stale"))
    kit.wait_state(jid, {"RUNNING"}, "the job to run")
    kit.running_trace("stale")
    switched = time.time()
    _take_back(kit, jid)
    bound = 2 * HEARTBEAT_INTERVAL_S + kit.rule.stop_grace_s + 2.0
    stopped = kit.stopped_at("stale", bound + 3.0)
    if stopped is None or stopped - switched > bound:
        ran = "still runs" if stopped is None else f"ran {stopped - switched:.1f}s"
        raise Failed(f"the job {ran} after its lease was taken back (bound {bound:.1f}s)")
    time.sleep(2 * HEARTBEAT_INTERVAL_S)
    late = switched + bound
    listed = [
        c for c in kit.proxy.calls_to(r"/center/v1/heartbeat$", late)
        if jid in (c.body or {}).get("running", [])
    ]  # fmt: skip
    if listed:
        raise Failed(f"still lists the job in heartbeats {time.time() - switched:.1f}s later")
    reports = kit.proxy.calls_to(rf"/center/v1/jobs/{jid}/", switched)
    accepted = [c for c in reports if c.status is not None and 200 <= c.status < 300]
    if accepted:
        raise Failed(f"the control plane accepted {accepted[0].path} of the old attempt")
    if len(reports) > 10:
        raise Failed(f"sent {len(reports)} refused reports of the old attempt: stop on 409")
    view = kit.job(jid)
    if view.state.value != "CANCELLED":
        raise Failed(f"the job is {view.state.value} after the old attempt's reports")
    codes = sorted({c.status for c in reports if c.status})
    return (
        f"stopped {max(0.0, stopped - switched):.1f}s after the lease moved;"
        f" old attempt's reports answered {codes or 'none sent'}"
    )


def _take_back(kit: Kit, job_id: str) -> None:
    """What a lost lease does at the control plane, now: the job leaves this center.

    Then it is cancelled in the same transaction, so that nothing leases it again.
    """
    from computenet.model import JobState
    from computenet.server.reconciler import lose
    from computenet.store import jobs as job_store
    from computenet.store.db import Database

    now = datetime.fromisoformat(str(kit.user.network()["now"]))
    db = Database(kit.db_url)
    try:
        with db.write() as s:
            job = job_store.get_job(s, job_id, for_update=True)
            assert job is not None
            lose(s, job, TESTED, now, "taken back by the conformance kit")
            job.cancel_requested = True
            job.finished_at = now
            job_store.transition(s, job, JobState.CANCELLED, now, "cancelled by the kit")
    finally:
        db.dispose()


def lease_lost_when_cut_off(kit: Kit) -> str:
    """Cut off mid-run: the center stops the job before the control plane may lease it again."""
    assert kit.proxy is not None
    jid = kit.submit("cut", kit.looping("cut"))
    kit.wait_state(jid, {"RUNNING"}, "the job to run")
    kit.running_trace("cut")
    kit.proxy.set_mode("cut")
    cut_at = time.time()
    try:
        acked = [
            c for c in kit.proxy.calls_to(r"/center/v1/heartbeat$")
            if c.delivered and c.received <= cut_at
        ]  # fmt: skip
        last = acked[-1].received if acked else cut_at
        rule = kit.rule
        stopped = kit.stopped_at("cut", rule.requeue_after_s + 3.0)
        if stopped is None or stopped - last >= rule.requeue_after_s:
            ran = "still runs" if stopped is None else f"ran {stopped - last:.1f}s"
            raise Failed(
                f"the job {ran} after the last acknowledged heartbeat: the control plane may"
                f" lease it again after {rule.requeue_after_s:g}s (fence_after_s"
                f" {rule.fence_after_s:g} + stop_grace_s {rule.stop_grace_s:g})"
            )
        kit.wait_state(jid, {"PENDING"}, "the control plane to take the job back")
        kit.user.cancel(jid)
    finally:
        kit.proxy.set_mode("pass")
    back = time.time()
    kit.until(
        "an acknowledged heartbeat after the link came back",
        lambda: kit.answered(r"/center/v1/heartbeat$", back),
    )
    time.sleep(1.0)
    if time.time() - _mtime(kit.trace("cut")) < 1.0:
        raise Failed("the job runs again after the link came back")
    return (
        f"stopped {stopped - last:.1f}s after the last acknowledged heartbeat (fence"
        f" {rule.fence_after_s:g}s + grace {rule.stop_grace_s:g}s; requeue at"
        f" {rule.requeue_after_s:g}s); back online after the cut"
    )


def unknown_protocol_version(kit: Kit) -> str:
    """Restarted against a control plane that speaks only protocol 2: it stops, non-zero."""
    assert kit.proxy is not None
    kit.stop_center()
    kit.proxy.answer(
        r"/center/v1/register$",
        422,
        {
            "error": "protocol version 1 is not supported",
            "field": "protocol_version",
            "hint": "this control plane speaks center protocol 2",
        },
    )
    since = time.time()
    kit.start_center()
    assert kit.center is not None
    try:
        code = kit.center.wait(timeout=min(kit.timeout_s, 30.0))
    except subprocess.TimeoutExpired:
        raise Failed(
            "still running 30s after register was refused with 422 protocol_version"
        ) from None
    finally:
        kit.proxy.clear_faults()
    if code == 0:
        raise Failed("exited 0 after its registration was refused")
    regs = kit.proxy.calls_to(r"/center/v1/register$", since)
    later = kit.proxy.calls_to(r"/center/v1/(lease|heartbeat|jobs/)", since)
    if later:
        raise Failed(f"called {later[0].path} without being registered")
    return f"exited with status {code} after {len(regs)} refused register call(s)"


_RUNNERS: dict[str, Callable[[Kit], str]] = {
    "register-and-heartbeat": register_and_heartbeat,
    "lease-stage-run": lease_stage_run,
    "exit-code": exit_code,
    "corrupt-source-refused": corrupt_source_refused,
    "retries-idempotent": retries_idempotent,
    "cancel": cancel,
    "stale-attempt-refused": stale_attempt_refused,
    "lease-lost-when-cut-off": lease_lost_when_cut_off,
    "unknown-protocol-version": unknown_protocol_version,
}
_BATCH = {"lease-stage-run", "exit-code", "corrupt-source-refused", "retries-idempotent"}


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


def run_kit(
    command: Sequence[str],
    *,
    timeout_s: float = 60.0,
    only: Sequence[str] = (),
    on_result: Callable[[Result], None] | None = None,
) -> tuple[list[Result], Path]:
    """Run the scenarios (`only`: a subset; register always runs) against `command`.

    Returns the results and the work directory (kept, with the center's and the
    control plane's logs, when a scenario failed). `on_result` sees each result
    as soon as it is known.
    """
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        raise ComputeNetError(
            f"unknown scenario {unknown[0]!r}",
            field="--scenario",
            hint="one of " + ", ".join(SCENARIOS),
        )
    wanted = [s for s in SCENARIOS if not only or s in only or s == SCENARIOS[0]]
    command = absolute_paths(command)
    results: list[Result] = []
    work = Path(tempfile.mkdtemp(prefix="cnet-conformance-"))
    kit = Kit(command=command, timeout_s=timeout_s, work=work)

    def record(name: str, started: float, passed: bool, detail: str) -> None:
        res = Result(name, passed, detail, round(time.monotonic() - started, 1))
        results.append(res)
        if on_result is not None:
            on_result(res)

    try:
        try:
            kit.start_server()
            kit.start_center()
        except (Failed, ComputeNetError, OSError) as exc:
            for name in wanted:
                record(name, time.monotonic(), False, f"the kit could not start: {exc}")
            return results, work
        batch_sent = False
        for name in wanted:
            started = time.monotonic()
            try:
                if name in _BATCH and not batch_sent:
                    submit_batch(kit)
                    batch_sent = True
                detail = _RUNNERS[name](kit)
            except Failed as exc:
                record(name, started, False, str(exc))
            except Exception as exc:  # the kit's own trouble still ends in a FAIL line
                log.debug("scenario %s", name, exc_info=True)
                record(name, started, False, f"{type(exc).__name__}: {exc}")
            else:
                record(name, started, True, detail)
            if name == SCENARIOS[0] and not results[-1].passed:
                for rest in wanted[1:]:
                    record(rest, time.monotonic(), False, "skipped: the center never joined")
                break
    finally:
        kit.close()
        if all(r.passed for r in results):
            shutil.rmtree(work, ignore_errors=True)
    return results, work
