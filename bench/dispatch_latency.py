"""Dispatch latency per backend (submit → RUNNING) and the agent's overhead per job (issue 3).

For each backend (local, fake, slurm, ray) this starts, on 127.0.0.1, a real
control plane (``python -m computenet.server``, a fresh SQLite file, a
one-center network written to a temp dir: ``time_scale: 1`` so network time is
real time, one ``CPU-node`` pool of ``--chips`` chips) and one real agent for
that center, then runs ``--jobs`` trivial jobs (``true``) two ways, side by
side, alternating job by job:

- **direct**: ``Backend.submit`` on a backend object built in this process with
  the agent's own options, then ``poll`` every ``--direct-poll`` s; RUNNING is
  the first poll that sees the job past PENDING;
- **network**: ``POST /api/v1/jobs``; the job's timeline comes from the
  server's job events (network time = real time here): ``submitted`` (PENDING)
  → SCHEDULED (the scheduling cycle) → ``leased by`` (the agent's lease call)
  → RUNNING. RUNNING is the agent's first backend poll that sees the job past
  PENDING — the same test as the direct side, read from a trace the agent
  writes (below). The RUNNING event's own time is not used for the headline:
  it is the backend's start stamp, which Ray sets at submission (seconds
  before the entrypoint runs) and Slurm gives to the whole second; the third
  table shows it.

Jobs run one at a time (the next is submitted after the previous one ended,
plus a random gap of up to ``--gap`` s so that submissions do not lock into the
phase of the server's cycle or the agent's loop), so the figures are the
latency of an idle network, not queueing. The difference of the medians,
network − direct, is the agent + control-plane overhead per job.

The agent runs as the real ``computenet.agent`` command line, started
through this file (``dispatch_latency.py _agent TRACE -- AGENT ARGS``) so that
its backend object is wrapped in a recorder that appends to TRACE the time of
each ``find``/``submit`` call and of the first poll that sees each job
running (a JSON line each; microseconds of work per job). With the events
this splits the network's time into: cycle wait (submit → SCHEDULED), lease
wait (SCHEDULED → leased), the agent's staging step (leased → the ``find``
that starts its submit: a job without inputs still waits one agent tick),
its pre-submit checks (``find`` + ``capacity``), the backend's submit call,
and submit → the agent's poll that sees it running. The last table gives the
server's timeline (RUNNING event) and what a user sees: REST submit → the
first client poll (every ``--client-poll`` s) that shows RUNNING or later,
which adds the agent's status report.

``--lease-modes wait,poll`` runs every backend twice in one run, alternating
nothing but the agent: ``wait`` (its long-poll lease, ``--lease-wait``; the
default) and ``poll`` (``--lease-wait 0``: a lease call every 0.5 s, as agents
did before the long poll), so before and after compare under the same load.

Backends whose service is not running (Slurm, Ray: ``var/services/env.sh``
from ``scripts/services.sh``, or ``SLURM_CONF`` / ``RAY_ADDRESS``) are reported
as skipped; the bench never fails for that. It prints the date, the cores and
``uptime`` (a high load average means other work shared the machine).

Run:
    bash scripts/services.sh start all     # for slurm and ray; optional
    .venv/bin/python bench/dispatch_latency.py [--jobs 50] [--backends local,fake,slurm,ray]
    bash scripts/services.sh stop all
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.helpers.processes import log_tail, start_server, stop_process  # noqa: E402

ALL_BACKENDS = ("local", "fake", "slurm", "ray")
SKIPPED = "skipped (service not running: start with scripts/services.sh start all)"
CHIP = "CPU-node"
CENTER = "c1"
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
STARTED = ("RUNNING", *FINAL)

NETWORK_YAML = """\
name: dispatch-bench
time_scale: 1
data_scale: 1
centers:
  - id: {center}
    region: east
    lat: 31.0
    lon: 121.0
    pools: [{{chip: {chip}, count: {chips}}}]
    pue: 1.2
    # One price all day (no peak or valley), so no job waits for a cheaper hour.
    tariff: {{flat: 0.5, peak: 1, valley: 1}}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 1
