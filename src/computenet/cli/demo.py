"""`cnet demo`: a whole computing power network on this machine, a dozen real jobs, and the bill.

It starts the control plane on a temporary SQLite file with the built-in `demo`
network (clock at 21:30 CST, so the 23:00 valley tariff is near), the four
agents as processes with their own data roots, registers a big dataset in the
east (40 MB that the demo's data_scale makes stand for 80 GB on the links) and
a small one, and submits mixed jobs: some read the eastern data, some have
tight deadlines, some slack ones that wait for cheaper power, one needs the
`cann` stack, and one is infeasible on purpose (it stays PENDING with its reason
and is then cancelled). Exit 0 only if every feasible job SUCCEEDED.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from computenet.agent.data import create_replica, env_name
from computenet.cli.app import app
from computenet.cli.common import (
    cny,
    console,
    dur,
    err_console,
    fail,
    print_json,
    to_jsonable,
    when,
)
from computenet.cli.jobs import state_text
from computenet.cli.netcmd import print_bill
from computenet.cli.procs import RunningNetwork, start_network
from computenet.cli.supervise import Supervisor
from computenet.errors import ComputeNetError
from computenet.model import TERMINAL_STATES, JobState
from computenet.model.center import CST
from computenet.protocol import BillView, JobDetail, JobView
from computenet.sdk import Client

BIG = "corpus-east"
SMALL = "images-small"
BIG_BYTES = 40_000_000
SMALL_BYTES = 1_000_000
INFEASIBLE = "too-big-64xH100"
EAST = "shanghai"


def demo_epoch(today: date) -> datetime:
    """When the demo's jobs are submitted: 21:30 CST today (yesterday on a month's last day,
    so that every job is billed in one month). The 23:00 valley tariff is 1.5 network hours
    (9 real seconds) later."""
    if (today + timedelta(days=1)).month != today.month:
        today -= timedelta(days=1)
    return datetime(today.year, today.month, today.day, 21, 30, tzinfo=CST)


# The network clock starts this much earlier, so that starting processes (a few real
# seconds, i.e. tens of network minutes) is over before 21:30; the demo then waits for 21:30.
CLOCK_LEAD = timedelta(hours=1, minutes=30)


def _reader(dataset: str) -> str:
    """A shell command that reads an input dataset and prints its sha256."""
    code = (
        "import hashlib,os;"
        f"p=os.environ['{env_name(dataset)}'];"
        "h=hashlib.sha256(open(p,'rb').read()).hexdigest();"
        "print('read',os.path.getsize(p),'bytes, sha256',h)"
    )
    return f"{shlex.quote(job_python())} -c {shlex.quote(code)}"


def job_python() -> str:
    """A Python the demo's jobs can run: the system's on the jobs' plain PATH, else ours.

    Jobs get a plain PATH, and as root they run as uids of their own that may not
    reach this interpreter (e.g. under /root).
    """
    from computenet.backends.local import BASE_PATH

    return shutil.which("python3", path=BASE_PATH) or sys.executable


_WORK = (
    'echo "running on $CNET_CHIP_COUNT x $CNET_CHIP at $CNET_CENTER"; sleep "$CNET_PLANNED_RUN_S"'
)


def demo_jobs() -> list[dict[str, Any]]:
    """The demo's job specs (job-file dicts)."""

    def job(
        name: str,
        cls: str,
        chips: dict[str, Any],
        cuh: float,
        *,
        inputs: tuple[str, ...] = (),
        deadline: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        cmd = " && ".join([*(_reader(d) for d in inputs), _WORK])
        spec: dict[str, Any] = {
            "name": name,
            "class": cls,
            "command": cmd,
            "chips": chips,
            "work": {"cu_hours": cuh},
        }
        if inputs:
            spec["inputs"] = list(inputs)
        if deadline:
            spec["deadline"] = deadline
        spec.update(extra)
        return spec

    return [
        # Built for Ascend: needs the cann stack (only guian has it).
        job(
            "cann-train",
            "llm-train",
            {"count": 4, "stack": "cann"},
            0.6,
            deadline="10h",
            priority=5,
        ),
        # Big eastern data, slack deadline: worth moving west to cheap power and fast chips.
        job("llm-pretrain-east", "llm-train", {"count": 8}, 4.0, inputs=(BIG,), deadline="12h"),
        # Tight deadline, no data: only fast chips make it.
        job("llm-finetune-urgent", "llm-train", {"count": 4}, 1.2, deadline="2h", priority=5),
        # Eastern data, small job: moving 80 GB would cost more than the job; stays near the data.
        job(
            "infer-near-data",
            "inference",
            {"count": 2},
            0.1,
            inputs=(BIG,),
            deadline="2h",
            priority=5,
        ),
        job("cv-train-east", "cv-train", {"count": 2}, 0.3, inputs=(BIG,), deadline="4h"),
        # Slack deadlines: planned into the 23:00 valley tariff. images-small must stay in
        # the east (residency region:east).
        job("cv-train-slack", "cv-train", {"count": 2}, 0.3, inputs=(SMALL,), deadline="10h"),
        job("infer-batch-slack", "inference", {"count": 2}, 0.5, deadline="8h"),
        job("cpu-etl-slack", "cpu-batch", {"count": 4}, 0.01, inputs=(SMALL,), deadline="6h"),
        # Tight ones.
        job("cv-train-tight", "cv-train", {"count": 2}, 0.15, deadline="90m", priority=5),
        job(
            "infer-online", "inference", {"count": 1}, 0.1, latency_class="interactive", priority=5
        ),
        job("infer-tight", "inference", {"count": 1}, 0.25, deadline="90m", priority=5),
        job("cpu-etl-tight", "cpu-batch", {"count": 2}, 0.005, deadline="2h", priority=5),
        job("cpu-report", "cpu-batch", {"count": 1}, 0.003),
        # Infeasible on purpose: no center has 64 H100.
        job(INFEASIBLE, "llm-train", {"count": 64, "types": ["H100"]}, 10.0),
    ]


@dataclass
class DemoJob:
    """One submitted demo job, its latest view, and the reasons it showed while pending."""

    spec: dict[str, Any]
    view: JobView
    detail: JobDetail | None = None
    pending_reasons: tuple[str, ...] = ()
    gave_up: str | None = None

    @property
    def infeasible(self) -> bool:
        """The job meant not to run."""
        return bool(self.spec["name"] == INFEASIBLE)


def _progress_table(jobs: list[DemoJob], now: str, elapsed: float) -> Table:
    t = Table(
        title=f"ComputeNet demo · network time {now} CST · {elapsed:.0f}s", title_justify="left"
    )
    for col in ("job", "class", "state", "center", "chips", "planned start", "est ¥"):
        t.add_column(col, justify="right" if col == "est ¥" else "left")
    for j in jobs:
        v = j.view
        start = j.detail.placement.planned_start if j.detail and j.detail.placement else None
        t.add_row(
            v.name,
            v.workload_class,
            state_text(v.state),
            v.center or "-",
            f"{v.chips}× {v.chip}" if v.chip else "-",
            when(start),
            cny(v.estimated_cny),
        )
    return t


def _why(d: JobDetail, pending: tuple[str, ...]) -> list[str]:
    if d.placement is not None:
        # The first reason restates the choice and its price; the rest say why.
        return list(d.placement.reasons[1:]) or list(d.placement.reasons)
    return list(pending) + [r for r in d.reasons if r not in pending]


def _summary_table(jobs: list[DemoJob]) -> Table:
    t = Table(title="jobs", title_justify="left", show_lines=True)
    for col in ("job", "state", "center", "chips", "why", "wait", "transfer", "run", "¥"):
        t.add_column(
            col,
            justify="right" if col in ("wait", "transfer", "run", "¥") else "left",
            max_width=60 if col == "why" else None,
        )
    for j in jobs:
        d = j.detail
        assert d is not None
        t.add_row(
            d.name,
            state_text(d.state),
            d.center or "-",
            f"{d.chips}× {d.chip}" if d.chip else "-",
            "\n".join(_why(d, j.pending_reasons)),
            dur(d.wait_s),
            dur(d.transfer_s),
            dur(d.run_s),
            cny(d.cost_cny),
        )
    return t


def _input_check(cn: Client, d: JobDetail, sha: dict[str, str]) -> bool | None:
    """Whether every input the job read had the registered checksum (None: no inputs)."""
    if not d.spec.inputs or d.state != JobState.SUCCEEDED:
        return None
    text = cn.logs(d.id).text
    return all(sha[i] in text for i in d.spec.inputs)


def run_demo(
    out: Console, *, json_out: bool, keep_s: float, timeout_s: float, base: Path
) -> tuple[int, dict[str, Any]]:
    """Start the network, run the jobs, print the results; return (exit status, JSON result)."""
    submit_at = demo_epoch(datetime.now(CST).date())
    epoch = submit_at - CLOCK_LEAD
    env = {"CNET_DEMO_DIR": str(base)}
    started = time.monotonic()
    with Supervisor(base / "logs") as sup:
        with out.status("starting the demo network") as status:
            net = start_network(
                sup,
                "demo",
                _demo_network(),
                base,
                db=f"sqlite:///{base / 'demo.db'}",
                tenant="demo",
                user="alice",
                epoch=epoch.isoformat(),
                env=env,
                status=status,
            )
            status.update("creating datasets")
            sha = _datasets(net)
            _wait_until(net, submit_at, status)
        specs = demo_jobs()
        out.print(
            f"demo network up at {net.url}: {len(net.network.centers)} centers"
            f" ({', '.join(c.id for c in net.network.centers)}), clock ×"
            f"{net.network.time_scale:g} (1 real s = {net.network.time_scale / 60:g} network min);"
            f" {BIG} ({BIG_BYTES / 1e6:g} MB, {BIG_BYTES * net.network.data_scale / 1e9:g} GB on"
            f" the links) and {SMALL} (residency region:east) at {EAST};"
            f" submitting {len(specs)} jobs at {when(submit_at)} CST"
        )
        with Client(net.url, net.creds.user) as cn:
            jobs = [
                DemoJob(spec, cn.submit(spec, idempotency_key=f"demo-{spec['name']}"))
                for spec in specs
            ]
            jobs = _watch(cn, out, jobs, timeout_s, sup)
            bill = cn.bill(period=submit_at.strftime("%Y-%m"))
            result = _result(cn, net, jobs, bill, sha, sup, started)
        if not json_out:
            out.print(_summary_table(jobs))
            print_bill(bill)
            _verdict(out, result)
        if keep_s > 0:
            out.print(
                f"the network stays up for {keep_s:g}s: dashboard {net.url}/  (token"
                f" {net.creds.user}); Ctrl-C to stop"
            )
            if json_out:
                print_json(result)
                sys.stdout.flush()
            time.sleep(keep_s)
            return (0 if result["ok"] else 1), {}
    return (0 if result["ok"] else 1), result


def _demo_network() -> Any:
    from computenet.catalog import load_network

    return load_network("demo")


def _wait_until(net: RunningNetwork, at: datetime, status: Any) -> None:
    """Sleep until the network clock shows `at` (no-op when it is already later)."""
    with Client(net.url, net.creds.user) as cn:
        now = datetime.fromisoformat(str(cn.network()["now"]))
    ahead = (at - now).total_seconds() / net.network.time_scale
    if ahead > 0:
        status.update(f"network time {when(now)} CST: submitting at {when(at)}")
        time.sleep(ahead)


def _datasets(net: RunningNetwork) -> dict[str, str]:
    """Write and register the eastern datasets; return their checksums."""
    out: dict[str, str] = {}
    with Client(net.url, net.creds.user) as cn:
        tenant = cn.whoami().tenant  # a tenant's files live in its area of the data root
        for ds, size, residency in ((BIG, BIG_BYTES, None), (SMALL, SMALL_BYTES, "region:east")):
            rep = create_replica(net.data_roots[EAST], ds, size, tenant=tenant)
            cn.add_dataset(ds, EAST, rep.path, rep.size_bytes, rep.sha256, residency=residency)
            out[ds] = rep.sha256
    return out


def _watch(
    cn: Client, out: Console, jobs: list[DemoJob], timeout_s: float, sup: Supervisor
) -> list[DemoJob]:
    """Refresh a live table until every job is final.

    The infeasible job is cancelled once the scheduler has said why it cannot run.
    """
    by_id = {j.view.id: j for j in jobs}
    t0 = time.monotonic()
    net_now = "-"
    with Live(
        _progress_table(jobs, net_now, 0), console=out, refresh_per_second=4, transient=False
    ) as live:
        while True:
            for v in cn.jobs():
                if v.id in by_id:
                    by_id[v.id].view = v
            for j in jobs:
                if j.view.state not in TERMINAL_STATES:
                    j.detail = cn.job(j.view.id)
                if j.view.state == JobState.PENDING and j.view.reasons:
                    j.pending_reasons = tuple(j.view.reasons)
            bad = sup.dead()
            if bad:
                raise ComputeNetError(
                    f"{bad[0].name} exited with status {bad[0].proc.returncode} during the demo",
                    field=bad[0].name,
                    hint=f"see {bad[0].log_path}",
                )
            elapsed = time.monotonic() - t0
            now = _network_now(cn)
            net_now = when(now)
            for j in jobs:
                if j.view.state != JobState.PENDING:
                    continue
                if j.infeasible and _scheduled_at_least_once(j) and elapsed > 3:
                    cn.cancel(j.view.id)
                elif not j.infeasible and now and j.view.deadline and j.view.deadline < now:
                    # Its deadline passed while it waited: it can no longer be placed.
                    j.gave_up = f"still PENDING after its deadline {when(j.view.deadline)}"
                    cn.cancel(j.view.id)
            live.update(_progress_table(jobs, net_now, elapsed))
            if all(j.view.state in TERMINAL_STATES for j in jobs):
                break
            if elapsed > timeout_s:
                break
            time.sleep(0.5)
    out.print()
    for j in jobs:
        j.detail = cn.job(j.view.id)
        j.view = j.detail
    return jobs


def _scheduled_at_least_once(j: DemoJob) -> bool:
    # Before the first cycle the server may say it is waiting for one; act on a real reason.
    return any("cycle" not in r for r in j.pending_reasons)


def _network_now(cn: Client) -> datetime | None:
    try:
        now = cn.network().get("now")
    except ComputeNetError:
        return None
    return datetime.fromisoformat(now) if isinstance(now, str) else None


def _result(
    cn: Client,
    net: RunningNetwork,
    jobs: list[DemoJob],
    bill: BillView,
    sha: dict[str, str],
    sup: Supervisor,
    started: float,
) -> dict[str, Any]:
    rows = []
    ok = True
    for j in jobs:
        d = j.detail
        assert d is not None
        p = d.placement
        good = d.state == (JobState.CANCELLED if j.infeasible else JobState.SUCCEEDED)
        ok = ok and good
        rows.append(
            {
                "id": d.id,
                "name": d.name,
                "class": d.workload_class,
                "state": d.state.value,
                "center": d.center,
                "chip": d.chip,
                "chips": d.chips,
                "cost_cny": to_jsonable(d.cost_cny),
                "estimated_cny": to_jsonable(d.estimated_cny),
                "reasons": _why(d, j.pending_reasons) + ([j.gave_up] if j.gave_up else []),
                "pending_reasons": list(j.pending_reasons),
                "feasible": not j.infeasible,
                "ok": good,
                "deadline": to_jsonable(d.deadline),
                "planned_start": to_jsonable(p.planned_start) if p else None,
                "started_at": to_jsonable(d.started_at),
                "finished_at": to_jsonable(d.finished_at),
                "wait_s": d.wait_s,
                "transfer_s": d.transfer_s,
                "run_s": d.run_s,
                "attempts": d.attempts,
                "exit_code": d.exit_code,
                "inputs": list(d.spec.inputs),
                "input_checksum_ok": _input_check(cn, d, sha),
            }
        )
    return {
        "ok": ok,
        "network": net.network.name,
        "url": net.url,
        "jobs": rows,
        "bill": to_jsonable(bill),
        "datasets": {k: {"center": EAST, "sha256": v} for k, v in sha.items()},
        "pids": [c.pid for c in sup.children],
        "dir": str(net.base_dir),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _verdict(out: Console, result: dict[str, Any]) -> None:
    feasible = [j for j in result["jobs"] if j["feasible"]]
    done = sum(j["state"] == "SUCCEEDED" for j in feasible)
    total = sum((Decimal(j["cost_cny"]) for j in result["jobs"] if j["cost_cny"]), Decimal(0))
    line = (
        f"{done}/{len(feasible)} feasible jobs succeeded; the infeasible one was"
        f" {next((j['state'] for j in result['jobs'] if not j['feasible']), '-')};"
        f" jobs ¥{total:.2f}, bill ¥{result['bill']['total_cny']}; {result['elapsed_s']}s"
    )
    out.print(("[bold green]ok[/]: " if result["ok"] else "[bold red]FAILED[/]: ") + line)


@app.command()
def demo(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    keep: Annotated[
        float, typer.Option("--keep", min=0, help="keep the network up this many seconds after")
    ] = 0,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=10,
            help="give up on the jobs after this many real seconds (default 600; --federated 180)",
        ),
    ] = None,
    federated: Annotated[
        bool,
        typer.Option(
            "--federated",
            help="a national plane over three regional ones, a region killed mid-run"
            " (docs/federation.md)",
        ),
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="an inference service under a replayed LLM trace, a center killed mid-run"
            " (docs/services.md)",
        ),
    ] = False,
    trace: Annotated[
        Path | None,
        typer.Option(
            "--trace",
            help="with --serve: an Azure LLM trace CSV to replay (default: the embedded excerpt)",
        ),
    ] = None,
) -> None:
    """Run the built-in demo network end to end: 4 centers, 14 jobs, live progress, the bill."""
    from computenet.cli.demo_serve import check_flags

    try:  # before anything starts: a flag the chosen demo would ignore is refused
        check_flags(serve=serve, federated=federated, trace_path=trace)
    except ComputeNetError as exc:
        raise fail(exc) from exc
    out = err_console() if json_out else console()
    base = Path(tempfile.mkdtemp(prefix="cnet-demo-"))
    base.chmod(0o711)  # jobs running as their own uids (agents as root) reach their dirs
    if serve:
        from computenet.cli.demo_serve import serve_demo

        try:
            code = serve_demo(json_out=json_out, base=base, trace_path=trace)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        if code:
            raise typer.Exit(code)
        return
    if federated:
        from computenet.cli.demo_federated import federated_demo

        try:
            code = federated_demo(json_out=json_out, timeout_s=timeout or 180, base=base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        if code:
            raise typer.Exit(code)
        return
    try:
        code, result = run_demo(
            out, json_out=json_out, keep_s=keep, timeout_s=timeout or 600, base=base
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if json_out and result:
        print_json(result)
    if code:
        raise typer.Exit(code)
