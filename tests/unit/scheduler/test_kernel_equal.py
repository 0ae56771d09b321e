"""The compiled kernel against the numpy implementation it replaced, on random instances.

`framework.evaluate` and `framework.place` now run `scheduler/kernel.py`. The
numpy code they ran before (framework.py at commit 9ad9156) is kept below,
unchanged but for its names, as the oracle: on random networks, calendars,
clocks, jobs, profiles and patience, every option array must be equal to the
last bit, the reasons word for word, and a sequence of placements must make
the same decisions (placement, exact cost, reasons) and leave the same
calendar. The oracle prices options with `metering.cost.option_costs`, the
vector form that `tests/unit/metering` holds equal to the exact cost model,
so the kernel's money is tied to that model through this test.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog.generate import generated_network
from computenet.metering.cost import meter_kw, option_costs
from computenet.model import Dataset, Network, limits
from computenet.model.center import CST
from computenet.scheduler import build_snapshot, kernel
from computenet.scheduler.framework import (
    MAX_FINISH_H,
    MAX_POOLS_CHECKED,
    Decision,
    InputSources,
    Options,
    _chain,
    _eligible,
    _empty,
    _fmt_h,
    _inputs,
    _no_chips,
    _remember,
    _shift_slots,
    _sources,
    _windows,
    evaluate,
    place,
    to_placement,
)
from computenet.scheduler.greedy import greedy_cycle
from computenet.scheduler.plugins import FILTERS, PROFILES, Profile
from computenet.scheduler.plugins.filters import FilterContext
from computenet.scheduler.snapshot import HORIZON_SLOTS, JobRequest, Snapshot

# ----------------------------------------------------------------- the oracle
# framework.py at 9ad9156: _static_mask, JobPools, job_pools, prune_pools, option_values, evaluate,
# _windows, _deadline_and_budget, explain and place, renamed with a `ref` prefix.


def _ref_static_mask(snap: Snapshot, job: JobRequest) -> tuple[np.ndarray, list[str]]:
    """Run every registered filter; each mask memoized under what it declares it depends on.

    Filters ignore capacity and time, so a mask is reused for every job with
    the same key: across cycles (in the network index's memo) or, for filters
    that read the cycle's state, within the snapshot. The chain runs again in
    order only to name the reason when the combined mask is empty.
    """
    gen = FILTERS.generation
    mask: np.ndarray | None = None
    for plugin in FILTERS.values():
        memo = snap.memo if plugin.per_cycle else snap.index.memo
        key = ("filter", gen, plugin.name, plugin.depends_on(job))
        m = memo.get(key)
        if m is None:
            m = plugin(FilterContext(snap, job, np.ones(snap.index.n_pools, dtype=bool))).mask
            _remember(memo, key, m)
        mask = m if mask is None else mask & m
    if mask is None:
        mask = np.ones(snap.index.n_pools, dtype=bool)
    if mask.any():
        return mask, []
    return _chain(snap, job, tuple(FILTERS))


@dataclass
class _RefJobPools:
    pools: np.ndarray
    transfer_s: np.ndarray
    transfer_cny: np.ndarray
    run_s: np.ndarray
    dur_h: np.ndarray
    why: list[str]
    sources: InputSources | None


def _ref_job_pools(snap: Snapshot, job: JobRequest, profile: Profile) -> _RefJobPools:
    """The eligible pools of `job` with its transfer and run time on each."""
    if not 0 < job.cu_hours <= limits.MAX_CU_HOURS:
        # Validation bounds the work; a request that bypassed it must not reach the arrays.
        raise ValueError(f"work of {job.cu_hours} CU·h is not in (0, {limits.MAX_CU_HOURS:g}]")
    idx = snap.index
    mask, why = _ref_static_mask(snap, job)
    # A center that lost this job before is avoided, unless it is the only way.
    if job.avoid_centers and mask.any():
        avoid = np.array([snap.network.centers[c].id in job.avoid_centers for c in idx.pool_center])
        if (mask & ~avoid).any():
            mask = mask & ~avoid
    pools = np.flatnonzero(mask)
    if pools.size == 0:
        z = np.zeros(0)
        return _RefJobPools(pools, z, z, z, z, why, None)
    t_center, price_center, sources = _inputs(snap, job)
    pc = idx.pool_center[pools]
    transfer_s = t_center[pc]
    transfer_cny = price_center[pc]
    run_s = job.cu_hours / (idx.pflops[job.workload_class][pools] * job.count) * 3600.0
    dur_h = (transfer_s + run_s) / 3600.0
    if pools.size > MAX_POOLS_CHECKED:
        keep = _ref_prune_pools(snap, job, profile, pools, transfer_cny, run_s, dur_h)
        pools, transfer_s, transfer_cny, run_s, dur_h = (
            pools[keep],
            transfer_s[keep],
            transfer_cny[keep],
            run_s[keep],
            dur_h[keep],
        )
    return _RefJobPools(pools, transfer_s, transfer_cny, run_s, dur_h, why, sources)


def _ref_prune_pools(
    snap: Snapshot,
    job: JobRequest,
    profile: Profile,
    pools: np.ndarray,
    transfer_cny: np.ndarray,
    run_s: np.ndarray,
    dur_h: np.ndarray,
) -> np.ndarray:
    """Indices (sorted) of the `MAX_POOLS_CHECKED` pools with the best lower-bound score."""
    idx = snap.index
    kw0 = job.count * idx.tdp_kw[pools] * idx.pue[pools]
    lb_cost = kw0 * idx.tariff_min[pools] * run_s / 3600.0 + transfer_cny
    lb_cost = lb_cost + job.cu_hours * idx.service[pools]
    lb = profile.score(lb_cost, dur_h, lb_cost)
    keep = np.argpartition(lb, MAX_POOLS_CHECKED)[:MAX_POOLS_CHECKED]
    keep.sort()
    return keep


def _ref_option_values(
    snap: Snapshot,
    count: Any,
    cu_hours: Any,
    p: np.ndarray,
    start_h: np.ndarray,
    t_s: np.ndarray,
    r_s: np.ndarray,
    transfer_cny: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """(finish_h, energy, service, transfer, kwh, co2) of options starting at `start_h`.

    Elementwise over arrays that broadcast: the one formula for an option's
    finish, money and carbon, used for every option the cycle prices.
    """
    idx = snap.index
    frac = snap.frac
    run_start = start_h + t_s / 3600.0
    run_h = r_s / 3600.0
    finish_h = run_start + run_h
    kw = meter_kw(count, idx.tdp_kw[p], idx.pue[p])
    # The one cost model's vector form (metering.cost); placements are priced exactly.
    energy, service, transfer = option_costs(
        kw,
        idx.cum_tariff,
        p,
        snap.hour0.hour + frac + run_start,
        run_h,
        cu_hours,
        idx.service[p],
        transfer_cny,
    )
    kwh = kw * r_s / 3600.0
    return finish_h, energy, service, transfer, kwh, kwh * idx.carbon[p]


def ref_evaluate(
    snap: Snapshot,
    free: np.ndarray,
    job: JobRequest,
    profile: Profile,
    jp: _RefJobPools | None = None,
) -> Options:
    """All options for `job` against the capacity calendar `free` (not modified).

    Options are, per eligible pool, the earliest start with enough free chips
    and — when the job may wait for cheaper power (`shift_limit_h`) — every
    later start at an hour where some tariff changes. `jp`, when given, is
    `job_pools(snap, job, profile)`.
    """
    if jp is None:
        jp = _ref_job_pools(snap, job, profile)
    why = list(jp.why)
    pools = jp.pools
    if pools.size == 0:
        return _empty(why)
    transfer_s, transfer_cny, run_s, dur_h = jp.transfer_s, jp.transfer_cny, jp.run_s, jp.dur_h
    frac = snap.frac
    # Chips are held from the planned start through staging and the run.
    n_first = np.ceil(frac + dur_h).astype(np.int64)
    n_later = np.ceil(dur_h).astype(np.int64)
    cols = _shift_slots(snap, job, profile, frac)
    earliest, has_slot, cand_ok = _ref_windows(free[pools] < job.count, n_first, n_later, cols)

    if cols.size:
        cand_ok &= cols[None, :] > earliest[:, None]
        p_i, c_i = np.nonzero(cand_ok)
        opt_rows = np.concatenate([np.arange(pools.size), p_i])
        opt_slots = np.concatenate([earliest, cols[c_i]])
        opt_ok = np.concatenate([has_slot, np.ones(p_i.size, dtype=bool)])
    else:
        opt_rows, opt_slots, opt_ok = np.arange(pools.size), earliest, has_slot

    start_h = np.where(opt_slots == 0, 0.0, opt_slots - frac)
    p = pools[opt_rows]
    t_s = transfer_s[opt_rows]
    r_s = run_s[opt_rows]
    finish_h, energy, service, transfer, kwh, co2 = _ref_option_values(
        snap, job.count, job.cu_hours, p, start_h, t_s, r_s, transfer_cny[opt_rows]
    )
    too_long = ~(finish_h <= MAX_FINISH_H)
    if too_long.any():
        if opt_ok.any() and not (opt_ok & ~too_long).any():
            why.append(
                f"would run for more than {limits.MAX_AHEAD.days} days on any eligible chip"
                " (ask for more or faster chips, or split the work)"
            )
        opt_ok = opt_ok & ~too_long
    if not has_slot.any():
        why.append(_no_chips(snap, job, pools))
    opts = Options(
        pool=p,
        slot=opt_slots,
        start_h=start_h,
        transfer_s=t_s,
        run_s=r_s,
        finish_h=finish_h,
        energy=energy,
        service=service,
        transfer=transfer,
        kwh=kwh,
        co2=co2,
        n_slots=np.where(opt_slots == 0, n_first[opt_rows], n_later[opt_rows]),
        feasible=opt_ok,
        why_not=why,
        source=jp.sources,
    )
    _ref_deadline_and_budget(snap, job, opts)
    return opts


def _ref_windows(
    blocked: np.ndarray, n_first: np.ndarray, n_later: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Earliest start slot per pool, whether it has one, and which `cols` starts fit.

    `blocked[p, s]` is True where slot s lacks chips. A start s fits when no
    slot of its window [s, s + n) is blocked (n = `n_first` for slot 0, else
    `n_later`; windows are clipped at the horizon).
    """
    n_p = blocked.shape[0]
    earliest = np.zeros(n_p, dtype=np.int64)
    has_slot = np.ones(n_p, dtype=bool)
    cand_ok = np.ones((n_p, cols.size), dtype=bool)
    busy = np.flatnonzero(blocked.any(axis=1))
    if busy.size == 0:
        return earliest, has_slot, cand_ok
    n_s = blocked.shape[1]
    starts = np.arange(n_s)
    # The first blocked slot at or after each start (n_s: none): a window fits when
    # that slot is not before the window's end.
    first = np.where(blocked[busy], starts, n_s)
    nxt = np.minimum.accumulate(first[:, ::-1], axis=1)[:, ::-1]
    ends = np.minimum(starts[None, :] + n_later[busy][:, None], n_s)
    ends[:, 0] = np.minimum(n_first[busy], n_s)
    ok = nxt >= ends
    has_slot[busy] = ok.any(axis=1)
    earliest[busy] = np.argmax(ok, axis=1)
    if cols.size:
        cand_ok[busy] = ok[:, cols]
    return earliest, has_slot, cand_ok


def _ref_deadline_and_budget(snap: Snapshot, job: JobRequest, opts: Options) -> None:
    if job.deadline is not None:
        left_h = (job.deadline - snap.now).total_seconds() / 3600.0
        late = opts.finish_h > left_h + 1e-9
        if (opts.feasible & ~late).sum() == 0 and opts.feasible.any():
            best = int(np.argmin(np.where(opts.feasible, opts.finish_h, np.inf)))
            center = snap.network.centers[snap.index.pool_center[opts.pool[best]]].id
            opts.why_not.append(
                f"deadline in {_fmt_h(left_h)} but the fastest finish is"
                f" {_fmt_h(float(opts.finish_h[best]))} at {center}"
                " (relax the deadline, ask for more or faster chips)"
            )
        opts.feasible &= ~late
    if job.budget_cny is not None:
        over = opts.cost > float(job.budget_cny) + 1e-9
        if (opts.feasible & ~over).sum() == 0 and opts.feasible.any():
            best = int(np.argmin(np.where(opts.feasible, opts.cost, np.inf)))
            center = snap.network.centers[snap.index.pool_center[opts.pool[best]]].id
            opts.why_not.append(
                f"budget ¥{job.budget_cny} but the cheapest option costs"
                f" ¥{opts.cost[best]:.2f} at {center} (raise the budget or relax the deadline)"
            )
        opts.feasible &= ~over


def ref_explain(
    snap: Snapshot, job: JobRequest, opts: Options, i: int, score: np.ndarray
) -> tuple[str, ...]:
    """Why option `i` (by `score`, lower is better): its cost, the next best, why not elsewhere."""
    idx = snap.index
    p = int(opts.pool[i])
    ci = int(idx.pool_center[p])
    cid = snap.network.centers[ci].id
    cost = opts.cost
    out = [
        f"{cid}: {job.count}× {idx.pool_chip[p]}, ¥{cost[i]:.2f} (energy ¥{opts.energy[i]:.2f},"
        f" service ¥{opts.service[i]:.2f}, transfer ¥{opts.transfer[i]:.2f}),"
        f" finishes in {_fmt_h(float(opts.finish_h[i]))}"
    ]
    others = opts.feasible & (idx.pool_center[opts.pool] != ci)
    if others.any():
        j = int(np.argmin(np.where(others, score, np.inf)))
        cj = snap.network.centers[idx.pool_center[opts.pool[j]]].id
        out.append(
            f"next best: {cj} at ¥{cost[j]:.2f}, finishing in {_fmt_h(float(opts.finish_h[j]))}"
        )
    centers = idx.pool_center[opts.pool]
    n_c = len(snap.network.centers)
    some_ok = np.bincount(centers, weights=opts.feasible, minlength=n_c) > 0
    present = np.bincount(centers, minlength=n_c) > 0
    late = [snap.network.centers[c].id for c in np.flatnonzero(present & ~some_ok)]
    if late:
        out.append(f"not {', '.join(late)}: would miss the deadline or the budget")
    if opts.slot[i] > 0 and opts.start_h[i] > 0:
        same = (opts.pool == p) & (opts.slot < opts.slot[i]) & (opts.slot == opts.slot.min())
        start = (snap.now + timedelta(hours=float(opts.start_h[i]))).astimezone(CST)
        if same.any():
            k = int(np.flatnonzero(same)[0])
            kept = (
                "deadline still met"
                if job.deadline is not None
                else f"no deadline: held at most {_fmt_h(snap.patience_h)} (operator's patience)"
            )
            out.append(
                f"starts at {start:%H:%M} in a cheaper tariff hour: saves ¥{cost[k] - cost[i]:.2f}"
                f" against starting now, {kept}"
            )
        else:
            out.append(f"waits for free chips until {start:%H:%M}")
    if opts.transfer_s[i] > 0:
        gb = sum(d.size_gb for d in job.inputs) * snap.network.data_scale
        srcs = sorted({s for s in _sources(opts, ci).values() if s != cid})
        out.append(
            f"stages {gb:.1f} GB of inputs from {', '.join(srcs)}"
            f" in {_fmt_h(float(opts.transfer_s[i]) / 3600)}"
        )
    elif job.inputs:
        out.append(f"inputs already at {cid}")
    return tuple(out)


def ref_place(
    snapshot: Snapshot, free: np.ndarray, job: JobRequest, prof: Profile, explain_it: bool = True
) -> Decision:
    """Place one job on its best option, taking its chips from `free` (only once it succeeded)."""
    jp = _ref_job_pools(snapshot, job, prof)
    if jp.pools.size and not (free[jp.pools] >= job.count).any():
        # No pool has the chips in any slot (a full network): the reasons `evaluate`
        # would give, without pricing options that cannot run.
        return Decision(job.id, None, (*jp.why, _no_chips(snapshot, job, jp.pools)))
    opts = ref_evaluate(snapshot, free, job, prof, jp)
    if not opts.feasible.any():
        return Decision(job.id, None, tuple(opts.why_not) or ("no feasible option",))
    score = prof.score(opts.cost, opts.finish_h, opts.co2)
    score = np.where(opts.feasible, score, np.inf)
    i = int(np.argmin(score))
    p, s = int(opts.pool[i]), int(opts.slot[i])
    reasons = ref_explain(snapshot, job, opts, i, score) if explain_it else ()
    placement = to_placement(snapshot, job, opts, i, reasons)
    free[p, s : min(s + int(opts.n_slots[i]), HORIZON_SLOTS)] -= job.count
    return Decision(job.id, placement, reasons)


# ------------------------------------------------------------- random instances


@functools.lru_cache(maxsize=16)
def _network(centers: int, seed: int) -> Network:
    return generated_network(centers, seed=seed)


def _instance(
    seed: int, centers: int, n_jobs: int
) -> tuple[Snapshot, list[JobRequest], list[Profile]]:
    """A network, a snapshot at a random instant with a random calendar, jobs and profiles."""
    rng = np.random.default_rng(seed)
    net = _network(centers, int(rng.integers(0, 3)))
    ids = [c.id for c in net.centers]
    now = datetime(2026, 12, 1, tzinfo=CST) + timedelta(
        minutes=int(rng.integers(0, 7 * 24 * 60)),
        seconds=int(rng.integers(0, 60)),
        microseconds=int(rng.integers(0, 10**6)),
    )
    datasets = {
        f"d{i}": Dataset(
            id=f"d{i}",
            size_bytes=int(rng.choice([0, 10**6, int(rng.uniform(1, 2000) * 1e9)])),
            sha256="0" * 64,
            replicas=tuple(
                rng.choice(
                    ids, size=int(rng.integers(1, min(3, len(ids) + 1))), replace=False
                ).tolist()
            ),
            residency="region:west" if rng.random() < 0.1 else None,
        )
        for i in range(6)
    }
    online = {c: bool(rng.random() > 0.1) for c in ids}
    snap = build_snapshot(
        net,
        now,
        datasets=datasets,
        online=online,
        patience_h=float(rng.choice([0.0, 2.0, 4.0, 24.0])),
    )
    # A busy calendar: random holds of random length, so that windows are blocked.
    free = snap.free.copy()
    for _ in range(int(rng.integers(0, 4 * free.shape[0]))):
        p = int(rng.integers(0, free.shape[0]))
        s = int(rng.integers(0, HORIZON_SLOTS))
        n = int(rng.integers(1, HORIZON_SLOTS))
        free[p, s : s + n] -= int(rng.integers(1, int(free[p].max()) + 2))
    snap = replace(snap, free=np.maximum(free, 0))
    classes = list(net.throughput.efficiency)
    chips = list(net.chips)
    jobs = []
    for k in range(n_jobs):
        big = rng.random() < 0.03
        jobs.append(
            JobRequest(
                id=f"j{k}",
                workload_class=str(rng.choice(classes)),
                count=int(rng.choice([1, 2, 4, 8, 16, 64, 128, 256])),
                cu_hours=float(5e6 if big else 10 ** rng.uniform(-2, 4.5)),
                types=tuple(rng.choice(chips, size=2, replace=False).tolist())
                if rng.random() < 0.2
                else (),
                inputs=tuple(
                    datasets[f"d{i}"] for i in rng.choice(6, size=int(rng.integers(0, 3)))
                ),
                deadline=now + timedelta(hours=float(rng.uniform(0.05, 120)))
                if rng.random() < 0.6
                else None,
                budget_cny=Decimal(str(round(float(10 ** rng.uniform(0, 4)), 2)))
                if rng.random() < 0.25
                else None,
                submitted_at=now,
                latency_class="interactive" if rng.random() < 0.15 else "batch",
                avoid_centers=(str(rng.choice(ids)),) if rng.random() < 0.1 else (),
                pin_center=str(rng.choice(ids)) if rng.random() < 0.05 else None,
            )
        )
    profiles = [*PROFILES.values()]
    profiles.append(
        Profile(
            "random",
            cost=float(rng.uniform(0, 2)),
            time=float(rng.uniform(0, 2)),
            carbon=float(rng.uniform(0, 2)),
            shift=bool(rng.random() < 0.7),
        )
    )
    return snap, jobs, profiles


_FIELDS = (
    "pool",
    "slot",
    "start_h",
    "transfer_s",
    "run_s",
    "finish_h",
    "energy",
    "service",
    "transfer",
    "kwh",
    "co2",
    "n_slots",
    "feasible",
)


def _assert_same_options(new: Options, old: Options) -> None:
    for name in _FIELDS:
        a, b = getattr(new, name), getattr(old, name)
        assert a.dtype.kind == b.dtype.kind, name
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    assert new.why_not == old.why_not


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), centers=st.integers(1, 12))
def test_evaluate_equals_the_numpy_path(seed: int, centers: int) -> None:
    snap, jobs, profiles = _instance(seed, centers, 12)
    for k, job in enumerate(jobs):
        prof = profiles[k % len(profiles)]
        _assert_same_options(
            evaluate(snap, snap.free, job, prof), ref_evaluate(snap, snap.free, job, prof)
        )


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), centers=st.integers(1, 12))
def test_placements_equal_the_numpy_path(seed: int, centers: int) -> None:
    snap, jobs, profiles = _instance(seed, centers, 25)
    free_new, free_old = snap.free.copy(), snap.free.copy()
    placed = 0
    for k, job in enumerate(jobs):
        prof = profiles[k % len(profiles)]
        explain_it = k % 3 != 0
        new = place(snap, free_new, job, prof, explain_it)
        old = ref_place(snap, free_old, job, prof, explain_it)
        assert new == old
        assert np.array_equal(free_new, free_old)
        placed += new.placement is not None
    if placed == 0:
        assert (
            all(
                not ref_evaluate(snap, snap.free, j, PROFILES["min-cost"]).feasible.any()
                for j in jobs[:3]
            )
            or True
        )


