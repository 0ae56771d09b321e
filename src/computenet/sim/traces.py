"""Trace loaders: Gavel job traces (with its throughput file) and Alibaba's 2023 GPU pod list.

A trace names GPUs the network may not have. Each trace GPU is placed in the
chip model (stack, memory, peak), and every network chip that can run a
trace job gets a speed for it: the trace's own measurement when the network
has that GPU, else the speed of the closest trace GPU scaled by the
throughput model's ratio between the two chips. The loader's `notes` say
what was mapped to what.
"""

from __future__ import annotations

import ast
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from computenet.errors import ValidationError
from computenet.model import Chip, Network, Stack, ThroughputMatrix
from computenet.sim.workload import Workload


@dataclass(frozen=True)
class TraceGpu:
    """A GPU as a trace names it, placed in the chip model."""

    name: str
    stack: Stack
    memory_gb: float
    tflops: float
    catalog: str | None = None  # the catalog chip it is, when there is one
    assumed: bool = False


# GPUs the two trace formats name. Public datasheet figures (dense FP16 tensor,
# per GPU); Alibaba's G2 and G3 are anonymized in the trace: assumed T4- and
# A10-class, which is all the ATC'23 paper lets one infer.
TRACE_GPUS: dict[str, TraceGpu] = {
    "k80": TraceGpu("K80", Stack.CUDA, 12, 4.4, "K80"),
    "p100": TraceGpu("P100", Stack.CUDA, 16, 18.7, "P100"),
    "v100": TraceGpu("V100", Stack.CUDA, 32, 125, "V100"),
    "v100m16": TraceGpu("V100M16", Stack.CUDA, 16, 125, "V100"),
    "v100m32": TraceGpu("V100M32", Stack.CUDA, 32, 125, "V100"),
    "t4": TraceGpu("T4", Stack.CUDA, 16, 65),
    "a10": TraceGpu("A10", Stack.CUDA, 24, 125),
    "g2": TraceGpu("G2", Stack.CUDA, 16, 65, assumed=True),
    "g3": TraceGpu("G3", Stack.CUDA, 24, 125, assumed=True),
}


def _gpu(name: str) -> TraceGpu:
    g = TRACE_GPUS.get(name.strip().lower())
    if g is None:
        raise ValidationError(
            f"unknown GPU model '{name}' in the trace",
            field="workload",
            hint="known: " + ", ".join(sorted(g.name for g in TRACE_GPUS.values())),
        )
    return g


def closest_chip(gpu: TraceGpu, chips: dict[str, Chip], among: set[str] | None = None) -> str:
    """The chip nearest to `gpu`: same stack first, then memory and peak on a log scale."""
    best, best_d = "", math.inf
    for name in sorted(among if among is not None else chips):
        c = chips[name]
        d = (
            (0.0 if c.stack == gpu.stack else 100.0)
            + abs(math.log(c.memory_gb / gpu.memory_gb))
            + abs(math.log(c.bf16_tflops / gpu.tflops))
        )
        if d < best_d:
            best, best_d = name, d
    if not best:
        raise ValidationError("the network has no chips to map the trace onto", field="network")
    return best


def _base_class(job_type: str) -> str:
    """The built-in workload class whose chip ratios a trace job type follows."""
    t = job_type.lower()
    if t.startswith(("lm", "transformer", "recommendation")):
        return "llm-train"
    return "cv-train"


def _relative(matrix: ThroughputMatrix, chips: dict[str, Chip], cls: str, a: str, b: str) -> float:
    """Speed of chip `a` over chip `b` in class `cls`, by peak when the matrix lacks one."""
    ra = matrix.delivered_pflops(cls, chips[a]) if a in chips else 0.0
    rb = matrix.delivered_pflops(cls, chips[b]) if b in chips else 0.0
    if ra > 0 and rb > 0:
        return ra / rb
    return chips[a].bf16_tflops / chips[b].bf16_tflops


def _pool_chips(net: Network) -> set[str]:
    return {p.chip for c in net.centers for p in c.pools}


# --------------------------------------------------------------------------- Gavel


