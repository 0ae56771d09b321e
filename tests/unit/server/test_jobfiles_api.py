"""POST /api/v1/jobfiles/convert: SkyPilot and Slurm job files as specs, 422 naming the field."""

from __future__ import annotations

from tests.unit.server.conftest import Net

SBATCH = (
    "#!/bin/bash\n#SBATCH -J api-sbatch -p gpu --gres=gpu:h100:2 -t 1:00:00 --mem=8G\n"
    "python train.py\n"
)


def test_an_sbatch_script_becomes_a_spec_that_quotes(net: Net) -> None:
    r = net.client.post("/api/v1/jobfiles/convert", json={"text": SBATCH}, headers=net.user())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["format"] == "slurm"
    assert doc["spec"]["name"] == "api-sbatch"
    assert doc["spec"]["class"] == "llm-train"
    assert doc["spec"]["chips"]["types"] == ["H100"]
    assert doc["unmapped"] == [{"field": "#SBATCH --mem=8G", "why": doc["unmapped"][0]["why"]}]
    # The spec is what /quote and /jobs take (no center is online here: no options yet).
    q = net.client.post("/api/v1/quote", json=doc["spec"], headers=net.user())
    assert q.status_code == 200, q.text
    assert {o["chip"] for o in q.json()["options"]} <= {"H100"}


def test_a_partition_map_in_the_body(net: Net) -> None:
    body = {"text": SBATCH, "partition_map": {"gpu": "inference"}}
    r = net.client.post("/api/v1/jobfiles/convert", json=body, headers=net.user())
    assert r.json()["spec"]["class"] == "inference"


def test_a_skypilot_task_and_a_computenet_file(net: Net) -> None:
    sky = "# cnet: hours=1\nresources: {accelerators: a100:2}\nrun: echo hi\n"
    r = net.client.post("/api/v1/jobfiles/convert", json={"text": sky}, headers=net.user())
    assert r.json()["format"] == "skypilot"
    assert r.json()["spec"]["chips"] == {"count": 2, "types": ["A100"], "stack": None,
                                         "memory_gb": None}  # fmt: skip
    own = "name: x\nclass: cpu-batch\ncommand: echo\nwork: {cu_hours: 1}\n"
    r = net.client.post("/api/v1/jobfiles/convert", json={"text": own}, headers=net.user())
    assert r.json()["format"] == "computenet" and r.json()["unmapped"] == []


def test_bad_job_files_are_422_naming_the_field(net: Net) -> None:
    for text, field in [
        ("#!/bin/bash\n#SBATCH --gres=gpu:1\necho\n", "#SBATCH --time"),
        ("#!/bin/bash\n#SBATCH -t 5 --gres=gpu:T4:1\necho\n", "#SBATCH --gres"),
        ("resources: {accelerators: A100:1}\nrun: x\n", "work"),
        ("name: [x\n", "text line 2"),
        ("name: x\nclass: c\ncommand: y\nwork: {cu_hours: -1}\n", "work.cu_hours"),
    ]:
        r = net.client.post("/api/v1/jobfiles/convert", json={"text": text}, headers=net.user())
        assert r.status_code == 422, (text, r.text)
        assert r.json()["field"] == field, r.json()
        assert r.json()["hint"]


def test_convert_needs_a_token(net: Net) -> None:
    assert net.client.post("/api/v1/jobfiles/convert", json={"text": SBATCH}).status_code == 401
