"""Tenancy on a real server with real agents: a chip quota holds a job back with its reason
until the tenant's running job ends; a priority above the tenant's ceiling is capped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computenet.model import JobState
from tests.integration.test_agent_server import Net, job, running_net, until

pytestmark = pytest.mark.integration


@pytest.fixture
def net(tmp_path: Path, db_url: str) -> Iterator[Net]:
    with running_net(tmp_path, db_url) as n:
        yield n


def _admin(net: Net) -> httpx.Client:
    return httpx.Client(
        base_url=net.url, headers={"Authorization": f"Bearer {net.admin}"}, timeout=30
    )


def test_a_job_over_the_chip_quota_waits_with_the_reason_then_starts(
    net: Net, tmp_path: Path
) -> None:
    with _admin(net) as adm:
        r = adm.post(
            "/api/v1/admin/quotas",
            json={"tenant": "acme", "kind": "chips", "chip": "H100", "limit": 1},
        )
        assert r.status_code == 200, r.text
        bad = adm.post(
            "/api/v1/admin/quotas", json={"tenant": "acme", "kind": "chips", "limit": 1,
                                          "chip": "H999"},
        )  # fmt: skip
        assert (bad.status_code, bad.json()["field"]) == (422, "--chip"), bad.text
    go = tmp_path / "go"
    first = net.user.submit(job(f'while [ ! -f "{go}" ]; do sleep 0.1; done; echo first', ["H100"]))
    until(
        "the first job running",
        lambda: net.user.job(first.id).state is JobState.RUNNING,
        net,
    )
    second = net.user.submit(job("echo second", ["H100"]))
    # West has two H100s, one free: only the quota keeps the second job waiting.
    waiting = until(
        "the quota's reason on the second job",
        lambda: (
            (j := net.user.job(second.id)).reasons
            and any("tenant quota" in x for x in j.reasons)
            and j
        ),
        net,
    )
    assert waiting.state is JobState.PENDING
    assert "tenant quota: 1 of 1 H100 in use" in waiting.reasons
    standing = net.user.tenancy()
    (q,) = standing.quotas
    assert (q.kind, q.chip, int(q.used), int(q.limit)) == ("chips", "H100", 1, 1)
    go.write_text("")
    done = net.user.wait(second.id, poll_s=0.2, timeout_s=60)
    assert done.state is JobState.SUCCEEDED, net.logs()
    ran = net.user.job(first.id)
    assert ran.state is JobState.SUCCEEDED
    assert ran.finished_at is not None and done.started_at is not None
    assert done.started_at >= ran.finished_at  # it started only once the first had ended
    with _admin(net) as adm:
        actions = [e["action"] for e in adm.get("/api/v1/admin/audit").json()["entries"]]
    assert "quota.set" in actions


def test_a_priority_above_the_tenants_ceiling_is_capped_and_said_so(net: Net) -> None:
    with _admin(net) as adm:
        r = adm.post("/api/v1/admin/tenants/acme/share", json={"priority_ceiling": 3})
        assert r.status_code == 200, r.text
        assert r.json()["priority_ceiling"] == 3
    view = net.user.submit(job("echo hi", ["A100", "H100"], priority=9))
    detail = net.user.job(view.id)
    assert detail.spec.priority == 3
    assert any("priority 9 capped at 3" in e.message for e in detail.events), detail.events
    low = net.user.submit(job("echo hi", ["A100", "H100"], priority=2))
    assert net.user.job(low.id).spec.priority == 2
