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
