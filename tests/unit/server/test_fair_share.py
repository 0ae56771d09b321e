"""Fair share in the server's cycle: plans one tenant made ahead while alone are given back
when another tenant waits, and the next chips that free go to the tenant with less usage."""

from __future__ import annotations

from tests.unit.server.conftest import Net, job_spec


def _h100_job(name: str) -> dict[str, object]:
    return job_spec(name=name, chips={"count": 8, "types": ["H100"]}, work={"cu_hours": 20})


def test_a_returning_tenant_gets_the_next_free_chips_and_plans_ahead_are_given_back(
    net: Net,
) -> None:
    net.register("zhongwei")  # the only center online: 8 H100
    acme, beta = net.user("ann", "acme"), net.user("bob", "beta")
    ids = [net.submit(_h100_job(f"a{i}"), acme).json()["id"] for i in range(3)]
    net.tick()
    # Alone, acme's jobs are planned one after the other (chips reserved ahead).
    assert all(net.job(j, acme)["state"] == "SCHEDULED" for j in ids)
    (leased,) = net.lease("zhongwei")  # the one that starts now
    now_id = leased["job_id"]
    later = [j for j in ids if j != now_id]
    attempt = int(leased["attempt"])
    for state in ("STAGING", "RUNNING"):
        assert net.report("zhongwei", now_id, attempt, state).status_code == 200
    late = net.submit(_h100_job("b0"), beta).json()["id"]
    net.tick()
    # beta waits: acme's plans ahead are given back and nobody holds the next chips.
    for j in later:
        got = net.job(j, acme)
        assert got["state"] == "PENDING", got
        assert any("fair share" in e["message"] for e in got["events"])
    waiting = net.job(late, beta)
    assert waiting["state"] == "PENDING"
    assert waiting["reasons"][0].startswith("fair share: waiting for chips free now")
    # The running job ends after a while (metered usage): the chips go to beta (no usage
    # yet), not to acme's next job.
    net.time.advance(600.0)
    assert net.report("zhongwei", now_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200
    net.heartbeat("zhongwei")
    net.tick()
    assert net.job(late, beta)["state"] == "SCHEDULED", net.job(late, beta)["reasons"]
    assert [net.job(j, acme)["state"] for j in later] == ["PENDING", "PENDING"]
    assert net.job(now_id, acme)["state"] == "SUCCEEDED"  # nothing running was stopped
