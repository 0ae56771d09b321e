"""The app shell: docs, health, error bodies, settings and the network clock."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from computenet.errors import ValidationError
from computenet.model.center import CST
from computenet.server import NetworkClock, Settings
from computenet.server.app import field_path
from tests.unit.server.conftest import EPOCH, FakeTime, Net, make_net


def test_openapi_docs_are_served(net: Net) -> None:
    assert net.client.get("/docs").status_code == 200
    paths = net.client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/jobs", "/center/v1/lease", "/api/v1/bill"} <= set(paths)


def test_health_needs_no_token(net: Net) -> None:
    r = net.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["ok"] and r.json()["network"] == "demo"


def test_an_unknown_route_answers_with_an_error_body(net: Net) -> None:
    r = net.client.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]


def test_field_paths_read_like_the_job_file() -> None:
    assert field_path(("body", "spec", "chips", "count")) == "spec.chips.count"
    assert field_path(("body", "spec", "inputs", 2)) == "spec.inputs[2]"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(("body", "spec", "deadline", "datetime")) == "spec.deadline"


def test_the_network_clock_runs_time_scale_times_faster() -> None:
    fake = FakeTime(1000.0)
    clock = NetworkClock(EPOCH, 600, real=fake)
    fake.advance(6)
    assert clock.now() == EPOCH + timedelta(hours=1)
    assert clock.to_real(EPOCH + timedelta(hours=2)) == 1012.0
    assert clock.now().tzinfo is not None


def test_network_time_continues_across_restarts(db_url: str) -> None:
    fake = FakeTime()
    first = make_net(db_url, real_time=fake)
    net = next(first)
    fake.advance(60)  # 10 network hours at 600×
    before = net.plane.clock.now()
    first.close()
    second = make_net(db_url, real_time=fake, epoch=None)
    again = next(second)
    assert again.plane.clock.now() == before == EPOCH + timedelta(hours=10)
    second.close()


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(heartbeat_interval_s=5, lease_timeout_s=2)
    assert err.value.field == "lease_timeout_s"
    with pytest.raises(ValidationError):
        Settings(epoch=datetime(2026, 1, 1))
    with pytest.raises(ValidationError) as bad_profile:
        Settings(profile="cheapest-ever")
    assert bad_profile.value.field == "profile"
    with pytest.raises(ValidationError) as err2:
        Settings.from_options(network="/no/such/file.yaml")
    assert err2.value.field == "network"


def test_settings_from_options_parse_the_epoch() -> None:
    s = Settings.from_options(epoch="2026-06-01T00:00:00+08:00", port=9999)
    assert s.epoch == datetime(2026, 6, 1, tzinfo=CST) and s.port == 9999
    assert s.time_scale == 600
