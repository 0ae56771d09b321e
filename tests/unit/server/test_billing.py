"""Metering finished jobs into charges and bills: exact money, by center, per tenant and month."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from computenet.metering import TransferLot, charge
from tests.unit.server.conftest import Net, job_spec

H100 = {"count": 2, "types": ["H100"]}
DATA = {
    "id": "corpus",
    "center": "shanghai",
    "path": "tenants/acme/corpus.bin",
    "size_bytes": 5_000_000,
    "sha256": "ab" * 32,
}


def run_job(
    net: Net, real_run_s: float, spec: dict[str, Any], usage: dict[str, Any] | None = None
) -> str:
    job_id = net.submit(spec).json()["id"]
    attempt = net.run_to_running("zhongwei", job_id)
    net.time.advance(real_run_s)
    if usage is not None:
        r = net.client.post(
            f"/center/v1/jobs/{job_id}/usage",
            json={"attempt": attempt, "run_real_s": real_run_s, **usage},
            headers=net.center("zhongwei"),
        )
        assert r.status_code == 200, r.text
    assert net.report("zhongwei", job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200
    return job_id


def test_a_finished_job_is_priced_from_network_times_and_the_path_of_its_data(net: Net) -> None:
    net.register("zhongwei")
    net.register("shanghai")
    net.client.post("/api/v1/datasets", json=DATA, headers=net.user())
    job_id = run_job(
        net,
        12.0,  # real seconds = 2 network hours at 600×
        job_spec(chips=H100, inputs=["corpus"]),
        {"bytes_staged": 5_000_000, "staged_from": "shanghai", "staging_real_s": 1.0},
    )
    job = net.job(job_id)
    start = datetime.fromisoformat(job["started_at"])
    end = datetime.fromisoformat(job["finished_at"])
    assert (end - start).total_seconds() == 7200.0
    network = net.plane.network
    expected = charge(
        network.center("zhongwei"),
        network.chips["H100"],
        network.throughput,
        "llm-train",
        2,
        start,
        end,
        transfers=[
            TransferLot.of_bytes(5_000_000, "shanghai", Decimal("0.05"), network.data_scale)
        ],
    )
    (line,) = net.client.get("/api/v1/bill?period=2026-11", headers=net.user()).json()["lines"]
    assert Decimal(line["total_cny"]) == expected.total_cny
    assert Decimal(line["transfer_cny"]) == expected.transfer_cny == Decimal("0.50")
    assert Decimal(job["cost_cny"]) == expected.total_cny


def test_bill_totals_equal_the_sum_of_lines(net: Net) -> None:
    net.register("zhongwei")
    for i, secs in enumerate((3.3, 7.1, 12.9)):
        run_job(net, secs, job_spec(name=f"j{i}", chips=H100))
    bill = net.client.get("/api/v1/bill", headers=net.user()).json()
    assert bill["tenant"] == "acme" and bill["period"] == "2026-11"
    lines = bill["lines"]
    assert len(lines) == 3
    for part in ("energy_cny", "service_cny", "transfer_cny", "total_cny"):
        assert Decimal(bill[part]) == sum(Decimal(x[part]) for x in lines)
    for x in lines:
        assert Decimal(x["total_cny"]) == sum(
            Decimal(x[p]) for p in ("energy_cny", "service_cny", "transfer_cny")
        )
    assert {k: Decimal(v) for k, v in bill["by_center"].items()} == {
        "zhongwei": Decimal(bill["total_cny"])
    }
    assert Decimal(bill["total_cny"]) > 0


def test_a_bill_shows_only_the_callers_tenant(net: Net) -> None:
    net.register("zhongwei")
    run_job(net, 6.0, job_spec(chips=H100))
    bob = net.user("bob", "beta")
    assert net.client.get("/api/v1/bill", headers=bob).json()["lines"] == []
    r = net.client.get("/api/v1/bill?tenant=acme", headers=bob)
    assert r.status_code == 403 and r.json()["field"] == "tenant"
    as_admin = net.client.get("/api/v1/bill?tenant=acme", headers=net.admin).json()
    assert len(as_admin["lines"]) == 1


def test_a_bill_is_per_month(net: Net) -> None:
    net.register("zhongwei")
    run_job(net, 6.0, job_spec(chips=H100))
    assert net.client.get("/api/v1/bill?period=2026-10", headers=net.user()).json()["lines"] == []
    r = net.client.get("/api/v1/bill?period=2026-13", headers=net.user())
    assert r.status_code == 422 and r.json()["field"] == "period"
    r = net.client.get("/api/v1/bill", headers=net.admin)
    assert r.status_code == 422 and r.json()["field"] == "tenant"


def test_a_job_cancelled_before_it_ran_is_not_billed(net: Net) -> None:
    job_id = net.submit(job_spec()).json()["id"]
    net.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=net.user())
    assert net.client.get("/api/v1/bill", headers=net.user()).json()["lines"] == []
