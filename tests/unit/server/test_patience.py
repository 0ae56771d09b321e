"""The server's patience: a job without a deadline is held at most that long; quotes say so."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from computenet.errors import ValidationError
from computenet.server import Settings
from tests.unit.server.conftest import EPOCH, job_spec, make_net


def _held_h(planned_start: str) -> float:
    return (datetime.fromisoformat(planned_start) - EPOCH).total_seconds() / 3600.0


@pytest.mark.parametrize("strategy", ["greedy", "batch-optimizer"])
def test_the_server_holds_a_job_without_a_deadline_at_most_its_patience(
    db_url: str, strategy: str
) -> None:
    # At 10:00 on `demo` the night valley is 13 h away: only the patience stops a wait for it.
    held: dict[float, float] = {}
    for patience in (0.0, 2.0, 24.0):
        for net in make_net(db_url, strategy=strategy, patience_h=patience):
            for c in net.plane.network.centers:
                net.register(c.id)
            job_id = net.submit(job_spec(), key=f"p{patience}").json()["id"]
            net.tick()
            job = net.job(job_id)
            assert job["state"] == "SCHEDULED", job["reasons"]
            held[patience] = _held_h(job["placement"]["planned_start"])
    assert held[0.0] == 0.0
    assert 0.0 <= held[2.0] <= 2.0
    assert held[24.0] > 2.0  # the limit binds: with more patience it waits longer


def test_a_quote_says_how_long_a_job_without_a_deadline_may_wait(db_url: str) -> None:
    for net in make_net(db_url, patience_h=2.5):
        for c in net.plane.network.centers:
            net.register(c.id)
        r = net.client.post("/api/v1/quote", json=job_spec(), headers=net.user())
        assert r.status_code == 200, r.text
        q = r.json()
        assert any("up to 2.5 h for cheaper power" in n for n in q["notes"]), q["notes"]
        assert all(_held_h(o["planned_start"]) <= 2.5 for o in q["options"])
        r = net.client.post("/api/v1/quote", json=job_spec(deadline="12h"), headers=net.user())
        assert r.status_code == 200 and r.json()["notes"] == []


@pytest.mark.parametrize("bad", [-0.5, 25.0, math.nan, math.inf])
def test_a_bad_patience_is_refused_at_startup(bad: float) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(patience_h=bad, run_loop=False)
    assert err.value.field == "patience_h"
