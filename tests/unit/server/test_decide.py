"""The server's cycle shortcut for look-alike jobs decides exactly as `schedule_cycle` does."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from computenet.catalog import load_network
from computenet.model import JobSpec
from computenet.model.center import CST
from computenet.scheduler import build_snapshot, job_request, schedule_cycle
from computenet.server.scheduling import decide

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
def test_decide_equals_schedule_cycle_on_contended_mixes_of_look_alikes(seed: int) -> None:
    net = load_network("demo")
    rng = random.Random(seed)
    snap = build_snapshot(net, NOW, online={c.id: rng.random() < 0.8 for c in net.centers})
    reqs = []
    for i in range(rng.randint(5, 120)):
        spec = JobSpec.model_validate({**rng.choice(SHAPES), "command": "true"})
        submitted = NOW - timedelta(minutes=rng.randint(0, 300))
        reqs.append(job_request(f"j{i:04d}", spec, net, submitted, {}, check_deadline=False))
    rng.shuffle(reqs)
    assert decide(snap, reqs, "min-cost") == schedule_cycle(snap, reqs, "min-cost")
