"""Workloads: jobs to simulate, held column-wise so a million of them stay cheap.

A `Workload` is what every source produces — the synthetic generator here
and the trace loaders in `traces.py` — and the engine turns each row into the
scheduler's `JobRequest` only when the job arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from computenet.errors import ValidationError
from computenet.model import Dataset, Network
from computenet.scheduler import JobRequest
from computenet.scheduler.index import network_index

# Synthetic datasets are not real files; their checksum is a placeholder.
_NO_SHA = "0" * 64

# (types, stack, memory_gb): a job's chip constraints, shared by many jobs.
Shape = tuple[tuple[str, ...], str | None, float | None]


@dataclass
class Workload:
    """Jobs as columns; row i is one job. Times are virtual seconds since the epoch.

    `deadline`, `budget` are NaN where a job has none; `data_gb` is 0 where it
    has no input; `data_loc` indexes `network.node_ids` (where the input's one
    replica is). `runtime_factor` is how much longer the job really runs than
    its work estimate says (1.0 = the estimate is exact). `preemptible` jobs
    may be stopped for a much shorter one and resume from a checkpoint at the
    same center (scheduler/preemption.py).
    """

    name: str
    network: Network
    arrival: np.ndarray
    classes: tuple[str, ...]
    cls: np.ndarray
    count: np.ndarray
    cu_hours: np.ndarray
    shapes: tuple[Shape, ...] = (((), None, None),)
    shape: np.ndarray | None = None
    deadline: np.ndarray | None = None
    budget: np.ndarray | None = None
    priority: np.ndarray | None = None
    interactive: np.ndarray | None = None
    data_gb: np.ndarray | None = None
    data_loc: np.ndarray | None = None
    residency: np.ndarray | None = None
    runtime_factor: np.ndarray | None = None
    preemptible: np.ndarray | None = None
    days: float = 0.0
    notes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    # Tenancy (docs/tenancy.md): `tenant[i]` indexes `tenants`, whose fair-share weights
    # are `tenant_weights` (default 1 each). One tenant: no fair share, as before.
    tenant: np.ndarray | None = None
    tenants: tuple[str, ...] = ("",)
    tenant_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.arrival)
        order = np.argsort(self.arrival, kind="stable")
        self.arrival = np.asarray(self.arrival, dtype=np.float64)[order]

        def col(x: np.ndarray | None, fill: float | int | bool, dtype: type) -> np.ndarray:
            if x is None:
                return np.full(n, fill, dtype=dtype)
            a: np.ndarray = np.asarray(x, dtype=dtype)
            if a.shape != (n,):
                raise ValidationError(
                    f"column has {a.shape[0]} rows, expected {n}", field="workload"
                )
            return a[order]

        self.cls = col(self.cls, 0, np.int64)
        self.count = col(self.count, 1, np.int64)
        self.cu_hours = col(self.cu_hours, 0.0, np.float64)
        self.shape = col(self.shape, 0, np.int64)
        self.deadline = col(self.deadline, np.nan, np.float64)
        self.budget = col(self.budget, np.nan, np.float64)
        self.priority = col(self.priority, 0, np.int64)
        self.interactive = col(self.interactive, False, np.bool_)
        self.data_gb = col(self.data_gb, 0.0, np.float64)
        self.data_loc = col(self.data_loc, 0, np.int64)
        self.residency = col(self.residency, False, np.bool_)
        self.runtime_factor = col(self.runtime_factor, 1.0, np.float64)
        self.preemptible = col(self.preemptible, False, np.bool_)
        self.tenant = col(self.tenant, 0, np.int64)
        if n and (self.tenant.min() < 0 or self.tenant.max() >= len(self.tenants)):
            raise ValidationError("a job's tenant is not in `tenants`", field="workload.tenant")
        if self.tenant_weights and len(self.tenant_weights) != len(self.tenants):
            raise ValidationError(
                f"{len(self.tenant_weights)} weights for {len(self.tenants)} tenants",
                field="workload.tenant_weights",
            )
        if not self.days and n:
            self.days = float(np.ceil(max(self.arrival[-1], 1.0) / 86400.0))
        self._nodes = tuple(self.network.node_ids)
        self._residency_tag = _east_tag(self.network)

    def __len__(self) -> int:
        return len(self.arrival)

    def job_id(self, i: int) -> str:
        """Stable id of row `i`."""
        return f"j{i:07d}"

    def dataset(self, i: int) -> Dataset | None:
        """The input dataset of job `i`, if it has one."""
        assert self.data_gb is not None and self.data_loc is not None and self.residency is not None
        gb = float(self.data_gb[i])
        if gb <= 0:
            return None
        return Dataset(
            id=f"d{i:07d}",
            size_bytes=int(gb * 1e9),
            sha256=_NO_SHA,
            replicas=(self._nodes[int(self.data_loc[i])],),
            residency=self._residency_tag if self.residency[i] else None,
        )

    def request(self, i: int, epoch: datetime) -> JobRequest:
        """The scheduler's view of job `i`, as the server would resolve it at submit."""
        assert self.shape is not None and self.deadline is not None and self.budget is not None
        assert self.priority is not None and self.interactive is not None
        assert self.tenant is not None
        types, stack, mem = self.shapes[int(self.shape[i])]
        submitted = epoch + timedelta(seconds=float(self.arrival[i]))
        d = float(self.deadline[i])
        b = float(self.budget[i])
        ds = self.dataset(i)
        return JobRequest(
            id=self.job_id(i),
            workload_class=self.classes[int(self.cls[i])],
            count=int(self.count[i]),
            cu_hours=float(self.cu_hours[i]),
            types=types,
            stack=stack,
            memory_gb=mem,
            inputs=(ds,) if ds is not None else (),
            deadline=None if np.isnan(d) else epoch + timedelta(seconds=d),
            budget_cny=None if np.isnan(b) else Decimal(f"{b:.2f}"),
            priority=int(self.priority[i]),
            submitted_at=submitted,
            latency_class="interactive" if self.interactive[i] else "batch",
            tenant=self.tenants[int(self.tenant[i])],
        )

    def weight_of(self, tenant: str) -> float:
        """The fair-share weight of `tenant` (1 when none is given)."""
        if not self.tenant_weights or tenant not in self.tenants:
            return 1.0
        return float(self.tenant_weights[self.tenants.index(tenant)])

    def requests(self, epoch: datetime) -> list[JobRequest]:
        """Every job's request (for the bound and tests; the engine builds them lazily)."""
        return [self.request(i, epoch) for i in range(len(self))]