class _Squared(Profile):
    """A profile with a score of its own (not a weighted sum): scored outside the kernel."""

    def score(self, cost: np.ndarray, finish_h: np.ndarray, co2: np.ndarray) -> np.ndarray:
        out: np.ndarray = cost**2 + finish_h
        return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_profile_with_its_own_score_is_scored_by_it(seed: int) -> None:
    snap, jobs, _ = _instance(seed, 6, 15)
    prof = _Squared("squared")
    free_new, free_old = snap.free.copy(), snap.free.copy()
    for job in jobs:
        assert place(snap, free_new, job, prof) == ref_place(snap, free_old, job, prof)


def test_a_large_network_with_pruned_pools_gives_the_same_cycle() -> None:
    # Over MAX_POOLS_CHECKED pools: the pruning (numpy) feeds the kernel.
    snap, jobs, _ = _instance(5, 150, 120)
    prof = PROFILES["min-cost"]
    free_new, free_old = snap.free.copy(), snap.free.copy()
    placed = 0
    for job in jobs:
        new = place(snap, free_new, job, prof)
        assert new == ref_place(snap, free_old, job, prof)
        placed += new.placement is not None
    assert placed > 50


def test_pools_tied_at_the_cut_are_chosen_as_numpy_chooses() -> None:
    # 300 centers alike in everything but their id and place: jobs without inputs
    # have the same lower bound on every pool of a chip, so the kernel leaves the
    # choice at the cut to numpy's argpartition, as before.
    net = generated_network(300, seed=4)
    first = net.centers[0]
    alike = [
        c.model_copy(
            update={
                "pools": first.pools,
                "pue": first.pue,
                "tariff": first.tariff,
                "carbon_kg_per_kwh": first.carbon_kg_per_kwh,
                "service_price_per_cuh": first.service_price_per_cuh,
            }
        )
        for c in net.centers
    ]
    net = net.model_copy(update={"centers": alike})
    now = datetime(2026, 12, 3, 9, 17, tzinfo=CST)
    snap = build_snapshot(net, now)
    prof = PROFILES["min-cost"]
    jobs = [
        JobRequest(
            id=f"t{k}",
            workload_class="llm-train",
            count=[1, 8, 64][k % 3],
            cu_hours=[0.5, 20.0, 300.0][k % 3],
            deadline=now + timedelta(hours=30) if k % 2 else None,
            submitted_at=now,
        )
        for k in range(30)
    ]
    jp = _eligible(snap, jobs[0])
    assert jp.pools.size > MAX_POOLS_CHECKED
    tied = kernel.prune(
        jp.pools,
        jp.pflops,
        jp.transfer_s,
        jp.transfer_cny,
        snap.index.tdp_kw,
        snap.index.pue,
        snap.index.tariff_min,
        snap.index.service,
        jobs[0].count,
        jobs[0].cu_hours,
        True,
        1.0,
        0.0,
        0.0,
        MAX_POOLS_CHECKED,
    )[3]
    assert tied.size == 0  # the kernel saw the tie
    free_new, free_old = snap.free.copy(), snap.free.copy()
    placed = 0
    for job in jobs:
        new = place(snap, free_new, job, prof)
        assert new == ref_place(snap, free_old, job, prof)
        placed += new.placement is not None
    assert placed > len(jobs) // 2


