"""The SDK against the in-memory fake API: schemas, idempotency, errors with field and hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import computenet
from computenet.errors import (
    AuthError,
    ComputeNetError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from computenet.model import JobState
from computenet.protocol import JobDetail, JobView, QuoteView
from computenet.sdk import Client, load_job_file, parse_job_spec
from computenet.sdk.testing import FakeAPI

SPEC: dict[str, Any] = {
    "name": "tiny",
    "class": "inference",
    "command": "echo hi",
    "chips": {"count": 1},
    "work": {"cu_hours": 0.5},
}


@pytest.fixture
def fake() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def cn(fake: FakeAPI) -> Client:
    return Client("http://fake", fake.token, transport=fake.transport())


def test_client_is_exported_from_the_package() -> None:
    assert computenet.Client is Client


def test_submit_accepts_a_mapping_and_returns_a_job_view(cn: Client) -> None:
    view = cn.submit(SPEC)
    assert isinstance(view, JobView)
    assert view.state is JobState.PENDING
    assert view.workload_class == "inference"


def test_submit_accepts_a_job_file_path(cn: Client, tmp_path: Path) -> None:
    f = tmp_path / "job.yaml"
    f.write_text("name: from-file\nclass: cpu-batch\ncommand: 'true'\nwork: {cu_hours: 1}\n")
    assert cn.submit(f).name == "from-file"
    assert cn.submit(str(f)).name == "from-file"


def test_same_idempotency_key_gives_the_same_job(cn: Client, fake: FakeAPI) -> None:
    a = cn.submit(SPEC, idempotency_key="k-1")
    b = cn.submit(SPEC, idempotency_key="k-1")
    assert a.id == b.id
    assert len(fake.jobs) == 1


def test_jobs_job_and_cancel_round_trip(cn: Client) -> None:
    view = cn.submit(SPEC)
    assert [j.id for j in cn.jobs()] == [view.id]
    assert cn.jobs(state=JobState.RUNNING) == []
    detail = cn.job(view.id)
    assert isinstance(detail, JobDetail)
    assert detail.spec.command == "echo hi"
    assert cn.cancel(view.id).state is JobState.CANCELLED
    assert cn.cancel(view.id).state is JobState.CANCELLED  # twice: as the server, no error


def test_cancelling_a_finished_job_is_a_conflict(cn: Client, fake: FakeAPI) -> None:
    view = cn.submit(SPEC)
    fake.finish(view.id, JobState.SUCCEEDED, "hi\n")
    with pytest.raises(ConflictError) as info:
        cn.cancel(view.id)
    assert info.value.field == "state"
    assert cn.logs(view.id).text == "hi\n"


def test_server_validation_error_keeps_field_and_hint(cn: Client, fake: FakeAPI) -> None:
    bad = {**SPEC, "chips": {"count": 1, "types": ["Z9000"]}}
    with pytest.raises(ValidationError) as info:
        cn.submit(bad)
    assert info.value.field == "chips.types[0]"
    assert "Z9000" in info.value.one_line()
    assert info.value.hint
    assert fake.jobs == {}


def test_bad_spec_is_caught_before_anything_is_sent(cn: Client, fake: FakeAPI) -> None:
    with pytest.raises(ValidationError) as info:
        cn.submit({**SPEC, "chips": {"count": -3}})
    assert info.value.field == "chips.count"
    assert fake.requests == []


def test_unknown_job_is_not_found(cn: Client) -> None:
    with pytest.raises(NotFoundError):
        cn.job("j-nope")


def test_wrong_token_is_an_auth_error(fake: FakeAPI) -> None:
    cn = Client("http://fake", "wrong", transport=fake.transport())
    with pytest.raises(AuthError):
        cn.whoami()


def test_unreachable_server_names_the_url() -> None:
    cn = Client("http://127.0.0.1:9", "t", timeout=2)
    with pytest.raises(ComputeNetError) as info:
        cn.jobs()
    assert info.value.field == "url"
    assert "cnet up" in (info.value.hint or "")


def test_follow_logs_reads_until_the_job_is_final(cn: Client, fake: FakeAPI) -> None:
    view = cn.submit(SPEC)
    fake.logs[view.id] = "line 1\nline 2\n"
    fake.jobs[view.id] = fake.jobs[view.id].model_copy(update={"state": JobState.SUCCEEDED})
    assert "".join(cn.follow_logs(view.id)) == "line 1\nline 2\n"
    assert cn.logs(view.id, offset=7).text == "line 2\n"


def test_wait_returns_the_final_detail(cn: Client, fake: FakeAPI) -> None:
    view = cn.submit(SPEC)
    seen: list[JobState] = []

    def finish(d: JobDetail) -> None:
        seen.append(d.state)
        fake.jobs[view.id] = fake.jobs[view.id].model_copy(update={"state": JobState.SUCCEEDED})

    final = cn.wait(view.id, poll_s=0.01, on_update=finish)
    assert final.state is JobState.SUCCEEDED
    assert seen[0] is JobState.PENDING


def test_quote_returns_options_with_cheapest_and_fastest(cn: Client) -> None:
    q = cn.quote({**SPEC, "class": "llm-train", "chips": {"count": 4}, "work": {"cu_hours": 4}})
    assert isinstance(q, QuoteView)
    assert q.options
    assert sum(o.cheapest for o in q.options) == 1
    assert sum(o.fastest for o in q.options) == 1


def test_datasets_centers_network_bill(cn: Client) -> None:
    ds = cn.add_dataset("corpus", "shanghai", "corpus/a.bin", 10, "0" * 64, residency="region:east")
    assert ds.replicas[0]["center"] == "shanghai"
    assert [d.id for d in cn.datasets()] == ["corpus"]
    assert {c.id for c in cn.centers()} == {"shanghai", "zhongwei", "guian", "chongqing"}
    assert cn.network()["name"] == "demo"
    assert cn.bill(period="2026-12").period == "2026-12"


def test_add_dataset_checks_the_checksum_shape(cn: Client) -> None:
    with pytest.raises(ValidationError) as info:
        cn.add_dataset("corpus", "shanghai", "a.bin", 10, "not-a-sha")
    assert info.value.field == "sha256"


def test_job_file_errors_name_the_line_or_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nclass: [unclosed\n")
    with pytest.raises(ValidationError) as info:
        load_job_file(f)
    assert "line" in (info.value.field or "")
    with pytest.raises(ValidationError) as info:
        parse_job_spec({**SPEC, "colour": "blue"})
    assert info.value.field == "colour"
    with pytest.raises(ValidationError) as info:
        parse_job_spec(["not", "a", "mapping"])
    assert info.value.field == "(file)"
