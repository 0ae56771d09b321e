"""SkyPilot task YAML and Slurm batch scripts read into ComputeNet job specs.

Every directive is either mapped to a spec field or listed in `unmapped` with why;
bad input is a `ValidationError` naming the field and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computenet.errors import ValidationError
from computenet.model import JobSpec
from computenet.sdk.jobfiles import (
    DEFAULT_PARTITION_MAP,
    Conversion,
    builtin_chip_names,
    detect_format,
    match_chip,
    slurm_time_s,
)
from computenet.sdk.specfile import job_from_text, load_job_file

CHIPS = builtin_chip_names()
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "jobfiles"


def convert(
    text: str, partition_map: Mapping[str, str] | None = None
) -> tuple[JobSpec, Conversion]:
    """Convert and validate, as every caller does."""
    spec: JobSpec
    conv: Conversion
    spec, conv = job_from_text(text, partition_map=partition_map)
    return spec, conv


def fields(c: Conversion) -> list[str]:
    return [u.field for u in c.unmapped]


# ---------------------------------------------------------------------------------------
# Slurm

SBATCH_DDP = """\
#!/bin/bash
#SBATCH --job-name=bert-pretrain
#SBATCH --account=nlp-lab
#SBATCH --partition=gpu
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gres=gpu:h100:8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=1-12:00:00
#SBATCH --deadline=now+3days
#SBATCH --output=logs/%x-%j.out
#SBATCH --error=logs/%x-%j.err
#SBATCH --mail-type=END,FAIL
#SBATCH --mail-user=someone@example.org
#SBATCH --exclusive
#SBATCH --qos=high
#SBATCH --export=ALL,NCCL_DEBUG=INFO

