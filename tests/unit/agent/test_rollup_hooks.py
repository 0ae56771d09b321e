"""The agent's roll-up hooks (docs/federation.md) against a fake control plane: a backend
with `paths` has its held jobs' paths sent with every heartbeat and the final one with the
usage report; a control plane that does not tag the center a region refuses the paths and
the bill line, and the agent goes on as an ordinary center; a backend with `replicas` has
them reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from computenet.backends.local import LocalBackend
from computenet.protocol.api import PathHop
from computenet.protocol.center import MeteredCharge, ReplicaReport
from tests.unit.agent.fakeplane import FakePlane, lease
from tests.unit.agent.test_loop import Agents


class RegionLike(LocalBackend):
    """A local backend that says where each job is below it, as a region's would."""

    def paths(self, handles: list[str]) -> dict[str, list[PathHop]]:
        return {
            h: [PathHop(network="below", center="sz", job_id=h, state="RUNNING")] for h in handles
        }

    def replicas(self) -> list[tuple[str, ReplicaReport]]:
        return [("corpus", ReplicaReport(path="region:corpus", sha256="a" * 64))]

    def metered(self, handle: str) -> MeteredCharge:
        return MeteredCharge(energy_cny=Decimal("0.10"), service_cny=Decimal("0.20"))


class NotARegion(FakePlane):
    """A control plane whose network file does not tag the center `region`."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if (
            path == "/center/v1/heartbeat"
            and json.loads(request.content).get("progress") is not None
        ):
            with self.lock:
                self.refused = getattr(self, "refused", 0) + 1
            return httpx.Response(422, json={"error": "not a region", "field": "progress"})
        if path.endswith("/usage"):
            for only in ("metered", "path"):
                if json.loads(request.content).get(only) is not None:
                    return httpx.Response(422, json={"error": "not a region", "field": only})
        return super().handle(request)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    a = Agents(FakePlane(), tmp_path)
    yield a
    a.close()


def test_paths_go_up_with_heartbeats_and_the_usage_report(agents: Agents, tmp_path: Path) -> None:
    plane = agents.plane
    plane.queue.append(lease("job-1", "sleep 1; echo done"))
    agents.start(backend=RegionLike(tmp_path / "b", {"H100": 2}))
    plane.wait(lambda: plane.final("job-1") is not None, what="the final state")
    sent = [p for hb in plane.heartbeats for p in hb.progress or [] if p.job_id == "job-1"]
    assert sent and sent[0].attempt == 1
    assert [(h.network, h.center) for h in sent[0].path] == [("below", "sz")]
    (usage,) = plane.usage["job-1"]
    assert usage.path is not None and usage.path[0].network == "below"
    assert usage.metered is not None and usage.metered.total_cny == Decimal("0.30")
    plane.wait(lambda: ("corpus", "region:corpus") in [(d, r.path) for d, r in plane.replicas])


def test_a_plane_that_refuses_paths_gets_none_and_the_center_runs_on(tmp_path: Path) -> None:
    plane = NotARegion()
    agents = Agents(plane, tmp_path)
    try:
        plane.queue.append(lease("job-1", "echo done"))
        agents.start(backend=RegionLike(tmp_path / "b", {"H100": 2}))
        plane.wait(lambda: plane.final("job-1") is not None, what="the final state")
        assert plane.states("job-1") == ["RUNNING", "SUCCEEDED"]
        assert getattr(plane, "refused", 0) == 1  # asked once, then never again
        assert all(hb.progress is None for hb in plane.heartbeats)
        (usage,) = plane.usage["job-1"]  # no bill line either: this plane is not its parent
        assert usage.path is None and usage.metered is None
    finally:
        agents.close()
