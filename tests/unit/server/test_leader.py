"""Replicas of one control plane: one leads the loop, a deposed leader writes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any, cast

import pytest

from computenet.catalog import load_network
from computenet.server import Settings
from computenet.server.leader import LeadershipLost, holder_gone, replica_id
from computenet.server.plane import ControlPlane
from computenet.server.scheduling import run_cycle
from computenet.store import leader as lease_store
from tests.unit.server.conftest import EPOCH, Net, job_spec, make_net

H100 = {"count": 2, "types": ["H100"]}


@pytest.fixture
def other(net: Net) -> Iterator[ControlPlane]:
    """A second replica (no HTTP, loop off) on the same database and the same fake clock."""
    plane = ControlPlane(
        Settings(
            db_url=net.db_url,
            network=load_network("demo"),
            epoch=None,
            lease_timeout_s=net.plane.settings.lease_timeout_s,
            run_loop=False,
            real_time=net.time,
        )
    )
    yield plane
    plane.stop()


def test_the_first_replica_leads_and_a_second_one_follows(net: Net, other: ControlPlane) -> None:
    assert net.plane.leadership.term() is not None and net.plane.term_epoch == 1
    assert other.leadership.term() is None
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    assert other.tick().scheduled == 0  # a follower's tick does nothing
    assert net.job(job_id)["state"] == "PENDING"
    assert net.tick().scheduled == 1
    health = net.client.get("/healthz").json()
    assert health["leader"] is True and health["epoch"] == 1
    assert health["first_cycle_real"] is not None


def test_a_deposed_leader_that_wakes_up_writes_no_placement(net: Net, other: ControlPlane) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    # The leader pauses past its lease; the other replica takes over (epoch 2).
    net.time.advance(net.plane.settings.leader_lease_s + 1)
    net.heartbeat("zhongwei")
    term = other.leadership.renew()
    assert term is not None and term.epoch == 2
    # The old leader's cycle, resumed with its stale belief, is fenced off.
    with pytest.raises(LeadershipLost):
        run_cycle(net.plane)
    assert net.job(job_id)["state"] == "PENDING"
    # Its next tick finds it no longer leads and does nothing; the new leader schedules.
    assert net.tick().scheduled == 0
    assert net.plane.leadership.term() is None
    assert other.tick().scheduled == 1
    assert net.job(job_id)["state"] == "SCHEDULED"
    assert other.leading_since == term.since
    assert net.client.get("/healthz").json()["leader"] is False


def test_a_replica_that_stops_hands_the_lease_on_at_once(net: Net, other: ControlPlane) -> None:
    net.plane.leadership.release()
    term = other.leadership.renew()
    assert term is not None and term.epoch == 2
    with other.db.read() as s:
        row = lease_store.current(s)
    assert row is not None and row.holder == other.leadership.holder


def test_a_new_term_starts_the_cycle_memory_afresh(net: Net, other: ControlPlane) -> None:
    other.cycle.requests["j-old"] = cast(Any, (None, None, ()))
    other.cycle.unplaced.add(("j-old", ""))
    other.cycle.last_key = "stale"
    other.cycle.replan_key = "stale"
    net.plane.leadership.release()
    other.tick()
    assert other.term_epoch == 2
    assert "j-old" not in other.cycle.requests and not other.cycle.unplaced
    assert other.cycle.last_key != "stale" and other.cycle.replan_key != "stale"


def test_on_one_machine_a_dead_holder_is_known_to_be_gone() -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host, ns, _pid, _nonce = replica_id().split(":")
    assert holder_gone(f"{host}:{ns}:{dead.stdout.strip()}:abc")
    assert not holder_gone(replica_id())  # this very process
    assert not holder_gone(f"elsewhere:{ns}:{dead.stdout.strip()}:abc")
    assert not holder_gone("not-an-id")


@pytest.fixture
def sqlite_net(tmp_path: Any) -> Iterator[Net]:
    """A control plane on SQLite whatever CNET_TEST_DB_URL says: the fast takeover is SQLite's."""
    yield from make_net(f"sqlite:///{tmp_path / 'embedded.db'}")


def test_a_restarted_sqlite_server_leads_at_once_after_a_crash(sqlite_net: Net) -> None:
    net = sqlite_net
    # A predecessor that died holding the lease (a pid that no longer runs).
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host, ns, _pid, _nonce = replica_id().split(":")
    net.plane.leadership.release()
    with net.plane.db.write() as s:
        lease_store.acquire(
            s, lease_store.CONTROL_LOOP, f"{host}:{ns}:{dead.stdout.strip()}:x", net.time(), 60.0
        )
    plane = ControlPlane(
        Settings(db_url=net.db_url, epoch=EPOCH, run_loop=False, real_time=net.time)
    )
    try:
        assert plane.leadership.term() is not None
    finally:
        plane.stop()
