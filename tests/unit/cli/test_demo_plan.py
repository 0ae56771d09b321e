"""The demo's jobs, checked with the production scheduler before any process starts."""

from __future__ import annotations

from datetime import date

from computenet.catalog import load_network
from computenet.cli.demo import (
    BIG,
    BIG_BYTES,
    EAST,
    INFEASIBLE,
    SMALL,
    SMALL_BYTES,
    demo_epoch,
    demo_jobs,
)
from computenet.model import Dataset, JobSpec
from computenet.scheduler import build_snapshot, job_request, schedule_cycle


def test_demo_submits_on_a_day_whose_night_stays_in_the_month() -> None:
    assert demo_epoch(date(2026, 11, 30)).day == 29
    assert demo_epoch(date(2026, 12, 31)).day == 30
    at = demo_epoch(date(2026, 12, 5))
    assert (at.day, at.hour, at.minute) == (5, 21, 30)


def test_demo_jobs_cover_the_required_mix() -> None:
    specs = [JobSpec.model_validate(j) for j in demo_jobs()]
    feasible = [s for s in specs if s.name != INFEASIBLE]
    assert len(feasible) >= 12
    assert {s.workload_class for s in specs} == {"llm-train", "cv-train", "inference", "cpu-batch"}
    assert any(BIG in s.inputs for s in specs)
    assert any(s.chips.stack == "cann" for s in specs)
    assert sum(1 for s in specs if s.name == INFEASIBLE) == 1


def test_scheduler_places_every_feasible_demo_job_and_explains_the_infeasible_one() -> None:
    net = load_network("demo")
    now = demo_epoch(date(2026, 12, 5))
    ds = {
        BIG: Dataset(id=BIG, size_bytes=BIG_BYTES, sha256="0" * 64, replicas=(EAST,)),
        SMALL: Dataset(
            id=SMALL,
            size_bytes=SMALL_BYTES,
            sha256="1" * 64,
            replicas=(EAST,),
            residency="region:east",
        ),
    }
    reqs = [job_request(j["name"], JobSpec.model_validate(j), net, now, ds) for j in demo_jobs()]
    decisions = {d.job_id: d for d in schedule_cycle(build_snapshot(net, now, datasets=ds), reqs)}
    assert decisions[INFEASIBLE].placement is None
    assert any("64" in r for r in decisions[INFEASIBLE].reasons)
    placed = {k: d.placement for k, d in decisions.items() if k != INFEASIBLE}
    assert all(p is not None for p in placed.values()), {
        k: decisions[k].reasons for k, p in placed.items() if p is None
    }
    assert placed["cann-train"] is not None and placed["cann-train"].chip == "Ascend-910B"
    # Slack jobs wait for the 23:00 valley tariff.
    shifted = [p for p in placed.values() if p is not None and p.planned_start.hour == 23]
    assert shifted
    # Data with residency region:east stays in the east.
    for j in demo_jobs():
        p = placed.get(j["name"])
        if p is not None and SMALL in j.get("inputs", []):
            assert net.center(p.center).region == "east"
