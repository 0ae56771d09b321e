"""The dashboard's quote page reads a Slurm batch script: converted, quoted, unmapped listed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Network
from tests.e2e.test_dashboard import SPEC, go, sign_in

pytestmark = pytest.mark.e2e

Shots = Callable[[Any, str], Path]

SBATCH = """\
#!/bin/bash
#SBATCH --job-name=e2e-sbatch
#SBATCH --partition=gpu
#SBATCH --gres=gpu:h100:2
#SBATCH --time=20
#SBATCH --mem=64G
echo "step 1"
"""


def test_a_user_quotes_a_slurm_script_and_sees_what_was_not_mapped(
    page: Any, network: Network, shots: Shots
) -> None:
    sign_in(page, network, "alice")
    go(page, "quote")
    page.get_by_label(SPEC).fill(SBATCH)
    page.get_by_role("button", name="Get quote").click()
    options = page.get_by_role("table", name="Quote options")
    options.wait_for()
    assert "zhongwei" in options.inner_text()  # the demo's H100 center
    converted = page.get_by_test_id("converted")
    text = converted.inner_text()
    assert "Slurm batch script" in text
    assert "2 × H100" in text
    assert "#SBATCH --mem=64G" in text
    shots(page, "quote-sbatch")
    # A script with an unknown chip is an error naming the directive.
    page.get_by_label(SPEC).fill(SBATCH.replace("h100", "T4"))
    page.get_by_role("button", name="Get quote").click()
    page.get_by_text(re.compile(r"#SBATCH --gres")).first.wait_for()
    shots(page, "quote-sbatch-error")