links: []
"""


# ----------------------------------------------------------------- samples


@dataclass
class DirectSample:
    """One job submitted straight to a backend object (unix seconds)."""

    call: float  # Backend.submit called
    ret: float  # Backend.submit returned
    seen: float  # first poll that saw it RUNNING (or ended)
    stamp: float | None  # the backend's own start stamp, if it gives one

    @property
    def latency(self) -> float:
        """Submit → start as the agent would report it (stamp, else the poll's time)."""
        return (self.stamp if self.stamp is not None else self.seen) - self.call

    @property
    def observed(self) -> float:
        """Submit → the first poll that sees it running."""
        return self.seen - self.call


@dataclass
class NetworkSample:
    """One job submitted through the REST API (unix seconds; server times from its events)."""

    job_id: str
    client_submit: float  # just before POST /api/v1/jobs
    submitted: float  # PENDING event
    scheduled: float  # SCHEDULED event
    leased: float  # "leased by" event
    running: float  # RUNNING event (the backend's start stamp, clamped to [leased, report])
    visible: float  # first client poll that saw RUNNING or later
    find: float | None = None  # agent trace: the last find() before submit started
    call: float | None = None  # agent trace: Backend.submit called
    ret: float | None = None  # agent trace: Backend.submit returned
    seen: float | None = None  # agent trace: first poll that saw it running

    @property
    def latency(self) -> float:
        """Submit → RUNNING, both from the server's events."""
        return self.running - self.submitted

    @property
    def observed(self) -> float:
        """REST submit → the first client poll that sees it RUNNING or later."""
        return self.visible - self.client_submit


@dataclass
class BackendResult:
    """Everything measured for one backend."""

    kind: str
    status: str = "ok"  # ok | skipped (...) | error: ...
    direct: list[DirectSample] = field(default_factory=list)
    network: list[NetworkSample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0


# ------------------------------------------------------------------ stats


def median(xs: Sequence[float]) -> float:
    """Median, NaN when empty."""
    return statistics.median(xs) if xs else math.nan


def p95(xs: Sequence[float]) -> float:
    """95th percentile, nearest rank; NaN when empty."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def mean(xs: Sequence[float]) -> float:
    """Mean, NaN when empty."""
    return statistics.fmean(xs) if xs else math.nan


def median_diff_ci(a: Sequence[float], b: Sequence[float], n: int = 2000) -> tuple[float, float]:
    """Bootstrap 95 % interval of median(a) − median(b) (seeded: the same data, the same answer)."""
    if not a or not b:
        return math.nan, math.nan
    rng = random.Random(0)
    diffs = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(n)
    )
    return diffs[int(0.025 * n)], diffs[int(0.975 * n) - 1]


def fmt(x: float, width: int = 8, digits: int = 3) -> str:
    """A number right-aligned, or '-' for NaN."""
    return f"{'-':>{width}}" if math.isnan(x) else f"{x:>{width}.{digits}f}"


# --------------------------------------------------------------- services


def services_env() -> dict[str, str]:
    """SLURM_CONF / RAY_ADDRESS from scripts/services.sh's env file (the environment wins)."""
    path = Path(os.environ.get("SERVICES_DIR") or REPO / "var" / "services") / "env.sh"
    env: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text("utf-8").splitlines():
            words = shlex.split(line, comments=True)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, _, value = words[1].partition("=")
                env[key] = value
    for key in ("SLURM_CONF", "RAY_ADDRESS"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def service_problem(kind: str, env: dict[str, str]) -> str | None:
    """None when `kind` can run here, else why not."""
    if kind == "slurm":
        conf = env.get("SLURM_CONF")
        if not conf or shutil.which("sbatch") is None:
            return "no SLURM_CONF or no sbatch"
        try:
            proc = subprocess.run(
                ["scontrol", "ping"],
                env={**os.environ, "SLURM_CONF": conf},
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"scontrol ping: {exc}"
        return None if proc.returncode == 0 and "UP" in proc.stdout else "slurmctld down"
    if kind == "ray":
        address = env.get("RAY_ADDRESS")
        if not address or importlib.util.find_spec("ray") is None:
            return "no RAY_ADDRESS or ray not installed"
        try:
            httpx.get(f"{address.rstrip('/')}/api/version", timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            return f"Ray dashboard: {exc}"
    return None


def backend_options(kind: str, env: dict[str, str], prefix: str) -> dict[str, str]:
    """The --backend-opt options, the same for the agent and the direct backend object."""
    if kind == "slurm":
        return {
            "chips_as": "cpus",
            "partition": "debug",
            "account": "cnet",
            "slurm_conf": env["SLURM_CONF"],
            "prefix": prefix,
        }
    if kind == "ray":
        return {"address": env["RAY_ADDRESS"], "prefix": prefix}
    return {}


# ------------------------------------------------------------ agent shim


class TracingBackend:
    """Wraps the agent's backend; appends find/submit/first-running times to a JSON-lines file."""

    def __init__(self, inner: Any, out: IO[str]) -> None:
        self._inner = inner
        self._out = out
        self._job_of: dict[str, str] = {}
        self._seen: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _write(self, **rec: Any) -> None:
        self._out.write(json.dumps(rec) + "\n")
        self._out.flush()

    def find(self, idempotency_key: str) -> str | None:
        """Delegate; record the call's start."""
        t = time.time()
        handle: str | None = self._inner.find(idempotency_key)
        self._write(ev="find", job_id=idempotency_key.split(":")[0], t=t, end=time.time())
        return handle

    def submit(self, job: Any, idempotency_key: str) -> str:
        """Delegate; record the call's start and end."""
        t = time.time()
        handle: str = self._inner.submit(job, idempotency_key)
        self._job_of[handle] = job.job_id
        self._write(ev="submit", job_id=job.job_id, t=t, end=time.time(), handle=handle)
        return handle

    def poll(self, handles: list[str]) -> Any:
        """Delegate; record the first poll that sees each job past PENDING."""
        out = self._inner.poll(handles)
        t = time.time()
        for handle, st in out.items():
            state = str(getattr(st.state, "value", st.state))
            if handle not in self._seen and state not in ("PENDING", "UNKNOWN"):
                self._seen.add(handle)
                self._write(ev="running", job_id=self._job_of.get(handle), t=t)
        return out


def agent_shim(argv: list[str]) -> int:
    """``_agent TRACE -- ARGS``: the real agent CLI with a TracingBackend around its backend."""
    trace, args = Path(argv[0]), argv[argv.index("--") + 1 :]
    import computenet.agent.loop as loop
    from computenet.agent.__main__ import main as agent_main

    real_make = loop.make_backend
    out = trace.open("a", encoding="utf-8")

    def traced(kind: str, **options: Any) -> Any:
        return TracingBackend(real_make(kind, **options), out)

    loop.make_backend = traced
    try:
        return int(agent_main(args))
    finally:
        out.close()


def read_trace(path: Path) -> dict[str, dict[str, float]]:
    """job id → {find, call, ret, seen} from an agent trace."""
    out: dict[str, dict[str, float]] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text("utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            job = out.setdefault(str(rec.get("job_id")), {})
            if rec["ev"] == "find" and "call" not in job:
                job["find"] = rec["t"]  # the last find before the submit
            elif rec["ev"] == "submit" and "call" not in job:
                job["call"], job["ret"] = rec["t"], rec["end"]
            elif rec["ev"] == "running" and "seen" not in job:
                job["seen"] = rec["t"]
    return out


# ---------------------------------------------------------------- direct


def run_direct(backend: Any, i: int, tag: str, args: argparse.Namespace) -> DirectSample:
    """Submit one job to the backend object; poll until it starts, then until it ends."""
    from computenet.backends.base import BackendJob, BackendState

    job = BackendJob(
        job_id=f"direct-{tag}-{i}", attempt=1, command=args.command, chip=CHIP, count=1
    )
    call = time.time()
    handle = backend.submit(job, f"{job.job_id}:1")
    ret = time.time()
    deadline = call + args.timeout
    seen, stamp = math.nan, None
    while time.time() < deadline:
        st = backend.poll([handle])[handle]
        if st.state not in (BackendState.PENDING, BackendState.UNKNOWN):
            seen = time.time()
            stamp = st.started_at.timestamp() if st.started_at is not None else None
            break
        time.sleep(args.direct_poll)
    else:
        backend.cancel(handle)
        raise TimeoutError(f"direct job {i} did not start in {args.timeout:.0f}s")
    final = (BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED)
    while time.time() < deadline:
        if backend.poll([handle])[handle].state in final:
            break
        time.sleep(0.1)
    else:
        backend.cancel(handle)
    return DirectSample(call=call, ret=ret, seen=seen, stamp=stamp)


# --------------------------------------------------------------- network


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_network(http: httpx.Client, i: int, tag: str, args: argparse.Namespace) -> NetworkSample:
    """Submit one job through the REST API; poll it until it ends; read its events."""
    spec = {
        "name": f"dl-{i}",
        "class": "cpu-batch",
        "command": args.command,
        "chips": {"count": 1},
        "work": {"cu_hours": 0.001},
    }
    client_submit = time.time()
    r = http.post("/api/v1/jobs", json={"spec": spec, "idempotency_key": f"{tag}-{i}"})
    r.raise_for_status()
    job_id = r.json()["id"]
    deadline = client_submit + args.timeout
    visible = math.nan
    detail: dict[str, Any] = {}
    while time.time() < deadline:
        detail = http.get(f"/api/v1/jobs/{job_id}").raise_for_status().json()
        if math.isnan(visible) and detail["state"] in STARTED:
            visible = time.time()
        if detail["state"] in FINAL:
            break
        time.sleep(args.client_poll)
    else:
        with contextlib.suppress(httpx.HTTPError):
            http.post(f"/api/v1/jobs/{job_id}/cancel")
        raise TimeoutError(f"job {job_id} still {detail.get('state')} after {args.timeout:.0f}s")
    at: dict[str, float] = {}
    for ev in detail["events"]:
        key = ev["state"] or ("LEASED" if ev["message"].startswith("leased by") else None)
        if key and key not in at:
            at[key] = _ts(ev["at"])
    missing = [k for k in ("PENDING", "SCHEDULED", "LEASED", "RUNNING") if k not in at]
    if missing or math.isnan(visible):
        raise RuntimeError(f"job {job_id} ended {detail['state']} without {missing} events")
    return NetworkSample(
        job_id=job_id,
        client_submit=client_submit,
        submitted=at["PENDING"],
        scheduled=at["SCHEDULED"],
        leased=at["LEASED"],
        running=at["RUNNING"],
        visible=visible,
    )


# ------------------------------------------------------------ one backend


def wait_online(http: httpx.Client, agent: subprocess.Popen[bytes], log: Path) -> None:
    """Until the center shows online; fail with the agent's log if it exits."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited with {agent.returncode}:\n{log_tail(log)}")
        centers = http.get("/api/v1/centers").raise_for_status().json()
        if any(c["id"] == CENTER and c.get("online") for c in centers):
            return
        time.sleep(0.2)
    raise TimeoutError(f"agent did not come online:\n{log_tail(log)}")


def run_backend(
    kind: str, env: dict[str, str], args: argparse.Namespace, lease_wait: float, label: str
) -> BackendResult:
    """Server + agent + direct backend object for `kind`; `args.jobs` jobs each way.

    `lease_wait` is the agent's ``--lease-wait`` (0: it polls for leases every
    0.5 s, as agents did before the long poll); the result is named `label`.
    """
    from computenet.backends.registry import make_backend
    from computenet.sdk import Client

    result = BackendResult(label)
    problem = service_problem(kind, env)
    if problem is not None:
        result.status = SKIPPED
        print(f"[{kind}] {SKIPPED} ({problem})", flush=True)
        return result
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"cnet-dl-{kind}-"))
    # Slurm runs jobs as another user (nobody), who must enter the directory to write output.
    tmp.chmod(0o711)
    tag = uuid.uuid4().hex[:6]
    prefix = f"dl{tag}"
    opts = backend_options(kind, env, prefix)
    net_file = tmp / "network.yaml"
    net_file.write_text(NETWORK_YAML.format(center=CENTER, chip=CHIP, chips=args.chips))
    server: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    direct: Any = None
    rng = random.Random(args.seed)
    try:
        url, admin_token, server = start_server(
            tmp,
            str(net_file),
            cycle_interval=args.cycle_interval,
            heartbeat_interval=args.heartbeat_interval,
            lease_timeout=max(10.0, 5 * args.heartbeat_interval),
        )
        with Client(url, admin_token) as admin:
            admin.create_tenant("bench")
            user_token = admin.create_user("bench-user", "bench").token
            center_token = admin.center_token(CENTER).token
        trace, agent_log = tmp / "agent-trace.jsonl", tmp / "agent.log"
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "_agent", str(trace), "--",
            "--center", CENTER, "--server", url, "--token", center_token,
            "--backend", kind, "--network", str(net_file), "--state-dir", str(tmp / "agent"),
            "--lease-wait", str(lease_wait),
        ]  # fmt: skip
        for k, v in opts.items():
            cmd += ["--backend-opt", f"{k}={v}"]
        with agent_log.open("ab") as out:
            agent = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        direct = make_backend(kind, state_dir=tmp / "direct", pools={CHIP: args.chips}, **opts)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {user_token}"}, timeout=30
        ) as http:
            wait_online(http, agent, agent_log)
            print(f"[{kind}] server {url}, agent up; {args.warmup} warm-up + {args.jobs} jobs "
                  f"each way", flush=True)  # fmt: skip
            errors_in_row = 0
            for i in range(-args.warmup, args.jobs):
                try:
                    d = run_direct(direct, i, tag, args)
                    time.sleep(rng.uniform(0, args.gap))
                    n = run_network(http, i, tag, args)
                    errors_in_row = 0
                except Exception as exc:  # one bad job must not end the run
                    result.failures.append(f"job {i}: {exc}")
                    print(f"[{kind}] job {i} failed: {exc}", flush=True)
                    errors_in_row += 1
                    if errors_in_row >= 3:
                        raise RuntimeError(f"3 failures in a row; last: {exc}") from exc
                    continue
                if i >= 0:
                    result.direct.append(d)
                    result.network.append(n)
                if i >= 0 and (i + 1) % 10 == 0:
                    print(f"[{kind}] {i + 1}/{args.jobs} "
                          f"(last: direct {d.observed:.3f}s, network visible {n.observed:.3f}s)",
                          flush=True)  # fmt: skip
                time.sleep(rng.uniform(0, args.gap))
        tr = read_trace(trace)
        for n in result.network:
            rec = tr.get(n.job_id, {})
            n.find, n.call, n.ret, n.seen = (
                rec.get("find"),
                rec.get("call"),
                rec.get("ret"),
                rec.get("seen"),
            )
    except Exception as exc:
        result.status = f"error: {exc}"
        print(f"[{kind}] error: {exc}", flush=True)
        if agent is not None:
            print(log_tail(tmp / "agent.log", 20), flush=True)
    finally:
        if agent is not None:
            stop_process(agent)
        if server is not None:
            stop_process(server)
        if direct is not None:
            with contextlib.suppress(Exception):
                direct.close()  # part of the backend contract: stops what it supervises
        if args.keep_tmp:
            print(f"[{kind}] kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result.wall_s = time.monotonic() - t_start
    return result


# ----------------------------------------------------------------- report


def print_report(results: list[BackendResult], jobs: int) -> None:
    """The main table with the ratios, the split of the overhead, and the event/user views."""
    ok = [r for r in results if r.status == "ok" and r.network]
    print()
    print(f"Dispatch latency submit → RUNNING, {jobs} jobs per backend (s)")
    print("  network: submit (PENDING event) → the agent's first backend poll that sees it running")
    print("  direct:  Backend.submit → the first poll that sees it running")
    print("  overhead: median − direct median, with a bootstrap 95 % interval")
    print(
        f"{'backend':<11} {'n':>3} {'median':>7} {'p95':>7} {'direct med':>10} {'direct p95':>10}"
        f" {'overhead':>8} {'95% interval':>13} {'ovh %':>6} {'net/direct':>10} {'p95/med':>7}"
    )
    for r in results:
        if r not in ok:
            print(f"{r.kind:<11} {r.status}")
            continue
        net = [n.seen - n.submitted for n in r.network if n.seen is not None]
        dl = [d.observed for d in r.direct]
        over = median(net) - median(dl)
        lo, hi = median_diff_ci(net, dl)
        ratio = median(net) / median(dl) if median(dl) > 0 else math.inf
        print(
            f"{r.kind:<11} {len(net):>3} {fmt(median(net), 7)} {fmt(p95(net), 7)}"
            f" {fmt(median(dl), 10)} {fmt(p95(dl), 10)} {fmt(over)}  {lo:5.2f}…{hi:5.2f}"
            f" {fmt(100 * over / median(net), 5, 0)}% {fmt(ratio, 9, 1)}x"
            f" {fmt(p95(net) / median(net), 7, 2)}"
        )
    if not ok:
        return
    print()
    print("Where the network's time goes: mean s per job (the parts add up to the mean)")
    print(
        f"{'backend':<11} {'cycle':>6} {'lease':>6} {'stage':>6} {'checks':>6} {'submit':>6}"
        f" {'→seen':>6} {'= mean':>6} | {'direct':>6} {'ovh':>6} | {'report':>6}"
    )
    for r in ok:
        # Every part over the same jobs (those the agent's trace saw), so they add up.
        rows = [
            (n, n.find, n.call, n.ret, n.seen)
            for n in r.network
            if n.find is not None and n.call is not None and n.ret is not None
            and n.seen is not None
        ]  # fmt: skip
        parts = [
            mean([n.scheduled - n.submitted for n, *_ in rows]),
            mean([n.leased - n.scheduled for n, *_ in rows]),
            mean([f - n.leased for n, f, _, _, _ in rows]),
            mean([c - f for _, f, c, _, _ in rows]),
            mean([e - c for _, _, c, e, _ in rows]),
            mean([w - e for _, _, _, e, w in rows]),
        ]
        total = mean([w - n.submitted for n, _, _, _, w in rows])
        dmean = mean([d.observed for d in r.direct])
        report = mean([n.visible - w for n, _, _, _, w in rows])
        print(
            f"{r.kind:<11} " + " ".join(fmt(p, 6) for p in parts) + f" {fmt(total, 6)} |"
            f" {fmt(dmean, 6)} {fmt(total - dmean, 6)} | {fmt(report, 6)}"
        )
    print(
        "  cycle: submit → SCHEDULED event; lease: SCHEDULED → leased event; stage: leased →"
        "\n  the agent's find() before submitting (its staging step: one loop tick even without"
        "\n  inputs); checks: find + capacity; submit: the Backend.submit call; →seen: submit"
        "\n  returned → the agent's poll that sees it running; direct: the same in this process;"
        "\n  report: the agent's poll → the client's poll that sees RUNNING (status report plus"
        "\n  the client's poll interval)."
    )
    print()
    print("The server's timeline and the user's view (medians / p95, s)")
    print(
        f"{'backend':<11} {'event med':>9} {'event p95':>9} {'direct stamp':>12}"
        f" {'stamp−seen':>10} {'visible med':>11} {'visible p95':>11}"
    )
    for r in ok:
        ev = [n.latency for n in r.network]
        stamp = [d.latency for d in r.direct]
        lag = [d.stamp - d.seen for d in r.direct if d.stamp is not None]
        vis = [n.observed for n in r.network]
        print(
            f"{r.kind:<11} {fmt(median(ev), 9)} {fmt(p95(ev), 9)} {fmt(median(stamp), 12)}"
            f" {fmt(median(lag), 10)} {fmt(median(vis), 11)} {fmt(p95(vis), 11)}"
        )
    print(
        "  event: PENDING → RUNNING in the job's events; the RUNNING event's time is the"
        "\n  backend's own start stamp, as the agent reports it. direct stamp: that stamp minus"
        "\n  Backend.submit in this process. stamp−seen: the stamp minus the first poll that saw"
        "\n  the job running (≈ 0 when the stamp is right; Slurm's has 1 s resolution). visible:"
        "\n  REST submit → the first client poll (every --client-poll s) that sees RUNNING."
    )
    for r in results:
        if r.failures:
            print(f"[{r.kind}] {len(r.failures)} failed job(s): {'; '.join(r.failures[:3])}")


def load_results(path: Path) -> list[BackendResult]:
    """Results written by --json."""
    out = []
    for raw in json.loads(path.read_text("utf-8")):
        r = BackendResult(
            raw["kind"], raw["status"], failures=raw["failures"], wall_s=raw["wall_s"]
        )
        r.direct = [DirectSample(**d) for d in raw["direct"]]
        r.network = [NetworkSample(**n) for n in raw["network"]]
        out.append(r)
    return out


def uptime() -> str:
    """`uptime`'s line (load averages), or the load from os.getloadavg()."""
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every backend, print the tables; 1 if a running service errored."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_agent"]:
        return agent_shim(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--jobs", type=int, default=50, help="measured jobs per backend and way")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured jobs first")
    ap.add_argument("--backends", default=",".join(ALL_BACKENDS))
    ap.add_argument("--command", default="true", help="the jobs' command")
    ap.add_argument("--chips", type=int, default=8, help="the center's CPU-node pool")
    ap.add_argument("--cycle-interval", type=float, default=0.2, help="server, real s")
    ap.add_argument("--heartbeat-interval", type=float, default=0.5, help="server, real s")
    ap.add_argument("--direct-poll", type=float, default=0.05, help="direct poll interval, s")
    ap.add_argument("--client-poll", type=float, default=0.05, help="REST poll interval, s")
    ap.add_argument("--gap", type=float, default=0.3, help="random gap between jobs, up to s")
    ap.add_argument("--timeout", type=float, default=90.0, help="per job, s")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument(
        "--lease-modes",
        default="wait",
        help="comma list: wait (the agent's long-poll lease, default) and/or poll (the agent"
        " polls every 0.5 s, as before the long poll); 'wait,poll' runs both per backend",
    )
    ap.add_argument("--lease-wait", type=float, default=2.0, help="the agent's --lease-wait, s")
    ap.add_argument("--json", type=Path, help="also write the raw samples here")
    ap.add_argument("--keep-tmp", action="store_true", help="keep logs and traces")
    ap.add_argument("--from-json", type=Path, help="only print the report of a --json file")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ALL_BACKENDS]
    if unknown:
        ap.error(f"unknown backend(s) {unknown}; choose from {', '.join(ALL_BACKENDS)}")
    if args.from_json:
        saved = load_results(args.from_json)
        print_report(saved, max((len(r.network) for r in saved), default=0))
        return 0
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"machine: {os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}")
    print(f"uptime (start): {uptime()}")
    print(
        f"settings: cycle {args.cycle_interval}s, heartbeat {args.heartbeat_interval}s, "
        f"{args.chips}× {CHIP}, command {args.command!r}, direct poll {args.direct_poll}s, "
        f"client poll {args.client_poll}s, gap ≤{args.gap}s, lease modes {args.lease_modes}"
        f" (agent --lease-wait {args.lease_wait}s in 'wait')",
        flush=True,
    )
    modes = [m.strip() for m in args.lease_modes.split(",") if m.strip()]
    if not modes or any(m not in ("wait", "poll") for m in modes):
        ap.error("--lease-modes: a comma list of 'wait' and 'poll'")
    env = services_env()
    results = [
        run_backend(
            k,
            env,
            args,
            lease_wait=args.lease_wait if m == "wait" else 0.0,
            label=k if len(modes) == 1 else f"{k}/{m}",
        )
        for k in kinds
        for m in modes
    ]
    print(f"\nuptime (end): {uptime()}")
    print("wall: " + ", ".join(f"{r.kind} {r.wall_s:.0f}s" for r in results))
    print_report(results, args.jobs)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 1 if any(r.status.startswith("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