def _east_tag(net: Network) -> str | None:
    tags = {t for c in net.centers for t in c.tags}
    return "region:east" if "region:east" in tags else None


# Arrivals per local hour (CST), relative: quiet nights, busy office hours.
DAILY_PROFILE = np.array(
    [
        0.30,
        0.20,
        0.15,
        0.15,
        0.15,
        0.20,
        0.35,
        0.60,
        0.90,
        1.20,
        1.40,
        1.40,
        1.10,
        1.20,
        1.40,
        1.40,
        1.30,
        1.10,
        0.90,
        0.80,
        0.80,
        0.70,
        0.60,
        0.40,
    ]
)

# class → (share of jobs, chip counts, their shares, median ref-hours, sigma,
#          median input GB, sigma, reference chip)
_MIX: dict[str, tuple[float, list[int], list[float], float, float, float, float, str]] = {
    "llm-train": (0.30, [8, 16, 32, 64], [0.45, 0.30, 0.17, 0.08], 8.0, 0.9, 300.0, 1.2, "A100"),
    "cv-train": (0.25, [1, 2, 4, 8], [0.30, 0.25, 0.25, 0.20], 3.0, 0.9, 100.0, 1.0, "A100"),
    "inference": (0.30, [1, 2, 4, 8], [0.40, 0.30, 0.20, 0.10], 1.5, 0.8, 20.0, 1.0, "A100"),
    "cpu-batch": (0.15, [1, 2, 4, 8], [0.40, 0.30, 0.20, 0.10], 2.0, 0.8, 50.0, 1.0, "CPU-node"),
}
# class → [(share, (types, stack, memory_gb))]
_CONSTRAINTS: dict[str, list[tuple[float, Shape]]] = {
    "llm-train": [(0.60, ((), None, None)), (0.25, ((), "cuda", None)), (0.15, ((), None, 80.0))],
    "cv-train": [(0.70, ((), None, None)), (0.30, ((), "cuda", None))],
    "inference": [(0.60, ((), None, None)), (0.20, ((), "cuda", None)), (0.20, ((), None, 64.0))],
    "cpu-batch": [(1.0, ((), None, None))],
}

