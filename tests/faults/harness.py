"""The fault suite's machinery: a real network on 127.0.0.1, jobs that keep their own records,
and the exactly-once checks every scenario ends with (also used by bench/faults_report.py).

`Cluster` runs one real ``python -m computenet.server`` (on a fixed port, so it can
be SIGKILLed and restarted where the agents expect it) and one real
``python -m computenet.agent`` per center (local backend), each optionally
behind a `TcpProxy`. Every job runs `job_command`: it appends a timestamp
(``$EPOCHREALTIME``) to its own file ``RECORDS/<job>.<attempt>.<center>`` every
0.1 s while it runs and ``end`` when it finishes, so each attempt's real
running interval is known from the job's side, whatever the agents and the
control plane believe. The records folder is 0777: when the agent runs as
root, jobs run as an unprivileged user.

`Cluster.outcome(ids)` reads the server's job timelines, the bills and the
records, and `check(outcome)` asserts the promise: every job ended exactly
once (one terminal state, SUCCEEDED), no two running intervals of a job
overlap across attempts — neither in the server's events nor in the jobs' own
records — every lost attempt was dead before the control plane requeued it,
and each job is billed once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.processes import free_port, log_tail, pid_alive, stop_process, wait_http
from tests.helpers.proxy import TcpProxy

CENTERS = ("east", "west", "north")
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}

# Three equal centers with H100 slots; network time runs 600× faster than real time (as in
# the demo network: the scheduler plans in network hours); event times are mapped back to
# real time with the control plane's stored clock, to compare with the jobs' own stamps.
TIME_SCALE = 600.0
NETWORK = """
name: faults
time_scale: 600
data_scale: 1
centers:
{centers}
links:
{links}
"""
CENTER = """  - id: {id}
    region: {id}
    lat: 30.0
    lon: 110.0
    pools: [{{chip: {chip}, count: {slots}}}]
    pue: 1.2
    tariff: {{flat: 0.5, peak: 1, valley: 1}}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 1
    tags: [region:{id}]
"""


def network_yaml(slots: int = 4, chip: str = "H100", centers: tuple[str, ...] = CENTERS) -> str:
    """The fault network: `centers`, each with `slots` chips of `chip`."""
    body = "".join(CENTER.format(id=c, chip=chip, slots=slots) for c in centers)
    links = [
        f"  - {{a: {a}, b: {b}, bandwidth_gbps: 1, latency_ms: 5, price_per_gb: 0.05}}"
        for i, a in enumerate(centers)
        for b in centers[i + 1 :]
    ]
    return NETWORK.format(centers=body, links="\n".join(links) or "  []")


def job_command(run_s: float) -> str:
    """A job that records its own running interval under $CNET_FAULT_RECORDS (see module doc)."""
    ticks = max(1, round(run_s / 0.1))
    return (
        'f="$CNET_FAULT_RECORDS/$CNET_JOB_ID.$CNET_ATTEMPT.$CNET_CENTER"; '
        f'for i in $(seq {ticks}); do echo $EPOCHREALTIME >> "$f"; sleep 0.1; done; '
        'echo $EPOCHREALTIME >> "$f"; echo end >> "$f"; echo done'
    )


def job_spec(records: Path, run_s: float, chip: str = "H100") -> dict[str, Any]:
    """A one-chip job running `job_command(run_s)`, planned for about as long."""
    # An H100 does ~0.4 PFLOPS of inference: plan the run for about what it takes.
    cu_hours = round(0.4 * run_s * TIME_SCALE / 3600, 4)
    return {
        "name": "fault",
        "class": "inference",
        "command": job_command(run_s),
        "chips": {"count": 1, "types": [chip]},
        "work": {"cu_hours": cu_hours},
        "env": {"CNET_FAULT_RECORDS": str(records)},
    }


# ---------------------------------------------------------------------- databases


def pg_base_url() -> str | None:
    """The PostgreSQL server scripts/services.sh started, if it answers (None otherwise)."""
    from tests.helpers.services import require_service

    return require_service("postgres").get("CNET_PG_URL")


@contextlib.contextmanager
def fresh_pg_database(base_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of `base_url`, dropped afterwards."""
    from tests.helpers.pg import scratch_database

    with scratch_database(base_url, "cnet_faults") as url:
        yield url


