"""Compute vouchers with a real server and real agents: bills, the cap, quotes, the budget.

The network is test_agent_server's (flat tariffs, `west` the cheaper H100 center),
at 600× network time; jobs run as local processes at the agents.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from computenet.catalog import load_network
from computenet.cli.supervise import cnet_argv
from computenet.metering import charge, fen
from computenet.model import JobState
from computenet.model.center import CST
from computenet.sdk import Client
from tests.integration.test_agent_server import Net, running_net, until

pytestmark = pytest.mark.integration


def spec(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "class": "llm-train",
        "command": command,
        "chips": {"count": 1, "types": ["H100"]},
        "work": {"cu_hours": 0.5},
        **extra,
    }


def network_now(net: Net) -> datetime:
    return datetime.fromisoformat(str(net.user.network()["now"])).astimezone(CST)


def issue(net: Net, tenant: str, cap: Decimal, *, start: datetime, until_: datetime) -> Any:
    r = httpx.post(
        f"{net.url}/api/v1/admin/vouchers",
        json={
            "tenant": tenant,
            "issuer": "Shanghai",
            "pct": "50",
            "cap_cny": str(cap),
            "centers": ["west"],
            "valid_from": start.isoformat(),
            "valid_until": until_.isoformat(),
        },
        headers={"Authorization": f"Bearer {net.admin}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return r.json()


def token_of(net: Net, tenant: str) -> str:
    """A new tenant's user token."""
    admin = Client(net.url, net.admin)
    try:
        admin.create_tenant(tenant)
        return str(admin.create_user("u", tenant).token)
    finally:
        admin.close()


def cnet(net: Net, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CNET_URL": net.url, "CNET_TOKEN": token, "COLUMNS": "250"}
    env["CNET_CONFIG"] = str(net.tmp / "no-config.json")
    return subprocess.run(
        cnet_argv(*args), capture_output=True, text=True, env=env, timeout=120, check=False
    )


def west_rate_per_network_s(network_file: Path) -> Decimal:
    """¥ per network second of one H100 llm-train job at `west` (flat tariff: a constant)."""
    n = load_network(str(network_file))
    t0 = datetime(2026, 12, 1, 12, tzinfo=CST)
    c = charge(n.center("west"), n.chips["H100"], n.throughput, "llm-train", 1, t0,
               t0 + timedelta(hours=10))  # fmt: skip
    return Decimal(c.total_cny) / Decimal(36_000)


def test_vouchers_pay_half_then_reach_the_cap_exactly_and_show_in_bills_and_quotes(
    tmp_path: Path, db_url: str
) -> None:
    with running_net(tmp_path, db_url) as net:
        now = network_now(net)
        # The cap: half of what 2 s (1200 network s) at west costs, so a first job of a
        # moment (`true`) is half paid, and a second of 4 s meets the rest of the cap.
        cap = fen(west_rate_per_network_s(net.network_file) * 1200 / 2)
        v = issue(net, "acme", cap, start=now - timedelta(days=1), until_=now + timedelta(days=30))
        first = net.user.wait(net.user.submit(spec("one", "true")).id, poll_s=0.2, timeout_s=60)
        assert first.state is JobState.SUCCEEDED and first.center == "west", net.logs()
        second = net.user.submit(spec("two", "sleep 4"))
        done = net.user.wait(second.id, poll_s=0.2, timeout_s=90)
        assert done.state is JobState.SUCCEEDED, net.logs()

        def billed() -> Any:
            b = net.user.bill(period=done.finished_at.astimezone(CST).strftime("%Y-%m"))
            return len(b.lines) == 2 and all(x.total_cny > 0 for x in b.lines) and b

        b = until("both jobs billed", billed, net)
        one, two = sorted(b.lines, key=lambda x: x.job_name)
        half = fen(one.total_cny / 2)
        assert half < cap, f"the first job ran too long for this test: ¥{one.total_cny}"
        assert [(s.voucher_id, s.amount_cny) for s in one.subsidies] == [(v["id"], half)]
        assert one.paid_cny == one.total_cny - half
        # The second job meets what is left of the cap, exactly to the fen.
        assert [s.amount_cny for s in two.subsidies] == [cap - half]
        assert fen(two.total_cny / 2) > cap - half
        assert two.paid_cny == two.total_cny - (cap - half)
        assert b.subsidy_cny == cap and b.paid_cny == b.total_cny - cap
        (balance,) = b.vouchers
        assert (balance.used_cny, balance.remaining_cny, balance.state) == (
            cap,
            Decimal("0.00"),
            "spent",
        )

        # `cnet bill` shows the subsidy lines and the balance.
        out = cnet(net, net.admin, "bill", "--tenant", "acme", "--period", b.period)
        assert out.returncode == 0, out.stderr
        assert "you pay ¥" in out.stdout
        assert f"voucher {v['id']} (Shanghai) pays ¥{half}" in out.stdout
        assert f"¥0.00 of ¥{cap} left" in out.stdout

        # Another tenant: an expired voucher applies nothing; a live one makes a budget
        # that only fits after the voucher good, and the quote shows before and after.
        beta_token = token_of(net, "beta")
        beta, gamma = Client(net.url, beta_token), Client(net.url, token_of(net, "gamma"))
        issue(net, "beta", Decimal("1000"), start=now - timedelta(days=9),
              until_=now - timedelta(days=1))  # fmt: skip
        late = beta.wait(beta.submit(spec("late", "true")).id, poll_s=0.2, timeout_s=60)
        assert late.state is JobState.SUCCEEDED, net.logs()
        issue(net, "beta", Decimal("100000"), start=now - timedelta(days=1),
              until_=now + timedelta(days=30))  # fmt: skip
        price = min(o.total_cny for o in beta.quote(spec("q", "true")).options if o.feasible)
        budget = fen(price * Decimal("0.7"))
        tight = spec("tight", "true", budget_cny=str(budget))
        q = beta.quote(tight)
        west = [o for o in q.options if o.center == "west"]
        assert west and all(o.paid_cny == o.total_cny - fen(o.total_cny / 2) for o in west)
        assert any(o.feasible for o in west)
        job_file = tmp_path / "tight.json"
        job_file.write_text(json.dumps(tight))
        out = cnet(net, beta_token, "quote", str(job_file))
        assert out.returncode == 0 and "you pay ¥" in out.stdout, out.stderr
        ok = beta.wait(beta.submit(tight).id, poll_s=0.2, timeout_s=60)
        assert ok.state is JobState.SUCCEEDED and ok.center == "west", net.logs()
        stuck = gamma.submit(tight)
        until("the cycle to give the budget reason", lambda: any(
            "budget" in r for r in gamma.job(stuck.id).reasons), net)  # fmt: skip
        assert gamma.job(stuck.id).state is JobState.PENDING
        lines = {x.job_name: x for x in beta.bill(period=b.period).lines}
        assert lines["late"].subsidies == [] and lines["late"].paid_cny == lines["late"].total_cny
        assert lines["tight"].paid_cny is not None and lines["tight"].paid_cny <= budget
        beta.close()
        gamma.close()
