"""The scheduling cycle: filter → evaluate options → score → select → reserve.

For each job the options are (pool, start slot) pairs, evaluated as numpy
arrays: the estimate the architecture gives,
``finish = start + transfer(inputs → center) + work / speed(class, chip, n)``,
``kWh = n × TDP × run_h × PUE / 1000`` and ``cost = Σ_hours kWh × tariff(hour)
+ CU·h × service price + GB moved × link price``. A start may shift into a
cheaper tariff hour only when the job has a deadline that still holds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np

from computenet.metering.cost import (
    TransferLot,
    Usage,
    price,
)
from computenet.model import CostBreakdown, Placement, limits
from computenet.model.center import CST
from computenet.scheduler import kernel, region_quotes, subsidy
from computenet.scheduler.index import NetworkIndex
from computenet.scheduler.kernel import evaluate_options
from computenet.scheduler.plugins import FILTERS, Profile
from computenet.scheduler.plugins.filters import FilterContext
from computenet.scheduler.snapshot import HORIZON_SLOTS, JobRequest, Snapshot

log = logging.getLogger(__name__)

REJECTED = "rejected by the scheduler"


@dataclass(frozen=True)
class Decision:
    """The outcome for one job: a placement with its reasons, or none with reasons why.

    `rejected` marks a job whose evaluation failed (an error, not a lack of
    capacity): it is left unplaced with the error as its reason, and the
    cycle goes on for every other job.
    """

    job_id: str
    placement: Placement | None
    reasons: tuple[str, ...]
    rejected: bool = False


def rejected(job: JobRequest, exc: BaseException) -> Decision:
    """The decision for a job whose evaluation raised `exc`: unplaced, with the error."""
    log.warning("job %s rejected by the scheduler: %r", job.id, exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Decision(job.id, None, (f"{REJECTED}: {text[:300]}",), rejected=True)


@dataclass
class Options:
    """Every (pool, start) option evaluated for one job; arrays share one index."""

    pool: np.ndarray
    slot: np.ndarray
    start_h: np.ndarray  # hours after now the chips are taken
    transfer_s: np.ndarray
    run_s: np.ndarray
    finish_h: np.ndarray
    energy: np.ndarray
    service: np.ndarray
    transfer: np.ndarray
    kwh: np.ndarray
    co2: np.ndarray
    n_slots: np.ndarray
    feasible: np.ndarray
    why_not: list[str] = field(default_factory=list)
    source: InputSources | None = None  # per center: dataset → replica it is fetched from
    # energy + service + transfer, when the kernel has summed them already.
    total: np.ndarray | None = field(default=None, repr=False)
    # The kernel's arrays the fields above are rows of (`kernel.F_*`, `kernel.I_*`).
    fv: np.ndarray | None = field(default=None, repr=False)
    iv: np.ndarray | None = field(default=None, repr=False)
    # Options a region's own quote priced (`region_quotes.apply`): option index → quote.
    quoted: dict[int, region_quotes.RegionQuote] | None = field(default=None, repr=False)
    _last: tuple[int, Option] | None = field(default=None, repr=False, compare=False)

    @property
    def cost(self) -> np.ndarray:
        """Total ¥ of each option."""
        if self.total is not None:
            return self.total
        total: np.ndarray = self.energy + self.service + self.transfer
        return total

    def at(self, i: int) -> Option:
        """Option `i` as Python numbers (the last one asked is kept: placing asks thrice)."""
        last = self._last
        if last is not None and last[0] == i:
            return last[1]
        o = self._at(i)
        self._last = (i, o)
        return o

    def _at(self, i: int) -> Option:
        if self.fv is not None and self.iv is not None:
            f = self.fv[:, i].tolist()
            pool, slot, n_slots = self.iv[:, i].tolist()
            return Option(
                pool,
                slot,
                n_slots,
                f[kernel.F_START_H],
                f[kernel.F_TRANSFER_S],
                f[kernel.F_RUN_S],
                f[kernel.F_FINISH_H],
                f[kernel.F_ENERGY],
                f[kernel.F_SERVICE],
                f[kernel.F_TRANSFER],
                f[kernel.F_KWH],
                f[kernel.F_CO2],
                f[kernel.F_COST],
            )
        return Option(
            int(self.pool[i]),
            int(self.slot[i]),
            int(self.n_slots[i]),
            float(self.start_h[i]),
            float(self.transfer_s[i]),
            float(self.run_s[i]),
            float(self.finish_h[i]),
            float(self.energy[i]),
            float(self.service[i]),
            float(self.transfer[i]),
            float(self.kwh[i]),
            float(self.co2[i]),
            float(self.cost[i]),
        )


class Option(NamedTuple):
    """One option of `Options`, as Python numbers."""

    pool: int
    slot: int
    n_slots: int
    start_h: float
    transfer_s: float
    run_s: float
    finish_h: float
    energy: float
    service: float
    transfer: float
    kwh: float
    co2: float
    cost: float


def _fmt_h(hours: float) -> str:
    if not math.isfinite(hours):
        return "never"
    m = round(hours * 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"


class InputSources:
    """Which replica each input is fetched from, per center (computed on demand)."""

    def __init__(self) -> None:
        self._best: list[tuple[str, tuple[str, ...], list[int]]] = []

    def add(self, dataset: str, replicas: tuple[str, ...], best: np.ndarray) -> None:
        """Record the best replica index of `dataset` for every center."""
        self._best.append((dataset, replicas, best.tolist()))

    def get(self, center: int, default: dict[str, str] | None = None) -> dict[str, str]:
        """dataset id → the replica (center id) that center `center` fetches it from."""
        out = {d: reps[best[center]] for d, reps, best in self._best}
        return out if out or default is None else default


def _inputs(snap: Snapshot, job: JobRequest) -> tuple[np.ndarray, np.ndarray, InputSources]:
    """Per center: seconds and ¥ to bring every input there from its best replica.

    Depends only on the network and the inputs (not on capacity or time), so it
    is memoized on the network index across cycles.
    """
    idx = snap.index
    key = ("inputs", _inputs_memo_key(snap, job))
    hit = idx.memo.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    out = _inputs_now(snap, job)
    _remember(idx.memo, key, out)
    return out


def _inputs_memo_key(snap: Snapshot, job: JobRequest) -> Hashable:
    """What `_inputs` depends on: the network's data scale and each input's id, size, places."""
    return snap.network.data_scale, tuple((d.id, d.size_bytes, d.replicas) for d in job.inputs)


def _inputs_now(snap: Snapshot, job: JobRequest) -> tuple[np.ndarray, np.ndarray, InputSources]:
    """`_inputs`, computed (not memoized)."""
    idx = snap.index
    n_centers = len(idx.center_node)
    t = np.zeros(n_centers)
    price = np.zeros(n_centers)
    sources = InputSources()
    scale = snap.network.data_scale
    for d in job.inputs:
        paths = _replica_paths(idx, d.replicas)
        if paths is None:
            continue
        reps, lat, bw, unlimited, local, per_gb = paths
        # Inputs are fetched one after another by the agent, so times add up: the
        # kernel adds each input's best replica's seconds and ¥ to `t` and `price`.
        best = kernel.input_paths(lat, bw, unlimited, local, per_gb, d.size_gb * scale, t, price)
        sources.add(d.id, reps, best)
    return t, price, sources


def _replica_paths(idx: NetworkIndex, replicas: tuple[str, ...]) -> tuple[Any, ...] | None:
    """From the known replicas to every center: (replicas, latency s, bandwidth Gb/s,
    unlimited bandwidth, no latency, ¥/GB), rows per replica; None when none is known.

    Memoized with the network: datasets at the same places share it.
    """
    key = ("replica-paths", replicas)
    hit = idx.memo.get(key)
    if hit is not None:
        return hit if hit else None
    rows = [idx.paths.index(r) for r in replicas if r in idx.paths.nodes]
    if not rows:
        _remember(idx.memo, key, ())
        return None
    lat = idx.paths.latency_s[rows][:, idx.center_node]
    bw = idx.paths.bandwidth_gbps[rows][:, idx.center_node]
    out = (
        tuple(r for r in replicas if r in idx.paths.nodes),
        lat,
        bw,
        np.isinf(bw),
        lat == 0,
        idx.paths.price_per_gb[rows][:, idx.center_node],
    )
    _remember(idx.memo, key, out)
    return out


def _remember(memo: dict[object, Any], key: object, value: object) -> None:
    # The memo lives as long as the network; bound it so that an endless stream
    # of distinct job shapes cannot grow it without limit.
    if len(memo) > 50_000:
        memo.clear()
    memo[key] = value


# Beyond this many eligible pools, only the most promising (by a lower bound of the
# profile's score) get their capacity calendar checked: keeps 1,000-center networks fast.
MAX_POOLS_CHECKED = 256
# A start is shifted at most this many hours into a cheaper tariff period.
SHIFT_SLOTS = 24
# No option may finish further ahead than this (hours): beyond it a finish time
# is not worth showing, and near it not even representable as a datetime.
MAX_FINISH_H = limits.MAX_AHEAD.total_seconds() / 3600.0


@dataclass(frozen=True)
class _Filters:
    """The registered filters as the hot path reads them, rebuilt when the registry changes."""

    generation: int
    depends_on: tuple[Callable[[JobRequest], Hashable], ...]
    static: tuple[int, ...]  # positions of the filters that ignore the cycle's state
    per_cycle: tuple[int, ...]  # positions of those that read it


_FILTERS_NOW = _Filters(-1, (), (), ())


def _filters() -> _Filters:
    """The registry's current `_Filters`."""
    global _FILTERS_NOW
    if _FILTERS_NOW.generation != FILTERS.generation:
        plugins = tuple(FILTERS.values())
        _FILTERS_NOW = _Filters(
            FILTERS.generation,
            tuple(p.depends_on for p in plugins),
            tuple(i for i, p in enumerate(plugins) if not p.per_cycle),
            tuple(i for i, p in enumerate(plugins) if p.per_cycle),
        )
    return _FILTERS_NOW


