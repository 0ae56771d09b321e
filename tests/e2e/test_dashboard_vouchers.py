"""The dashboard shows compute vouchers: on the bills page what each paid, what the tenant pays
and each voucher's balance; on the quote page the price after them (real server and agents)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Network
from tests.e2e.test_dashboard import JOB_YAML, SPEC, go, money, sign_in

pytestmark = pytest.mark.e2e

Shots = Callable[[Any, str], Path]

JOB = {
    "name": "e2e-subsidised",
    "class": "cv-train",
    "command": "echo subsidised",
    "chips": {"count": 2},
    "work": {"cu_hours": 0.2},
}


def test_the_bills_page_shows_subsidy_lines_what_the_tenant_pays_and_balances(
    page: Any, network: Network, shots: Shots
) -> None:
    with network.api("admin") as adm:
        adm.post("/api/v1/admin/tenants", json={"name": "initech"}).raise_for_status()
        r = adm.post("/api/v1/admin/users", json={"name": "carol", "tenant": "initech"})
        r.raise_for_status()
        network.tokens["carol"] = r.json()["token"]
        now = datetime.fromisoformat(adm.get("/api/v1/network").json()["now"])
        v = adm.post(
            "/api/v1/admin/vouchers",
            json={
                "tenant": "initech",
                "issuer": "Shanghai",
                "pct": "80",
                "cap_cny": "1000000",
                "valid_from": (now - timedelta(days=1)).isoformat(),
                "valid_until": (now + timedelta(days=30)).isoformat(),
            },
        )
        assert v.status_code == 201, v.text
    with network.api("carol") as carol:
        job_id = carol.post("/api/v1/jobs", json={"spec": JOB}).json()["id"]
        deadline = time.monotonic() + 120
        while carol.get(f"/api/v1/jobs/{job_id}").json()["state"] != "SUCCEEDED":
            assert time.monotonic() < deadline, carol.get(f"/api/v1/jobs/{job_id}").json()
            time.sleep(0.3)
        deadline = time.monotonic() + 30
        while (
            not (bill := carol.get("/api/v1/bill").json())["lines"][0:1]
            or not bill["lines"][0]["subsidies"]
        ):
            assert time.monotonic() < deadline, bill
            time.sleep(0.3)
    (line,) = bill["lines"]
    subsidy = Decimal(line["subsidy_cny"])
    assert subsidy > 0 and Decimal(line["paid_cny"]) == Decimal(line["total_cny"]) - subsidy

    sign_in(page, network, "carol")
    go(page, "bills")
    paid = page.get_by_test_id("bill-paid")
    paid.wait_for()
    assert money(paid.inner_text()) == Decimal(bill["paid_cny"])
    assert money(page.get_by_test_id("bill-total").inner_text()) == Decimal(bill["total_cny"])
    lines = page.get_by_role("table", name="Bill lines")
    assert "you pay" in lines.inner_text().lower()
    sub = page.get_by_test_id("bill-subsidies").first.inner_text()
    assert "Shanghai" in sub and money(sub.split("−")[1]) == subsidy
    vouchers = page.get_by_role("table", name="Compute vouchers")
    assert "Shanghai" in vouchers.inner_text() and "active" in vouchers.inner_text()
    left = money(page.get_by_test_id("voucher-left").first.inner_text())
    assert left == Decimal("1000000") - subsidy
    shots(page, "bills-vouchers")

    # The quote page shows the price after the voucher (80 %) next to the price.
    go(page, "quote")
    page.get_by_label(SPEC).fill(JOB_YAML)
    page.get_by_role("button", name="Get quote").click()
    options = page.get_by_role("table", name="Quote options")
    options.wait_for()
    assert "you pay" in options.inner_text().lower()
    for row in options.locator("tbody tr").all():
        total = money(row.locator("td.num.strong").first.inner_text())
        paid = money(row.get_by_test_id("quote-paid").inner_text().split("vouchers")[0])
        assert paid == total - (total * Decimal("0.8")).quantize(Decimal("0.01"))
    shots(page, "quote-vouchers")
