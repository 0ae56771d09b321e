"""`cnet demo --json` as a real subprocess: every feasible job succeeds, the bill adds up,
the infeasible job is cancelled with its reason, and no process it started is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.own_db]


def processes_marked(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries `marker` (the demo's own children)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            env = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if marker.encode() in env.split(b"\0") and state != "Z":
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.timeout(400)
def test_demo_runs_every_feasible_job_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = dict(os.environ, CNET_CONFIG=str(tmp_path / "config.json"), COLUMNS="160")
    proc = subprocess.run(
        [sys.executable, "-m", "computenet.cli", "demo", "--json", "--timeout", "300"],
        capture_output=True,
        text=True,
        env=env,
        timeout=380,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    jobs = result["jobs"]

    feasible = [j for j in jobs if j["feasible"]]
    infeasible = [j for j in jobs if not j["feasible"]]
    assert len(jobs) >= 13
    assert {j["class"] for j in jobs} >= {"llm-train", "cv-train", "inference", "cpu-batch"}
    assert [j["name"] for j in feasible if j["state"] != "SUCCEEDED"] == [], proc.stderr[-3000:]
    assert proc.returncode == 0

    (bad,) = infeasible
    assert bad["state"] == "CANCELLED"
    assert any("64" in r for r in bad["reasons"]), bad["reasons"]

    # Every job that read the eastern data got the right bytes, wherever it ran.
    readers = [j for j in feasible if j["inputs"]]
    assert readers and all(j["input_checksum_ok"] for j in readers)
    # The cann job ran on Ascend chips; some job left the east for the western centers.
    cann = next(j for j in jobs if j["name"] == "cann-train")
    assert cann["chip"] == "Ascend-910B"
    assert {j["center"] for j in feasible} >= {"shanghai", "zhongwei", "guian", "chongqing"}

    costs = sum(Decimal(j["cost_cny"]) for j in feasible)
    assert Decimal(result["bill"]["total_cny"]) == costs
    assert len(result["bill"]["lines"]) == len(feasible)

    assert result["pids"], "the demo reports the processes it started"
    assert [p for p in result["pids"] if alive(p)] == []
    assert processes_marked(f"CNET_DEMO_DIR={result['dir']}") == []
    assert not Path(result["dir"]).exists()
