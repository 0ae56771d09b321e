"""`cnet demo --federated`: a national control plane over three regional ones, on this machine.

Four control planes run as processes, each with its own SQLite file in one
temporary directory: the national plane `cn` and three regions — 粤港澳 Greater
Bay Area (`gba`), 长三角 Yangtze River Delta (`yrd`) and 成渝 Chengdu–Chongqing
(`cy`) — from the network files in ``examples/federated/`` (hubs and prices of
the built-in `china` network). Each region runs one local agent per center and
joins the national plane as one center through ``cnet agent --backend network``
(docs/federation.md).

Jobs are submitted at the top (the national plane picks a region, the region
picks a center) and at a region. While a delegated job runs in `yrd`, the whole
region is SIGKILLed — its plane, its center agents and its network agent — and
the national plane requeues the job, which then finishes once in another
region. Every job's command leaves a marker file per run (start and end), so
"exactly once" is counted, not assumed. It ends with each job's path through
the levels and the national bill, checked line by line against what the
regions metered. Exit 0 only if every job succeeded and ran to its end exactly
once, and the bill has one line per job equal to its region's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from computenet.catalog import load_network
from computenet.cli.common import console, err_console, print_json, to_jsonable
from computenet.cli.demo import demo_epoch
from computenet.cli.netcmd import print_bill
from computenet.cli.procs import (
    Credentials,
    RunningNetwork,
    _private_sqlite,
    make_credentials,
    start_network,
    wait_online,
)
from computenet.cli.supervise import (
    Child,
    Supervisor,
    cnet_argv,
    free_port,
    wait_http,
    write_secret,
)
from computenet.errors import ComputeNetError
from computenet.model import TERMINAL_STATES, JobState
from computenet.model.center import CST
from computenet.protocol import BillLine, BillView, JobDetail, JobView
from computenet.sdk import Client
from computenet.server import admin

# The network files: national.yaml and one per region (in a checkout of the project).
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "federated"
ORIGIN = "cn"
REGIONS: dict[str, str] = {
    "gba": "粤港澳 Greater Bay Area",
    "yrd": "长三角 Yangtze River Delta",
    "cy": "成渝 Chengdu–Chongqing",
}
KILLED = "yrd"  # the region SIGKILLed mid-run
LOCAL = "cy"  # where the region-level jobs are submitted
# The national plane's lease: a dead region's jobs are requeued 1.25 × this after its
# last heartbeat. Short, so that the demo stays short; the regions keep the default.
NATIONAL_LEASE_S = 6.0
NATIONAL_HEARTBEAT_S = 0.5
NATIONAL_CYCLE_S = 0.5
POLL_S = 0.5


@dataclass(frozen=True)
class DemoJob:
    """One job of the demo: where it is submitted, what it asks for, how long it runs (real s)."""

    name: str
    at: str  # ORIGIN (the national plane) or a region id
    workload_class: str
    chip: str
    count: int
    cu_hours: float
    run_s: float
    story: str  # what it shows, for the summary
    extra: dict[str, Any] = field(default_factory=dict)


JOBS: tuple[DemoJob, ...] = (
    DemoJob(
        "llm-pretrain",
        ORIGIN,
        "llm-train",
        "H800",
        4,
        2.0,
        4,
        "only gba has H800; the region picks the one center with 4 free (largest shape)",
    ),
    DemoJob(
        "ascend-finetune",
        ORIGIN,
        "llm-train",
        "Ascend-910B",
        2,
        1.0,
        8,
        "yrd is the cheaper Ascend region; yrd is killed while it runs: it finishes in gba",
    ),
    DemoJob(
        "cv-train",
        ORIGIN,
        "cv-train",
        "A100",
        2,
        0.5,
        3,
        "cy has the cheapest power for A100",
    ),
    DemoJob(
        "batch-infer",
        ORIGIN,
        "inference",
        "A100",
        1,
        0.2,
        3,
        "cy again; its region picks the center",
    ),
    DemoJob(
        "cy-burst-h800",
        LOCAL,
        "llm-train",
        "H800",
        2,
        0.5,
        4,
        "submitted to cy, which has no H800: it overflows up, and the national plane runs it"
        " in another region",
        {"spill": "allow"},
    ),
    DemoJob(
        "cy-local-report",
        LOCAL,
        "inference",
        "A100",
        1,
        0.1,
        3,
        "submitted to the cy region itself: never leaves it",
    ),
)


def spec_of(job: DemoJob, marks: Path) -> dict[str, Any]:
    """The job file of `job`: its command leaves one start and one end marker per run."""
    tag = f"{marks}/{job.name}"
    command = (
        f'echo $$ > "{tag}.start.$CNET_CENTER.$$";'
        f' echo "{job.name}: $CNET_CHIP_COUNT x $CNET_CHIP at $CNET_CENTER'
        ' (origin ${CNET_ORIGIN_JOB:-none})";'
        f" sleep {job.run_s:g};"
        f' touch "{tag}.end.$CNET_CENTER.$$"; echo done'
    )
    return {
        "name": job.name,
        "class": job.workload_class,
        "command": command,
        "chips": {"count": job.count, "types": [job.chip]},
        "work": {"cu_hours": job.cu_hours},
        **job.extra,
    }


def runs_of(marks: Path, name: str, kind: str) -> list[str]:
    """The centers where runs of job `name` left a `kind` ("start"/"end") marker."""
    prefix = f"{name}.{kind}."
    return sorted(
        p.name[len(prefix) :].rsplit(".", 1)[0]
        for p in marks.iterdir()
        if p.name.startswith(prefix)
    )


class Progress:
    """Progress lines on stderr, each with the seconds since the demo started.

    Also the `status` object `start_network` reports to (its `update`).
    """

    def __init__(self, out: Console, started: float, prefix: str = "") -> None:
        self.out = out
        self.started = started
        self.prefix = prefix
        self._last = ""

    def __call__(self, text: str) -> None:
        """Print one progress line."""
        self.out.print(f"[{time.monotonic() - self.started:5.1f}s] {self.prefix}{escape(text)}")

    def update(self, text: str) -> None:
        """`start_network`'s status callback (it repeats "waiting for …" while it waits)."""
        if text != self._last:
            self._last = text
            self(text)

    def sub(self, prefix: str) -> Progress:
        """The same progress with a prefix (e.g. the region's name)."""
        return Progress(self.out, self.started, prefix)