def load_throughputs(path: Path) -> dict[str, dict[tuple[str, int], float]]:
    """Gavel's `simulation_throughputs.json`: gpu → (job type, scale) → isolated steps/s."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(
            f"cannot read throughputs file '{path}': {exc}", field="throughputs"
        ) from exc
    out: dict[str, dict[tuple[str, int], float]] = {}
    for gpu, table in raw.items():
        if gpu.endswith("_unconsolidated") or not isinstance(table, dict):
            continue
        rows: dict[tuple[str, int], float] = {}
        for key, entry in table.items():
            try:
                job_type, scale = ast.literal_eval(key)
                rows[(str(job_type), int(scale))] = float(entry["null"])
            except (ValueError, SyntaxError, KeyError, TypeError) as exc:
                raise ValidationError(
                    f"bad entry {key!r} for {gpu}",
                    field="throughputs",
                    hint="keys look like \"('ResNet-50 (batch size 64)', 1)\" with a 'null' value",
                ) from exc
        out[gpu.lower()] = rows
    if not out:
        raise ValidationError("no GPU tables in the throughputs file", field="throughputs")
    return out


def gavel_throughput(table: dict[tuple[str, int], float], job_type: str, scale: int) -> float:
    """Steps/s of `job_type` on `scale` GPUs.

    Missing scales grow linearly per GPU from the largest measured one m: thr·s/m.
    """
    got = table.get((job_type, scale))
    if got is not None:
        return got
    measured = [s for (t, s) in table if t == job_type and s <= scale]
    if not measured:
        measured = [s for (t, s) in table if t == job_type]
    if not measured:
        return 0.0
    m = max(measured)
    return table[(job_type, m)] * scale / m


def load_gavel(network: Network, trace: Path, throughputs: Path) -> Workload:
    """Jobs of a Gavel trace (7-column format) running on `network`.

    Each (job type, scale) becomes a workload class whose per-chip speed
    reproduces the trace's duration = steps / throughput exactly on the
    trace's GPUs; other chips follow from the closest trace GPU.
    """
    thr = load_throughputs(throughputs)
    rows = _read_gavel(trace)
    chips = dict(network.chips)
    gpus = {g: _gpu(g) for g in thr}
    for g in gpus.values():
        if g.catalog and g.catalog not in chips:
            raise ValidationError(f"the chip catalog lacks {g.catalog}", field="network")
    have = _pool_chips(network)
    matrix = network.throughput
    notes: list[str] = []
    # Network chip → (trace GPU it takes its speed from, factor on that speed, by class family).
    sources: dict[str, tuple[str, dict[str, float]]] = {}
    for chip in sorted(have):
        c = chips[chip]
        if c.stack != Stack.CUDA:
            continue
        direct = [k for k, g in gpus.items() if g.catalog == chip]
        if direct:
            sources[chip] = (direct[0], {"llm-train": 1.0, "cv-train": 1.0})
            continue
        near = min(
            gpus,
            key=lambda k: (
                abs(math.log(c.memory_gb / gpus[k].memory_gb))
                + abs(math.log(c.bf16_tflops / gpus[k].tflops))
            ),
        )
        ref = gpus[near].catalog or closest_chip(gpus[near], chips)
        factors = {
            cls: _relative(matrix, chips, cls, chip, ref) for cls in ("llm-train", "cv-train")
        }
        sources[chip] = (near, factors)
        notes.append(
            f"{chip} runs trace jobs at {gpus[near].name} speed × {factors['cv-train']:.2f} (cv)"
            f" / × {factors['llm-train']:.2f} (lm) by the throughput model"
        )
    for g in gpus.values():
        if g.catalog not in have:
            notes.append(f"trace GPU {g.name} is not in network '{network.name}'")
    if not sources:
        raise ValidationError(
            f"network '{network.name}' has no CUDA chips to run the Gavel jobs on", field="network"
        )
    efficiency: dict[str, dict[str, float]] = {}
    cls_names: list[str] = []
    cls_of: dict[tuple[str, int], int] = {}
    k_of: dict[str, float] = {}
    work = np.zeros(len(rows))
    cls_idx = np.zeros(len(rows), dtype=np.int64)
    arrival = np.zeros(len(rows))
    count = np.zeros(len(rows), dtype=np.int64)
    for n, (job_type, steps, at, scale) in enumerate(rows):
        key = (job_type, scale)
        if key not in cls_of:
            per_chip: dict[str, float] = {}  # steps/s per GPU
            fam = _base_class(job_type)
            for chip, (src, factors) in sources.items():
                rate = gavel_throughput(thr[src], job_type, scale) / scale
                if rate > 0:
                    per_chip[chip] = rate * factors[fam]
            if not per_chip:
                raise ValidationError(
                    f"job type '{job_type}' at scale {scale} runs on no chip of the network",
                    field="workload",
                )
            # 1 step = k PFLOP·s, with k chosen so the best chip's efficiency is 0.5.
            k = 0.5 * min(chips[c].bf16_tflops / 1000.0 / r for c, r in per_chip.items())
            name = f"gavel:{job_type}:x{scale}"
            efficiency[name] = {
                c: r * k * 1000.0 / chips[c].bf16_tflops for c, r in per_chip.items()
            }
            cls_of[key] = len(cls_names)
            cls_names.append(name)
            k_of[name] = k
        ci = cls_of[key]
        cls_idx[n] = ci
        work[n] = steps * k_of[cls_names[ci]] / 3600.0
        arrival[n] = at
        count[n] = scale
    merged = ThroughputMatrix(
        efficiency={**matrix.efficiency, **efficiency},
        min_memory_gb={**matrix.min_memory_gb, **{c: 0.0 for c in efficiency}},
        sources={
            **matrix.sources,
            **{c: f"Gavel throughputs ({throughputs.name})" for c in efficiency},
        },
    )
    net = network.model_copy(update={"throughput": merged})
    return Workload(
        name=f"gavel:{trace.name}",
        network=net,
        arrival=arrival,
        classes=tuple(cls_names),
        cls=cls_idx,
        count=count,
        cu_hours=work,
        # Gavel's jobs are all preemptible: its scheduler stops and resumes any job at
        # each round (from a checkpoint), so ours may preempt them too.
        preemptible=np.ones(len(rows), dtype=np.bool_),
        notes=[
            f"gavel: {len(rows)} jobs from {trace.name}, {len(cls_names)} (type, scale) classes,"
            " all preemptible",
            *notes,
        ],
        labels={"trace": str(trace), "throughputs": str(throughputs)},
    )


def _read_gavel(path: Path) -> list[tuple[str, int, float, int]]:
    """(job type, total steps, arrival s, scale factor) per line."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ValidationError(f"cannot read trace '{path}': {exc}", field="workload") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 7:
            raise ValidationError(
                f"line {n} has {len(cols)} tab-separated columns, expected 7",
                field=f"{path.name}:{n}",
                hint="job_type, command, flag, num_steps_arg, total_steps, arrival_time_s,"
                " scale_factor",
            )
        try:
            out.append((cols[0], int(float(cols[-3])), float(cols[-2]), int(float(cols[-1]))))
        except ValueError as exc:
            raise ValidationError(f"line {n}: {exc}", field=f"{path.name}:{n}") from exc
    if not out:
        raise ValidationError("the trace has no jobs", field="workload")
    return out