# ------------------------------------------------------------------------ cluster


@dataclass
class Cluster:
    """A server and its agents, started and stopped by PID (see module doc)."""

    tmp: Path
    db_url: str
    lease_timeout: float = 4.0
    heartbeat: float = 0.3
    slots: int = 8
    chip: str = "H100"
    centers: tuple[str, ...] = CENTERS
    port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    agent_args: dict[str, list[str]] = field(default_factory=dict)
    user_token: str = ""
    admin_token: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def __post_init__(self) -> None:
        self.records = self.tmp / "records"
        self.records.mkdir(parents=True, exist_ok=True)
        os.chmod(self.records, 0o777)  # jobs may run as an unprivileged user
        os.chmod(self.tmp, 0o755)
        self.network_file = self.tmp / "network.yaml"
        self.network_file.write_text(network_yaml(self.slots, self.chip, self.centers))

    @property
    def url(self) -> str:
        """The control plane's URL (as agents without a proxy see it)."""
        return f"http://127.0.0.1:{self.port}"

    # -------------------------------------------------------------- processes

    def start_server(self) -> None:
        """Start (or restart) the server on this cluster's port and wait for health."""
        from computenet.server.admin import bootstrap_admin

        if not self.admin_token:
            self.admin_token = bootstrap_admin(self.db_url).token
        cmd = [
            sys.executable, "-m", "computenet.server", "--db", self.db_url,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--network", str(self.network_file), "--profile", "fastest",
            "--heartbeat-interval", str(self.heartbeat),
            "--lease-timeout", str(self.lease_timeout),
            "--cycle-interval", "0.2", "--log-level", "info",
        ]  # fmt: skip
        log = self.tmp / "server.log"
        with log.open("ab") as out:
            self.server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http(f"{self.url}/healthz", self.server, timeout=90, log=log)
        except BaseException:
            stop_process(self.server)
            raise

    def kill_server(self) -> None:
        """SIGKILL the control plane (no goodbye)."""
        assert self.server is not None
        self.server.send_signal(signal.SIGKILL)
        self.server.wait(timeout=30)

    def setup_accounts(self) -> None:
        """A tenant, a user and one token per center."""
        admin = {"Authorization": f"Bearer {self.admin_token}"}
        r = self.http.post(f"{self.url}/api/v1/admin/tenants", json={"name": "acme"}, headers=admin)
        assert r.status_code in (200, 201, 409), r.text
        r = self.http.post(
            f"{self.url}/api/v1/admin/users",
            json={"name": "ann", "tenant": "acme"},
            headers=admin,
        )
        assert r.status_code in (200, 201), r.text
        self.user_token = r.json()["token"]
        for c in self.centers:
            r = self.http.post(f"{self.url}/api/v1/admin/centers/{c}/token", headers=admin)
            assert r.status_code in (200, 201), r.text
            self.tokens[c] = r.json()["token"]

    def start_agent(
        self, center: str, *, via_proxy: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        """Start the agent of `center` (through its proxy when asked; created on first use)."""
        if via_proxy and center not in self.proxies:
            self.proxies[center] = TcpProxy(self.port)
        server = self.proxies[center].url if center in self.proxies else self.url
        args = [*self.agent_args.get(center, []), *extra]
        cmd = [
            sys.executable, "-m", "computenet.agent", "--center", center,
            "--server", server, "--token", self.tokens[center],
            "--network", str(self.network_file),
            "--state-dir", str(self.tmp / center / "state"),
            "--data-root", str(self.tmp / center / "data"), *args,
        ]  # fmt: skip
        log = self.tmp / f"agent-{center}.log"
        with log.open("ab") as out:
            self.agents[center] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def kill_agent(self, center: str, sig: int = signal.SIGKILL) -> None:
        """Signal the agent of `center` and wait for it to exit."""
        proc = self.agents[center]
        if proc.poll() is None:
            proc.send_signal(sig)
        proc.wait(timeout=30)

    def start(self, *, proxied: tuple[str, ...] = ()) -> None:
        """Server, accounts, every agent; wait until all centers are online."""
        self.start_server()
        self.setup_accounts()
        for c in self.centers:
            self.start_agent(c, via_proxy=c in proxied)
        self.wait_online()

    def wait_online(self, centers: tuple[str, ...] | None = None) -> None:
        """Until every (given) center is online."""
        want = set(centers or self.centers)

        def online() -> bool:
            try:
                got = self.get("/api/v1/centers")
            except httpx.HTTPError:
                return False
            return want <= {c["id"] for c in got if c.get("online")}

        self.until("centers online", online, timeout=60)

    def stop(self) -> None:
        """Stop every agent, the server and the proxies (by PID); kill stray job processes."""
        for proc in self.agents.values():
            stop_process(proc)
        if self.server is not None:
            stop_process(self.server)
        for proxy in self.proxies.values():
            proxy.close()
        self.http.close()

    def logs(self) -> str:
        """The tails of every process log (for failure messages)."""
        return "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in sorted(self.tmp.glob("*.log")))

    def until(self, what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
        """Poll `check` until truthy; fail with the process logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                got = check()
                if got:
                    return got
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    # ------------------------------------------------------------------- jobs

    def get(self, path: str) -> Any:
        """GET a user-API document."""
        r = self.http.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.user_token}"}
        )
        r.raise_for_status()
        return r.json()

    def submit(self, n: int, run_s: float) -> list[str]:
        """Submit `n` recording jobs of `run_s` seconds (each with an idempotency key)."""
        ids = []
        for i in range(n):
            r = self.http.post(
                f"{self.url}/api/v1/jobs",
                json={
                    "spec": job_spec(self.records, run_s, self.chip),
                    "idempotency_key": f"fault-{uuid.uuid4().hex[:8]}-{i}",
                },
                headers={"Authorization": f"Bearer {self.user_token}"},
            )
            assert r.status_code in (200, 201), r.text
            ids.append(r.json()["id"])
        return ids

    def states(self, ids: list[str]) -> dict[str, str]:
        """{job: state} now."""
        return {j: self.get(f"/api/v1/jobs/{j}")["state"] for j in ids}

    def wait_final(self, ids: list[str], timeout: float = 180.0) -> None:
        """Until every job is in a terminal state."""
        left = set(ids)

        def done() -> bool:
            for j in list(left):
                if self.get(f"/api/v1/jobs/{j}")["state"] in TERMINAL:
                    left.discard(j)
            return not left

        self.until(f"{len(ids)} jobs to end", done, timeout=timeout)

    def running_at(self, ids: list[str]) -> dict[str, list[str]]:
        """{center: jobs RUNNING there now}."""
        out: dict[str, list[str]] = {}
        for j in ids:
            v = self.get(f"/api/v1/jobs/{j}")
            if v["state"] == "RUNNING" and v.get("center"):
                out.setdefault(v["center"], []).append(j)
        return out

    def outcome(self, ids: list[str]) -> Outcome:
        """Everything `check` needs, read from the server and the records."""
        details = {j: self.get(f"/api/v1/jobs/{j}") for j in ids}
        bill = self.get("/api/v1/bill")
        lines: dict[str, int] = {}
        for line in bill.get("lines", []):
            lines[line["job_id"]] = lines.get(line["job_id"], 0) + 1
        charges, clock = _from_database(self.db_url, ids)
        return Outcome(ids, details, read_records(self.records), lines, charges, clock)


def _from_database(db_url: str, ids: list[str]) -> tuple[dict[str, int], dict[str, Any]]:
    """({job: ChargeRow rows}, the stored network clock) straight from the database."""
    import json

    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT job_id, COUNT(*) FROM job_charges GROUP BY job_id")
            ).all()
            clock = conn.execute(
                sa.text("SELECT value FROM meta WHERE key = 'network_clock'")
            ).scalar_one()
    finally:
        engine.dispose()
    wanted = set(ids)
    if isinstance(clock, str):
        clock = json.loads(clock)
    return {str(j): int(n) for j, n in rows if j in wanted}, dict(clock)


# ------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Run:
    """One attempt as the job itself recorded it."""

    job: str
    attempt: int
    center: str
    start: float
    last: float
    ended: bool


_NAME = re.compile(r"^(?P<job>.+)\.(?P<attempt>\d+)\.(?P<center>[^.]+)$")


def read_records(folder: Path) -> dict[str, list[Run]]:
    """{job: its attempts' runs, in start order} from the job-written files."""
    out: dict[str, list[Run]] = {}
    for path in folder.iterdir():
        m = _NAME.match(path.name)
        if not m:
            continue
        stamps: list[float] = []
        ended = False
        for line in path.read_text(errors="replace").splitlines():
            if line.strip() == "end":
                ended = True
                continue
            with contextlib.suppress(ValueError):
                stamps.append(float(line))
        if not stamps:
            continue
        run = Run(m["job"], int(m["attempt"]), m["center"], min(stamps), max(stamps), ended)
        out.setdefault(run.job, []).append(run)
    for runs in out.values():
        runs.sort(key=lambda r: r.start)
    return out


# ------------------------------------------------------------------------- checks


@dataclass
class Outcome:
    """What one scenario left behind (see `check`)."""

    ids: list[str]
    details: dict[str, dict[str, Any]]
    runs: dict[str, list[Run]]
    bill_lines: dict[str, int]
    charges: dict[str, int]
    clock: dict[str, Any]

    def real(self, at: str) -> float:
        """Real unix time of a network instant from the server's timeline."""
        from datetime import datetime

        net = datetime.fromisoformat(at) - datetime.fromisoformat(self.clock["epoch_network"])
        return float(self.clock["epoch_real"]) + net.total_seconds() / float(
            self.clock["time_scale"]
        )

    def _events(self, job: str) -> list[dict[str, Any]]:
        return list(self.details[job].get("events", []))

    def terminal_events(self, job: str) -> list[str]:
        """The terminal states in the job's timeline (exactly one when all is well)."""
        return [e["state"] for e in self._events(job) if e.get("state") in TERMINAL]

    def server_intervals(self, job: str) -> list[tuple[str, float, float]]:
        """(center, from, to) of each RUNNING stretch in the server's timeline."""
        out: list[tuple[str, float, float]] = []
        open_at: tuple[str, float] | None = None
        for e in self._events(job):
            state, at = e.get("state"), self.real(e["at"])
            if state == "RUNNING":
                open_at = (e.get("center") or "?", at)
            elif state is not None and open_at is not None:
                out.append((open_at[0], open_at[1], at))
                open_at = None
        if open_at is not None:
            out.append((open_at[0], open_at[1], float("inf")))
        return out

    def requeues(self, job: str) -> list[float]:
        """When the control plane took the job back (its "lost at" events)."""
        return [self.real(e["at"]) for e in self._events(job) if "lost at" in e.get("message", "")]

    # ---------------------------------------------------------------- figures

    def lost(self) -> list[str]:
        """Jobs that did not end SUCCEEDED exactly once."""
        return [
            j
            for j in self.ids
            if self.details[j]["state"] != "SUCCEEDED" or self.terminal_events(j) != ["SUCCEEDED"]
        ]

    def overlapping(self) -> list[str]:
        """Jobs with two attempts running at once (server events or the jobs' own records)."""
        bad = []
        for j in self.ids:
            server = sorted((a, b) for _, a, b in self.server_intervals(j))
            own = [(r.start, r.last) for r in self.runs.get(j, [])]
            if _overlap(server) or _overlap(sorted(own)):
                bad.append(j)
        return bad

    def alive_after_requeue(self) -> list[str]:
        """Jobs whose lost attempt was still running when the control plane requeued it."""
        bad = []
        for j in self.ids:
            runs = self.runs.get(j, [])
            for when in self.requeues(j):
                # The attempt that was lost is the last one that started before the requeue.
                before = [r for r in runs if r.start < when]
                if before and before[-1].last >= when and not before[-1].ended:
                    bad.append(j)
        return bad

    def completed_twice(self) -> list[str]:
        """Jobs whose command ran to its end more than once (a re-run after a lost report)."""
        return [j for j in self.ids if sum(r.ended for r in self.runs.get(j, [])) > 1]

    def billed_twice(self) -> list[str]:
        """Jobs with more than one charge row or bill line."""
        return [j for j in self.ids if self.charges.get(j, 0) > 1 or self.bill_lines.get(j, 0) > 1]

    def unbilled(self) -> list[str]:
        """Jobs that succeeded but have no charge."""
        return [
            j
            for j in self.ids
            if self.details[j]["state"] == "SUCCEEDED" and self.charges.get(j, 0) != 1
        ]

    def reruns(self) -> int:
        """Attempts beyond the first, summed over jobs (requeues the faults caused)."""
        return sum(max(0, int(self.details[j].get("attempts", 1)) - 1) for j in self.ids)

    def recovery_s(self) -> list[float]:
        """Per lost attempt: from its last sign of life to the job's next start.

        The last sign of life is the attempt's last own timestamp when it ran,
        else (a lost lease reply: it never ran) the time it was leased.
        """
        out = []
        for j in self.ids:
            runs = {r.attempt: r for r in self.runs.get(j, [])}
            leased: dict[int, float] = {}
            for e in self._events(j):
                m = re.search(r"\(attempt (\d+)\)", e.get("message", ""))
                if m and "leased by" in e.get("message", ""):
                    leased[int(m[1])] = self.real(e["at"])
            attempts = sorted(set(leased) | set(runs))
            for a, b in itertools.pairwise(attempts):
                lost = runs.get(a)
                if lost is not None and lost.ended:
                    continue  # it finished: nothing was lost
                since = lost.last if lost is not None else leased.get(a)
                nxt = runs.get(b)
                if since is not None and nxt is not None:
                    out.append(nxt.start - since)
        return out

    def row(self, fault: str, injected: str) -> dict[str, Any]:
        """One line of docs/reliability.md's table."""
        rec = self.recovery_s()
        return {
            "fault": fault,
            "injected": injected,
            "jobs": len(self.ids),
            "lost": len(self.lost()),
            "run twice": len(self.overlapping()) + len(self.alive_after_requeue()),
            "billed twice": len(self.billed_twice()),
            "requeued": self.reruns(),
            "recover median s": round(statistics.median(rec), 1) if rec else None,
            "recover max s": round(max(rec), 1) if rec else None,
        }


def _overlap(intervals: list[tuple[float, float]]) -> bool:
    return any(b[0] < a[1] for a, b in itertools.pairwise(intervals))


def check(outcome: Outcome, cluster: Cluster | None = None) -> None:
    """Assert exactly once (see module doc); the failure names the jobs and shows the logs."""
    logs = cluster.logs() if cluster is not None else ""
    problems = {
        "did not end SUCCEEDED exactly once": outcome.lost(),
        "ran at two places at once": outcome.overlapping(),
        "still running when requeued": outcome.alive_after_requeue(),
        "billed twice": outcome.billed_twice(),
        "not billed": outcome.unbilled(),
        "no record of a finished run": [
            j for j in outcome.ids if not any(r.ended for r in outcome.runs.get(j, []))
        ],
    }
    bad = {k: v for k, v in problems.items() if v}
    if bad:
        detail = []
        for jobs in bad.values():
            for j in jobs[:3]:
                detail.append(
                    f"{j}: {outcome.details[j].get('events')}\n  runs {outcome.runs.get(j)}"
                )
        raise AssertionError(f"exactly-once broken: {bad}\n" + "\n".join(detail) + "\n" + logs)


def pids_alive(pids: list[int]) -> list[int]:
    """The pids still alive."""
    return [p for p in pids if pid_alive(p)]
