"""Job commands: submit, jobs, status, logs, cancel, quote, spec show."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table
from rich.text import Text

from computenet.cli.app import app
from computenet.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    cny,
    console,
    dur,
    err_console,
    print_json,
    when,
)
from computenet.errors import ValidationError
from computenet.model import TERMINAL_STATES, JobSpec, JobState
from computenet.protocol import JobDetail, JobView, QuoteView
from computenet.sdk.jobfiles import Conversion
from computenet.sdk.specfile import read_job_file

JobFile = Annotated[
    Path,
    typer.Argument(
        metavar="JOB.yaml",
        help="the job file: ComputeNet YAML/JSON, a SkyPilot task YAML or a Slurm #SBATCH script",
    ),
]
PartitionMapOpt = Annotated[
    Path | None,
    typer.Option(
        "--partition-map",
        envvar="CNET_PARTITION_MAP",
        help="YAML mapping of Slurm partition → workload class (else the built-in map)",
    ),
]
JobId = Annotated[str, typer.Argument(metavar="ID", help="the job id")]

_STATE_STYLE = {
    JobState.PENDING: "yellow",
    JobState.SCHEDULED: "cyan",
    JobState.STAGING: "blue",
    JobState.RUNNING: "bold blue",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "bold red",
    JobState.CANCELLED: "magenta",
}


def state_text(state: JobState) -> Text:
    """A job state, coloured."""
    return Text(state.value, style=_STATE_STYLE.get(state, ""))


def chips_text(view: JobView) -> str:
    """'4× H100' or '-'."""
    return f"{view.chips}× {view.chip}" if view.chip else "-"


@app.command()
def submit(
    job_file: JobFile,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the job is final")] = False,
    key: Annotated[
        str | None, typer.Option("--key", help="idempotency key: the same key twice gives one job")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="with --wait: give up after this many seconds")
    ] = None,
    partition_map: PartitionMapOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Submit a job file. With --wait, show progress and exit 0 only if it SUCCEEDED."""
    spec = load_any(job_file, partition_map)
    with client(url, token) as cn:
        view = cn.submit(spec, idempotency_key=key)
        if not wait:
            if json_out:
                print_json(view)
            else:
                console().print(
                    f"submitted [bold]{view.id}[/] ({view.name}) {view.state.value}"
                    f" — follow it with `cnet status {view.id}`"
                )
            return
        with err_console().status(f"{view.id} {view.state.value}") as status:

            def show(d: JobDetail) -> None:
                where = f" at {d.center} on {chips_text(d)}" if d.center else ""
                why = f" — {d.reasons[0]}" if d.reasons and d.state == JobState.PENDING else ""
                status.update(f"{d.id} [bold]{d.state.value}[/]{where}{why}")

            detail = cn.wait(view.id, timeout_s=timeout, on_update=show)
    if json_out:
        print_json(detail)
    else:
        print_detail(detail)
    if detail.state != JobState.SUCCEEDED:
        raise typer.Exit(1)


@app.command()
def jobs(
    state: Annotated[
        JobState | None, typer.Option("--state", help="only jobs in this state")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="at most this many (newest first, pages followed)")
    ] = 100,
    url: UrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List your jobs, newest first."""
    with client(url, token) as cn:
        views = cn.jobs(state=state, limit=limit)
    if json_out:
        print_json(views)
        return
    t = Table(title=f"{len(views)} job(s)")
    for col in ("id", "name", "class", "state", "center", "chips", "submitted", "est ¥", "¥"):
        t.add_column(col, justify="right" if "¥" in col else "left")
    for v in views:
        t.add_row(
            v.id,
            v.name,
            v.workload_class,
            state_text(v.state),
            v.center or "-",
            chips_text(v),
            when(v.submitted_at),
            cny(v.estimated_cny),
            cny(v.cost_cny),
        )
    console().print(t)


@app.command()
def status(
    job_id: JobId, url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False
) -> None:
    """A job's state, placement, reasons and timeline."""
    with client(url, token) as cn:
        detail = cn.job(job_id)
    if json_out:
        print_json(detail)
    else:
        print_detail(detail)


