"""Long-poll leases (`LeaseRequest.wait_s`): a held lease call answers when a job is placed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from computenet.catalog import load_network
from computenet.protocol import LeaseReply
from computenet.server import Settings, dispatcher
from computenet.server.plane import ControlPlane
from tests.unit.server.conftest import Net, job_spec, make_net

H100 = {"count": 2, "types": ["H100"]}


class Held(threading.Thread):
    """A lease call made in the background; `result` once it returned."""

    def __init__(self, call: Any) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:  # handed to the test
            self.error = exc

    def outcome(self) -> Any:
        self.join(timeout=30)
        assert not self.is_alive(), "the held lease call never returned"
        if self.error is not None:
            raise self.error
        return self.result


def held_over_http(net: Net, cid: str, wait_s: float) -> Held:
    def call() -> list[dict[str, Any]]:
        r = net.client.post(
            "/center/v1/lease", json={"center_id": cid, "wait_s": wait_s}, headers=net.center(cid)
        )
        assert r.status_code == 200, r.text
        return list(r.json()["jobs"])

    held = Held(call)
    held.start()
    return held


def until_waiting(waiters: dispatcher.LeaseWaiters | None, net: Net) -> None:
    """Until a lease call is waiting (its first look found nothing)."""
    for _ in range(600):
        w = waiters or getattr(net.client.app.state, "lease_waiters", None)
        if isinstance(w, dispatcher.LeaseWaiters) and w.waiting:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the lease call never started waiting")


def test_a_held_lease_call_answers_with_the_job_the_cycle_places(net: Net) -> None:
    net.register("zhongwei")
    # The hold is cut to fence_after_s / 2 = 2.5 s; the job comes well within it.
    held = held_over_http(net, "zhongwei", wait_s=30.0)
    until_waiting(None, net)
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    (leased,) = held.outcome()
    assert leased["job_id"] == job_id and leased["attempt"] == 1
    assert net.job(job_id)["state"] == "SCHEDULED" and net.lease("zhongwei") == []


@pytest.fixture
def short_net(db_url: str) -> Iterator[Net]:
    """A control plane whose agents fence 0.4 s after their last acknowledged heartbeat."""
    yield from make_net(db_url, lease_timeout_s=0.8, heartbeat_interval_s=0.1)


def test_a_lease_call_is_never_held_past_half_the_fence_period(short_net: Net) -> None:
    short_net.register("zhongwei")
    # Asked to wait 30 s, it answers (empty) after fence_after_s / 2 = 0.2 s.
    assert held_over_http(short_net, "zhongwei", wait_s=30.0).outcome() == []


def test_a_lease_without_wait_answers_at_once_as_before(net: Net) -> None:
    net.register("zhongwei")
    assert net.lease("zhongwei") == []  # no wait_s: an older agent's call


def test_a_follower_replica_wakes_its_held_call_when_the_leader_places_a_job(net: Net) -> None:
    follower = ControlPlane(
        Settings(
            db_url=net.db_url,
            network=load_network("demo"),
            epoch=None,
            lease_timeout_s=net.plane.settings.lease_timeout_s,
            run_loop=False,
            real_time=net.time,
        )
    )
    try:
        assert follower.leadership.term() is None
        net.register("zhongwei")
        waiters = dispatcher.LeaseWaiters(follower)

        def call() -> LeaseReply:
            return asyncio.run(dispatcher.lease_waiting(follower, waiters, "zhongwei", 8, 30.0))

        held = Held(call)
        held.start()
        until_waiting(waiters, net)
        job_id = net.submit(job_spec(chips=H100)).json()["id"]
        assert follower.tick().scheduled == 0 and net.tick().scheduled == 1
        reply = held.outcome()
        assert [j.job_id for j in reply.jobs] == [job_id]
    finally:
        follower.stop()


def test_only_centers_with_a_job_due_and_unleased_are_woken(net: Net) -> None:
    net.register("zhongwei")
    net.submit(job_spec(chips=H100))
    assert dispatcher.due_centers(net.plane, ["zhongwei", "guian"]) == set()  # not placed yet
    net.tick()
    assert dispatcher.due_centers(net.plane, ["zhongwei", "guian"]) == {"zhongwei"}
    net.lease("zhongwei")
    assert dispatcher.due_centers(net.plane, ["zhongwei", "guian"]) == set()


@pytest.mark.parametrize("wait_s", [-1, 30.5, "forever"])
def test_a_lease_wait_out_of_bounds_is_refused_naming_the_field(net: Net, wait_s: object) -> None:
    net.register("zhongwei")
    r = net.client.post(
        "/center/v1/lease",
        json={"center_id": "zhongwei", "wait_s": wait_s},
        headers=net.center("zhongwei"),
    )
    assert r.status_code == 422 and r.json()["field"] == "wait_s"


def test_a_stopping_server_ends_held_calls_and_holds_no_more(net: Net) -> None:
    waiters = dispatcher.LeaseWaiters(net.plane)

    async def scenario() -> tuple[bool, bool]:
        held = asyncio.ensure_future(waiters.wait("zhongwei", 1e6))
        while not waiters.waiting:
            await asyncio.sleep(0)
        waiters.close()  # what `cnet server` does on SIGTERM
        return await held, await waiters.wait("guian", 1e6)

    call = Held(lambda: asyncio.run(scenario()))
    call.start()
    assert call.outcome() == (True, False)  # woken (its lease call looks once more), then no wait
