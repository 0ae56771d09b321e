"""`# cnet: preemptible=true` in a Slurm script or a SkyPilot task makes a preemptible job."""

from __future__ import annotations

import pytest

from computenet.errors import ValidationError
from computenet.sdk.specfile import job_from_text

SLURM = """#!/bin/bash
#SBATCH --job-name=train
#SBATCH --gres=gpu:a100:2
#SBATCH --time=60
# cnet: preemptible={value}
python train.py --resume-from "$CNET_CHECKPOINT_DIR"
"""

SKYPILOT = """name: train
resources: {{accelerators: A100:2}}
# cnet: hours=1 preemptible={value}
run: python train.py
"""


@pytest.mark.parametrize("text", [SLURM, SKYPILOT])
@pytest.mark.parametrize(("value", "want"), [("true", True), ("yes", True), ("false", False)])
def test_the_directive_sets_the_spec_field(text: str, value: str, want: bool) -> None:
    spec, _ = job_from_text(text.format(value=value))
    assert spec.preemptible is want


def test_without_the_directive_a_job_is_not_preemptible() -> None:
    spec, _ = job_from_text(SLURM.replace("# cnet: preemptible={value}\n", ""))
    assert spec.preemptible is False


def test_a_value_that_is_not_true_or_false_names_the_directive() -> None:
    with pytest.raises(ValidationError) as err:
        job_from_text(SLURM.format(value="maybe"))
    assert err.value.field == "# cnet: preemptible"
