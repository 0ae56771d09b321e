"""The service file: what is accepted, what is refused (naming the field), the replica job."""

from __future__ import annotations

import pytest

from computenet.errors import ValidationError
from computenet.model.service import REPLICA_ENV, SERVICE_ENV, parse_service_text
from computenet.server.services import restart_delay_s

GOOD = """
name: chat
command: python3 serve.py
chips: {count: 2, types: [H100]}
replicas: {min: 0, max: 4}
target_inflight: 8
latency: {p99_ttfb_ms: 300}
budget_cny_per_hour: 120
residency: [east]
"""


def test_a_full_service_file_is_read_and_its_replica_is_an_inference_job() -> None:
    spec = parse_service_text(GOOD)
    assert (spec.replicas.min, spec.replicas.max, spec.target_inflight) == (0, 4, 8)
    job = spec.replica_job(3, center="east")
    assert job.workload_class == "inference" and job.latency_class == "interactive"
    assert job.env[SERVICE_ENV] == "chat" and job.env[REPLICA_ENV] == "3"
    assert (job.chips.count, job.chips.types, job.center) == (2, ("H100",), "east")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("name: Chat\ncommand: x", "name", "not a service name"),
        ("name: c\ncommand: x\nreplicas: {min: 3, max: 2}", "replicas", "below min"),
        ("name: c\ncommand: x\nreplicas: {min: -1}", "replicas.min", "greater than or equal"),
        ("name: c\ncommand: x\nchips: {count: 0}", "chips.count", "greater than or equal"),
        ("name: c\ncommand: x\nlatency: {p99_ttfb_ms: 0}", "latency.p99_ttfb_ms", "greater"),
        ("name: c\ncommand: x\nport: 80", "port", "Extra inputs"),
        ("name: c", "command", "required"),
        ("- a list", "svc.yaml", "YAML mapping"),
        ("name: [", "svc.yaml", "not valid YAML"),
    ],
)
def test_bad_service_files_are_refused_naming_the_field(text: str, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_service_text(text, where="svc.yaml")
    assert err.value.field == field
    assert words in err.value.message


def test_a_failing_replica_is_restarted_at_once_then_after_doubling_delays() -> None:
    assert [restart_delay_s(n) for n in range(1, 10)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


def test_autoscaling_follows_demand_after_its_delays_and_stays_within_min_max() -> None:
    from computenet.model.service import replicas_for
    from computenet.server.services import autoscale
    from computenet.store.schema import ServiceRow

    spec = parse_service_text(
        "name: c\ncommand: x\nreplicas: {min: 1, max: 4}\ntarget_inflight: 2\n"
        "autoscale: {up_delay_s: 30, down_delay_s: 600}"
    )
    assert [replicas_for(spec, x) for x in (0, 1, 2, 2.1, 5, 100)] == [1, 1, 1, 2, 3, 4]
    row = ServiceRow(name="c", wanted=1, load={"gw": [6.0, 1000.0]})
    autoscale(row, spec, 1000.0)
    assert (row.wanted, row.above_since) == (1, 1000.0)  # demand for 3: not yet
    row.load = {"gw": [6.0, 1029.0]}  # reports keep coming (each is fresh for 10 s)
    autoscale(row, spec, 1029.0)
    assert row.wanted == 1
    row.load = {"gw": [6.0, 1030.0]}
    autoscale(row, spec, 1030.0)
    assert (row.wanted, row.above_since) == (3, None)  # held 30 s: up
    row.load = {"gw": [0.0, 1040.0]}
    autoscale(row, spec, 1040.0)
    autoscale(row, spec, 1045.0)
    assert (row.wanted, row.below_since) == (3, 1040.0)  # down waits 600 s
    row.load = {"gw": [0.0, 1640.0]}
    autoscale(row, spec, 1640.0)
    assert row.wanted == 1
    row.load = {"gw": [50.0, 1000.0]}  # a stale report (gateway gone) counts for nothing
    autoscale(row, spec, 2000.0)
    assert (row.wanted, row.above_since) == (1, None)


def test_the_look_back_defaults_to_30_s_and_is_bounded_naming_its_field() -> None:
    from computenet.model.service import LOOKBACK_S

    spec = parse_service_text("name: c\ncommand: x\nautoscale: {up_delay_s: 3}")
    assert spec.autoscale is not None and spec.autoscale.lookback_s == LOOKBACK_S == 30.0
    short = parse_service_text("name: c\ncommand: x\nautoscale: {lookback_s: 2.5}")
    assert short.autoscale is not None and short.autoscale.lookback_s == 2.5
    for bad in ("0", "-1", "3601", "soon"):
        with pytest.raises(ValidationError) as e:
            parse_service_text(f"name: c\ncommand: x\nautoscale: {{lookback_s: {bad}}}")
        assert e.value.field == "autoscale.lookback_s", bad


def test_the_look_back_means_the_readings_of_its_last_seconds() -> None:
    from computenet.model.service import Lookback

    w = Lookback(10.0)
    assert w.add(0.0, 4.0) == 4.0
    assert w.add(5.0, 8.0) == 6.0
    assert w.add(9.0, 0.0) == 4.0  # one low reading lowers the mean, it does not reset it
    assert w.add(10.0, 6.0) == 14.0 / 3  # the reading at 0 is 10 s old: gone
    assert len(w) == 3
    assert w.add(100.0, 1.0) == 1.0  # after a gap, the latest alone
    assert w.add(50.0, 7.0) == 7.0  # the clock set back: the later readings are dropped
    one = Lookback(0.5)  # shorter than the readings' interval: the latest reading
    assert [one.add(t, v) for t, v in ((0.0, 3.0), (2.0, 5.0))] == [3.0, 5.0]


def test_the_server_averages_demand_over_the_look_back_before_scaling() -> None:
    from computenet.model.service import Lookback
    from computenet.server.services import autoscale
    from computenet.store.schema import ServiceRow

    spec = parse_service_text(
        "name: c\ncommand: x\nreplicas: {min: 1, max: 8}\ntarget_inflight: 2\n"
        "autoscale: {up_delay_s: 10, down_delay_s: 600, lookback_s: 10}"
    )
    row = ServiceRow(name="c", wanted=1, load={})
    w = Lookback(10.0)
    # 6 in flight, with one quiet reading among them: the mean stays above 1 replica's
    # worth, so the wait to scale up is not restarted (it is with the latest reading).
    means = []
    for t, x in [(0, 6.0), (2, 6.0), (4, 0.0), (6, 6.0), (8, 6.0), (10, 6.0)]:
        row.load = {"gw": [x, float(t)]}
        means.append(autoscale(row, spec, float(t), w))
    assert means == [6.0, 6.0, 4.0, 4.5, 4.8, 24.0 / 5]
    assert row.wanted == 3  # ceil(4.8 / 2), held 10 s from t=0
    bare = ServiceRow(name="c", wanted=1, load={})
    for t, x in [(0, 6.0), (2, 6.0), (4, 0.0), (6, 6.0), (8, 6.0), (10, 6.0)]:
        bare.load = {"gw": [x, float(t)]}
        autoscale(bare, spec, float(t))  # no window: each reading alone
    assert bare.wanted == 1  # the 0 at t=4 restarted the wait


def test_held_requests_start_a_replica_at_once_whatever_the_mean() -> None:
    from computenet.model.service import Lookback
    from computenet.server.services import autoscale
    from computenet.store.schema import ServiceRow

    spec = parse_service_text(
        "name: c\ncommand: x\nreplicas: {min: 0, max: 4}\ntarget_inflight: 2\n"
        "autoscale: {up_delay_s: 30, down_delay_s: 600, lookback_s: 60}"
    )
    row = ServiceRow(name="c", wanted=0, load={})
    w = Lookback(60.0)
    for t in range(0, 40, 2):
        row.load = {"gw": [0.0, float(t), "a", 0]}
        autoscale(row, spec, float(t), w)
    row.load = {"gw": [0.0, 40.0, "a", 5]}
    mean = autoscale(row, spec, 40.0, w)
    assert mean is not None and mean < 1.0  # the mean barely moved ...
    assert row.wanted == 3  # ... but the five held requests call for ceil(5 / 2) now
