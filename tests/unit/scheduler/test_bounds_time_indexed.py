"""The time-indexed (non-preemptive) LP bound: below every schedule, above the preemptive bound.

Tiny instances (2–4 jobs, 1–2 pools of 1–4 chips, a few hours) are solved by
brute force over non-preemptive schedules — each job one pool and one start
from a grid, capacity checked at every instant, each run priced exactly by
`metering.cost.price` — and the bound must never exceed the cheapest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from computenet.catalog import network_from_dict
from computenet.metering.cost import TransferLot, Usage, price
from computenet.model import Dataset, Network
from computenet.model.center import CST
from computenet.scheduler import JobRequest
from computenet.scheduler.bounds import ROUNDING_CNY_PER_JOB, lower_bound
from computenet.scheduler.index import network_index

CHIPS = ("A100", "H800")


def _network(chips: list[int], flats: list[float]) -> Network:
    """One center per pool, time-of-use tariffs, a user site holding inputs."""
    return network_from_dict(
        {
            "name": "tiny-ti",
            "auto_links": {"bandwidth_gbps": 10.0, "price_per_gb": 0.05},
            "centers": [
                {
                    "id": f"c{k}",
                    "lat": 30.0 + k,
                    "lon": 110.0 + k,
                    "pools": [{"chip": CHIPS[k], "count": n}],
                    "pue": 1.2 + 0.1 * k,
                    "tariff": {"flat": flat},
                    "carbon_kg_per_kwh": 0.5,
                    "service_price_per_cuh": 1.5 + 0.5 * k,
                }
                for k, (n, flat) in enumerate(zip(chips, flats, strict=True))
            ],
            "sites": [{"id": "city", "lat": 31.0, "lon": 121.0}],
        }
    )


def _fits(runs: list[tuple[float, float, int]], chips: int) -> bool:
    """Whether runs (start, end, chips) on one pool never hold more than `chips` at once."""
    return all(sum(n for s, e, n in runs if s <= t < e) <= chips for t in {s for s, _e, _n in runs})


def _brute_force(net: Network, jobs: list[JobRequest], end: datetime) -> float | None:
    """The cheapest schedule over a grid of starts (None if none fits): ¥ billed exactly."""
    idx = network_index(net)
    options: list[list[tuple[float, int, float, float]]] = []  # (¥, pool, start h, end h)
    t0 = min(j.submitted_at for j in jobs if j.submitted_at is not None)
    horizon = (end - t0).total_seconds() / 3600.0
    for job in jobs:
        assert job.submitted_at is not None
        a = (job.submitted_at - t0).total_seconds() / 3600.0
        d = horizon if job.deadline is None else (job.deadline - t0).total_seconds() / 3600.0
        opts = []
        for p in range(idx.n_pools):
            if idx.pool_total[p] < job.count:
                continue
            run = job.cu_hours / (job.count * float(idx.pflops[job.workload_class][p]))
            last = min(d, horizon) - run
            grid = {a, last, *np.arange(0.0, horizon + 1e-9, 0.5).tolist()}
            grid |= {h - run for h in range(int(horizon) + 1)}
            center = net.centers[int(idx.pool_center[p])]
            chip = net.chips[idx.pool_chip[p]]
            lots = tuple(
                TransferLot.of_gb(ds.size_gb, "city", idx.paths.price("city", center.id))
                for ds in job.inputs
            )
            for s in sorted(x for x in grid if a - 1e-9 <= x <= last + 1e-9):
                start = t0 + timedelta(hours=s)
                usage = Usage(
                    job.count,
                    chip.tdp_w,
                    start,
                    start + timedelta(hours=run),
                    job.cu_hours,
                    lots,
                )
                opts.append((float(price(center, usage).total_cny), p, s, s + run))
        if not opts:
            return None
        options.append(sorted(opts))
    floor = [o[0][0] for o in options]
    best = [float("inf")]

    def search(k: int, cost: float, placed: list[tuple[int, float, float, int]]) -> None:
        if cost + sum(floor[k:]) >= best[0] - 1e-12:
            return
        if k == len(options):
            best[0] = cost
            return
        for c, p, s, e in options[k]:
            if cost + c + sum(floor[k + 1 :]) >= best[0] - 1e-12:
                break  # options are sorted by cost
            runs = [(s2, e2, n2) for p2, s2, e2, n2 in placed if p2 == p]
            if _fits([*runs, (s, e, jobs[k].count)], int(idx.pool_total[p])):
                search(k + 1, cost + c, [*placed, (p, s, e, jobs[k].count)])

    search(0, 0.0, [])
    return best[0] if best[0] < float("inf") else None


@st.composite
def instances(draw: st.DrawFn) -> tuple[Network, list[JobRequest], datetime]:
    """2–4 jobs on 1–2 pools of 1–4 chips, over a few hours starting at any local hour."""
    n_pools = draw(st.integers(1, 2))
    chips = [draw(st.integers(1, 4)) for _ in range(n_pools)]
    flats = [draw(st.sampled_from([0.3, 0.5, 0.8])) for _ in range(n_pools)]
    net = _network(chips, flats)
    idx = network_index(net)
    epoch = datetime(2026, 1, 5, draw(st.integers(0, 23)), tzinfo=CST)
    jobs = []
    for k in range(draw(st.integers(2, 4))):
        count = draw(st.integers(1, min(chips)))
        hours_on_a100 = draw(st.sampled_from([0.3, 0.75, 1.0, 1.6, 2.5]))
        cu = hours_on_a100 * count * float(idx.pflops["llm-train"][0])
        arrival = epoch + timedelta(minutes=draw(st.integers(0, 90)))
        fastest = cu / (count * float(idx.pflops["llm-train"].max()))
        slack = draw(st.sampled_from([None, 1.0, 1.5, 3.0]))
        gb = draw(st.sampled_from([0.0, 0.0, 40.0]))
        inputs = (
            (Dataset(id=f"d{k}", size_bytes=int(gb * 1e9), sha256="0" * 64, replicas=("city",)),)
            if gb
            else ()
        )
        jobs.append(
            JobRequest(
                id=f"j{k}",
                workload_class="llm-train",
                count=count,
                cu_hours=cu,
                inputs=inputs,
                submitted_at=arrival,
                deadline=None if slack is None else arrival + timedelta(hours=fastest * slack),
            )
        )
    slowest = max(j.cu_hours / (j.count * float(idx.pflops["llm-train"].min())) for j in jobs)
    end = epoch + timedelta(hours=2 + slowest * len(jobs) + draw(st.integers(0, 2)))
    return net, jobs, end


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=instances())
def test_the_bound_never_exceeds_the_cheapest_non_preemptive_schedule(
    case: tuple[Network, list[JobRequest], datetime],
) -> None:
    net, jobs, end = case
    optimum = _brute_force(net, jobs, end)
    assume(optimum is not None)
    assert optimum is not None
    b = lower_bound(net, jobs, end=end, method="time-indexed", tolerance=1e-9)
    assert b.converged and b.method == "time-indexed"
    assert b.cny <= optimum + 1e-6, (b.cny, optimum)
    # The LP value itself (before the rounding give-back) is within a fen a job of it too.
    assert b.lp_upper_cny <= optimum + ROUNDING_CNY_PER_JOB * len(jobs) + 1e-6


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=instances())
def test_the_time_indexed_lp_is_never_below_the_preemptive_bound(
    case: tuple[Network, list[JobRequest], datetime],
) -> None:
    net, jobs, end = case
    # Deadlines that cannot all hold together leave no schedule to bound (and no LP optimum).
    assume(_brute_force(net, jobs, end) is not None)
    b = lower_bound(net, jobs, end=end, method="both", tolerance=1e-9, max_iterations=200)
    ti, pre = b.parts
    assert ti.method == "time-indexed" and pre.method == "preemptive"
    assert ti.converged
    lp_value = ti.lp_upper_cny - ROUNDING_CNY_PER_JOB * len(jobs)
    assert lp_value >= pre.cny - 1e-6 * max(abs(pre.cny), 1.0), (ti, pre)
    assert b.cny == max(ti.cny, pre.cny)
    assert (b.time_indexed_cny, b.preemptive_cny) == (ti.cny, pre.cny)


def _valley_net() -> Network:
    return _network([8], [0.8])


def test_a_long_job_must_cross_dear_hours_which_only_the_new_bound_knows() -> None:
    # 20 h of work arriving at 23:00 with a deadline 20 h later: it has to run through the
    # day's peak hours, while the preemptive bound may put its chip-hours anywhere cheaper.
    net = _valley_net()
    idx = network_index(net)
    epoch = datetime(2026, 1, 5, 23, tzinfo=CST)
    cu = 20.0 * 4 * float(idx.pflops["llm-train"][0])
    job = JobRequest(
        id="long",
        workload_class="llm-train",
        count=4,
        cu_hours=cu,
        submitted_at=epoch,
        deadline=epoch + timedelta(hours=20),
    )
    end = epoch + timedelta(days=2)
    b = lower_bound(net, [job], end=end, method="both")
    ti, pre = b.parts
    center, chip = net.centers[0], net.chips["A100"]
    exact = price(center, Usage(4, chip.tdp_w, epoch, epoch + timedelta(hours=20), cu))
    assert ti.cny == pytest.approx(float(exact.total_cny) - ROUNDING_CNY_PER_JOB, abs=0.011)
    assert pre.cny < ti.cny - 1.0
    assert b.cny == ti.cny and b.method == "time-indexed"


def test_stopped_early_it_still_gives_a_valid_bound_and_says_so() -> None:
    net = _network([2, 2], [0.8, 0.5])
    epoch = datetime(2026, 1, 5, 20, tzinfo=CST)
    idx = network_index(net)
    jobs = [
        JobRequest(
            id=f"j{k}",
            workload_class="llm-train",
            count=2,
            cu_hours=3.0 * 2 * float(idx.pflops["llm-train"][0]),
            submitted_at=epoch,
        )
        for k in range(6)
    ]
    end = epoch + timedelta(days=1)
    full = lower_bound(net, jobs, end=end, method="time-indexed", tolerance=1e-9)
    cut = lower_bound(net, jobs, end=end, method="time-indexed", time_limit_s=0.0)
    assert full.converged
    assert not cut.converged and any("subgradient" in n for n in cut.notes)
    assert 0 < cut.cny <= full.cny + 1e-9


def test_an_unknown_method_is_refused() -> None:
    net = _valley_net()
    job = JobRequest(
        id="x", workload_class="llm-train", count=1, cu_hours=1.0, submitted_at=datetime.now(CST)
    )
    with pytest.raises(ValueError, match="method 'greedy'"):
        lower_bound(net, [job], end=datetime.now(CST) + timedelta(days=1), method="greedy")