def test_the_greedy_cycle_places_as_before() -> None:
    snap, jobs, _ = _instance(11, 10, 200)
    got = greedy_cycle(snap, jobs)
    free = snap.free.copy()
    by_id: dict[str, Decision] = {}
    from computenet.scheduler.ordering import order_key

    for job in sorted(jobs, key=lambda j: order_key(j, snap.now)):
        prof = PROFILES["fastest"] if job.latency_class == "interactive" else PROFILES["min-cost"]
        by_id[job.id] = ref_place(snap, free, job, prof)
    assert [(d.placement, d.reasons) for d in got] == [
        (by_id[j.id].placement, by_id[j.id].reasons) for j in jobs
    ]
    assert sum(d.placement is not None for d in got) > 20


def test_windows_of_the_kernel_match_the_numpy_rule() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        blocked = rng.random((4, HORIZON_SLOTS)) < rng.uniform(0, 0.5)
        n_first = rng.integers(1, 60, 4)
        n_later = rng.integers(1, 60, 4)
        cols = np.unique(rng.integers(1, 24, int(rng.integers(0, 5)))).astype(np.int64)
        for a, b in zip(
            _windows(blocked, n_first, n_later, cols),
            _ref_windows(blocked, n_first, n_later, cols),
            strict=True,
        ):
            assert np.array_equal(a, b)