def _asked(snap: Snapshot, reg: _Filters) -> tuple[int, ...]:
    """Positions of the per-cycle filters to ask in `snap`: all but those that say
    they keep every pool there (`FilterPlugin.keeps_all`), once per snapshot."""
    key = ("asked", reg.generation)
    hit: tuple[int, ...] | None = snap.memo.get(key)
    if hit is None:
        plugins = tuple(FILTERS.values())
        hit = tuple(
            i
            for i in reg.per_cycle
            if (keeps_all := plugins[i].keeps_all) is None or not keeps_all(snap)
        )
        snap.memo[key] = hit
    return hit


def _filter_mask(
    snap: Snapshot, job: JobRequest, keys: list[Hashable], which: tuple[int, ...], per_cycle: bool
) -> np.ndarray:
    """The combined mask of the registered filters at positions `which`.

    Each filter's mask is memoized under the key it declares (`keys[i]` is
    `depends_on(job)` of the i-th filter) — across cycles in the network
    index's memo, or within the snapshot for filters that read the cycle's
    state (`per_cycle`) — and so is their combination.
    """
    gen = FILTERS.generation
    memo = snap.memo if per_cycle else snap.index.memo
    key = ("filters", gen, per_cycle, tuple([keys[i] for i in which]))
    hit = memo.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    plugins = tuple(FILTERS.values())
    mask = np.ones(snap.index.n_pools, dtype=bool)
    for i in which:
        plugin = plugins[i]
        one_key = ("filter", gen, plugin.name, keys[i])
        m = memo.get(one_key)
        if m is None:
            m = plugin(FilterContext(snap, job, np.ones(snap.index.n_pools, dtype=bool))).mask
            _remember(memo, one_key, m)
        mask = mask & m
    _remember(memo, key, mask)
    return mask


