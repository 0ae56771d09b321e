"""The LP lower bound never exceeds what any policy pays."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from computenet.catalog import network_from_dict
from computenet.model import JobState
from computenet.model.center import CST
from computenet.scheduler import JobRequest
from computenet.scheduler.bounds import ROUNDING_CNY_PER_JOB, lower_bound
from computenet.sim import SimConfig, Simulation, make_policy, synthetic
from computenet.sim.metrics import deadline_missed, total_cny
from computenet.sim.results import CODE
from computenet.sim.runner import workload_bound
from tests.unit.sim.conftest import tiny_network

POLICIES = ("ours", "ours:min-cost", "random", "cheapest-energy", "least-loaded", "round-robin")
EPOCH = datetime(2026, 1, 5, tzinfo=CST)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), jobs=st.integers(3, 14), chips=st.integers(8, 24))
def test_the_bound_never_exceeds_any_policys_cost(seed: int, jobs: int, chips: int) -> None:
    net = tiny_network(east_chips=chips, west_chips=chips)
    wl = synthetic(net, jobs=jobs, days=0.5, seed=seed, max_count=8, scale=0.5)
    cfg = SimConfig(seed=seed)
    runs = [Simulation(wl, make_policy(p, seed=seed), cfg).run() for p in POLICIES]
    end = max(float(np.nanmax(r.records.end)) for r in runs) + 3600.0
    loose = workload_bound(wl, cfg, end, enforce_deadlines=False)
    tight = workload_bound(wl, cfg, end, enforce_deadlines=True)
    assert loose.converged and tight.converged
    assert loose.cny <= tight.cny + 1e-6
    for r in runs:
        ok = r.records.state == CODE[JobState.SUCCEEDED]
        cost = float(total_cny(r))
        if ok.all():
            assert loose.cny <= cost + 1e-6, r.policy
            if not deadline_missed(r).any():
                assert tight.cny <= cost + 1e-6, r.policy


def _flat() -> object:
    return network_from_dict(
        {
            "name": "flat",
            "centers": [
                {
                    "id": "a",
                    "lat": 30,
                    "lon": 110,
                    "pools": [{"chip": "A100", "count": 8}],
                    "pue": 1.2,
                    "tariff": {"flat": 0.5, "peak": 1, "valley": 1},
                    "carbon_kg_per_kwh": 0.5,
                    "service_price_per_cuh": 2.0,
                },
                {
                    "id": "b",
                    "lat": 35,
                    "lon": 105,
                    "pools": [{"chip": "H800", "count": 8}],
                    "pue": 1.1,
                    "tariff": {"flat": 0.4, "peak": 1, "valley": 1},
                    "carbon_kg_per_kwh": 0.5,
                    "service_price_per_cuh": 1.5,
                },
            ],
        }
    )


def test_one_job_alone_is_bounded_by_its_cheapest_chip() -> None:
    net = _flat()
    job = JobRequest(id="x", workload_class="llm-train", count=4, cu_hours=10.0, submitted_at=EPOCH)
    b = lower_bound(net, [job], end=EPOCH + timedelta(days=2))  # type: ignore[arg-type]
    h800 = 989 * 0.36 / 1000  # PFLOPS per chip
    a100 = 312 * 0.45 / 1000
    per_cuh = min(0.7 * 1.1 * 0.4 / h800 + 1.5, 0.4 * 1.2 * 0.5 / a100 + 2.0)
    assert b.cny == pytest.approx(10.0 * per_cuh - ROUNDING_CNY_PER_JOB, rel=1e-6)


def test_capacity_pushes_work_onto_dearer_chips() -> None:
    net = _flat()
    # Two jobs of 8 chips each that must both finish within an hour: one per center.
    jobs = [
        JobRequest(
            id=f"x{k}",
            workload_class="llm-train",
            count=8,
            cu_hours=0.8 * 8 * 989 * 0.36 / 1000,
            submitted_at=EPOCH,
            deadline=EPOCH + timedelta(hours=1),
        )
        for k in range(2)
    ]
    alone = lower_bound(net, jobs[:1], end=EPOCH + timedelta(days=1))  # type: ignore[arg-type]
    both = lower_bound(net, jobs, end=EPOCH + timedelta(days=1))  # type: ignore[arg-type]
    assert both.cny > 2 * alone.cny + 1.0
    relaxed = lower_bound(net, jobs, end=EPOCH + timedelta(days=1), enforce_deadlines=False)  # type: ignore[arg-type]
    # Without the deadline each job can take the cheap chips in turn.
    assert relaxed.cny + 2 * ROUNDING_CNY_PER_JOB == pytest.approx(
        2 * (alone.cny + ROUNDING_CNY_PER_JOB), rel=1e-6
    )


def test_a_deadline_no_schedule_can_meet_does_not_make_the_bound_infeasible() -> None:
    net = _flat()
    job = JobRequest(
        id="x",
        workload_class="llm-train",
        count=1,
        cu_hours=50.0,
        submitted_at=EPOCH,
        deadline=EPOCH + timedelta(minutes=5),
        budget_cny=Decimal(1),
    )
    b = lower_bound(net, [job], end=EPOCH + timedelta(days=30))  # type: ignore[arg-type]
    assert b.widened == 1 and b.cny > 0 and b.converged