module load cuda/12.2 nccl
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun python pretrain.py --config bert-large.yaml
"""

# Options the converter puts into the spec (the rest must be listed as unmapped).
MAPPED = {"job-name", "partition", "nodes", "gres", "time", "deadline", "export"}


def test_a_ddp_sbatch_script_maps_chips_time_deadline_name_class_and_env() -> None:
    spec, c = convert(SBATCH_DDP)
    assert c.format == "slurm"
    assert spec.name == "bert-pretrain"
    assert spec.workload_class == "llm-train"  # partition gpu, the default map
    assert spec.chips.count == 16  # 8 per node × 2 nodes
    assert spec.chips.types == ("H100",)
    assert spec.work.reference_chip == "H100"
    assert spec.work.reference_hours == pytest.approx(36.0)
    assert spec.deadline == "4320m"  # now+3days
    assert spec.env == {"NCCL_DEBUG": "INFO"}
    assert spec.command == SBATCH_DDP  # the script runs as it is
    assert any("srun" in n for n in c.notes)


def test_every_sbatch_directive_is_mapped_or_listed_with_a_reason() -> None:
    _, c = convert(SBATCH_DDP)
    unmapped = " ".join(fields(c))
    for line in SBATCH_DDP.splitlines():
        if not line.startswith("#SBATCH"):
            continue
        option = line.split()[1].lstrip("-").split("=")[0]
        assert option in MAPPED or f"--{option}" in unmapped, option
    assert all(u.why for u in c.unmapped)
    # Two lines of one option: --export=ALL is listed, NCCL_DEBUG mapped.
    assert "#SBATCH --export=ALL" in fields(c)


def test_short_options_and_several_on_one_line() -> None:
    text = "#!/bin/sh\n#SBATCH -J tiny -N2 -t 90 -p cv -G v100:4  # four in all\nhostname\n"
    spec, c = convert(text)
    assert spec.name == "tiny"
    assert spec.workload_class == "cv-train"
    assert spec.chips.count == 4  # --gpus is per job, not per node
    assert spec.chips.types == ("V100",)
    assert spec.work.reference_hours == pytest.approx(1.5)
    assert c.unmapped == []


def test_gpus_per_task_times_ntasks() -> None:
    text = "#!/bin/bash\n#SBATCH --ntasks=4 --gpus-per-task=a100:1 --time=10\necho\n"
    spec, c = convert(text)
    assert spec.chips.count == 4
    assert spec.chips.types == ("A100",)
    assert "#SBATCH --ntasks=4" in fields(c)


def test_gres_without_a_type_is_any_cuda_chip_counted_on_the_default() -> None:
    spec, c = convert("#!/bin/bash\n#SBATCH --gres=gpu:2 --time=1:00:00\necho\n")
    assert spec.chips.count == 2
    assert spec.chips.types == ()
    assert spec.chips.stack == "cuda"
    assert spec.work.reference_chip == "A100"
    assert any("no GPU type" in n for n in c.notes)


@pytest.mark.parametrize(
    ("directives", "listed"),
    [
        ("--export", "#SBATCH --export"),
        ("--constraint=a100", "#SBATCH --constraint=A100"),
        ("--gpus=4 --gres=gpu:a100:2", "#SBATCH --gres/--gpus-per-node/--gpus-per-task"),
    ],
)
def test_directives_that_cannot_all_apply_are_listed(directives: str, listed: str) -> None:
    _, c = convert(f"#!/bin/bash\n#SBATCH -t 5 {directives}\necho\n")
    assert listed in fields(c)


def test_a_cpu_only_script_asks_for_cpu_nodes() -> None:
    spec, _ = convert("#!/bin/bash\n#SBATCH -N 3 -t 30 -p compute\nmake -j\n")
    assert spec.chips.count == 3
    assert spec.chips.stack == "cpu"
    assert spec.work.reference_chip == "CPU-node"
    assert spec.workload_class == "cpu-batch"


def test_directives_after_the_first_command_are_ignored_as_slurm_does() -> None:
    spec, c = convert("#!/bin/bash\n#SBATCH -t 60\necho hi\n#SBATCH -t 5\n")
    assert spec.work.reference_hours == pytest.approx(1.0)
    assert "#SBATCH (line 4)" in fields(c)


def test_an_unknown_partition_takes_the_default_class_and_says_so() -> None:
    spec, c = convert("#!/bin/bash\n#SBATCH -p weird -t 5 --gres=gpu:1\necho\n")
    assert spec.workload_class == "llm-train"
    assert "#SBATCH --partition=weird" in fields(c)


def test_the_partition_map_is_configurable() -> None:
    text = "#!/bin/bash\n#SBATCH -p a800q,weird -t 5 --gres=gpu:1\necho\n"
    spec, c = convert(text, partition_map={"A800Q": "inference"})
    assert spec.workload_class == "inference"
    assert c.unmapped == []


def test_the_default_partition_map_names_only_known_classes() -> None:
    assert set(DEFAULT_PARTITION_MAP.values()) <= {
        "llm-train",
        "cv-train",
        "inference",
        "cpu-batch",
    }


def test_cnet_comment_settings_win() -> None:
    text = (
        "#!/bin/bash\n#SBATCH --gres=gpu:h800:2\n"
        "# cnet: hours=3 class=inference budget_cny=80 priority=4\necho\n"
    )
    spec, _ = convert(text)
    assert spec.work.reference_hours == 3
    assert spec.work.reference_chip == "H800"
    assert spec.workload_class == "inference"
    assert spec.budget_cny is not None and float(spec.budget_cny) == 80
    assert spec.priority == 4


def test_a_deadline_without_a_zone_is_read_in_network_time() -> None:
    spec, c = convert("#!/bin/bash\n#SBATCH -t 5 --deadline=2030-06-01T18:00\necho\n")
    assert spec.deadline is not None and not isinstance(spec.deadline, str)
    assert spec.deadline.isoformat() == "2030-06-01T18:00:00+08:00"
    assert any("CST" in n for n in c.notes)


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        ("#!/bin/bash\n#SBATCH --gres=gpu:1\necho\n", "#SBATCH --time", "--time=HH:MM:SS"),
        ("#!/bin/bash\n#SBATCH -t 1:2:3:4\necho\n", "#SBATCH --time", "--time=HH:MM:SS"),
        ("#!/bin/bash\n#SBATCH -t UNLIMITED\necho\n", "#SBATCH --time", "HH:MM:SS"),
        ("#!/bin/bash\n#SBATCH -t 0\necho\n", "#SBATCH --time", "HH:MM:SS"),
        ("#!/bin/bash\n#SBATCH -t 5 --gres=gpu:L4:1\necho\n", "#SBATCH --gres", "name one of"),
        ("#!/bin/bash\n#SBATCH -t 5 --gres=gpu:a100:x\necho\n", "#SBATCH --gres", "[type:]N"),
        ("#!/bin/bash\n#SBATCH -t 5 -N many\necho\n", "#SBATCH --nodes", "--nodes=N"),
        ("#!/bin/bash\n#SBATCH -t 5 --deadline=tomorrow\necho\n", "#SBATCH --deadline", "2026"),
        ("#!/bin/bash\n#SBATCH -t 5\n# cnet: hourz=2\necho\n", "# cnet:", "hours"),
        ("#!/bin/bash\n#SBATCH -t 5\n# cnet: hours=-1\necho\n", "# cnet: hours", "hours=2"),
    ],
)
def test_bad_sbatch_input_names_the_field_and_the_fix(text: str, field: str, fix: str) -> None:
    with pytest.raises(ValidationError) as err:
        convert(text)
    assert err.value.field == field
    assert fix in (err.value.hint or "") + err.value.message


# Every form of --time Slurm accepts, with its value in seconds.
_TIME_FORMS = st.one_of(
    st.integers(1, 10**5).map(lambda m: (f"{m}", m * 60)),
    st.tuples(st.integers(0, 999), st.integers(0, 59)).map(
        lambda t: (f"{t[0]}:{t[1]:02d}", t[0] * 60 + t[1])
    ),
    st.tuples(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59)).map(
        lambda t: (f"{t[0]:02d}:{t[1]:02d}:{t[2]:02d}", t[0] * 3600 + t[1] * 60 + t[2])
    ),
    st.tuples(st.integers(0, 30), st.integers(0, 23)).map(
        lambda t: (f"{t[0]}-{t[1]}", t[0] * 86400 + t[1] * 3600)
    ),
    st.tuples(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59)).map(
        lambda t: (f"{t[0]}-{t[1]}:{t[2]:02d}", t[0] * 86400 + t[1] * 3600 + t[2] * 60)
    ),
    st.tuples(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)).map(
        lambda t: (
            f"{t[0]}-{t[1]:02d}:{t[2]:02d}:{t[3]:02d}",
            t[0] * 86400 + t[1] * 3600 + t[2] * 60 + t[3],
        )
    ),
)


@given(_TIME_FORMS)
def test_every_slurm_time_form_is_its_seconds(form: tuple[str, int]) -> None:
    text, seconds = form
    if seconds == 0:
        with pytest.raises(ValueError):
            slurm_time_s(text)
        return
    assert slurm_time_s(text) == seconds
    spec, _ = convert(f"#!/bin/bash\n#SBATCH --gres=gpu:h100:1 --time={text}\necho\n")
    assert spec.work.reference_hours == pytest.approx(seconds / 3600)


_OPTIONS = st.sampled_from(
    [
        "account",
        "qos",
        "mem",
        "cpus-per-task",
        "mail-user",
        "array",
        "dependency",
        "begin",
        "constraint",
        "licenses",
        "comment",
        "reservation",
        "wckey",
        "signal",
        "nice",
        "hint",
    ]
)


@given(st.lists(st.tuples(_OPTIONS, st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)), max_size=8))
def test_no_sbatch_option_is_dropped_silently(opts: list[tuple[str, str]]) -> None:
    lines = "".join(f"#SBATCH --{name}={value}\n" for name, value in opts)
    _, c = convert(f"#!/bin/bash\n#SBATCH -t 5 --gres=gpu:1\n{lines}echo\n")
    listed = fields(c)
    for name, value in opts:
        assert f"#SBATCH --{name}={value}" in listed or (
            name == "constraint" and match_chip(value, CHIPS)
        )


# ---------------------------------------------------------------------------------------
# SkyPilot

SKY_TASK = """\
# cnet: hours=4 deadline=1d
name: llama-finetune
workdir: ~/src/llama
num_nodes: 2
resources:
  cloud: kubernetes
  accelerators: A100-80GB:8
  cpus: 32+
  memory: 256+
  disk_size: 1024
  use_spot: false
