"""`cnet sim`: simulate the network with the production scheduler — run, compare, sweep.

Registered on the main app with `app.add_typer(sim_app, name="sim")`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from computenet.catalog import load_network
from computenet.cli.common import err_console, fail
from computenet.errors import ComputeNetError, ValidationError
from computenet.scheduler.patience import check_patience
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H
from computenet.sim.metrics import COLUMNS, PolicyMetrics, cell, summarize, tradeoffs
from computenet.sim.policies import parse_policies
from computenet.sim.results import Outage, SimConfig
from computenet.sim.runner import compare, parse_workload, run_policy, sweep, sweep_tasks
from computenet.sim.serving import is_serving_workload
from computenet.sim.serving_cli import serving_compare

sim_app = typer.Typer(
    help="Simulate the network with the production scheduler: run, compare and sweep policies.",
    no_args_is_help=True,
)

NetworkOpt = Annotated[
    str,
    typer.Option("--network", "-n", help="built-in network (demo, china, gavel) or a YAML file"),
]
WorkloadOpt = Annotated[
    str,
    typer.Option(
        "--workload",
        "-w",
        help="synthetic[:jobs=N,days=D,seed=S,…] | gavel:TRACE,throughputs=FILE"
        " | alibaba:PODS[,nodes=FILE] | azure-llm:TRACE[,service=FILE,…] (inference services)",
    ),
]
CycleOpt = Annotated[float, typer.Option("--cycle", help="seconds between scheduling cycles")]
_CYCLE_S = SimConfig().cycle_s  # the simulator's default cycle
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the random baseline and of failures")]
MtbfOpt = Annotated[
    float | None,
    typer.Option(
        "--failures", help="random center failures: mean hours between failures per center"
    ),
]
MaintOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--maintenance", help="planned outage CENTER@START_H+HOURS (repeatable), e.g. guian@30+6"
    ),
]
PatienceOpt = Annotated[
    float,
    typer.Option(
        "--patience",
        help="hours a batch job without a deadline may be held for cheaper power"
        " (the operator's setting, as `cnet server --patience`; 0: never)",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def _console() -> Console:
    """Stdout; tables keep all their columns when piped (no terminal width to fit)."""
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ComputeNetError as exc:
        raise fail(exc) from None


def _config(
    cycle: float,
    seed: int,
    failures: float | None,
    maintenance: list[str] | None,
    patience: float = DEFAULT_PATIENCE_H,
) -> SimConfig:
    if cycle <= 0:
        raise ValidationError("must be > 0", field="--cycle")
    outs = []
    for m in maintenance or []:
        try:
            center, _, when = m.partition("@")
            start, _, hours = when.partition("+")
            s = float(start) * 3600.0
            outs.append(Outage(center, s, s + float(hours) * 3600.0, planned=True))
        except ValueError as exc:
            raise ValidationError(
                f"'{m}' is not CENTER@START_H+HOURS", field="--maintenance"
            ) from exc
    check_patience(patience, "--patience")
    return SimConfig(
        cycle_s=cycle,
        seed=seed,
        failure_mtbf_h=failures,
        outages=tuple(outs),
        patience_h=patience,
    )


def _table(rows: list[PolicyMetrics], title: str) -> Table:
    t = Table(title=title)
    for head, _ in COLUMNS:
        t.add_column(head, justify="left" if head == "policy" else "right")
    for m in rows:
        t.add_row(*(cell(m, k) for _, k in COLUMNS))
    return t


class _Bar:
    """A Rich progress bar on stderr with one task per policy."""

    def __init__(self, quiet: bool) -> None:
        self.progress = (
            None
            if quiet
            else Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("day {task.fields[day]:.1f}"),
                TimeElapsedColumn(),
                console=err_console(),
                transient=False,
            )
        )
        self.tasks: dict[str, object] = {}

    def __enter__(self) -> _Bar:
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)

    def __call__(self, name: str, done: int, total: int, now: float) -> None:
        if self.progress is None:
            return
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, day=0.0)
        self.progress.update(self.tasks[name], completed=done, day=now / 86400.0)  # type: ignore[arg-type]


def _batch_only(
    cycle: float,
    seed: int,
    failures: float | None,
    maintenance: list[str] | None,
    patience: float,
    quiet: bool,
    **more: object,
) -> None:
    """Refuse a batch simulator option given with an LLM request trace, which it would not
    use: the options every batch command takes, compared with their defaults, and `more`
    (flag → value, unset when None or False)."""
    given: dict[str, object] = {
        "--cycle": cycle != _CYCLE_S,
        "--seed": seed != 0,
        "--failures": failures,
        "--maintenance": maintenance,
        "--patience": patience != DEFAULT_PATIENCE_H,
        "--quiet": quiet,
        **more,
    }
    for flag, used in given.items():
        if used is not None and used is not False:
            raise ValidationError(
                "an option of the batch simulator, which an azure-llm workload does not use",
                field=flag,
                hint="leave it out: the serving replay takes its options in the workload, "
                "azure-llm:TRACE,seed=N,... (docs/simulator.md)",
            )


@sim_app.command("run")
def run_cmd(
    network: NetworkOpt = "china",
    workload: WorkloadOpt = "synthetic",
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="ours, ours:PROFILE or a baseline")
    ] = "ours",
    cycle: CycleOpt = _CYCLE_S,
    seed: SeedOpt = 0,
    failures: MtbfOpt = None,
    maintenance: MaintOpt = None,
    patience: PatienceOpt = DEFAULT_PATIENCE_H,
    json_out: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Simulate one policy over a workload and print its figures."""
    if is_serving_workload(workload):  # an LLM request trace: the serving simulator
        with _errors():
            _batch_only(cycle, seed, failures, maintenance, patience, quiet)
            serving_compare(network, workload, policy, json_out=json_out, flag="--policy")
        return
    with _errors():
        net = load_network(network)
        wl = parse_workload(workload, net)
        parse_policies(policy)
        cfg = _config(cycle, seed, failures, maintenance, patience)
        with _Bar(quiet or json_out) as bar:
            result = run_policy(wl, policy, cfg, bar)
        m = summarize(result)
    if json_out:
        print(json.dumps({"policies": [m.as_dict()], "notes": result.notes}, indent=2))
        return
    out = _console()
    out.print(
        _table([m], f"{wl.name} on {net.name}: {len(wl)} jobs, patience {cfg.patience_h:g} h")
    )
    out.print(
        f"{m.succeeded} succeeded, {m.failed} failed, {m.cancelled} cancelled;"
        f" simulated {result.end_s / 86400:.1f} days in {m.wall_s:.1f} s"
        f" ({m.jobs_per_s:,.0f} jobs/s, {m.placements_per_s:,.0f} placements/s in the scheduler)"
    )
    for n in result.notes:
        out.print(f"· {n}")


