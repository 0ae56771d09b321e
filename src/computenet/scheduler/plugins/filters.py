"""Filter plugins: which pools can run a job at all, and why the others cannot.

Contract: a filter is a pure function `(ctx) -> FilterResult`. It returns a
boolean mask over the snapshot's pools (True = still feasible) and, when it
removes every pool that was still feasible, a reason a user can act on. It
never reads the clock or the capacity calendar (`free`), does no I/O and
never mutates the snapshot.

Every filter is registered with what its result depends on (`depends_on`,
a hashable key of the job, and `per_cycle` when it also reads the cycle's
state such as which centers are online): the cycle memoizes each filter's
mask under that key, so a filter is evaluated once per distinct key, and
every registered filter takes part in every placement. A new filter is one
function plus one `FILTERS.register(...)` call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from itertools import count

import numpy as np

from computenet.errors import ValidationError
from computenet.scheduler.overflow import LOCAL_PASS, parent_ids, parent_pools, spill_block
from computenet.scheduler.snapshot import JobRequest, Snapshot


@dataclass(frozen=True)
class FilterContext:
    """What a filter may look at."""

    snapshot: Snapshot
    job: JobRequest
    mask: np.ndarray  # pools still feasible before this filter


@dataclass(frozen=True)
class FilterResult:
    """Pools kept, and the reason when none is left."""

    mask: np.ndarray
    reason: str = ""


PoolFilter = Callable[[FilterContext], FilterResult]


def _chips_of(ctx: FilterContext, mask: np.ndarray) -> str:
    idx = ctx.snapshot.index
    names = sorted({idx.pool_chip[p] for p in np.flatnonzero(mask)})
    return ", ".join(names) if names else "none"


def runs_class(ctx: FilterContext) -> FilterResult:
    """The chip has kernels for the job's workload class."""
    ok = ctx.snapshot.index.pflops[ctx.job.workload_class] > 0
    return FilterResult(ok, f"no chip in the network runs class '{ctx.job.workload_class}'")


def chip_choice(ctx: FilterContext) -> FilterResult:
    """The chip is one of the requested types and of the requested stack."""
    idx = ctx.snapshot.index
    job = ctx.job
    ok = np.ones(idx.n_pools, dtype=bool)
    if job.types:
        ok &= np.array([c in job.types for c in idx.pool_chip])
    if job.stack:
        ok &= np.array([s == job.stack for s in idx.stack])
    want = " or ".join(job.types) if job.types else f"the {job.stack} stack"
    if job.stack and not job.types:
        reason = (
            f"needs the {job.stack} stack: no center has chips of it"
            f" that run '{job.workload_class}'"
        )
    else:
        reason = f"needs {want}: no center has such chips that run '{job.workload_class}'"
    return FilterResult(ok, reason)


def memory(ctx: FilterContext) -> FilterResult:
    """The chip has the memory the job (or its class) needs."""
    idx = ctx.snapshot.index
    need = ctx.job.memory_gb or ctx.snapshot.network.throughput.min_memory_gb.get(
        ctx.job.workload_class, 0.0
    )
    ok = idx.memory_gb >= need
    return FilterResult(
        ok, f"needs {need:g} GB per chip: the eligible chips ({_chips_of(ctx, ctx.mask)}) have less"
    )


def pool_size(ctx: FilterContext) -> FilterResult:
    """The pool has at least as many chips as the job asks for."""
    idx = ctx.snapshot.index
    ok = idx.pool_total >= ctx.job.count
    biggest = int(idx.pool_total[ctx.mask].max()) if ctx.mask.any() else 0
    return FilterResult(
        ok,
        f"needs {ctx.job.count} chips in one pool: the largest eligible pool has {biggest}"
        " (ask for fewer chips or another chip type)",
    )


def residency(ctx: FilterContext) -> FilterResult:
    """Every input's residency tag is carried by the center."""
    idx = ctx.snapshot.index
    tags = {d.residency for d in ctx.job.inputs if d.residency}
    if not tags:
        return FilterResult(np.ones(idx.n_pools, dtype=bool))
    center_ok = np.array([tags <= t for t in idx.center_tags])
    ok = center_ok[idx.pool_center]
    return FilterResult(
        ok, f"inputs must stay in {', '.join(sorted(tags))}: no eligible center there"
    )


def online(ctx: FilterContext) -> FilterResult:
    """The center's agent is reachable."""
    idx = ctx.snapshot.index
    ok = ctx.snapshot.online[idx.pool_center]
    down = sorted({ctx.snapshot.network.centers[c].id for c in idx.pool_center[ctx.mask & ~ok]})
    return FilterResult(ok, f"the eligible centers are offline: {', '.join(down)}")