@dataclass
class Region:
    """A running regional network, the account the national jobs run as, and its uplink."""

    id: str
    net: RunningNetwork
    sup: Supervisor
    link_token_file: Path
    network_agent: Child | None = None
    killed: bool = False

    @property
    def url(self) -> str:
        """The region's control plane."""
        return self.net.url

    def admin(self) -> Client:
        """An admin client of the region."""
        return Client(self.url, self.net.creds.admin)


@dataclass
class Federation:
    """The national plane, its regions, and the clients the demo uses."""

    base: Path
    national: RunningNetwork
    national_sup: Supervisor
    national_file: Path
    regions: dict[str, Region]
    top: Client  # the national plane's user
    locals: dict[str, Client]  # a user of each region that submits there
    watchdogs: list[tuple[int, int]] = field(default_factory=list)  # (pid, start time)

    def client_at(self, at: str) -> Client:
        """Who submits a job submitted at `at`."""
        return self.top if at == ORIGIN else self.locals[at]

    def supervisors(self) -> list[Supervisor]:
        """Every supervisor, national first."""
        return [self.national_sup, *(r.sup for r in self.regions.values())]


def network_files(where: Path = EXAMPLES) -> dict[str, Path]:
    """The national and regional network files; a clear error when they are missing."""
    files = {name: where / f"{name}.yaml" for name in ("national", *REGIONS)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ComputeNetError(
            f"the federated demo's network files are missing: {', '.join(missing)}",
            field="examples/federated",
            hint="run `cnet demo --federated` from a checkout of ComputeNet (an editable install)",
        )
    return files


PARENT = "cn"  # the national plane's center id in the network file of region LOCAL


@dataclass(frozen=True)
class Plan:
    """What is decided before any process starts: where each plane listens, the epoch.

    The ports are picked first so that every process can be given the others'
    URLs at once: region LOCAL's uplink agent (a center of the region) is given
    the national plane's URL before that plane is up (its backend offers nothing
    until it answers), and the national file names each region's plane.
    """

    base: Path
    epoch: str
    urls: dict[str, str]  # "national" and each region id → its control plane's URL

    @classmethod
    def make(cls, base: Path) -> Plan:
        """Fresh ports on 127.0.0.1; the existing demo's epoch (21:30 CST today)."""
        epoch = demo_epoch(datetime.now(CST).date()).isoformat()
        names = ("national", *REGIONS)
        return cls(base, epoch, {n: f"http://127.0.0.1:{free_port()}" for n in names})

    def env(self) -> dict[str, str]:
        """What every process of the demo carries (marks them as the demo's)."""
        return {"CNET_DEMO_DIR": str(self.base)}


def start_region(
    plan: Plan, sup: Supervisor, rid: str, file: Path, say: Progress, uplink_token: Path
) -> Region:
    """Start region `rid`: its plane and one agent per center.

    The national plane's jobs run in the region as the user `cn-link` of tenant
    `national`, whose token the network agent reads from a 0600 file. In region
    LOCAL the center PARENT is the national plane, run by an uplink agent.
    """
    home = plan.base / rid
    net = load_network(file)
    local = [c for c in net.centers if c.backend == "local"]
    say(f"starting {REGIONS[rid]}: a plane and {len(net.centers)} centers")
    backends: dict[str, list[str]] = {}
    if any(c.id == PARENT for c in net.centers):
        backends[PARENT] = [
            "--backend", "uplink",
            "--backend-opt", f"url={plan.urls['national']}",
            "--backend-opt", f"token_file={uplink_token}",
            "--backend-opt", f"origin={rid}",
        ]  # fmt: skip
    running = start_network(
        sup,
        str(file),
        net,
        home,
        db=f"sqlite:///{home / 'region.db'}",
        port=int(plan.urls[rid].rsplit(":", 1)[1]),
        tenant="national",
        user=f"{ORIGIN}-link",
        epoch=plan.epoch,
        env=plan.env(),
        status=say,
        backends=backends,
    )
    link = write_secret(home / "secrets" / f"{ORIGIN}-link.token", running.creds.user)
    say(
        f"up at {running.url}: {', '.join(f'{c.id} ({_pools(c.pools)})' for c in local)}"
        + (f"; {PARENT} = the national plane, for overflow up" if backends else "")
    )
    return Region(rid, running, sup, link)


def _pools(pools: Any) -> str:
    return " + ".join(f"{p.count} {p.chip}" for p in pools)


def national_file(template: Path, urls: dict[str, str], dest: Path) -> Path:
    """The national network file with each region's plane as a `url:` tag (for resolve)."""
    data = yaml.safe_load(template.read_text("utf-8"))
    for c in data["centers"]:
        if c["id"] in urls:
            c["tags"] = [*c.get("tags", []), f"url:{urls[c['id']]}"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return dest


def start_national(
    plan: Plan,
    sup: Supervisor,
    file: Path,
    creds: Credentials,
    regions: dict[str, Region],
    say: Progress,
) -> RunningNetwork:
    """Start the national plane and one network agent per region; wait until all are online."""
    home = plan.base / "national"
    url = plan.urls["national"]
    say(f"starting the national plane {ORIGIN} on {url}")
    argv = [
        "server", "--db", _national_db(plan), "--host", "127.0.0.1",
        "--port", url.rsplit(":", 1)[1], "--network", str(file), "--log-level", "warning",
        "--epoch", plan.epoch, "--heartbeat-interval", str(NATIONAL_HEARTBEAT_S),
        "--lease-timeout", str(NATIONAL_LEASE_S), "--cycle-interval", str(NATIONAL_CYCLE_S),
    ]  # fmt: skip
    server = sup.start("server", cnet_argv(*argv), plan.env())
    wait_http(f"{url}/healthz", server, timeout_s=60)
    for rid, region in regions.items():
        say(f"joining {rid} to {ORIGIN}: cnet agent --center {rid} --backend network")
        token_file = write_secret(home / "secrets" / f"{rid}.token", creds.centers[rid])
        argv = [
            "agent", "--center", rid, "--server", url, "--backend", "network",
            "--network", str(file),
            "--data-root", str(home / "centers" / rid / "data"),
            "--state-dir", str(home / "centers" / rid / "state"),
            "--log-level", "WARNING", "--token-file", str(token_file),
            "--backend-opt", f"url={region.url}",
            "--backend-opt", f"token_file={region.link_token_file}",
            "--backend-opt", f"origin={ORIGIN}",
        ]  # fmt: skip
        region.network_agent = sup.start(
            f"agent-{rid}", cnet_argv(*argv), plan.env(), drop_secrets=True
        )
    running = RunningNetwork(url, load_network(file), creds, {}, _national_db(plan), home)
    wait_online(sup, running, status=say)
    say(f"national plane up: regions {', '.join(regions)} online as centers")
    return running


def _national_db(plan: Plan) -> str:
    return f"sqlite:///{plan.base / 'national' / 'national.db'}"


def start_federation(
    stack: contextlib.ExitStack, base: Path, say: Progress, files: dict[str, Path]
) -> Federation:
    """Start the three regions, then the national plane over them; make the demo's users.

    Every process is started by one of four supervisors (one per plane), entered
    on `stack`, so that leaving it — normally, on an error or on Ctrl-C — stops
    every one of them by PID, the national plane's first.
    """
    plan = Plan.make(base)
    marks = base / "runs"
    marks.mkdir()
    # Jobs run as uids of their own (agents as root): they may create, not list.
    marks.chmod(0o1733)
    # The national plane's accounts exist before any process starts: region LOCAL's
    # uplink needs its token at once.
    nfile = national_file(files["national"], plan.urls, base / "national" / "national.yaml")
    _private_dir(base / "national")
    _private_sqlite(_national_db(plan))
    creds = make_credentials(_national_db(plan), load_network(nfile), "acme", "ann")
    admin.create_tenant(_national_db(plan), LOCAL)
    up = admin.create_user(_national_db(plan), f"{LOCAL}-uplink", LOCAL).token
    uplink_token = write_secret(base / LOCAL / "secrets" / f"{PARENT}-uplink.token", up)

    regions = {}
    for rid in REGIONS:
        sup = stack.enter_context(Supervisor(base / rid / "logs"))
        regions[rid] = start_region(plan, sup, rid, files[rid], say.sub(f"{rid}: "), uplink_token)
    nsup = stack.enter_context(Supervisor(base / "national" / "logs"))
    # On the way out, every plane and agent is asked to stop at once (national first);
    # the supervisors then wait for their own, in turn (each alone would wait in turn).
    stack.callback(terminate_all, [nsup, *(r.sup for r in regions.values())])
    national = start_national(plan, nsup, nfile, creds, regions, say)
    top = stack.enter_context(Client(national.url, national.creds.user))
    with regions[LOCAL].admin() as region_admin:
        region_admin.create_tenant(f"{LOCAL}-lab")
        token = region_admin.create_user("li", f"{LOCAL}-lab").token
    locals_ = {LOCAL: stack.enter_context(Client(regions[LOCAL].url, token))}
    return Federation(base, national, nsup, nfile, regions, top, locals_)


def terminate_all(sups: list[Supervisor]) -> None:
    """SIGTERM the process group of every child of `sups` still running, in order."""
    for sup in sups:
        for c in reversed(sup.children):
            if c.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.pid, signal.SIGTERM)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o711)


