"""The cycle's shortcut for look-alike jobs (server and simulator) decides as evaluating each.

`schedule_cycle` evaluates a look-alike of a job left unplaced only once until
the next placement; the server passes the signatures it keeps per job. Both
must give exactly the decisions of evaluating every job.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from computenet.catalog import load_network
from computenet.model import JobSpec
from computenet.model.center import CST
from computenet.scheduler import build_snapshot, job_request, schedule_cycle, signature
from computenet.scheduler.greedy import greedy_cycle

NOW = datetime(2026, 11, 2, 10, 17, tzinfo=CST)
SHAPES: list[dict[str, Any]] = [
    {"class": "llm-train", "chips": {"count": 4}, "work": {"cu_hours": 20}},
    {
        "class": "llm-train",
        "chips": {"count": 8},
        "work": {"cu_hours": 50},
        "deadline": "2026-11-02T20:00:00+08:00",
    },
    {"class": "inference", "chips": {"count": 1}, "work": {"cu_hours": 0.5}},
    {"class": "cv-train", "chips": {"count": 2}, "work": {"cu_hours": 5}, "budget_cny": 30},
    {"class": "cpu-batch", "chips": {"count": 16}, "work": {"cu_hours": 0.2}},
    {"class": "llm-train", "chips": {"count": 2, "stack": "cann"}, "work": {"cu_hours": 3}},
    {"class": "inference", "chips": {"count": 1}, "work": {"cu_hours": 0.5}, "priority": 5},
]


@pytest.mark.parametrize("seed", range(12))
def test_look_alikes_are_decided_as_if_each_were_evaluated_on_contended_mixes(seed: int) -> None:
    net = load_network("demo")
    rng = random.Random(seed)
    snap = build_snapshot(net, NOW, online={c.id: rng.random() < 0.8 for c in net.centers})
    reqs = []
    for i in range(rng.randint(5, 120)):
        spec = JobSpec.model_validate({**rng.choice(SHAPES), "command": "true"})
        submitted = NOW - timedelta(minutes=rng.randint(0, 300))
        reqs.append(job_request(f"j{i:04d}", spec, net, submitted, {}, check_deadline=False))
    rng.shuffle(reqs)
    every = greedy_cycle(snap, reqs, "min-cost", look_alikes=False)
    assert schedule_cycle(snap, reqs, "min-cost") == every
    sigs = [signature(r) for r in reqs]
    assert schedule_cycle(snap, reqs, "min-cost", signatures=sigs) == every