SYNTHETIC_DEFAULTS: dict[str, float] = {
    "jobs": 20000,
    "days": 7,
    "seed": 1,
    "deadline_share": 0.8,
    "budget_share": 0.5,
    "interactive_share": 0.3,
    "east_data": 0.9,
    "residency_share": 0.05,
    "noise": 0.0,
    "scale": 1.0,
    "max_count": 0,
}


def synthetic(network: Network, **params: float) -> Workload:
    """A reproducible synthetic workload for `network` (see `SYNTHETIC_DEFAULTS`).

    Arrivals follow `DAILY_PROFILE` over `days`; classes, chip counts, sizes
    (hours on the class's reference chip, lognormal), input data (lognormal GB,
    90 % of it in eastern centers and user sites), deadlines (slack 1.5–4× the
    reference run time; interactive jobs 1.3×) and budgets (1–2× a typical
    price) all come from `seed`. `scale` multiplies every job's work; `max_count`
    (when > 0) caps chips per job, for small networks.
    """
    unknown = set(params) - set(SYNTHETIC_DEFAULTS)
    if unknown:
        raise ValidationError(
            f"unknown synthetic parameter '{sorted(unknown)[0]}'",
            field="workload",
            hint="known: " + ", ".join(SYNTHETIC_DEFAULTS),
        )
    p = {**SYNTHETIC_DEFAULTS, **params}
    n = int(p["jobs"])
    days = float(p["days"])
    if n < 1 or days <= 0:
        raise ValidationError("needs jobs >= 1 and days > 0", field="workload")
    rng = np.random.default_rng(int(p["seed"]))
    matrix = network.throughput
    classes = tuple(c for c in _MIX if c in matrix.efficiency)
    if not classes:
        raise ValidationError(
            "the network's throughput matrix has none of the synthetic classes",
            field="workload",
            hint="use a trace workload on this network",
        )
    share = np.array([_MIX[c][0] for c in classes])
    cls = rng.choice(len(classes), size=n, p=share / share.sum())

    day = rng.integers(0, max(int(np.ceil(days)), 1), size=n)
    hour = rng.choice(24, size=n, p=DAILY_PROFILE / DAILY_PROFILE.sum())
    arrival = (day * 24 + hour + rng.random(n)) * 3600.0
    arrival = np.minimum(arrival, days * 86400.0 - 1.0)

    count = np.ones(n, dtype=np.int64)
    ref_h = np.zeros(n)
    gb = np.zeros(n)
    cu = np.zeros(n)
    shapes: list[Shape] = []
    shape = np.zeros(n, dtype=np.int64)
    chips = network.chips
    for k, c in enumerate(classes):
        rows = np.flatnonzero(cls == k)
        if rows.size == 0:
            continue
        _, counts, cshare, med_h, sig_h, med_gb, sig_gb, ref = _MIX[c]
        count[rows] = rng.choice(counts, size=rows.size, p=np.array(cshare) / sum(cshare))
        if p["max_count"] > 0:
            count[rows] = np.minimum(count[rows], int(p["max_count"]))
        ref_h[rows] = np.clip(med_h * np.exp(sig_h * rng.standard_normal(rows.size)), 0.1, 72.0)
        gb[rows] = np.clip(med_gb * np.exp(sig_gb * rng.standard_normal(rows.size)), 0.1, 20000.0)
        rate = matrix.delivered_pflops(c, chips[ref]) if ref in chips else 0.0
        if rate <= 0:
            rate = max(matrix.delivered_pflops(c, chips[x]) for x in matrix.efficiency[c])
        cu[rows] = rate * ref_h[rows] * count[rows] * float(p["scale"])
        cons = _CONSTRAINTS[c]
        pick = rng.choice(len(cons), size=rows.size, p=[w for w, _ in cons])
        for j, (_, sh) in enumerate(cons):
            if sh not in shapes:
                shapes.append(sh)
            shape[rows[pick == j]] = shapes.index(sh)
    ref_h *= float(p["scale"])

    interactive = (np.asarray(classes)[cls] == "inference") & (
        rng.random(n) < p["interactive_share"]
    )
    has_deadline = (rng.random(n) < p["deadline_share"]) | interactive
    slack = np.where(interactive, 1.3, rng.uniform(1.5, 4.0, size=n))
    deadline = np.where(
        has_deadline, arrival + (ref_h * slack + np.where(interactive, 0.25, 1.0)) * 3600.0, np.nan
    )

    nodes = network.node_ids
    east = [i for i, node in enumerate(nodes) if _region(network, node) == "east"]
    weights = np.array([_weight(network, nodes[i]) for i in east], dtype=float)
    if east:
        loc_east = np.asarray(east)[rng.choice(len(east), size=n, p=weights / weights.sum())]
    else:
        loc_east = rng.integers(0, len(nodes), size=n)
    loc_any = rng.integers(0, len(nodes), size=n)
    data_loc = np.where(rng.random(n) < p["east_data"], loc_east, loc_any)
    residency = (
        (rng.random(n) < p["residency_share"])
        & np.array([_region(network, nodes[i]) == "east" for i in data_loc])
        if _east_tag(network)
        else np.zeros(n, dtype=bool)
    )

    # The budget basis: a typical price (mean service price, the reference chip's energy
    # at the mean tariff) and the input moved to any center; budgets are 1-2x that.
    svc = float(np.mean([float(c.service_price_per_cuh) for c in network.centers]))
    tariff = float(np.mean([float(c.tariff.mean) * c.pue for c in network.centers]))
    # Moving the input to the center dearest to reach from where it sits (¥/GB per node).
    paths = network_index(network).paths
    cols = [paths.index(c.id) for c in network.centers]
    to_any = paths.price_per_gb[:, cols]
    to_any = np.where(np.isfinite(to_any), to_any, 0.0).max(axis=1)
    link_price = to_any[[paths.index(node) for node in nodes]][data_loc]
    kw_per_pflops = np.array([_kw_per_pflops(network, c, _MIX[c][7]) for c in classes])[cls]
    basis = cu * (svc + kw_per_pflops * tariff) + gb * network.data_scale * link_price
    has_budget = rng.random(n) < p["budget_share"]
    budget = np.where(has_budget, np.maximum(basis * rng.uniform(1.0, 2.0, size=n), 0.01), np.nan)

    priority = rng.choice([0, 1, 2, 3], size=n, p=[0.7, 0.15, 0.1, 0.05])
    noise = float(p["noise"])
    factor = np.exp(noise * rng.standard_normal(n)) if noise > 0 else np.ones(n)

    return Workload(
        name=f"synthetic:jobs={n},days={days:g},seed={int(p['seed'])}",
        network=network,
        arrival=arrival,
        classes=classes,
        cls=cls,
        count=count,
        cu_hours=cu,
        shapes=tuple(shapes),
        shape=shape,
        deadline=deadline,
        budget=budget,
        priority=priority,
        interactive=interactive,
        data_gb=gb,
        data_loc=data_loc,
        residency=residency,
        runtime_factor=factor,
        days=days,
        notes=[
            f"synthetic: {n} jobs over {days:g} days, seed {int(p['seed'])};"
            f" {int(has_deadline.sum())} with deadlines, {int(has_budget.sum())} with budgets,"
            f" {int(interactive.sum())} interactive"
        ],
    )


def _region(net: Network, node: str) -> str:
    for c in net.centers:
        if c.id == node:
            return c.region
    for s in net.sites:
        if s.id == node:
            return s.region
    return "east"


def _weight(net: Network, node: str) -> float:
    """Where data sits: big eastern centers hold more of it; each user site as much as a center."""
    for c in net.centers:
        if c.id == node:
            return float(c.total_chips)
    return float(np.mean([c.total_chips for c in net.centers]))


def _kw_per_pflops(net: Network, cls: str, ref: str) -> float:
    """kW per delivered PFLOPS of the class's reference chip (else the worst chip for it)."""
    rows = net.throughput.efficiency.get(cls, {})
    cands = [ref] if ref in rows and ref in net.chips else list(rows)
    worst = 0.0
    for chip in cands:
        c = net.chips.get(chip)
        eff = rows.get(chip, 0.0)
        if c is not None and eff > 0:
            worst = max(worst, (c.tdp_w / 1000.0) / (c.bf16_tflops * eff / 1000.0))
    return worst