# ----------------------------------------------------------------------------- the run


@dataclass
class Tracked:
    """A submitted demo job and what the demo saw of it."""

    job: DemoJob
    view: JobView
    detail: JobDetail | None = None
    seen: str = ""  # the last state line printed


def submit_all(fed: Federation, say: Progress) -> list[Tracked]:
    """Submit every job where it belongs (one idempotency key per job)."""
    marks = fed.base / "runs"
    out = []
    for j in JOBS:
        view = fed.client_at(j.at).submit(spec_of(j, marks), idempotency_key=f"fed-demo-{j.name}")
        where = "the national plane" if j.at == ORIGIN else f"region {j.at}"
        say(f"submitted {j.name} ({j.count}× {j.chip}) to {where}: {view.id}")
        out.append(Tracked(j, view))
    return out


def _refresh(fed: Federation, jobs: list[Tracked]) -> None:
    for t in jobs:
        if t.view.state in TERMINAL_STATES and t.detail is not None:
            continue
        with contextlib.suppress(ComputeNetError):
            t.detail = fed.client_at(t.job.at).job(t.view.id)
            t.view = t.detail


def _state_line(fed: Federation, t: Tracked) -> str:
    v = t.view
    where = f" at {' → '.join(_hop_names(fed, t))}" if v.center else ""
    attempt = f" (attempt {v.attempts})" if v.attempts > 1 else ""
    return f"{v.state.value}{where}{attempt}"