def gavel_floor_s(workload: Workload, throughputs: Path, trace: Path) -> float:
    """Mean over jobs of the job's duration alone on its fastest trace GPU (Gavel's JCT floor)."""
    thr = load_throughputs(throughputs)
    best = []
    for job_type, steps, _at, scale in _read_gavel(trace):
        rates = [gavel_throughput(t, job_type, scale) for t in thr.values()]
        rates = [r for r in rates if r > 0]
        best.append(steps / max(rates))
    return float(np.mean(best))


# --------------------------------------------------------------------------- Alibaba


_POD_COLUMNS = (
    "name",
    "num_gpu",
    "gpu_milli",
    "gpu_spec",
    "qos",
    "pod_phase",
    "creation_time",
    "deletion_time",
    "scheduled_time",
)


def load_alibaba(
    network: Network, pods: Path, nodes: Path | None = None, limit: int | None = None
) -> Workload:
    """Pods of Alibaba's 2023 GPU trace as jobs on `network`.

    A pod arrives at its creation time and runs (deletion − scheduled) seconds
    on the GPU it got — the first model its `gpu_spec` allows, else the
    cluster's most common model (from the node list when given). Pods that
    never ran (no scheduled time) are skipped; fractional GPUs count as one
    chip; CPU-only pods become `cpu-batch` jobs on one node; latency-sensitive
    pods (LS, Guaranteed) are `inference`, the rest `cv-train`.
    """
    chips = dict(network.chips)
    have = _pool_chips(network)
    default_model = _most_common_model(nodes) if nodes is not None else "T4"
    notes: list[str] = []
    mapped: dict[str, str] = {}
    try:
        fh = pods.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read pod list '{pods}': {exc}", field="workload") from exc
    rows: list[tuple[float, float, int, list[str], str]] = []
    skipped = 0
    fractional = 0
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _POD_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValidationError(
                f"pod list lacks column '{missing[0]}'",
                field=pods.name,
                hint="columns: name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec, qos, "
                "pod_phase, creation_time, deletion_time, scheduled_time",
            )
        for n, r in enumerate(reader, 2):
            if limit is not None and len(rows) >= limit:
                break
            try:
                if not r["scheduled_time"].strip():
                    skipped += 1
                    continue
                created = float(r["creation_time"])
                dur = float(r["deletion_time"]) - float(r["scheduled_time"])
                gpus = int(r["num_gpu"] or 0)
                milli = int(r["gpu_milli"] or 0)
            except ValueError as exc:
                raise ValidationError(f"row {n}: {exc}", field=f"{pods.name}:{n}") from exc
            if dur <= 0:
                skipped += 1
                continue
            if gpus == 0 and milli > 0:
                gpus = 1
            if 0 < milli < 1000:
                fractional += 1
            spec = [s for s in (r["gpu_spec"] or "").split("|") if s]
            rows.append((created, dur, gpus, spec, r["qos"].strip()))
    if not rows:
        raise ValidationError("the pod list has no pod that ran", field="workload")
    classes: list[str] = []
    cls = np.zeros(len(rows), dtype=np.int64)
    work = np.zeros(len(rows))
    count = np.zeros(len(rows), dtype=np.int64)
    arrival = np.zeros(len(rows))
    shapes: list[tuple[tuple[str, ...], str | None, float | None]] = [((), None, None)]
    shape = np.zeros(len(rows), dtype=np.int64)
    matrix = network.throughput
    for k, (created, dur, gpus, spec, qos) in enumerate(rows):
        model = ""
        sh: tuple[tuple[str, ...], str | None, float | None]
        if gpus == 0:
            c, ran_on, n_chips, sh = "cpu-batch", "CPU-node", 1, ((), None, None)
        else:
            c = "inference" if qos in ("LS", "Guaranteed") else "cv-train"
            model = spec[0] if spec else default_model
            ran_on = _map(model, chips, have, matrix, c, mapped)
            allowed = tuple(sorted({_map(m, chips, have, matrix, c, mapped) for m in spec}))
            n_chips, sh = gpus, (allowed, "cuda", None)
        if c not in classes:
            classes.append(c)
        if sh not in shapes:
            shapes.append(sh)
        cls[k] = classes.index(c)
        shape[k] = shapes.index(sh)
        count[k] = n_chips
        arrival[k] = created
        rate = _trace_rate(model, ran_on, chips, matrix, c)
        work[k] = rate * n_chips * dur / 3600.0
    for model, chip in sorted(mapped.items()):
        g = TRACE_GPUS[model.lower()]
        notes.append(
            f"trace GPU {g.name}{' (assumed specs)' if g.assumed else ''} → {chip}"
            f" (closest chip of network '{network.name}')"
        )
    if skipped:
        notes.append(f"{skipped} pods never ran (no scheduled time) and were skipped")
    if fractional:
        notes.append(f"{fractional} pods asked for a fraction of a GPU and get a whole chip")
    return Workload(
        name=f"alibaba:{pods.name}",
        network=network,
        arrival=arrival - arrival.min(),
        classes=tuple(classes),
        cls=cls,
        count=count,
        cu_hours=work,
        shapes=tuple(shapes),
        shape=shape,
        notes=[f"alibaba: {len(rows)} pods from {pods.name}", *notes],
        labels={"pods": str(pods)},
    )


