"""Per-job lease renewal in the database and the fencing rule's numbers (protocol.fencing)."""

from __future__ import annotations

import pytest

from computenet.protocol.fencing import lease_rule
from computenet.store import jobs as job_store
from tests.unit.server.conftest import LEASE_TIMEOUT_S, Net, job_spec

H100 = {"count": 1, "types": ["H100"]}
RULE = lease_rule(LEASE_TIMEOUT_S)


def test_the_rule_fences_well_before_the_requeue() -> None:
    for t in (2.0, 4.0, 10.0, 30.0, 120.0):
        rule = lease_rule(t)
        assert rule.fence_after_s == t / 2
        assert rule.stop_grace_s <= 5.0
        assert rule.fence_after_s + rule.stop_grace_s + rule.clock_slack_s == rule.requeue_after_s
        assert rule.clock_slack_s >= t / 4
        assert rule.margin_s > 0


def test_register_and_heartbeat_replies_carry_the_rule(net: Net) -> None:
    reg = net.register("zhongwei")
    hb = net.heartbeat("zhongwei")
    for reply in (reg, hb):
        assert reply["lease_timeout_s"] == RULE.lease_timeout_s
        assert reply["fence_after_s"] == RULE.fence_after_s
        assert reply["stop_grace_s"] == RULE.stop_grace_s


def test_a_lease_whose_reply_was_lost_expires_and_the_job_is_offered_again(net: Net) -> None:
    net.register("zhongwei")
    net.register("shanghai")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    center = net.job(job_id)["center"]
    other = "shanghai" if center == "zhongwei" else "zhongwei"
    (leased,) = net.lease(center)  # the reply "never arrives": the agent never lists it
    assert net.job(job_id)["state"] == "SCHEDULED"
    net.time.advance(RULE.requeue_after_s - 1)
    net.heartbeat(center, running=[])
    net.heartbeat(other)
    assert net.tick().requeued == 0  # not yet: the requeue waits 1.25 × the lease timeout
    net.time.advance(2)
    net.heartbeat(center, running=[])
    net.heartbeat(other)
    assert net.tick().requeued == 1
    job = net.job(job_id)
    assert job["state"] in ("PENDING", "SCHEDULED")
    assert any(f"lost at {center}" in e["message"] for e in job["events"])
    # The agent that finally got the lost reply is refused, and told to stop it.
    r = net.report(center, job_id, leased["attempt"], "RUNNING")
    assert r.status_code == 409
    assert net.heartbeat(center, running=[job_id])["cancel"] == [job_id]


def test_heartbeats_that_list_a_job_keep_its_lease(net: Net) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    attempt = net.run_to_running("zhongwei", job_id)
    for _ in range(6):
        net.time.advance(RULE.fence_after_s / 2)
        net.heartbeat("zhongwei", running=[job_id])
        assert net.tick().requeued == 0
    assert net.job(job_id)["state"] == "RUNNING"
    assert net.report("zhongwei", job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200


def test_a_heartbeat_renews_only_the_jobs_its_center_holds(net: Net) -> None:
    net.register("zhongwei")
    net.register("shanghai")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    center = net.job(job_id)["center"]
    other = "shanghai" if center == "zhongwei" else "zhongwei"
    net.run_to_running(center, job_id)
    with net.plane.db.read() as s:
        before = job_store.get_job(s, job_id)
        assert before is not None
        renewed = before.lease_renewed
    net.time.advance(1)
    assert net.heartbeat(other, running=[job_id])["cancel"] == [job_id]
    with net.plane.db.read() as s:
        after = job_store.get_job(s, job_id)
        assert after is not None and after.lease_renewed == renewed
    net.heartbeat(center, running=[job_id])
    with net.plane.db.read() as s:
        after = job_store.get_job(s, job_id)
        assert after is not None and after.lease_renewed == net.time()


def test_a_new_leader_waits_a_full_period_before_expiring_leases(net: Net) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.run_to_running("zhongwei", job_id)
    # The control plane was away for a long time; this replica leads from now on.
    net.time.advance(10 * RULE.requeue_after_s)
    net.plane.leading_since = net.time()
    net.heartbeat("zhongwei", running=[job_id])  # the agent came back and renews
    net.time.advance(RULE.requeue_after_s - 1)
    assert net.tick().requeued == 0
    assert net.job(job_id)["state"] == "RUNNING"
    # A job nobody lists still expires once the new leader has listened long enough.
    net.time.advance(RULE.requeue_after_s + 2)
    assert net.tick().requeued == 1


def test_a_heartbeat_names_at_most_the_bound_of_jobs_to_stop_and_the_rest_next(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reply's lists are bounded on the wire; the server must stay within the
    # bound (or its reply fails to build) and owe the rest to the next beats.
    from computenet.model import limits

    monkeypatch.setattr(limits, "MAX_RUNNING", 2)
    net.register("zhongwei")
    stale = [f"j-gone-{i}" for i in range(5)]  # jobs the server does not know: stop them
    told: list[str] = []
    held = list(stale)
    while held:
        cancel = net.heartbeat("zhongwei", running=held)["cancel"]
        assert 0 < len(cancel) <= 2 and set(cancel) <= set(held)
        told += cancel
        held = [j for j in held if j not in cancel]  # the agent stops what it was told
    assert sorted(told) == sorted(stale)