def _hop_names(fed: Federation, t: Tracked) -> list[str]:
    return [f"{h['network']}:{h['center']}" for h in path_of(fed, t) if h.get("center")]


def watch(fed: Federation, jobs: list[Tracked], say: Progress, timeout_s: float) -> None:
    """Follow the jobs until all are final; kill region KILLED while a delegated job runs there."""
    marks = fed.base / "runs"
    deadline = time.monotonic() + timeout_s
    while True:
        _refresh(fed, jobs)
        for t in jobs:
            line = _state_line(fed, t)
            if line != t.seen:
                say(f"{t.job.name}: {line}")
                t.seen = line
        _check_alive(fed)
        victim = fed.regions[KILLED]
        if not victim.killed:
            running = [
                t
                for t in jobs
                if t.job.at == ORIGIN
                and t.view.state is JobState.RUNNING
                and t.view.center == KILLED
                and runs_of(marks, t.job.name, "start")
            ]
            if running:
                kill_region(fed, victim, [t.job.name for t in running], say)
        if all(t.view.state in TERMINAL_STATES for t in jobs):
            return
        if time.monotonic() > deadline:
            say(f"gave up after {timeout_s:g}s: some jobs are not final")
            return
        time.sleep(POLL_S)


def _check_alive(fed: Federation) -> None:
    """A process that died on its own (not one the demo killed) ends the demo with its log."""
    killed = {id(c) for r in fed.regions.values() if r.killed for c in _region_children(r)}
    for sup in fed.supervisors():
        for c in sup.dead():
            if id(c) not in killed:
                raise ComputeNetError(
                    f"{c.name} exited with status {c.proc.returncode} during the demo",
                    field=c.name,
                    hint=f"see {c.log_path}: {c.log_tail(2)!r}",
                )


