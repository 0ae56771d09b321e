"""The pure model: state machine, job spec validation, network files."""

from __future__ import annotations

import pydantic
import pytest

from computenet.catalog import load_network, network_from_dict
from computenet.errors import IllegalTransition, ValidationError
from computenet.model import JobSpec, JobState, check_transition


def test_legal_transitions_pass_and_illegal_ones_raise() -> None:
    check_transition(JobState.PENDING, JobState.SCHEDULED)
    check_transition(JobState.RUNNING, JobState.PENDING)  # a lost agent requeues
    with pytest.raises(IllegalTransition):
        check_transition(JobState.SUCCEEDED, JobState.RUNNING)
    with pytest.raises(IllegalTransition):
        check_transition(JobState.PENDING, JobState.RUNNING)


def test_job_spec_rejects_negative_count_and_unknown_fields() -> None:
    with pytest.raises(pydantic.ValidationError):
        JobSpec(
            **{
                "class": "inference",
                "command": "x",
                "chips": {"count": -1},
                "work": {"cu_hours": 1},
            }
        )
    with pytest.raises(pydantic.ValidationError):
        JobSpec(**{"class": "inference", "command": "x", "work": {"cu_hours": 1}, "gpus": 2})


def test_relative_and_absolute_deadlines() -> None:
    from datetime import datetime, timedelta

    from computenet.model.center import CST

    now = datetime(2026, 12, 1, 12, tzinfo=CST)
    rel = JobSpec(
        **{"class": "inference", "command": "x", "work": {"cu_hours": 1}, "deadline": "90m"}
    )
    assert rel.deadline_at(now) == now + timedelta(minutes=90)
    with pytest.raises(pydantic.ValidationError):
        JobSpec(
            **{
                "class": "inference",
                "command": "x",
                "work": {"cu_hours": 1},
                "deadline": "2026-12-01T12:00:00",
            }
        )  # no timezone


def test_builtin_networks_load() -> None:
    china = load_network("china")
    assert len(china.centers) == 10
    assert {s.id for s in china.sites} == {"beijing", "shanghai", "guangzhou", "chengdu"}
    # Every pair of nodes is linked, with latency from coordinates.
    n = len(china.node_ids)
    assert len(china.links) == n * (n - 1) // 2
    assert len(load_network("demo").centers) == 4


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"pools": [{"chip": "B300", "count": 1}]}, "centers[0].pools[0].chip"),
        ({"pools": [{"chip": "H100", "count": -2}]}, "centers[0].pools[0].count"),
        ({"pue": 0.5}, "centers[0].pue"),
        ({"tariff": {"hourly": [0.5] * 23}}, "centers[0].tariff.hourly"),
    ],
)
def test_network_file_errors_name_the_field(patch: dict[str, object], field: str) -> None:
    center = {
        "id": "a",
        "lat": 30,
        "lon": 110,
        "pools": [{"chip": "H100", "count": 1}],
        "pue": 1.2,
        "tariff": {"flat": 0.5},
        "carbon_kg_per_kwh": 0.5,
        "service_price_per_cuh": 1,
    }
    center.update(patch)
    with pytest.raises(ValidationError) as err:
        network_from_dict({"name": "x", "centers": [center]})
    assert err.value.field == field


def test_malformed_yaml_names_the_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "net.yaml"
    f.write_text("name: x\ncenters: [\n  - id: a\n")
    with pytest.raises(ValidationError) as err:
        load_network(f)
    assert "line" in (err.value.field or "")