def _chain(snap: Snapshot, job: JobRequest, names: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Apply the named filters in order; the reason is the one that removed the last pools."""
    mask = np.ones(snap.index.n_pools, dtype=bool)
    why: list[str] = []
    for name in names:
        res = FILTERS[name](FilterContext(snap, job, mask))
        kept = mask & res.mask
        if not kept.any() and mask.any():
            why.append(res.reason)
        mask = kept
        if not mask.any():
            break
    return mask, why


@dataclass(frozen=True)
class JobPools:
    """What evaluating one job needs that depends on neither capacity nor start time.

    Arrays share one index: the job's eligible pools (after the filters, the
    centers it should avoid and, on large networks, the pruning to the most
    promising `MAX_POOLS_CHECKED`), the seconds and ¥ to bring its inputs to
    each, and the PFLOPS one chip of each delivers for the job's class (its run
    time is the kernel's `_run_times_py`).
    """

    pools: np.ndarray
    transfer_s: np.ndarray
    transfer_cny: np.ndarray
    pflops: np.ndarray
    why: tuple[str, ...]
    sources: InputSources | None


def job_pools(snap: Snapshot, job: JobRequest, profile: Profile) -> JobPools:
    """The eligible pools of `job` with its transfer time and ¥ and chip speed on each."""
    if not 0 < job.cu_hours <= limits.MAX_CU_HOURS:
        # Validation bounds the work; a request that bypassed it must not reach the arrays.
        raise ValueError(f"work of {job.cu_hours} CU·h is not in (0, {limits.MAX_CU_HOURS:g}]")
    jp = _eligible(snap, job)
    if jp.pools.size <= MAX_POOLS_CHECKED:
        return jp
    keep = prune_pools(snap, job, profile, jp)
    return JobPools(
        jp.pools[keep],
        jp.transfer_s[keep],
        jp.transfer_cny[keep],
        jp.pflops[keep],
        jp.why,
        jp.sources,
    )


def _eligible(snap: Snapshot, job: JobRequest) -> JobPools:
    """`job_pools` before the pruning, memoized by what it depends on.

    The eligible pools depend on what every filter declares (`depends_on`)
    and the centers to avoid: jobs alike in these (a sweep, a queue of
    retries, jobs whose inputs sit at the same places) share one entry,
    whatever their work, deadline, budget or dataset ids. Filters ignore
    capacity and time, so an entry lives as long as the network does (in its
    index's memo), keyed also by the mask of the filters that read the cycle's
    state; a job no pool can run is memoized in the snapshot only, as its
    reasons may name the cycle's state. When every pool is filtered out the
    filters run again in order (`_chain`) to name the reason. The per-pool
    transfer and speed follow from the pools, the class and the inputs
    (`_inputs`, memoized by the inputs).
    """
    reg = _filters()
    keys = [depends_on(job) for depends_on in reg.depends_on]
    cycle_mask = _filter_mask(snap, job, keys, _asked(snap, reg), per_cycle=True)
    cycle_id = snap.memo.get(("mask-id", id(cycle_mask)))
    if cycle_id is None:
        # The cycle's mask by value (an id could be reused by a later snapshot's mask).
        cycle_id = cycle_mask.tobytes()
        snap.memo[("mask-id", id(cycle_mask))] = cycle_id
    idx = snap.index
    # Pools left depend on the static filters' keys and on the mask of those that read
    # the cycle's state (by value: jobs whose per-cycle keys differ but keep the same
    # pools share the entry). None left: the reasons may name any filter's key or the
    # cycle's state (offline centers), so that entry is the job's, in the snapshot.
    static_keys = tuple([keys[i] for i in reg.static])
    key = ("eligible", reg.generation, static_keys, cycle_id, job.avoid_centers)
    hit = idx.memo.get(key)
    if hit is None:
        none_key = ("eligible-none", reg.generation, tuple(keys), cycle_id, job.avoid_centers)
        hit = snap.memo.get(none_key)
        if hit is None:
            hit = _eligible_pools(snap, job, keys, reg, cycle_mask)
            if hit[0].size:
                _remember(idx.memo, key, hit)
            else:
                _remember(snap.memo, none_key, hit)
    pools, why = hit
    if pools.size == 0:
        z = np.zeros(0)
        return JobPools(pools, z, z, z, why, None)
    if not job.inputs:
        # Nothing to bring: the whole entry is shared by every job of the class.
        key2 = ("eligible-class", key, job.workload_class)
        out: JobPools | None = idx.memo.get(key2)
        if out is None:
            z = np.zeros(pools.size)
            pflops = idx.pflops[job.workload_class][pools]
            out = JobPools(pools, z, z, pflops, why, InputSources())
            _remember(idx.memo, key2, out)
        return out
    # The job's own entry (its inputs' ids and sizes): a job decided again hits it.
    key3 = ("eligible-inputs", key, job.workload_class, _inputs_memo_key(snap, job))
    out = idx.memo.get(key3)
    if out is None:
        t_center, price_center, sources = _inputs_now(snap, job)
        pc = idx.pool_center[pools]
        out = JobPools(
            pools,
            t_center[pc],
            price_center[pc],
            idx.pflops[job.workload_class][pools],
            why,
            sources,
        )
        _remember(idx.memo, key3, out)
    return out


def _eligible_pools(
    snap: Snapshot,
    job: JobRequest,
    keys: list[Hashable],
    reg: _Filters,
    cycle_mask: np.ndarray,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The eligible pools of `job` (ascending) and, when there are none, why."""
    idx = snap.index
    mask = _filter_mask(snap, job, keys, reg.static, per_cycle=False) & cycle_mask
    why: list[str] = []
    if not mask.any():
        mask, why = _chain(snap, job, tuple(FILTERS))
    # A center that lost this job before is avoided, unless it is the only way.
    if job.avoid_centers and mask.any():
        avoid = np.array([snap.network.centers[c].id in job.avoid_centers for c in idx.pool_center])
        if (mask & ~avoid).any():
            mask = mask & ~avoid
    # Shared by every job alike (never written to; left writeable, as the kernel's
    # compiled signatures take writeable arrays).
    return np.flatnonzero(mask), tuple(why)


def prune_pools(snap: Snapshot, job: JobRequest, profile: Profile, jp: JobPools) -> np.ndarray:
    """Positions (ascending) in `jp` of the `MAX_POOLS_CHECKED` pools with the best lower bound.

    The bound is the profile's score of the run priced at each pool's cheapest
    hour (`kernel.prune`); the kept pools are the `MAX_POOLS_CHECKED` lowest,
    as `np.argpartition` chooses them where the kernel cannot tell (a tie at
    the cut) and for a profile with a score of its own.
    """
    idx = snap.index
    plain = type(profile).score is Profile.score
    lb_cost, dur_h, lb, keep = kernel.prune(
        jp.pools,
        jp.pflops,
        jp.transfer_s,
        jp.transfer_cny,
        idx.tdp_kw,
        idx.pue,
        idx.tariff_min,
        idx.service,
        job.count,
        float(job.cu_hours),
        plain,
        float(profile.cost),
        float(profile.time),
        float(profile.carbon),
        MAX_POOLS_CHECKED,
    )
    if keep.size:
        return keep
    if not plain:
        lb = profile.score(lb_cost, dur_h, lb_cost)
    keep = np.argpartition(lb, MAX_POOLS_CHECKED)[:MAX_POOLS_CHECKED]
    keep.sort()
    return keep


def evaluate(
    snap: Snapshot,
    free: np.ndarray,
    job: JobRequest,
    profile: Profile,
    jp: JobPools | None = None,
) -> Options:
    """All options for `job` against the capacity calendar `free` (not modified).

    Options are, per eligible pool, the earliest start with enough free chips
    and — when the job may wait for cheaper power (`shift_limit_h`) — every
    later start at an hour where some tariff changes. `jp`, when given, is
    `job_pools(snap, job, profile)`.
    """
    return _evaluate(snap, free, job, profile, jp, False)[0]


# What the reasons of a chosen option name (`kernel.explain_index`): the best
# option at another center, the same pool's start-now option, the late centers.
ExplainIndex = tuple[int, int, list[int]]


def _evaluate(
    snap: Snapshot,
    free: np.ndarray,
    job: JobRequest,
    profile: Profile,
    jp: JobPools | None,
    want_best: bool,
    want_index: bool = False,
) -> tuple[Options, np.ndarray, int, ExplainIndex | None]:
    """`evaluate`, and with `want_best` the profile's score of each option and the best one.

    With `want_index` too, also what `explain` names for the best option.

    Each option's estimate is the architecture's:
    ``finish = start + transfer + run``, energy ¥ integrated over the tariff
    hour by hour (`metering.cost.option_costs`' formula), service per CU·h,
    transfer per GB. The arithmetic runs in the compiled kernel
    (`scheduler/kernel.py`); a profile that is not a plain `Profile` (its own
    `score`) is scored here with its own method.
    """
    if jp is None:
        jp = job_pools(snap, job, profile)
    why = list(jp.why)
    pools = jp.pools
    if pools.size == 0:
        return _empty(why), np.zeros(0), -1, None
    idx = snap.index
    frac = snap.frac
    left_h = (job.deadline - snap.now).total_seconds() / 3600.0 if job.deadline else 0.0
    own_score = want_best and type(profile).score is not Profile.score
    # A tenant with vouchers: the budget bounds what it pays after them (scheduler/subsidy.py).
    vouchers = subsidy.wallet(snap, job)
    ev = evaluate_options(
        free,
        pools,
        jp.transfer_s,
        jp.transfer_cny,
        jp.pflops,
        job.count,
        float(job.cu_hours),
        frac,
        snap.hour0.hour + frac,
        _shift_slots(snap, job, profile, frac),
        job.deadline is not None,
        left_h,
        job.budget_cny is not None,
        # With vouchers the kernel drops only what cannot fit after them (subsidy.ceiling).
        subsidy.ceiling(job, vouchers) if vouchers else float(job.budget_cny or 0),
        MAX_FINISH_H,
        idx.tdp_kw,
        idx.pue,
        idx.cum_flat,
        idx.service,
        idx.carbon,
        want_best and not own_score,
        float(profile.cost),
        float(profile.time),
        float(profile.carbon),
        idx.pool_center,
        len(snap.network.centers) if want_index and not own_score else 0,
    )
    fv, iv = ev.fv, ev.iv
    opts = Options(
        pool=iv[kernel.I_POOL],
        slot=iv[kernel.I_SLOT],
        start_h=fv[kernel.F_START_H],
        transfer_s=fv[kernel.F_TRANSFER_S],
        run_s=fv[kernel.F_RUN_S],
        finish_h=fv[kernel.F_FINISH_H],
        energy=fv[kernel.F_ENERGY],
        service=fv[kernel.F_SERVICE],
        transfer=fv[kernel.F_TRANSFER],
        kwh=fv[kernel.F_KWH],
        co2=fv[kernel.F_CO2],
        n_slots=iv[kernel.I_N_SLOTS],
        feasible=ev.feasible,
        why_not=why,
        source=jp.sources,
        total=fv[kernel.F_COST],
        fv=fv,
        iv=iv,
    )
    too_long, no_slot, late, over, *named = ev.flags.tolist()
    if too_long:
        why.append(
            f"would run for more than {limits.MAX_AHEAD.days} days on any eligible chip"
            " (ask for more or faster chips, or split the work)"
        )
    if no_slot:
        why.append(_no_chips(snap, job, pools))
    if late >= 0:
        center = snap.network.centers[idx.pool_center[opts.pool[late]]].id
        why.append(
            f"deadline in {_fmt_h(left_h)} but the fastest finish is"
            f" {_fmt_h(float(opts.finish_h[late]))} at {center}"
            " (relax the deadline, ask for more or faster chips)"
        )
    if over >= 0 and vouchers:
        why.append(subsidy.reason(snap, job, vouchers, opts.cost, opts.pool, opts.finish_h, over))
    elif over >= 0:
        center = snap.network.centers[idx.pool_center[opts.pool[over]]].id
        why.append(
            f"budget ¥{job.budget_cny} but the cheapest option costs"
            f" ¥{opts.cost[over]:.2f} at {center} (raise the budget or relax the deadline)"
        )
    quotes = snap.quotes.get(job.id) if snap.quotes else None
    if quotes and region_quotes.apply(
        snap, free, job, opts, quotes, pools.size, left_h, MAX_FINISH_H, not vouchers
    ):
        own_score = want_best  # the kernel scored the rate-card figures: score again
    if vouchers and subsidy.check(
        snap, job, vouchers, opts.cost, opts.pool, opts.finish_h, opts.feasible, why
    ):
        own_score = want_best  # options the kernel kept are over the budget after all
    if not own_score:
        return opts, ev.score, ev.best, (named[0], named[1], named[2:]) if named else None
    if not opts.feasible.any():
        return opts, np.full(opts.pool.size, np.inf), -1, None
    score = np.where(opts.feasible, profile.score(opts.cost, opts.finish_h, opts.co2), np.inf)
    return opts, score, int(np.argmin(score)), None


def shift_limit_h(snap: Snapshot, job: JobRequest, profile: Profile) -> float:
    """How far ahead (hours from now) `job` may be started later than its earliest start.

    The one rule: only batch jobs under a profile that shifts; a job with a
    deadline as far as the deadline allows (checked per option), one without
    a deadline at most the operator's patience (`Snapshot.patience_h`).
    """
    if not profile.shift or job.latency_class != "batch":
        return 0.0
    if job.deadline is None:
        return max(snap.patience_h, 0.0)
    return math.inf


def _shift_slots(snap: Snapshot, job: JobRequest, profile: Profile, frac: float) -> np.ndarray:
    """The later start slots worth trying: tariff changes within reach and the job's limit."""
    limit = shift_limit_h(snap, job, profile)
    key = ("shift", limit, frac)
    hit = snap.memo.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    if limit <= 0:
        out = np.zeros(0, dtype=np.int64)
    else:
        h0 = snap.hour0.hour
        changes = snap.index.tariff_change_hours
        last = (
            min(SHIFT_SLOTS - 1, math.floor(limit + frac))
            if math.isfinite(limit)
            else SHIFT_SLOTS - 1
        )
        # Also the last start a finite limit (the patience) allows: a run that crosses into
        # a cheaper period gains from starting as late as it may, which is rarely on a
        # tariff change (without it `china`'s jobs without a deadline lost ¥875 alone).
        end = last if math.isfinite(limit) else -1
        out = np.array(
            [s for s in range(1, last + 1) if (h0 + s) % 24 in changes or s == end],
            dtype=np.int64,
        )
    # Shared by every job with the same limit: never written to.
    out.flags.writeable = False
    snap.memo[key] = out
    return out


def _windows(
    blocked: np.ndarray, n_first: np.ndarray, n_later: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Earliest start slot per pool, whether it has one, and which `cols` starts fit.

    `blocked[p, s]` is True where slot s lacks chips. A start s fits when no
    slot of its window [s, s + n) is blocked (n = `n_first` for slot 0, else
    `n_later`; windows are clipped at the horizon). The kernel's rule
    (`kernel.windows`), the one `evaluate` applies.
    """
    return kernel.windows(blocked, n_first, n_later, cols)


def _no_chips(snap: Snapshot, job: JobRequest, pools: np.ndarray) -> str:
    return (
        f"no eligible center has {job.count} free {_chip_names(snap, pools)} chips"
        f" within the next {HORIZON_SLOTS} h"
    )


def _chip_names(snap: Snapshot, pools: np.ndarray) -> str:
    return "/".join(sorted({snap.index.pool_chip[p] for p in pools}))


def _empty(why: list[str]) -> Options:
    z = np.zeros(0)
    zi = np.zeros(0, dtype=np.int64)
    return Options(
        pool=zi,
        slot=zi,
        start_h=z,
        transfer_s=z,
        run_s=z,
        finish_h=z,
        energy=z,
        service=z,
        transfer=z,
        kwh=z,
        co2=z,
        n_slots=zi,
        feasible=np.zeros(0, dtype=bool),
        why_not=why,
    )


def to_placement(
    snap: Snapshot, job: JobRequest, opts: Options, i: int, reasons: tuple[str, ...] = ()
) -> Placement:
    """The placement for option `i` (estimates rounded to the fen)."""
    o = opts.at(i)
    placement = placement_of(
        snap,
        job,
        o.pool,
        o.start_h,
        o.transfer_s,
        o.run_s,
        o.finish_h,
        o.kwh,
        o.co2,
        opts.source,
        reasons,
    )
    q = opts.quoted.get(i) if opts.quoted else None
    return placement if q is None else region_quotes.priced(placement, q)


def placement_of(
    snap: Snapshot,
    job: JobRequest,
    p: int,
    start_h: float,
    transfer_s: float,
    run_s: float,
    finish_h: float,
    kwh: float,
    co2: float,
    source: InputSources | None,
    reasons: tuple[str, ...] = (),
) -> Placement:
    """The placement of `job` on pool `p` from `start_h` hours after now, priced exactly."""
    idx = snap.index
    ci = int(idx.pool_center[p])
    cid = snap.network.centers[ci].id
    now = snap.now
    start = now + timedelta(hours=start_h)
    sources = source.get(ci) if source is not None else {}
    return Placement(
        center=cid,
        chip=idx.pool_chip[p],
        count=job.count,
        planned_start=start.astimezone(CST),
        transfer_s=transfer_s,
        run_s=run_s,
        finish=(now + timedelta(hours=finish_h)).astimezone(CST),
        cost=_planned_cost(snap, job, p, sources, start + timedelta(seconds=transfer_s), run_s),
        kwh=kwh,
        co2_kg=co2,
        cu_hours=job.cu_hours,
        source_replicas={d: src for d, src in sources.items() if src != cid} if sources else {},
        reasons=reasons,
    )


def _sources(opts: Options, center: int) -> dict[str, str]:
    return opts.source.get(center) if opts.source is not None else {}


def _planned_cost(
    snap: Snapshot,
    job: JobRequest,
    p: int,
    sources: dict[str, str],
    run_start: datetime,
    run_s: float,
) -> CostBreakdown:
    """The option priced exactly by the one cost model, as the server bills it if run to plan."""
    idx = snap.index
    net = snap.network
    center = net.centers[int(idx.pool_center[p])]
    lots: tuple[TransferLot, ...] = ()
    if job.inputs:
        cid = center.id
        lots = tuple(
            TransferLot.of_gb(gb * net.data_scale, src, _path_price(idx, src, cid))
            for d in job.inputs
            if (src := sources.get(d.id, cid)) != cid and (gb := d.size_gb) > 0
        )
    tdp_w = net.chips[idx.pool_chip[p]].tdp_w
    run_end = run_start + timedelta(seconds=run_s)
    return price(center, Usage(job.count, tdp_w, run_start, run_end, job.cu_hours, lots))


def _path_price(idx: NetworkIndex, src: str, dst: str) -> Decimal:
    """`PathTable.price(src, dst)`, memoized with the network."""
    key = ("path-price", src, dst)
    hit: Decimal | None = idx.memo.get(key)
    if hit is None:
        hit = idx.paths.price(src, dst)
        _remember(idx.memo, key, hit)
    return hit


def explain(
    snap: Snapshot,
    job: JobRequest,
    opts: Options,
    i: int,
    score: np.ndarray,
    index: ExplainIndex | None = None,
) -> tuple[str, ...]:
    """Why option `i` (by `score`, lower is better): its cost, the next best, why not elsewhere.

    `index`, when given, is `kernel.explain_index` of `i` (the kernel works it
    out with the best option).
    """
    idx = snap.index
    centers = snap.network.centers
    o = opts.at(i)
    p = o.pool
    ci = int(idx.pool_center[p])
    cid = centers[ci].id
    out = [
        f"{cid}: {job.count}× {idx.pool_chip[p]}, ¥{o.cost:.2f}"
        f" (energy ¥{o.energy:.2f}, service ¥{o.service:.2f},"
        f" transfer ¥{o.transfer:.2f}), finishes in {_fmt_h(o.finish_h)}"
    ]
    if opts.quoted:
        out.extend(filter(None, [region_quotes.reason(opts, i)]))
    if index is None:
        j, k, late_c = kernel.explain_index(
            idx.pool_center,
            opts.pool,
            opts.slot,
            opts.start_h,
            opts.feasible,
            score,
            i,
            len(centers),
        )
        late = late_c.tolist()
    else:
        j, k, late = index
    if j >= 0:
        oj = opts.at(j)
        out.append(
            f"next best: {centers[idx.pool_center[oj.pool]].id} at ¥{oj.cost:.2f},"
            f" finishing in {_fmt_h(oj.finish_h)}"
        )
    if late:
        names = ", ".join(centers[c].id for c in late)
        out.append(f"not {names}: would miss the deadline or the budget")
    if o.slot > 0 and o.start_h > 0:
        start = (snap.now + timedelta(hours=o.start_h)).astimezone(CST)
        if k >= 0:
            kept = (
                "deadline still met"
                if job.deadline is not None
                else f"no deadline: held at most {_fmt_h(snap.patience_h)} (operator's patience)"
            )
            out.append(
                f"starts at {start:%H:%M} in a cheaper tariff hour:"
                f" saves ¥{opts.at(k).cost - o.cost:.2f} against starting now, {kept}"
            )
        else:
            out.append(f"waits for free chips until {start:%H:%M}")
    if o.transfer_s > 0:
        gb = sum(d.size_gb for d in job.inputs) * snap.network.data_scale
        srcs = sorted({s for s in _sources(opts, ci).values() if s != cid})
        out.append(
            f"stages {gb:.1f} GB of inputs from {', '.join(srcs)} in {_fmt_h(o.transfer_s / 3600)}"
        )
    elif job.inputs:
        out.append(f"inputs already at {cid}")
    return tuple(out)


def place(
    snapshot: Snapshot, free: np.ndarray, job: JobRequest, prof: Profile, explain_it: bool = True
) -> Decision:
    """Place one job on its best option, taking its chips from `free` (only once it succeeded)."""
    opts, score, i, index = _evaluate(snapshot, free, job, prof, None, True, explain_it)
    if i < 0:
        return Decision(job.id, None, tuple(opts.why_not) or ("no feasible option",))
    reasons = explain(snapshot, job, opts, i, score, index) if explain_it else ()
    placement = to_placement(snapshot, job, opts, i, reasons)
    o = opts.at(i)
    free[o.pool, o.slot : min(o.slot + o.n_slots, HORIZON_SLOTS)] -= job.count
    return Decision(job.id, placement, reasons)


def place_explaining_later(
    snapshot: Snapshot, free: np.ndarray, job: JobRequest, prof: Profile
) -> tuple[Decision, Callable[[], tuple[str, ...]]]:
    """`place`, leaving a placement's reasons to be written only if they are wanted.

    The decision is `place`'s, except that a placed one carries no reasons (nor
    does its placement); the function returned writes the reasons `place` would
    have given (for an unplaced decision, its own). A caller that reads the
    reasons of some placements only (the simulator: those of jobs it leaves
    waiting) saves writing the others.
    """
    opts, score, i, index = _evaluate(snapshot, free, job, prof, None, True, True)
    if i < 0:
        d = Decision(job.id, None, tuple(opts.why_not) or ("no feasible option",))
        return d, lambda: d.reasons
    placement = to_placement(snapshot, job, opts, i)
    o = opts.at(i)
    free[o.pool, o.slot : min(o.slot + o.n_slots, HORIZON_SLOTS)] -= job.count
    return Decision(job.id, placement, ()), lambda: explain(snapshot, job, opts, i, score, index)
