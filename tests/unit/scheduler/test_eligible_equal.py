"""A job's eligible pools and input transfers, memoized and compiled, against the plain rule.

`framework._eligible` memoizes the eligible pools by what the filters declare
(`depends_on`) and the centers to avoid — so jobs whose inputs sit at the same
places share one entry whatever their dataset ids — and adds the inputs'
seconds and ¥ in the compiled kernel (`kernel.input_paths`). The code it
replaced (framework.py at eef9c5f: every filter run afresh, then `_inputs` in
numpy) is kept below as the oracle: on random networks, online sets and jobs
— many with datasets at the same replicas under other ids and sizes, empty
datasets, replicas the network does not know — every array must be equal to
the last bit, the reasons word for word, and the replica each center fetches
from the same, however the jobs share memo entries.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog.generate import generated_network
from computenet.metering.cost import transfer_cny_vec
from computenet.model import Dataset, Network
from computenet.model.center import CST
from computenet.scheduler import build_snapshot
from computenet.scheduler.framework import InputSources, _chain, _eligible, _replica_paths
from computenet.scheduler.plugins import FILTERS
from computenet.scheduler.plugins.filters import FilterContext
from computenet.scheduler.snapshot import JobRequest, Snapshot
from computenet.scheduler.tenancy import Quota, TenantUse

# ----------------------------------------------------------------- the oracle


def _ref_inputs(snap: Snapshot, job: JobRequest) -> tuple[np.ndarray, np.ndarray, InputSources]:
    """framework._inputs at eef9c5f, unmemoized: per center, seconds and ¥ of every input."""
    idx = snap.index
    n_centers = len(idx.center_node)
    t = np.zeros(n_centers)
    price = np.zeros(n_centers)
    sources = InputSources()
    scale = snap.network.data_scale
    cols = np.arange(n_centers)
    for d in job.inputs:
        paths = _replica_paths(idx, d.replicas)
        if paths is None:
            continue
        reps, lat, bw, unlimited, local, per_gb = paths
        gb = d.size_gb * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            secs = np.where(unlimited, 0.0, lat + gb * 8.0 / bw)
        secs = np.where(local, 0.0, secs) if gb > 0 else np.zeros_like(secs)
        best = np.argmin(secs, axis=0)
        t += secs[best, cols]
        price += transfer_cny_vec(gb, per_gb[best, cols])
        sources.add(d.id, reps, best)
    return t, price, sources


def _ref_eligible(
    snap: Snapshot, job: JobRequest
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], InputSources | None]:
    """framework._eligible at eef9c5f without its memo: (pools, transfer s, ¥, PFLOPS, why, src)."""
    idx = snap.index
    mask = np.ones(idx.n_pools, dtype=bool)
    for plugin in FILTERS.values():
        mask = mask & plugin(FilterContext(snap, job, np.ones(idx.n_pools, dtype=bool))).mask
    why: list[str] = []
    if not mask.any():
        mask, why = _chain(snap, job, tuple(FILTERS))
    if job.avoid_centers and mask.any():
        avoid = np.array([snap.network.centers[c].id in job.avoid_centers for c in idx.pool_center])
        if (mask & ~avoid).any():
            mask = mask & ~avoid
    pools = np.flatnonzero(mask)
    if pools.size == 0:
        z = np.zeros(0)
        return pools, z, z, z, tuple(why), None
    t_center, price_center, sources = _ref_inputs(snap, job)
    pc = idx.pool_center[pools]
    return (
        pools,
        t_center[pc],
        price_center[pc],
        idx.pflops[job.workload_class][pools],
        tuple(why),
        sources,
    )


# ----------------------------------------------------------------- instances


@functools.lru_cache(maxsize=16)
def _network(centers: int, seed: int, data_scale: float = 1.0) -> Network:
    net = generated_network(centers, seed=seed)
    return net if data_scale == 1.0 else net.model_copy(update={"data_scale": data_scale})


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _jobs(rng: np.random.Generator, net: Network, n: int) -> list[JobRequest]:
    ids = [c.id for c in net.centers]
    # A few places data sits at (some unknown to the network, one nowhere), shared by
    # many datasets of their own ids and sizes: the simulator's workloads look so.
    places = [
        tuple(rng.choice(ids, size=int(rng.integers(1, min(3, len(ids)) + 1)), replace=False))
        for _ in range(4)
    ]
    places += [("nowhere-known",), ()]
    classes = list(net.throughput.efficiency)
    chips = list(net.chips)
    jobs = []
    for k in range(n):
        inputs = tuple(
            Dataset(
                id=f"d{k}-{m}",
                size_bytes=int(rng.choice([0, 10**6, int(rng.uniform(0.001, 3000) * 1e9)])),
                sha256="0" * 64,
                replicas=tuple(str(r) for r in places[int(rng.integers(0, len(places)))]),
                residency="region:west" if rng.random() < 0.1 else None,
            )
            for m in range(int(rng.choice([0, 1, 1, 2, 3])))
        )
        jobs.append(
            JobRequest(
                id=f"j{k}",
                workload_class=str(rng.choice(classes)),
                count=int(rng.choice([1, 2, 4, 8, 64, 512])),
                cu_hours=float(10 ** rng.uniform(-1, 3)),
                types=tuple(rng.choice(chips, size=2, replace=False).tolist())
                if rng.random() < 0.2
                else (),
                inputs=inputs,
                avoid_centers=(str(rng.choice(ids)),) if rng.random() < 0.15 else (),
                pin_center=str(rng.choice(ids)) if rng.random() < 0.05 else None,
            )
        )
    return jobs


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), centers=st.integers(1, 14))
def test_eligible_pools_equal_the_unmemoized_numpy_rule(seed: int, centers: int) -> None:
    rng = np.random.default_rng(seed)
    net = _network(centers, int(rng.integers(0, 3)), float(rng.choice([1.0, 0.37, 250.0])))
    now = datetime(2026, 12, 1, tzinfo=CST) + timedelta(minutes=int(rng.integers(0, 10_000)))
    jobs = _jobs(rng, net, 40)
    # Two cycles with other centers online: the memo lives across them.
    for _ in range(2):
        online = {c.id: bool(rng.random() > 0.15) for c in net.centers}
        snap = build_snapshot(net, now, online=online)
        for job in [*jobs, *jobs[::3]]:  # again: entries already memoized
            got = _eligible(snap, job)
            pools, t, cny, pflops, why, sources = _ref_eligible(snap, job)
            assert _same_bits(got.pools, pools), job
            assert _same_bits(got.transfer_s, t), job
            assert _same_bits(got.transfer_cny, cny), job
            assert _same_bits(got.pflops, pflops), job
            assert got.why == why
            if sources is None:
                assert got.sources is None
            else:
                assert got.sources is not None
                for c in range(len(net.centers)):
                    assert got.sources.get(c) == sources.get(c)


def test_datasets_at_the_same_places_share_the_eligible_pools() -> None:
    """Inputs at the same replicas under other ids: one memo entry of pools, own transfers."""
    net = _network(6, 0)
    snap = build_snapshot(net, datetime(2026, 12, 1, tzinfo=CST))
    where = (net.centers[2].id,)

    def job(k: int, gb: float) -> JobRequest:
        ds = Dataset(id=f"x{k}", size_bytes=int(gb * 1e9), sha256="0" * 64, replicas=where)
        return JobRequest(
            id=f"j{k}", workload_class="llm-train", count=1, cu_hours=1.0, inputs=(ds,)
        )

    a, b = _eligible(snap, job(1, 10.0)), _eligible(snap, job(2, 500.0))
    assert a.pools is b.pools  # the shared entry
    assert (b.transfer_s >= a.transfer_s).all() and (b.transfer_s > a.transfer_s).any()
    assert a.sources is not None and a.sources.get(0) == {"x1": where[0]}
    assert b.sources is not None and b.sources.get(0) == {"x2": where[0]}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), centers=st.integers(1, 8))
def test_a_filter_that_keeps_every_pool_is_skipped_only_where_it_says_so(
    seed: int, centers: int
) -> None:
    """The tenant-quota filter says it keeps every pool when no tenant has a quota
    (`FilterPlugin.keeps_all`); with quotas it is asked, job by job, as before."""
    rng = np.random.default_rng(seed)
    net = _network(centers, int(rng.integers(0, 3)))
    chips = sorted({p.chip for c in net.centers for p in c.pools})
    jobs = [replace(j, tenant=str(rng.choice(["a", "b", "c"]))) for j in _jobs(rng, net, 30)]
    quotas = (
        Quota("chips", Decimal(int(rng.integers(0, 64))), chip=str(rng.choice(chips))),
        Quota("cu_hours", Decimal(int(rng.integers(1, 500))), period="day"),
    )
    snap = build_snapshot(net, datetime(2026, 12, 1, tzinfo=CST))
    for tenants in ({}, {"b": TenantUse()}, {"a": TenantUse(quotas=quotas[: rng.integers(1, 3)])}):
        s = replace(snap, tenants=tenants)
        assert FILTERS["tenant-quota"].keeps_all is not None
        assert FILTERS["tenant-quota"].keeps_all(s) == ("a" not in tenants)
        for job in jobs:
            got = _eligible(s, job)
            pools, t, cny, pflops, why, _ = _ref_eligible(s, job)
            assert _same_bits(got.pools, pools) and got.why == why, job
            assert _same_bits(got.transfer_s, t) and _same_bits(got.transfer_cny, cny)
            assert _same_bits(got.pflops, pflops)