def _region_children(region: Region) -> list[Child]:
    kids = list(region.sup.children)
    if region.network_agent is not None:
        kids.append(region.network_agent)
    return kids


def kill_region(fed: Federation, region: Region, running: list[str], say: Progress) -> None:
    """SIGKILL a whole region: its plane, its center agents and its network agent.

    Each was started in a process group of its own by this demo; their jobs'
    supervisors stop the jobs once their agent is gone. The network agent's
    watchdog (its own session) outlives it by design: it is remembered here and
    stopped at the end if it has not exited by then.
    """
    victims = _region_children(region)
    if region.network_agent is not None:
        fed.watchdogs += children_of(region.network_agent.pid)
    say(
        f"killing region {region.id} while {', '.join(running)} runs there: SIGKILL to"
        f" {', '.join(f'{c.name} (pid {c.pid})' for c in victims)}"
    )
    for c in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.pid, signal.SIGKILL)
    for c in victims:
        with contextlib.suppress(Exception):
            c.proc.wait(timeout=5)
    region.killed = True
    say(
        f"region {region.id} is gone; {ORIGIN} requeues its jobs once their lease lapses"
        f" ({1.25 * NATIONAL_LEASE_S:g}s after the last heartbeat)"
    )


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if not fields or fields[0] in ("Z", "X") else int(fields[19])