@sim_app.command("compare")
def compare_cmd(
    network: NetworkOpt = "china",
    workload: WorkloadOpt = "synthetic",
    policies: Annotated[
        str, typer.Option("--policies", help="all, or a comma-separated list")
    ] = "all",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="write plots, results.json and report.html here")
    ] = None,
    bound: Annotated[
        bool, typer.Option("--bound/--no-bound", help="compute the LP lower bound")
    ] = True,
    cycle: CycleOpt = _CYCLE_S,
    seed: SeedOpt = 0,
    failures: MtbfOpt = None,
    maintenance: MaintOpt = None,
    patience: PatienceOpt = DEFAULT_PATIENCE_H,
    json_out: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Run several policies over the same workload; table, plots and an HTML report."""
    if is_serving_workload(workload):  # an LLM request trace: the serving simulator
        with _errors():
            _batch_only(
                cycle,
                seed,
                failures,
                maintenance,
                patience,
                quiet,
                **{"--out": out_dir, "--no-bound": not bound},
            )
            serving_compare(network, workload, policies, json_out=json_out)
        return
    with _errors():
        net = load_network(network)
        wl = parse_workload(workload, net)
        names = parse_policies(policies)
        cfg = _config(cycle, seed, failures, maintenance, patience)
        with _Bar(quiet or json_out) as bar:
            cmp = compare(wl, names, cfg, bound=bound, progress=bar)
        written = []
        if out_dir is not None:
            from computenet.sim.report import write_report

            written = write_report(cmp, out_dir)
    if json_out:
        print(json.dumps(cmp.as_json(), indent=2))
        return
    out = _console()
    out.print(
        _table(
            cmp.metrics, f"{wl.name} on {net.name}: {len(wl)} jobs, patience {cfg.patience_h:g} h"
        )
    )
    for trade in tradeoffs(cmp.metrics):
        out.print(trade.text())
    if cmp.bound is not None:
        out.print(f"LP lower bound ¥{cmp.bound.cny:,.2f} ({cmp.bound.seconds:.1f} s)")
    for n in cmp.notes:
        out.print(f"· {n}")
    if written:
        out.print(f"report: {out_dir / 'report.html' if out_dir else ''}")


@sim_app.command("sweep")
def sweep_cmd(
    network: NetworkOpt = "china",
    workload: Annotated[
        list[str] | None, typer.Option("--workload", "-w", help="workload spec (repeatable)")
    ] = None,
    policies: Annotated[
        str, typer.Option("--policies", help="all, or a comma-separated list")
    ] = "ours",
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", help="synthetic parameter values to sweep, e.g. seed=1,2,3 (repeatable)"
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="auto (Ray when installed), ray or local")
    ] = "auto",
    workers: Annotated[int | None, typer.Option("--workers", help="parallel simulations")] = None,
    patience: PatienceOpt = DEFAULT_PATIENCE_H,
    json_out: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Run many simulations in parallel (Ray when installed, else local processes)."""
    with _errors():
        load_network(network)
        names = parse_policies(policies)
        grid: dict[str, list[str]] = {}
        for p in param or []:
            key, _, values = p.partition("=")
            if not key or not values:
                raise ValidationError(f"'{p}' is not KEY=V1,V2,…", field="--param")
            grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
        check_patience(patience, "--patience")
        tasks = sweep_tasks(
            network, workload or ["synthetic:jobs=2000,days=1"], names, grid, patience_h=patience
        )
        bar = (
            None
            if quiet or json_out
            else Progress(
                TextColumn("sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console(),
            )
        )
        if bar is not None:
            with bar:
                tid = bar.add_task("sweep", total=len(tasks))
                rows, used = sweep(
                    tasks, backend, workers, lambda d, _t: bar.update(tid, completed=d)
                )
        else:
            rows, used = sweep(tasks, backend, workers)
    if json_out:
        print(json.dumps({"backend": used, "runs": rows}, indent=2))
        return
    t = Table(title=f"{len(rows)} simulations ({used})")
    for head in ("workload", "policy", "total ¥", "miss %", "avg JCT h", "wall s"):
        t.add_column(head, justify="left" if head in ("workload", "policy") else "right")
    for r in rows:
        t.add_row(
            r["workload"],
            r["policy"],
            f"{r['total_cny']:,.0f}",
            f"{r['deadline_miss_pct']:.2f}",
            f"{r['avg_jct_s'] / 3600:.2f}",
            f"{r['wall_s']:.1f}",
        )
    _console().print(t)


@sim_app.command("federation")
def federation_cmd(
    network: NetworkOpt = "china",
    workload: WorkloadOpt = "synthetic:jobs=5000,days=3,seed=11",
    regions: Annotated[
        Path | None,
        typer.Option(
            "--regions",
            help="YAML file: region name → list of center ids (default: the network's hubs)",
        ),
    ] = None,
    counts: Annotated[
        str | None,
        typer.Option(
            "--counts",
            help="numbers of regions to group the hubs into, e.g. 1,2,4,all (default;"
            " not with --regions)",
        ),
    ] = None,
    pricing: Annotated[
        str,
        typer.Option(
            "--pricing",
            help="how a region's price reaches the national plane: quoted (each region"
            " quotes each job), declared (one declaration per region), declared-per-chip"
            " (one per region and chip type), a comma-separated list, or all",
        ),
    ] = "quoted,declared,declared-per-chip",
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="the scheduler at both levels: ours, ours:…")
    ] = "ours",
    cycle: CycleOpt = _CYCLE_S,
    seed: SeedOpt = 0,
    patience: PatienceOpt = DEFAULT_PATIENCE_H,
    json_out: JsonFlag = False,
) -> None:
    """Two-level (national → region → center) against flat scheduling: cost, misses, JCT."""
    from computenet.sim.federation import (
        PRICING,
        compare_federation,
        federated_policy,
        hub_regions,
        load_regions,
        parse_counts,
    )

    with _errors():
        net = load_network(network)
        wl = parse_workload(workload, net)
        cfg = _config(cycle, seed, None, None, patience)
        prices = [p.strip() for p in pricing.split(",") if p.strip()]
        if pricing.strip() == "all":
            prices = list(PRICING)
        if not prices or any(p not in PRICING for p in prices):
            raise ValidationError(
                f"unknown pricing '{pricing}'",
                field="--pricing",
                hint="quoted, declared, declared-per-chip (a comma-separated list) or all",
            )
        if regions is not None and counts is not None:
            raise ValidationError(
                "--counts groups the hubs; a --regions file gives the regions itself",
                field="--counts",
                hint="drop one of the two",
            )
        if regions is not None:
            parts = [load_regions(net, regions)]
        else:
            parts = [hub_regions(net, n) for n in parse_counts(counts or "1,2,4,all", net)]
        federated_policy(net, parts[0], policy, prices[0])  # checks the policy before running
        rows = compare_federation(wl, parts, policy, prices, cfg)
    if json_out:
        print(
            json.dumps(
                {
                    "network": net.name,
                    "workload": wl.name,
                    "jobs": len(wl),
                    "policy": policy,
                    "runs": [r.as_dict() for r in rows],
                },
                indent=2,
            )
        )
        return
    t = Table(title=f"{wl.name} on {net.name}: {len(wl)} jobs, {policy} at every level")
    for head in (
        "scheduling",
        "regions",
        "pricing",
        "total ¥",
        "vs flat",
        "miss %",
        "avg JCT h",
        "p95 JCT h",
        "succeeded",
        "left unplaced",
        "wall s",
    ):
        t.add_column(head, justify="left" if head in ("scheduling", "pricing") else "right")
    for r in rows:
        m = r.metrics
        t.add_row(
            "flat" if r.regions == 0 else "two-level",
            str(r.regions) if r.regions else "–",
            r.pricing,
            f"{m.total_cny:,.0f}",
            f"{r.cost_vs_flat_pct:+.2f} %",
            f"{m.deadline_miss_pct:.2f}",
            f"{m.avg_jct_s / 3600:.2f}",
            f"{m.p95_jct_s / 3600:.2f}",
            f"{m.succeeded}/{m.jobs}",
            str(r.overflow),
            f"{m.wall_s:.1f}",
        )
    out = _console()
    out.print(t)
    for part in parts:
        out.print(
            f"{len(part)} region(s): "
            + "; ".join(
                f"{n}: {', '.join(ms)}" for n, ms in zip(part.names, part.members, strict=True)
            )
        )
