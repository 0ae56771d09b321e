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