def print_detail(d: JobDetail) -> None:
    """Human view of one job."""
    out = console()
    head = Text.assemble((f"{d.id} ", "bold"), (f"{d.name} ", ""), state_text(d.state))
    out.print(head)
    out.print(
        f"  class {d.workload_class} · submitted {when(d.submitted_at, date=True)}"
        f" · deadline {when(d.deadline, date=True)} · attempts {d.attempts}"
        + (f" · exit code {d.exit_code}" if d.exit_code is not None else "")
    )
    p = d.placement
    if p is not None:
        out.print(
            f"  placement: {p.count}× {p.chip} at {p.center}, start {when(p.planned_start)},"
            f" finish {when(p.finish)} (transfer {dur(p.transfer_s)}, run {dur(p.run_s)})"
        )
        out.print(
            f"  estimate: ¥{cny(p.total_cny)} = energy {cny(p.cost.energy_cny)} + service"
            f" {cny(p.cost.service_cny)} + transfer {cny(p.cost.transfer_cny)};"
            f" {p.kwh:.1f} kWh, {p.co2_kg:.1f} kg CO2, {p.cu_hours:.2f} CU·h"
        )
    if d.started_at or d.finished_at:
        out.print(
            f"  ran: {when(d.started_at)} → {when(d.finished_at)}; wait {dur(d.wait_s)},"
            f" transfer {dur(d.transfer_s)}, run {dur(d.run_s)}"
            + (f"; cost ¥{cny(d.cost_cny)}" if d.cost_cny is not None else "")
        )
    why = list(p.reasons) if p else list(d.reasons)
    if why:
        out.print("  why here:" if p else "  why:")
        for r in why:
            out.print(f"    - {r}", markup=False)
    if p and d.reasons and list(d.reasons) != why:
        out.print("  now:")
        for r in d.reasons:
            out.print(f"    - {r}", markup=False)
    if d.queue_position is not None:
        out.print(f"  queue: number {d.queue_position} of the jobs waiting here")
    if d.spec.preemptible or d.preemptions:
        out.print(f"  preemption: {preemption_line(d)}", markup=False)
    if d.path and (len(d.path) > 1 or d.path[0].center):
        out.print("  path:")
        for line in path_lines(d):
            out.print(line, markup=False)
    if d.events:
        t = Table(title="timeline", title_justify="left", box=None, padding=(0, 2))
        t.add_column("at (network time)")
        t.add_column("state")
        t.add_column("center")
        t.add_column("message")
        for e in d.events:
            t.add_row(when(e.at), state_text(e.state) if e.state else "", e.center or "", e.message)
        out.print(t)


def preemption_line(d: JobDetail) -> str:
    """A preemptible job's standing: asked to stop now, how often it was, what is left."""
    parts = [f"preempted {d.preemptions}×" if d.preemptions else "preemptible, never preempted"]
    if d.stopping_for:
        parts.append(f"asked to stop now so that {d.stopping_for} runs first")
    if d.work_left is not None:
        parts.append(f"{d.work_left:.0%} of its work left")
    return "; ".join(parts)


def path_lines(d: JobDetail) -> list[str]:
    """The job's path down the levels (national → region → center → chips), one line a level.

    Each level: its network, the center it chose, the job's id and state there,
    its place in that level's queue, and why; the chips where the last level runs it.
    """
    lines = []
    for depth, hop in enumerate(d.path or []):
        where = hop.center or "(not placed)"
        chips = f" on {hop.count}× {hop.chip}" if hop.chip and hop.count else ""
        queue = f" · queue #{hop.position}" if hop.position is not None else ""
        lines.append(
            f"    {'  ' * depth}{'└ ' if depth else ''}{hop.network} → {where}{chips}"
            f" · {hop.job_id or '?'} {hop.state or '?'}{queue}"
        )
        if hop.reason:
            lines.append(f"    {'  ' * depth}{'  ' if depth else ''}  {hop.reason}")
    return lines


@app.command()
def logs(
    job_id: JobId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until the job ends")
    ] = False,
    offset: Annotated[int, typer.Option("--offset", min=0, help="start at this byte")] = 0,
    url: UrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print a job's output (stdout and stderr)."""
    with client(url, token) as cn:
        if json_out:
            print_json(cn.logs(job_id, offset))
            return
        if not follow:
            sys.stdout.write(cn.logs(job_id, offset).text)
            sys.stdout.flush()
            return
        for text in cn.follow_logs(job_id, offset):
            sys.stdout.write(text)
            sys.stdout.flush()