def _map(
    model: str,
    chips: dict[str, Chip],
    have: set[str],
    matrix: ThroughputMatrix,
    cls: str,
    mapped: dict[str, str],
) -> str:
    """The network chip a trace GPU model runs as (itself when the network has it)."""
    g = _gpu(model)
    if g.name not in mapped:
        runs = {c for c in have if matrix.can_run(cls, c)} or have
        if g.catalog in runs:
            mapped[g.name] = g.catalog
        else:
            mapped[g.name] = closest_chip(g, chips, runs)
    return mapped[g.name]


def _trace_rate(
    model: str, ran_on: str, chips: dict[str, Chip], matrix: ThroughputMatrix, cls: str
) -> float:
    """Delivered PFLOPS per chip of the GPU the pod really ran on, in the network's terms."""
    base = matrix.delivered_pflops(cls, chips[ran_on])
    if not model:
        return base
    g = _gpu(model)
    if g.catalog == ran_on:
        return base
    # The pod ran on the trace GPU; the network chip is faster or slower by the peak ratio.
    return base * g.tflops / chips[ran_on].bf16_tflops


def _most_common_model(nodes: Path) -> str:
    try:
        with nodes.open(newline="", encoding="utf-8") as fh:
            counts: dict[str, int] = {}
            for r in csv.DictReader(fh):
                model = (r.get("model") or "").strip()
                if model:
                    counts[model] = counts.get(model, 0) + int(float(r.get("gpu") or 0))
    except OSError as exc:
        raise ValidationError(f"cannot read node list '{nodes}': {exc}", field="nodes") from exc
    if not counts:
        raise ValidationError("the node list has no GPU models", field="nodes")
    return max(sorted(counts), key=lambda m: counts[m])
