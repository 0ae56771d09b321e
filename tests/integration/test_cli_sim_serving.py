"""`cnet sim compare --workload azure-llm:TRACE` as a real subprocess: JSON with every policy's
figures on a generated trace; bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# The simulator uses no database: the PostgreSQL pass would only run these again unchanged.
pytestmark = [pytest.mark.integration, pytest.mark.own_db]


def _trace(path: Path, n: int = 1500, seconds: float = 600.0) -> Path:
    rng = np.random.default_rng(11)
    t = np.sort(rng.uniform(0.0, seconds, n))
    start = dt.datetime(2023, 11, 16, 18, 15, 46)
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for x in t:
        when = start + dt.timedelta(seconds=float(x))
        rows.append(
            f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond:06d}0,"
            f"{int(rng.integers(20, 2500))},{int(rng.integers(1, 300))}"
        )
    path.write_text("\n".join(rows) + "\n")
    return path


def _cnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "computenet.cli", "sim", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_compare_json_has_every_policy_and_the_goal(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "conv.csv")
    p = _cnet(
        "compare",
        "--network",
        "china",
        "--workload",
        f"azure-llm:{trace}",
        "--policies",
        "all",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    names = [r["policy"] for r in doc["policies"]]
    assert names == [
        "nearest",
        "least-loaded",
        "round-robin",
        "cheapest-power",
        "static-peak",
        "ours",
    ]
    tokens = doc["tokens"]
    for r in doc["policies"]:
        for key in ("cost_per_mtok_cny", "slo_attainment_pct", "p99_ttft_s", "p50_ttft_s"):
            assert isinstance(r[key], float), key
        assert r["requests"] == 1500
        assert r["cost_per_mtok_cny"] == pytest.approx(r["total_cny"] / tokens * 1e6)
        assert 0 <= r["slo_attainment_pct"] <= 100
        assert r["p50_ttft_s"] <= r["p99_ttft_s"] <= r["p99_e2e_s"]
        assert r["replica_hours_by_center"] and r["kwh"] > 0 and r["co2_kg"] > 0
    assert doc["goal"]["cost_ratio"] > 0
    assert doc["objective_ttft_s"] == 0.5


def test_run_prints_a_table(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "conv.csv", n=300)
    p = _cnet("run", "--network", "china", "--workload", f"azure-llm:{trace}", "--policy", "ours")
    assert p.returncode == 0, p.stderr
    assert "ours" in p.stdout and "¥/Mtok" in p.stdout


@pytest.mark.parametrize(
    ("suffix", "says"),
    [
        (",colour=red", "--workload: unknown option 'colour=red'"),
        (",service=/no/such.yaml", "--workload service: no service file"),
        ("BADROW", "conv.csv:3: ContextTokens and GeneratedTokens must be whole numbers"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, suffix: str, says: str) -> None:
    trace = _trace(tmp_path / "conv.csv", n=10)
    if suffix == "BADROW":
        lines = trace.read_text().splitlines()
        lines[2] = lines[2].rsplit(",", 1)[0] + ",many"
        trace.write_text("\n".join(lines) + "\n")
        suffix = ""
    p = _cnet("compare", "--workload", f"azure-llm:{trace}{suffix}", "--json")
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ")
    assert says in p.stderr


def test_an_unknown_policy_is_exit_2(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "conv.csv", n=10)
    p = _cnet("compare", "--workload", f"azure-llm:{trace}", "--policies", "nearest,fastest")
    assert p.returncode == 2
    assert p.stderr.startswith("error: --policies: unknown serving policy 'fastest'")


def test_run_names_its_own_policy_flag(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "conv.csv", n=10)
    p = _cnet("run", "--workload", f"azure-llm:{trace}", "--policy", "fifo")
    assert p.returncode == 2
    assert p.stderr.startswith("error: --policy: unknown serving policy 'fifo'")


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("compare", ["--out", "OUT"]),
        ("compare", ["--no-bound"]),
        ("compare", ["--seed", "3"]),
        ("run", ["--cycle", "60"]),
        ("run", ["--patience", "0"]),
    ],
)
def test_a_batch_option_is_refused_not_ignored(
    tmp_path: Path, command: str, args: list[str]
) -> None:
    trace = _trace(tmp_path / "conv.csv", n=10)
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    p = _cnet(command, "--workload", f"azure-llm:{trace}", *args)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith(f"error: {args[0]}: an option of the batch simulator")
    assert not (tmp_path / "out").exists()  # nothing written
