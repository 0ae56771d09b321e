"""On the server, a job that runs exactly to plan is billed what its placement estimated."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.helpers.db import fresh_db_url
from tests.unit.server.conftest import Net, job_spec, make_net

FEN = Decimal("0.01")


def _dataset(net: Net, name: str, center: str, size: int) -> None:
    body = {
        "id": name,
        "center": center,
        "path": f"tenants/acme/{name}.bin",
        "size_bytes": size,
        "sha256": "ab" * 32,
    }
    r = net.client.post("/api/v1/datasets", json=body, headers=net.user())
    assert r.status_code in (200, 201), r.text


def _run_to_plan(net: Net, job_id: str, cid: str, sizes: dict[str, int]) -> dict[str, Any]:
    """Lease the job, stage, run and finish it exactly when its placement says."""
    net.tick()
    detail = net.job(job_id)
    pl = detail["placement"]
    assert pl is not None and pl["center"] == cid, detail["reasons"]
    scale = net.plane.clock.time_scale

    def wait_until(t: datetime) -> None:
        dt = (t - net.plane.clock.now()).total_seconds()
        assert dt >= -1e-3
        net.time.advance(max(dt, 0.0) / scale)

    wait_until(datetime.fromisoformat(pl["planned_start"]))
    net.heartbeat(cid)
    leased = {j["job_id"]: j for j in net.lease(cid)}
    attempt = int(leased[job_id]["attempt"])
    assert net.report(cid, job_id, attempt, "STAGING").status_code == 200
    net.time.advance(float(pl["transfer_s"]) / scale)
    assert net.report(cid, job_id, attempt, "RUNNING").status_code == 200
    net.time.advance(float(pl["run_s"]) / scale)
    per_source: dict[str, int] = {}
    for d, src in pl["source_replicas"].items():
        per_source[src] = per_source.get(src, 0) + sizes[d]
    usage = {
        "attempt": attempt,
        "run_real_s": float(pl["run_s"]) / scale,
        "bytes_staged": sum(per_source.values()),
        "staged_from": max(per_source, key=lambda c: per_source[c]) if per_source else None,
        "transfers": [{"source": c, "bytes": n} for c, n in per_source.items()],
    }
    r = net.client.post(f"/center/v1/jobs/{job_id}/usage", json=usage, headers=net.center(cid))
    assert r.status_code == 200, r.text
    assert net.report(cid, job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200
    return net.job(job_id)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.generate],  # a server per example: too slow to shrink
)
@given(
    cu=st.floats(min_value=0.05, max_value=6.0),
    count=st.integers(min_value=1, max_value=4),
    wait_h=st.floats(min_value=0.0, max_value=20.0),
    sizes=st.tuples(
        st.integers(min_value=0, max_value=40_000_000),
        st.integers(min_value=0, max_value=40_000_000),
    ),
)
def test_a_job_that_runs_to_plan_is_billed_its_estimate_within_a_fen(
    tmp_path_factory: pytest.TempPathFactory,
    cu: float,
    count: int,
    wait_h: float,
    sizes: tuple[int, int],
) -> None:
    for net in make_net(fresh_db_url(tmp_path_factory.mktemp("plan"))):
        for cid in ("zhongwei", "shanghai", "guian"):
            net.register(cid)
        # Two inputs from two centers: two transfer lots, each at its own path's price.
        size = {"east": max(sizes[0], 1), "south": max(sizes[1], 1)}
        _dataset(net, "east", "shanghai", size["east"])
        _dataset(net, "south", "guian", size["south"])
        net.time.advance(wait_h * 3600 / net.plane.clock.time_scale)
        for cid in ("zhongwei", "shanghai", "guian"):
            net.heartbeat(cid)
        spec = job_spec(
            chips={"count": count, "types": ["H100"]},
            work={"cu_hours": cu},
            inputs=["east", "south"],
        )
        job_id = net.submit(spec).json()["id"]
        done = _run_to_plan(net, job_id, "zhongwei", size)
        assert done["state"] == "SUCCEEDED"
        assert set(done["placement"]["source_replicas"].values()) == {"shanghai", "guian"}
        estimated, billed = Decimal(done["estimated_cny"]), Decimal(done["cost_cny"])
        assert abs(billed - estimated) <= FEN, (estimated, billed)
