"""Compute vouchers on the control plane: issuing, bills, re-metering, quotes, the budget check."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from computenet.metering import charge, fen
from computenet.model.center import CST
from computenet.store.accounts import list_audit
from tests.unit.server.conftest import EPOCH, Net, job_spec

H100 = {"count": 2, "types": ["H100"]}


def issue(net: Net, **over: Any) -> Any:
    body: dict[str, Any] = {
        "tenant": "acme",
        "issuer": "Shanghai",
        "pct": "50",
        "cap_cny": "100",
        "valid_from": "2026-11-01",
        "valid_until": "2026-12-31",
    }
    body.update(over)
    return net.client.post("/api/v1/admin/vouchers", json=body, headers=net.admin)


def start_job(net: Net, spec: dict[str, Any]) -> tuple[str, int]:
    job_id = net.submit(spec).json()["id"]
    return job_id, net.run_to_running("zhongwei", job_id)


def expected_charge(net: Net, job_id: str, run_real_s: float) -> Decimal:
    """The charge of a running 2×H100 llm-train job at zhongwei if it ends after `run_real_s`."""
    start = datetime.fromisoformat(net.job(job_id)["started_at"])
    end = start + timedelta(seconds=run_real_s * net.plane.clock.time_scale)
    n = net.plane.network
    return charge(
        n.center("zhongwei"), n.chips["H100"], n.throughput, "llm-train", 2, start, end
    ).total_cny


def finish(net: Net, job_id: str, attempt: int, run_real_s: float) -> None:
    net.time.advance(run_real_s)
    assert net.report("zhongwei", job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200


def usage(net: Net, job_id: str, attempt: int) -> None:
    r = net.client.post(
        f"/center/v1/jobs/{job_id}/usage",
        json={"attempt": attempt, "run_real_s": 6.0},
        headers=net.center("zhongwei"),
    )
    assert r.status_code == 200, r.text


def bill(net: Net) -> dict[str, Any]:
    r = net.client.get("/api/v1/bill?period=2026-11", headers=net.user())
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_half_paid_then_the_cap_reached_exactly_and_a_retried_report_changes_nothing(
    net: Net,
) -> None:
    net.register("zhongwei")
    net.user()  # creates tenant acme
    first, a1 = start_job(net, job_spec(name="one", chips=H100))
    c1 = expected_charge(net, first, 6.0)
    half = fen(c1 / 2)
    cap = half + Decimal("0.37")
    v = issue(net, cap_cny=str(cap))
    assert v.status_code == 201, v.text
    vid = v.json()["id"]
    finish(net, first, a1, 6.0)
    second, a2 = start_job(net, job_spec(name="two", chips=H100))
    finish(net, second, a2, 6.0)

    b = bill(net)
    one, two = b["lines"]
    assert Decimal(one["total_cny"]) == c1
    assert one["subsidies"] == [{"voucher_id": vid, "issuer": "Shanghai", "amount_cny": str(half)}]
    assert Decimal(one["paid_cny"]) == c1 - half
    # The second job meets what is left of the cap: exactly ¥0.37, to the fen.
    assert [Decimal(x["amount_cny"]) for x in two["subsidies"]] == [Decimal("0.37")]
    assert Decimal(two["paid_cny"]) == Decimal(two["total_cny"]) - Decimal("0.37")
    assert Decimal(b["subsidy_cny"]) == cap
    assert Decimal(b["paid_cny"]) == Decimal(b["total_cny"]) - cap
    (balance,) = b["vouchers"]
    assert Decimal(balance["used_cny"]) == cap
    assert Decimal(balance["remaining_cny"]) == Decimal("0.00")
    assert balance["state"] == "spent"

    # A usage report sent again (a retry) re-meters both jobs: nothing is applied twice.
    usage(net, first, a1)
    usage(net, second, a2)
    usage(net, first, a1)
    again = bill(net)
    assert [x["subsidies"] for x in again["lines"]] == [one["subsidies"], two["subsidies"]]
    assert Decimal(again["vouchers"][0]["used_cny"]) == cap


def test_an_expired_voucher_applies_nothing(net: Net) -> None:
    net.register("zhongwei")
    net.user()
    assert issue(net, valid_from="2026-10-01", valid_until="2026-11-01").status_code == 201
    job, attempt = start_job(net, job_spec(chips=H100))
    finish(net, job, attempt, 6.0)
    (line,) = bill(net)["lines"]
    assert line["subsidies"] == []
    assert Decimal(line["paid_cny"]) == Decimal(line["total_cny"]) > 0
    assert bill(net)["vouchers"][0]["state"] == "expired"


def test_a_voucher_for_another_center_or_class_applies_nothing(net: Net) -> None:
    net.register("zhongwei")
    net.user()
    assert issue(net, centers=["shanghai"]).status_code == 201
    assert issue(net, classes=["cv-train"]).status_code == 201
    job, attempt = start_job(net, job_spec(chips=H100))
    finish(net, job, attempt, 6.0)
    assert bill(net)["lines"][0]["subsidies"] == []


def test_a_quote_shows_the_price_before_and_after_vouchers(net: Net) -> None:
    net.register("zhongwei")
    net.register("shanghai")
    net.user()
    assert issue(net, centers=["zhongwei"], pct="40", cap_cny="100000").status_code == 201
    two_kinds = {"count": 2, "types": ["H100", "A100"]}
    q = net.client.post("/api/v1/quote", json=job_spec(chips=two_kinds), headers=net.user())
    assert q.status_code == 200, q.text
    opts = q.json()["options"]
    assert {o["center"] for o in opts} >= {"zhongwei", "shanghai"}
    for o in opts:
        total = Decimal(o["total_cny"])
        subsidy = fen(total * Decimal("0.4")) if o["center"] == "zhongwei" else Decimal(0)
        assert Decimal(o["subsidy_cny"]) == subsidy
        assert Decimal(o["paid_cny"]) == total - subsidy
    # Another tenant's quote shows no subsidy.
    other = net.client.post(
        "/api/v1/quote", json=job_spec(chips=two_kinds), headers=net.user("bob", "beta")
    ).json()
    assert all(Decimal(o["subsidy_cny"]) == 0 for o in other["options"])


def test_a_budget_that_fits_only_after_the_voucher_lets_the_job_run(net: Net) -> None:
    net.register("zhongwei")
    net.user()
    bob = net.user("bob", "beta")
    q = net.client.post("/api/v1/quote", json=job_spec(chips=H100), headers=net.user()).json()
    cheapest = min(Decimal(o["total_cny"]) for o in q["options"] if o["feasible"])
    budget = fen(cheapest * Decimal("0.7"))  # under the price, over half of it
    spec = job_spec(chips=H100, budget_cny=str(budget))
    theirs = net.submit(spec, who=bob).json()["id"]
    assert issue(net, pct="50", cap_cny="100000").status_code == 201
    ours = net.submit(spec).json()["id"]
    net.tick()
    assert net.job(ours)["state"] == "SCHEDULED"
    left = net.job(theirs, who=bob)
    assert left["state"] == "PENDING"
    assert any("budget" in r for r in left["reasons"]), left["reasons"]
    # The quote agrees: feasible for the voucher holder, not for the other tenant.
    assert any(
        o["feasible"]
        for o in net.client.post("/api/v1/quote", json=spec, headers=net.user()).json()["options"]
    )
    other = net.client.post("/api/v1/quote", json=spec, headers=bob).json()
    assert not any(o["feasible"] for o in other["options"])
    assert any("budget" in r for r in other["infeasible_reasons"])


def test_a_spent_voucher_no_longer_helps_the_budget(net: Net) -> None:
    net.register("zhongwei")
    net.user()
    q = net.client.post("/api/v1/quote", json=job_spec(chips=H100), headers=net.user()).json()
    cheapest = min(Decimal(o["total_cny"]) for o in q["options"] if o["feasible"])
    # A 50 % voucher with only ¥0.01 left cannot bring the price under 70 % of it.
    assert issue(net, pct="50", cap_cny="0.01").status_code == 201
    job = net.submit(job_spec(chips=H100, budget_cny=str(fen(cheapest * Decimal("0.7")))))
    net.tick()
    detail = net.job(job.json()["id"])
    assert detail["state"] == "PENDING"
    assert any("after your vouchers" in r for r in detail["reasons"]), detail["reasons"]


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"pct": "0"}, "pct"),
        ({"pct": "100.5"}, "pct"),
        ({"pct": "12.345"}, "pct"),
        ({"cap_cny": "0"}, "cap_cny"),
        ({"cap_cny": "1.001"}, "cap_cny"),
        ({"cap_cny": "NaN"}, "cap_cny"),
        ({"valid_until": "2026-10-01"}, "valid_until"),
        ({"valid_from": "soon"}, "valid_from"),
        ({"centers": ["atlantis"]}, "centers[0]"),
        ({"classes": ["poetry"]}, "classes[0]"),
        ({"tenant": "nobody"}, "tenant"),
        ({"issuer": "  "}, "issuer"),
    ],
)
def test_bad_terms_are_refused_naming_the_field(net: Net, over: dict[str, Any], field: str) -> None:
    net.user()
    r = issue(net, **over)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_issuing_is_for_admins_and_audited(net: Net) -> None:
    net.user()
    r = net.client.post(
        "/api/v1/admin/vouchers",
        json={
            "tenant": "acme",
            "issuer": "x",
            "pct": "1",
            "cap_cny": "1",
            "valid_from": "2026-11-01",
            "valid_until": "2026-11-02",
        },
        headers=net.user(),
    )
    assert r.status_code == 403
    v = issue(net, valid_until="2026-11-30").json()
    # A date means through that day, CST.
    assert datetime.fromisoformat(v["valid_until"]) == datetime(2026, 12, 1, tzinfo=CST)
    assert v["state"] == "active" and v["issued_by"] == "admin"
    with net.plane.db.read() as s:
        (row,) = [a for a in list_audit(s, 50, None) if a.action == "voucher.issue"]
    assert row.actor == "admin" and row.target == f"voucher:{v['id']}"
    assert row.detail["cap_cny"] == "100.00"
    listed = net.client.get("/api/v1/admin/vouchers?tenant=acme", headers=net.admin).json()
    assert [x["id"] for x in listed] == [v["id"]]
    mine = net.client.get("/api/v1/vouchers", headers=net.user()).json()
    assert [x["id"] for x in mine] == [v["id"]]
    assert net.client.get("/api/v1/vouchers", headers=net.user("bob", "beta")).json() == []
    assert EPOCH.month == 11  # the dates above are around the test network's epoch