envs:
  MODEL: meta-llama/Llama-2-7b
  EPOCHS: 3
  WANDB_API_KEY:
secrets:
  HF_TOKEN: hf_abc
file_mounts:
  /data/alpaca: cnet://alpaca-v2
  /ckpt:
    source: s3://my-bucket/ckpt
    mode: MOUNT
  ~/.netrc: ~/.netrc
setup: |
  pip install -r requirements.txt
run: |
  torchrun --nnodes=$SKYPILOT_NUM_NODES --nproc-per-node=$SKYPILOT_NUM_GPUS_PER_NODE \\
    train.py --model $MODEL --epochs $EPOCHS
"""


def test_a_skypilot_task_maps_chips_nodes_command_env_and_inputs() -> None:
    spec, c = convert(SKY_TASK)
    assert c.format == "skypilot"
    assert spec.name == "llama-finetune"
    assert spec.chips.count == 16
    assert spec.chips.types == ("A100",)
    assert spec.work.reference_chip == "A100"
    assert spec.work.reference_hours == 4
    assert spec.deadline == "1d"
    assert spec.inputs == ("alpaca-v2",)
    assert spec.env == {"MODEL": "meta-llama/Llama-2-7b", "EPOCHS": "3", "HF_TOKEN": "hf_abc"}
    assert spec.command.index("pip install") < spec.command.index("torchrun")
    assert "|| exit $?" in spec.command  # run only if setup succeeded
    assert any("'A100-80GB' read as the catalog chip A100" in n for n in c.notes)


def test_every_skypilot_field_is_mapped_or_listed() -> None:
    _, c = convert(SKY_TASK)
    listed = fields(c)
    for key in ("cloud", "cpus", "memory", "disk_size", "use_spot"):
        assert any(f.startswith(f"resources.{key}=") for f in listed), key
    assert "envs.WANDB_API_KEY" in listed
    assert "workdir=~/src/llama" in listed
    assert "file_mounts./ckpt=s3://my-bucket/ckpt" in listed
    assert "file_mounts.~/.netrc=~/.netrc" in listed
    assert all(u.why for u in c.unmapped)


@pytest.mark.parametrize(
    "accelerators",
    [
        "['A100:4', 'H100:4']",
        "{A100:4, H100:4}",
        "{A100: 4, H100: 4}",
        "a100:4,h100:4",
    ],
)
def test_accelerators_as_a_list_or_a_set(accelerators: str) -> None:
    text = f"# cnet: hours=1\nresources:\n  accelerators: {accelerators}\nrun: echo\n"
    spec, c = convert(text)
    assert spec.chips.types == ("A100", "H100")
    assert spec.chips.count == 4
    assert c.unmapped == []


@pytest.mark.parametrize("key", ["any_of", "ordered"])
def test_any_of_and_ordered(key: str) -> None:
    text = (
        f"# cnet: hours=1\nresources:\n  {key}:\n"
        "    - {accelerators: H100:8, cloud: aws}\n"
        "    - {accelerators: h800:8}\n"
        "    - {accelerators: A100:4}\n"
        "run: echo\n"
    )
    spec, c = convert(text)
    assert spec.chips.types == ("H100", "H800")
    assert spec.chips.count == 8
    assert f"resources.{key}[0].cloud" in fields(c)
    assert f"resources.{key}[2].accelerators=A100:4" in fields(c)  # a count of its own
    if key == "ordered":
        assert any("not by their order" in n for n in c.notes)


def test_an_unknown_accelerator_in_a_list_is_listed_not_fatal() -> None:
    spec, c = convert("# cnet: hours=1\nresources: {accelerators: [L4:1, H20:1]}\nrun: echo\n")
    assert spec.chips.types == ("H20",)
    assert "resources.accelerators=L4:1" in fields(c)


def test_a_task_without_accelerators_runs_on_cpu_nodes() -> None:
    spec, _ = convert("# cnet: hours=0.5\nname: etl\nrun: python etl.py\n")
    assert spec.chips.stack == "cpu"
    assert spec.workload_class == "cpu-batch"
    assert spec.work.reference_chip == "CPU-node"


ACC = "resources.accelerators"


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        ("resources: {accelerators: A100:1}\nrun: echo\n", "work", "# cnet: hours="),
        ("# cnet: hours=1\nresources: {accelerators: TPU-v4:8}\nrun: x\n", ACC, "name one of"),
        ("# cnet: hours=1\nresources: {accelerators: A100:0.5}\nrun: x\n", ACC, "whole chips"),
        ("# cnet: hours=1\nresources: {accelerators: A100}\nsetup: pip\n", "run", "run:"),
        ("# cnet: hours=1\nnum_nodes: 0\nrun: x\n", "num_nodes", "num_nodes: 2"),
        ("# cnet: hours=1\nrun: x\nenvs: [A, B]\n", "envs", "NAME: value"),
        ("# cnet: hours=1\nrun: x\nresources: {any_of: A}\n", "resources.any_of", "accelerators"),
    ],
)  # fmt: skip
def test_bad_skypilot_input_names_the_field_and_the_fix(text: str, field: str, fix: str) -> None:
    with pytest.raises(ValidationError) as err:
        convert(text)
    assert err.value.field == field
    assert fix in (err.value.hint or "") + err.value.message


# ---------------------------------------------------------------------------------------
# Detection, chip names, ComputeNet's own file


def test_a_computenet_job_file_is_unchanged(tmp_path: Path) -> None:
    text = "name: n\nclass: cpu-batch\ncommand: echo\nwork: {cu_hours: 1}\nenv: {run: x}\n"
    spec, c = convert(text)
    assert c.format == "computenet"
    assert c.unmapped == [] and c.notes == []
    same = {"name": "n", "class": "cpu-batch", "command": "echo", "work": {"cu_hours": 1}}
    assert spec == JobSpec.model_validate({**same, "env": {"run": "x"}})
    # Its errors are as before: the unknown field is named.
    p = tmp_path / "j.yaml"
    p.write_text(text + "resources: {}\n")
    with pytest.raises(ValidationError) as err:
        load_job_file(p)
    assert err.value.field == "resources"


def test_detection_is_by_content() -> None:
    assert detect_format("#!/bin/bash\n#SBATCH -N 1\n") == "slurm"
    assert detect_format("run: x", {"run": "x"}) == "skypilot"
    assert detect_format("", {"class": "x", "run": "y"}) == "computenet"
    assert detect_format("", ["a"]) == "computenet"


@pytest.mark.parametrize(
    ("raw", "chip"),
    [
        ("a100", "A100"),
        ("A100-80GB", "A100"),
        ("A100_40gb_PCIe", "A100"),
        ("H100-SXM", "H100"),
        ("h200-141gb", "H200"),
        ("H20", "H20"),
        ("h20-96GB", "H20"),
        ("910b", "Ascend-910B"),
        ("ascend-910b", "Ascend-910B"),
        ("mlu370-x8", "MLU370-X8"),
        ("L4", None),
        ("A1000", None),
        ("", None),
    ],
)
def test_chip_names_match_case_insensitively_with_variants(raw: str, chip: str | None) -> None:
    assert match_chip(raw, CHIPS) == chip


def test_the_spec_show_json_reads_back_as_the_same_job() -> None:
    spec, c = convert(SBATCH_DDP)
    import json

    doc = {**c.as_json(), "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True)}
    again, c2 = convert(json.dumps(doc))
    assert c2.format == "computenet"
    assert again.model_dump() == spec.model_dump()


@pytest.mark.parametrize("name", ["finetune-sky.yaml", "train.sbatch"])
def test_the_shipped_examples_convert(name: str) -> None:
    spec, c = convert((EXAMPLES / name).read_text())
    assert c.format in ("skypilot", "slurm")
    assert spec.chips.types
    assert spec.command


def test_the_converter_imports_nothing_of_the_server() -> None:
    import subprocess
    import sys

    code = (
        "import sys, computenet.sdk.jobfiles as j; j.builtin_chip_names();"
        " print(any(m.startswith('computenet.server') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


_FRAGMENTS = st.sampled_from(
    [
        "#!/bin/bash\n",
        "#SBATCH ",
        "--gres=gpu:",
        "--time=",
        "-N ",
        "--gpus-per-task=",
        "--ntasks=",
        "--deadline=now+",
        "--export=",
        "# cnet: hours=",
        "resources:\n  accelerators: ",
        "any_of:\n  - ",
        "{A100:8, h100: 2}",
        "[a100, 910b:1]",
        "run: ",
        "setup: ",
        "num_nodes: ",
        "envs: {A: 1, B: null}\n",
        "file_mounts: {/d: cnet://x, 3: {source: 4}}\n",
        "workdir: 7\n",
        "name: ",
        "\n",
        "1",
        "0",
        ":",
        "-",
        "'",
        "a100",
        "2027-01-01",
        " ",
    ]
)


@given(st.lists(_FRAGMENTS, max_size=25).map("".join))
def test_any_text_converts_or_is_a_validation_error(text: str) -> None:
    try:
        convert(text)
    except ValidationError as exc:
        assert exc.field and exc.message