def children_of(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of the live children of `pid`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 19 and int(fields[1]) == pid:
            found.append((int(proc.name), int(fields[19])))
    return found


def stop_watchdogs(watchdogs: list[tuple[int, int]], grace_s: float = 5.0) -> None:
    """Stop the remembered processes that are still the same processes (pid and start time)."""
    live = [(pid, st) for pid, st in watchdogs if _start_time(pid) == st]
    for pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while live and time.monotonic() < deadline:
        live = [(pid, st) for pid, st in live if _start_time(pid) == st]
        time.sleep(0.1)
    for pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------- paths, bill


def path_of(fed: Federation, t: Tracked) -> list[dict[str, Any]]:
    """The job's hops through the levels, top first: {network, center, chip, count, job_id,
    state, reason}.

    The server's `JobDetail.path` when it has one; else derived: the plane's own
    placement, then, for a job placed on a region, the region's job named
    ``ORIGIN/JOB:ATTEMPT`` (read as the account the national jobs run as).
    """
    d = t.detail
    server_path = getattr(d, "path", None)
    if server_path:
        return [to_jsonable(h) for h in server_path]
    v = t.view
    plane = ORIGIN if t.job.at == ORIGIN else t.job.at
    if not v.center:
        return []
    reason = _reason(d)
    hops = [_hop(plane, v, reason)]
    if t.job.at == ORIGIN and v.center in fed.regions:
        region = fed.regions[v.center]
        child = _child_job(region, f"{ORIGIN}/{v.id}:{v.attempts}")
        if child is not None:
            hops.append(_hop(f"{ORIGIN}.{region.id}", child, _reason(child)))
    return hops


def _hop(network: str, v: JobView, reason: str | None) -> dict[str, Any]:
    return {
        "network": network,
        "center": v.center,
        "chip": v.chip,
        "count": v.chips,
        "job_id": v.id,
        "state": v.state.value,
        "reason": reason,
    }


def _reason(d: JobView | None) -> str | None:
    if isinstance(d, JobDetail) and d.placement is not None and d.placement.reasons:
        return d.placement.reasons[0]
    return d.reasons[0] if d is not None and d.reasons else None


def _child_job(region: Region, name: str) -> JobDetail | None:
    """The region's job `name` (national job and attempt), None if the region cannot say."""
    if region.killed:
        return None
    try:
        with Client(region.url, region.link_token_file.read_text().strip()) as link:
            found = next((j for j in link.jobs() if j.name == name), None)
            return link.job(found.id) if found is not None else None
    except ComputeNetError:
        return None


@dataclass
class Bills:
    """The national plane's bills of the month, and each line checked against who metered it."""

    national: dict[str, BillView]  # tenant → its bill: the top user's, region LOCAL's uplink
    checks: list[dict[str, Any]]
    national_ids: dict[str, str]  # a regional job sent up → its national job id

    @property
    def total_cny(self) -> Decimal:
        """The national plane's total over its tenants."""
        return sum((b.total_cny for b in self.national.values()), Decimal(0))

    def to_json(self) -> dict[str, Any]:
        """The `bill` of `--json`."""
        lines = [{"tenant": t, **to_jsonable(x)} for t, b in self.national.items() for x in b.lines]
        return {
            "total_cny": str(self.total_cny),
            "by_tenant": {t: str(b.total_cny) for t, b in self.national.items()},
            "lines": lines,
            "checks": to_jsonable(self.checks),
        }


def _same(a: BillLine | None, b: BillLine | None) -> bool:
    return (
        a is not None
        and b is not None
        and (a.energy_cny, a.service_cny, a.transfer_cny, a.total_cny)
        == (b.energy_cny, b.service_cny, b.transfer_cny, b.total_cny)
    )


def bills_of(fed: Federation, period: str) -> Bills:
    """The national bills, each line checked to the fen against the level that metered it.

    A job delegated to a region is billed at the top exactly what the region
    metered for the regional job that ran it (named ``cn/JOB:ATTEMPT``, its last
    attempt); a job region LOCAL sent up is billed in the region exactly what the
    national plane metered for it (named ``LOCAL/JOB:ATTEMPT``). A killed region
    cannot be asked: such a line is not checked (`matches` null).
    """
    with Client(fed.national.url, fed.national.creds.admin) as adm:
        national = {t: adm.bill(tenant=t, period=period) for t in ("acme", LOCAL)}
        jobs = adm.jobs()
    by_id = {j.id: j for j in jobs}
    by_name = {j.name: j.id for j in jobs}
    region_lines: dict[str, dict[str, BillLine]] = {}  # region → regional job name → line
    for rid, region in fed.regions.items():
        if region.killed:
            continue
        with Client(region.url, region.link_token_file.read_text().strip()) as link:
            names = {j.id: j.name for j in link.jobs()}
            lines = link.bill(period=period).lines
        region_lines[rid] = {names.get(x.job_id, ""): x for x in lines}
    checks: list[dict[str, Any]] = []
    for tenant, bill in national.items():
        for line in bill.lines:
            attempts = by_id[line.job_id].attempts if line.job_id in by_id else 0
            theirs = region_lines.get(line.center, {}).get(f"{ORIGIN}/{line.job_id}:{attempts}")
            checks.append(
                {
                    "billed_by": f"{ORIGIN} (tenant {tenant})",
                    "job_id": line.job_id,
                    "total_cny": line.total_cny,
                    "metered_by": line.center,
                    "metered_job_id": theirs.job_id if theirs else None,
                    "metered_total_cny": theirs.total_cny if theirs else None,
                    "matches": _same(line, theirs) if line.center in region_lines else None,
                }
            )
    national_ids: dict[str, str] = {}
    local = fed.locals[LOCAL]
    for line in local.bill(period=period).lines:
        if line.center != PARENT:
            continue
        nid = by_name.get(f"{LOCAL}/{line.job_id}:{local.job(line.job_id).attempts}")
        national_ids[line.job_id] = nid or "?"
        theirs = next((x for x in national[LOCAL].lines if x.job_id == nid), None)
        checks.append(
            {
                "billed_by": f"{LOCAL} (tenant {LOCAL}-lab)",
                "job_id": line.job_id,
                "total_cny": line.total_cny,
                "metered_by": ORIGIN,
                "metered_job_id": nid,
                "metered_total_cny": theirs.total_cny if theirs else None,
                "matches": _same(line, theirs),
            }
        )
    return Bills(national, checks, national_ids)


# ------------------------------------------------------------------------------ result


def job_result(fed: Federation, t: Tracked) -> dict[str, Any]:
    """One job as `--json` prints it, with the runs its markers counted and whether it is ok."""
    marks = fed.base / "runs"
    v = t.view
    hops = path_of(fed, t)
    national_hop = next((h for h in hops if h["network"] == ORIGIN), None)
    region = national_hop["center"] if national_hop else t.job.at
    leaf = hops[-1] if hops else None
    finished = runs_of(marks, t.job.name, "end")
    started = runs_of(marks, t.job.name, "start")
    problems = []
    if v.state is not JobState.SUCCEEDED:
        problems.append(f"ended {v.state.value}")
    if len(finished) != 1:
        problems.append(f"ran to its end {len(finished)} times ({', '.join(finished) or 'never'})")
    elif leaf is not None and leaf["center"] != finished[0]:
        problems.append(f"its path ends at {leaf['center']} but it ran at {finished[0]}")
    return {
        "id": v.id,
        "name": t.job.name,
        "submitted_to": t.job.at,
        "state": v.state.value,
        "region": region,
        "center": leaf["center"] if leaf else None,
        "chip": v.chip,
        "chips": v.chips,
        "cost_cny": to_jsonable(v.cost_cny),
        "path": to_jsonable(hops),
        "attempts": v.attempts,
        "runs_started": started,
        "runs_finished": finished,
        "story": t.job.story,
        "ok": not problems,
        "problems": problems,
    }


def result_of(
    fed: Federation, jobs: list[Tracked], period: str, started: float
) -> tuple[dict[str, Any], Bills]:
    """The demo's JSON result: jobs, the national bill checked against the regions, ok."""
    rows = [job_result(fed, t) for t in jobs]
    bills = bills_of(fed, period)
    problems = [f"{r['name']}: {p}" for r in rows for p in r["problems"]]
    if not fed.regions[KILLED].killed:
        problems.append(f"no delegated job ran in {KILLED}: the region was never killed")
    # No double billing: the national plane bills each job it ran exactly once.
    expected = sorted(
        [r["id"] for r in rows if r["submitted_to"] == ORIGIN] + list(bills.national_ids.values())
    )
    billed = sorted(x.job_id for b in bills.national.values() for x in b.lines)
    if billed != expected:
        problems.append(
            f"the national bill has lines for {billed}, expected one each for {expected}"
        )
    problems += [
        f"{c['billed_by']} bills {c['job_id']} ¥{c['total_cny']}, {c['metered_by']} metered"
        f" ¥{c['metered_total_cny']}"
        for c in bills.checks
        if c["matches"] is False
    ]
    pids = [c.pid for sup in fed.supervisors() for c in sup.children]
    pids += [pid for pid, _ in fed.watchdogs]
    result = {
        "ok": not problems,
        "problems": problems,
        "jobs": rows,
        "bill": bills.to_json(),
        "killed_region": KILLED,
        "national": fed.national.url,
        "regions": {rid: r.url for rid, r in fed.regions.items()},
        "pids": pids,
        "dir": str(fed.base),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    return result, bills


def _paths_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="jobs and their paths through the levels", title_justify="left")
    for col in ("job", "submitted to", "state", "path", "runs", "¥"):
        t.add_column(col, justify="right" if col == "¥" else "left")
    for r in rows:
        path = " → ".join(
            f"{h['network']}:{h['center']}" + (f" ({h['count']}× {h['chip']})" if i == 0 else "")
            for i, h in enumerate(r["path"])
        )
        runs = f"{len(r['runs_finished'])} finished"
        lost = list(r["runs_started"])
        for center in r["runs_finished"]:
            if center in lost:
                lost.remove(center)
        if lost:
            runs += f", {len(lost)} killed at {', '.join(lost)}"
        t.add_row(
            r["name"],
            r["submitted_to"],
            r["state"] + (f" (attempt {r['attempts']})" if r["attempts"] > 1 else ""),
            path or "-",
            runs,
            r["cost_cny"] or "-",
        )
    return t


def _verdict(out: Console, result: dict[str, Any]) -> None:
    jobs = result["jobs"]
    good = sum(j["ok"] for j in jobs)
    checked = [c for c in result["bill"]["checks"] if c["matches"] is not None]
    line = (
        f"{good}/{len(jobs)} jobs succeeded exactly once; region {result['killed_region']} was"
        f" killed mid-run; national bill ¥{result['bill']['total_cny']}"
        f" ({sum(bool(c['matches']) for c in checked)}/{len(checked)} bill lines equal, to the"
        f" fen, to what the level that ran the job metered); {result['elapsed_s']}s"
    )
    out.print(("[bold green]ok[/]: " if result["ok"] else "[bold red]FAILED[/]: ") + escape(line))
    for p in result["problems"]:
        out.print(f"  - {escape(p)}")


def run_federated(
    out: Console, say: Progress, *, json_out: bool, timeout_s: float, base: Path
) -> tuple[int, dict[str, Any]]:
    """Start the federation, run the jobs, kill a region, print the paths and the bill."""
    files = network_files()
    say(
        f"working in {base}: a directory per plane, with its database and logs (removed at the end)"
    )
    period = demo_epoch(datetime.now(CST).date()).strftime("%Y-%m")
    watchdogs: list[tuple[int, int]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(stop_watchdogs, watchdogs)  # last: after every supervisor stopped
        fed = start_federation(stack, base, say, files)
        fed.watchdogs = watchdogs
        jobs = submit_all(fed, say)
        watch(fed, jobs, say, timeout_s)
        result, bills = result_of(fed, jobs, period, say.started)
        say("stopping every process the demo started")
    if not json_out:
        out.print(_paths_table(result["jobs"]))
        for bill in bills.national.values():
            if bill.lines:
                print_bill(bill)
        _verdict(out, result)
    return (0 if result["ok"] else 1), result


def federated_demo(*, json_out: bool, timeout_s: float, base: Path) -> int:
    """`cnet demo --federated`: run it; print the result (JSON on stdout with `json_out`)."""
    started = time.monotonic()
    say = Progress(err_console(), started)
    code, result = run_federated(console(), say, json_out=json_out, timeout_s=timeout_s, base=base)
    if json_out:
        print_json(result)
    sys.stdout.flush()
    return code
