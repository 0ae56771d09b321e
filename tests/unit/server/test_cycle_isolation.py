"""A poison job in the store (as an old database or a bug would leave it) hurts no one else."""

from __future__ import annotations

from typing import Any

from computenet.scheduler import REJECTED
from computenet.store.schema import JobRow
from tests.unit.server.conftest import Net, job_spec


def _poison(net: Net, job_id: str, spec: dict[str, Any]) -> None:
    """Overwrite a stored job's spec, bypassing every check of the API."""
    with net.plane.db.write() as s:
        row = s.get(JobRow, job_id)
        assert row is not None
        row.spec = spec


def test_poison_jobs_stay_pending_with_the_reason_and_the_others_are_scheduled(net: Net) -> None:
    net.register("zhongwei")
    net.register("shanghai")
    # The poison ones first, with the top priority: the cycle meets them before the others.
    huge = net.submit(job_spec(name="huge", priority=10)).json()["id"]
    broken = net.submit(job_spec(name="broken", priority=10), net.user("bob", "beta")).json()["id"]
    _poison(net, huge, job_spec(name="huge", priority=10, work={"cu_hours": 1e308}))
    _poison(net, broken, {"name": "broken", "class": 42})
    normal = [net.submit(job_spec(name=f"n{i}", chips={"count": 1})).json()["id"] for i in range(4)]
    for _ in range(2):  # and again: the reason stays, the cycle does not fail
        net.tick()
    for jid in normal:
        assert net.job(jid)["state"] == "SCHEDULED", net.job(jid)["reasons"]
    for jid, who in ((huge, net.user()), (broken, net.user("bob", "beta"))):
        job = net.job(jid, who)
        assert job["state"] == "PENDING"
        assert job["reasons"][0].startswith(f"{REJECTED}: "), job["reasons"]
    # A job submitted after the poison is still scheduled in the next cycle.
    late = net.submit(job_spec(name="late", chips={"count": 1})).json()["id"]
    net.tick()
    assert net.job(late)["state"] == "SCHEDULED"
