"""`cnet spec show`, and `cnet submit`/`quote` of SkyPilot tasks and Slurm batch scripts."""

from __future__ import annotations

import json

import pytest
import yaml

from computenet.sdk.testing import FakeAPI
from tests.unit.cli.test_cli import GOOD, Cnet, JobFile, assert_one_line_error

SBATCH = """\
#!/bin/bash
#SBATCH --job-name=vit-train
#SBATCH --partition=vision
#SBATCH --nodes=1
#SBATCH --gres=gpu:A100-80GB:2
#SBATCH --time=0-03:00
#SBATCH --mem=128G
#SBATCH --mail-user=me@example.org
python train.py
"""

SKY = """\
# cnet: hours=1.5
name: sky-eval
resources:
  accelerators: [h100:1, H800:1]
  region: us-east-1
run: python eval.py
"""


def test_spec_show_json_is_the_spec_and_what_was_not_mapped(cnet: Cnet, job_file: JobFile) -> None:
    r = cnet("spec", "show", str(job_file(SBATCH, "train.sbatch")), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert {"spec", "unmapped"} <= set(doc)
    spec = doc["spec"]
    assert spec["name"] == "vit-train"
    assert spec["class"] == "cv-train"
    assert spec["chips"] == {"count": 2, "types": ["A100"]}
    assert spec["work"] == {"reference_chip": "A100", "reference_hours": 3.0}
    assert {u["field"] for u in doc["unmapped"]} == {
        "#SBATCH --mem=128G",
        "#SBATCH --mail-user=me@example.org",
    }
    assert all(u["why"] for u in doc["unmapped"])
    assert any("A100-80GB" in n for n in doc["notes"])


def test_spec_show_prints_a_job_file_that_reads_back(cnet: Cnet, job_file: JobFile) -> None:
    r = cnet("spec", "show", str(job_file(SKY, "task.yaml")))
    assert r.code == 0, r.err
    assert "# not mapped (1):" in r.out
    assert "resources.region=us-east-1" in r.out
    again = yaml.safe_load(r.out)  # the comments fall away: a ComputeNet job file
    assert again["chips"] == {"count": 1, "types": ["H100", "H800"]}
    r2 = cnet("spec", "show", str(job_file(r.out, "back.yaml")), "--json")
    assert json.loads(r2.out)["spec"] == again
    assert json.loads(r2.out)["unmapped"] == []


def test_spec_show_of_a_computenet_file_maps_everything(cnet: Cnet, job_file: JobFile) -> None:
    doc = json.loads(cnet("spec", "show", str(job_file(GOOD)), "--json").out)
    assert doc["unmapped"] == [] and doc["format"] == "computenet"
    assert doc["spec"]["name"] == "finetune"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("#!/bin/bash\n#SBATCH --gres=gpu:2\necho\n", ["#SBATCH --time", "--time=HH:MM:SS"]),
        ("#!/bin/bash\n#SBATCH -t 9 --gres=gpu:T4:1\necho\n", ["#SBATCH --gres", "T4"]),
        ("resources: {accelerators: A100:1}\nrun: x\n", ["work", "# cnet: hours="]),
        ("name: x\nclass: [a\n", ["malformed YAML", "line"]),
    ],
)
@pytest.mark.parametrize("command", [("spec", "show"), ("submit",), ("quote",)])
def test_bad_job_files_are_one_line_exit_2(
    fake: FakeAPI,
    cnet: Cnet,
    job_file: JobFile,
    command: tuple[str, ...],
    text: str,
    words: list[str],
) -> None:
    r = cnet(*command, str(job_file(text)))
    assert_one_line_error(r, *words)
    assert r.out == ""
    assert fake.jobs == {}


def test_submit_an_sbatch_script(fake: FakeAPI, cnet: Cnet, job_file: JobFile) -> None:
    r = cnet("submit", str(job_file(SBATCH, "train.sbatch")), "--json")
    assert r.code == 0, r.err
    (job,) = fake.jobs.values()
    assert job.name == "vit-train"
    assert job.workload_class == "cv-train"
    assert json.loads(r.out)["id"] == job.id
    # What was not mapped is said on stderr, in one line, pointing to spec show.
    assert "2 field(s) not mapped" in r.err and "cnet spec show" in r.err


def test_quote_a_skypilot_task(fake: FakeAPI, cnet: Cnet, job_file: JobFile) -> None:
    r = cnet("quote", str(job_file(SKY, "task.yaml")), "--json")
    assert r.code == 0, r.err
    q = json.loads(r.out)
    assert q["options"]
    assert {o["chip"] for o in q["options"]} <= {"H100", "H800"}
    assert fake.jobs == {}


def test_a_partition_map_file(fake: FakeAPI, cnet: Cnet, job_file: JobFile) -> None:
    pm = job_file("vision: inference\n", "partitions.yaml")
    doc = json.loads(
        cnet("spec", "show", str(job_file(SBATCH)), "--partition-map", str(pm), "--json").out
    )
    assert doc["spec"]["class"] == "inference"
    bad = job_file("- a list\n", "bad-map.yaml")
    assert_one_line_error(
        cnet("spec", "show", str(job_file(SBATCH)), "--partition-map", str(bad)),
        "--partition-map",
        "gpu: llm-train",
    )


def test_spec_show_exit_2_on_a_missing_file(cnet: Cnet) -> None:
    assert_one_line_error(cnet("spec", "show", "/nonexistent/job.sbatch"), "JOB")