@app.command()
def cancel(
    job_id: JobId,
    wait: Annotated[
        bool, typer.Option("--wait", help="wait until the job is final (its center stopped it)")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cancel a job; a running one is stopped by its center (use --wait to see it end)."""
    with client(url, token) as cn:
        view: JobView = cn.cancel(job_id)
        if wait and view.state not in TERMINAL_STATES:
            with err_console().status(f"{view.id}: waiting for its center to stop it"):
                view = cn.wait(view.id, poll_s=0.3, timeout_s=120)
    if json_out:
        print_json(view)
    elif view.state in TERMINAL_STATES:
        console().print(f"{view.id} {view.state.value}")
    else:
        console().print(
            f"{view.id} {view.state.value}: cancel requested; its center stops it shortly"
            f" (`cnet status {view.id}`)"
        )


@app.command()
def quote(
    job_file: JobFile,
    partition_map: PartitionMapOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Where and when a job could run and what it would cost; nothing is submitted."""
    spec = load_any(job_file, partition_map)
    with client(url, token) as cn:
        q = cn.quote(spec)
    if json_out:
        print_json(q)
    else:
        print_quote(q, spec.name)


def print_quote(q: QuoteView, name: str = "job") -> None:
    """The quote table, cheapest and fastest marked."""
    out = console()
    t = Table(title=f"quote for {name} (network time now {when(q.now, date=True)} CST)")
    cols: tuple[str, ...] = (
        "center",
        "chips",
        "start",
        "finish",
        "energy ¥",
        "service ¥",
        "transfer ¥",
        "total ¥",
        "kWh",
        "kg CO2",
        "",
    )
    # Options at a region (docs/federation.md): the region's own price and finish too.
    regions = any(o.region_cny is not None for o in q.options)
    if regions:
        cols = (*cols[:-1], "region ¥", "region finish", "")
    # The tenant's compute vouchers: the price after them, next to the price before.
    subsidised = any(o.subsidy_cny > 0 for o in q.options)
    if subsidised:
        at = cols.index("total ¥") + 1
        cols = (*cols[:at], "vouchers ¥", "you pay ¥", *cols[at:])
    for c in cols:
        t.add_column(c, justify="right" if ("¥" in c or c in ("kWh", "kg CO2")) else "left")
    for o in q.options:
        marks = [m for m, on in (("cheapest", o.cheapest), ("fastest", o.fastest)) if on]
        if not o.feasible:
            marks.append("infeasible: " + "; ".join(o.reasons) if o.reasons else "infeasible")
        style = "" if o.feasible else "dim"
        t.add_row(
            o.center,
            f"{o.count}× {o.chip}",
            when(o.planned_start),
            when(o.finish),
            cny(o.energy_cny),
            cny(o.service_cny),
            cny(o.transfer_cny),
            cny(o.total_cny),
            *(
                (cny(o.subsidy_cny), cny(o.total_cny if o.paid_cny is None else o.paid_cny))
                if subsidised
                else ()
            ),
            f"{o.kwh:.1f}",
            f"{o.co2_kg:.1f}",
            *(
                (
                    cny(o.region_cny) if o.region_cny is not None else "-",
                    when(o.region_finish) if o.region_finish is not None else "-",
                )
                if regions
                else ()
            ),
            Text(", ".join(marks), style="bold green"),
            style=style,
        )
    if q.options:
        out.print(t)
    else:
        out.print(f"no center can run {name}")
    for note in q.notes:
        out.print(f"· {note}")
    for r in q.infeasible_reasons:
        out.print(f"  - {r}", markup=False)
    out.print("nothing was submitted; `cnet submit` places the job for real")


def read_partition_map(path: Path | None) -> dict[str, str] | None:
    """A `--partition-map` file (YAML: partition: class), or None for the built-in map."""
    if path is None:
        return None
    where = "--partition-map"
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValidationError(
            f"cannot read {path}: {str(exc).splitlines()[0]}",
            field=where,
            hint="give a YAML file of partition: class lines",
        ) from exc
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) and v for v in raw.values()):
        raise ValidationError(
            f"{path} is not a mapping of partition names to classes",
            field=where,
            hint="write lines like gpu: llm-train",
        )
    return {str(k): v for k, v in raw.items()}


def read_any(job_file: Path, partition_map: Path | None) -> tuple[JobSpec, Conversion]:
    """A job file of any known format, validated, and what its format could not carry."""
    return read_job_file(job_file, partition_map=read_partition_map(partition_map))


def load_any(job_file: Path, partition_map: Path | None) -> JobSpec:
    """A job file of any known format as a spec; what could not be mapped goes to stderr.

    A ComputeNet job file says nothing there, as before.
    """
    spec, conv = read_any(job_file, partition_map)
    if conv.format != "computenet" and (conv.unmapped or conv.notes):
        out = err_console()
        out.print(
            f"{job_file.name}: read as a {conv.format} job file; "
            f"{len(conv.unmapped)} field(s) not mapped (`cnet spec show {job_file}` lists them)",
            markup=False,
        )
    return spec


spec_app = typer.Typer(
    help="What a job file (ComputeNet, SkyPilot or Slurm) becomes.", no_args_is_help=True
)
app.add_typer(spec_app, name="spec")


def spec_json(spec: JobSpec) -> dict[str, Any]:
    """A spec in the job file's schema, as JSON data (fields left unset are left out)."""
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line text (a script) as a YAML block, readable as it was written."""


def _str_block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _str_block)


@spec_app.command("show")
def spec_show(
    job_file: JobFile, partition_map: PartitionMapOpt = None, json_out: JsonOpt = False
) -> None:
    """Print the ComputeNet job spec a file becomes, and every field it could not map and why."""
    spec, conv = read_any(job_file, partition_map)
    if json_out:
        print_json({**conv.as_json(), "spec": spec_json(spec)})
        return
    out = console()
    out.print(
        f"# {job_file.name}: a {conv.format} job file, as a ComputeNet job file", markup=False
    )
    sys.stdout.write(
        yaml.dump(spec_json(spec), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)
    )
    sys.stdout.flush()
    if conv.unmapped:
        out.print(f"# not mapped ({len(conv.unmapped)}):", markup=False)
        for u in conv.unmapped:
            out.print(f"#   {u.field}: {u.why}", markup=False)
    else:
        out.print("# not mapped: nothing", markup=False)
    for note in conv.notes:
        out.print(f"# note: {note}", markup=False)
