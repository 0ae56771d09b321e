"""The network backend's roll-up (docs/federation.md) against the SDK's in-memory fake API:
paths from the last poll, the region's queue, used chips and rate card, the deadline and
budget passed down, and the region's datasets as replicas."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from computenet.backends.base import BackendJob
from computenet.catalog.loader import load_network
from computenet.model import JobState
from computenet.model.limits import MAX_PATH_HOPS
from computenet.protocol import DatasetView
from computenet.protocol.api import PathHop
from tests.unit.backends.test_network import REGION, SPEC, Region, backend_for, bjob


@pytest.fixture
def region(tmp_path: Path) -> Region:
    """The region of tests/unit/backends/test_network.py: sz and gz of 2 H100, hk of 8."""
    path = tmp_path / "gba.yaml"
    path.write_text(REGION)
    return Region(network=load_network(str(path)))


def test_paths_are_the_childs_from_the_last_poll_and_nest(tmp_path: Path, region: Region) -> None:
    backend = backend_for(region, tmp_path)
    handle = backend.submit(bjob(), "j-abc:1")
    assert backend.paths([handle]) == {}  # not polled yet: nothing to say
    deep = [PathHop(network=f"n{i}", center="c", state="RUNNING") for i in range(MAX_PATH_HOPS)]
    region.jobs[handle] = region.jobs[handle].model_copy(
        update={"state": JobState.RUNNING, "center": "sz", "path": deep}
    )
    backend.poll([handle])
    (path,) = backend.paths([handle]).values()
    assert [h.network for h in path] == [f"n{i}" for i in range(MAX_PATH_HOPS - 1)]  # room for ours
    # A child too old to send a path: one hop from its detail, named by this center's id.
    region.jobs[handle] = region.jobs[handle].model_copy(
        update={"path": None, "chip": "H100", "chips": 2, "reasons": ["running at sz"]}
    )
    backend.poll([handle])
    (hop,) = backend.paths([handle])[handle]
    assert (hop.network, hop.center, hop.job_id, hop.state, hop.reason) == (
        "gba",
        "sz",
        handle,
        "RUNNING",
        "running at sz",
    )
    assert backend.paths([]) == {} and backend.paths([handle])  # a read: nothing forgotten
    backend.poll([])  # the agent polls every job it runs: this one has ended
    assert backend.paths([handle]) == {}  # forgotten once no longer polled


def test_capacity_carries_the_childs_used_chips_queue_and_rate_card(
    tmp_path: Path, region: Region
) -> None:
    region.free = {"sz": 0, "gz": 1}
    region.offline = {"hk"}
    (pool,) = backend_for(region, tmp_path).capacity()
    assert (pool.total, pool.free, pool.used, pool.queued) == (8, 1, 3, 0)
    ref = {
        "name": "rate-card",
        "class": "llm-train",
        "command": "true",
        "chips": {"count": 1, "types": ["H100"]},
        "work": {"cu_hours": 1},
    }
    best = min(o.total_cny for o in region._quote(ref, region.tenant).options if o.feasible)
    assert pool.quote_cny_per_cuh == best and pool.quote_wait_s is not None


def test_the_parents_deadline_and_budget_left_go_down(tmp_path: Path, region: Region) -> None:
    left_real = 3600.0
    job = BackendJob(
        "j-abc",
        1,
        "echo hi",
        "H100",
        1,
        spec=SPEC,
        deadline_real=time.time() + left_real,
        budget_cny=Decimal("4.75"),
    )
    handle = backend_for(region, tmp_path).submit(job, "j-abc:1")
    child = region.jobs[handle]
    assert child.spec.budget_cny == Decimal("4.75")
    assert isinstance(child.spec.deadline, datetime)
    ahead = (child.spec.deadline - region.now).total_seconds()
    scale = region.network.time_scale
    assert abs(ahead - left_real * scale) < 5 * scale  # the same instant, in the child's clock
    # No deadline and no budget at the parent: none below either (not the user's "6h").
    plain = backend_for(region, tmp_path).submit(bjob(), "j-abc:2")
    assert region.jobs[plain].spec.deadline is None and region.jobs[plain].spec.budget_cny is None


def test_the_childs_datasets_are_reported_as_replicas_of_this_center(
    tmp_path: Path, region: Region
) -> None:
    backend = backend_for(region, tmp_path)
    assert backend.replicas() == []
    region.datasets["corpus"] = DatasetView(
        id="corpus", tenant=region.tenant, size_bytes=3, sha256="a" * 64, replicas=[]
    )
    ((dataset, report),) = backend.replicas()
    assert (dataset, report.path, report.sha256) == ("corpus", "region:corpus", "a" * 64)
    handle = backend.submit(bjob(spec=SPEC.model_copy(update={"inputs": ("corpus",)})), "j-x:1")
    assert list(region.jobs[handle].spec.inputs) == ["corpus"]
