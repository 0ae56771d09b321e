"""The server's cycle runs the strategy its settings name, registered or built in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from computenet.errors import ValidationError
from computenet.server import Settings
from tests.helpers.strategies import counting_greedy
from tests.unit.server.conftest import job_spec, make_net

CALLS: list[int] = []


@pytest.fixture
def counting() -> Iterator[str]:
    """A strategy registered for the test: greedy, counting its cycles."""
    global CALLS
    with counting_greedy("counting") as calls:
        CALLS = calls
        yield "counting"


def test_the_cycle_runs_the_strategy_the_settings_name(db_url: str, counting: str) -> None:
    for net in make_net(db_url, strategy=counting):
        for c in net.plane.network.centers:
            net.register(c.id)
        job_id = net.submit(job_spec()).json()["id"]
        net.tick()
        assert CALLS == [1]
        assert net.job(job_id)["state"] == "SCHEDULED"


def test_the_batch_optimizer_is_a_server_setting(db_url: str) -> None:
    for net in make_net(db_url, strategy="batch-optimizer"):
        for c in net.plane.network.centers:
            net.register(c.id)
        ids = [net.submit(job_spec()).json()["id"] for _ in range(3)]
        net.tick()
        jobs = [net.job(j) for j in ids]
        assert {j["state"] for j in jobs} == {"SCHEDULED"}
        assert all(j["reasons"][0].startswith("batch optimizer") for j in jobs)


def test_an_unknown_strategy_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(strategy="nope", run_loop=False)
    assert err.value.field == "strategy"
