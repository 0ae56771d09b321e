"""The dashboard's bills page shows the tenant's quotas with their use and its fair-share
standing (a real browser against a real server and agents)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Network
from tests.e2e.test_dashboard import go, sign_in

pytestmark = pytest.mark.e2e

Shots = Callable[[Any, str], Path]


def test_the_bills_page_shows_quotas_and_fair_share_standing(
    page: Any, network: Network, shots: Shots
) -> None:
    with network.api("admin") as adm:
        adm.post("/api/v1/admin/tenants", json={"name": "umbrella"}).raise_for_status()
        r = adm.post("/api/v1/admin/users", json={"name": "dana", "tenant": "umbrella"})
        r.raise_for_status()
        network.tokens["dana"] = r.json()["token"]
        q = adm.post(
            "/api/v1/admin/quotas",
            json={"tenant": "umbrella", "kind": "chips", "chip": "H100", "limit": 16},
        )
        assert q.status_code == 200, q.text
        s = adm.post(
            "/api/v1/admin/tenants/umbrella/share", json={"weight": 2, "priority_ceiling": 4}
        )
        assert s.status_code == 200, s.text
    sign_in(page, network, "dana")
    go(page, "bills")
    quotas = page.get_by_role("table", name="Quotas")
    quotas.wait_for()
    text = quotas.inner_text()
    assert "16 H100 in use" in text and "16" in text
    standing = page.get_by_test_id("tenancy-standing").inner_text()
    assert "Weight 2" in standing and "Priority ceiling: 4" in standing
    shots(page, "bills-tenancy")
