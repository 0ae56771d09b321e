"""What the `cnet sim` commands do: parse a workload, run policies, bound them, sweep.

The CLI is a thin layer over these functions; the benchmarks call them too.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from computenet.catalog import load_network
from computenet.errors import ValidationError
from computenet.model import Network
from computenet.scheduler.bounds import Bound, lower_bound
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H
from computenet.sim.metrics import PolicyMetrics, summarize, tradeoffs
from computenet.sim.policies import make_policy
from computenet.sim.results import SimConfig, SimResult
from computenet.sim.simulator import Simulation
from computenet.sim.traces import load_alibaba, load_gavel
from computenet.sim.workload import SYNTHETIC_DEFAULTS, Workload, synthetic

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int, float], None]


def _kv(parts: Sequence[str], where: str) -> dict[str, str]:
    out = {}
    for part in parts:
        if "=" not in part:
            raise ValidationError(f"'{part}' is not key=value", field=where)
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip()
    return out


def parse_workload(spec: str, network: Network) -> Workload:
    """A workload from its spec.

    `synthetic[:k=v,…]`, `gavel:TRACE,throughputs=FILE` or `alibaba:PODS[,nodes=FILE,limit=N]`.
    """
    kind, _, rest = spec.partition(":")
    parts = [p for p in rest.split(",") if p.strip()] if rest else []
    if kind == "synthetic":
        raw = _kv(parts, "workload")
        params: dict[str, float] = {}
        for k, v in raw.items():
            if k not in SYNTHETIC_DEFAULTS:
                raise ValidationError(
                    f"unknown synthetic parameter '{k}'",
                    field="workload",
                    hint="known: " + ", ".join(SYNTHETIC_DEFAULTS),
                )
            try:
                params[k] = float(v)
            except ValueError as exc:
                raise ValidationError(f"{k}={v} is not a number", field="workload") from exc
        return synthetic(network, **params)
    if kind in ("gavel", "alibaba"):
        if not parts or "=" in parts[0]:
            raise ValidationError(
                f"{kind} needs a file: {kind}:PATH"
                + (",throughputs=FILE" if kind == "gavel" else ""),
                field="workload",
            )
        path = Path(parts[0])
        opts = _kv(parts[1:], "workload")
        if kind == "gavel":
            unknown = set(opts) - {"throughputs"}
            if unknown or "throughputs" not in opts:
                raise ValidationError(
                    "gavel needs throughputs=FILE and nothing else",
                    field="workload",
                    hint="e.g. gavel:trace.trace,throughputs=simulation_throughputs.json",
                )
            return load_gavel(network, path, Path(opts["throughputs"]))
        unknown = set(opts) - {"nodes", "limit"}
        if unknown:
            raise ValidationError(
                f"unknown alibaba option '{sorted(unknown)[0]}'",
                field="workload",
                hint="options: nodes=FILE, limit=N",
            )
        nodes = Path(opts["nodes"]) if "nodes" in opts else None
        if nodes is None and (path.parent / "openb_node_list_gpu_node.csv").is_file():
            nodes = path.parent / "openb_node_list_gpu_node.csv"
        limit = int(opts["limit"]) if "limit" in opts else None
        return load_alibaba(network, path, nodes, limit)
    raise ValidationError(
        f"unknown workload kind '{kind}'",
        field="workload",
        hint="synthetic:jobs=N,days=D,seed=S | gavel:TRACE,throughputs=FILE | alibaba:PODS",
    )


def run_policy(
    workload: Workload,
    policy: str,
    config: SimConfig | None = None,
    progress: Progress | None = None,
) -> SimResult:
    """Simulate one policy over a workload."""
    cfg = config or SimConfig()
    pol = make_policy(policy, seed=cfg.seed)

    def report(done: int, total: int, now: float) -> None:
        if progress is not None:
            progress(policy, done, total, now)

    return Simulation(workload, pol, cfg, progress=report if progress else None).run()


def workload_bound(
    workload: Workload,
    config: SimConfig,
    end_s: float,
    enforce_deadlines: bool = True,
    time_limit_s: float = 300.0,
) -> Bound:
    """The LP lower bound for this workload (true work of each job), schedules ending by `end_s`."""
    assert workload.runtime_factor is not None
    reqs = [
        replace(
            workload.request(i, config.epoch),
            cu_hours=float(workload.cu_hours[i] * workload.runtime_factor[i]),
        )
        for i in range(len(workload))
    ]
    return lower_bound(
        workload.network,
        reqs,
        end=config.epoch + timedelta(seconds=end_s),
        enforce_deadlines=enforce_deadlines,
        time_limit_s=time_limit_s,
    )


@dataclass
class Comparison:
    """Every policy's run over the same workload, its metrics, and the bound."""

    workload: Workload
    config: SimConfig
    results: dict[str, SimResult]
    metrics: list[PolicyMetrics]
    bound: Bound | None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """`{"policies": [...], "bound_cny": …}` and context, JSON-ready."""
        b = self.bound
        return {
            "network": self.workload.network.name,
            "workload": self.workload.name,
            "jobs": len(self.workload),
            "patience_h": self.config.patience_h,
            "policies": [m.as_dict() for m in self.metrics],
            "tradeoffs": [t.as_dict() for t in tradeoffs(self.metrics)],
            "bound_cny": b.cny if b else None,
            "bound": None
            if b is None
            else {
                "cny": b.cny,
                "method": b.method,
                # Unknown (inf) until the LP's value is found: null, as JSON has no inf.
                "lp_upper_cny": b.lp_upper_cny if math.isfinite(b.lp_upper_cny) else None,
                "gap": b.gap if math.isfinite(b.gap) else None,
                "deadlines_enforced": b.deadlines_enforced,
                "converged": b.converged,
                "seconds": b.seconds,
                "energy_cny": b.energy_cny,
                "service_cny": b.service_cny,
                "transfer_cny": b.transfer_cny,
                "columns": b.columns,
                "notes": list(b.notes),
            },
            "notes": self.notes,
        }


