"""`cnet submit` of a Slurm batch script runs it at a real center (server + agents on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from computenet.model import JobState
from tests.integration.test_agent_server import Net, all_logs, net  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

# Half an hour on one A100 (3 real seconds at the network's time scale of 600); the
# mail and memory directives have no ComputeNet meaning and are listed, not dropped.
SBATCH = """\
#!/bin/bash
#SBATCH --job-name=sbatch-itest
#SBATCH --partition=gpu
#SBATCH --gres=gpu:a100:1
#SBATCH --time=30
#SBATCH --mem=16G
#SBATCH --mail-type=END
#SBATCH --export=GREETING=hello
echo "$GREETING from $CNET_CENTER on $CNET_CHIP_COUNT x $CNET_CHIP"
"""


def test_cnet_submit_of_an_sbatch_script_runs_the_job(net: Net, tmp_path: Path) -> None:  # noqa: F811
    script = tmp_path / "train.sbatch"
    script.write_text(SBATCH)
    env = {**os.environ, "CNET_URL": net.url, "CNET_TOKEN": str(net.user.token)}
    env["CNET_CONFIG"] = str(tmp_path / "config.json")
    r = subprocess.run(
        [sys.executable, "-m", "computenet.cli", "submit", str(script), "--wait", "--json",
         "--timeout", "90"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{net.logs()}"
    assert "2 field(s) not mapped" in r.stderr
    detail = json.loads(r.stdout)
    assert detail["state"] == JobState.SUCCEEDED.value
    assert detail["name"] == "sbatch-itest"
    assert detail["center"] == "east"  # the only center with A100s
    assert all_logs(net.user, detail["id"]) == "hello from east on 1 x A100\n"
