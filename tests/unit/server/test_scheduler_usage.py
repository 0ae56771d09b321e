"""The usage report's optional `scheduler` record (Slurm's sacct): kept, shown, not billed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.server.conftest import Net, job_spec, make_net

CID = "zhongwei"
H100 = {"count": 1, "types": ["H100"]}
SACCT = {
    "scheduler": "slurm",
    "job_id": "4242",
    "state": "COMPLETED",
    "exit_code": 0,
    "elapsed_s": 5000,  # far from run_real_s: billing must not follow it
    "cpu_s": 10000,
    "cpus": 2,
    "gpus": 1,
    "mem_mb": 1024,
    "time_limit_s": 6000,
}


@pytest.fixture
def net(db_url: str) -> Iterator[Net]:
    """The demo control plane with jobs started at once."""
    yield from make_net(db_url, patience_h=0)


def test_scheduler_usage_is_kept_with_the_job_and_changes_no_charge(net: Net) -> None:
    net.register(CID)
    ids = [net.submit(job_spec(chips=H100)).json()["id"] for _ in range(2)]
    net.tick()
    leased = {j["job_id"]: int(j["attempt"]) for j in net.lease(CID)}
    assert set(ids) <= set(leased)
    for job_id, extra in zip(ids, ({"scheduler": SACCT}, {}), strict=True):
        attempt = leased[job_id]
        assert net.report(CID, job_id, attempt, "RUNNING").status_code == 200
        body = {"attempt": attempt, "run_real_s": 1.0, **extra}
        r = net.client.post(f"/center/v1/jobs/{job_id}/usage", json=body, headers=net.center(CID))
        assert r.status_code == 200, r.text
        assert net.report(CID, job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200
    with_sacct, without = (net.job(i) for i in ids)
    assert with_sacct["usage"]["scheduler"] == "slurm"
    assert with_sacct["usage"]["scheduler_elapsed_s"] == 5000
    assert with_sacct["usage"]["scheduler_state"] == "COMPLETED"
    assert with_sacct["usage"]["scheduler_cpus"] == 2
    assert not any(k.startswith("scheduler") for k in without["usage"])
    assert with_sacct["cost_cny"] is not None
    assert with_sacct["cost_cny"] == without["cost_cny"]  # billed on run_real_s, as before


def test_a_bad_scheduler_record_is_refused_naming_the_field(net: Net) -> None:
    net.register(CID)
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    (leased,) = net.lease(CID)
    attempt = int(leased["attempt"])
    assert net.report(CID, job_id, attempt, "RUNNING").status_code == 200
    body = {"attempt": attempt, "run_real_s": 1.0, "scheduler": {**SACCT, "elapsed_s": -1}}
    r = net.client.post(f"/center/v1/jobs/{job_id}/usage", json=body, headers=net.center(CID))
    assert r.status_code == 422 and "elapsed_s" in r.text, r.text