def compare(
    workload: Workload,
    policies: Sequence[str],
    config: SimConfig | None = None,
    *,
    bound: bool = True,
    progress: Progress | None = None,
) -> Comparison:
    """Run each policy over the workload, then the LP bound, and summarize them."""
    cfg = config or SimConfig()
    results = {p: run_policy(workload, p, cfg, progress) for p in policies}
    b: Bound | None = None
    if bound and len(workload):
        end = max(
            (
                float(np.nanmax(r.records.end))
                for r in results.values()
                if np.isfinite(r.records.end).any()
            ),
            default=workload.days * 86400.0,
        )
        if progress is not None:
            progress("LP bound", 0, 1, 0.0)
        b = workload_bound(workload, cfg, max(end, workload.days * 86400.0) + 3600.0)
        if progress is not None:
            progress("LP bound", 1, 1, 0.0)
    metrics = [summarize(r, b.cny if b else None) for r in results.values()]
    notes = list(workload.notes)
    for m in metrics:
        if m.succeeded < m.jobs:
            notes.append(
                f"{m.name} finished {m.succeeded} of {m.jobs} jobs ({m.cancelled} cancelled,"
                f" {m.failed} failed): its total leaves the others out and is not comparable"
                " to the bound"
            )
    if b is not None:
        notes.extend(b.notes)
        notes.append(
            "the bound enforces every deadline that can be met: a policy that misses"
            " deadlines may come in under it"
        )
    return Comparison(workload, cfg, results, metrics, b, notes)


# --------------------------------------------------------------------------- sweeps


def _sweep_task(task: dict[str, Any]) -> dict[str, Any]:
    """One simulation of a sweep (top level, so local processes and Ray can run it)."""
    net = load_network(task["network"])
    wl = parse_workload(task["workload"], net)
    cfg = SimConfig(
        seed=int(task.get("seed", 0)),
        cycle_s=float(task.get("cycle_s", 300.0)),
        patience_h=float(task.get("patience_h", DEFAULT_PATIENCE_H)),
    )
    r = run_policy(wl, task["policy"], cfg)
    out = summarize(r).as_dict()
    out.update(
        {
            "workload": task["workload"],
            "network": task["network"],
            "policy": task["policy"],
            "patience_h": cfg.patience_h,
        }
    )
    return out


def sweep_tasks(
    network: str,
    workloads: Sequence[str],
    policies: Sequence[str],
    grid: dict[str, list[str]],
    *,
    patience_h: float = DEFAULT_PATIENCE_H,
) -> list[dict[str, Any]]:
    """Every combination of workload × grid values × policy, as task dicts.

    A grid key is a synthetic workload parameter (e.g. `seed=1,2,3`,
    `scale=0.5,1,2`), applied on top of each workload spec; `patience_h`
    is the operator's patience every run is simulated with.
    """
    tasks = []
    keys = sorted(grid)
    for spec in workloads:
        for values in itertools.product(*(grid[k] for k in keys)):
            w = spec
            if keys:
                if not spec.startswith("synthetic"):
                    raise ValidationError(
                        "sweep parameters apply to synthetic workloads", field="param"
                    )
                extra = ",".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))
                w = f"{spec}{',' if ':' in spec else ':'}{extra}"
            for p in policies:
                tasks.append(
                    {"network": network, "workload": w, "policy": p, "patience_h": patience_h}
                )
    return tasks


def sweep(
    tasks: Sequence[dict[str, Any]],
    backend: str = "auto",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Run tasks in parallel on Ray (when installed, or asked for) or local processes."""
    if backend not in ("auto", "ray", "local"):
        raise ValidationError(
            f"unknown backend '{backend}'", field="backend", hint="auto, ray or local"
        )
    use_ray = backend == "ray"
    if backend == "auto":
        try:
            import ray  # noqa: F401

            use_ray = True
        except ImportError:
            use_ray = False
    if use_ray:
        return _sweep_ray(tasks, workers, progress), "ray"
    n = workers or max(1, min(len(tasks), os.cpu_count() or 1))
    out: list[dict[str, Any]] = []
    if n == 1:
        for k, t in enumerate(tasks):
            out.append(_sweep_task(t))
            if progress:
                progress(k + 1, len(tasks))
        return out, "local"
    with ProcessPoolExecutor(max_workers=n) as pool:
        for k, res in enumerate(pool.map(_sweep_task, tasks)):
            out.append(res)
            if progress:
                progress(k + 1, len(tasks))
    return out, "local"


def _sweep_ray(
    tasks: Sequence[dict[str, Any]],
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError as exc:
        raise ValidationError(
            "Ray is not installed",
            field="backend",
            hint="pip install 'computenet[ray]' or use --backend local",
        ) from exc
    started = False
    if not ray.is_initialized():
        ray.init(
            num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False
        )
        started = True
    try:
        remote = ray.remote(_sweep_task)
        refs = [remote.remote(t) for t in tasks]
        results: dict[int, dict[str, Any]] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                results[refs.index(ref)] = ray.get(ref)
            if progress:
                progress(len(results), len(tasks))
        return [results[k] for k in range(len(tasks))]
    finally:
        if started:
            ray.shutdown()
