"""Preemption on the control plane (server/preempting.py): under `fastest`, a much shorter
waiting job stops a long preemptible one, billed for what it ran, which resumes at its center."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from computenet.cli.jobs import preemption_line
from computenet.metering import charge
from computenet.protocol.api import JobDetail
from computenet.scheduler.preemption import MAX_PREEMPTIONS, RESUME_S, Preemption
from computenet.server import preempting
from computenet.store import jobs as job_store
from computenet.store.billing import get_charge
from computenet.store.schema import JobRow
from tests.unit.server.conftest import LEASE_TIMEOUT_S, Net, job_spec, make_net

CENTER = "chongqing"  # 8 CPU-nodes in the demo network

# Every chip of chongqing for 3 hours (as planned), and agreeing to be preempted.
LONG = job_spec(
    name="long",
    **{"class": "cpu-batch"},
    chips={"count": 8, "types": ["CPU-node"]},
    work={"reference_chip": "CPU-node", "reference_hours": 3},
    center=CENTER,
    preemptible=True,
)
# The same chips for a minute.
SHORT = job_spec(
    name="short",
    **{"class": "cpu-batch"},
    chips={"count": 8, "types": ["CPU-node"]},
    work={"reference_chip": "CPU-node", "reference_hours": 1 / 60},
    center=CENTER,
)


@pytest.fixture
def net(db_url: str) -> Iterator[Net]:
    """A control plane whose profile is `fastest` (the one that preempts)."""
    yield from make_net(db_url, profile="fastest")


def register(net: Net, cid: str = CENTER, *, preempt: bool | None = True) -> None:
    """Register `cid` with its chips free, saying (or not) that it stops jobs for preemption."""
    c = net.plane.network.center(cid)
    body: dict[str, Any] = {
        "center_id": cid,
        "capacity": [{"chip": p.chip, "total": p.count, "free": p.count} for p in c.pools],
        "data_url": f"http://127.0.0.1:1/{cid}",
    }
    if preempt is not None:
        body["preempt"] = preempt
    r = net.client.post("/center/v1/register", json=body, headers=net.center(cid))
    assert r.status_code == 200, r.text


def row(net: Net, job_id: str) -> JobRow:
    """The stored job (detached, for columns the API does not show)."""
    with net.plane.db.read() as s:
        j = job_store.get_job(s, job_id)
        assert j is not None
        s.expunge(j)
        return j


def long_running(net: Net, spec: dict[str, Any] = LONG) -> tuple[str, int]:
    """Submit the long job and run it at chongqing; returns (id, attempt)."""
    lid = net.submit(spec).json()["id"]
    attempt = net.run_to_running(CENTER, lid)
    net.time.advance(6)  # an hour of network time (600×) into its 3 hours
    return lid, attempt


def short_waits(net: Net, spec: dict[str, Any] = SHORT) -> str:
    """Submit the short job and run a cycle; returns its id."""
    sid = str(net.submit(spec).json()["id"])
    net.tick()
    return sid


def test_fastest_asks_the_center_to_stop_the_long_job_for_the_short_one(net: Net) -> None:
    register(net)
    lid, _ = long_running(net)
    sid = short_waits(net)
    assert row(net, lid).stop_for == sid
    # The short job waits, unplaced, for the long job to stop, and is told so.
    short = net.job(sid)
    assert short["state"] == "PENDING"
    assert short["reasons"] == [
        f"runs once {lid}, a longer preemptible job, has stopped at {CENTER}"
    ]
    assert any(f"runs once {lid}" in e["message"] for e in short["events"])
    long = net.job(lid)
    assert long["state"] == "RUNNING" and long["stopping_for"] == sid
    assert long["reasons"][0].startswith(f"preempted at {CENTER} for the shorter job {sid}")
    line = preemption_line(JobDetail.model_validate(long))
    assert line == f"preemptible, never preempted; asked to stop now so that {sid} runs first"
    reply = net.heartbeat(CENTER, running=[lid])
    assert reply["preempt"] == [lid] and lid not in reply["cancel"]
    # Asked once: the next cycles ask nothing more (its chips count as being freed), and
    # the short job waits for them.
    net.time.advance(1)
    net.tick()
    assert row(net, lid).stop_for == sid
    assert net.job(sid)["state"] == "PENDING"


def test_min_cost_never_preempts(db_url: str) -> None:
    for net in make_net(db_url):  # the default profile, min-cost
        register(net)
        lid, _ = long_running(net)
        short_waits(net)
        assert row(net, lid).stop_for is None
        assert net.heartbeat(CENTER, running=[lid]).get("preempt") is None


def test_a_job_that_is_not_preemptible_is_never_stopped(net: Net) -> None:
    register(net)
    lid, _ = long_running(net, {**LONG, "preemptible": False})
    sid = short_waits(net)
    assert row(net, lid).stop_for is None
    assert net.heartbeat(CENTER, running=[lid]).get("preempt") is None
    assert net.job(sid)["state"] == "SCHEDULED"  # it waits for the long job to end


def test_a_center_that_did_not_register_preempt_is_never_asked(net: Net) -> None:
    register(net, preempt=None)
    lid, _ = long_running(net)
    short_waits(net)
    assert row(net, lid).stop_for is None
    assert net.heartbeat(CENTER, running=[lid]).get("preempt") is None


def test_a_center_that_registers_again_without_preempt_has_its_stops_withdrawn(
    net: Net,
) -> None:
    register(net)
    lid, _ = long_running(net)
    sid = short_waits(net)
    assert row(net, lid).stop_for == sid
    register(net, preempt=None)  # an agent restarted without preemption: it would not stop it
    assert row(net, lid).stop_for is None
    assert net.heartbeat(CENTER, running=[lid]).get("preempt") is None
    long = net.job(lid)
    assert long["state"] == "RUNNING" and long["stopping_for"] is None
    assert long["reasons"] == [
        f"{CENTER} registered without preempt: it runs on (the stop asked for {sid} is withdrawn)"
    ]
    net.time.advance(1)
    net.tick()
    # No longer held for chips that will not be freed: it waits for the long job to end.
    assert net.job(sid)["state"] == "SCHEDULED", net.job(sid)["reasons"]


def test_a_higher_priority_job_is_not_stopped_for_a_lower_one(net: Net) -> None:
    register(net)
    lid, _ = long_running(net, {**LONG, "priority": 5})
    short_waits(net)
    assert row(net, lid).stop_for is None


def _charge_of(net: Net, started: datetime, finished: datetime) -> Decimal:
    """What 8 CPU-nodes at chongqing cost from `started` to `finished` (the meter's rule)."""
    n = net.plane.network
    ch = charge(
        n.center(CENTER), n.chips["CPU-node"], n.throughput, "cpu-batch", 8, started, finished
    )
    return Decimal(ch.total_cny)


def test_the_stopped_job_is_billed_requeued_at_its_center_and_resumes_after_the_short_one(
    net: Net,
) -> None:
    register(net)
    lid, attempt = long_running(net)
    first = row(net, lid)
    assert first.started_at is not None and first.placement is not None
    sid = short_waits(net)
    net.time.advance(1)
    r = net.report(CENTER, lid, attempt, "FAILED", exit_code=143, message="stopped (SIGTERM)")
    assert r.status_code == 200, r.text
    stopped = row(net, lid)
    assert stopped.state == "PENDING" and stopped.preemptions == 1
    assert stopped.stop_for is None
    assert stopped.resume_center == CENTER and stopped.resume_chip == "CPU-node"
    assert stopped.usage == {}  # billed with that attempt; the next one reports its own
    # It ran about 70 of its 180 planned minutes: that much less is left.
    assert stopped.work_left is not None
    ran = (net.plane.clock.now() - first.started_at).total_seconds()
    planned = float(first.placement["run_s"])
    assert stopped.work_left == pytest.approx(1 - ran / planned, abs=0.01)
    assert 0.3 < stopped.work_left < 0.8
    # The stopped attempt is billed now, as any reported run.
    part = _charge_of(net, first.started_at, net.plane.clock.now())
    assert part > 0
    with net.plane.db.read() as s:
        billed = get_charge(s, lid)
        assert billed is not None and billed.total_cny == part
    # Next cycle: the short job gets the chips now, the long one is planned after it, at
    # chongqing (it queues as of its stop, behind the job it made room for).
    net.time.advance(1)
    net.tick()
    short, long = net.job(sid), net.job(lid)
    assert short["state"] == "SCHEDULED" and long["state"] == "SCHEDULED"
    assert long["center"] == CENTER
    assert short["placement"]["planned_start"] <= net.plane.clock.now().isoformat()
    assert long["placement"]["planned_start"] >= short["placement"]["finish"]
    # Its plan is the work it had left plus restoring its checkpoint.
    want_s = stopped.work_left * planned + RESUME_S
    assert float(long["placement"]["run_s"]) == pytest.approx(want_s, rel=0.02)
    leased = {j["job_id"]: j["attempt"] for j in net.lease(CENTER)}
    assert set(leased) == {sid}
    for state in ("STAGING", "RUNNING", "SUCCEEDED"):
        assert net.report(CENTER, sid, leased[sid], state, exit_code=0).status_code == 200
    net.time.advance(1)
    attempt2 = net.run_to_running(CENTER, lid)
    assert attempt2 > attempt
    net.time.advance(3)
    assert net.report(CENTER, lid, attempt2, "SUCCEEDED", exit_code=0).status_code == 200
    done = row(net, lid)
    assert done.state == "SUCCEEDED" and done.preemptions == 1
    assert done.started_at is not None and done.finished_at is not None
    second = _charge_of(net, done.started_at, done.finished_at)
    with net.plane.db.read() as s:
        billed = get_charge(s, lid)
        assert billed is not None
        assert billed.total_cny == part + second  # both attempts, each as metered
        assert billed.started_at == first.started_at
    assert net.job(lid)["cost_cny"] == str(part + second)
    view = JobDetail.model_validate(net.job(lid))
    assert view.preemptions == 1 and view.stopping_for is None
    assert preemption_line(view).startswith("preempted 1×; ")


def test_a_job_is_preempted_at_most_once(net: Net) -> None:
    assert MAX_PREEMPTIONS == 1
    register(net)
    lid, attempt = long_running(net)
    sid = short_waits(net)
    net.report(CENTER, lid, attempt, "CANCELLED", message="stopped for preemption")
    net.time.advance(1)
    net.tick()
    leased = {j["job_id"]: j["attempt"] for j in net.lease(CENTER)}
    for state in ("STAGING", "RUNNING", "SUCCEEDED"):
        assert net.report(CENTER, sid, leased[sid], state, exit_code=0).status_code == 200
    net.time.advance(1)
    net.run_to_running(CENTER, lid)
    net.time.advance(1)
    other = short_waits(net, {**SHORT, "name": "another"})
    assert net.job(other)["state"] == "SCHEDULED"
    assert row(net, lid).stop_for is None
    assert net.heartbeat(CENTER, running=[lid]).get("preempt") is None
    # Even asked directly (a stale choice), the write refuses: its billed parts stay bounded.
    third = str(net.submit({**SHORT, "name": "third"}).json()["id"])  # PENDING: no cycle yet
    now = net.plane.clock.now()
    chip = str(row(net, lid).chip)
    assert preempting._ask(net.plane, now, [Preemption(lid, CENTER, chip, third)]) == {}
    assert row(net, lid).stop_for is None


def test_a_cancel_while_stopping_wins(net: Net) -> None:
    register(net)
    lid, attempt = long_running(net)
    short_waits(net)
    assert net.client.post(f"/api/v1/jobs/{lid}/cancel", headers=net.user()).status_code == 200
    reply = net.heartbeat(CENTER, running=[lid])
    assert lid in reply["cancel"] and reply.get("preempt") is None
    r = net.report(CENTER, lid, attempt, "FAILED", exit_code=143, message="stopped")
    assert r.status_code == 200, r.text
    j = row(net, lid)
    assert j.state == "CANCELLED" and j.preemptions == 0 and j.stop_for is None


def test_a_job_that_succeeds_while_asked_to_stop_simply_succeeded(net: Net) -> None:
    register(net)
    lid, attempt = long_running(net)
    short_waits(net)
    assert net.report(CENTER, lid, attempt, "SUCCEEDED", exit_code=0).status_code == 200
    j = row(net, lid)
    assert j.state == "SUCCEEDED" and j.preemptions == 0 and j.stop_for is None


def test_a_job_lost_while_stopping_starts_over_elsewhere(net: Net) -> None:
    register(net)
    lid, _ = long_running(net)
    short_waits(net)
    # Its agent goes silent: the lease expires, and its checkpoint with the center.
    net.time.advance(3 * LEASE_TIMEOUT_S)
    net.tick()
    j = row(net, lid)
    assert j.state in ("PENDING", "SCHEDULED") and j.stop_for is None
    assert j.resume_center is None and j.work_left is None and CENTER in j.avoid_centers
