"""`cnet demo --federated` as a real subprocess: a national plane over three regions, a
job sent down, a job sent up, a region SIGKILLed mid-run; every job runs to its end
exactly once (counted by the markers its command leaves), the bills add up to the fen,
and no process it started is left — also when it is interrupted with Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.test_cli_demo import alive, processes_marked

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

DEMO = [sys.executable, "-m", "computenet.cli", "demo", "--federated"]


def demo_env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, CNET_CONFIG=str(tmp_path / "config.json"), COLUMNS="160")


@pytest.mark.timeout(400)
def test_every_job_runs_once_through_the_levels_and_the_bills_add_up(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*DEMO, "--json", "--timeout", "240"],
        capture_output=True,
        text=True,
        env=demo_env(tmp_path),
        timeout=380,
    )
    assert proc.stdout.strip(), proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    jobs = {j["name"]: j for j in result["jobs"]}
    assert result["problems"] == [], proc.stderr[-4000:]
    assert (result["ok"], proc.returncode) == (True, 0)

    for j in jobs.values():
        assert {"id", "state", "region", "center", "chip", "cost_cny", "path"} <= set(j)
        # Exactly once, counted: one run reached its end, where the path says it ran.
        assert j["state"] == "SUCCEEDED", j
        assert len(j["runs_finished"]) == 1, j
        assert j["runs_finished"] == [j["center"]] == [j["path"][-1]["center"]], j

    # Sent down: the national plane picked a region, the region one of its centers.
    top = [j for j in jobs.values() if j["submitted_to"] == "cn"]
    assert len(top) == 4
    for j in top:
        assert [h["network"] for h in j["path"]][:1] == ["cn"] and len(j["path"]) == 2, j
        assert j["path"][0]["center"] == j["region"]
    assert jobs["llm-pretrain"]["region"] == "gba"
    assert {jobs["cv-train"]["region"], jobs["batch-infer"]["region"]} == {"cy"}

    # The region killed mid-run: its run there never ended, the job ended once in gba.
    killed = jobs["ascend-finetune"]
    assert result["killed_region"] == "yrd"
    assert "wuhu" in killed["runs_started"] and killed["runs_finished"] == ["shaoguan"]
    assert (killed["region"], killed["attempts"]) == ("gba", 2)

    # Sent up: submitted to cy (no H800 there), run by the national plane in gba.
    up = jobs["cy-burst-h800"]
    assert up["submitted_to"] == "cy" and up["region"] == "gba"
    assert [h["network"] for h in up["path"]] == ["cy", "cn", "gba"]
    assert up["path"][0]["center"] == "cn"  # cy's center for its parent
    local = jobs["cy-local-report"]
    assert [h["network"] for h in local["path"]] == ["cy"] and local["region"] == "cy"

    # The bills: one national line per job the national plane ran, each equal to what
    # the level that ran it metered; the total is the sum of the lines.
    bill = result["bill"]
    lines = bill["lines"]
    assert sorted(x["job_id"] for x in lines) == sorted(
        [j["id"] for j in top] + [up["path"][1]["job_id"]]
    )
    assert Decimal(bill["total_cny"]) == sum(Decimal(x["total_cny"]) for x in lines)
    assert Decimal(bill["by_tenant"]["acme"]) == sum(Decimal(j["cost_cny"]) for j in top)
    assert bill["checks"] and all(c["matches"] is True for c in bill["checks"]), bill["checks"]
    assert len(bill["checks"]) == len(lines) + 1  # and cy's line for the job it sent up

    assert result["pids"]
    assert [p for p in result["pids"] if alive(p)] == []
    assert processes_marked(f"CNET_DEMO_DIR={result['dir']}") == []
    assert not Path(result["dir"]).exists()


@pytest.mark.timeout(300)
def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        DEMO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=demo_env(tmp_path),
    )
    seen: list[str] = []
    workdir = None
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 200
        for line in proc.stderr:  # progress lines, one per step
            seen.append(line)
            if m := re.search(r"working in (\S+):", line):
                workdir = m.group(1)
            if "submitted" in line or time.monotonic() > deadline:
                break
        # Keep reading its progress, so that a full pipe never holds it up.
        threading.Thread(target=lambda: seen.extend(proc.stderr or ()), daemon=True).start()
        assert workdir and any("submitted" in s for s in seen), "".join(seen)[-3000:]
        assert processes_marked(f"CNET_DEMO_DIR={workdir}")  # its processes are running
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    # Nothing it started runs on (servers, agents, watchdogs, jobs' supervisors).
    left = processes_marked(f"CNET_DEMO_DIR={workdir}")
    for _ in range(50):
        if not left:
            break
        time.sleep(0.2)
        left = processes_marked(f"CNET_DEMO_DIR={workdir}")
    assert left == [], "".join(seen)[-3000:]
    assert not Path(workdir).exists()
