"""`cnet` commands against the fake API: output, --json, and one-line errors with exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from computenet.agent.data import DataRoot
from computenet.model import JobState
from computenet.sdk.testing import FakeAPI
from tests.unit.cli.conftest import Result

GOOD = """\
name: finetune
class: llm-train
command: python train.py
chips: {count: 4}
work: {cu_hours: 4}
deadline: 12h
"""

Cnet = Callable[..., Result]
JobFile = Callable[..., Path]


def assert_one_line_error(r: Result, *words: str) -> None:
    assert r.code == 2, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert "Traceback" not in r.err
    for w in words:
        assert w in lines[0], lines[0]


def test_submit_prints_the_job_id(fake: FakeAPI, cnet: Cnet, job_file: JobFile) -> None:
    r = cnet("submit", str(job_file(GOOD)))
    assert r.code == 0, r.err
    (job,) = fake.jobs.values()
    assert job.id in r.out
    assert job.name == "finetune"


def test_submit_json_with_key_is_idempotent(fake: FakeAPI, cnet: Cnet, job_file: JobFile) -> None:
    f = str(job_file(GOOD))
    a = json.loads(cnet("submit", f, "--key", "abc", "--json").out)
    b = json.loads(cnet("submit", f, "--key", "abc", "--json").out)
    assert a["id"] == b["id"]
    assert len(fake.jobs) == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: x\nclass: [llm-train\ncommand: a\n", ["malformed YAML", "line"]),
        (GOOD + "colour: blue\n", ["colour"]),
        (GOOD.replace("{count: 4}", "{count: 4, types: [Z9000]}"), ["chips.types[0]", "Z9000"]),
        (GOOD.replace("{count: 4}", "{count: -1}"), ["chips.count"]),
        (GOOD.replace("deadline: 12h", "deadline: 2020-01-01T00:00:00+08:00"), ["deadline"]),
        (GOOD.replace("llm-train", "dance"), ["class", "dance"]),
        (GOOD.replace("work: {cu_hours: 4}", "work: {}"), ["work"]),
        ("- just\n- a list\n", ["mapping"]),
    ],
    ids=[
        "malformed",
        "unknown-field",
        "unknown-chip",
        "negative-count",
        "past-deadline",
        "unknown-class",
        "no-work",
        "not-a-mapping",
    ],
)
def test_bad_job_file_is_one_line_exit_2_and_nothing_stored(
    fake: FakeAPI, cnet: Cnet, job_file: JobFile, text: str, words: list[str]
) -> None:
    r = cnet("submit", str(job_file(text)))
    assert_one_line_error(r, *words)
    assert fake.jobs == {}


def test_missing_job_file_is_exit_2(fake: FakeAPI, cnet: Cnet, tmp_path: Path) -> None:
    assert_one_line_error(cnet("submit", str(tmp_path / "nope.yaml")), "no such job file")


def test_unknown_option_is_one_line_exit_2(fake: FakeAPI, cnet: Cnet) -> None:
    assert_one_line_error(cnet("jobs", "--colour"), "--colour")


def test_bad_state_is_one_line_exit_2(fake: FakeAPI, cnet: Cnet) -> None:
    assert_one_line_error(cnet("jobs", "--state", "NAPPING"), "NAPPING")


def test_bad_period_names_the_field(fake: FakeAPI, cnet: Cnet) -> None:
    assert_one_line_error(cnet("bill", "--period", "12/2026"), "period", "YYYY-MM")


def test_unknown_job_is_one_line_exit_2(fake: FakeAPI, cnet: Cnet) -> None:
    assert_one_line_error(cnet("status", "j-nope"), "j-nope")


def test_no_token_says_how_to_get_one(
    fake: FakeAPI, cnet: Cnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CNET_TOKEN")
    r = cnet("jobs")
    assert r.code == 1
    assert "token" in r.err and "cnet up" in r.err


def test_quote_marks_cheapest_and_fastest(fake: FakeAPI, cnet: Cnet, job_file: JobFile) -> None:
    r = cnet("quote", str(job_file(GOOD)))
    assert r.code == 0, r.err
    assert "cheapest" in r.out and "fastest" in r.out
    assert "zhongwei" in r.out
    assert "nothing was submitted" in r.out
    assert fake.jobs == {}


def test_quote_json_has_every_option(fake: FakeAPI, cnet: Cnet, job_file: JobFile) -> None:
    q = json.loads(cnet("quote", str(job_file(GOOD)), "--json").out)
    assert sum(o["cheapest"] for o in q["options"]) == 1
    assert sum(o["fastest"] for o in q["options"]) == 1
    for o in q["options"]:
        assert {
            "center",
            "chip",
            "count",
            "planned_start",
            "finish",
            "energy_cny",
            "service_cny",
            "transfer_cny",
            "total_cny",
            "kwh",
            "co2_kg",
        } <= set(o)


def test_jobs_status_cancel_logs(fake: FakeAPI, cnet: Cnet, job_file: JobFile) -> None:
    jid = json.loads(cnet("submit", str(job_file(GOOD)), "--json").out)["id"]
    assert jid in cnet("jobs").out
    listed = json.loads(cnet("jobs", "--json", "--state", "PENDING").out)
    assert [j["id"] for j in listed] == [jid]
    st = cnet("status", jid)
    assert "PENDING" in st.out and "waiting for the next scheduling cycle" in st.out
    assert json.loads(cnet("status", jid, "--json").out)["spec"]["class"] == "llm-train"
    assert "CANCELLED" in cnet("cancel", jid).out
    assert fake.jobs[jid].state is JobState.CANCELLED
    assert "CANCELLED" in cnet("cancel", jid).out  # twice: no error, as the server answers
    fake.finish(jid, JobState.SUCCEEDED, "hello\n")
    assert_one_line_error(cnet("cancel", jid), "already SUCCEEDED")
    assert cnet("logs", jid).out == "hello\n"
    assert cnet("logs", jid, "--follow").out == "hello\n"


def test_read_commands_take_json(fake: FakeAPI, cnet: Cnet) -> None:
    for argv in (
        ["centers"],
        ["bill"],
        ["whoami"],
        ["datasets", "list"],
        ["network", "show"],
        ["jobs"],
    ):
        r = cnet(*argv, "--json")
        assert r.code == 0, (argv, r.err)
        json.loads(r.out)


def test_centers_table_lists_every_center(fake: FakeAPI, cnet: Cnet) -> None:
    out = cnet("centers").out
    for c in ("shanghai", "zhongwei", "guian", "chongqing"):
        assert c in out


def test_datasets_add_copies_into_the_data_root(fake: FakeAPI, cnet: Cnet, tmp_path: Path) -> None:
    src = tmp_path / "corpus.bin"
    src.write_bytes(b"x" * 1000)
    root = tmp_path / "root"
    r = cnet(
        "datasets",
        "add",
        str(src),
        "--id",
        "corpus",
        "--center",
        "shanghai",
        "--data-root",
        str(root),
        "--residency",
        "region:east",
    )
    assert r.code == 0, r.err
    # The copy goes into the caller's tenant's area, the only place the server accepts.
    placed = root / "tenants" / "acme" / "corpus"
    assert placed.read_bytes() == b"x" * 1000
    view = fake.datasets["corpus"]
    assert view.size_bytes == 1000
    assert view.replicas == [{"center": "shanghai", "path": "tenants/acme/corpus"}]
    assert DataRoot(root).resolve("corpus") == placed.resolve()


def test_datasets_add_without_a_known_root_says_how(
    fake: FakeAPI, cnet: Cnet, tmp_path: Path
) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"1")
    r = cnet("datasets", "add", str(src), "--id", "a", "--center", "shanghai")
    assert_one_line_error(r, "--data-root")


def test_network_validate_accepts_builtin_and_names_bad_field(cnet: Cnet, tmp_path: Path) -> None:
    r = cnet("network", "validate", "demo")
    assert r.code == 0 and "ok" in r.out and "shanghai" in r.out
    bad = tmp_path / "net.yaml"
    bad.write_text(
        "name: n\ncenters:\n  - {id: a, lat: 1, lon: 1, pools: [{chip: Z9000, count: 1}],"
        " pue: 1.2, tariff: {flat: 0.5}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}\n"
    )
    assert_one_line_error(cnet("network", "validate", str(bad)), "centers[0].pools[0].chip")
