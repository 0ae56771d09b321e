"""`cnet conformance` against real centers: `cnet agent --backend local` passes every scenario,
and a center that ignores cancels and never fences fails exactly those scenarios, by name.

Each test runs the kit as a process (which runs a server, a proxy and the center under
test as processes of its own); the kit's work directory goes under the test's tmp_path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from computenet.conformance import SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

KIT_TIMEOUT_S = 300

# A center that registers, heartbeats and runs jobs like `cnet agent`, but ignores the
# heartbeat's `cancel` and never fences: its jobs outlive cancels and a cut-off link.
BROKEN_CENTER = """
import sys
from computenet.agent.__main__ import main
from computenet.agent.loop import Agent

Agent._stop_cancelled = lambda self, held: None
Agent._fence = lambda self, now: None
sys.exit(main())
"""


def run_kit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`cnet conformance ARGS` with its work directories under `tmp_path`."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "computenet.cli", "conformance", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=KIT_TIMEOUT_S,
        check=False,
    )


def verdicts(stdout: str) -> dict[str, str]:
    """Scenario name → PASS or FAIL, from the kit's lines."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        out[rest.split(":", 1)[0]] = verdict
    return out


def traces_still_touched(tmp_path: Path) -> list[Path]:
    """Trace files of the kit's looping jobs that something still touches (a leaked job)."""
    files = list(tmp_path.glob("cnet-conformance-*/traces/*.alive"))
    before = {f: f.stat().st_mtime for f in files}
    time.sleep(1.5)
    return [f for f in files if f.stat().st_mtime != before[f]]


def test_cnet_agent_with_the_local_backend_passes_every_scenario(tmp_path: Path) -> None:
    agent = [sys.executable, "-m", "computenet.agent", "--backend", "local"]
    done = run_kit(tmp_path, "--", *agent)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(SCENARIOS), done.stdout
    assert verdicts(done.stdout) == dict.fromkeys(SCENARIOS, "PASS"), done.stdout
    assert f"{len(SCENARIOS)} of {len(SCENARIOS)} scenarios passed" in done.stderr


def test_a_center_that_ignores_cancels_and_never_fences_fails_those_scenarios(
    tmp_path: Path,
) -> None:
    script = tmp_path / "broken_center.py"
    script.write_text(BROKEN_CENTER)
    done = run_kit(
        tmp_path,
        "--scenario", "cancel",
        "--scenario", "lease-lost-when-cut-off",
        "--", sys.executable, str(script), "--backend", "local",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert verdicts(done.stdout) == {
        "register-and-heartbeat": "PASS",
        "cancel": "FAIL",
        "lease-lost-when-cut-off": "FAIL",
    }, done.stdout
    assert "after the cancel" in done.stdout
    assert "may lease it again" in done.stdout
    assert "logs are in" in done.stderr
    assert traces_still_touched(tmp_path) == []  # the kit stopped what the center left


def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_kit(tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "command" in done.stderr
    missing = run_kit(tmp_path, "--", str(tmp_path / "no-such-center"))
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "no-such-center" in missing.stderr and missing.stderr.count("\n") == 1
    unknown = run_kit(tmp_path, "--scenario", "nope", "--", "true")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "--scenario" in unknown.stderr and unknown.stderr.count("\n") == 1