def data_reachable(ctx: FilterContext) -> FilterResult:
    """Every input has a replica with a path to the center."""
    idx = ctx.snapshot.index
    ok = np.ones(idx.n_pools, dtype=bool)
    for d in ctx.job.inputs:
        if not d.replicas:
            return FilterResult(
                np.zeros(idx.n_pools, dtype=bool), f"input '{d.id}' has no replica anywhere"
            )
        rows = [idx.paths.index(r) for r in d.replicas if r in idx.paths.nodes]
        reach = np.isfinite(idx.paths.latency_s[rows][:, idx.center_node]).any(axis=0)
        ok &= reach[idx.pool_center]
    return FilterResult(ok, "no eligible center is linked to where the inputs are")


def pinned(ctx: FilterContext) -> FilterResult:
    """A job pinned to a center runs there or nowhere."""
    idx = ctx.snapshot.index
    pin = ctx.job.pin_center
    if pin is None:
        return FilterResult(np.ones(idx.n_pools, dtype=bool))
    ok = np.array([ctx.snapshot.network.centers[c].id == pin for c in idx.pool_center])
    return FilterResult(
        ok, f"pinned to {pin}, which cannot run it (remove 'center' to let the network choose)"
    )


def spill(ctx: FilterContext) -> FilterResult:
    """A parent network's center (tagged `parent`) only for a job that may leave this one.

    Which jobs may is `scheduler/overflow.py`'s rule (`overflow.spill_block`): not
    one that says ``spill: never``, came from another network, or reads an input
    with a residency tag. Whether the job *needs* the parent (no center here can
    run it) is decided by `overflow.local_first`.
    """
    idx = ctx.snapshot.index
    parent = parent_pools(ctx.snapshot)
    job = ctx.job
    why = spill_block(job)
    if not why or not parent.any():
        return FilterResult(np.ones(idx.n_pools, dtype=bool))
    if why == LOCAL_PASS:
        return FilterResult(~parent, why)
    ids = ", ".join(parent_ids(ctx.snapshot))
    fix = (
        " (set spill: allow to let it overflow there)" if job.no_spill.startswith("spill:") else ""
    )
    return FilterResult(~parent, f"{why}: only the parent network (center {ids}) could run it{fix}")


@dataclass(frozen=True)
class FilterPlugin:
    """A registered filter and what its memo depends on.

    `depends_on(job)` is every property of the job the filter reads (besides
    the network, which the memo lives with); `per_cycle` says it also reads
    the snapshot's per-cycle state (`online`, `datasets`), so its mask is
    kept only for that snapshot. `keeps_all(snapshot)`, optional for such a
    filter, says it keeps every pool for every job in that snapshot (the
    tenant-quota filter when no tenant has a quota): the cycle then skips it
    there instead of asking it job by job. It must be exact: True only where
    the filter's mask would be all True.
    """

    name: str
    check: PoolFilter
    depends_on: Callable[[JobRequest], Hashable]
    per_cycle: bool = False
    keeps_all: Callable[[Snapshot], bool] | None = None

    def __call__(self, ctx: FilterContext) -> FilterResult:
        """Run the filter."""
        return self.check(ctx)


_generations = count(1)


class FilterRegistry(Mapping[str, FilterPlugin]):
    """The registered filters, in the order their reasons are reported.

    `generation` changes on every (un)registration, so that memoized masks of
    an older set of filters are never reused.
    """

    def __init__(self, plugins: tuple[FilterPlugin, ...] = ()) -> None:
        self._by_name: dict[str, FilterPlugin] = {}
        self.generation = 0
        for p in plugins:
            self.register(p)

    def register(self, plugin: FilterPlugin) -> FilterPlugin:
        """Add `plugin` after the others; a name may be registered once."""
        if plugin.name in self._by_name:
            raise ValidationError(f"filter '{plugin.name}' is already registered", field="name")
        self._by_name[plugin.name] = plugin
        self.generation = next(_generations)
        return plugin

    def unregister(self, name: str) -> None:
        """Remove the filter `name` (tests and plugins that are switched off)."""
        del self._by_name[name]
        self.generation = next(_generations)

    def __getitem__(self, name: str) -> FilterPlugin:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


def _inputs_key(job: JobRequest) -> Hashable:
    # `data_reachable` reads where each input is, and its id only to name one with no
    # replica: inputs at the same places share one mask whatever their ids.
    return tuple(d.replicas or d.id for d in job.inputs)


# Order matters only for which reason is reported: the first filter that empties the set.
FILTERS = FilterRegistry(
    (
        FilterPlugin("runs-class", runs_class, lambda j: j.workload_class),
        FilterPlugin("chip-choice", chip_choice, lambda j: (j.types, j.stack, j.workload_class)),
        FilterPlugin("memory", memory, lambda j: (j.memory_gb, j.workload_class)),
        FilterPlugin("pool-size", pool_size, lambda j: j.count),
        FilterPlugin("pinned", pinned, lambda j: j.pin_center),
        FilterPlugin("residency", residency, lambda j: tuple(d.residency for d in j.inputs)),
        FilterPlugin("data-reachable", data_reachable, _inputs_key),
        FilterPlugin("online", online, lambda j: None, per_cycle=True),
        FilterPlugin("spill", spill, lambda j: (j.no_spill, tuple(d.residency for d in j.inputs))),
    )
)
