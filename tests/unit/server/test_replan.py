"""Plans follow reality: chips freed early move waiting SCHEDULED jobs to earlier starts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from computenet.store import jobs as job_store
from tests.unit.server.conftest import Net, job_spec, make_net

# Half of chongqing's 8 CPU-nodes each, planned at 3 h, pinned there.
LONG = job_spec(
    **{"class": "cpu-batch"},
    chips={"count": 4, "types": ["CPU-node"]},
    work={"reference_chip": "CPU-node", "reference_hours": 3},
    center="chongqing",
)


@pytest.fixture
def net(db_url: str) -> Iterator[Net]:
    """The control plane with patience 0: jobs without a deadline start as soon as chips free."""
    yield from make_net(db_url, patience_h=0)


def _start(job: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(job["placement"]["planned_start"])


def _fill_then_wait(net: Net) -> tuple[list[str], list[str]]:
    """Two jobs fill chongqing, two more are planned after them; returns (first, waiting)."""
    net.register("chongqing")
    ids = [net.submit(LONG).json()["id"] for _ in range(4)]
    net.tick()
    jobs = {j: net.job(j) for j in ids}
    assert all(j["state"] == "SCHEDULED" for j in jobs.values())
    now = net.plane.clock.now()
    first = [j for j in ids if _start(jobs[j]) <= now]
    waiting = [j for j in ids if j not in first]
    assert len(first) == 2 and len(waiting) == 2
    return first, waiting


def _run(net: Net, ids: list[str]) -> dict[str, int]:
    """Lease `ids` to chongqing and start them; returns their attempts."""
    leased = {x["job_id"]: int(x["attempt"]) for x in net.lease("chongqing")}
    assert set(leased) == set(ids)
    for j, attempt in leased.items():
        assert net.report("chongqing", j, attempt, "STAGING").status_code == 200
        assert net.report("chongqing", j, attempt, "RUNNING").status_code == 200
    return leased


def _finish(net: Net, ids: list[str]) -> None:
    """Run `ids` at chongqing, and end them at once (far before their planned finish)."""
    for j, attempt in _run(net, ids).items():
        assert net.report("chongqing", j, attempt, "SUCCEEDED", exit_code=0).status_code == 200


def test_jobs_planned_after_chips_that_free_early_move_to_an_earlier_start(net: Net) -> None:
    first, waiting = _fill_then_wait(net)
    planned = {j: _start(net.job(j)) for j in waiting}
    _finish(net, first)
    net.time.advance(1)
    net.tick()
    now = net.plane.clock.now()
    for j in waiting:
        job = net.job(j)
        assert job["state"] == "SCHEDULED"
        assert _start(job) <= now < planned[j]
        moved = [e for e in job["events"] if e["message"].startswith("re-planned")]
        assert len(moved) == 1 and "sooner" in moved[0]["message"]
        assert job["reasons"][0].startswith("re-planned")
    leased = {x["job_id"] for x in net.lease("chongqing")}
    assert leased == set(waiting)


def test_an_overrunning_job_keeps_its_chips(net: Net) -> None:
    net.register("chongqing")
    first = [net.submit(LONG).json()["id"] for _ in range(2)]
    net.tick()
    _run(net, first)
    finish = datetime.fromisoformat(net.job(first[0])["placement"]["finish"])
    while net.plane.clock.now() <= finish:  # 3 network hours: 18 real seconds at 600×
        net.time.advance(2)
        net.heartbeat("chongqing", running=first)
        net.tick()
    late = net.submit(LONG).json()["id"]
    net.tick()
    job = net.job(late)
    assert all(net.job(j)["state"] == "RUNNING" for j in first)
    assert job["state"] == "PENDING" or _start(job) > net.plane.clock.now()


def test_a_cancelled_predecessor_frees_its_chips_too(net: Net) -> None:
    first, waiting = _fill_then_wait(net)
    for j in first:
        r = net.client.post(f"/api/v1/jobs/{j}/cancel", headers=net.user())
        assert r.status_code in (200, 202), r.text
    net.tick()
    now = net.plane.clock.now()
    assert all(_start(net.job(j)) <= now for j in waiting)


def test_plans_do_not_flap_once_moved(net: Net) -> None:
    first, waiting = _fill_then_wait(net)
    _finish(net, first)
    net.tick()
    for _ in range(3):
        net.time.advance(0.5)
        net.tick()
    for j in waiting:
        moves = [e for e in net.job(j)["events"] if e["message"].startswith("re-planned")]
        assert len(moves) == 1


def test_a_leased_job_is_never_re_planned(net: Net) -> None:
    first, waiting = _fill_then_wait(net)
    _finish(net, first)
    victim = waiting[0]
    with net.plane.db.write() as s:
        row = job_store.get_job(s, victim)
        assert row is not None and row.center and row.planned_start
        center, start = row.center, row.planned_start
        assert job_store.try_lease(s, victim, center, net.time())
    with net.plane.db.write() as s:
        values = {"planned_start": net.plane.clock.now()}
        assert not job_store.replan(s, victim, center, start, values, start, "re-planned: x")
    net.tick()
    job = net.job(victim)
    assert _start(job) == start
    assert not any(e["message"].startswith("re-planned") for e in job["events"])


def test_a_job_that_started_late_holds_its_chips_for_its_whole_planned_run(net: Net) -> None:
    net.register("chongqing")
    full = dict(LONG, chips={"count": 8, "types": ["CPU-node"]})
    first = net.submit(full).json()["id"]
    net.tick()
    planned_finish = datetime.fromisoformat(net.job(first)["placement"]["finish"])
    net.time.advance(6)  # an hour of network time passes before it starts
    net.heartbeat("chongqing")
    started = net.plane.clock.now()
    _run(net, [first])
    second = net.submit(full).json()["id"]
    net.tick()
    job = net.job(second)
    assert job["state"] == "PENDING" or _start(job) >= started + (
        planned_finish - _start(net.job(first))
    )
